//! podswitchctl: the operator CLI for a running podswitchd (its control socket).

use clap::{Parser, Subcommand, ValueEnum};
use podswitch::config::{Neighbour, Overlay, Peer, Pod, Route};
use podswitch::daemon::control::request;
use podswitch::daemon::protocol::{Request, Response};
use podswitch::tables::lpm::Prefix;
use podswitch::wire::Mac;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

pub const DEFAULT_SOCKET: &str = "/run/podswitch/podswitchd.sock";

#[derive(Parser)]
#[command(
    name = "podswitchctl",
    version,
    about = "Inspect and program a running podswitchd"
)]
struct Cli {
    /// Control socket of the daemon.
    #[arg(long, short, global = true, default_value = DEFAULT_SOCKET, env = "PODSWITCH_SOCKET")]
    socket: PathBuf,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value = "text")]
    output: Format,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// The tables `dump` knows, one a line with what it holds.
fn dump_tables_help() -> String {
    let w = podswitch::dump::TABLES
        .iter()
        .map(|t| t.0.len())
        .max()
        .unwrap_or(0);
    let mut s = String::from("Tables:\n");
    for (name, what) in podswitch::dump::TABLES {
        s.push_str(&format!("  {name:<w$}  {what}\n"));
    }
    s
}

#[derive(Subcommand)]
enum Cmd {
    /// Daemon version.
    Version,
    /// Dump a table: ports, macs, fib, neighbours, tunnels, flows, services, conntrack,
    /// config (text, or JSON with -o json).
    #[command(after_help = dump_tables_help())]
    Dump {
        /// The table to dump, one of the names below (text output by default; `-o json`
        /// for JSON: addresses and MACs as strings, ports by name, absent values null).
        #[arg(value_name = "TABLE")]
        table: String,
    },
    /// Per port, per worker and per stage counters, drops by reason.
    Stats,
    /// Change the tables.
    #[command(subcommand)]
    Program(Program),
    /// Run one frame (hex) through the live tables.
    Trace {
        #[arg(long)]
        in_port: String,
        #[arg(long)]
        frame: String,
    },
    /// Send a raw JSON request line (for scripts and tests).
    Raw { json: String },
}

#[derive(Subcommand)]
enum Program {
    /// Replace the whole configuration with a file's.
    Replace {
        file: PathBuf,
    },
    AddPod {
        #[arg(long)]
        name: String,
        #[arg(long)]
        port: String,
        #[arg(long)]
        ip: Ipv4Addr,
        #[arg(long)]
        mac: Mac,
        #[arg(long, default_value_t = 1500)]
        mtu: u16,
    },
    RemovePod {
        name: String,
    },
    AddRoute {
        #[arg(long)]
        prefix: Prefix,
        #[arg(long)]
        via: Option<Ipv4Addr>,
        #[arg(long)]
        to_host: bool,
    },
    RemoveRoute {
        prefix: Prefix,
    },
    AddPeer {
        #[arg(long)]
        name: String,
        #[arg(long)]
        address: Ipv4Addr,
        #[arg(long)]
        pod_cidr: Prefix,
        #[arg(long)]
        vtep_mac: Option<Mac>,
        #[arg(long)]
        overlay: Option<String>,
    },
    RemovePeer {
        name: String,
    },
    AddNeighbour {
        #[arg(long)]
        ip: Ipv4Addr,
        #[arg(long)]
        mac: Mac,
    },
    RemoveNeighbour {
        ip: Ipv4Addr,
    },
    /// Add or replace the Services of a TOML file (`[[service]]` tables, the node config's
    /// format): a Service with the same namespace/name is replaced, endpoints included.
    AddService {
        file: PathBuf,
    },
    /// Remove a Service: NAMESPACE/NAME.
    RemoveService {
        name: String,
    },
}

fn overlay(s: &str) -> Result<Overlay, String> {
    match s {
        "vxlan" => Ok(Overlay::Vxlan),
        "ipip" => Ok(Overlay::Ipip),
        "host-gw" => Ok(Overlay::HostGw),
        o => Err(format!("unknown overlay {o:?}: vxlan, ipip, host-gw")),
    }
}

