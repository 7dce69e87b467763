//! podswitch-lab-agent: the lab's node agent, a kubelet stand-in. It registers its Node
//! and keeps it Ready, watches the Pods bound to it (spec.nodeName), attaches each pod's
//! network namespace through a CNI plugin chain as a container runtime does, runs the
//! containers' command + args as host programs inside that namespace, and reports the
//! Pod status the EndpointSlice controller needs. Run it inside the node's network
//! namespace (`nsenter --net=…`, keeping the host's mount namespace so the pod
//! namespaces it makes under /run/netns are visible to `ip netns`).

mod cni;
mod events;
mod manager;
mod netns;
mod node;
mod pod;
mod process;
mod state;
mod status;

use anyhow::{Context, Result};
use clap::Parser;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "podswitch-lab-agent",
    about = "The podswitch lab's node agent (a kubelet stand-in)"
)]
struct Args {
    /// kubeconfig of this node's identity (system:node:NAME)
    #[arg(long)]
    kubeconfig: PathBuf,
    /// the Node name
    #[arg(long)]
    node: String,
    /// the node's InternalIP
    #[arg(long)]
    node_ip: String,
    /// the CNI network configuration list (.conflist) pods are attached with
    #[arg(long)]
    cni_conf: PathBuf,
    /// CNI_PATH: colon-separated folders holding the CNI plugins
    #[arg(long, default_value = "/opt/cni/bin:/usr/lib/cni")]
    cni_path: String,
    /// pod network namespaces are named PREFIX + pod name (PREFIX + namespace.name outside "default")
    #[arg(long)]
    netns_prefix: String,
    /// folder for the per-pod records and container logs
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value = "4")]
    cpu: String,
    #[arg(long, default_value = "8Gi")]
    memory: String,
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Args::parse()).await {
        tracing::error!("podswitch-lab-agent: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<()> {
    let kc = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    let client = kube::Client::try_from(config)?;
    let info = node::NodeInfo {
        name: args.node.clone(),
        ip: args.node_ip.clone(),
        cpu: args.cpu,
        memory: args.memory,
        max_pods: args.max_pods,
    };
    node::register(&client, &info).await?;
    tokio::spawn(node::heartbeat(client.clone(), info));
    let ctx = Arc::new(pod::Ctx {
        client,
        node: args.node,
        node_ip: args.node_ip,
        cni: cni::Runtime {
            conf_file: args.cni_conf,
            path: args
                .cni_path
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
        },
        netns_prefix: args.netns_prefix,
        state: state::StateDir::open(&args.state_dir)?,
    });
    tokio::select! {
        r = manager::run(ctx) => r,
        _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted: pods keep running, a restarted agent re-adopts them"); Ok(()) }
        _ = sigterm() => { tracing::info!("terminated: pods keep running, a restarted agent re-adopts them"); Ok(()) }
    }
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
