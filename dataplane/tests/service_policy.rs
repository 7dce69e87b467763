//! Service NAT against upstream kube-proxy's packet-flow expectations (`proxier_test.go`:
//! TestInternalExternalMasquerade, TestExternalTrafficPolicy*, TestTerminatingEndpoints*,
//! TestInternalTrafficPolicy): which endpoints a client may reach and whether its source is
//! masqueraded, for clients that are pods on this node, pods on another node, the node's
//! own stack (host port) and clients outside the cluster. Replayed through the pipeline with
//! frames built outside the project; every output checksum is verified.

mod support;
use podswitch::config::NodeConfig;
use std::collections::HashSet;
use support::*;

const HOST_MAC: [u8; 6] = [0x02, 0x00, 0x0a, 0xf4, 0x01, 0xfe];
const LB_LOCAL: [u8; 4] = [192, 168, 1, 200];
const EXTERNAL_IP: [u8; 4] = [192, 168, 1, 100];
const ITP_LOCAL: [u8; 4] = [10, 96, 0, 60];
const TERM_LB: [u8; 4] = [192, 168, 1, 201];
const TERM_CIP: [u8; 4] = [10, 96, 0, 61];
const GONE_LB: [u8; 4] = [192, 168, 1, 202];
const PREFER_LB: [u8; 4] = [192, 168, 1, 203];

/// The example node1 configuration plus Services for the policy cases.
fn policy_config() -> NodeConfig {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/node1-vxlan-services.toml");
    let mut text = std::fs::read_to_string(p).expect("example config");
    text.push_str(
        r#"
# internalTrafficPolicy Local with a local (pod C) and a remote (pod B) endpoint.
[[service]]
name = "itp-local"
cluster_ip = "10.96.0.60"
internal_traffic_policy = "Local"
ports = [{ protocol = "tcp", port = 80, target_port = 8080 }]
[[service.endpoints]]
ip = "10.244.1.11"
[[service.endpoints]]
ip = "10.244.2.20"

# eTP Local whose only local endpoint is serving but terminating; pod B (remote) is ready.
[[service]]
name = "etp-local-terminating"
type = "LoadBalancer"
cluster_ip = "10.96.0.61"
load_balancer_ips = ["192.168.1.201"]
external_traffic_policy = "Local"
ports = [{ protocol = "tcp", port = 80, target_port = 8080, node_port = 30090 }]
[[service.endpoints]]
ip = "10.244.1.11"
ready = false
serving = true
terminating = true
[[service.endpoints]]
ip = "10.244.2.20"

# eTP Local whose local endpoint is terminating and no longer serving.
[[service]]
name = "etp-local-gone"
type = "LoadBalancer"
cluster_ip = "10.96.0.62"
load_balancer_ips = ["192.168.1.202"]
external_traffic_policy = "Local"
ports = [{ protocol = "tcp", port = 80, target_port = 8080, node_port = 30091 }]
[[service.endpoints]]
ip = "10.244.1.11"
ready = false
serving = false
terminating = true
[[service.endpoints]]
ip = "10.244.2.20"

# eTP Local with a ready local endpoint (pod A) and a serving-terminating one (pod C).
[[service]]
name = "etp-local-prefer-ready"
type = "LoadBalancer"
cluster_ip = "10.96.0.63"
load_balancer_ips = ["192.168.1.203"]
external_traffic_policy = "Local"
ports = [{ protocol = "tcp", port = 80, target_port = 8080, node_port = 30092 }]
[[service.endpoints]]
ip = "10.244.1.10"
[[service.endpoints]]
ip = "10.244.1.11"
ready = false
serving = true
terminating = true
"#,
    );
    NodeConfig::from_toml(&text).expect("policy config parses")
}

fn node() -> Node {
    Node::new(&policy_config())
}

fn syn_from_pod_a(n: &mut Node, dst: [u8; 4], dport: u16, sport: u16) -> Out {
    n.send(
        "veth-pod-a",
        tcp(MAC_A, MAC_GW, POD_A, dst, sport, dport, SYN, 1000, 0, &[]),
    )
}

