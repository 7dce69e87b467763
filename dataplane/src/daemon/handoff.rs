//! Lock-free hand-over of frames to the worker that owns the output port.
//!
//! Buffers come from a shared pre-allocated pool (no allocation per frame); each worker
//! has a bounded inbound queue. Both are crossbeam `ArrayQueue`s.

use super::view::Handle;
use crossbeam::queue::ArrayQueue;

pub const BUF_SIZE: usize = crate::pipeline::MAX_FRAME;

pub struct Handoff {
    pub port: Handle,
    pub len: u16,
    pub buf: Box<[u8]>,
}

pub struct BufPool(ArrayQueue<Box<[u8]>>);

impl BufPool {
    pub fn new(n: usize) -> Self {
        let q = ArrayQueue::new(n);
        for _ in 0..n {
            let _ = q.push(vec![0u8; BUF_SIZE].into_boxed_slice());
        }
        BufPool(q)
    }
    pub fn get(&self) -> Option<Box<[u8]>> {
        self.0.pop()
    }
    pub fn put(&self, b: Box<[u8]>) {
        let _ = self.0.push(b);
    }
}

pub type Inbox = ArrayQueue<Handoff>;
