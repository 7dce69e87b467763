//! The neighbour table (underlay next hops and their MACs). Reads `neighbours` and the
//! neighbours learned from the kernel.

use crate::config::{Neighbour, NodeConfig};
use crate::tables::fasthash::FastMap;
use crate::wire::Mac;
use std::net::Ipv4Addr;
use std::sync::Arc;

pub(super) struct Neighbours {
    pub configured: Arc<Vec<(Ipv4Addr, Mac)>>,
    pub learned: Arc<Vec<(Ipv4Addr, Mac)>>,
    pub macs: Arc<FastMap<[u8; 4], Mac>>,
}

/// The learned neighbours that count: not configured, and with a unicast MAC.
pub(super) fn usable_learned(cfg: &NodeConfig, learned: &[Neighbour]) -> Vec<(Ipv4Addr, Mac)> {
    learned
        .iter()
        .filter(|l| !cfg.neighbours.iter().any(|n| n.ip == l.ip))
        .filter(|l| !l.mac.is_multicast() && !l.mac.is_zero())
        .map(|l| (l.ip, l.mac))
        .collect()
}

/// Learned ones first, configured ones over them.
pub(super) fn build(
    cfg: &NodeConfig,
    learned: Vec<(Ipv4Addr, Mac)>,
    errs: &mut Vec<String>,
) -> Neighbours {
    let mut neigh: FastMap<[u8; 4], Mac> = FastMap::default();
    for (ip, mac) in &learned {
        neigh.insert(ip.octets(), *mac);
    }
    for nb in &cfg.neighbours {
        if nb.mac.is_multicast() || nb.mac.is_zero() {
            errs.push(format!(
                "neighbour {}: mac {} must be unicast",
                nb.ip, nb.mac
            ));
        }
        neigh.insert(nb.ip.octets(), nb.mac);
    }
    Neighbours {
        configured: Arc::new(cfg.neighbours.iter().map(|n| (n.ip, n.mac)).collect()),
        learned: Arc::new(learned),
        macs: Arc::new(neigh),
    }
}