/// A SYN from the node's own stack (a hostNetwork pod, the kubelet) through the host port.
fn syn_from_host(n: &mut Node, dst: [u8; 4], dport: u16, sport: u16) -> Out {
    n.send(
        "psw-host",
        tcp(HOST_MAC, MAC_GW, NODE, dst, sport, dport, SYN, 1000, 0, &[]),
    )
}

fn syn_from_outside(n: &mut Node, dst: [u8; 4], dport: u16, sport: u16) -> Out {
    n.send(
        "eth0",
        tcp(
            MAC_ROUTER,
            MAC_UPLINK,
            EXT,
            dst,
            sport,
            dport,
            SYN,
            7,
            0,
            &[],
        ),
    )
}

/// A SYN from pod B on node2, arriving over VXLAN (node2 routes node1's address over the
/// overlay).
fn syn_from_pod_b(n: &mut Node, dst: [u8; 4], dport: u16, sport: u16) -> Out {
    let inner = tcp(
        MAC_NODE2,
        VTEP1,
        POD_B,
        dst,
        sport,
        dport,
        SYN,
        1000,
        0,
        &[],
    );
    n.send("eth0", from_node2(&inner))
}

/// The endpoint's SYN-ACK to the (possibly translated) source of `p`, sent the way the
/// endpoint would: pod C from its port, a node2 endpoint over VXLAN.
fn endpoint_reply(n: &mut Node, port: &str, p: &Pkt) -> (String, Pkt) {
    let frame = match port {
        "veth-pod-c" => tcp(
            MAC_C,
            MAC_GW,
            p.dst,
            p.src,
            p.dport,
            p.sport,
            SYN | ACK,
            5000,
            p.seq + 1,
            &[],
        ),
        "veth-pod-a" => tcp(
            MAC_A,
            MAC_GW,
            p.dst,
            p.src,
            p.dport,
            p.sport,
            SYN | ACK,
            5000,
            p.seq + 1,
            &[],
        ),
        "eth0" => {
            assert!(p.vxlan, "endpoint reached over the overlay");
            from_node2(&tcp(
                MAC_NODE2,
                VTEP1,
                p.dst,
                p.src,
                p.dport,
                p.sport,
                SYN | ACK,
                5000,
                p.seq + 1,
                &[],
            ))
        }
        o => panic!("no reply path from {o}"),
    };
    let rport = if port == "eth0" { "eth0" } else { port };
    n.send(rport, frame).one()
}

// ---- case 1: a pod on another node reaching a NodePort (eTP Cluster) ----

/// Upstream "pod to NodePort": masquerade. Without it node1 DNATs pod B's connection to an
/// endpoint on node2, whose reply goes straight to pod B from the endpoint's own address
/// and pod B resets the connection.
#[test]
fn remote_pod_to_node_port_is_masqueraded_and_the_reply_comes_back_through_this_node() {
    let mut n = node();
    let mut seen = HashSet::new();
    for sport in 40000..40030u16 {
        let (port, p) = syn_from_pod_b(&mut n, NODE, 30080, sport).one();
        assert_eq!(
            (p.src, p.dport),
            (NODE, 8080),
            "eTP Cluster: source masqueraded to the node address ({port})"
        );
        seen.insert(port.clone());
        let (rp, r) = endpoint_reply(&mut n, &port, &p);
        assert_eq!(rp, "eth0");
        assert!(r.vxlan, "back to pod B over the overlay");
        assert_eq!(
            (r.src, r.sport, r.dst, r.dport, r.tcp_flags),
            (NODE, 30080, POD_B, sport, SYN | ACK)
        );
    }
    assert_eq!(seen.len(), 2, "local and remote endpoints: {seen:?}");
}

