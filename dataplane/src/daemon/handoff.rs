//! Lock-free hand-over of frames to the worker that owns the output port.
//!
//! Buffers come from a shared pre-allocated pool (no allocation per frame): buffers of one
//! UMEM frame for ordinary frames, and a smaller number of 64 KiB ones for TCP super-frames
//! (a GSO pod's port on another worker). Each worker has a bounded inbound queue. All are
//! crossbeam `ArrayQueue`s.

use super::view::Handle;
use crossbeam::queue::ArrayQueue;

pub const BUF_SIZE: usize = crate::pipeline::MAX_FRAME;
/// Buffer size for super-frames: the largest chained frame.
pub const BIG_BUF_SIZE: usize = crate::pipeline::batch::MAX_CHAIN_FRAME;

pub struct Handoff {
    pub port: Handle,
    pub len: u32,
    /// The frame's `TxInfo::segment_size` (a super-frame's; its checksum is complete).
    pub segment_size: u16,
    pub buf: Box<[u8]>,
}

pub struct BufPool {
    small: ArrayQueue<Box<[u8]>>,
    big: ArrayQueue<Box<[u8]>>,
}

impl BufPool {
    /// `n` buffers of `BUF_SIZE` and `big` of `BIG_BUF_SIZE`.
    pub fn new(n: usize, big: usize) -> Self {
        let fill = |q: &ArrayQueue<Box<[u8]>>, size: usize| {
            while q.push(vec![0u8; size].into_boxed_slice()).is_ok() {}
        };
        let p = BufPool {
            small: ArrayQueue::new(n.max(1)),
            big: ArrayQueue::new(big.max(1)),
        };
        fill(&p.small, BUF_SIZE);
        fill(&p.big, BIG_BUF_SIZE);
        p
    }
    /// A buffer for a frame of `len` bytes (none left, or `len` larger than any: `None`).
    pub fn get(&self, len: usize) -> Option<Box<[u8]>> {
        if len <= BUF_SIZE {
            self.small.pop()
        } else if len <= BIG_BUF_SIZE {
            self.big.pop()
        } else {
            None
        }
    }
    pub fn put(&self, b: Box<[u8]>) {
        let q = if b.len() == BIG_BUF_SIZE {
            &self.big
        } else {
            &self.small
        };
        let _ = q.push(b);
    }
}

pub type Inbox = ArrayQueue<Handoff>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_fit_the_frame_and_go_back_to_their_pool() {
        let p = BufPool::new(2, 1);
        let a = p.get(100).expect("small");
        assert_eq!(a.len(), BUF_SIZE);
        let big = p.get(BUF_SIZE + 1).expect("big");
        assert_eq!(big.len(), BIG_BUF_SIZE);
        assert!(p.get(40_000).is_none(), "one big buffer only");
        assert!(p.get(BIG_BUF_SIZE + 1).is_none(), "larger than any buffer");
        p.put(big);
        assert!(p.get(65_000).is_some(), "back in the big pool");
        p.put(a);
        assert_eq!(p.get(1).map(|b| b.len()), Some(BUF_SIZE));
    }
}
