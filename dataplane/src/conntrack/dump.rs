//! The conntrack dump: one line per connection in a stable order (protocol, then original
//! tuple), volatile fields last so tests can strip them; and the same as JSON.

use super::key::{FlowKey, flag};
use super::table::{Conntrack, Entry};
use serde_json::{Value, json};

const NS: u64 = 1_000_000_000;

fn sorted(ct: &Conntrack, now: u64) -> Vec<Entry> {
    let mut v: Vec<Entry> = ct
        .entries(now)
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| e.flags & flag::AFFINITY == 0)
        .collect();
    v.sort_by_key(|e| (e.orig, e.reply));
    v
}

/// Whole seconds left, rounded down as the kernel's conntrack listing does (a fresh
/// 86400 s entry shows 86399).
fn remaining(e: &Entry, now: u64) -> u64 {
    e.expires.saturating_sub(now).saturating_sub(1) / NS
}

/// `tcp orig=(src=..,dst=..,sport=..,dport=..) reply=(...) state=ESTABLISHED timeout=86399 packets=12 bytes=3480`
pub fn line(e: &Entry, now: u64) -> String {
    format!(
        "{} orig=({}) reply=({}) state={} timeout={} packets={} bytes={}",
        e.orig.proto_name(),
        e.orig.fields(),
        e.reply.fields(),
        e.state.name(),
        remaining(e, now),
        e.packets,
        e.bytes
    )
}

/// The text dump (one line per connection, each ending in a newline).
pub fn text(ct: &Conntrack, now: u64) -> String {
    sorted(ct, now)
        .iter()
        .map(|e| line(e, now) + "\n")
        .collect()
}

fn tuple(k: &FlowKey) -> Value {
    json!({
        "src": std::net::Ipv4Addr::from(k.src).to_string(),
        "dst": std::net::Ipv4Addr::from(k.dst).to_string(),
        "sport": k.sport,
        "dport": k.dport,
    })
}

/// The JSON dump: `{"entries": [...], "stats": {...}}`.
pub fn json(ct: &Conntrack, now: u64) -> Value {
    let entries: Vec<Value> = sorted(ct, now)
        .iter()
        .map(|e| {
            json!({
                "proto": e.orig.proto_name(),
                "orig": tuple(&e.orig),
                "reply": tuple(&e.reply),
                "service": e.flags & flag::SERVICE != 0,
                "snat": e.flags & flag::SNAT != 0,
                "state": e.state.name(),
                "timeout": remaining(e, now),
                "packets": e.packets,
                "bytes": e.bytes,
            })
        })
        .collect();
    json!({ "entries": entries, "stats": ct.stats() })
}
