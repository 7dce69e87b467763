//! ip4-tso: cuts a TCP super-frame (from a port that hands them over) that is larger than
//! its path into path-sized segments (`pipeline::tso`, the kernel's TSO semantics). The
//! first segment stays in the super-frame's slot; the others go into spare slots. Every
//! segment then continues where the super-frame would have: encapsulation or output, so a
//! VXLAN or IP-in-IP path gets outer headers per segment.

use super::super::Cx;
use super::super::batch::{Batch, SLOTS};
use super::super::drop::{DropReason as R, Event};
use super::super::stage::Stage;
use super::super::tso::Plan;

pub(super) fn packet(cx: &mut Cx<'_>, b: &mut Batch, i: usize) {
    let snap = cx.snap;
    let m = b.meta[i];
    let Some(route) = snap.routes.get(m.route as usize) else {
        return cx.drop(b, i, R::NoRoute);
    };
    let (c, nc) = b.chain(i);
    let plan = Plan::for_mtu(&c[..nc], usize::from(route.mtu))
        .and_then(|p| p.at_most(usize::from(m.segment_size)));
    let plan = match plan {
        Ok(p) => p,
        Err(e) => return cx.drop(b, i, e.reason()),
    };
    let n = plan.segments();
    // Segment 0 stays in the super-frame's slot when its bytes are all in the first buffer;
    // otherwise (a short first buffer) it is written into a spare slot like the others.
    let in_place = b.frame(i).len() >= plan.segment_len(0);
    let first_new = if in_place { 1 } else { 0 };
    if b.len() + n - first_new > SLOTS {
        return cx.drop(b, i, R::TsoNoBuffer);
    }
    for k in first_new..n {
        let Some(j) = b.alloc() else {
            return cx.drop(b, i, R::TsoNoBuffer);
        };
        b.meta[j] = b.meta[i];
        b.meta[j].next = Stage::Done;
        b.meta[j].tail_len = 0;
        b.meta[j].start = super::super::batch::HEADROOM as u16;
        b.set_len(j, plan.segment_len(k));
        b.write_from_chain(i, j, |chain, dst| {
            plan.write(chain, k, dst);
        });
        b.set_next(j, m.after_frag);
    }
    if in_place {
        // Segment 0's bytes are already in place: fix its headers last (the others copied
        // them).
        b.unchain(i);
        plan.patch(0, b.frame_mut(i));
        b.set_len(i, plan.segment_len(0));
    }
    cx.event(Event::TsoSuperFrames);
    for _ in 0..n {
        cx.event(Event::TsoSegmentsMade);
    }
    cx.trace(Stage::Ip4Tso, || {
        format!(
            "super-frame cut into {n} segments of at most {} payload bytes for mtu {}",
            plan.mss(),
            route.mtu
        )
    });
    if in_place {
        b.set_next(i, m.after_frag);
    } else {
        b.unchain(i);
        b.set_next(i, Stage::Done);
    }
}
