//! The table dumps: every flow line counts the frames it matched, and every `-o json` dump
//! follows one style (addresses, prefixes and MACs as strings, ports by name, absent
//! values null), with the fields README documents per table.

use podswitch::dump;
use podswitch_packet_tests::*;
use serde_json::Value;

/// Same-node traffic of every kind the flow dump has a line for: ARP for the gateway, ARP
/// for a pod, an ARP reply between pods, bridged and routed IPv4.
fn same_node_frames() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (POD_A_PORT, arp_request(POD_A_MAC, POD_A, GATEWAY)),
        (POD_A_PORT, arp_request(POD_A_MAC, POD_A, POD_C)),
        (
            POD_C_PORT,
            arp_frame(
                POD_C_MAC,
                POD_A_MAC,
                etherparse::ArpOperation::REPLY,
                POD_C_MAC,
                POD_C,
                POD_A_MAC,
                POD_A,
            ),
        ),
        (
            POD_A_PORT,
            eth_ip(
                POD_A_MAC,
                POD_C_MAC,
                &Ip::new(POD_A, POD_C),
                &L4::udp(40000, 53, 64),
            ),
        ),
        (
            POD_A_PORT,
            eth_ip(
                POD_A_MAC,
                POD_C_MAC,
                &Ip::new(POD_A, POD_C),
                &L4::udp(40000, 53, 64),
            ),
        ),
        (
            POD_A_PORT,
            from_pod_a(&Ip::new(POD_A, POD_B), &L4::udp(40000, 53, 100)),
        ),
    ]
}

/// (packets, bytes) of the flow line whose match is `m`.
fn flow(text: &str, m: &str) -> (u64, u64) {
    let line = text
        .lines()
        .find(|l| l.split(" actions:").next() == Some(m))
        .unwrap_or_else(|| panic!("no flow line matching {m}:\n{text}"));
    let num = |k: &str| -> u64 {
        line.split(k)
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (num(" packets:"), num(" bytes:"))
}

#[test]
fn every_flow_line_counts_what_it_matched() {
    for cfg in ["node1-vxlan", "node1-host-gw"] {
        let snap = snapshot(cfg);
        let frames = same_node_frames();
        let r = replay_frames(&snap, &frames);
        assert_eq!(r.total_drops(), 0, "{cfg}: {:?}", r.out.verdicts);
        let (text, json) = dump::flows(&snap, Some(&r.out.pipeline.counters));
        let len = |i: usize| frames[i].1.len() as u64;
        assert_eq!(
            flow(&text, "eth_type(0x0806),arp(op=request,tip=10.244.1.1)"),
            (1, len(0)),
            "{cfg}: the gateway's ARP reply"
        );
        assert_eq!(
            flow(&text, "eth_type(0x0806),arp(op=request,tip=10.244.1.0/24)"),
            (1, len(1)),
            "{cfg}: a request for pod C, delivered to it"
        );
        assert_eq!(
            flow(&text, "eth_type(0x0806),arp(op=reply)"),
            (1, len(2)),
            "{cfg}: pod C's reply, bridged"
        );
        assert_eq!(
            flow(&text, "eth(dst=0a:58:0a:f4:01:0b)"),
            (2, len(3) + len(4)),
            "{cfg}: bridged to pod C"
        );
        assert_eq!(flow(&text, "eth(dst=0a:58:0a:f4:01:0a)"), (0, 0), "{cfg}");
        let routed = text
            .lines()
            .find(|l| l.contains("ipv4(dst=10.244.2.0/24)"))
            .unwrap();
        assert!(
            routed.ends_with(&format!(" packets:1 bytes:{}", len(5))),
            "{routed}"
        );
        // Every frame is counted by exactly one line, in the text and in the JSON.
        let total: u64 = json
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["packets"].as_u64().unwrap())
            .sum();
        assert_eq!(total, frames.len() as u64, "{cfg}:\n{text}");
        let text_total: u64 = text
            .lines()
            .map(|l| {
                l.split(" packets:")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
            })
            .map(|n| n.parse::<u64>().unwrap())
            .sum();
        assert_eq!(text_total, total);
    }
}

#[test]
fn flow_counters_of_an_older_snapshot_are_not_shown() {
    let snap = snapshot("node1-vxlan");
    let r = replay_frames(&snap, &same_node_frames());
    let mut c = r.out.pipeline.counters.clone();
    c.generation += 1;
    let (text, _) = dump::flows(&snap, Some(&c));
    // Per-entry lines are of another generation; the ARP lines do not depend on it.
    assert_eq!(flow(&text, "eth(dst=0a:58:0a:f4:01:0b)"), (0, 0));
    assert_eq!(
        flow(&text, "eth_type(0x0806),arp(op=request,tip=10.244.1.1)").0,
        1
    );
}

// ---- JSON style and schema ------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    Num,
    Bool,
    Addr,
    Prefix,
    Mac,
    /// A switch port, by name.
    Port,
    List,
    Obj,
}

