//! Programs podswitchd through its control socket: compares what the plan wants with what
//! the daemon holds and sends only the difference, as one publish where the daemon takes
//! a batch.

use crate::planner::{Planner, Rejection};
use crate::state::Key;
use podswitch_model::config::NodeConfig;
use podswitch_model::protocol::{Request, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// What the controller believes the daemon holds (JSON of each part as last sent or read).
#[derive(Debug, Default)]
pub struct Applied {
    known: bool,
    base: Value,
    peers: BTreeMap<String, Value>,
    services: HashMap<Key, Value>,
    /// NetworkPolicy sections, by set name and by pod (`policy_sync`).
    pub(crate) address_sets: BTreeMap<String, Value>,
    pub(crate) pod_policies: BTreeMap<String, Value>,
}

impl Applied {
    /// Forget: the next sync reads the daemon's configuration again.
    pub fn invalidate(&mut self) {
        self.known = false;
    }
}

/// The result of one sync.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SyncReport {
    pub requests: usize,
    pub publishes: usize,
    pub replaced: bool,
    /// Changes the daemon refused (each named), the rest were applied.
    pub refused: Vec<Rejection>,
}

pub struct Daemon {
    pub socket: PathBuf,
    /// Whether the daemon takes `batch` requests (learned on first use).
    batch: Option<bool>,
    /// The connection kept open between requests (reopened after an error).
    conn: Option<BufReader<UnixStream>>,
}

