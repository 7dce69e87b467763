//! `config/*.toml`, the static node configurations that tests, the bench harness and the
//! docs load, agree with `lab/topology.sh`, the one definition of the lab's topology that
//! the lab, the e2e tests and the bench harness source.
//!
//! The topology is read by bash itself (`source lab/topology.sh`, then every `TOPO_*`
//! variable printed as name, key, value), so what is checked is what the scripts see. Each
//! node configuration is parsed with the dataplane's own parser; its node (named `nodeN`),
//! uplink, host port, VXLAN settings, pods (`default/pod-X` on `veth-pod-X`), peers,
//! neighbours, Service CIDR, NodePort range and Services must match the topology. The
//! mixed-overlay example (`*-mixed.toml`) places node `TOPO_ROUTED_NODE` on the routed
//! segment (`TOPO_ROUTED_*`). The lab cluster's demo Pods (`lab/manifests/pods.yaml`) ask
//! for the static pods' addresses on their nodes.
//!
//! It lives in packet-tests, the workspace's crate of repository-level tests: no root needed.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use podswitch::config::{NodeConfig, Service};
use podswitch_model::Prefix;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("packet-tests sits in the repository root")
        .to_path_buf()
}

/// Every `TOPO_*` variable of lab/topology.sh: name -> key -> value (a plain variable has
/// the single key "0", as bash indexes it).
struct Topology(BTreeMap<String, BTreeMap<String, String>>);

/// Prints every TOPO_* variable as NAME TAB KEY TAB VALUE lines, through a nameref so plain
/// variables and associative arrays read alike.
const DUMP: &str = r#"set -eu
source lab/topology.sh
for v in ${!TOPO_@}; do
  declare -n r=$v
  for k in "${!r[@]}"; do printf '%s\t%s\t%s\n' "$v" "$k" "${r[$k]}"; done
  unset -n r
done"#;

impl Topology {
    fn load(root: &Path) -> Topology {
        let out = Command::new("bash")
            .arg("-c")
            .arg(DUMP)
            .current_dir(root)
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "sourcing lab/topology.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut vars: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for line in String::from_utf8(out.stdout).expect("UTF-8").lines() {
            let mut f = line.splitn(3, '\t');
            let (Some(name), Some(key), Some(value)) = (f.next(), f.next(), f.next()) else {
                panic!("lab/topology.sh dump: unexpected line {line:?}");
            };
            vars.entry(name.to_string())
                .or_default()
                .insert(key.to_string(), value.to_string());
        }
        assert!(
            vars.contains_key("TOPO_NODES") && vars.contains_key("TOPO_PODS"),
            "lab/topology.sh defines no TOPO_NODES / TOPO_PODS"
        );
        Topology(vars)
    }

    /// `TOPO_<name>[key]`; panics naming the variable when it is missing.
    fn at(&self, name: &str, key: &str) -> &str {
        self.0
            .get(&format!("TOPO_{name}"))
            .and_then(|m| m.get(key))
            .unwrap_or_else(|| panic!("lab/topology.sh has no TOPO_{name}[{key}]"))
    }

    fn get(&self, name: &str) -> &str {
        self.at(name, "0")
    }

    fn words(&self, name: &str) -> Vec<String> {
        self.get(name)
            .split_whitespace()
            .map(String::from)
            .collect()
    }
}

/// Where one node sits: on the fabric's segment, or (mixed-overlay example) on the routed one.
struct Placement {
    address: String,
    uplink_mac: String,
    router: String,
}

/// Collects the disagreements of one file, each naming the file and the field.
struct Report<'a> {
    file: &'a str,
    problems: Vec<String>,
}

impl Report<'_> {
    /// `got` must equal the topology's `want`, parsed as the same type (so `0A:58:…` and
    /// `0a:58:…`, or a prefix with host bits, compare as the dataplane reads them).
    fn same<T>(&mut self, what: &str, got: &T, want: &str, from: &str)
    where
        T: FromStr + PartialEq + Display,
        T::Err: Display,
    {
        match want.parse::<T>() {
            Ok(w) if &w == got => {}
            Ok(w) => self.problems.push(format!(
                "{}: {what} is {got}, lab/topology.sh says {w} ({from})",
                self.file
            )),
            Err(e) => self.problems.push(format!(
                "{}: lab/topology.sh {from} = {want:?} does not parse: {e}",
                self.file
            )),
        }
    }

    fn problem(&mut self, text: String) {
        self.problems.push(format!("{}: {text}", self.file));
    }
}

