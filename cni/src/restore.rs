//! `podswitch-cni restore [STATE_DIR]`: after podswitchd restarts (it keeps only the ports
//! of its configuration file), registers again every recorded port whose veth still exists,
//! without a CNI call. Run by whatever restarts podswitchd (the lab, a unit's ExecStartPost).

use crate::add::open_netlink;
use crate::node::{NodeError, Podswitchd};
use podswitch_model::attachments::Store;
use std::path::Path;

/// Returns (restored, failed).
pub fn restore(state_dir: &Path) -> (usize, usize) {
    let (mut restored, mut failed) = (0, 0);
    let mut nl = match open_netlink("the host namespace") {
        Ok(nl) => nl,
        Err(e) => {
            eprintln!("podswitch-cni restore: {e}");
            return (0, 1);
        }
    };
    for store in Store::networks(state_dir) {
        for r in store.all() {
            let Some(pod) = &r.pod else { continue };
            // A tap pod's device is in its namespace: podswitchd finds it or says why; a veth
            // pod's host end must still be here.
            if pod.tap.is_none() {
                match nl.link(&r.host_veth) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        eprintln!(
                            "podswitch-cni restore: {} has no veth {} any more; skipped",
                            pod.name, r.host_veth
                        );
                        continue;
                    }
                    Err(e) => {
                        eprintln!("podswitch-cni restore: cannot look up {}: {e}", r.host_veth);
                        failed += 1;
                        continue;
                    }
                }
            }
            match Podswitchd::new(&r.socket).add_pod_raw(pod) {
                Ok(()) => {
                    eprintln!(
                        "podswitch-cni restore: {} on {} ({})",
                        pod.name, pod.port, pod.ip
                    );
                    restored += 1;
                }
                Err(NodeError::Refused(e)) if e.ends_with("exists") => {}
                Err(e) => {
                    eprintln!("podswitch-cni restore: {} on {}: {e}", pod.name, pod.port);
                    failed += 1;
                }
            }
        }
    }
    (restored, failed)
}
