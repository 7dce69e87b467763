//! ip4-gro: toward a port that takes super-frames (`gso = true`), consecutive in-order TCP
//! segments of one flow in the batch are coalesced into one multi-buffer super-frame
//! (`pipeline::gro`: the kernel's GRO rules). The first segment of a run keeps its slot and
//! its headers; the payloads of the others are copied, in order, into its tail (the batch's
//! tail arena), and their slots are let go; its `Meta::segment_size` becomes the segments'
//! payload size (a tap tells the pod with it, as the kernel's GRO sets `gso_size`).
//! Anything else goes on to interface-output as it is.
//!
//! Frames are taken in slot order, which is arrival order for everything received in the
//! batch, so a run only ever joins segments in the order they came; a segment that cannot
//! join closes its flow's run first, so a flow's data never overtakes itself. At most
//! `MAX_OPEN` flows are open at once (the kernel's GRO holds 8 per bucket); runs never span
//! batches, so nothing waits for a later batch.

use super::super::Cx;
use super::super::batch::{Batch, flags};
use super::super::drop::Event;
use super::super::gro::{Flush, Run, Seg};
use super::super::stage::Stage;
use crate::tables::PortId;

/// Flows with an open run at once.
const MAX_OPEN: usize = 8;

#[derive(Clone, Copy)]
struct Open {
    run: Run,
    port: PortId,
    /// Slot of the first segment.
    head: usize,
    /// Slots of the segments that joined (the first excluded).
    members: u128,
}

pub(super) fn run(cx: &mut Cx<'_>, b: &mut Batch, mask: u128) {
    let mut open: [Option<Open>; MAX_OPEN] = [None; MAX_OPEN];
    let mut m = mask;
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        // A frame whose checksum is still partial (from a super-frame pod) is never merged:
        // merging derives the checksum from the segments' own.
        let seg = if b.is_chained(i) || b.meta[i].flags & flags::CSUM_PENDING != 0 {
            None
        } else {
            Seg::parse(b.frame(i))
        };
        let Some(seg) = seg else {
            b.set_next(i, Stage::Output);
            continue;
        };
        let port = b.meta[i].out_port;
        if let Some(k) = open
            .iter()
            .position(|o| o.is_some_and(|o| o.port == port && o.run.head.same_flow(&seg)))
        {
            let Some(mut o) = open[k] else { continue };
            match o.run.check(b.frame(o.head), &seg, b.frame(i)) {
                Ok(()) => {
                    o.run.add(&seg, b.frame(i));
                    o.members |= 1u128 << i;
                    if seg.ends_run(o.run.mss()) {
                        open[k] = None;
                        close(cx, b, o, Flush::Push);
                    } else {
                        open[k] = Some(o);
                    }
                    continue;
                }
                Err(why) => {
                    open[k] = None;
                    close(cx, b, o, why);
                }
            }
        }
        if !seg.can_start() {
            b.set_next(i, Stage::Output);
            continue;
        }
        let o = Open {
            run: Run::new(seg, b.frame(i)),
            port,
            head: i,
            members: 0,
        };
        let k = match open.iter().position(Option::is_none) {
            Some(k) => k,
            None => {
                // Close the flow opened first (lowest head slot).
                let k = (0..MAX_OPEN)
                    .min_by_key(|&k| open[k].map_or(usize::MAX, |o| o.head))
                    .unwrap_or(0);
                if let Some(old) = open[k].take() {
                    close(cx, b, old, Flush::Evicted);
                }
                k
            }
        };
        open[k] = Some(o);
    }
    for o in open.iter_mut() {
        if let Some(o) = o.take() {
            close(cx, b, o, Flush::BatchEnd);
        }
    }
}

/// Delivers a run: one segment as it is, several as one super-frame.
fn close(cx: &mut Cx<'_>, b: &mut Batch, o: Open, why: Flush) {
    cx.event(flush_event(why));
    b.set_next(o.head, Stage::Output);
    if o.members == 0 {
        return;
    }
    let hdr = o.run.head.header_len();
    if !b.gather_tail(o.head, o.members, hdr) {
        // No room in the tail arena: delivered as the segments they are.
        cx.event(Event::GroNoBuffer);
        let mut m = o.members;
        while m != 0 {
            let j = m.trailing_zeros() as usize;
            m &= m - 1;
            b.set_next(j, Stage::Output);
        }
        return;
    }
    o.run.finish(b.frame_mut(o.head));
    // The receiver learns its peer's segment size from this (the kernel's gso_size).
    b.meta[o.head].segment_size = u16::try_from(o.run.mss()).unwrap_or(0);
    let mut m = o.members;
    while m != 0 {
        let j = m.trailing_zeros() as usize;
        m &= m - 1;
        b.set_next(j, Stage::Done);
    }
    cx.event(Event::GroSuperFrames);
    cx.counters.events[Event::GroSegmentsMerged as usize] += u64::from(o.run.count);
    cx.trace(Stage::Ip4Gro, || {
        format!(
            "{} segments of {} payload bytes coalesced into a super-frame of {} bytes",
            o.run.count,
            o.run.mss(),
            b.frame_len(o.head)
        )
    });
}

fn flush_event(why: Flush) -> Event {
    match why {
        Flush::Push => Event::GroFlushPush,
        Flush::Seq => Event::GroFlushSeq,
        Flush::Flags => Event::GroFlushFlags,
        Flush::Ack => Event::GroFlushAck,
        Flush::Options => Event::GroFlushOptions,
        Flush::Ip => Event::GroFlushIp,
        Flush::Length => Event::GroFlushLength,
        Flush::Size => Event::GroFlushSize,
        Flush::Evicted => Event::GroFlushEvicted,
        Flush::BatchEnd => Event::GroFlushBatchEnd,
    }
}
