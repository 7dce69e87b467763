//! interface-output: final MTU sanity check and VLAN tag push for tagged pod ports.

use super::super::Cx;
use super::super::batch::{Batch, MAX_CHAIN_FRAME};
use super::super::drop::DropReason as R;
use super::super::stage::Stage;
use crate::wire::ethernet;

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let out = b.meta[i].out_port;
    let Some(port) = snap.port(out) else {
        return cx.drop(b, i, R::UnknownPort);
    };
    // A port that carries super-frames takes them whole (the veth with an `xdp.frags`
    // program accepts multi-buffer frames up to the largest IPv4 packet).
    let max = if port.gso {
        MAX_CHAIN_FRAME
    } else {
        usize::from(port.mtu) + ethernet::HEADER_LEN
    };
    if b.frame_len(i) > max {
        return cx.drop(b, i, R::TxTooBig);
    }
    if let Some(vid) = port.vlan {
        if !b.push_front(i, ethernet::VLAN_TAG_LEN) {
            return cx.drop(b, i, R::TxTooBig);
        }
        let (slot, start) = b.slot_mut(i);
        slot.copy_within(start + 4..start + 16, start);
        slot[start + 12..start + 14].copy_from_slice(&ethernet::ETHERTYPE_VLAN.to_be_bytes());
        slot[start + 14..start + 16].copy_from_slice(&vid.to_be_bytes());
    }
    cx.trace(Stage::Output, || {
        format!("tx on {} ({} bytes)", port.name, b.frame_len(i))
    });
    b.set_next(i, Stage::Out);
}
