//! NetworkPolicy compilation against the upstream e2e model (namespaces x, y, z with pods
//! a, b, c labelled pod=<name>, servers on 80 and 81 over TCP and UDP with named ports):
//! each case compiles API-shaped JSON, evaluates every pair the way the dataplane does
//! (egress at the source, ingress at the destination) and compares the truth table with
//! the expected one, printing both on a difference.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use podswitch_controller::policy::{Compiled, PodFacts, compile};
use podswitch_model::config::PolicyDirection;
use podswitch_model::config::services::Protocol;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

const NS: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];

fn ip(ns: usize, pod: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, (10 * (ns + 1) + pod) as u8)
}

fn pod_json(ns: usize, pod: usize, node: &str, ports: Value) -> Value {
    json!({
        "metadata": {"name": PODS[pod], "namespace": NS[ns], "labels": {"pod": PODS[pod]}},
        "spec": {"nodeName": node, "containers": [{"name": "srv", "ports": ports}]},
        "status": {"phase": "Running", "podIP": ip(ns, pod).to_string()},
    })
}

fn model_ports() -> Value {
    json!([
        {"name": "serve-80-tcp", "containerPort": 80, "protocol": "TCP"},
        {"name": "serve-81-tcp", "containerPort": 81, "protocol": "TCP"},
        {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"},
        {"name": "serve-81-udp", "containerPort": 81, "protocol": "UDP"},
    ])
}

/// The model's nine pods, all on node1; `tweak` may change one pod's JSON.
fn model(tweak: impl Fn(usize, usize, &mut Value)) -> Vec<PodFacts> {
    let mut v = Vec::new();
    for n in 0..3 {
        for p in 0..3 {
            let mut j = pod_json(n, p, "node1", model_ports());
            tweak(n, p, &mut j);
            let pod: Pod = serde_json::from_value(j).unwrap();
            v.push(PodFacts::of(&pod));
        }
    }
    v
}

fn namespaces() -> BTreeMap<String, BTreeMap<String, String>> {
    NS.iter()
        .map(|n| {
            (
                n.to_string(),
                BTreeMap::from([
                    ("ns".to_string(), n.to_string()),
                    ("kubernetes.io/metadata.name".to_string(), n.to_string()),
                ]),
            )
        })
        .collect()
}

fn np(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
        .unwrap()
}

fn in_set(c: &Compiled, set: &str, a: Ipv4Addr) -> bool {
    let s = c.sets.get(set).unwrap_or_else(|| panic!("no set {set}"));
    let a = u32::from(a);
    s.prefixes.iter().any(|p| p.contains(a)) && !s.except.iter().any(|p| p.contains(a))
}

/// One direction as the dataplane judges it: absent = open; else some rule matches.
fn dir_allows(
    c: &Compiled,
    d: Option<&PolicyDirection>,
    peer: Ipv4Addr,
    proto: Protocol,
    port: u16,
) -> bool {
    let Some(d) = d else { return true };
    d.rules.iter().any(|r| {
        (r.peers.is_empty() || r.peers.iter().any(|s| in_set(c, s, peer)))
            && (r.ports.is_empty()
                || r.ports.iter().any(|p| {
                    let (lo, hi) = p.range();
                    p.protocol == proto && (lo..=hi).contains(&port)
                }))
    })
}

fn allowed(c: &Compiled, src: (usize, usize), dst: Ipv4Addr, proto: Protocol, port: u16) -> bool {
    let sname = format!("{}/{}", NS[src.0], PODS[src.1]);
    let sp = c.pods.get(&sname);
    let egress = dir_allows(c, sp.and_then(|p| p.egress.as_ref()), dst, proto, port);
    // The destination's ingress, when it is one of the model's pods.
    let dp = (0..3)
        .flat_map(|n| (0..3).map(move |p| (n, p)))
        .find(|(n, p)| ip(*n, *p) == dst)
        .and_then(|(n, p)| c.pods.get(&format!("{}/{}", NS[n], PODS[p])));
    let ingress = dir_allows(
        c,
        dp.and_then(|p| p.ingress.as_ref()),
        ip(src.0, src.1),
        proto,
        port,
    );
    egress && ingress
}

fn label(n: usize, p: usize) -> String {
    format!("{}/{}", NS[n], PODS[p])
}

fn table(f: impl Fn((usize, usize), (usize, usize)) -> bool) -> String {
    let mut s = String::from("     ");
    for n in 0..3 {
        for p in 0..3 {
            s += &format!(" {}", label(n, p));
        }
    }
    s.push('\n');
    for sn in 0..3 {
        for sp in 0..3 {
            s += &label(sn, sp);
            s += "  ";
            for dn in 0..3 {
                for dp in 0..3 {
                    s += if f((sn, sp), (dn, dp)) {
                        "  .  "
                    } else {
                        "  X  "
                    };
                }
            }
            s.push('\n');
        }
    }
    s
}

/// Compares the reachability of every pair on (proto, port) with `expect`.
fn check(
    case: &str,
    c: &Compiled,
    proto: Protocol,
    port: u16,
    expect: impl Fn((usize, usize), (usize, usize)) -> bool,
) {
    assert!(c.rejections.is_empty(), "{case}: {:?}", c.rejections);
    let got = table(|s, d| allowed(c, s, ip(d.0, d.1), proto, port));
    let want = table(expect);
    assert_eq!(
        got,
        want,
        "{case} {}/{port}: probed (left) vs expected (right)\n{got}\n{want}",
        proto.as_str()
    );
}

fn run(pols: &[NetworkPolicy], pods: &[PodFacts]) -> Compiled {
    compile(pols, pods, &namespaces(), "node1")
}

#[test]
fn no_policy_allows_everything() {
    let c = run(&[], &model(|_, _, _| {}));
    assert!(c.pods.is_empty() && c.sets.is_empty());
    check("none", &c, Protocol::Tcp, 80, |_, _| true);
}

#[test]
fn deny_all_ingress() {
    let c = run(
        &[np(
            "x",
            "deny",
            json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        )],
        &model(|_, _, _| {}),
    );
    check("deny-all ingress", &c, Protocol::Tcp, 80, |_, d| d.0 != 0);
    let xa = &c.pods["x/a"];
    assert_eq!(xa.ingress.as_ref().unwrap().policies, ["x/deny"]);
    assert!(xa.ingress.as_ref().unwrap().rules.is_empty() && xa.egress.is_none());
}

#[test]
fn deny_all_egress() {
    let c = run(
        &[np(
            "y",
            "deny",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        )],
        &model(|_, _, _| {}),
    );
    check("deny-all egress", &c, Protocol::Udp, 81, |s, _| s.0 != 1);
}

#[test]
fn allow_from_same_namespace() {
    let c = run(
        &[np(
            "x",
            "same-ns",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        )],
        &model(|_, _, _| {}),
    );
    check("same namespace", &c, Protocol::Tcp, 80, |s, d| {
        d.0 != 0 || s.0 == 0
    });
}

#[test]
fn namespace_and_pod_selector_and_versus_or() {
    let pods = model(|_, _, _| {});
    let and = run(
        &[np(
            "x",
            "and",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        )],
        &pods,
    );
    check("AND", &and, Protocol::Tcp, 80, |s, d| {
        d != (0, 0) || s == (1, 1)
    });
    let or = run(
        &[np(
            "x",
            "or",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"ns": "y"}}},
                {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        )],
        &pods,
    );
    check("OR", &or, Protocol::Tcp, 80, |s, d| {
        d != (0, 0) || s.0 == 1 || s == (0, 1)
    });
    // matchExpressions: from every namespace but z, pods a or c.
    let expr = run(
        &[np(
            "x",
            "expr",
            json!({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Exists"}]},
                   "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                       {"key": "ns", "operator": "NotIn", "values": ["z"]}]},
                   "podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "c"]},
                                                        {"key": "legacy", "operator": "DoesNotExist"}]}}]}]}),
        )],
        &pods,
    );
    check("matchExpressions", &expr, Protocol::Tcp, 80, |s, d| {
        d.0 != 0 || (s.0 != 2 && s.1 != 1)
    });
}