/// A pod on another node reaching an eTP Local NodePort gets this node's local endpoints
/// with its address kept (the reply leaves through this node, so it is reverse-translated).
#[test]
fn remote_pod_to_local_policy_node_port_uses_local_endpoints_only() {
    let mut n = node();
    for sport in 40100..40120u16 {
        let (port, p) = syn_from_pod_b(&mut n, NODE, 30081, sport).one();
        assert_eq!((port.as_str(), p.src, p.dst), ("veth-pod-c", POD_B, POD_C));
        let (rp, r) = endpoint_reply(&mut n, &port, &p);
        assert_eq!((rp.as_str(), r.vxlan), ("eth0", true));
        assert_eq!((r.src, r.sport, r.dst), (NODE, 30081, POD_B));
    }
}

// ---- case 2: same-node pods to NodePort / externalIP / LB IP (eTP Cluster) ----

#[test]
fn same_node_pod_to_node_port_and_external_ip_is_masqueraded() {
    let mut n = node();
    for (dst, dport) in [(NODE, 30080u16), (EXTERNAL_IP, 80)] {
        let mut seen = HashSet::new();
        for sport in 41000..41030u16 {
            let (port, p) = syn_from_pod_a(&mut n, dst, dport, sport).one();
            assert_eq!((p.src, p.dport), (NODE, 8080), "pod to {dst:?}:{dport}");
            seen.insert(port.clone());
            let (rp, r) = endpoint_reply(&mut n, &port, &p);
            assert_eq!(rp, "veth-pod-a");
            assert_eq!((r.src, r.sport, r.dst, r.dport), (dst, dport, POD_A, sport));
        }
        assert_eq!(seen.len(), 2, "both endpoints: {seen:?}");
    }
}

/// Upstream "pod to LB with eTP:Local": short-circuited to every endpoint, not masqueraded.
#[test]
fn same_node_pod_to_local_policy_load_balancer_uses_every_endpoint_unmasqueraded() {
    let mut n = node();
    let mut seen = HashSet::new();
    for sport in 41100..41140u16 {
        let (port, p) = syn_from_pod_a(&mut n, LB_LOCAL, 80, sport).one();
        assert_eq!(p.src, POD_A);
        seen.insert(port.clone());
        let (rp, r) = endpoint_reply(&mut n, &port, &p);
        assert_eq!(rp, "veth-pod-a");
        assert_eq!((r.src, r.sport, r.dst), (LB_LOCAL, 80, POD_A));
    }
    assert_eq!(seen.len(), 2, "both endpoints: {seen:?}");
}

/// Hairpin stays as it was: a pod reaching itself through a NodePort is SNATed to the
/// gateway address.
#[test]
fn hairpin_through_a_node_port_keeps_the_gateway_address() {
    let mut n = node();
    let mut done = false;
    for sport in 41200..41300u16 {
        let (port, p) = n
            .send(
                "veth-pod-c",
                tcp(MAC_C, MAC_GW, POD_C, NODE, sport, 30080, SYN, 1, 0, &[]),
            )
            .one();
        if port != "veth-pod-c" {
            assert_eq!(p.src, NODE, "pod C to the remote endpoint: masqueraded");
            continue;
        }
        assert_eq!((p.src, p.dst), (GW, POD_C));
        done = true;
        break;
    }
    assert!(done, "some flow chose pod C itself");
}

// ---- case 3: internalTrafficPolicy Local for every client ----

#[test]
fn internal_traffic_policy_local_holds_for_the_nodes_own_clients() {
    let mut n = node();
    for sport in 42000..42030u16 {
        let (port, p) = syn_from_host(&mut n, ITP_LOCAL, 80, sport).one();
        assert_eq!(port, "veth-pod-c", "local endpoint only");
        // Upstream "node to ClusterIP with iTP:Local": masqueraded.
        assert_eq!((p.src, p.dst, p.dport), (NODE, POD_C, 8080));
        let (rp, r) = endpoint_reply(&mut n, &port, &p);
        assert_eq!(rp, "psw-host");
        assert_eq!(
            (r.src, r.sport, r.dst, r.dport),
            (ITP_LOCAL, 80, NODE, sport)
        );
    }
    // No local endpoint: dropped, never sent to the remote one.
    syn_from_host(&mut n, [10, 96, 0, 31], 80, 42100).dropped("svc_no_local_endpoints");
}