/// The node number of "nodeN" when N is one of TOPO_NODES.
fn node_number(topo: &Topology, name: &str) -> Option<String> {
    let n = name.strip_prefix("node")?;
    topo.words("NODES").into_iter().find(|m| m == n)
}

fn placement(topo: &Topology, n: &str, mixed: bool) -> Placement {
    if mixed && n == topo.get("ROUTED_NODE") {
        Placement {
            address: topo.get("ROUTED_ADDR").into(),
            uplink_mac: topo.get("ROUTED_UPLINK_MAC").into(),
            router: topo.get("ROUTED_ROUTER_IP").into(),
        }
    } else {
        Placement {
            address: topo.at("ADDR", n).into(),
            uplink_mac: topo.at("UPLINK_MAC", n).into(),
            router: topo.get("FABRIC_IP").into(),
        }
    }
}

/// The MAC the topology gives the address `ip` on the fabric (a node uplink, the fabric
/// host or the router of the routed segment), if any.
fn fabric_mac_of(topo: &Topology, ip: Ipv4Addr, mixed: bool) -> Option<String> {
    let ip = ip.to_string();
    if ip == topo.get("FABRIC_IP") {
        return Some(topo.get("FABRIC_MAC").into());
    }
    if mixed && ip == topo.get("ROUTED_ROUTER_IP") {
        return Some(topo.get("ROUTED_ROUTER_MAC").into());
    }
    topo.words("NODES")
        .iter()
        .map(|n| placement(topo, n, mixed))
        .find(|p| p.address == ip)
        .map(|p| p.uplink_mac)
}

/// ClusterIPs in the Service CIDR, NodePorts in the NodePort range, endpoints in the
/// cluster CIDR.
fn check_services(topo: &Topology, r: &mut Report, services: &[Service]) {
    let svc_cidr: Prefix = topo.get("SERVICE_CIDR").parse().expect("TOPO_SERVICE_CIDR");
    let cluster: Prefix = topo.get("CLUSTER_CIDR").parse().expect("TOPO_CLUSTER_CIDR");
    let (lo, hi) = nodeport_range(topo);
    for s in services {
        let name = format!("Service {}/{}", s.namespace, s.name);
        if let Some(ip) = s.cluster_ip
            && !svc_cidr.contains(u32::from(ip))
        {
            r.problem(format!(
                "{name}: cluster_ip {ip} is outside TOPO_SERVICE_CIDR {svc_cidr}"
            ));
        }
        for p in &s.ports {
            if let Some(np) = p.node_port
                && !(lo..=hi).contains(&np)
            {
                r.problem(format!(
                    "{name}: node_port {np} is outside TOPO_NODEPORT_RANGE {lo}-{hi}"
                ));
            }
        }
        for e in &s.endpoints {
            if !cluster.contains(u32::from(e.ip)) {
                r.problem(format!(
                    "{name}: endpoint {} is outside TOPO_CLUSTER_CIDR {cluster}",
                    e.ip
                ));
            }
        }
    }
}

fn nodeport_range(topo: &Topology) -> (u16, u16) {
    let text = topo.get("NODEPORT_RANGE");
    let parsed = text
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    parsed.unwrap_or_else(|| panic!("TOPO_NODEPORT_RANGE {text:?} is not FIRST-LAST"))
}