#[derive(serde::Deserialize)]
struct ServicesFile {
    #[serde(rename = "service")]
    services: Vec<podswitch::config::services::Service>,
}

fn to_requests(cmd: Cmd) -> Result<Vec<Request>, String> {
    match cmd {
        Cmd::Program(Program::AddService { file }) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let f: ServicesFile =
                toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            Ok(f.services
                .into_iter()
                .map(|service| Request::AddService { service })
                .collect())
        }
        Cmd::Program(Program::RemoveService { name }) => {
            let (namespace, name) = name
                .split_once('/')
                .ok_or_else(|| format!("service {name:?}: give NAMESPACE/NAME"))?;
            Ok(vec![Request::RemoveService {
                namespace: namespace.into(),
                name: name.into(),
            }])
        }
        other => to_request(other).map(|r| vec![r]),
    }
}

fn to_request(cmd: Cmd) -> Result<Request, String> {
    Ok(match cmd {
        Cmd::Version => Request::Version {},
        Cmd::Dump { table } => Request::Dump { table },
        Cmd::Stats => Request::Stats {},
        Cmd::Trace { in_port, frame } => Request::Trace { in_port, frame },
        Cmd::Raw { json } => {
            return serde_json::from_str(&json).map_err(|e| format!("bad request: {e}"));
        }
        Cmd::Program(p) => match p {
            Program::Replace { file } => Request::Replace {
                config: std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?,
            },
            Program::AddPod {
                name,
                port,
                ip,
                mac,
                mtu,
            } => Request::AddPod {
                pod: Pod {
                    name,
                    port,
                    ip,
                    mac,
                    mtu,
                    vlan: None,
                    gso: false,
                    tap: None,
                    k8s: None,
                    attachment: None,
                },
            },
            Program::RemovePod { name } => Request::RemovePod { name },
            Program::AddRoute {
                prefix,
                via,
                to_host,
            } => Request::AddRoute {
                route: Route {
                    prefix,
                    via,
                    to_host,
                },
            },
            Program::RemoveRoute { prefix } => Request::RemoveRoute { prefix },
            Program::AddPeer {
                name,
                address,
                pod_cidr,
                vtep_mac,
                overlay: o,
            } => Request::AddPeer {
                peer: Peer {
                    name,
                    address,
                    pod_cidr,
                    vtep_mac,
                    overlay: o.as_deref().map(overlay).transpose()?,
                },
            },
            Program::RemovePeer { name } => Request::RemovePeer { name },
            Program::AddNeighbour { ip, mac } => Request::AddNeighbour {
                neighbour: Neighbour { ip, mac },
            },
            Program::RemoveNeighbour { ip } => Request::RemoveNeighbour { ip },
            Program::AddService { .. } | Program::RemoveService { .. } => {
                return Err("internal: service commands are expanded by to_requests".into());
            }
        },
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r: Result<Response, String> = to_requests(cli.cmd).and_then(|reqs| {
        let mut last = Response::err(0, "no request");
        for req in &reqs {
            last = request(&cli.socket, req)?;
            if !last.ok {
                break;
            }
        }
        Ok(last)
    });
    match r {
        Ok(resp) if resp.ok => {
            match cli.output {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&resp.data).unwrap_or_default()
                ),
                Format::Text => print!(
                    "{}{}",
                    resp.text,
                    if resp.text.ends_with('\n') { "" } else { "\n" }
                ),
            }
            ExitCode::SUCCESS
        }
        Ok(resp) => {
            eprintln!(
                "podswitchctl: {}",
                resp.error.unwrap_or_else(|| "request failed".into())
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("podswitchctl: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn dump_help_lists_every_table_and_describes_table() {
        let mut cmd = Cli::command();
        let dump = cmd.find_subcommand_mut("dump").expect("dump subcommand");
        let help = dump.render_help().to_string();
        assert!(help.contains("<TABLE>"), "{help}");
        assert!(help.contains("The table to dump"), "{help}");
        for t in [
            "ports",
            "macs",
            "fib",
            "neighbours",
            "tunnels",
            "flows",
            "services",
            "conntrack",
            "config",
        ] {
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(t)),
                "{t} missing from dump --help:\n{help}"
            );
        }
    }
}
