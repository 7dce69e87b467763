//! One task per Pod bound to this node: sets up its network (a namespace attached through
//! the CNI chain), runs its containers, reports its status, and on deletion stops the
//! programs, detaches the network and removes the Pod object.

use crate::cni::{self, Attachment};
use crate::events::pod_event;
use crate::netns;
use crate::process::{self, ContainerSpec, Report, RestartPolicy};
use crate::state::{PodRecord, StateDir};
use crate::status::{self, Snapshot};
use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// Annotation asking IPAM for a given address (passed as the CNI `ips` capability, which
/// the reference host-local plugin honours): the lab's demo pods keep their house IPs.
pub const IP_ANNOTATION: &str = "lab.podswitch.io/ip";
const IFNAME: &str = "eth0";
const SANDBOX_RETRY_MAX: Duration = Duration::from_secs(30);

pub struct Ctx {
    pub client: Client,
    pub node: String,
    pub node_ip: String,
    pub cni: cni::Runtime,
    pub netns_prefix: String,
    pub state: StateDir,
}

#[derive(Debug)]
pub enum Msg {
    /// A newer version of the Pod object.
    Update(Box<Pod>),
    /// The object is gone from the API (deleted by force or by someone else).
    Gone,
}

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// The containers as host programs; a container the lab cannot run is an error naming it.
fn container_specs(pod: &Pod) -> Result<Vec<ContainerSpec>> {
    let Some(spec) = &pod.spec else {
        bail!("the Pod has no spec")
    };
    if spec.containers.is_empty() {
        bail!("the Pod has no containers");
    }
    let mut out = Vec::new();
    for c in &spec.containers {
        let mut argv = c.command.clone().unwrap_or_default();
        if argv.is_empty() {
            bail!(
                "container {}: no command (the lab runs command + args as host programs; the image {:?} is not used)",
                c.name,
                c.image.as_deref().unwrap_or("")
            );
        }
        argv.extend(c.args.clone().unwrap_or_default());
        let mut env = Vec::new();
        for e in c.env.iter().flatten() {
            if e.value_from.is_some() {
                bail!(
                    "container {}: env {}: valueFrom is not supported by the lab agent",
                    c.name,
                    e.name
                );
            }
            env.push((e.name.clone(), e.value.clone().unwrap_or_default()));
        }
        out.push(ContainerSpec {
            name: c.name.clone(),
            argv,
            env,
            working_dir: c.working_dir.clone(),
        });
    }
    Ok(out)
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

impl Ctx {
    pub fn netns_name(&self, pod: &Pod) -> String {
        let ns = pod.namespace().unwrap_or_default();
        if ns == "default" {
            format!("{}{}", self.netns_prefix, pod.name_any())
        } else {
            format!("{}{}.{}", self.netns_prefix, ns, pod.name_any())
        }
    }

    pub fn attachment(&self, rec: &PodRecord) -> Attachment {
        Attachment {
            container_id: rec.container_id.clone(),
            netns: netns::path(&rec.netns),
            ifname: IFNAME.into(),
            pod_namespace: rec.namespace.clone(),
            pod_name: rec.name.clone(),
            pod_uid: rec.uid.clone(),
        }
    }

    fn capability_args(pod: &Pod) -> Map<String, Value> {
        let mut caps = Map::new();
        if let Some(ip) = pod.annotations().get(IP_ANNOTATION) {
            caps.insert("ips".into(), json!([ip]));
        }
        caps
    }

    /// The capability arguments for ADD: an address asked for outside the node's podCIDR
    /// (node IPAM gave the node another range) is dropped with an Event, and IPAM chooses.
    async fn add_capability_args(&self, pod: &Pod) -> Map<String, Value> {
        let mut caps = Self::capability_args(pod);
        let Some(ip) = pod.annotations().get(IP_ANNOTATION) else {
            return caps;
        };
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let cidr = nodes
            .get(&self.node)
            .await
            .ok()
            .and_then(|n| n.spec?.pod_cidr);
        if let Some(cidr) = cidr
            && !in_cidr(ip, &cidr)
        {
            let msg = format!(
                "annotation {IP_ANNOTATION}={ip} is outside the node's podCIDR {cidr}: IPAM chooses the address"
            );
            pod_event(
                &self.client,
                &self.node,
                pod,
                true,
                "RequestedIPIgnored",
                &msg,
            )
            .await;
            caps.remove("ips");
        }
        caps
    }

    /// Namespace + CNI ADD; on failure whatever was made is removed again.
    async fn attach(&self, pod: &Pod) -> Result<PodRecord> {
        let uid = pod.uid().unwrap_or_default();
        let mut rec = PodRecord {
            uid: uid.clone(),
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            netns: self.netns_name(pod),
            container_id: uid,
            cni_result: None,
            pod_ip: None,
            pgids: Vec::new(),
        };
        if host_network(pod) {
            rec.netns = String::new();
            rec.pod_ip = Some(self.node_ip.clone());
            self.state.save(&rec)?;
            return Ok(rec);
        }
        if netns::exists(&rec.netns) {
            bail!(
                "network namespace {} exists already (a previous pod of this name is still being removed?)",
                rec.netns
            );
        }
        netns::create(&rec.netns).await?;
        // Saved before ADD: a crash in the middle is cleaned up on the next start.
        self.state.save(&rec)?;
        let caps = self.add_capability_args(pod).await;
        match self.cni.add(&self.attachment(&rec), &caps).await {
            Ok(result) => {
                rec.pod_ip = cni::result_ips(&result).into_iter().next();
                rec.cni_result = Some(result);
                self.state.save(&rec)?;
                if rec.pod_ip.is_none() {
                    bail!("the CNI result has no IP address");
                }
                Ok(rec)
            }
            Err(e) => {
                self.detach(&rec, &caps).await;
                Err(e)
            }
        }
    }

    /// CNI DEL (reverse chain, cached result), namespace removal, state removal. Errors are
    /// logged: DEL must be idempotent and the rest goes on.
    pub async fn detach(&self, rec: &PodRecord, caps: &Map<String, Value>) {
        for pgid in &rec.pgids {
            process::signal_group(*pgid, libc::SIGKILL);
        }
        if !rec.netns.is_empty() {
            if let Err(e) = self
                .cni
                .del(&self.attachment(rec), rec.cni_result.as_ref(), caps)
                .await
            {
                tracing::warn!("pod {}/{}: {e:#}", rec.namespace, rec.name);
            }
            if let Err(e) = netns::remove(&rec.netns).await {
                tracing::warn!("pod {}/{}: {e:#}", rec.namespace, rec.name);
            }
        }
        self.state.remove(&rec.uid);
    }

    async fn patch_status(&self, pod: &Pod, st: &k8s_openapi::api::core::v1::PodStatus) {
        let mut v = serde_json::to_value(st).unwrap_or_default();
        // Merge patch: clear a reason/message that no longer applies.
        for k in ["reason", "message"] {
            v.as_object_mut().map(|m| m.entry(k).or_insert(Value::Null));
        }
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        if let Err(e) = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": v})),
            )
            .await
        {
            tracing::warn!("pod {}: status update failed: {e}", pod_key(pod));
        }
    }
}

