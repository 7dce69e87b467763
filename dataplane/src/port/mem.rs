//! An in-memory port: frames queued in, frames collected out. Used by replay and tests.

use super::{Port, PortStats, RxInfo};
use std::collections::VecDeque;
use std::os::fd::RawFd;

#[derive(Default)]
pub struct MemPort {
    name: String,
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
    stats: PortStats,
}

impl MemPort {
    pub fn new(name: &str) -> Self {
        MemPort {
            name: name.to_string(),
            ..Default::default()
        }
    }
}

impl Port for MemPort {
    fn name(&self) -> &str {
        &self.name
    }
    fn recv_burst(&mut self, max: usize, f: &mut dyn FnMut(&[&[u8]], RxInfo) -> bool) -> usize {
        let mut n = 0;
        while n < max {
            let Some(fr) = self.rx.pop_front() else { break };
            if !f(&[&fr], RxInfo::default()) {
                self.rx.push_front(fr);
                break;
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += fr.len() as u64;
            n += 1;
        }
        n
    }
    fn send(&mut self, frame: &[u8]) -> bool {
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += frame.len() as u64;
        self.tx.push(frame.to_vec());
        true
    }
    fn send_chain(&mut self, chain: &[&[u8]], _tx: crate::pipeline::batch::TxInfo) -> bool {
        // Never offloads (`offloads_tx_csum` is false): `tx.csum` is always None here.
        self.send(&chain.concat())
    }
    fn flush(&mut self) {}
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
    fn stats(&self) -> PortStats {
        self.stats
    }
    fn mode(&self) -> String {
        "memory".into()
    }
}

/// Opens an in-memory port for every table port: a daemon's control side (tests, benches)
/// without AF_XDP.
#[derive(Debug, Default)]
pub struct MemFactory;

impl crate::daemon::control::PortFactory for MemFactory {
    fn open(
        &self,
        entry: &crate::tables::PortEntry,
        _snap: &crate::tables::Snapshot,
    ) -> Result<Vec<Box<dyn Port>>, String> {
        Ok(vec![Box::new(MemPort::new(&entry.name))])
    }
    fn close(&self, _entry: &crate::tables::PortEntry) {}
}
