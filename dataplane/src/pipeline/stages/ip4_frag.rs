//! ip4-frag: fragments a packet without DF that does not fit the path MTU (as the kernel
//! does before a tunnel device). Extra fragments go into the batch's spare slots; the
//! header, options included, is repeated in every fragment.

use super::super::Cx;
use super::super::batch::Batch;
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use super::L3;
use crate::wire::ipv4::{self, Packet};

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let m = b.meta[i];
    let Some(route) = snap.routes.get(m.route as usize) else {
        return cx.drop(b, i, R::NoRoute);
    };
    let f = b.frame(i);
    let Ok(ip) = Packet::new_checked(&f[L3..]) else {
        return cx.drop(b, i, R::Ip4Truncated);
    };
    let hl = ip.header_len();
    let total = usize::from(ip.total_len());
    let chunk = (usize::from(route.mtu).saturating_sub(hl) / 8) * 8;
    if chunk < 8 {
        return cx.drop(b, i, R::FragMtuTooSmall);
    }
    let payload = total - hl;
    let n = payload.div_ceil(chunk);
    if b.len() + n - 1 > super::super::batch::SLOTS {
        return cx.drop(b, i, R::FragNoBuffer);
    }
    let base_off = ip.frag_offset();
    let orig_mf = ip.more_frags();
    let flags_hi = ip.flags_frag() & !(ipv4::FLAG_MF | ipv4::FRAG_OFFSET_MASK);
    for k in 1..n {
        let Some(j) = b.alloc() else {
            return cx.drop(b, i, R::FragNoBuffer);
        };
        let from = L3 + hl + k * chunk;
        let len = chunk.min(payload - k * chunk);
        b.meta[j] = b.meta[i];
        b.meta[j].next = Stage::Done;
        b.set_len(j, L3 + hl + len);
        b.copy_range(i, 0..L3 + hl, j, 0);
        b.copy_range(i, from..from + len, j, L3 + hl);
        let last = k == n - 1;
        let mf = if last { orig_mf } else { true };
        set_fragment(b.frame_mut(j), hl + len, base_off + k * chunk, mf, flags_hi);
        b.set_next(j, m.after_frag);
    }
    b.set_len(i, L3 + hl + chunk);
    set_fragment(b.frame_mut(i), hl + chunk, base_off, true, flags_hi);
    cx.event(Event::Fragmented);
    for _ in 0..n {
        cx.event(Event::FragmentsMade);
    }
    cx.trace(Stage::Ip4Frag, || {
        format!(
            "{total} bytes into {n} fragments of at most {} for mtu {}",
            hl + chunk,
            route.mtu
        )
    });
    b.set_next(i, m.after_frag);
}

fn set_fragment(f: &mut [u8], total: usize, offset: usize, mf: bool, flags_hi: u16) {
    if let Ok(mut ip) = Packet::new_checked(&mut f[L3..]) {
        ip.set_total_len(total as u16);
        let mut v = flags_hi | (offset / 8) as u16;
        if mf {
            v |= ipv4::FLAG_MF;
        }
        ip.set_flags_frag(v);
        ip.fill_checksum();
    }
}
