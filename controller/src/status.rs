//! `podswitch-controller status`: what the controller has seen and done, served on a small
//! Unix socket of its own (one JSON document per connection), printed as text or JSON.

use crate::planner::Rejection;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub node: String,
    /// All four watches have listed once.
    pub synced_with_api: bool,
    pub daemon_reachable: bool,
    /// Why the node is not programmed yet (no podCIDR, daemon down, ...), if so.
    pub waiting: Option<String>,
    pub objects: Objects,
    pub peers: usize,
    pub services_programmed: usize,
    pub services_skipped: usize,
    /// Changes seen but not yet sent (the minimum sync interval coalesces them).
    pub pending: usize,
    pub syncs: u64,
    pub publishes: u64,
    pub requests: u64,
    pub last_sync: Option<LastSync>,
    pub rejected: Vec<Rejection>,
    pub watch_errors: u64,
    pub last_watch_error: Option<String>,
    pub last_error: Option<String>,
    #[serde(default)]
    pub policy: PolicyStatus,
}

/// NetworkPolicy: inputs seen and what was compiled for this node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PolicyStatus {
    pub networkpolicies: usize,
    pub namespaces: usize,
    pub pods_in_cluster: usize,
    /// Policies accepted (the others are in `rejected`).
    pub compiled: usize,
    /// Local pods selected by at least one policy.
    pub pods_selected: usize,
    pub address_sets: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Objects {
    pub nodes: usize,
    pub services: usize,
    pub endpointslices: usize,
    pub pods: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LastSync {
    /// Unix time, milliseconds.
    pub at_ms: u64,
    pub duration_ms: f64,
    pub requests: usize,
    pub publishes: usize,
    pub full: bool,
}

pub type Shared = Arc<Mutex<Status>>;

/// Serves `status` on `path` (mode 0600) from a thread of its own.
pub fn serve(path: &Path, st: Shared) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let l = UnixListener::bind(path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    std::thread::Builder::new()
        .name("status".into())
        .spawn(move || {
            for mut c in l.incoming().flatten() {
                let doc = st
                    .lock()
                    .map(|s| serde_json::to_vec(&*s))
                    .ok()
                    .and_then(Result::ok);
                if let Some(mut doc) = doc {
                    doc.push(b'\n');
                    let _ = c.write_all(&doc);
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}

pub fn fetch(path: &Path) -> Result<Status, String> {
    let mut s = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot connect to the controller at {}: {e}",
            path.display()
        )
    })?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    serde_json::from_str(&buf).map_err(|e| format!("bad status: {e}"))
}

pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let yes = |b: bool| if b { "yes" } else { "no" };
    o += &format!("node                 {}\n", s.node);
    o += &format!("api listed           {}\n", yes(s.synced_with_api));
    o += &format!("podswitchd reachable {}\n", yes(s.daemon_reachable));
    if let Some(w) = &s.waiting {
        o += &format!("waiting              {w}\n");
    }
    o += &format!(
        "objects              nodes {}, services {}, endpointslices {}, pods on this node {}\n",
        s.objects.nodes, s.objects.services, s.objects.endpointslices, s.objects.pods
    );
    o += &format!(
        "programmed           peers {}, services {} ({} skipped: headless, ExternalName, other proxies)\n",
        s.peers, s.services_programmed, s.services_skipped
    );
    o += &format!(
        "networkpolicy        policies {} ({} compiled), namespaces {}, pods in cluster {}; pods selected here {}, address sets {}\n",
        s.policy.networkpolicies,
        s.policy.compiled,
        s.policy.namespaces,
        s.policy.pods_in_cluster,
        s.policy.pods_selected,
        s.policy.address_sets
    );
    o += &format!("pending changes      {}\n", s.pending);
    o += &format!(
        "syncs                {} ({} requests, {} publishes)\n",
        s.syncs, s.requests, s.publishes
    );
    if let Some(l) = &s.last_sync {
        let age = now_ms().saturating_sub(l.at_ms) as f64 / 1000.0;
        o += &format!(
            "last sync            {age:.1} s ago, {:.1} ms, {} requests, {} publishes{}\n",
            l.duration_ms,
            l.requests,
            l.publishes,
            if l.full { ", full compare" } else { "" }
        );
    }
    o += &format!("watch errors         {}\n", s.watch_errors);
    if let Some(e) = &s.last_watch_error {
        o += &format!("last watch error     {e}\n");
    }
    if let Some(e) = &s.last_error {
        o += &format!("last error           {e}\n");
    }
    o += &format!("rejected             {}\n", s.rejected.len());
    for r in &s.rejected {
        o += &format!("  {:<14} {:<40} {}\n", r.kind, r.name, r.reason);
    }
    o
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
