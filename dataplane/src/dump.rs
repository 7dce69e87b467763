//! Table dumps: human-readable tables and JSON, shared by the control socket and tools.
//!
//! The `flows` view follows `ovs-appctl dpctl/dump-flows`: one line per entry, match first,
//! then actions, volatile counters last so tests can strip them.
//!
//! One JSON style for every table: addresses, prefixes and MACs are strings, a reference
//! to a port is its name, a value that is absent (where the text shows `-`) is `null`.

use crate::config::Overlay;
use crate::pipeline::{ArpFlow, Counters};
use crate::tables::{RouteTarget, Snapshot};
use crate::wire::Mac;
use serde_json::{Value, json};
use std::fmt::Write;
use std::net::Ipv4Addr;

/// The tables `dump` knows, with what each holds (`podswitchctl dump --help`, errors).
pub const TABLES: &[(&str, &str)] = &[
    (
        "ports",
        "the switch's ports: uplink, host port, pod veths (and their counters)",
    ),
    (
        "macs",
        "the MAC table: which port each MAC is behind (l2-fwd)",
    ),
    (
        "fib",
        "the IPv4 routes: prefix, what the switch does, out port, next-hop MAC, MTU",
    ),
    (
        "neighbours",
        "underlay next hops: configured and learned from the kernel's ARP",
    ),
    (
        "tunnels",
        "peer nodes: address, pod CIDR, overlay, VTEP and underlay MACs, MTU",
    ),
    (
        "flows",
        "what the pipeline does per destination, with packet and byte counters",
    ),
    ("services", "Service frontends and their endpoints"),
    (
        "policies",
        "NetworkPolicy per pod: the policies selecting it, its rules and counters, the compiled lookup",
    ),
    (
        "conntrack",
        "connection-tracking entries (Service NAT, masquerade)",
    ),
    (
        "config",
        "the node configuration in force (TOML; JSON with -o json)",
    ),
];

/// The table names, comma-separated (for messages).
pub fn table_names() -> String {
    TABLES.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
}

/// The dumps that need nothing but the snapshot (and the counters, for flows); `ports`
/// without the live counters the daemon adds, and `conntrack` (its own table) are served
/// by the caller. `None` for an unknown table.
pub fn snapshot_table(
    snap: &Snapshot,
    table: &str,
    counters: Option<&Counters>,
) -> Option<(String, Value)> {
    Some(match table {
        "ports" => ports(snap),
        "macs" | "mac" => macs(snap),
        "fib" | "routes" => fib(snap),
        "neighbours" | "neighbors" => neighbours(snap),
        "tunnels" | "peers" | "vteps" => tunnels(snap),
        "flows" => flows(snap, counters),
        "services" => services(snap),
        "policies" | "policy" | "netpol" => crate::tables::policy_dump::dump(snap),
        "config" => {
            let c = snap.config.to_node_config();
            (c.to_toml(), json!(c))
        }
        _ => return None,
    })
}

fn ip_json(ip: Option<[u8; 4]>) -> Value {
    ip.map_or(Value::Null, |i| json!(Ipv4Addr::from(i).to_string()))
}

fn port_name_json(snap: &Snapshot, port: Option<u16>) -> Value {
    port.and_then(|p| snap.port(p))
        .map_or(Value::Null, |p| json!(p.name))
}

/// Renders rows as an aligned text table with a header line.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.len());
            }
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, cells: &[String]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{:<width$}  ", c, width = w[i]);
            }
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    line(
        &mut s,
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    );
    for r in rows {
        line(&mut s, r);
    }
    s
}

pub fn ports(snap: &Snapshot) -> (String, Value) {
    let rows: Vec<Vec<String>> = snap
        .ports
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                p.name.clone(),
                format!("{:?}", p.kind).to_lowercase(),
                p.mac.to_string(),
                p.ip.map_or("-".into(), |i| Ipv4Addr::from(i).to_string()),
                p.mtu.to_string(),
                p.vlan.map_or("-".into(), |v| v.to_string()),
                p.label.clone(),
            ]
        })
        .collect();
    let text = table(
        &["ID", "NAME", "KIND", "MAC", "IP", "MTU", "VLAN", "LABEL"],
        &rows,
    );
    let data: Vec<Value> = snap
        .ports
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "name": p.name,
                "kind": format!("{:?}", p.kind).to_lowercase(),
                "mac": p.mac.to_string(),
                "ip": ip_json(p.ip),
                "mtu": p.mtu,
                "vlan": p.vlan,
                "label": if p.label.is_empty() { Value::Null } else { json!(p.label) },
            })
        })
        .collect();
    (text, json!(data))
}

