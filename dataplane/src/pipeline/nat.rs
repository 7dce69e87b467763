//! Per-packet Service NAT state carried from nat44-in to nat44-out.

use crate::conntrack::FlowKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatState {
    /// Nothing decided: nat44-out may masquerade.
    None,
    /// Translated by a conntrack entry (or must not be translated): nat44-out leaves it.
    Done,
    /// A new Service flow, destination already translated: nat44-out decides the source
    /// translation and creates the conntrack entry.
    PendingService,
}

#[derive(Clone, Copy, Debug)]
pub struct NatMeta {
    pub state: NatState,
    /// The tuple as it arrived (before DNAT).
    pub orig: FlowKey,
    /// Service port index in the snapshot's Service table.
    pub svc: u32,
    /// The client is outside the cluster (not a pod): externalTrafficPolicy Cluster SNATs it.
    pub external_client: bool,
    /// The endpoint was chosen among local ones only (a Local traffic policy applied).
    pub local_only: bool,
}

impl NatMeta {
    pub const NONE: NatMeta = NatMeta {
        state: NatState::None,
        orig: FlowKey {
            proto: 0,
            src: [0; 4],
            dst: [0; 4],
            sport: 0,
            dport: 0,
        },
        svc: 0,
        external_client: false,
        local_only: false,
    };
}