/// The node-wide parts of a configuration (not pods, peers, Services, routes, neighbours).
fn base_json(c: &NodeConfig) -> Value {
    json!({
        "node": c.node, "uplink": c.uplink, "host": c.host, "vxlan": c.vxlan,
        "ipip": c.ipip, "icmp": c.icmp, "nat": c.nat,
    })
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Daemon {
    pub fn new(socket: PathBuf) -> Self {
        Daemon {
            socket,
            batch: None,
            conn: None,
        }
    }

    /// One request line, one response line, on the kept connection; a failed connection
    /// is reopened once (the daemon restarted). Requests are built as JSON so that a newer
    /// request kind can be tried on an older daemon.
    fn call(&mut self, req: &Value) -> Result<Response, String> {
        let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let mut last = String::new();
        for _ in 0..2 {
            if self.conn.is_none() {
                let s = UnixStream::connect(&self.socket).map_err(|e| {
                    format!(
                        "cannot connect to podswitchd at {}: {e}",
                        self.socket.display()
                    )
                })?;
                s.set_read_timeout(Some(Duration::from_secs(30))).ok();
                self.conn = Some(BufReader::new(s));
            }
            let Some(c) = self.conn.as_mut() else {
                continue;
            };
            let mut out = String::new();
            let r = c
                .get_mut()
                .write_all(&line)
                .and_then(|()| c.read_line(&mut out));
            match r {
                Ok(n) if n > 0 => {
                    return serde_json::from_str(&out)
                        .map_err(|e| format!("podswitchd: bad response: {e}"));
                }
                Ok(_) => last = "podswitchd closed the connection".into(),
                Err(e) => last = format!("podswitchd: {e}"),
            }
            self.conn = None;
        }
        Err(last)
    }

    pub fn reachable(&mut self) -> bool {
        self.call(&to_value(&Request::Version {})).is_ok()
    }

    pub fn dump_config(&mut self) -> Result<NodeConfig, String> {
        let r = self.call(&to_value(&Request::Dump {
            table: "config".into(),
        }))?;
        if !r.ok {
            return Err(format!(
                "podswitchd: dump config: {}",
                r.error.unwrap_or_default()
            ));
        }
        serde_json::from_value(r.data).map_err(|e| format!("podswitchd: dump config: {e}"))
    }

    /// Sends `changes` as one publish if the daemon takes batches, else one by one. Returns
    /// per change `Ok` or the daemon's reason, and the number of publishes.
    fn send(&mut self, changes: &[Value]) -> Result<(Vec<Result<(), String>>, usize), String> {
        if changes.is_empty() {
            return Ok((Vec::new(), 0));
        }
        if self.batch != Some(false) && changes.len() > 1 {
            let r = self.call(&json!({"cmd": "batch", "changes": changes}))?;
            if r.ok {
                self.batch = Some(true);
                return Ok((changes.iter().map(|_| Ok(())).collect(), 1));
            }
            let e = r.error.unwrap_or_default();
            if e.contains("unknown variant") && e.contains("batch") {
                self.batch = Some(false);
            }
            // Refused as a whole (one bad change) or not understood: one by one below, so
            // that the bad change is named and the others still land.
        }
        let mut out = Vec::with_capacity(changes.len());
        let mut publishes = 0;
        for c in changes {
            let r = self.call(c)?;
            if r.ok {
                publishes += 1;
                out.push(Ok(()));
            } else {
                out.push(Err(r.error.unwrap_or_default()));
            }
        }
        Ok((out, publishes))
    }

    /// Brings the daemon to the plan. `changed`: Services that may differ; `full`: compare
    /// everything with the daemon's own configuration first.
    pub fn sync(
        &mut self,
        plan: &Planner,
        changed: &BTreeSet<Key>,
        full: bool,
        applied: &mut Applied,
    ) -> Result<SyncReport, String> {
        let mut rep = SyncReport::default();
        let Some(base) = plan.base.as_ref() else {
            return Ok(rep);
        };
        let mut current: Option<NodeConfig> = None;
        if full || !applied.known {
            let c = self.dump_config()?;
            applied.base = base_json(&c);
            applied.peers = c
                .peers
                .iter()
                .map(|p| (p.name.clone(), to_value(p)))
                .collect();
            applied.services = c
                .services
                .iter()
                .map(|s| ((s.namespace.clone(), s.name.clone()), to_value(s)))
                .collect();
            crate::policy_sync::load(applied, &c);
            applied.known = true;
            current = Some(c);
        }
        let want_base = base_json(base);
        if applied.base != want_base {
            // The node itself changed (podCIDR, backend, template): a full replace that keeps
            // what others own (the CNI plugin's pods, the operator's routes and neighbours).
            let cur = match current {
                Some(c) => c,
                None => self.dump_config()?,
            };
            let mut cfg = base.clone();
            cfg.pods = cur.pods;
            cfg.routes = cur.routes;
            cfg.neighbours = cur.neighbours;
            cfg.peers = plan.peers.values().cloned().collect();
            let r = self.call(&to_value(&Request::Replace {
                config: cfg.to_toml(),
            }))?;
            rep.requests += 1;
            if !r.ok {
                return Err(format!(
                    "podswitchd refused the node configuration: {}",
                    r.error.unwrap_or_default()
                ));
            }
            rep.publishes += 1;
            rep.replaced = true;
            applied.base = want_base;
            applied.peers = cfg
                .peers
                .iter()
                .map(|p| (p.name.clone(), to_value(p)))
                .collect();
            applied.services.clear();
            crate::policy_sync::forget(applied);
        }
        let mut changes: Vec<Value> = Vec::new();
        let mut what: Vec<(Option<String>, Option<Key>, Option<Value>)> = Vec::new();
        for (name, p) in &plan.peers {
            let v = to_value(p);
            if applied.peers.get(name) != Some(&v) {
                changes.push(to_value(&Request::AddPeer { peer: p.clone() }));
                what.push((Some(name.clone()), None, Some(v)));
            }
        }
        for name in applied.peers.keys() {
            if !plan.peers.contains_key(name) {
                changes.push(to_value(&Request::RemovePeer { name: name.clone() }));
                what.push((Some(name.clone()), None, None));
            }
        }
        let keys: BTreeSet<Key> = if full || rep.replaced {
            plan.services()
                .map(|(k, _)| k.clone())
                .chain(applied.services.keys().cloned())
                .collect()
        } else {
            changed.clone()
        };
        for k in keys {
            match plan.service(&k) {
                Some(s) => {
                    let v = to_value(s);
                    if applied.services.get(&k) != Some(&v) {
                        changes.push(to_value(&Request::AddService { service: s.clone() }));
                        what.push((None, Some(k), Some(v)));
                    }
                }
                None if applied.services.contains_key(&k) => {
                    changes.push(to_value(&Request::RemoveService {
                        namespace: k.0.clone(),
                        name: k.1.clone(),
                    }));
                    what.push((None, Some(k), None));
                }
                None => {}
            }
        }
        let policy = crate::policy_sync::diff(plan, applied);
        let first_policy = changes.len();
        changes.extend(policy.iter().map(|c| c.request.clone()));
        let (mut results, publishes) = self.send(&changes)?;
        let policy_results = results.split_off(first_policy.min(results.len()));
        crate::policy_sync::record(applied, policy, policy_results, &mut rep.refused);
        rep.requests += changes.len();
        rep.publishes += publishes;
        for (r, (peer, svc, v)) in results.into_iter().zip(what) {
            match (r, peer, svc) {
                (Ok(()), Some(p), _) => match v {
                    Some(v) => {
                        applied.peers.insert(p, v);
                    }
                    None => {
                        applied.peers.remove(&p);
                    }
                },
                (Ok(()), None, Some(k)) => match v {
                    Some(v) => {
                        applied.services.insert(k, v);
                    }
                    None => {
                        applied.services.remove(&k);
                    }
                },
                (Err(e), peer, svc) => rep.refused.push(Rejection {
                    kind: if peer.is_some() { "Node" } else { "Service" }.into(),
                    name: peer.unwrap_or_else(|| {
                        svc.map(|k| format!("{}/{}", k.0, k.1)).unwrap_or_default()
                    }),
                    reason: format!("podswitchd: {e}"),
                }),
                (Ok(()), None, None) => {}
            }
        }
        Ok(rep)
    }
}
