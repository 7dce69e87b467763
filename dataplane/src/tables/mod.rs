//! Forwarding tables and the immutable snapshot the pipeline reads.
//!
//! The control side turns a [`NodeConfig`](crate::config::NodeConfig) into a [`Snapshot`]
//! (`build`); the daemon publishes it (with port ownership) through `daemon::view::ViewCell`
//! and workers load one snapshot per loop iteration.

pub mod build;
pub mod cow;
pub mod fasthash;
pub mod health_check;
pub mod lpm;
pub mod maglev;
pub mod named;
pub mod policy;
mod policy_compile;
pub mod policy_dump;
pub mod services;
pub mod snapshot;

pub use snapshot::{PeerEntry, PortEntry, PortId, PortKind, RouteEntry, RouteTarget, Snapshot};