/// Whether the IPv4 address `ip` lies in `cidr` (false for anything unparsable).
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (Some((net, len)), Ok(ip)) = (cidr.split_once('/'), ip.parse::<std::net::Ipv4Addr>())
    else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<std::net::Ipv4Addr>(), len.parse::<u32>()) else {
        return false;
    };
    if len > 32 {
        return false;
    }
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .clamp(0, 300);
    Duration::from_secs(secs as u64)
}

/// The life of one pod. `adopted`: what a previous agent made for it (network kept).
pub async fn run(
    ctx: Arc<Ctx>,
    mut pod: Pod,
    adopted: Option<PodRecord>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    let key = pod_key(&pod);
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .unwrap_or(Time(process::Stamp::now()));
    let spec_pod = pod.clone();
    let names: Vec<String> = spec_pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
        .collect();
    let images: Vec<String> = spec_pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .map(|c| c.image.clone().unwrap_or_default())
        })
        .collect();
    let policy = RestartPolicy::parse(
        spec_pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref()),
    );
    let caps = Ctx::capability_args(&spec_pod);
    let mut reports: Vec<Option<Report>> = vec![None; names.len()];
    let snapshot = |reports: &[Option<Report>], ip: Option<&str>, problem: Option<(&str, &str)>| {
        status::build(&Snapshot {
            container_names: &names,
            images: &images,
            reports,
            pod_ip: ip,
            host_ip: &ctx.node_ip,
            start_time: start_time.clone(),
            problem,
            restart_never_or_on_failure: policy != RestartPolicy::Always,
        })
    };

    // 1. A pod the lab cannot run is reported and left alone until it is deleted.
    let specs = match container_specs(&pod) {
        Ok(s) => Some(s),
        Err(e) => {
            let msg = format!("{e:#}");
            pod_event(&ctx.client, &ctx.node, &pod, true, "UnsupportedSpec", &msg).await;
            ctx.patch_status(
                &pod,
                &snapshot(&reports, None, Some(("UnsupportedSpec", &msg))),
            )
            .await;
            None
        }
    };

    // 2. The network, retried with a bounded back-off until it works or the pod goes.
    let mut rec: Option<PodRecord> = None;
    if specs.is_some() {
        if let Some(old) = adopted {
            for pgid in &old.pgids {
                process::signal_group(*pgid, libc::SIGKILL);
            }
            pod_event(
                &ctx.client,
                &ctx.node,
                &pod,
                false,
                "Adopted",
                &format!(
                    "network namespace {} and address {} re-adopted; containers restart",
                    old.netns,
                    old.pod_ip.as_deref().unwrap_or("-")
                ),
            )
            .await;
            rec = Some(old);
        }
        let mut delay = Duration::from_secs(1);
        while rec.is_none() {
            match ctx.attach(&pod).await {
                Ok(r) => rec = Some(r),
                Err(e) => {
                    let msg = format!("{e:#}");
                    pod_event(
                        &ctx.client,
                        &ctx.node,
                        &pod,
                        true,
                        "FailedCreatePodSandBox",
                        &msg,
                    )
                    .await;
                    ctx.patch_status(
                        &pod,
                        &snapshot(&reports, None, Some(("FailedCreatePodSandBox", &msg))),
                    )
                    .await;
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        m = rx.recv() => match m {
                            Some(Msg::Update(p)) => {
                                pod = *p;
                                if pod.metadata.deletion_timestamp.is_some() { break; }
                            }
                            Some(Msg::Gone) | None => return,
                        }
                    }
                    delay = (delay * 2).min(SANDBOX_RETRY_MAX);
                }
            }
        }
    }

    // 3. The containers.
    let (report_tx, mut report_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(None::<Duration>);
    let mut tasks = JoinSet::new();
    if let (Some(specs), Some(r)) = (&specs, &rec) {
        let netns_path: PathBuf = if r.netns.is_empty() {
            "/proc/self/ns/net".into()
        } else {
            netns::path(&r.netns)
        };
        for (i, spec) in specs.iter().enumerate() {
            let log = ctx.state.log_file(r, &spec.name);
            tasks.spawn(process::supervise(
                i,
                spec.clone(),
                netns_path.clone(),
                log,
                policy,
                report_tx.clone(),
                stop_rx.clone(),
            ));
        }
        pod_event(
            &ctx.client,
            &ctx.node,
            &pod,
            false,
            "Started",
            &format!(
                "address {}, {} container(s) started",
                r.pod_ip.as_deref().unwrap_or("-"),
                specs.len()
            ),
        )
        .await;
    }
    drop(report_tx);

    // 4. Follow the containers and the Pod object until deletion.
    let mut gone = false;
    loop {
        if pod.metadata.deletion_timestamp.is_some() {
            break;
        }
        tokio::select! {
            Some(r) = report_rx.recv() => {
                let i = r.index;
                if let (Some(rec), process::State::Running { pgid, .. }) = (rec.as_mut(), &r.state) {
                    rec.pgids.retain(|p| *p != *pgid);
                    rec.pgids.push(*pgid);
                    let _ = ctx.state.save(rec);
                }
                reports[i] = Some(r);
                // Coalesce a burst of reports into one status update.
                while let Ok(r) = report_rx.try_recv() { let i = r.index; reports[i] = Some(r); }
                if specs.is_some() {
                    let ip = rec.as_ref().and_then(|r| r.pod_ip.as_deref());
                    ctx.patch_status(&pod, &snapshot(&reports, ip, None)).await;
                }
            }
            m = rx.recv() => match m {
                Some(Msg::Update(p)) => pod = *p,
                Some(Msg::Gone) | None => { gone = true; break; }
            }
        }
    }

    // 5. Teardown: programs (grace period), network, the Pod object.
    let grace = if gone {
        Duration::from_secs(2)
    } else {
        grace_of(&pod)
    };
    let _ = stop_tx.send(Some(grace));
    while tasks.join_next().await.is_some() {}
    if let Some(r) = &rec {
        let mut r = r.clone();
        r.pgids.clear();
        ctx.detach(&r, &caps).await;
    } else if let Some(uid) = pod.uid() {
        ctx.state.remove(&uid);
    }
    tracing::info!("pod {key}: stopped and detached");
    if !gone {
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        if let Err(e) = api.delete(&pod.name_any(), &dp).await {
            tracing::warn!("pod {key}: final delete failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn command_and_args_become_argv_and_missing_commands_name_the_container() {
        let p = pod(
            json!({"metadata":{"name":"a","namespace":"default"},"spec":{"containers":[
            {"name":"web","image":"x","command":["python3","-m","http.server"],"args":["8080"],
             "env":[{"name":"K","value":"v"}]}]}}),
        );
        let s = container_specs(&p).unwrap();
        assert_eq!(s[0].argv, ["python3", "-m", "http.server", "8080"]);
        assert_eq!(s[0].env, [("K".to_string(), "v".to_string())]);
        let p = pod(
            json!({"metadata":{"name":"a"},"spec":{"containers":[{"name":"nginx","image":"nginx"}]}}),
        );
        let e = format!("{:#}", container_specs(&p).unwrap_err());
        assert!(e.contains("container nginx: no command"), "{e}");
        let p = pod(
            json!({"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","command":["x"],
            "env":[{"name":"K","valueFrom":{"fieldRef":{"fieldPath":"status.podIP"}}}]}]}}),
        );
        assert!(format!("{:#}", container_specs(&p).unwrap_err()).contains("valueFrom"));
    }

    #[test]
    fn requested_addresses_are_checked_against_the_pod_cidr() {
        assert!(in_cidr("10.244.3.30", "10.244.3.0/24"));
        assert!(!in_cidr("10.244.3.30", "10.244.4.0/24"));
        assert!(in_cidr("10.1.2.3", "0.0.0.0/0"));
        assert!(!in_cidr("garbage", "10.244.3.0/24"));
        assert!(!in_cidr("10.244.3.30", "10.244.3.0/33"));
    }

    #[test]
    fn grace_period_prefers_the_deletion_one() {
        let mut p = pod(
            json!({"metadata":{"name":"a"},"spec":{"containers":[],"terminationGracePeriodSeconds":5}}),
        );
        assert_eq!(grace_of(&p), Duration::from_secs(5));
        p.metadata.deletion_grace_period_seconds = Some(1);
        assert_eq!(grace_of(&p), Duration::from_secs(1));
    }
}
