//! healthCheckNodePort: kube-proxy answers HTTP on it, on every node, with the number of
//! the Service's ready endpoints on that node, so an external load balancer sends
//! externalTrafficPolicy Local traffic only to nodes that have one. This file holds the
//! pure parts (validation, the count, the response); `daemon::health` serves it.

use super::services::frontend_key;
use crate::config::NodeConfig;
use crate::config::services::{NatSettings, Service, ServiceType, TrafficPolicy};
use std::collections::HashMap;

/// Checks a Service's `health_check_node_port` and claims it in `owner` (frontend keys of
/// NodePorts): it must not be any NodePort, nor another Service's health-check port.
pub fn validate(
    s: &Service,
    hc: u16,
    nat: &NatSettings,
    sname: &str,
    owner: &mut HashMap<u64, String>,
    errs: &mut Vec<String>,
) {
    if s.kind != ServiceType::LoadBalancer || s.external_traffic_policy != TrafficPolicy::Local {
        errs.push(format!(
            "service {sname}: health_check_node_port needs type = \"LoadBalancer\" and external_traffic_policy = \"Local\""
        ));
    }
    let [lo, hi] = nat.node_port_range;
    if !(lo..=hi).contains(&hc) {
        errs.push(format!(
            "service {sname}: health_check_node_port {hc} is outside nat.node_port_range {lo}-{hi}"
        ));
    }
    let key = frontend_key([0; 4], hc, 6);
    match owner.get(&key) {
        Some(o) => errs.push(format!(
            "service {sname}: health_check_node_port {hc} is already used by {o}"
        )),
        None => {
            owner.insert(key, format!("{sname} (health check)"));
        }
    }
}

/// The number of the Service's ready endpoints on this node (what kube-proxy reports;
/// serving-terminating endpoints do not count, so a draining node fails its check).
pub fn local_ready_endpoints(cfg: &NodeConfig, s: &Service) -> usize {
    let n = &cfg.node;
    s.endpoints
        .iter()
        .filter(|e| e.ready)
        .filter(|e| match &e.node {
            Some(name) => *name == n.name,
            None => n.pod_cidr.contains(u32::from(e.ip)) || e.ip == n.address,
        })
        .count()
}

/// The HTTP response for a health check: kube-proxy's status codes, headers and JSON body.
pub fn response(s: &Service, local: usize, head_only: bool) -> String {
    // Written out so the keys keep kube-proxy's order (serde_json's map sorts them).
    let q = |v: &str| serde_json::Value::from(v).to_string();
    let body = format!(
        "{{\"service\":{{\"namespace\":{},\"name\":{}}},\"localEndpoints\":{local},\"serviceProxyHealthy\":true}}",
        q(&s.namespace),
        q(&s.name)
    );
    let status = if local > 0 {
        "200 OK"
    } else {
        "503 Service Unavailable"
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nX-Load-Balancing-Endpoint-Weight: {local}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        if head_only { "" } else { body.as_str() }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> NodeConfig {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/node1-vxlan-services.toml");
        let mut t = std::fs::read_to_string(p).unwrap();
        t.push_str(extra);
        NodeConfig::from_toml(&t).unwrap()
    }

    const LB: &str = r#"
[[service]]
name = "lb"
namespace = "shop"
type = "LoadBalancer"
cluster_ip = "10.96.0.70"
load_balancer_ips = ["192.168.1.210"]
external_traffic_policy = "Local"
health_check_node_port = 31000
ports = [{ protocol = "tcp", port = 80, target_port = 8080, node_port = 30100 }]
[[service.endpoints]]
ip = "10.244.1.11"
[[service.endpoints]]
ip = "10.244.1.10"
ready = false
serving = true
terminating = true
[[service.endpoints]]
ip = "10.244.2.20"
"#;

    #[test]
    fn counts_ready_local_endpoints_and_answers_like_kube_proxy() {
        let c = cfg(LB);
        let s = c.services.iter().find(|s| s.name == "lb").unwrap();
        assert_eq!(local_ready_endpoints(&c, s), 1);
        let r = response(s, 1, false);
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let body = r.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(
            body,
            r#"{"service":{"namespace":"shop","name":"lb"},"localEndpoints":1,"serviceProxyHealthy":true}"#
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"service": {"namespace": "shop", "name": "lb"},
                "localEndpoints": 1, "serviceProxyHealthy": true})
        );
        assert!(response(s, 0, false).starts_with("HTTP/1.1 503 "));
        assert!(response(s, 0, true).ends_with("\r\n\r\n"));
    }

    fn build_err(c: &NodeConfig) -> String {
        match crate::tables::build::build(c, 1) {
            Ok(_) => panic!("configuration accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn validation_names_the_service() {
        let c = cfg(LB);
        assert!(crate::tables::build::build(&c, 1).is_ok());
        let bad = LB
            .replace("type = \"LoadBalancer\"\n", "type = \"NodePort\"\n")
            .replace("load_balancer_ips = [\"192.168.1.210\"]\n", "");
        let e = build_err(&cfg(&bad));
        assert!(e.contains("shop/lb: health_check_node_port needs"), "{e}");
        let clash = LB.replace("31000", "30080");
        let e = build_err(&cfg(&clash));
        assert!(
            e.contains("health_check_node_port 30080 is already used by default/web:http"),
            "{e}"
        );
        let out = LB.replace("31000", "40000");
        let e = build_err(&cfg(&out));
        assert!(e.contains("outside nat.node_port_range"), "{e}");
    }
}