pub fn macs(snap: &Snapshot) -> (String, Value) {
    let mut entries: Vec<_> = snap.macs.iter().map(|(m, p)| (*m, *p)).collect();
    entries.sort();
    entries.insert(0, (snap.node.gateway_mac, u16::MAX));
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|(m, p)| {
            let port = if *p == u16::MAX {
                "(gateway: ip4-input)".to_string()
            } else {
                snap.port(*p).map_or("?".into(), |e| e.name.clone())
            };
            vec![m.to_string(), port]
        })
        .collect();
    let data: Vec<Value> = entries
        .iter()
        .map(|(m, p)| {
            if *p == u16::MAX {
                json!({"mac": m.to_string(), "port": null, "target": "gateway"})
            } else {
                json!({"mac": m.to_string(), "port": port_name_json(snap, Some(*p)), "target": "port"})
            }
        })
        .collect();
    (table(&["MAC", "PORT"], &rows), json!(data))
}

fn target_text(snap: &Snapshot, t: &RouteTarget) -> String {
    match t {
        RouteTarget::Gateway => "gateway (local)".into(),
        RouteTarget::NodeAddress => "node address (decap / host)".into(),
        RouteTarget::Pod { port } => {
            format!("pod {}", snap.port(*port).map_or("?", |p| p.label.as_str()))
        }
        RouteTarget::NoSuchPod => "local subnet (no such pod: ICMP unreachable)".into(),
        RouteTarget::Peer { peer } => snap
            .peers
            .get(usize::from(*peer))
            .map_or("peer ?".into(), |p| {
                format!("peer {} via {}", p.name, p.overlay.as_str())
            }),
        RouteTarget::Host => "host port".into(),
        RouteTarget::Via { neighbour } => format!("via {}", Ipv4Addr::from(*neighbour)),
    }
}

pub fn fib(snap: &Snapshot) -> (String, Value) {
    let mut idx: Vec<usize> = (0..snap.routes.len()).collect();
    idx.sort_by_key(|&i| {
        (
            std::cmp::Reverse(snap.routes[i].prefix.len),
            snap.routes[i].prefix.addr,
        )
    });
    let rows: Vec<Vec<String>> = idx
        .iter()
        .map(|&i| {
            let r = &snap.routes[i];
            vec![
                r.prefix.to_string(),
                target_text(snap, &r.target),
                r.out_port
                    .and_then(|p| snap.port(p))
                    .map_or("-".into(), |p| p.name.clone()),
                if r.out_port.is_some() {
                    r.dst_mac.to_string()
                } else {
                    "-".into()
                },
                if r.mtu > 0 {
                    r.mtu.to_string()
                } else {
                    "-".into()
                },
                r.origin.clone(),
            ]
        })
        .collect();
    let text = table(
        &["PREFIX", "TARGET", "OUT", "DST-MAC", "MTU", "ORIGIN"],
        &rows,
    );
    let data: Vec<Value> = idx
        .iter()
        .map(|&i| {
            let r = &snap.routes[i];
            let resolved = r.out_port.is_some();
            let (kind, pod, peer, via) = match r.target {
                RouteTarget::Gateway => ("gateway", None, None, None),
                RouteTarget::NodeAddress => ("node-address", None, None, None),
                RouteTarget::Pod { port } => {
                    ("pod", snap.port(port).map(|p| p.label.clone()), None, None)
                }
                RouteTarget::NoSuchPod => ("no-such-pod", None, None, None),
                RouteTarget::Peer { peer } => (
                    "peer",
                    None,
                    snap.peers.get(usize::from(peer)).map(|p| p.name.clone()),
                    None,
                ),
                RouteTarget::Host => ("host", None, None, None),
                RouteTarget::Via { neighbour } => ("via", None, None, Some(neighbour)),
            };
            json!({
                "prefix": r.prefix.to_string(),
                "target": kind,
                "pod": pod,
                "peer": peer,
                "via": ip_json(via),
                "out_port": port_name_json(snap, r.out_port),
                "src_mac": if resolved { json!(r.src_mac.to_string()) } else { Value::Null },
                "dst_mac": if resolved { json!(r.dst_mac.to_string()) } else { Value::Null },
                "mtu": if r.mtu > 0 { json!(r.mtu) } else { Value::Null },
                "origin": r.origin,
            })
        })
        .collect();
    (text, json!(data))
}

pub fn neighbours(snap: &Snapshot) -> (String, Value) {
    let mut n: Vec<(Ipv4Addr, Mac, &str)> = snap
        .neighbours
        .iter()
        .map(|(ip, m)| (*ip, *m, "config"))
        .chain(
            snap.learned_neighbours
                .iter()
                .map(|(ip, m)| (*ip, *m, "kernel-arp")),
        )
        .collect();
    n.sort();
    let rows: Vec<Vec<String>> = n
        .iter()
        .map(|(ip, m, o)| vec![ip.to_string(), m.to_string(), o.to_string()])
        .collect();
    let data: Vec<Value> = n
        .iter()
        .map(|(ip, m, o)| json!({"ip": ip.to_string(), "mac": m.to_string(), "origin": o}))
        .collect();
    (table(&["IP", "MAC", "ORIGIN"], &rows), json!(data))
}