/// Every disagreement between one node configuration and the topology.
fn check_node_config(topo: &Topology, file: &str, cfg: &NodeConfig) -> Vec<String> {
    let mut r = Report {
        file,
        problems: Vec::new(),
    };
    let mixed = file.ends_with("-mixed.toml");
    let Some(n) = node_number(topo, &cfg.node.name) else {
        r.problem(format!(
            "node name {:?} is not node<N> for N in TOPO_NODES ({})",
            cfg.node.name,
            topo.get("NODES")
        ));
        return r.problems;
    };
    let here = placement(topo, &n, mixed);
    let node = &cfg.node;
    r.same(
        "[node] address",
        &node.address,
        &here.address,
        "node address",
    );
    r.same(
        "[node] pod_cidr",
        &node.pod_cidr,
        topo.at("POD_CIDR", &n),
        "TOPO_POD_CIDR",
    );
    if let Some(c) = &node.cluster_cidr {
        r.same(
            "[node] cluster_cidr",
            c,
            topo.get("CLUSTER_CIDR"),
            "TOPO_CLUSTER_CIDR",
        );
    }
    r.same(
        "[node] gateway",
        &cfg.gateway(),
        topo.at("GATEWAY", &n),
        "TOPO_GATEWAY",
    );
    r.same(
        "[node] gateway_mac",
        &node.gateway_mac,
        topo.at("GATEWAY_MAC", &n),
        "TOPO_GATEWAY_MAC",
    );
    if let Some(m) = &node.vtep_mac {
        r.same(
            "[node] vtep_mac",
            m,
            topo.at("VTEP_MAC", &n),
            "TOPO_VTEP_MAC",
        );
    }
    r.same(
        "[uplink] mac",
        &cfg.uplink.mac,
        &here.uplink_mac,
        "node uplink MAC",
    );
    if let Some(g) = &cfg.uplink.gateway {
        r.same("[uplink] gateway", g, &here.router, "the segment's router");
    }
    if let Some(h) = &cfg.host {
        r.same(
            "[host] mac",
            &h.mac,
            topo.at("HOST_MAC", &n),
            "TOPO_HOST_MAC",
        );
    }
    r.same(
        "[vxlan] port",
        &cfg.vxlan.port,
        topo.get("VXLAN_PORT"),
        "TOPO_VXLAN_PORT",
    );
    r.same(
        "[vxlan] vni",
        &cfg.vxlan.vni,
        topo.get("VXLAN_VNI"),
        "TOPO_VXLAN_VNI",
    );

    let pods = topo.words("PODS");
    for pod in &cfg.pods {
        let what = format!("[[pod]] {}", pod.name);
        let Some(x) = pod
            .name
            .strip_prefix("default/pod-")
            .filter(|x| pods.iter().any(|p| p == x))
        else {
            r.problem(format!(
                "{what}: not default/pod-X for X in TOPO_PODS ({})",
                topo.get("PODS")
            ));
            continue;
        };
        if topo.at("POD_NODE", x) != n {
            r.problem(format!(
                "{what}: on node{n}, lab/topology.sh puts it on node{} (TOPO_POD_NODE)",
                topo.at("POD_NODE", x)
            ));
        }
        r.same(
            &format!("{what} ip"),
            &pod.ip,
            topo.at("POD_IP", x),
            "TOPO_POD_IP",
        );
        r.same(
            &format!("{what} mac"),
            &pod.mac,
            topo.at("POD_MAC", x),
            "TOPO_POD_MAC",
        );
        if pod.port != format!("veth-pod-{x}") {
            r.problem(format!(
                "{what}: port {:?}, the scripts make veth-pod-{x}",
                pod.port
            ));
        }
    }

    for peer in &cfg.peers {
        let what = format!("[[peer]] {}", peer.name);
        let Some(m) = node_number(topo, &peer.name).filter(|m| *m != n) else {
            r.problem(format!(
                "{what}: not another node<N> for N in TOPO_NODES ({})",
                topo.get("NODES")
            ));
            continue;
        };
        let there = placement(topo, &m, mixed);
        r.same(
            &format!("{what} address"),
            &peer.address,
            &there.address,
            "node address",
        );
        r.same(
            &format!("{what} pod_cidr"),
            &peer.pod_cidr,
            topo.at("POD_CIDR", &m),
            "TOPO_POD_CIDR",
        );
        if let Some(v) = &peer.vtep_mac {
            r.same(
                &format!("{what} vtep_mac"),
                v,
                topo.at("VTEP_MAC", &m),
                "TOPO_VTEP_MAC",
            );
        }
    }

    for nb in &cfg.neighbours {
        let what = format!("[[neighbour]] {}", nb.ip);
        match fabric_mac_of(topo, nb.ip, mixed) {
            Some(mac) => r.same(&format!("{what} mac"), &nb.mac, &mac, "its fabric MAC"),
            None => r.problem(format!("{what}: not an address of the topology's fabric")),
        }
    }

    r.same(
        "[nat] service_cidr",
        &cfg.nat.service_cidr,
        topo.get("SERVICE_CIDR"),
        "TOPO_SERVICE_CIDR",
    );
    let (lo, hi) = nodeport_range(topo);
    if cfg.nat.node_port_range != [lo, hi] {
        r.problem(format!(
            "[nat] node_port_range is {:?}, lab/topology.sh says {lo}-{hi} (TOPO_NODEPORT_RANGE)",
            cfg.nat.node_port_range
        ));
    }
    check_services(topo, &mut r, &cfg.services);
    r.problems
}

