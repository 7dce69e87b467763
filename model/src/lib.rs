//! podswitch's shared model, used by the daemon, `podswitchctl`, the controller and the CNI
//! plugin. It holds plain data and its serialised forms only: no BPF, no packet path.
//!
//! - [`config`]: the node configuration (TOML file, and the parts the control socket takes).
//! - [`protocol`]: the control socket's JSON-lines requests and responses, and a client.
//! - [`Prefix`], [`Mac`]: the address types both of them use.
//! - [`attachments`]: the CNI plugin's per-attachment records on disk, which podswitchd
//!   reads to restore its pods after a restart.

pub mod attachments;
pub mod config;
pub mod mac;
pub mod prefix;
pub mod protocol;

pub use mac::Mac;
pub use prefix::Prefix;