#[test]
fn internal_traffic_policy_local_holds_for_pods_and_external_clients() {
    let mut n = node();
    for sport in 42200..42220u16 {
        let (port, p) = syn_from_pod_a(&mut n, ITP_LOCAL, 80, sport).one();
        assert_eq!((port.as_str(), p.src), ("veth-pod-c", POD_A));
        let (port, p) = syn_from_outside(&mut n, ITP_LOCAL, 80, sport).one();
        // Upstream "external to ClusterIP with iTP:Local": local only, masqueraded.
        assert_eq!((port.as_str(), p.src), ("veth-pod-c", NODE));
    }
    syn_from_outside(&mut n, [10, 96, 0, 31], 80, 42300).dropped("svc_no_local_endpoints");
}

/// Upstream "node to LB with eTP:Local": the node's own clients are short-circuited to
/// every endpoint and masqueraded.
#[test]
fn the_nodes_own_clients_of_a_local_policy_load_balancer_use_every_endpoint() {
    let mut n = node();
    let mut seen = HashSet::new();
    for sport in 42400..42440u16 {
        let (port, p) = syn_from_host(&mut n, LB_LOCAL, 80, sport).one();
        assert_eq!(p.src, NODE);
        seen.insert(port.clone());
        let (rp, r) = endpoint_reply(&mut n, &port, &p);
        assert_eq!(rp, "psw-host");
        assert_eq!(
            (r.src, r.sport, r.dst, r.dport),
            (LB_LOCAL, 80, NODE, sport)
        );
    }
    assert_eq!(seen.len(), 2, "both endpoints: {seen:?}");
}

// ---- case 4: eTP Local falls back to serving-terminating local endpoints ----

#[test]
fn external_policy_local_falls_back_to_serving_terminating_local_endpoints() {
    let mut n = node();
    for sport in 43000..43020u16 {
        for (dst, dport) in [(TERM_LB, 80u16), (NODE, 30090)] {
            let (port, p) = syn_from_outside(&mut n, dst, dport, sport).one();
            assert_eq!(
                (port.as_str(), p.src, p.dst),
                ("veth-pod-c", EXT, POD_C),
                "the serving-terminating local endpoint, client kept"
            );
            let (rp, r) = endpoint_reply(&mut n, &port, &p);
            assert_eq!(rp, "eth0");
            assert_eq!((r.src, r.sport, r.dst), (dst, dport, EXT));
        }
        // Cluster-wide clients still use the ready endpoints only (pod B).
        let (port, p) = syn_from_pod_a(&mut n, TERM_CIP, 80, sport).one();
        assert_eq!((port.as_str(), p.dst), ("eth0", POD_B));
    }
    // Not serving any more: nothing local to fall back to.
    syn_from_outside(&mut n, GONE_LB, 80, 43100).dropped("svc_no_local_endpoints");
    syn_from_outside(&mut n, NODE, 30091, 43101).dropped("svc_no_local_endpoints");
}

#[test]
fn external_policy_local_prefers_ready_local_endpoints() {
    let mut n = node();
    for sport in 43200..43240u16 {
        let (port, p) = syn_from_outside(&mut n, PREFER_LB, 80, sport).one();
        assert_eq!((port.as_str(), p.dst), ("veth-pod-a", POD_A));
    }
}

/// ClientIP affinity never brings a cluster-wide client to an endpoint only the local
/// fallback may use.
#[test]
fn the_terminating_fallback_is_not_used_by_cluster_wide_clients() {
    let snap = snapshot(&policy_config());
    let sp = snap
        .services
        .ports
        .iter()
        .find(|p| p.name.starts_with("default/etp-local-terminating:"))
        .expect("service port");
    let ips: Vec<([u8; 4], bool)> = sp.backends.iter().map(|b| (b.ip, b.cluster)).collect();
    assert_eq!(ips, vec![(POD_B, true), (POD_C, false)]);
}
