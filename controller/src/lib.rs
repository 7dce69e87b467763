//! The podswitch controller: turns cluster state (nodes, pods, Services) into node
//! configurations for each podswitchd. For now it derives a node's peers from a list of
//! nodes, the way flannel derives its routes from Node objects.

use podswitch_model::config::{NodeConfig, Peer};

/// A cluster node as the controller sees it (from the Node object and its annotations).
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub peer: Peer,
}

/// Replaces `cfg`'s peers with every other node of the cluster.
pub fn set_peers(cfg: &mut NodeConfig, nodes: &[ClusterNode]) {
    cfg.peers = nodes
        .iter()
        .filter(|n| n.peer.address != cfg.node.address)
        .map(|n| n.peer.clone())
        .collect();
}
