//! When the NetworkPolicy inputs mark policy dirty: only changes that can change a compile
//! (policy objects, namespace labels, a pod's labels, address, node or named ports).

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use podswitch_controller::policy::slim;
use podswitch_controller::state::{Change, ClusterState, Event};
use serde_json::{Value, json};

fn pod(labels: Value, ip: Option<&str>, extra: Value) -> Pod {
    let mut j = json!({
        "metadata": {"name": "a", "namespace": "x", "labels": labels,
                     "annotations": {"big": "x".repeat(1000)}},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "busybox",
                 "ports": [{"name": "http", "containerPort": 80}, {"containerPort": 9000}]}]},
        "status": {"phase": "Running"},
    });
    if let Some(ip) = ip {
        j["status"]["podIP"] = json!(ip);
    }
    if let Value::Object(m) = extra {
        for (k, v) in m {
            j["status"][k] = v;
        }
    }
    serde_json::from_value(j).unwrap()
}

fn ns(labels: Value, annotations: Value) -> Namespace {
    serde_json::from_value(
        json!({"metadata": {"name": "x", "labels": labels, "annotations": annotations}}),
    )
    .unwrap()
}

fn listed() -> ClusterState {
    let mut st = ClusterState::default();
    st.apply(Event::NetworkPolicy(Change::ListStart));
    st.apply(Event::NetworkPolicy(Change::ListDone));
    st.apply(Event::Namespace(Change::ListStart));
    st.apply(Event::Namespace(Change::Listed(ns(
        json!({"team": "a"}),
        json!({}),
    ))));
    st.apply(Event::Namespace(Change::ListDone));
    assert!(!st.policy_synced());
    st.apply(Event::AnyPod(Change::ListStart));
    st.apply(Event::AnyPod(Change::Listed(slim(pod(
        json!({"app": "web"}),
        Some("10.244.1.10"),
        json!({}),
    )))));
    st.apply(Event::AnyPod(Change::ListDone));
    assert!(st.policy_synced() && st.policy_dirty);
    st.policy_dirty = false;
    st
}

#[test]
fn only_relevant_changes_mark_policy_dirty() {
    let mut st = listed();
    let apply = |st: &mut ClusterState, p: Pod| {
        st.apply(Event::AnyPod(Change::Apply(slim(p))));
        std::mem::take(&mut st.policy_dirty)
    };
    // A status change policy does not read (conditions, start time): nothing to do.
    assert!(!apply(
        &mut st,
        pod(
            json!({"app": "web"}),
            Some("10.244.1.10"),
            json!({"conditions": [{"type": "Ready", "status": "True"}], "startTime": "2026-01-01T00:00:00Z"})
        )
    ));
    // Labels, address: recompile.
    assert!(apply(
        &mut st,
        pod(json!({"app": "db"}), Some("10.244.1.10"), json!({}))
    ));
    assert!(apply(
        &mut st,
        pod(json!({"app": "db"}), Some("10.244.1.11"), json!({}))
    ));
    // Finished: it leaves every set.
    assert!(apply(
        &mut st,
        pod(
            json!({"app": "db"}),
            Some("10.244.1.11"),
            json!({"phase": "Succeeded"})
        )
    ));
    // A pod that has no address before and after is in no set either way.
    let mut st2 = listed();
    st2.apply(Event::AnyPod(Change::Delete(pod(
        json!({}),
        Some("10.244.1.10"),
        json!({}),
    ))));
    assert!(std::mem::take(&mut st2.policy_dirty));
    assert!(!apply(
        &mut st2,
        pod(json!({"app": "new"}), None, json!({}))
    ));
    assert!(!apply(
        &mut st2,
        pod(json!({"app": "newer"}), None, json!({}))
    ));
    // Namespaces: labels count, annotations do not.
    st.apply(Event::Namespace(Change::Apply(ns(
        json!({"team": "a"}),
        json!({"note": "x"}),
    ))));
    assert!(!std::mem::take(&mut st.policy_dirty));
    st.apply(Event::Namespace(Change::Apply(ns(
        json!({"team": "b"}),
        json!({"note": "x"}),
    ))));
    assert!(std::mem::take(&mut st.policy_dirty));
    // Any policy change.
    let np: NetworkPolicy = serde_json::from_value(
        json!({"metadata": {"name": "p", "namespace": "x"}, "spec": {"podSelector": {}}}),
    )
    .unwrap();
    st.apply(Event::NetworkPolicy(Change::Apply(np)));
    assert!(st.policy_dirty && st.pending() > 0);
}

#[test]
fn slim_keeps_what_policy_reads_only() {
    let p = pod(json!({"app": "web"}), Some("10.244.1.10"), json!({}));
    let s = slim(p.clone());
    use podswitch_controller::policy::PodFacts;
    assert_eq!(PodFacts::of(&s), PodFacts::of(&p));
    assert!(s.metadata.annotations.is_none());
    let c = &s.spec.as_ref().unwrap().containers[0];
    assert!(c.image.is_none());
    assert_eq!(
        c.ports.as_ref().unwrap().len(),
        1,
        "unnamed ports are dropped"
    );
    assert!(
        serde_json::to_string(&s).unwrap().len() * 3 < serde_json::to_string(&p).unwrap().len()
    );
}
