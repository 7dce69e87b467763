//! podswitchd's control socket, as the plugin uses it: the node's settings (pod CIDR,
//! gateway, MTU, overlay) and the pod ports.

use crate::spec::{CniError, CniResult, code};
use podswitch_model::config::{NodeConfig, Overlay, Pod};
use podswitch_model::protocol::{Request, Response};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// podswitchd's answer when it already serves its maximum of control clients.
const BUSY: &str = "too many clients";
/// How long a busy daemon is retried before the call fails with "try again later".
const BUSY_RETRY: Duration = Duration::from_secs(5);

/// A client of podswitchd's control socket. One connection serves every request of a
/// plugin call: podswitchd accepts new connections on a polling loop, so each one costs
/// latency.
pub struct Podswitchd {
    socket: PathBuf,
    conn: RefCell<Option<BufReader<UnixStream>>>,
}

/// A failure talking to podswitchd: it could not be reached, or it refused the request.
#[derive(Debug)]
pub enum NodeError {
    Unreachable(String),
    Refused(String),
}

/// How long one answer may take before podswitchd counts as unreachable.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

impl Podswitchd {
    pub fn new(socket: &Path) -> Self {
        Podswitchd {
            socket: socket.to_path_buf(),
            conn: RefCell::new(None),
        }
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> NodeError {
        NodeError::Unreachable(format!("podswitchd at {}: {e}", self.socket.display()))
    }

    /// Sends one request line and reads the answer line, on the open connection if there
    /// is one (and on a fresh one if that fails: podswitchd may have closed it).
    fn exchange(&self, line: &[u8]) -> Result<Response, NodeError> {
        let mut slot = self.conn.borrow_mut();
        let reused = slot.is_some();
        for attempt in 0..2 {
            if slot.is_none() {
                let s = UnixStream::connect(&self.socket)
                    .map_err(|e| self.unreachable(format!("cannot connect: {e}")))?;
                let _ = s.set_read_timeout(Some(ANSWER_TIMEOUT));
                *slot = Some(BufReader::new(s));
            }
            let Some(conn) = slot.as_mut() else { continue };
            let mut answer = String::new();
            // A daemon that refuses the connection (too many clients) answers and closes
            // before reading: the write may fail, but the answer is there to read.
            let sent = conn.get_mut().write_all(line);
            let read = conn.read_line(&mut answer);
            match (read, sent) {
                (Ok(n), _) if n > 0 => {
                    return serde_json::from_str(&answer)
                        .map_err(|e| self.unreachable(format!("bad response: {e}")));
                }
                _ if reused && attempt == 0 => *slot = None,
                (Err(e), _) | (Ok(_), Err(e)) => return Err(self.unreachable(e)),
                (Ok(_), Ok(())) => {
                    return Err(self.unreachable("connection closed without a response"));
                }
            }
        }
        Err(self.unreachable("no response"))
    }

    /// One request; a daemon busy with its maximum of clients (a burst of parallel CNI
    /// calls) is asked again after a short pause, for up to `BUSY_RETRY`.
    fn call(&self, req: &Request) -> Result<Response, NodeError> {
        let mut line = serde_json::to_vec(req).map_err(|e| self.unreachable(e))?;
        line.push(b'\n');
        let start = Instant::now();
        let mut pause = Duration::from_millis(5 + u64::from(std::process::id() % 10));
        loop {
            let r = self.exchange(&line)?;
            if r.ok {
                return Ok(r);
            }
            let e = r.error.unwrap_or_default();
            if e != BUSY {
                return Err(NodeError::Refused(e));
            }
            // The daemon closed that connection after saying so.
            *self.conn.borrow_mut() = None;
            if start.elapsed() > BUSY_RETRY {
                return Err(self.unreachable(e));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Answers when podswitchd is up.
    pub fn version(&self) -> Result<String, NodeError> {
        self.call(&Request::Version {}).map(|r| r.text)
    }

    /// The node's running configuration (`dump config`).
    pub fn config(&self) -> CniResult<NodeConfig> {
        let r = self
            .call(&Request::Dump {
                table: "config".into(),
            })
            .map_err(|e| e.into_cni("cannot read the node configuration"))?;
        serde_json::from_value(r.data).map_err(|e| {
            CniError::new(
                code::PODSWITCHD,
                format!("podswitchd's configuration dump is not a node configuration: {e}"),
            )
        })
    }

    pub fn add_pod(&self, pod: &Pod) -> CniResult<()> {
        self.add_pod_raw(pod).map_err(|e| {
            e.into_cni(&format!(
                "cannot register port {} with podswitchd",
                pod.port
            ))
        })
    }

    pub fn add_pod_raw(&self, pod: &Pod) -> Result<(), NodeError> {
        self.call(&Request::AddPod { pod: pod.clone() }).map(|_| ())
    }

    /// Removes the pod whose port is `port`; Ok(false) when podswitchd has none.
    pub fn remove_port(&self, port: &str) -> Result<bool, NodeError> {
        match self.call(&Request::RemovePod { name: port.into() }) {
            Ok(_) => Ok(true),
            Err(NodeError::Refused(e)) if e.starts_with("no pod") => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl NodeError {
    pub fn into_cni(self, what: &str) -> CniError {
        match self {
            NodeError::Unreachable(e) => CniError::new(
                code::TRY_AGAIN_LATER,
                format!("{what}: podswitchd is not reachable"),
            )
            .details(e),
            NodeError::Refused(e) => {
                CniError::new(code::PODSWITCHD, format!("{what}: podswitchd refused: {e}"))
            }
        }
    }
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeError::Unreachable(e) => write!(f, "unreachable: {e}"),
            NodeError::Refused(e) => write!(f, "refused: {e}"),
        }
    }
}

/// The pods' MTU as flannel derives it: the uplink's MTU less the overlay's header.
pub fn pod_mtu(cfg: &NodeConfig) -> u16 {
    let overhead = match cfg.node.overlay {
        Overlay::Vxlan => 50,
        Overlay::Ipip => 20,
        Overlay::HostGw => 0,
    };
    cfg.uplink.mtu.saturating_sub(overhead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_follows_the_overlay() {
        let mut cfg = NodeConfig::from_toml(
            r#"
[node]
name = "n1"
address = "192.168.1.10"
pod_cidr = "10.244.1.0/24"
gateway_mac = "0a:58:0a:f4:01:01"
overlay = "vxlan"
[uplink]
name = "eth0"
mac = "02:00:c0:a8:01:10"
mtu = 1500
"#,
        )
        .expect("config");
        assert_eq!(pod_mtu(&cfg), 1450);
        cfg.node.overlay = Overlay::Ipip;
        assert_eq!(pod_mtu(&cfg), 1480);
        cfg.node.overlay = Overlay::HostGw;
        assert_eq!(pod_mtu(&cfg), 1500);
        // The JSON dump podswitchd returns reads back into the same configuration.
        let back: NodeConfig =
            serde_json::from_value(serde_json::to_value(&cfg).expect("json")).expect("back");
        assert_eq!(back.node.pod_cidr, cfg.node.pod_cidr);
        assert_eq!(back.gateway().to_string(), "10.244.1.1");
    }
}
