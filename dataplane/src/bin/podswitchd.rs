//! podswitchd: the podswitch dataplane daemon and its offline tools.

use clap::{Parser, Subcommand};
use podswitch::config::NodeConfig;
use podswitch::tables::{Snapshot, build::build};
use podswitch::tools::{self, pcap, replay};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "podswitchd",
    version,
    about = "podswitch: userspace virtual switch for Kubernetes nodes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the switch: AF_XDP ports, pinned workers, control socket (needs root).
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Control socket path.
        #[arg(long, default_value = "/run/podswitch/podswitchd.sock")]
        socket: PathBuf,
        /// Cores to pin one worker each to, e.g. "0" or "0,1"; "none" for one unpinned worker.
        #[arg(long, default_value = "none")]
        cores: String,
        /// Never sleep in poll(): for dedicated cores.
        #[arg(long)]
        busy_poll: bool,
        /// XDP attach mode: auto (native, then generic), native or generic.
        #[arg(long, default_value = "auto")]
        xdp_mode: String,
        /// Do not time each stage (saves two clock reads per stage and batch).
        #[arg(long)]
        no_stage_timing: bool,
        /// podswitch-cni's state folder (its `stateDir`): at start, the pods it attached to
        /// this socket whose veths still exist are registered again.
        #[arg(long)]
        cni_state: Option<PathBuf>,
    },
    /// Validate a node configuration and print its tables.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run a capture through the pipeline over in-memory ports; write DIR/<port>.pcap.
    Replay {
        #[arg(long)]
        config: PathBuf,
        #[arg(long = "in")]
        input: PathBuf,
        #[arg(long)]
        out_dir: PathBuf,
        /// Port for frames whose capture names no interface (classic pcap).
        #[arg(long)]
        in_port: Option<String>,
        /// Include the conntrack dump after the run in the JSON summary (`conntrack`).
        #[arg(long)]
        conntrack: bool,
    },
    /// Show the stage-by-stage path of one frame.
    Trace {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        in_port: String,
        /// The frame as hex (from the Ethernet header on); repeat to trace several frames in
        /// order through the same pipeline and conntrack table.
        #[arg(long, required = true)]
        frame: Vec<String>,
    },
}

fn load(path: &Path) -> Result<Snapshot, String> {
    let cfg = NodeConfig::load(path)?;
    build(&cfg, 1).map_err(|e| format!("{}: invalid configuration:\n{e}", path.display()))
}

fn port_id(snap: &Snapshot, name: &str) -> Result<u16, String> {
    snap.port_by_name(name).ok_or_else(|| {
        let known: Vec<&str> = snap.ports.iter().map(|p| p.name.as_str()).collect();
        format!("unknown port {name:?} (ports: {})", known.join(", "))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run {
            config,
            socket,
            cores,
            busy_poll,
            xdp_mode,
            no_stage_timing,
            cni_state,
        } => cmd_run(
            config,
            socket,
            &cores,
            busy_poll,
            &xdp_mode,
            !no_stage_timing,
            cni_state,
        ),
        Cmd::Check { config } => load(&config).map(|s| {
            println!(
                "configuration OK: node {} ({}), {} ports, {} routes, {} peers",
                s.node.name,
                s.node.overlay.as_str(),
                s.ports.len(),
                s.routes.len(),
                s.peers.len()
            );
        }),
        Cmd::Replay {
            config,
            input,
            out_dir,
            in_port,
            conntrack,
        } => cmd_replay(&config, &input, &out_dir, in_port.as_deref(), conntrack),
        Cmd::Trace {
            config,
            in_port,
            frame,
        } => (|| {
            let snap = load(&config)?;
            let port = port_id(&snap, &in_port)?;
            let mut p = replay::pipeline_for(&snap);
            for (n, hex) in frame.iter().enumerate() {
                let bytes = tools::parse_hex(hex)?;
                let r = tools::trace::run_with(&mut p, &snap, port, &bytes, n as u64 * 1_000_000);
                print!("{}", tools::trace::render(&r));
            }
            Ok(())
        })(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podswitchd: {e}");
            ExitCode::from(2)
        }
    }
}

fn cmd_replay(
    config: &Path,
    input: &Path,
    out_dir: &Path,
    in_port: Option<&str>,
    conntrack: bool,
) -> Result<(), String> {
    let snap = load(config)?;
    let frames = pcap::read(input)?;
    let default_port = in_port.map(|n| port_id(&snap, n)).transpose()?;
    let mut inputs = Vec::with_capacity(frames.len());
    for (i, f) in frames.into_iter().enumerate() {
        let port = match (default_port, f.if_name.as_deref()) {
            (Some(p), _) => p,
            (None, Some(n)) => port_id(&snap, n).map_err(|e| format!("frame {i}: {e}"))?,
            (None, None) => return Err(format!("frame {i} names no interface: give --in-port")),
        };
        inputs.push(replay::Input {
            ts: f.ts,
            port,
            data: f.data,
        });
    }
    let out = replay::run(&snap, &inputs);
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    for (p, times) in &out.ports {
        if p.tx.is_empty() {
            continue;
        }
        let frames: Vec<_> = times.iter().copied().zip(p.tx.iter().cloned()).collect();
        pcap::write(
            &out_dir.join(format!("{}.pcap", podswitch::port::Port::name(p))),
            &frames,
        )?;
    }
    let mut s = replay::summary(&snap, &out, inputs.len());
    if conntrack {
        let end = inputs.last().map(|i| i.ts).unwrap_or_default();
        s["conntrack"] = replay::conntrack_json(&out, end);
    }
    println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    Ok(())
}

fn cmd_run(
    config: PathBuf,
    socket: PathBuf,
    cores: &str,
    busy_poll: bool,
    xdp_mode: &str,
    stage_timing: bool,
    cni_state: Option<PathBuf>,
) -> Result<(), String> {
    use podswitch::daemon::{DaemonOptions, kernel_ports::KernelPorts, run};
    use podswitch::port::xdp_prog::XdpMode;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let cores: Vec<Option<usize>> = if cores == "none" {
        vec![None]
    } else {
        cores
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<usize>()
                    .map(Some)
                    .map_err(|_| format!("bad core {c:?} in --cores"))
            })
            .collect::<Result<_, _>>()?
    };
    let mode = match xdp_mode {
        "auto" => XdpMode::Auto,
        "native" => XdpMode::Native,
        "generic" => XdpMode::Generic,
        m => return Err(format!("unknown --xdp-mode {m:?}: auto, native, generic")),
    };
    // Validate before touching any interface.
    load(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    let opts = DaemonOptions {
        config,
        socket,
        cores,
        busy_poll,
        stage_timing,
        cni_state,
    };
    run(&opts, Arc::new(KernelPorts::new(mode)), stop)
}
