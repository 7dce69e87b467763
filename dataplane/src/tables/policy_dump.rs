//! `dump policies`: per local pod, the policies that select it, its rules with their
//! counters, and the compiled lookup structure (port classes and address ranges).

use super::Snapshot;
use super::policy::{DirRules, PortClasses, RangeRules};
use serde_json::{Value, json};
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;

/// Text and JSON: one row per selected pod (addresses as strings, the port by name, `null`
/// for a direction in which no policy isolates the pod).
pub fn dump(snap: &Snapshot) -> (String, Value) {
    let pt = &*snap.policy;
    let mut text = String::new();
    let mut rows = Vec::new();
    let _ = writeln!(
        text,
        "established flows on policy change: {}",
        match pt.established {
            super::policy::Established::Keep => "keep",
            super::policy::Established::Cut => "cut",
        }
    );
    for p in &pt.pods {
        let port = snap
            .ports
            .iter()
            .find(|e| e.label == p.source.pod && e.ip == Some(p.ip))
            .map(|e| e.name.clone());
        let _ = writeln!(
            text,
            "pod {} ({}, port {})",
            p.source.pod,
            Ipv4Addr::from(p.ip),
            port.as_deref().unwrap_or("-")
        );
        let mut row = json!({
            "pod": p.source.pod,
            "ip": Ipv4Addr::from(p.ip).to_string(),
            "port": port,
        });
        for (name, d) in [("ingress", &p.ingress), ("egress", &p.egress)] {
            row[name] = match d {
                None => {
                    let _ = writeln!(text, "  {name}: not isolated");
                    Value::Null
                }
                Some(d) => direction(&mut text, name, d),
            };
        }
        rows.push(row);
    }
    (text, json!(rows))
}

fn direction(text: &mut String, name: &str, d: &DirRules) -> Value {
    let denied = d.denied.load(Ordering::Relaxed);
    let _ = writeln!(
        text,
        "  {name}: selected by {} denied={denied}",
        if d.policies().is_empty() {
            "-".to_string()
        } else {
            d.policies().join(", ")
        }
    );
    let mut rules = Vec::new();
    for (i, r) in d.rules().enumerate() {
        let allowed = r.allowed.load(Ordering::Relaxed);
        let ports: Vec<String> = r
            .rule
            .ports
            .iter()
            .map(|p| match p.range() {
                (0, 65535) => format!("{}/any", p.protocol.as_str()),
                (a, b) if a == b => format!("{}/{a}", p.protocol.as_str()),
                (a, b) => format!("{}/{a}-{b}", p.protocol.as_str()),
            })
            .collect();
        let _ = writeln!(
            text,
            "    [{i}] {} rule {}: from/to {} on {} allowed={allowed}",
            r.rule.policy,
            r.rule.rule,
            if r.rule.peers.is_empty() {
                "any address".to_string()
            } else {
                r.rule.peers.join(", ")
            },
            if ports.is_empty() {
                "any port".to_string()
            } else {
                ports.join(", ")
            }
        );
        rules.push(json!({
            "policy": r.rule.policy,
            "rule": r.rule.rule,
            "peers": r.rule.peers,
            "ports": r.rule.ports.iter().map(|p| json!({
                "protocol": p.protocol.as_str(),
                "port": p.port,
                "end_port": p.end_port,
            })).collect::<Vec<_>>(),
            "allowed": allowed,
        }));
    }
    let _ = writeln!(text, "    compiled:");
    let any = ranges(text, "any protocol, any port", &d.any_port);
    let tcp = classes(text, "tcp", &d.tcp);
    let udp = classes(text, "udp", &d.udp);
    json!({
        "policies": d.policies(),
        "denied": denied,
        "rules": rules,
        "compiled": {"any_port": any, "tcp": tcp, "udp": udp},
    })
}

fn ranges(text: &mut String, what: &str, r: &RangeRules) -> Value {
    if r.is_empty() {
        return json!([]);
    }
    let _ = write!(text, "      {what}:");
    let mut v = Vec::new();
    for (a, b, rule) in r.iter() {
        let (a, b) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
        let _ = write!(text, " {a}-{b}=>[{rule}]");
        v.push(json!({"first": a.to_string(), "last": b.to_string(), "rule": rule}));
    }
    text.push('\n');
    json!(v)
}

fn classes(text: &mut String, proto: &str, pc: &PortClasses) -> Value {
    let mut v = Vec::new();
    for (lo, hi, t) in pc.classes() {
        let what = if lo == hi {
            format!("{proto}/{lo}")
        } else {
            format!("{proto}/{lo}-{hi}")
        };
        let r = ranges(text, &what, t);
        v.push(json!({"first_port": lo, "last_port": hi, "ranges": r}));
    }
    json!(v)
}
