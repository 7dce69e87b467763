//! Property: whatever the sequence of creations, affinity records, replies, expiry,
//! eviction and removals, the per-Service chains hold exactly the entries a walk of the
//! whole table finds for each group, and are well formed.

use super::super::groups::{affinity_group, group_of};
use super::*;
use crate::tables::services::frontend_key;
use proptest::prelude::*;

const NODE: [u8; 4] = [192, 168, 1, 10];

#[derive(Clone, Debug)]
enum Op {
    /// A Service connection from client `c` to Service `svc` (a NodePort one when `node`).
    Service {
        c: u16,
        svc: u8,
        udp: bool,
        node: bool,
        established: bool,
    },
    /// A masqueraded connection (in no group).
    Plain { c: u16 },
    /// A ClientIP-affinity record of client `c` for Service port `svc`, for `secs`.
    Affinity { c: u16, svc: u8, secs: u32 },
    /// A reply to the `n`th flow created (it is then never evicted).
    Reply { n: usize },
    /// Time passes.
    Advance { secs: u32 },
    /// Incremental expiry, `budget` slots.
    Expire { budget: usize },
    /// The `n`th flow created is removed, found by its original or reply tuple.
    RemoveFlow { n: usize, by_reply: bool },
    /// Service `svc`'s live entries are removed through its group (a cleanup).
    RemoveGroup { svc: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u16>(), 0u8..6, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(c, svc, udp, node, established)| Op::Service { c, svc, udp, node, established }
        ),
        1 => any::<u16>().prop_map(|c| Op::Plain { c }),
        2 => (0u16..64, 0u8..6, 1u32..200).prop_map(|(c, svc, secs)| Op::Affinity { c, svc, secs }),
        2 => any::<usize>().prop_map(|n| Op::Reply { n }),
        1 => (1u32..400).prop_map(|secs| Op::Advance { secs }),
        1 => (1usize..80).prop_map(|budget| Op::Expire { budget }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(n, by_reply)| Op::RemoveFlow { n, by_reply }),
        1 => (0u8..6).prop_map(|svc| Op::RemoveGroup { svc }),
    ]
}

fn client(c: u16) -> [u8; 4] {
    [10, 244, 1 + (c % 3) as u8, (c >> 8) as u8]
}

fn service_flow(c: u16, svc: u8, udp: bool, node: bool, established: bool) -> NewFlow {
    let proto = if udp {
        ipv4::PROTO_UDP
    } else {
        ipv4::PROTO_TCP
    };
    let (dst, dport) = if node {
        (NODE, 30000 + u16::from(svc))
    } else {
        ([10, 96, 0, 1 + svc], 80)
    };
    let src = client(c);
    let ep = [10, 244, 2, 20 + svc % 2];
    NewFlow {
        orig: FlowKey::new(proto, src, dst, 1024 + (c & 0xff), dport),
        reply: FlowKey::new(proto, ep, src, 8080, 1024 + (c & 0xff)),
        port_range: None,
        flags: flag::SERVICE | if node { flag::SNAT } else { 0 },
        state: if established {
            State::TcpEstablished
        } else {
            State::Unreplied
        },
        bytes: 60,
    }
}

/// Every group a test can make.
fn all_groups() -> Vec<u64> {
    let mut g = Vec::new();
    for svc in 0..6u8 {
        for proto in [ipv4::PROTO_TCP, ipv4::PROTO_UDP] {
            g.push(frontend_key([10, 96, 0, 1 + svc], 80, proto));
            g.push(frontend_key(NODE, 30000 + u16::from(svc), proto));
        }
        g.push(affinity_group(u32::from(svc) + 7));
    }
    g
}