#[test]
fn ip_block_with_except() {
    let c = run(
        &[np(
            "x",
            "block",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
                {"ipBlock": {"cidr": "10.244.1.0/24", "except": [format!("{}/32", ip(1, 1))]}}]}]}),
        )],
        &model(|_, _, _| {}),
    );
    check("ipBlock except", &c, Protocol::Tcp, 80, |s, d| {
        d != (0, 0) || s != (1, 1)
    });
    let set = c.sets.values().next().unwrap();
    assert_eq!(c.sets.len(), 1);
    assert!(set.name.starts_with("ipblock-"), "{}", set.name);
}

#[test]
fn named_ports_for_ingress_and_egress() {
    // x/c serves "serve-80-tcp" on 8080: egress to the name must resolve per peer pod.
    let pods = model(|n, p, j| {
        if (n, p) == (0, 2) {
            j["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(8080);
        }
    });
    let ing = run(
        &[np(
            "x",
            "named",
            json!({"podSelector": {"matchLabels": {"pod": "a"}},
                   "ingress": [{"ports": [{"port": "serve-81-tcp"}, {"port": "serve-81-udp", "protocol": "UDP"}]}]}),
        )],
        &pods,
    );
    check("named ingress 80", &ing, Protocol::Tcp, 80, |_, d| {
        d != (0, 0)
    });
    check("named ingress 81", &ing, Protocol::Tcp, 81, |_, _| true);
    check("named ingress 81/udp", &ing, Protocol::Udp, 81, |_, _| true);
    let eg = run(
        &[np(
            "y",
            "named",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
                "to": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}],
                "ports": [{"port": "serve-80-tcp"}]}]}),
        )],
        &pods,
    );
    check("named egress 80", &eg, Protocol::Tcp, 80, |s, d| {
        s.0 != 1 || (d.0 == 0 && d.1 != 2)
    });
    check("named egress 8080", &eg, Protocol::Tcp, 8080, |s, d| {
        s.0 != 1 || d == (0, 2)
    });
    // One rule split in two (80 and 8080), both naming the policy's rule 0.
    let rules = &eg.pods["y/a"].egress.as_ref().unwrap().rules;
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules.iter().all(|r| r.rule == 0 && r.policy == "y/named"));
    // A name that no pod exposes matches nothing (and is no error).
    let none = run(
        &[np(
            "x",
            "nothing",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": "no-such-port"}]}]}),
        )],
        &pods,
    );
    check("unknown name", &none, Protocol::Tcp, 80, |_, d| d.0 != 0);
}