pub fn tunnels(snap: &Snapshot) -> (String, Value) {
    let rows: Vec<Vec<String>> = snap
        .peers
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                Ipv4Addr::from(p.address).to_string(),
                p.pod_cidr.to_string(),
                p.overlay.as_str().into(),
                p.vtep_mac.map_or("-".into(), |m| m.to_string()),
                p.underlay_mac
                    .map_or("unresolved".into(), |m| m.to_string()),
                p.mtu.to_string(),
            ]
        })
        .collect();
    let text = table(
        &[
            "PEER",
            "ADDRESS",
            "POD-CIDR",
            "OVERLAY",
            "VTEP-MAC",
            "UNDERLAY-MAC",
            "MTU",
        ],
        &rows,
    );
    let data: Vec<Value> = snap
        .peers
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "address": Ipv4Addr::from(p.address).to_string(),
                "pod_cidr": p.pod_cidr.to_string(),
                "overlay": p.overlay.as_str(),
                "vtep_mac": p.vtep_mac.map(|m| m.to_string()),
                "underlay_mac": p.underlay_mac.map(|m| m.to_string()),
                "mtu": p.mtu,
            })
        })
        .collect();
    (text, json!(data))
}

/// What the pipeline does for each destination, one line per FIB entry plus the ARP and L2
/// entries, with packet/byte counters from `counters` (the per-entry ones when they belong
/// to this snapshot's generation): every line counts the frames it matched.
pub fn flows(snap: &Snapshot, counters: Option<&Counters>) -> (String, Value) {
    let n = &snap.node;
    let mut lines: Vec<(String, String, u64, u64)> = Vec::new();
    let arp =
        |f: ArpFlow| counters.map_or((0, 0), |c| (c.arp[f as usize][0], c.arp[f as usize][1]));
    let current = counters.filter(|c| c.generation == snap.generation);
    let (pk, by) = arp(ArpFlow::GatewayRequest);
    lines.push((
        format!(
            "eth_type(0x0806),arp(op=request,tip={})",
            Ipv4Addr::from(n.gateway)
        ),
        format!("arp_reply(sha={}),output(in_port)", n.gateway_mac),
        pk,
        by,
    ));
    let (pk, by) = arp(ArpFlow::PodRequest);
    lines.push((
        format!("eth_type(0x0806),arp(op=request,tip={})", n.pod_cidr),
        if n.proxy_arp {
            "arp_reply(sha=owner of tip),output(in_port)".to_string()
        } else {
            "output(owner of tip)".to_string()
        },
        pk,
        by,
    ));
    let (pk, by) = arp(ArpFlow::Reply);
    lines.push((
        "eth_type(0x0806),arp(op=reply)".to_string(),
        "output(owner of eth dst)".to_string(),
        pk,
        by,
    ));
    let mut l2: Vec<_> = snap.macs.iter().collect();
    l2.sort();
    for (mac, port) in l2 {
        let name = snap.port(*port).map_or("?", |p| p.name.as_str());
        let (pk, by) = current
            .and_then(|c| c.l2.get(usize::from(*port)))
            .map_or((0, 0), |c| (c[0], c[1]));
        lines.push((format!("eth(dst={mac})"), format!("output({name})"), pk, by));
    }
    for (i, r) in snap.routes.iter().enumerate() {
        let (pk, by) = current
            .and_then(|c| c.routes.get(i))
            .map_or((0, 0), |r| (r[0], r[1]));
        let m = format!(
            "eth(dst={}),eth_type(0x0800),ipv4(dst={})",
            n.gateway_mac, r.prefix
        );
        let out = r
            .out_port
            .and_then(|p| snap.port(p))
            .map_or("?", |p| p.name.as_str());
        let a = match r.target {
            RouteTarget::Gateway => "icmp_echo_reply,output(in_port)".to_string(),
            RouteTarget::NodeAddress => format!(
                "decap(vxlan(dport={},vni={})|ipip),recirc;else output({out})",
                n.vxlan.port, n.vxlan.vni
            ),
            RouteTarget::NoSuchPod => "icmp_error(type=3,code=1)".into(),
            _ if r.out_port.is_none() => "drop(neighbour_unresolved)".into(),
            RouteTarget::Peer { peer } => {
                let p = &snap.peers[usize::from(peer)];
                let encap = match p.overlay {
                    Overlay::Vxlan => format!(
                        ",vxlan(src={},dst={},dport={},vni={},ttl={},df)",
                        Ipv4Addr::from(n.address),
                        Ipv4Addr::from(p.address),
                        n.vxlan.port,
                        n.vxlan.vni,
                        n.vxlan.ttl
                    ),
                    Overlay::Ipip => format!(
                        ",ipip(src={},dst={},ttl={},df)",
                        Ipv4Addr::from(n.address),
                        Ipv4Addr::from(p.address),
                        n.ipip_ttl
                    ),
                    Overlay::HostGw => String::new(),
                };
                format!(
                    "set(eth(src={},dst={})),dec_ttl,check_mtu({}),clamp_mss({}){encap},output({out})",
                    r.src_mac,
                    r.dst_mac,
                    r.mtu,
                    r.mtu.saturating_sub(40)
                )
            }
            _ => format!(
                "set(eth(src={},dst={})),dec_ttl,check_mtu({}),clamp_mss({}),output({out})",
                r.src_mac,
                r.dst_mac,
                r.mtu,
                r.mtu.saturating_sub(40)
            ),
        };
        lines.push((m, a, pk, by));
    }
    let mut text = String::new();
    let mut data = Vec::new();
    for (m, a, pk, by) in &lines {
        let _ = writeln!(text, "{m} actions:{a} packets:{pk} bytes:{by}");
        data.push(json!({"match": m, "actions": a, "packets": pk, "bytes": by}));
    }
    (text, json!(data))
}