/// Chains well formed and equal, group by group, to what a walk of every slot finds.
fn check(ct: &Conntrack, now: u64) -> Result<(), TestCaseError> {
    let mut chained = 0;
    let mut grouped = 0;
    for sh in ct.shards.iter() {
        let g = sh.0.lock();
        for key in g.groups.groups() {
            let mut prev = NIL;
            let mut at = g.groups.first(key);
            prop_assert_ne!(at, NIL, "group {:#x} has a head but no entry", key);
            let mut n = 0;
            while at != NIL {
                let e = &g.entries[at as usize];
                prop_assert!(e.expires != 0, "free slot {} chained", at);
                prop_assert_eq!(group_of(e), Some(key));
                prop_assert_eq!(e.prev, prev);
                prev = at;
                at = e.next;
                n += 1;
                prop_assert!(n <= g.entries.len(), "cycle in group {:#x}", key);
            }
            chained += n;
        }
        grouped += g
            .entries
            .iter()
            .filter(|e| e.expires != 0 && group_of(e).is_some())
            .count();
    }
    prop_assert_eq!(chained, grouped);
    // One walk of the table, sorted by group; then each group through its chains.
    let mut walked: Vec<(u64, u32, FlowKey)> = ct
        .entries(now)
        .into_iter()
        .filter_map(|(id, e)| group_of(&e).map(|g| (g, id, e.orig)))
        .collect();
    walked.sort();
    for key in all_groups() {
        let mut by_chain = ct.select_groups(now, &[key], |_| true);
        by_chain.sort();
        let by_walk: Vec<(u32, FlowKey)> = walked
            .iter()
            .filter(|w| w.0 == key)
            .map(|w| (w.1, w.2))
            .collect();
        prop_assert_eq!(by_chain, by_walk, "group {:#x}", key);
    }
    let every = ct.select_groups(now, &all_groups(), |_| true).len();
    prop_assert_eq!(every, walked.len(), "entries in groups no test makes");
    Ok(())
}

/// Runs `ops`, checking the chains after every `every`th op and at the end.
fn run(capacity: usize, ops: &[Op], every: usize) -> Result<(), TestCaseError> {
    let t = Timeouts::default();
    let ct = Conntrack::new(capacity);
    let mut now = NS;
    let mut made: Vec<NewFlow> = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        match *op {
            Op::Service {
                c,
                svc,
                udp,
                node,
                established,
            } => {
                let f = service_flow(c, svc, udp, node, established);
                if ct.create(&f, now, &t).is_ok() {
                    made.push(f);
                }
            }
            Op::Plain { c } => {
                let src = client(c);
                let f = NewFlow {
                    orig: FlowKey::new(ipv4::PROTO_TCP, src, [1, 1, 1, 1], c, 443),
                    reply: FlowKey::new(ipv4::PROTO_TCP, [1, 1, 1, 1], NODE, 443, 0),
                    port_range: Some([40000, 40063]),
                    flags: flag::SNAT,
                    state: State::Unreplied,
                    bytes: 60,
                };
                if ct.create(&f, now, &t).is_ok() {
                    made.push(f);
                }
            }
            Op::Affinity { c, svc, secs } => {
                let key = FlowKey::new(
                    ipv4::PROTO_TCP,
                    client(c),
                    (u32::from(svc) + 7).to_be_bytes(),
                    0,
                    0,
                );
                ct.affinity_set(&key, ([10, 244, 2, 20], 8080), secs, now);
            }
            Op::Reply { n } => {
                if !made.is_empty() {
                    let f = made[n % made.len()];
                    // The reply tuple may have been remapped: look the flow up by its
                    // original tuple and answer to what the entry holds.
                    if let Some(h) = ct.peek(&f.orig, now) {
                        ct.lookup(&h.entry.reply, 0, 60, now, &t);
                    }
                }
            }
            Op::Advance { secs } => now += u64::from(secs) * NS,
            Op::Expire { budget } => {
                ct.expire(now, budget);
            }
            Op::RemoveFlow { n, by_reply } => {
                if !made.is_empty() {
                    let f = made[n % made.len()];
                    let key = match ct.peek(&f.orig, now) {
                        Some(h) if by_reply => h.entry.reply,
                        _ => f.orig,
                    };
                    ct.remove_flow(&key);
                }
            }
            Op::RemoveGroup { svc } => {
                let groups = [
                    frontend_key([10, 96, 0, 1 + svc], 80, ipv4::PROTO_TCP),
                    affinity_group(u32::from(svc) + 7),
                ];
                let victims = ct.select_groups(now, &groups, |_| true);
                ct.remove_entries(&victims);
            }
        }
        if n % every == every - 1 || n == ops.len() - 1 {
            check(&ct, now)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// One small shard: full tables, eviction and slot reuse happen often.
    #[test]
    fn chains_equal_walk_one_small_shard(ops in proptest::collection::vec(op(), 1..300)) {
        run(48, &ops, 1)?;
    }

    /// Several shards: entries and their reply tuples in different shards (a check scans
    /// every shard's heads: every 25 ops here).
    #[test]
    fn chains_equal_walk_many_shards(ops in proptest::collection::vec(op(), 1..300)) {
        run(100_000, &ops, 25)?;
    }
}
