//! podswitch's shared model, used by the daemon, `podswitchctl`, the controller and the CNI
//! plugin. It holds plain data and its serialised forms only: no BPF, no packet path.
//!
//! - [`config`]: the node configuration (TOML file, and the parts the control socket takes).
//! - [`protocol`]: the control socket's JSON-lines requests and responses, and a client.
//! - [`Prefix`], [`Mac`]: the address types both of them use.

pub mod config;
pub mod mac;
pub mod prefix;
pub mod protocol;

pub use mac::Mac;
pub use prefix::Prefix;
