//! The podswitch controller: one agent per node, as flanneld and kube-proxy are. It watches
//! the Kubernetes API (Nodes, Services, EndpointSlices, the Pods on its node, and for
//! NetworkPolicy every NetworkPolicy, Namespace and Pod) and
//! programs its node's podswitchd over the control socket: peers the way flannel's kube
//! subnet manager derives them, Services with kube-proxy's semantics, NetworkPolicies
//! compiled into shared address sets and per-pod rules (`policy`).
//!
//! The translation (`netconf`, `template`, `nodes`, `services`, `planner`, `policy`,
//! `selector`) is pure and
//! tested without a cluster; `watch`, `runner`, `daemon`, `annotate` and `status` do I/O.

pub mod annotate;
pub mod daemon;
pub mod netconf;
pub mod nodes;
pub mod planner;
pub mod policy;
pub mod policy_plan;
pub mod policy_sync;
pub mod runner;
pub mod selector;
pub mod services;
pub mod state;
pub mod status;
pub mod template;
pub mod watch;