/// A file of Services alone (`podswitchctl program add-service`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    #[serde(default, rename = "service")]
    services: Vec<Service>,
}

/// The config/*.toml files: (file name, text).
fn config_files(root: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(root.join("config"))
        .expect("config/ is readable")
        .map(|e| e.expect("config/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let name = format!("config/{}", p.file_name().unwrap().to_string_lossy());
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, text)
        })
        .collect();
    files.sort();
    files
}

/// A node configuration has a [node] table; anything else is a file of Services.
fn check_file(topo: &Topology, name: &str, text: &str) -> Vec<String> {
    let is_node = text.lines().any(|l| l.trim() == "[node]");
    if is_node {
        match NodeConfig::from_toml(text) {
            Ok(cfg) => check_node_config(topo, name, &cfg),
            Err(e) => vec![format!(
                "{name}: does not parse as a node configuration: {e}"
            )],
        }
    } else {
        match toml::from_str::<ServiceFile>(text) {
            Ok(f) => {
                let mut r = Report {
                    file: name,
                    problems: Vec::new(),
                };
                check_services(topo, &mut r, &f.services);
                r.problems
            }
            Err(e) => vec![format!("{name}: does not parse as a file of Services: {e}")],
        }
    }
}

#[test]
fn every_config_agrees_with_the_topology() {
    let root = repo_root();
    let topo = Topology::load(&root);
    let files = config_files(&root);
    assert!(
        files.iter().filter(|(n, _)| n.contains("/node")).count() >= 10,
        "expected the node configurations under config/, found {:?}",
        files.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let problems: Vec<String> = files
        .iter()
        .flat_map(|(name, text)| check_file(&topo, name, text))
        .collect();
    assert!(
        problems.is_empty(),
        "config/*.toml disagree with lab/topology.sh (fix whichever is wrong):\n  {}",
        problems.join("\n  ")
    );
}

/// The check is not vacuous: a planted wrong value in each checked field is reported,
/// naming the file and the field.
#[test]
fn a_planted_wrong_value_is_reported() {
    let root = repo_root();
    let topo = Topology::load(&root);
    let file = "config/node1-vxlan-services.toml";
    let text = std::fs::read_to_string(root.join(file)).expect("readable");
    let plants = [
        (
            "address = \"192.168.1.10\"",
            "address = \"192.168.1.99\"",
            "[node] address",
        ),
        (
            "pod_cidr = \"10.244.1.0/24\"",
            "pod_cidr = \"10.244.9.0/24\"",
            "[node] pod_cidr",
        ),
        (
            "gateway = \"10.244.1.1\"",
            "gateway = \"10.244.1.254\"",
            "[node] gateway",
        ),
        (
            "mac = \"02:00:c0:a8:01:10\"",
            "mac = \"02:00:c0:a8:01:99\"",
            "[uplink] mac",
        ),
        (
            "mac = \"02:00:0a:f4:01:fe\"",
            "mac = \"02:00:0a:f4:01:fd\"",
            "[host] mac",
        ),
        (
            "vtep_mac = \"0e:00:00:00:00:02\"",
            "vtep_mac = \"0e:00:00:00:00:07\"",
            "[[peer]] node2 vtep_mac",
        ),
        (
            "ip = \"10.244.1.11\"\nmac",
            "ip = \"10.244.1.12\"\nmac",
            "[[pod]] default/pod-c ip",
        ),
        (
            "mac = \"0a:58:0a:f4:01:0a\"",
            "mac = \"0a:58:0a:f4:01:1a\"",
            "[[pod]] default/pod-a mac",
        ),
        (
            "mac = \"02:00:c0:a8:01:11\"",
            "mac = \"02:00:c0:a8:01:12\"",
            "[[neighbour]] 192.168.1.11 mac",
        ),
        (
            "service_cidr = \"10.96.0.0/12\"",
            "service_cidr = \"10.112.0.0/12\"",
            "[nat] service_cidr",
        ),
        (
            "node_port_range = [30000, 32767]",
            "node_port_range = [30000, 32000]",
            "[nat] node_port_range",
        ),
    ];
    assert!(
        check_file(&topo, file, &text).is_empty(),
        "{file} agrees as committed"
    );
    for (from, to, field) in plants {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{from:?} occurs once in {file}"
        );
        let planted = text.replacen(from, to, 1);
        let problems = check_file(&topo, file, &planted);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("{file}: {field}"))),
            "{to:?} in {file}: expected a problem about {field}, got {problems:?}"
        );
    }
}