#[test]
fn end_port_range() {
    let c = run(
        &[np(
            "x",
            "range",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 81}]}]}),
        )],
        &model(|_, _, _| {}),
    );
    check("endPort 80", &c, Protocol::Tcp, 80, |_, _| true);
    check("endPort 81", &c, Protocol::Tcp, 81, |_, _| true);
    check("endPort udp", &c, Protocol::Udp, 80, |_, d| d.0 != 0);
    check("endPort 82", &c, Protocol::Tcp, 82, |_, d| d.0 != 0);
}

#[test]
fn egress_only_to_dns() {
    let c = run(
        &[np(
            "x",
            "dns",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [
                {"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}),
        )],
        &model(|_, _, _| {}),
    );
    check("dns only 80", &c, Protocol::Tcp, 80, |s, _| s.0 != 0);
    let dns = Ipv4Addr::new(10, 96, 0, 10);
    for p in [Protocol::Udp, Protocol::Tcp] {
        assert!(allowed(&c, (0, 0), dns, p, 53));
    }
    assert!(!allowed(&c, (0, 0), dns, Protocol::Udp, 54));
    // Default policyTypes: Ingress (no ingress rules: deny) plus Egress (it has rules).
    let d = run(
        &[np(
            "x",
            "both",
            json!({"podSelector": {}, "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}),
        )],
        &model(|_, _, _| {}),
    );
    assert!(d.pods["x/a"].ingress.is_some() && d.pods["x/a"].egress.is_some());
}

#[test]
fn union_of_policies_and_shared_sets() {
    let pods = model(|_, _, _| {});
    let from_b = json!({"podSelector": {"matchLabels": {"pod": "b"}}});
    let c = run(
        &[
            np(
                "x",
                "p1",
                json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [from_b]}]}),
            ),
            np(
                "x",
                "p2",
                json!({"podSelector": {}, "ingress": [{"from": [from_b]}, {"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
            ),
        ],
        &pods,
    );
    check("union", &c, Protocol::Tcp, 80, |s, d| {
        d.0 != 0 || s == (0, 1) || s.0 == 2
    });
    let xa = c.pods["x/a"].ingress.as_ref().unwrap();
    assert_eq!(xa.policies, ["x/p1", "x/p2"]);
    // The same peer in two policies is one set.
    assert_eq!(xa.rules[0].peers, xa.rules[1].peers);
    assert_eq!(c.sets.len(), 2);
    // A label change changes the set's content, not its name.
    let relabelled = model(|n, p, j| {
        if (n, p) == (0, 2) {
            j["metadata"]["labels"]["pod"] = json!("b");
        }
    });
    let c2 = run(
        &[np(
            "x",
            "p1",
            json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [from_b]}]}),
        )],
        &relabelled,
    );
    let set = &xa.rules[0].peers[0];
    assert_eq!(
        c2.pods["x/a"].ingress.as_ref().unwrap().rules[0].peers[0],
        *set
    );
    assert_eq!(c.sets[set].prefixes.len(), 1);
    assert_eq!(c2.sets[set].prefixes.len(), 2);
}

