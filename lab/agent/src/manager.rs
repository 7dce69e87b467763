//! Watches the Pods bound to this node and gives each its task (pod.rs). After the first
//! complete list it reconciles with what a previous agent left on disk: pods that still
//! exist keep their network (re-adopted), the rest are detached and removed, and plugins
//! that speak CNI 1.1 are told the valid attachments (GC). A relist treats every pod that
//! did not reappear as gone.

use crate::pod::{self, Ctx, Msg};
use crate::state::PodRecord;
use anyhow::Result;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::Map;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::mpsc;

pub async fn run(ctx: Arc<Ctx>) -> Result<()> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node));
    let mut stream = std::pin::pin!(watcher(api, cfg).default_backoff());
    let mut workers: HashMap<String, mpsc::UnboundedSender<Msg>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut leftovers: Option<HashMap<String, PodRecord>> = Some(
        ctx.state
            .load_all()
            .into_iter()
            .map(|r| (r.uid.clone(), r))
            .collect(),
    );
    let mut listing: Vec<Pod> = Vec::new();
    loop {
        let ev = tokio::select! {
            ev = stream.try_next() => ev,
            Some(uid) = done_rx.recv() => { workers.remove(&uid); continue; }
        };
        let ev = match ev {
            Ok(Some(ev)) => ev,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!("pod watch: {e} (retrying)");
                continue;
            }
        };
        match ev {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitApply(p) => listing.push(p),
            watcher::Event::InitDone => {
                let seen: HashSet<String> = listing.iter().filter_map(|p| p.uid()).collect();
                for (uid, tx) in &workers {
                    if !seen.contains(uid) {
                        let _ = tx.send(Msg::Gone);
                    }
                }
                if let Some(mut old) = leftovers.take() {
                    for p in std::mem::take(&mut listing) {
                        let adopted = p
                            .uid()
                            .and_then(|u| old.remove(&u))
                            .filter(|r| r.netns.is_empty() || crate::netns::exists(&r.netns));
                        dispatch(&ctx, &mut workers, &done_tx, p, adopted);
                    }
                    cleanup_leftovers(&ctx, old.into_values().collect()).await;
                    gc(&ctx).await;
                } else {
                    for p in std::mem::take(&mut listing) {
                        dispatch(&ctx, &mut workers, &done_tx, p, None);
                    }
                }
            }
            watcher::Event::Apply(p) => dispatch(&ctx, &mut workers, &done_tx, p, None),
            watcher::Event::Delete(p) => {
                if let Some(tx) = p.uid().and_then(|u| workers.get(&u)) {
                    let _ = tx.send(Msg::Gone);
                }
            }
        }
    }
}

fn dispatch(
    ctx: &Arc<Ctx>,
    workers: &mut HashMap<String, mpsc::UnboundedSender<Msg>>,
    done: &mpsc::UnboundedSender<String>,
    p: Pod,
    adopted: Option<PodRecord>,
) {
    let Some(uid) = p.uid() else { return };
    if let Some(tx) = workers.get(&uid) {
        let _ = tx.send(Msg::Update(Box::new(p)));
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel();
    workers.insert(uid.clone(), tx);
    let ctx = ctx.clone();
    let done = done.clone();
    tokio::spawn(async move {
        pod::run(ctx, p, adopted, rx).await;
        let _ = done.send(uid);
    });
}

/// What a previous agent made for pods that no longer exist: programs, network, records.
async fn cleanup_leftovers(ctx: &Ctx, recs: Vec<PodRecord>) {
    for r in recs {
        tracing::info!(
            "pod {}/{} (uid {}) is gone: removing its leftovers ({})",
            r.namespace,
            r.name,
            r.uid,
            r.netns
        );
        ctx.detach(&r, &Map::new()).await;
    }
}

async fn gc(ctx: &Ctx) {
    let valid: Vec<(String, String)> = ctx
        .state
        .load_all()
        .into_iter()
        .filter(|r| !r.netns.is_empty())
        .map(|r| (r.container_id, "eth0".to_string()))
        .collect();
    match ctx.cni.gc(&valid).await {
        Ok(()) => tracing::info!(
            "CNI GC: {} valid attachments (skipped below CNI 1.1)",
            valid.len()
        ),
        Err(e) => tracing::warn!("CNI GC: {e:#}"),
    }
}
