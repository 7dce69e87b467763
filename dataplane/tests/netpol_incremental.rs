//! Property: whatever the sequence of address-set and pod-policy changes (rules inserted,
//! removed, replaced, sets changed, removed and added back, pod policies dropped), the
//! policy table built incrementally from the previous one holds exactly the tables of a
//! build from scratch, and its verdicts are those of a plain first-matching-rule scan.

use podswitch::config::services::Protocol;
use podswitch::config::{
    AddressSet, Pod, PodPolicy, PolicyDirection, PolicyPort, PolicyRule, PolicySettings,
};
use podswitch::tables::named::Named;
use podswitch::tables::policy::{Inputs, PolicyTable, build};
use podswitch::tables::snapshot::PolicyConfig;
use proptest::prelude::*;
use std::net::Ipv4Addr;
use std::sync::Arc;

const SETS: usize = 6;
const PODS: usize = 3;

fn set_name(i: usize) -> String {
    format!("s{i}")
}

fn pod_name(i: usize) -> String {
    format!("ns/p{i}")
}

/// Addresses in 10.0.0.0/26, so that sets overlap and probes can cover the space.
fn prefix() -> impl Strategy<Value = String> {
    (0u32..64, 26u8..=32).prop_map(|(a, len)| {
        let ip = Ipv4Addr::from(0x0a00_0000 + a);
        format!("{ip}/{len}")
    })
}

fn address_set(i: usize) -> impl Strategy<Value = AddressSet> {
    (
        prop::collection::vec(prefix(), 0..4),
        prop::collection::vec(prefix(), 0..2),
    )
        .prop_map(move |(p, e)| AddressSet {
            name: set_name(i),
            prefixes: p.iter().map(|s| s.parse().unwrap()).collect(),
            except: e.iter().map(|s| s.parse().unwrap()).collect(),
        })
}

fn port() -> impl Strategy<Value = PolicyPort> {
    (
        any::<bool>(),
        prop::option::of(1u16..12),
        0u16..4,
        any::<bool>(),
    )
        .prop_map(|(tcp, port, span, ranged)| PolicyPort {
            protocol: if tcp { Protocol::Tcp } else { Protocol::Udp },
            port,
            end_port: port.filter(|_| ranged).map(|p| p + span),
        })
}

fn rule() -> impl Strategy<Value = PolicyRule> {
    (
        0u32..4,
        prop::collection::vec(0..SETS, 0..3),
        prop::collection::vec(port(), 0..3),
    )
        .prop_map(|(pol, peers, ports)| PolicyRule {
            policy: format!("ns/pol{pol}"),
            rule: pol,
            peers: peers.into_iter().map(set_name).collect(),
            ports,
        })
}

fn direction() -> impl Strategy<Value = Option<PolicyDirection>> {
    prop::option::weighted(0.8, prop::collection::vec(rule(), 0..10)).prop_map(|r| {
        r.map(|rules| PolicyDirection {
            policies: vec!["ns/pol0".into()],
            rules,
        })
    })
}

