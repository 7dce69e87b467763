//! The NetworkPolicy sections of the node configuration, in the compiled form the controller
//! produces (selectors already resolved):
//!
//! - `[[address_set]]`: a named set of addresses (`prefixes` minus `except`), shared by
//!   rules: a peer's pods, a namespace's pods, an ipBlock with its excepts;
//! - `[[pod_policy]]`: per local pod (by pod name), its ingress and egress sections; a
//!   section that is absent leaves the pod unisolated in that direction, a present one
//!   allows only what one of its rules allows (none: default deny);
//! - `[policy]`: node-wide settings.
//!
//! Parsing checks syntax; `tables::policy` (dataplane) validates meaning, naming the object.

use crate::Prefix;
use serde::{Deserialize, Serialize};

/// A named set of IPv4 addresses: the union of `prefixes` minus the union of `except`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressSet {
    pub name: String,
    #[serde(default)]
    pub prefixes: Vec<Prefix>,
    /// Addresses taken out of `prefixes` (an ipBlock's `except`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<Prefix>,
}

/// The policies that select one local pod, compiled for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodPolicy {
    /// The pod's name (`[[pod]] name`).
    pub pod: String,
    /// Absent: no policy isolates the pod for ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<PolicyDirection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<PolicyDirection>,
}

/// One direction of a pod: the union of its rules (no rule: everything is denied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicyDirection {
    /// Every policy (`namespace/name`) that selects the pod for this direction, including
    /// those without rules (they only isolate it): named in dumps and denied traces.
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
}

/// One rule of one policy: traffic from (ingress) or to (egress) an address in one of
/// `peers`, on one of `ports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// The NetworkPolicy, `namespace/name`.
    pub policy: String,
    /// Index of the rule in the policy's `ingress` or `egress` list.
    #[serde(default)]
    pub rule: u32,
    /// Address set names; empty: any address.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Empty: any port and protocol.
    #[serde(default)]
    pub ports: Vec<PolicyPort>,
}

/// A port or port range (`endPort`) of one protocol. Named ports are resolved by the
/// controller to the destination pod's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyPort {
    pub protocol: super::services::Protocol,
    /// Absent: every port of the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Last port of the range starting at `port` (NetworkPolicy `endPort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

impl PolicyPort {
    /// The inclusive port range this matches.
    pub fn range(&self) -> (u16, u16) {
        match (self.port, self.end_port) {
            (None, _) => (0, u16::MAX),
            (Some(p), None) => (p, p),
            (Some(p), Some(e)) => (p, e),
        }
    }
}

/// What happens to a flow that a policy allowed when a later change no longer allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Established {
    /// It goes on until it ends (Calico's behaviour): the verdict is taken once per flow.
    #[default]
    Keep,
    /// Its conntrack entry is removed when the change is published, so its next packet is
    /// checked against the new rules (and dropped if they deny it).
    Cut,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    #[serde(default)]
    pub established: Established,
}
