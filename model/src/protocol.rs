//! The control socket protocol: one JSON object per line each way.
//!
//! Request: `{"cmd":"dump","table":"fib"}`; response:
//! `{"ok":true,"generation":3,"text":"...","data":...}` or `{"ok":false,"error":"..."}`.

use crate::Prefix;
use crate::config::services::Service;
use crate::config::{AddressSet, Neighbour, Peer, Pod, PodPolicy, Route};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// Largest request accepted (a full configuration, or a batch, with many Services fits:
/// 10k Services with 100k endpoints take about 10 MiB of JSON).
pub const MAX_REQUEST: usize = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    Version {},
    /// Tables: ports, macs, fib, neighbours, tunnels, flows, config (+ services, conntrack
    /// once Service NAT is in).
    Dump {
        table: String,
    },
    Stats {},
    /// Full replace from a configuration file's text.
    Replace {
        config: String,
    },
    AddPod {
        pod: Pod,
    },
    RemovePod {
        name: String,
    },
    AddRoute {
        route: Route,
    },
    RemoveRoute {
        prefix: Prefix,
    },
    AddPeer {
        peer: Peer,
    },
    RemovePeer {
        name: String,
    },
    /// Adds a Service, or replaces the one with the same namespace/name (endpoint changes).
    AddService {
        service: Service,
    },
    RemoveService {
        namespace: String,
        name: String,
    },
    AddNeighbour {
        neighbour: Neighbour,
    },
    RemoveNeighbour {
        ip: Ipv4Addr,
    },
    /// Adds an address set, or replaces the one with the same name.
    AddAddressSet {
        set: AddressSet,
    },
    /// Removes an address set (refused while a pod policy refers to it).
    RemoveAddressSet {
        name: String,
    },
    /// Sets a pod's policy sections, replacing what it had.
    SetPodPolicy {
        policy: PodPolicy,
    },
    /// Removes a pod's policy sections: the pod is isolated in no direction.
    RemovePodPolicy {
        pod: String,
    },
    Trace {
        in_port: String,
        frame: String,
    },
    /// Several configuration changes (any of the requests above that change something:
    /// `replace`, `add-*`, `remove-*`) applied together as one publish: all of them, or
    /// none when one is refused (the error names it by position, from 1).
    Batch {
        changes: Vec<Request>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub generation: u64,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    pub fn ok(generation: u64, text: String, data: serde_json::Value) -> Self {
        Response {
            ok: true,
            error: None,
            generation,
            text,
            data,
        }
    }
    pub fn err(generation: u64, e: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(e.into()),
            generation,
            ..Default::default()
        }
    }
}

/// Sends one request to a daemon's control socket and returns its response.
pub fn request(path: &Path, req: &Request) -> Result<Response, String> {
    let mut s = UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    // The daemon answers a request it refuses (e.g. one over MAX_REQUEST) before reading
    // all of it and closes: the write then fails, but the error reply is there to read.
    let sent = s.write_all(&line);
    let mut rd = BufReader::new(s);
    let mut out = String::new();
    match (rd.read_line(&mut out), sent) {
        (Ok(n), _) if n > 0 => serde_json::from_str(&out).map_err(|e| format!("bad response: {e}")),
        (_, Err(e)) | (Err(e), Ok(())) => Err(e.to_string()),
        (Ok(_), Ok(())) => Err("connection closed without a response".into()),
    }
}
