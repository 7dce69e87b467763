//! The NetworkPolicy part of a sync: what differs between the compiled policy and what the
//! daemon holds, as requests for the same `batch` as the other changes. Ordered so that
//! every step is valid on its own: sets added or replaced, pod policies set, pod policies
//! removed, then sets no rule refers to any more removed.

use crate::daemon::Applied;
use crate::planner::{Planner, Rejection};
use podswitch_model::config::NodeConfig;
use podswitch_model::protocol::Request;
use serde_json::Value;

enum What {
    Set(String, Option<Value>),
    Pod(String, Option<Value>),
}

/// One request and what it makes the daemon hold once accepted.
pub struct PolicyChange {
    pub request: Value,
    what: What,
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Takes the daemon's own NetworkPolicy sections (from its `dump config`).
pub fn load(applied: &mut Applied, c: &NodeConfig) {
    applied.address_sets = c
        .address_sets
        .iter()
        .map(|s| (s.name.clone(), to_value(s)))
        .collect();
    applied.pod_policies = c
        .pod_policies
        .iter()
        .map(|p| (p.pod.clone(), to_value(p)))
        .collect();
}

/// The daemon's configuration was replaced without them.
pub fn forget(applied: &mut Applied) {
    applied.address_sets.clear();
    applied.pod_policies.clear();
}

/// The requests that bring the daemon to the plan's policy (none before it is compiled).
pub fn diff(plan: &Planner, applied: &Applied) -> Vec<PolicyChange> {
    let Some(p) = plan.policy.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, s) in &p.sets {
        let v = to_value(s);
        if applied.address_sets.get(name) != Some(&v) {
            out.push(PolicyChange {
                request: to_value(&Request::AddAddressSet { set: s.clone() }),
                what: What::Set(name.clone(), Some(v)),
            });
        }
    }
    for (pod, pp) in &p.pods {
        let v = to_value(pp);
        if applied.pod_policies.get(pod) != Some(&v) {
            out.push(PolicyChange {
                request: to_value(&Request::SetPodPolicy { policy: pp.clone() }),
                what: What::Pod(pod.clone(), Some(v)),
            });
        }
    }
    for pod in applied.pod_policies.keys() {
        if !p.pods.contains_key(pod) {
            out.push(PolicyChange {
                request: to_value(&Request::RemovePodPolicy { pod: pod.clone() }),
                what: What::Pod(pod.clone(), None),
            });
        }
    }
    for name in applied.address_sets.keys() {
        if !p.sets.contains_key(name) {
            out.push(PolicyChange {
                request: to_value(&Request::RemoveAddressSet { name: name.clone() }),
                what: What::Set(name.clone(), None),
            });
        }
    }
    out
}

/// Records the daemon's answers: accepted changes become what it holds, refused ones are
/// named (kind `PodPolicy` or `AddressSet`) and tried again at the next sync.
pub fn record(
    applied: &mut Applied,
    changes: Vec<PolicyChange>,
    results: Vec<Result<(), String>>,
    refused: &mut Vec<Rejection>,
) {
    for (c, r) in changes.into_iter().zip(results) {
        let (map, kind, name, v) = match c.what {
            What::Set(n, v) => (&mut applied.address_sets, "AddressSet", n, v),
            What::Pod(n, v) => (&mut applied.pod_policies, "PodPolicy", n, v),
        };
        match (r, v) {
            (Ok(()), Some(v)) => {
                map.insert(name, v);
            }
            (Ok(()), None) => {
                map.remove(&name);
            }
            // Already gone from the daemon: what we wanted.
            (Err(e), None) if e.contains("no policy for pod") || e.contains("no address set") => {
                map.remove(&name);
            }
            (Err(e), _) => refused.push(Rejection {
                kind: kind.into(),
                name,
                reason: format!("podswitchd: {e}"),
            }),
        }
    }
}

/// Whether a refusal is one of ours (they are all re-reported at each sync until accepted).
pub fn is_policy_refusal(r: &Rejection) -> bool {
    matches!(r.kind.as_str(), "AddressSet" | "PodPolicy")
}
