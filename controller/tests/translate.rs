//! Services and EndpointSlices, as the API serves them (JSON), into podswitch Services:
//! kube-proxy's rules for skipped objects, conditions, named ports and refusals.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use podswitch_controller::services::{Context, Translated, translate};
use podswitch_model::config::services::{ServiceType, SessionAffinity, TrafficPolicy};
use serde_json::json;
use std::collections::HashMap;
use std::net::Ipv4Addr;

fn ctx() -> Context {
    Context {
        node_name: "node1".into(),
        node_address: Ipv4Addr::new(192, 168, 1, 10),
        cluster_cidr: "10.244.0.0/16".parse().unwrap(),
        node_port_range: [30000, 32767],
        peers: HashMap::from([(
            "node2".to_string(),
            (
                Ipv4Addr::new(192, 168, 1, 11),
                "10.244.2.0/24".parse().unwrap(),
            ),
        )]),
    }
}

fn svc(spec: serde_json::Value) -> Service {
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
    )
    .unwrap()
}

fn slice(name: &str, ports: serde_json::Value, eps: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": ports, "endpoints": eps,
    }))
    .unwrap()
}

fn program(t: Translated) -> (podswitch_model::config::Service, Vec<String>) {
    match t {
        Translated::Program { service, warnings } => (service, warnings),
        other => panic!("{other:?}"),
    }
}

#[test]
fn node_port_service_with_slices_and_conditions() {
    let s = svc(json!({
        "type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
        "ports": [{"name": "http", "port": 80, "targetPort": "web", "nodePort": 30080, "protocol": "TCP"},
                  {"name": "dns", "port": 53, "targetPort": 5353, "nodePort": 30053, "protocol": "UDP"}],
        "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Cluster",
        "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
        "externalIPs": ["192.168.1.200"],
    }));
    let ports = json!([{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}]);
    let a = slice(
        "web-a",
        ports.clone(),
        json!([
            {"addresses": ["10.244.1.11"], "nodeName": "node1", "conditions": {"ready": true}},
            {"addresses": ["10.244.2.20"], "nodeName": "node2", "conditions": {"ready": false, "serving": true, "terminating": true}},
        ]),
    );
    // The same endpoint listed in a second slice while it moves: the better entry wins.
    let b = slice(
        "web-b",
        ports,
        json!([
            {"addresses": ["10.244.2.20"], "nodeName": "node2", "conditions": {"ready": true}},
            {"addresses": ["10.244.2.21"], "nodeName": "node2"},
        ]),
    );
    let (out, warnings) = program(translate(&s, [&a, &b], &ctx()));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(out.kind, ServiceType::NodePort);
    assert_eq!(out.cluster_ip, Some(Ipv4Addr::new(10, 96, 0, 10)));
    assert_eq!(out.external_traffic_policy, TrafficPolicy::Local);
    assert_eq!(
        (out.session_affinity, out.session_affinity_timeout),
        (SessionAffinity::ClientIP, 600)
    );
    assert_eq!(out.external_ips, vec![Ipv4Addr::new(192, 168, 1, 200)]);
    assert_eq!(out.ports[0].node_port, Some(30080));
    assert_eq!(out.ports[0].target_port, None, "named: per endpoint");
    assert_eq!(out.ports[1].target_port, Some(5353));
    let ips: Vec<_> = out.endpoints.iter().map(|e| e.ip.to_string()).collect();
    assert_eq!(ips, ["10.244.1.11", "10.244.2.20", "10.244.2.21"]);
    let e = &out.endpoints[1];
    assert!(
        e.ready && !e.terminating,
        "the ready copy of a moving endpoint wins"
    );
    assert_eq!(out.endpoints[0].ports.get("http"), Some(&8080));
    assert_eq!(out.endpoints[0].node.as_deref(), Some("node1"));
    // nil conditions count as ready and serving.
    assert!(out.endpoints[2].ready && out.endpoints[2].serving());
}

#[test]
fn what_kube_proxy_skips() {
    let headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
    assert!(matches!(
        translate(&headless, [], &ctx()),
        Translated::Skip(_)
    ));
    let ext = svc(json!({"type": "ExternalName", "externalName": "example.com"}));
    assert!(matches!(translate(&ext, [], &ctx()), Translated::Skip(_)));
    let mut other: Service = svc(json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80}]}));
    other.metadata.labels = Some(
        [(
            "service.kubernetes.io/service-proxy-name".to_string(),
            "x".to_string(),
        )]
        .into(),
    );
    assert!(matches!(translate(&other, [], &ctx()), Translated::Skip(_)));
}

#[test]
fn refusals_name_the_field() {
    let cases = [
        (json!({"clusterIP": "10.96.0.12", "ports": []}), "no ports"),
        (
            json!({"clusterIP": "10.96.0.12", "ports": [{"port": 70000}]}),
            "out of range",
        ),
        (
            json!({"clusterIP": "10.96.0.12", "ports": [{"port": 80, "protocol": "SCTP"}]}),
            "SCTP",
        ),
        (
            json!({"type": "NodePort", "clusterIP": "10.96.0.12", "ports": [{"port": 80, "nodePort": 40000}]}),
            "outside the NodePort range",
        ),
        (
            json!({"clusterIP": "fd00::1", "clusterIPs": ["fd00::1"], "ports": [{"port": 80}]}),
            "IPv6",
        ),
        (
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.12", "ports": [{"port": 80}]}),
            "nodePort",
        ),
    ];
    for (spec, want) in cases {
        match translate(&svc(spec.clone()), [], &ctx()) {
            Translated::Reject(e) => assert!(e.contains(want), "{spec}: {e}"),
            other => panic!("{spec}: {other:?}"),
        }
    }
}

#[test]
fn endpoints_podswitch_cannot_reach_are_left_out_and_named() {
    let s = svc(json!({"clusterIP": "10.96.0.13", "ports": [{"port": 80, "targetPort": 8080}]}));
    let sl = slice(
        "web-x",
        json!([{"port": 8080, "protocol": "TCP"}]),
        json!([
            {"addresses": ["10.244.1.12"], "nodeName": "node1"},
            {"addresses": ["172.16.0.5"], "nodeName": "node1"},
            {"addresses": ["10.244.9.9"], "nodeName": "node9"},
            {"addresses": ["192.168.1.11"], "nodeName": "node2"},
        ]),
    );
    let (out, warnings) = program(translate(&s, [&sl], &ctx()));
    let ips: Vec<_> = out.endpoints.iter().map(|e| e.ip.to_string()).collect();
    assert_eq!(
        ips,
        ["10.244.1.12", "192.168.1.11"],
        "a node address (hostNetwork) is fine"
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("outside the cluster network"));
    assert!(warnings[1].contains("node9"));
}

#[test]
fn load_balancer_ingress_and_health_check() {
    let mut s = svc(json!({
        "type": "LoadBalancer", "clusterIP": "10.96.0.14", "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 32000,
        "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30081}],
    }));
    s.status = serde_json::from_value(json!({"loadBalancer": {"ingress": [
        {"ip": "192.168.1.210"}, {"ip": "192.168.1.211", "ipMode": "Proxy"}, {"hostname": "lb.example"}]}}))
    .unwrap();
    let (out, _) = program(translate(&s, [], &ctx()));
    assert_eq!(out.load_balancer_ips, vec![Ipv4Addr::new(192, 168, 1, 210)]);
    assert_eq!(out.health_check_node_port, Some(32000));
}
