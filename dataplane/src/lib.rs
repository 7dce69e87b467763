//! podswitch: a userspace virtual-switch dataplane for Kubernetes nodes.
//!
//! - [`wire`]: zero-copy, bounds-checked header views.
//! - [`config`]: the node configuration file.
//! - [`tables`]: forwarding tables, built by the control side into an immutable snapshot.
//! - [`pipeline`]: named stages over batches of frames (pure: no I/O, locks or allocation).
//! - [`port`]: the port trait and its implementations (in-memory; AF_XDP in the daemon).
//! - [`tools`]: offline replay and trace over the same pipeline.

pub use podswitch_model::config;
pub mod conntrack;
pub mod daemon;
pub mod dump;
mod hugepages;
pub mod limits;
pub mod pipeline;
pub mod port;
mod prefetch;
pub mod tables;
pub mod tools;
pub mod wire;
