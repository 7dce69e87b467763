//! Ports: where frames come from and go to. The pipeline never sees them; workers move
//! frames between ports and batches.

pub mod afxdp_port;
pub mod mem;
pub mod tap_port;
pub mod xdp_prog;

use crate::pipeline::batch::TxInfo;
use serde::Serialize;
use std::os::fd::RawFd;

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct PortStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_ring_full: u64,
    pub rx_fill_empty: u64,
}

/// What a port knows of a received frame beyond its bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxInfo {
    /// For a TCP super-frame, the payload bytes per segment its sender asked for (a tap's
    /// `gso_size`); 0 when the port does not say (ip4-tso then cuts to the path alone).
    pub segment_size: u16,
}

/// A switch port. AF_XDP sockets, in-memory queues (replay, tests) and anything else that
/// moves frames implement this, so the I/O binding can change without touching the rest.
pub trait Port: Send {
    fn name(&self) -> &str;
    /// Receives up to `max` frames, calling `f` once per frame with its buffers (one, or the
    /// chain of a multi-buffer frame, headers in the first; bytes valid during the call)
    /// and what the port knows of it.
    /// When `f` returns false the frame is not taken: it stays queued for the next call and
    /// the burst ends. Returns the frames taken.
    fn recv_burst(&mut self, max: usize, f: &mut dyn FnMut(&[&[u8]], RxInfo) -> bool) -> usize;
    /// Queues one frame for transmit (copied); false when the tx ring is full.
    fn send(&mut self, frame: &[u8]) -> bool;
    /// Queues one frame given as a chain of buffers (a multi-buffer frame), with what the
    /// pipeline says of it: a checksum to complete on transmit (given only to a port whose
    /// `offloads_tx_csum` is true) and its segment size, which a port may use or ignore;
    /// false when the port cannot take it now. Ports without multi-buffer transmit take
    /// single buffers only.
    fn send_chain(&mut self, chain: &[&[u8]], tx: TxInfo) -> bool {
        match (chain, tx.csum) {
            ([one], None) => self.send(one),
            _ => false,
        }
    }
    /// True when the port completes a frame's `TxCsum` on transmit (transmit checksum
    /// offload); otherwise the pipeline completes it before the port sees the frame.
    fn offloads_tx_csum(&self) -> bool {
        false
    }
    /// Reclaims completed buffers, refills receive buffers and kicks transmission.
    fn flush(&mut self);
    /// File descriptor to wait on when idle (`None`: never readable, e.g. in-memory).
    fn raw_fd(&self) -> Option<RawFd>;
    fn stats(&self) -> PortStats;
    /// How the port is attached, e.g. "xdp=generic copy queue=0".
    fn mode(&self) -> String;
}
