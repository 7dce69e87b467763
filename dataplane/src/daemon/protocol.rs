//! The control socket protocol: one JSON object per line each way.
//!
//! Request: `{"cmd":"dump","table":"fib"}`; response:
//! `{"ok":true,"generation":3,"text":"...","data":...}` or `{"ok":false,"error":"..."}`.

use crate::config::services::Service;
use crate::config::{Neighbour, Peer, Pod, Route};
use crate::tables::lpm::Prefix;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Largest request accepted (a full configuration with many Services fits).
pub const MAX_REQUEST: usize = 8 << 20;

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
    Trace {
        in_port: String,
        frame: String,
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
