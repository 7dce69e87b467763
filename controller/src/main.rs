//! podswitch-controller: programs this node's podswitchd from the Kubernetes API.

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Node;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use podswitch_controller::netconf::NetConf;
use podswitch_controller::planner::Planner;
use podswitch_controller::template::NodeTemplate;
use podswitch_controller::{nodes, runner, status};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "podswitch-controller",
    version,
    about = "Programs this node's podswitchd from the Kubernetes API"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct ClusterArgs {
    /// kubeconfig file; without it, $KUBECONFIG, ~/.kube/config or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// This node's name (the Node object).
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// flannel's net-conf.json (Network, Backend.Type, VNI, Port).
    #[arg(long)]
    net_conf: PathBuf,
    /// The node template: this node's interfaces and MACs (TOML, the node configuration's keys).
    #[arg(long)]
    node_template: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Wait for this Node's podCIDR and write podswitchd's starting configuration.
    Bootstrap {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Watch the API and program podswitchd until stopped.
    Run {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// podswitchd's control socket.
        #[arg(long, default_value = "/run/podswitch/podswitchd.sock")]
        socket: PathBuf,
        /// The controller's own status socket.
        #[arg(long, default_value = "/run/podswitch/controller.sock")]
        status_socket: PathBuf,
        /// Minimum interval between two syncs (kube-proxy's minSyncPeriod); 0 syncs at once.
        #[arg(long, default_value_t = 1000)]
        min_sync_period_ms: u64,
        /// Full compare with podswitchd at least this often (kube-proxy's syncPeriod).
        #[arg(long, default_value_t = 30)]
        sync_period_secs: u64,
    },
    /// Show what a running controller has seen and done.
    Status {
        #[arg(long, default_value = "/run/podswitch/controller.sock")]
        status_socket: PathBuf,
        #[arg(long, short, value_enum, default_value = "text")]
        output: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

async fn client(kubeconfig: Option<&Path>) -> Result<Client, String> {
    let cfg = match kubeconfig {
        Some(p) => {
            let kc = Kubeconfig::read_from(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => Config::infer()
            .await
            .map_err(|e| format!("no kubeconfig: {e}"))?,
    };
    Client::try_from(cfg).map_err(|e| e.to_string())
}

fn load(c: &ClusterArgs) -> Result<Planner, String> {
    let net = NetConf::load(&c.net_conf)?;
    let template = NodeTemplate::load(&c.node_template)?;
    if template.node.name != c.node {
        return Err(format!(
            "{}: node.name {:?} is not --node {:?}",
            c.node_template.display(),
            template.node.name,
            c.node
        ));
    }
    Ok(Planner::new(template, net))
}

async fn bootstrap(c: &ClusterArgs, out: &Path, timeout: Duration) -> Result<(), String> {
    let plan = load(c)?;
    let api = Api::<Node>::all(client(c.kubeconfig.as_deref()).await?);
    let t0 = Instant::now();
    loop {
        let last = match api.get_opt(&c.node).await {
            Ok(Some(n)) => match nodes::pod_cidr(&n)? {
                Some(cidr) => {
                    let cfg = plan.template.node_config(cidr, &plan.net)?;
                    std::fs::write(out, cfg.to_toml())
                        .map_err(|e| format!("{}: {e}", out.display()))?;
                    eprintln!(
                        "podswitch-controller: Node {} has podCIDR {cidr}; wrote {}",
                        c.node,
                        out.display()
                    );
                    return Ok(());
                }
                None => format!("Node {} has no podCIDR yet", c.node),
            },
            Ok(None) => format!("Node {} does not exist yet", c.node),
            Err(e) => e.to_string(),
        };
        if t0.elapsed() > timeout {
            return Err(format!("gave up after {timeout:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn main_async(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Bootstrap {
            cluster,
            out,
            timeout_secs,
        } => bootstrap(&cluster, &out, Duration::from_secs(timeout_secs)).await,
        Cmd::Run {
            cluster,
            socket,
            status_socket,
            min_sync_period_ms,
            sync_period_secs,
        } => {
            let plan = load(&cluster)?;
            let st = Arc::new(Mutex::new(status::Status {
                node: cluster.node.clone(),
                ..Default::default()
            }));
            status::serve(&status_socket, st.clone())?;
            let client = client(cluster.kubeconfig.as_deref()).await?;
            let opts = runner::Options {
                socket,
                min_sync: Duration::from_millis(min_sync_period_ms),
                resync: Duration::from_secs(sync_period_secs.max(1)),
            };
            tokio::select! {
                r = runner::run(client, plan, opts, st) => r,
                _ = tokio::signal::ctrl_c() => Ok(()),
            }
        }
        Cmd::Status {
            status_socket,
            output,
        } => {
            let s = status::fetch(&status_socket)?;
            match output {
                Format::Text => print!("{}", status::render(&s)),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?
                ),
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("podswitch-controller: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(main_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podswitch-controller: {e}");
            ExitCode::FAILURE
        }
    }
}