#[test]
fn only_this_nodes_pods_and_only_addressed_pods() {
    let pods = model(|n, p, j| {
        if n == 1 {
            j["spec"]["nodeName"] = json!("node2");
        }
        if (n, p) == (2, 2) {
            j["spec"]["hostNetwork"] = json!(true);
        }
        if (n, p) == (2, 1) {
            j["status"]["phase"] = json!("Succeeded");
        }
    });
    let c = run(
        &[
            np(
                "y",
                "deny",
                json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            ),
            np(
                "x",
                "from-z",
                json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
            ),
        ],
        &pods,
    );
    // y's pods are on node2: nothing compiled for them here.
    assert!(
        c.pods.keys().all(|k| k.starts_with("x/")),
        "{:?}",
        c.pods.keys()
    );
    let set = &c.pods["x/a"].ingress.as_ref().unwrap().rules[0].peers[0];
    assert_eq!(
        c.sets[set].prefixes,
        vec![format!("{}/32", ip(2, 0)).parse().unwrap()]
    );
}

#[test]
fn bad_policies_are_reported_and_skipped_alone() {
    let pods = model(|_, _, _| {});
    let good = np(
        "x",
        "good",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    let cases = [
        (
            json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}]}]}),
            "ingress rule 0: ipBlock except 10.1.0.0/24 is outside its cidr 10.0.0.0/16",
        ),
        (
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "SCTP"}]}]}),
            "ingress rule 0: protocol SCTP is not supported",
        ),
        (
            json!({"podSelector": {}, "egress": [{"ports": [{"port": 80, "protocol": "QUIC"}]}]}),
            "egress rule 0: unknown protocol \"QUIC\"",
        ),
        (
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}),
            "ingress rule 0: endPort 80 is below port 90",
        ),
        (
            json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}),
            "podSelector: matchExpressions \"a\": unknown operator \"Near\"",
        ),
    ];
    for (spec, reason) in cases {
        let c = run(&[np("y", "bad", spec), good.clone()], &pods);
        assert_eq!(c.rejections.len(), 1, "{reason}");
        let r = &c.rejections[0];
        assert_eq!(
            (r.kind.as_str(), r.name.as_str(), r.reason.as_str()),
            ("NetworkPolicy", "y/bad", reason)
        );
        assert_eq!(c.policies, 1);
        assert!(c.pods.keys().all(|k| k.starts_with("x/")) && c.pods.len() == 3);
    }
    // Selectors that match nothing are fine: the set is empty, the pod isolated.
    let c = run(
        &[np(
            "x",
            "nobody",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "q"}}}]}]}),
        )],
        &pods,
    );
    check("matches nothing", &c, Protocol::Tcp, 80, |_, d| d.0 != 0);
}
