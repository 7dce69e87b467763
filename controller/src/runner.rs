//! The controller's loop: watch events update the cluster state as they come; syncs to
//! podswitchd are bounded in frequency (kube-proxy's minSyncPeriod, default 1 s: a burst of
//! changes becomes one sync) and forced every `resync` (kube-proxy's syncPeriod, 30 s) as a
//! full compare with the daemon's configuration, which also repairs a restarted daemon.

use crate::annotate;
use crate::daemon::{Applied, Daemon};
use crate::planner::{Planner, Rejection};
use crate::state::ClusterState;
use crate::status::{self, LastSync, Shared};
use crate::watch;
use kube::Client;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::{Instant, sleep_until};

#[derive(Debug, Clone)]
pub struct Options {
    pub socket: PathBuf,
    pub min_sync: Duration,
    pub resync: Duration,
}

fn log(msg: &str) {
    eprintln!("podswitch-controller: {msg}");
}

pub async fn run(
    client: Client,
    mut plan: Planner,
    opts: Options,
    status: Shared,
) -> Result<(), String> {
    let node = plan.node_name().to_string();
    let (tx, mut rx) = tokio::sync::mpsc::channel(65536);
    let _watches = watch::start(client.clone(), &node, tx);
    let mut st = ClusterState::default();
    let mut daemon = Daemon::new(opts.socket.clone());
    let mut applied = Applied::default();
    // Changes podswitchd refused, by object, until the object changes and is accepted.
    let mut refused: BTreeMap<(String, String), Rejection> = BTreeMap::new();
    let mut last_sync = Instant::now() - opts.min_sync;
    let mut next_resync = Instant::now() + opts.resync;
    let mut backoff = Duration::from_millis(500);
    let mut retry_at: Option<Instant> = None;
    let mut logged_rejections: Vec<Rejection> = Vec::new();
    loop {
        let now = Instant::now();
        let due = if !st.synced() {
            None
        } else if let Some(r) = retry_at {
            Some(r)
        } else if st.pending() > 0 {
            Some((last_sync + opts.min_sync).max(now))
        } else {
            Some(next_resync)
        };
        let far = now + Duration::from_secs(3600);
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { return Err("all watches ended".into()) };
                st.apply(ev);
                while let Ok(ev) = rx.try_recv() {
                    st.apply(ev);
                }
            }
            _ = sleep_until(due.unwrap_or(far)), if due.is_some() => {
                let t0 = Instant::now();
                let resync = t0 >= next_resync;
                let changes = plan.update(&mut st);
                let full = std::mem::take(&mut st.full_compare) || resync || retry_at.is_some();
                let r = tokio::task::block_in_place(|| {
                    daemon.sync(&plan, &changes.services, full, &mut applied)
                });
                last_sync = Instant::now();
                if resync {
                    next_resync = last_sync + opts.resync;
                }
                {
                    let mut s = status.lock().map_err(|_| "status lock poisoned")?;
                    match r {
                        Ok(rep) => {
                            retry_at = None;
                            backoff = Duration::from_millis(500);
                            for k in &changes.services {
                                refused.remove(&("Service".to_string(), format!("{}/{}", k.0, k.1)));
                            }
                            refused.retain(|_, r| !crate::policy_sync::is_policy_refusal(r));
                            for r in &rep.refused {
                                log(&format!("{} {} refused: {}", r.kind, r.name, r.reason));
                                refused.insert((r.kind.clone(), r.name.clone()), r.clone());
                            }
                            if rep.requests > 0 {
                                log(&format!(
                                    "sync: {} changes, {} publishes{} in {:.1} ms",
                                    rep.requests,
                                    rep.publishes,
                                    if rep.replaced { " (node configuration replaced)" } else { "" },
                                    last_sync.duration_since(t0).as_secs_f64() * 1e3
                                ));
                            }
                            s.daemon_reachable = true;
                            s.last_error = None;
                            s.syncs += 1;
                            s.requests += rep.requests as u64;
                            s.publishes += rep.publishes as u64;
                            s.last_sync = Some(LastSync {
                                at_ms: status::now_ms(),
                                duration_ms: last_sync.duration_since(t0).as_secs_f64() * 1e3,
                                requests: rep.requests,
                                publishes: rep.publishes,
                                full,
                            });
                        }
                        Err(e) => {
                            log(&format!("sync failed, retrying in {:?}: {e}", backoff));
                            applied.invalidate();
                            st.full_compare = true;
                            retry_at = Some(last_sync + backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                            s.daemon_reachable = daemon.reachable();
                            s.last_error = Some(e);
                        }
                    }
                }
                // The lease annotations, once the node is programmed.
                if retry_at.is_none()
                    && let Some(base) = plan.base.as_ref()
                {
                    let own = st.nodes.objects.get(&(String::new(), node.clone()));
                    if own.is_some_and(|n| !annotate::up_to_date(n, base))
                        && let Err(e) = annotate::write(&client, base).await
                    {
                        log(&e);
                    }
                }
                let rej = plan.rejections();
                if rej != logged_rejections {
                    for r in rej.iter().filter(|r| !logged_rejections.contains(r)) {
                        log(&format!("rejected {} {}: {}", r.kind, r.name, r.reason));
                    }
                    logged_rejections = rej;
                }
            }
        }
        let mut s = status.lock().map_err(|_| "status lock poisoned")?;
        s.synced_with_api = st.synced();
        s.objects.nodes = st.nodes.objects.len();
        s.objects.services = st.services.objects.len();
        s.objects.endpointslices = st.slices.objects.len();
        s.objects.pods = st.pods.objects.len();
        s.pending = st.pending();
        s.watch_errors = st.watch_errors;
        s.last_watch_error = st.last_watch_error.clone();
        s.peers = plan.peers.len();
        s.services_programmed = plan.services().count();
        s.services_skipped = plan.skipped_services();
        s.waiting = if !st.synced() {
            Some("listing the API".into())
        } else {
            plan.base_error.clone()
        };
        s.policy = status::PolicyStatus {
            networkpolicies: st.netpols.objects.len(),
            namespaces: st.namespaces.objects.len(),
            pods_in_cluster: st.all_pods.objects.len(),
            compiled: plan.policy.as_ref().map_or(0, |p| p.policies),
            pods_selected: plan.policy.as_ref().map_or(0, |p| p.pods.len()),
            address_sets: plan.policy.as_ref().map_or(0, |p| p.sets.len()),
        };
        let mut rej = logged_rejections.clone();
        rej.extend(refused.values().cloned());
        s.rejected = rej;
    }
}