fn is_ip(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

fn is_mac(s: &str) -> bool {
    s.len() == 17
        && s.split(':').count() == 6
        && s.split(':')
            .all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok())
        && s != "00:00:00:00:00:00"
}

fn check_value(ctx: &str, v: &Value, ty: Ty, ports: &[String]) {
    let ok = match (ty, v) {
        (Ty::Str, Value::String(s)) => !s.is_empty() && s != "-",
        (Ty::Num, Value::Number(_)) => true,
        (Ty::Bool, Value::Bool(_)) => true,
        (Ty::Addr, Value::String(s)) => is_ip(s),
        (Ty::Prefix, Value::String(s)) => s
            .split_once('/')
            .is_some_and(|(a, l)| is_ip(a) && l.parse::<u8>().is_ok_and(|l| l <= 32)),
        (Ty::Mac, Value::String(s)) => is_mac(s),
        (Ty::Port, Value::String(s)) => ports.contains(s),
        (Ty::List, Value::Array(_)) => true,
        (Ty::Obj, Value::Object(_)) => true,
        _ => false,
    };
    assert!(ok, "{ctx}: {v} is not a {ty:?}");
}

/// No byte arrays (an address as [192,168,1,1]), no all-zero MACs, no "-" placeholders,
/// anywhere in a dump.
fn check_style(ctx: &str, v: &Value) {
    match v {
        Value::Array(a) => {
            let bytes = (a.len() == 4 || a.len() == 6)
                && a.iter().all(|x| x.as_u64().is_some_and(|n| n <= 255));
            assert!(!bytes, "{ctx}: {v} looks like an address as a byte array");
            for (i, x) in a.iter().enumerate() {
                check_style(&format!("{ctx}[{i}]"), x);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                check_style(&format!("{ctx}.{k}"), x);
            }
        }
        Value::String(s) => {
            assert!(
                s != "00:00:00:00:00:00" && s != "-" && s != "0.0.0.0",
                "{ctx}: {s:?}"
            );
        }
        _ => {}
    }
}

/// Every row of `rows` has exactly `fields`: (name, type, nullable).
fn check_rows(table: &str, rows: &Value, fields: &[(&str, Ty, bool)], ports: &[String]) {
    let rows = rows
        .as_array()
        .unwrap_or_else(|| panic!("{table}: not a list: {rows}"));
    assert!(!rows.is_empty(), "{table}: no rows");
    for (i, r) in rows.iter().enumerate() {
        let o = r.as_object().unwrap_or_else(|| panic!("{table}[{i}]: {r}"));
        let mut want: Vec<&str> = fields.iter().map(|f| f.0).collect();
        want.sort();
        let mut have: Vec<&str> = o.keys().map(String::as_str).collect();
        have.sort();
        assert_eq!(have, want, "{table}[{i}]: fields of {r}");
        for (name, ty, nullable) in fields {
            let v = &o[*name];
            if v.is_null() {
                assert!(nullable, "{table}[{i}].{name} is null: {r}");
            } else {
                check_value(&format!("{table}[{i}].{name}"), v, *ty, ports);
            }
        }
    }
}