/// The lab cluster's demo Pods (lab/manifests/pods.yaml) ask IPAM for the static pods'
/// addresses (annotation `lab.podswitch.io/ip`) on their topology node (`nodeName`). The
/// manifest is read line by line: each document's `metadata.name`, the annotation and
/// `spec.nodeName`, as written there.
#[test]
fn lab_manifest_pods_agree_with_the_topology() {
    let root = repo_root();
    let topo = Topology::load(&root);
    let file = "lab/manifests/pods.yaml";
    let text = std::fs::read_to_string(root.join(file)).expect("readable");
    let value = |doc: &str, key: &str| {
        doc.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in text.split("\n---") {
        let Some(ip) = value(doc, "lab.podswitch.io/ip:") else {
            continue;
        };
        let name = value(doc, "name:").unwrap_or_default();
        let Some(x) = name
            .strip_prefix("pod-")
            .filter(|x| topo.words("PODS").iter().any(|p| p == x))
        else {
            problems.push(format!(
                "{file}: Pod {name:?} asks for {ip}, not a TOPO_PODS pod"
            ));
            continue;
        };
        checked += 1;
        if ip != topo.at("POD_IP", x) {
            problems.push(format!(
                "{file}: Pod {name} asks for {ip}, lab/topology.sh says {} (TOPO_POD_IP)",
                topo.at("POD_IP", x)
            ));
        }
        let want = format!("node{}", topo.at("POD_NODE", x));
        if value(doc, "nodeName:").as_deref() != Some(want.as_str()) {
            problems.push(format!(
                "{file}: Pod {name} nodeName {:?}, lab/topology.sh says {want} (TOPO_POD_NODE)",
                value(doc, "nodeName:")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        checked,
        topo.words("PODS").len(),
        "{file}: every TOPO_PODS pod is a demo Pod"
    );
}

/// The topology agrees with itself: the node addresses in the fabric's subnet (the routed
/// one in its own), pod CIDRs in the cluster CIDR, gateways and static pods in their
/// node's pod CIDR.
#[test]
fn the_topology_is_consistent() {
    let topo = Topology::load(&repo_root());
    let prefix = |name: &str, key: &str| -> Prefix {
        topo.at(name, key)
            .parse()
            .unwrap_or_else(|e| panic!("TOPO_{name}[{key}]: {e}"))
    };
    let addr = |name: &str, key: &str| -> u32 {
        let a: Ipv4Addr = topo
            .at(name, key)
            .parse()
            .unwrap_or_else(|e| panic!("TOPO_{name}[{key}]: {e}"));
        u32::from(a)
    };
    let mut problems = Vec::new();
    let mut inside = |what: String, a: u32, p: Prefix| {
        if !p.contains(a) {
            problems.push(format!("{what} ({}) is outside {p}", Ipv4Addr::from(a)));
        }
    };
    let fabric = prefix("FABRIC_NET", "0");
    assert_eq!(
        fabric.len.to_string(),
        topo.get("FABRIC_PREFIX_LEN"),
        "TOPO_FABRIC_PREFIX_LEN is TOPO_FABRIC_NET's length"
    );
    inside("TOPO_FABRIC_IP".into(), addr("FABRIC_IP", "0"), fabric);
    let routed = prefix("ROUTED_NET", "0");
    inside("TOPO_ROUTED_ADDR".into(), addr("ROUTED_ADDR", "0"), routed);
    inside(
        "TOPO_ROUTED_ROUTER_IP".into(),
        addr("ROUTED_ROUTER_IP", "0"),
        routed,
    );
    let cluster = prefix("CLUSTER_CIDR", "0");
    for n in topo.words("NODES") {
        let pods = prefix("POD_CIDR", &n);
        inside(format!("TOPO_ADDR[{n}]"), addr("ADDR", &n), fabric);
        inside(format!("TOPO_POD_CIDR[{n}]"), pods.addr, cluster);
        inside(format!("TOPO_GATEWAY[{n}]"), addr("GATEWAY", &n), pods);
    }
    for x in topo.words("PODS") {
        let n = topo.at("POD_NODE", &x).to_string();
        inside(
            format!("TOPO_POD_IP[{x}]"),
            addr("POD_IP", &x),
            prefix("POD_CIDR", &n),
        );
    }
    assert!(
        problems.is_empty(),
        "lab/topology.sh: {}",
        problems.join("; ")
    );
}
