//! Events about a Pod (as the kubelet posts them: `kubectl describe pod` shows them).
//! Posting is best effort: a failure is logged, never fatal.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

pub async fn pod_event(
    client: &Client,
    node: &str,
    pod: &Pod,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let now = Time(crate::process::Stamp::now());
    let ev = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", pod.name_any())),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            api_version: Some("v1".into()),
            name: Some(pod.name_any()),
            namespace: Some(ns.clone()),
            uid: pod.uid(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        source: Some(EventSource {
            component: Some("podswitch-lab-agent".into()),
            host: Some(node.into()),
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    if warning {
        tracing::warn!("pod {ns}/{}: {reason}: {message}", pod.name_any());
    } else {
        tracing::info!("pod {ns}/{}: {reason}: {message}", pod.name_any());
    }
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    if let Err(e) = api.create(&PostParams::default(), &ev).await {
        tracing::warn!(
            "pod {ns}/{}: posting event {reason} failed: {e}",
            pod.name_any()
        );
    }
}
