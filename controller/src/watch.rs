//! The watch streams: list then watch for each kind, relists on `410 Gone`, back-off on
//! errors (kube-runtime's watcher), all funnelled into one channel of `state::Event`s.

use crate::state::{Change, Event};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use tokio::sync::mpsc::Sender;

fn forward<K>(
    api: Api<K>,
    cfg: watcher::Config,
    kind: &'static str,
    wrap: fn(Change<K>) -> Event,
    tx: Sender<Event>,
) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut s = watcher(api, cfg).default_backoff().boxed();
        while let Some(ev) = s.next().await {
            let out = match ev {
                Ok(watcher::Event::Apply(o)) => wrap(Change::Apply(o)),
                Ok(watcher::Event::Delete(o)) => wrap(Change::Delete(o)),
                Ok(watcher::Event::Init) => wrap(Change::ListStart),
                Ok(watcher::Event::InitApply(o)) => wrap(Change::Listed(o)),
                Ok(watcher::Event::InitDone) => wrap(Change::ListDone),
                Err(e) => Event::WatchError(kind, e.to_string()),
            };
            if tx.send(out).await.is_err() {
                return;
            }
        }
    })
}

/// Starts the watches: every Node, Service and EndpointSlice, the Pods bound to `node`,
/// and for NetworkPolicy every NetworkPolicy, Namespace and Pod.
pub fn start(client: Client, node: &str, tx: Sender<Event>) -> Vec<tokio::task::JoinHandle<()>> {
    let all = watcher::Config::default();
    vec![
        forward(
            Api::<Node>::all(client.clone()),
            all.clone(),
            "Node",
            Event::Node,
            tx.clone(),
        ),
        forward(
            Api::<Service>::all(client.clone()),
            all.clone(),
            "Service",
            Event::Service,
            tx.clone(),
        ),
        forward(
            Api::<EndpointSlice>::all(client.clone()),
            all.clone(),
            "EndpointSlice",
            Event::Slice,
            tx.clone(),
        ),
        forward(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().fields(&format!("spec.nodeName={node}")),
            "Pod",
            Event::Pod,
            tx.clone(),
        ),
        forward(
            Api::<NetworkPolicy>::all(client.clone()),
            all.clone(),
            "NetworkPolicy",
            Event::NetworkPolicy,
            tx.clone(),
        ),
        forward(
            Api::<Namespace>::all(client.clone()),
            all.clone(),
            "Namespace",
            Event::Namespace,
            tx.clone(),
        ),
        // Every pod, for the policy address sets: slimmed on arrival to keep memory low.
        forward(
            Api::<Pod>::all(client),
            all,
            "Pod (all)",
            |c| Event::AnyPod(c.map(crate::policy::slim)),
            tx,
        ),
    ]
}
