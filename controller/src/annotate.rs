//! This node's lease, written the way flanneld writes it: the `flannel.alpha.coreos.com/`
//! annotations on the Node and the NetworkUnavailable condition cleared, in one strategic
//! merge patch of the Node's status. Flannel nodes see this node as an ordinary peer.

use crate::nodes::own_annotations;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use podswitch_model::config::NodeConfig;
use serde_json::json;

/// Whether `node` already carries this node's lease and a cleared NetworkUnavailable.
pub fn up_to_date(node: &Node, cfg: &NodeConfig) -> bool {
    let want = own_annotations(
        cfg.node.overlay,
        cfg.vxlan.vni,
        cfg.node.vtep_mac,
        cfg.node.address,
    );
    let have = node.metadata.annotations.clone().unwrap_or_default();
    let ann_ok = want
        .iter()
        .all(|(k, v)| have.get(k).map(String::as_str) == v.as_str());
    let cond_ok = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "NetworkUnavailable" && c.status == "False");
    ann_ok && cond_ok
}

pub async fn write(client: &Client, cfg: &NodeConfig) -> Result<(), String> {
    let ann = own_annotations(
        cfg.node.overlay,
        cfg.vxlan.vni,
        cfg.node.vtep_mac,
        cfg.node.address,
    );
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let patch = json!({
        "metadata": {"annotations": ann},
        "status": {"conditions": [{
            "type": "NetworkUnavailable",
            "status": "False",
            "reason": "PodswitchIsUp",
            "message": "podswitch is running on this node",
            "lastTransitionTime": now,
            "lastHeartbeatTime": now,
        }]},
    });
    Api::<Node>::all(client.clone())
        .patch_status(
            &cfg.node.name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .map(|_| ())
        .map_err(|e| format!("patching Node {}: {e}", cfg.node.name))
}
