//! Connection tracking for Service NAT and masquerade.
//!
//! # Design: one shared, sharded table
//!
//! Both directions of a flow must find the same entry whichever worker receives them. The
//! two ways to get there are (a) per-worker tables plus flow steering (hand each packet to
//! the worker owning its flow) and (b) one table shared by all workers. podswitch uses (b):
//!
//! - Steering cannot be done by the NICs here: pod ports are veths (one queue, copy mode),
//!   the reply of a translated flow has a different 5-tuple (and arrives VXLAN-encapsulated
//!   with an outer hash of its own), so the owner would have to be found in software and the
//!   packet passed over a cross-core ring: a copy or a frame hand-off, a second poll, and
//!   reordering between the handed-off and local packets of a flow.
//! - A shared table costs one uncontended lock per packet (an atomic swap in and out, about
//!   20 ns with parking_lot) with at most a few workers per node, and the lock is per shard
//!   (up to 16 shards, cache-line padded), so two workers rarely meet on one; few enough
//!   that a large table's per-shard storage can be backed by 2 MiB huge pages.
//!
//! Each shard holds a fixed-capacity open-addressing index (key -> entry id) and a slab of
//! entries, all reserved when the table is created: nothing is allocated per packet. An
//! entry lives in the shard of its original tuple; its reply tuple is indexed in the shard
//! that tuple hashes to. A lookup locks one shard, or, when the entry lives elsewhere,
//! releases it and locks the owner (re-checking the tuple). Creation and removal lock the two
//! shards in index order. The hash is keyed with a per-table random seed (packets choose the
//! keys).
//!
//! Capacity is a hard cap split evenly over the shards. When a shard is full, a bounded scan
//! looks for an expired entry or one that never saw a reply to evict; if there is none the
//! new flow is refused (`conntrack_full`) and established flows are never evicted. Expiry is
//! incremental: each batch examines a bounded number of slots of one shard.
//!
//! Service connections and affinity records are also chained per Service group (frontend,
//! or affinity tag) within their shard (`groups`): the chains are kept where entries are
//! created and removed, under the same lock, and let the cleanup after a Service change
//! visit that Service's entries without walking the table.

mod dump;
mod groups;
mod index;
mod key;
pub mod policy_cut;
mod stale;
mod table;
pub mod tcp;

pub use dump::{json as dump_json, line as dump_line, text as dump_text};
pub use key::{Dir, FlowKey, State, flag};
pub use stale::{ChangedServices, affinity_tag, cleanup as cleanup_stale, cleanup_changed};
pub use table::{Conntrack, CreateError, Created, CtStats, Entry, Hit, NewFlow, Tracked};