/// VPP `show runtime`-style stage table and drops by reason.
pub fn stats_text(c: &Counters) -> String {
    use crate::pipeline::{DropReason, Stage};
    let mut rows = Vec::new();
    for s in Stage::RUN_ORDER {
        let st = &c.stages[s as usize];
        if st.packets == 0 {
            continue;
        }
        rows.push(vec![
            s.name().to_string(),
            st.batches.to_string(),
            st.packets.to_string(),
            format!("{:.2}", st.packets as f64 / st.batches.max(1) as f64),
            format!("{:.1}", st.nanos as f64 / st.packets.max(1) as f64),
        ]);
    }
    let mut s = table(&["STAGE", "CALLS", "PACKETS", "PKTS/CALL", "NS/PKT"], &rows);
    let drops: Vec<Vec<String>> = DropReason::ALL
        .iter()
        .filter(|r| c.drops[**r as usize] > 0)
        .map(|r| {
            vec![
                r.stage().name().into(),
                r.name().into(),
                c.drops[*r as usize].to_string(),
            ]
        })
        .collect();
    s.push('\n');
    s.push_str(&table(&["STAGE", "DROP-REASON", "COUNT"], &drops));
    s
}

/// Services: one line per frontend port with its endpoints (kube-proxy's view).
pub fn services(snap: &Snapshot) -> (String, Value) {
    let t = &snap.services;
    let mut fronts: Vec<(String, usize)> = Vec::new();
    for (key, (idx, kind)) in t.frontends.iter() {
        let ip = Ipv4Addr::from((*key >> 24) as u32);
        let e = &t.ports[*idx as usize];
        let proto = if e.proto == 6 { "tcp" } else { "udp" };
        fronts.push((format!("{ip}:{}/{proto} ({kind:?})", e.port), *idx as usize));
    }
    for (key, idx) in t.node_ports.iter() {
        let e = &t.ports[*idx as usize];
        let proto = if e.proto == 6 { "tcp" } else { "udp" };
        fronts.push((
            format!("*:{}/{proto} (NodePort)", (*key >> 8) as u16),
            *idx as usize,
        ));
    }
    fronts.sort();
    let mut rows = Vec::new();
    let mut data = Vec::new();
    for (front, idx) in &fronts {
        let e = &t.ports[*idx];
        let eps: Vec<String> = e
            .backends
            .iter()
            .map(|b| {
                format!(
                    "{}:{}{}",
                    Ipv4Addr::from(b.ip),
                    b.port,
                    if b.local { "(local)" } else { "" }
                )
            })
            .collect();
        let mut flags = Vec::new();
        if let Some(s) = e.affinity_secs {
            flags.push(format!("affinity=ClientIP/{s}s"));
        }
        if e.external_local {
            flags.push("eTP=Local".into());
        }
        if e.internal_local {
            flags.push("iTP=Local".into());
        }
        rows.push(vec![
            e.name.clone(),
            front.clone(),
            if eps.is_empty() {
                "(none: reject)".into()
            } else {
                eps.join(",")
            },
            if flags.is_empty() {
                "-".into()
            } else {
                flags.join(",")
            },
        ]);
        data.push(json!({"service": e.name, "frontend": front, "endpoints": eps, "flags": flags}));
    }
    (
        table(&["SERVICE", "FRONTEND", "ENDPOINTS", "FLAGS"], &rows),
        json!(data),
    )
}