#[test]
fn json_dumps_share_one_style_and_the_documented_fields() {
    use Ty::*;
    let snap = snapshot("node1-vxlan-services");
    let ports: Vec<String> = snap.ports.iter().map(|p| p.name.clone()).collect();
    // Some traffic, so that conntrack has an entry: pod A to the ClusterIP.
    let syn = from_pod_a(&Ip::new(POD_A, [10, 96, 0, 10]), &L4::syn(1460));
    let r = replay_frames(&snap, &[(POD_A_PORT, syn)]);
    let counters = &r.out.pipeline.counters;
    let mut seen = Vec::new();
    for (table, _) in dump::TABLES {
        let json = match *table {
            "conntrack" => {
                let ct = r.out.pipeline.conntrack().expect("a conntrack table");
                podswitch::conntrack::dump_json(ct, 0)
            }
            t => {
                dump::snapshot_table(&snap, t, Some(counters))
                    .unwrap_or_else(|| panic!("no dump for {t}"))
                    .1
            }
        };
        check_style(table, &json);
        match *table {
            "ports" => check_rows(
                table,
                &json,
                &[
                    ("id", Num, false),
                    ("name", Str, false),
                    ("kind", Str, false),
                    ("mac", Mac, false),
                    ("ip", Addr, true),
                    ("mtu", Num, false),
                    ("vlan", Num, true),
                    ("label", Str, true),
                ],
                &ports,
            ),
            "macs" => check_rows(
                table,
                &json,
                &[
                    ("mac", Mac, false),
                    ("port", Port, true),
                    ("target", Str, false),
                ],
                &ports,
            ),
            "fib" => {
                check_rows(
                    table,
                    &json,
                    &[
                        ("prefix", Prefix, false),
                        ("target", Str, false),
                        ("pod", Str, true),
                        ("peer", Str, true),
                        ("via", Addr, true),
                        ("out_port", Port, true),
                        ("src_mac", Mac, true),
                        ("dst_mac", Mac, true),
                        ("mtu", Num, true),
                        ("origin", Str, false),
                    ],
                    &ports,
                );
                // The local entries (gateway) have no out port, MACs nor MTU: null.
                let gw = json
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["target"] == "gateway")
                    .unwrap();
                for k in ["out_port", "src_mac", "dst_mac", "mtu"] {
                    assert!(gw[k].is_null(), "gateway {k}: {gw}");
                }
                let via = json
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["target"] == "via");
                if let Some(via) = via {
                    assert!(via["via"].is_string(), "{via}");
                }
            }
            "neighbours" => check_rows(
                table,
                &json,
                &[
                    ("ip", Addr, false),
                    ("mac", Mac, false),
                    ("origin", Str, false),
                ],
                &ports,
            ),
            "tunnels" => check_rows(
                table,
                &json,
                &[
                    ("name", Str, false),
                    ("address", Addr, false),
                    ("pod_cidr", Prefix, false),
                    ("overlay", Str, false),
                    ("vtep_mac", Mac, true),
                    ("underlay_mac", Mac, true),
                    ("mtu", Num, false),
                ],
                &ports,
            ),
            "flows" => check_rows(
                table,
                &json,
                &[
                    ("match", Str, false),
                    ("actions", Str, false),
                    ("packets", Num, false),
                    ("bytes", Num, false),
                ],
                &ports,
            ),
            "services" => check_rows(
                table,
                &json,
                &[
                    ("service", Str, false),
                    ("frontend", Str, false),
                    ("endpoints", List, false),
                    ("flags", List, false),
                ],
                &ports,
            ),
            "conntrack" => {
                check_value("conntrack.stats", &json["stats"], Obj, &ports);
                let tuple = |v: &Value| {
                    check_rows(
                        "conntrack tuple",
                        &Value::Array(vec![v.clone()]),
                        &[
                            ("src", Addr, false),
                            ("dst", Addr, false),
                            ("sport", Num, false),
                            ("dport", Num, false),
                        ],
                        &ports,
                    )
                };
                check_rows(
                    table,
                    &json["entries"],
                    &[
                        ("proto", Str, false),
                        ("orig", Obj, false),
                        ("reply", Obj, false),
                        ("service", Bool, false),
                        ("snat", Bool, false),
                        ("state", Str, false),
                        ("timeout", Num, false),
                        ("packets", Num, false),
                        ("bytes", Num, false),
                    ],
                    &ports,
                );
                for e in json["entries"].as_array().unwrap() {
                    tuple(&e["orig"]);
                    tuple(&e["reply"]);
                }
            }
            "policies" => {
                // The example selects no pod: dump one that does.
                let mut cfg = podswitch_packet_tests::load_config("node1-vxlan-services");
                cfg.address_sets = vec![podswitch::config::AddressSet {
                    name: "a".into(),
                    prefixes: vec!["10.244.1.10/32".parse().unwrap()],
                    except: vec![],
                }];
                cfg.pod_policies = vec![podswitch::config::PodPolicy {
                    pod: "default/pod-c".into(),
                    ingress: Some(podswitch::config::PolicyDirection {
                        policies: vec!["default/web".into()],
                        rules: vec![podswitch::config::PolicyRule {
                            policy: "default/web".into(),
                            rule: 0,
                            peers: vec!["a".into()],
                            ports: vec![],
                        }],
                    }),
                    egress: None,
                }];
                let s = podswitch::tables::build::build(&cfg, 1).expect("valid");
                let json = dump::snapshot_table(&s, "policies", None).unwrap().1;
                check_style(table, &json);
                check_rows(
                    table,
                    &json,
                    &[
                        ("pod", Str, false),
                        ("ip", Addr, false),
                        ("port", Port, true),
                        ("ingress", Obj, true),
                        ("egress", Obj, true),
                    ],
                    &ports,
                );
                check_value(
                    "policies.ingress.compiled",
                    &json[0]["ingress"]["compiled"],
                    Obj,
                    &ports,
                );
            }
            "config" => {
                check_value(
                    "config.node.address",
                    &json["node"]["address"],
                    Addr,
                    &ports,
                );
                check_value(
                    "config.node.gateway_mac",
                    &json["node"]["gateway_mac"],
                    Mac,
                    &ports,
                );
                check_value("config.pod[0].port", &json["pod"][0]["port"], Port, &ports);
            }
            t => panic!("table {t} has no schema in this test (and in README)"),
        }
        seen.push(*table);
    }
    assert_eq!(
        seen,
        [
            "ports",
            "macs",
            "fib",
            "neighbours",
            "tunnels",
            "flows",
            "services",
            "policies",
            "conntrack",
            "config"
        ]
    );
}