/// One change to the configuration.
#[derive(Debug, Clone)]
enum Op {
    SetReplaced(AddressSet),
    SetRemoved(usize),
    RuleInserted(usize, bool, usize, PolicyRule),
    RuleRemoved(usize, bool, usize),
    RuleReplaced(usize, bool, usize, PolicyRule),
    DirectionReplaced(usize, bool, Option<PolicyDirection>),
    PodPolicyRemoved(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let pod = 0..PODS;
    prop_oneof![
        3 => (0..SETS).prop_flat_map(address_set).prop_map(Op::SetReplaced),
        1 => (0..SETS).prop_map(Op::SetRemoved),
        3 => (pod.clone(), any::<bool>(), any::<usize>(), rule())
            .prop_map(|(p, e, at, r)| Op::RuleInserted(p, e, at, r)),
        2 => (pod.clone(), any::<bool>(), any::<usize>())
            .prop_map(|(p, e, at)| Op::RuleRemoved(p, e, at)),
        3 => (pod.clone(), any::<bool>(), any::<usize>(), rule())
            .prop_map(|(p, e, at, r)| Op::RuleReplaced(p, e, at, r)),
        1 => (pod.clone(), any::<bool>(), direction())
            .prop_map(|(p, e, d)| Op::DirectionReplaced(p, e, d)),
        1 => pod.prop_map(Op::PodPolicyRemoved),
    ]
}

fn pods() -> Vec<Pod> {
    (0..PODS)
        .map(|i| Pod {
            name: pod_name(i),
            port: format!("vp{i}"),
            ip: Ipv4Addr::new(10, 244, 1, 10 + i as u8),
            mac: format!("0a:58:0a:f4:01:{:02x}", 10 + i).parse().unwrap(),
            mtu: 1500,
            vlan: None,
            k8s: None,
            attachment: None,
            gso: false,
            tap: None,
        })
        .collect()
}

/// `pod`'s policy after `f` changed it (a pod without one gets an empty one first).
fn edit_pod(cfg: &mut PolicyConfig, pod: usize, f: impl FnOnce(&mut PodPolicy)) {
    let name = pod_name(pod);
    let mut pp = cfg
        .pods
        .get(&name)
        .map(|p| (**p).clone())
        .unwrap_or(PodPolicy {
            pod: name.clone(),
            ingress: None,
            egress: None,
        });
    f(&mut pp);
    cfg.pods.insert(name.into(), Arc::new(pp));
}

fn rules_of(pp: &mut PodPolicy, egress: bool) -> &mut Vec<PolicyRule> {
    let d = if egress {
        &mut pp.egress
    } else {
        &mut pp.ingress
    };
    &mut d
        .get_or_insert_with(|| PolicyDirection {
            policies: vec!["ns/pol0".into()],
            rules: Vec::new(),
        })
        .rules
}

fn apply(cfg: &mut PolicyConfig, op: &Op) {
    match op.clone() {
        Op::SetReplaced(s) => cfg.sets.insert(s.name.as_str().into(), Arc::new(s)),
        Op::SetRemoved(i) => {
            cfg.sets.remove(&set_name(i));
        }
        Op::RuleInserted(p, e, at, r) => edit_pod(cfg, p, |pp| {
            let v = rules_of(pp, e);
            let at = at % (v.len() + 1);
            v.insert(at, r);
        }),
        Op::RuleRemoved(p, e, at) => edit_pod(cfg, p, |pp| {
            let v = rules_of(pp, e);
            if !v.is_empty() {
                let at = at % v.len();
                v.remove(at);
            }
        }),
        Op::RuleReplaced(p, e, at, r) => edit_pod(cfg, p, |pp| {
            let v = rules_of(pp, e);
            if !v.is_empty() {
                let at = at % v.len();
                v[at] = r;
            }
        }),
        Op::DirectionReplaced(p, e, d) => edit_pod(cfg, p, |pp| {
            if e {
                pp.egress = d;
            } else {
                pp.ingress = d;
            }
        }),
        Op::PodPolicyRemoved(p) => {
            cfg.pods.remove(&pod_name(p));
        }
    }
}

/// The first rule of `d` allowing `addr` on `proto`/`port` (`None`: a non-first fragment,
/// any rule), by a scan over the rules.
fn scan(
    cfg: &PolicyConfig,
    d: &PolicyDirection,
    proto: u8,
    port: Option<u16>,
    addr: u32,
) -> Option<u32> {
    let in_set = |name: &String| {
        cfg.sets.get(name).is_some_and(|s| {
            s.prefixes.iter().any(|p| p.contains(addr))
                && !s.except.iter().any(|p| p.contains(addr))
        })
    };
    d.rules
        .iter()
        .position(|r| {
            let ports = match port {
                None => true,
                Some(port) => {
                    r.ports.is_empty()
                        || r.ports.iter().any(|p| {
                            let (lo, hi) = p.range();
                            p.protocol.number() == proto && (lo..=hi).contains(&port)
                        })
                }
            };
            ports && (r.peers.is_empty() || r.peers.iter().any(in_set))
        })
        .map(|i| i as u32)
}

/// Checks `inc` (built incrementally) against a build from scratch of `cfg` and against the
/// scan; returns the errors of the build (the change is then refused, as a publish is).
fn check(inc: &PolicyTable, inc_errs: &[String], cfg: &PolicyConfig, pods: &[Pod]) -> bool {
    let settings = PolicySettings::default();
    let inp = Inputs {
        settings: &settings,
        pods,
        ports: &[],
        policy: cfg,
    };
    let mut errs = Vec::new();
    let full = build(&inp, None, &mut errs);
    let (mut a, mut b) = (inc_errs.to_vec(), errs.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b, "errors differ");
    if !errs.is_empty() {
        return false;
    }
    assert_eq!(inc.pods.len(), full.pods.len());
    for f in &full.pods {
        let i = inc.by_ip(f.ip).expect("pod compiled incrementally");
        assert_eq!(i.source, f.source);
        for (x, y) in [(&i.ingress, &f.ingress), (&i.egress, &f.egress)] {
            match (x, y) {
                (Some(x), Some(y)) => {
                    assert!(x.same_tables(y), "tables differ:\n{x:#?}\n{y:#?}");
                    for proto in [6u8, 17] {
                        for port in (0..16).map(Some).chain([None]) {
                            for addr in (0x0a00_0000..0x0a00_0042).step_by(3) {
                                assert_eq!(
                                    x.check(proto, port, addr),
                                    scan(cfg, x.section(), proto, port, addr),
                                    "proto {proto} port {port:?} addr {addr:#x}"
                                );
                            }
                        }
                    }
                }
                (None, None) => {}
                _ => panic!("direction compiled in one build only"),
            }
        }
    }
    true
}

/// Counts survive a recompilation: a rule kept (shifted by an insertion before it, or
/// naming a set that changed) keeps its count, a new rule starts at zero, and the
/// direction keeps its denials.
#[test]
fn kept_rules_keep_their_counts() {
    let pods = pods();
    let set = |name: &str, p: &str| AddressSet {
        name: name.into(),
        prefixes: vec![p.parse().unwrap()],
        except: vec![],
    };
    let rule = |n: u32, peer: &str| PolicyRule {
        policy: format!("ns/pol{n}"),
        rule: n,
        peers: vec![peer.into()],
        ports: vec![],
    };
    let policy = |rules: Vec<PolicyRule>| PodPolicy {
        pod: pod_name(0),
        ingress: Some(PolicyDirection {
            policies: vec!["ns/pol".into()],
            rules,
        }),
        egress: None,
    };
    let settings = PolicySettings::default();
    let cfg = PolicyConfig {
        sets: Named::from_list(
            vec![set("s0", "10.0.0.0/28"), set("s1", "10.0.0.16/28")],
            |s| &s.name,
        ),
        pods: Named::from_list(vec![policy(vec![rule(0, "s0"), rule(1, "s1")])], |p| &p.pod),
    };
    let inputs = |c| Inputs {
        settings: &settings,
        pods: &pods,
        ports: &[],
        policy: c,
    };
    let mut errs = Vec::new();
    let t0 = build(&inputs(&cfg), None, &mut errs);
    let ip = pods[0].ip.octets();
    let d0 = t0
        .by_ip(ip)
        .and_then(|p| p.ingress.as_ref())
        .expect("compiled");
    for _ in 0..3 {
        d0.count(d0.check(6, Some(80), 0x0a00_0001)); // rule 0
    }
    d0.count(d0.check(6, Some(80), 0x0a00_0011)); // rule 1
    d0.count(d0.check(6, Some(80), 0x0a00_0040)); // denied
    // A rule inserted first, and set s1 changed: both old rules are kept.
    let mut next = cfg.clone();
    next.pods = Named::from_list(
        vec![policy(vec![rule(9, "s1"), rule(0, "s0"), rule(1, "s1")])],
        |p| &p.pod,
    );
    next.sets = Named::from_list(
        vec![set("s0", "10.0.0.0/28"), set("s1", "10.0.0.32/28")],
        |s| &s.name,
    );
    let t1 = build(&inputs(&next), Some((&t0, &cfg)), &mut errs);
    assert!(errs.is_empty(), "{errs:?}");
    let d1 = t1
        .by_ip(ip)
        .and_then(|p| p.ingress.as_ref())
        .expect("compiled");
    let counts: Vec<u64> = d1
        .rules()
        .map(|r| r.allowed.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    assert_eq!(counts, [0, 3, 1]);
    assert_eq!(d1.denied.load(std::sync::atomic::Ordering::Relaxed), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_from_scratch(
        sets in (0..SETS).map(address_set).collect::<Vec<_>>(),
        start in prop::collection::vec(direction(), PODS * 2),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let pods = pods();
        let policies: Vec<PodPolicy> = (0..PODS)
            .map(|i| PodPolicy {
                pod: pod_name(i),
                ingress: start[2 * i].clone(),
                egress: start[2 * i + 1].clone(),
            })
            .collect();
        let mut cfg = PolicyConfig {
            sets: Named::from_list(sets, |s| &s.name),
            pods: Named::from_list(policies, |p| &p.pod),
        };
        let settings = PolicySettings::default();
        let mut errs = Vec::new();
        let mut table = build(
            &Inputs { settings: &settings, pods: &pods, ports: &[], policy: &cfg },
            None,
            &mut errs,
        );
        prop_assert!(errs.is_empty(), "{errs:?}");
        for op in &ops {
            let mut next = cfg.clone();
            apply(&mut next, op);
            let mut errs = Vec::new();
            let t = build(
                &Inputs { settings: &settings, pods: &pods, ports: &[], policy: &next },
                Some((&table, &cfg)),
                &mut errs,
            );
            // A refused change leaves the previous table and configuration in place.
            if check(&t, &errs, &next, &pods) {
                table = t;
                cfg = next;
            }
        }
    }
}
