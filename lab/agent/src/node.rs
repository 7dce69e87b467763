//! The Node this agent stands for: registered once, then kept alive as the kubelet does,
//! with a Lease in kube-node-lease renewed every 10 s and the Ready condition's heartbeat,
//! so the node-lifecycle controller neither taints nor evicts it.

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

pub const HEARTBEAT: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub ip: String,
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
}

/// The GOARCH spelling Kubernetes uses.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn ready_condition(now: &Time) -> serde_json::Value {
    json!({
        "type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "podswitch-lab-agent is posting ready status",
        "lastHeartbeatTime": now, "lastTransitionTime": now,
    })
}

fn status_patch(n: &NodeInfo) -> serde_json::Value {
    let now = Time(crate::process::Stamp::now());
    let resources = json!({"cpu": n.cpu, "memory": n.memory, "pods": n.max_pods.to_string()});
    json!({"status": {
        "addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}],
        "capacity": resources, "allocatable": resources,
        "conditions": [ready_condition(&now)],
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
            "osImage": "podswitch lab", "containerRuntimeVersion": "podswitch-lab-agent://0.1",
            "kubeletVersion": "v1.37.2", "kubeProxyVersion": "",
            "operatingSystem": "linux", "architecture": arch(),
        },
    }})
}

/// Creates the Node unless it exists (then posts its status). A new Node is written once
/// only until it has its podCIDR: node IPAM allocates on the create event, and an update
/// racing the allocation makes kube-controller-manager's range allocator allocate twice,
/// fail, and skip a /24 for the next Node.
pub async fn register(client: &Client, n: &NodeInfo) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = status_patch(n);
    // An annotation map from the start, as a kubelet's Node has (flanneld expects one): the
    // TTL controller's, which the lab runs without.
    node["metadata"] = json!({"name": n.name,
        // The deprecated beta labels too, as a kubelet sets them: otherwise the node
        // lifecycle controller adds them at once, racing node IPAM (see above).
        "labels": {"kubernetes.io/hostname": n.name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch(), "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch()},
        "annotations": {"node.alpha.kubernetes.io/ttl": "0"}});
    // Registered not-ready, as a kubelet registers (the apiserver drops the status of a
    // created Node); the Ready status follows once the Node has its podCIDR.
    node["spec"] =
        json!({"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]});
    let node: Node = serde_json::from_value(node)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {
            tracing::info!("registered Node {}", n.name);
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::info!("Node {} exists already", n.name);
            post_status(client, n).await
        }
        Err(e) => Err(e).with_context(|| format!("registering Node {}", n.name)),
    }
}

/// Waits (bounded) until node IPAM gave the Node its podCIDR; heartbeats start after.
pub async fn wait_pod_cidr(client: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    for _ in 0..100 {
        if let Ok(node) = nodes.get(name).await
            && node.spec.and_then(|s| s.pod_cidr).is_some()
        {
            // Let the allocator's cache see its own patch before the Node changes again.
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(
        "Node {name}: no podCIDR after 10 s (is kube-controller-manager running with --allocate-node-cidrs?)"
    );
}

async fn post_status(client: &Client, n: &NodeInfo) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch_status(
            &n.name,
            &PatchParams::default(),
            &Patch::Strategic(status_patch(n)),
        )
        .await
        .with_context(|| format!("posting the status of Node {}", n.name))?;
    Ok(())
}

async fn renew_lease(client: &Client, n: &NodeInfo) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let spec = LeaseSpec {
        holder_identity: Some(n.name.clone()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        renew_time: Some(MicroTime(crate::process::Stamp::now())),
        ..Default::default()
    };
    let patch = json!({"spec": spec});
    match leases
        .patch(&n.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(n.name.clone()),
                    namespace: Some("kube-node-lease".into()),
                    ..Default::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Renews the Lease and the Ready heartbeat forever; failures are logged and retried.
pub async fn heartbeat(client: Client, n: NodeInfo) {
    wait_pod_cidr(&client, &n.name).await;
    loop {
        if let Err(e) = renew_lease(&client, &n).await {
            tracing::warn!("node {}: lease renewal failed: {e:#}", n.name);
        }
        if let Err(e) = post_status(&client, &n).await {
            tracing::warn!("node {}: status heartbeat failed: {e:#}", n.name);
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}
