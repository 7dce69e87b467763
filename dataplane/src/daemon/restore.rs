//! At start, podswitchd registers again the pods that podswitch-cni attached before a
//! restart (it keeps only its configuration file's ports across one): every attachment
//! record in the CNI state folder that was registered with this daemon's control socket
//! and whose host veth still exists in this namespace. A record that cannot be restored is
//! logged with its pod's name and skipped; the others go on.

use super::control::Control;
use super::protocol::Request;
use podswitch_model::attachments::Store;
use std::path::Path;

/// Returns (restored, failed).
pub fn restore_attachments(control: &Control, state_dir: &Path, socket: &Path) -> (usize, usize) {
    let (mut restored, mut failed) = (0, 0);
    for store in Store::networks(state_dir) {
        for r in store.all() {
            let Some(pod) = r.pod else { continue };
            if r.socket != socket {
                continue; // another podswitchd's attachment
            }
            // A tap pod's device is in its namespace: opening the port finds it or says why.
            if pod.tap.is_none() && crate::port::xdp_prog::ifindex(&r.host_veth).is_err() {
                eprintln!(
                    "podswitchd: restore: {} has no veth {} any more; skipped",
                    pod.name, r.host_veth
                );
                continue;
            }
            let (name, port) = (pod.name.clone(), pod.port.clone());
            match control.apply(vec![Request::AddPod { pod }]) {
                Ok(_) => {
                    eprintln!("podswitchd: restore: {name} on {port}");
                    restored += 1;
                }
                Err(e) if e.ends_with("exists") => {}
                Err(e) => {
                    eprintln!("podswitchd: restore: {name} on {port}: {e}");
                    failed += 1;
                }
            }
        }
    }
    (restored, failed)
}
