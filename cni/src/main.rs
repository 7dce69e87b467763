//! podswitch-cni: the CNI 1.1 plugin that attaches pods to podswitchd.
//!
//! The runtime execs it with `CNI_COMMAND` (ADD, DEL, CHECK, STATUS, GC, VERSION) and the
//! network configuration on stdin; the result or error goes to stdout as the spec's JSON,
//! logs to stderr only.

mod add;
mod check;
mod del;
mod ipam;
mod naming;
mod netlink;
mod netns;
mod node;
mod restore;
mod spec;
mod sys;

use spec::{CniError, CniResult, LATEST, NetConf, SUPPORTED_VERSIONS, code};
use std::io::{Read, Write};

/// The CNI environment variables of one call.
pub struct Env {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

impl Env {
    fn from_process() -> Env {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        Env {
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: var("CNI_ARGS"),
            path: var("CNI_PATH"),
        }
    }

    /// The container ID and interface name, both required for ADD, DEL and CHECK.
    pub fn attachment(&self) -> CniResult<(&str, &str)> {
        if self.container_id.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                "CNI_CONTAINERID is missing",
            ));
        }
        if !naming::valid_ifname(&self.ifname) {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_IFNAME {:?} is not a valid interface name", self.ifname),
            ));
        }
        Ok((&self.container_id, &self.ifname))
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("restore") {
        let dir = argv.get(2).map_or("/var/lib/cni/podswitch", String::as_str);
        let (restored, failed) = restore::restore(std::path::Path::new(dir));
        eprintln!("podswitch-cni restore: {restored} ports registered again, {failed} failed");
        std::process::exit(i32::from(failed > 0));
    }
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    // Errors are reported in the configuration's version when it could be read.
    let version = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|s| s.as_str())
                .map(String::from)
        })
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_string());
    let outcome = match read {
        Err(e) => Err(CniError::new(
            code::IO_FAILURE,
            format!("cannot read stdin: {e}"),
        )),
        Ok(_) => run(&command, &stdin),
    };
    let mut out = std::io::stdout().lock();
    match outcome {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("podswitch-cni {command}: {e}");
            let _ = writeln!(out, "{}", e.to_json(&version));
            let _ = out.flush();
            std::process::exit(1);
        }
    }
}

fn run(command: &str, stdin: &[u8]) -> CniResult<Option<serde_json::Value>> {
    if command == "VERSION" {
        return Ok(Some(serde_json::json!({
            "cniVersion": LATEST,
            "supportedVersions": SUPPORTED_VERSIONS,
        })));
    }
    let known = ["ADD", "DEL", "CHECK", "STATUS", "GC"];
    if !known.contains(&command) {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_COMMAND {command:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
        ));
    }
    let (conf, raw) = NetConf::parse(stdin)?;
    let env = Env::from_process();
    match command {
        "ADD" => add::add(&conf, &raw, &env).map(|r| {
            Some(serde_json::to_value(r.for_version(&conf.cni_version)).unwrap_or_default())
        }),
        "DEL" => del::del(&conf, &raw, &env).map(|()| None),
        "CHECK" => check::check(&conf, &env).map(|()| None),
        "GC" => del::gc(&conf, &raw, &env).map(|()| None),
        _ => status(&conf, &env).map(|()| None),
    }
}

/// STATUS: ready when podswitchd answers and the IPAM plugin is there.
fn status(conf: &NetConf, env: &Env) -> CniResult<()> {
    node::Podswitchd::new(&conf.socket).version().map_err(|e| {
        CniError::new(
            code::NOT_AVAILABLE,
            format!("podswitchd is not reachable at {}", conf.socket.display()),
        )
        .details(e.to_string())
    })?;
    if !env.path.is_empty() {
        ipam::Ipam::find(&conf.ipam_type()?, &env.path)
            .map_err(|e| CniError::new(code::NOT_AVAILABLE, e.msg))?;
    }
    Ok(())
}
