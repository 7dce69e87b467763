//! DEL and GC: remove an attachment's podswitchd port, veth and IPAM lease. Each part
//! already gone counts as done, so both are idempotent.

use crate::Env;
use crate::add::{netlink_error, open_netlink};
use crate::ipam::{Ipam, ipam_conf};
use crate::naming::{self, HOST_VETH_PREFIX};
use crate::netns::Netns;
use crate::node::{NodeError, Podswitchd};
use crate::spec::{CniError, CniResult, NetConf, code};
use podswitch_model::attachments::{Record, Store};
use podswitch_model::config::PodTap;
use serde_json::Value;
use std::collections::HashSet;

pub fn del(conf: &NetConf, raw: &Value, env: &Env) -> CniResult<()> {
    let (cid, ifname) = env.attachment()?;
    let store = Store::new(&conf.state_dir, &conf.name);
    let host = naming::host_veth(cid, ifname);
    let record = store.load(&host);
    let tap = record.as_ref().and_then(|r| r.pod.as_ref()?.tap.clone());
    teardown(
        conf,
        raw,
        env,
        cid,
        ifname,
        &host,
        tap.as_ref(),
        record.as_ref(),
        &store,
    )
}

/// Removes one attachment: port, veth, lease, record.
#[allow(
    clippy::too_many_arguments,
    reason = "DEL and GC pass the same attachment parts"
)]
fn teardown(
    conf: &NetConf,
    raw: &Value,
    env: &Env,
    cid: &str,
    ifname: &str,
    host: &str,
    tap: Option<&PodTap>,
    record: Option<&Record>,
    store: &Store,
) -> CniResult<()> {
    let node = Podswitchd::new(&conf.socket);
    match node.remove_port(host) {
        Ok(_) => {}
        // podswitchd keeps runtime-added ports only while it runs: down means gone.
        Err(NodeError::Unreachable(e)) => {
            eprintln!("podswitch-cni: port {host} not removed from podswitchd ({e})")
        }
        Err(e) => return Err(e.into_cni(&format!("cannot remove port {host}"))),
    }
    // A tap pod's device is in its namespace; deleting a veth's host end deletes the pod
    // end with it.
    match tap {
        Some(tap) => delete_tap(&tap.netns, &tap.ifname)?,
        None => {
            open_netlink("the host namespace")?
                .delete_link(host)
                .map_err(netlink_error(format!("cannot delete veth {host}")))?;
        }
    }
    let ipam = Ipam::find(&conf.ipam_type()?, &env.path)?;
    let stdin = match record {
        Some(r) => r.ipam_conf.clone(),
        None => {
            // No record (made by an older plugin, or already released): rebuild the IPAM
            // configuration from podswitchd's pod CIDR, as ADD did.
            let cfg = node.config().map_err(|e| CniError {
                msg: format!("cannot release the address of {cid}/{ifname}: {}", e.msg),
                ..e
            })?;
            let version = ipam.negotiate(&conf.cni_version, &conf.state_dir)?;
            ipam_conf(raw, &version, cfg.node.pod_cidr, cfg.gateway())
        }
    };
    let stdin = serde_json::to_vec(&stdin).unwrap_or_default();
    ipam.exec(
        "DEL",
        &[("CNI_CONTAINERID", cid), ("CNI_IFNAME", ifname)],
        &stdin,
    )?;
    store
        .remove(host)
        .map_err(|e| CniError::new(code::IO_FAILURE, e))
}

/// GC: every attachment of this network not in `cni.dev/valid-attachments` goes.
/// Deletes a tap pod's device in its namespace; nothing to do when the namespace is gone
/// (the device went with it).
fn delete_tap(netns: &str, ifname: &str) -> CniResult<()> {
    let Ok(ns) = Netns::open(netns) else {
        return Ok(());
    };
    ns.run(|| {
        open_netlink(ns.path())?
            .delete_link(ifname)
            .map(|_| ())
            .map_err(netlink_error(format!(
                "cannot delete tap {ifname} in {netns}"
            )))
    })
}

pub fn gc(conf: &NetConf, raw: &Value, env: &Env) -> CniResult<()> {
    // libcni leaves the key out when its caller gave no list (cnitool gc): nothing is valid.
    let valid = conf.valid_attachments.clone().unwrap_or_default();
    let keep: HashSet<String> = valid
        .iter()
        .map(|a| naming::host_veth(&a.container_id, &a.ifname))
        .collect();
    let store = Store::new(&conf.state_dir, &conf.name);
    let mut first_error: Option<CniError> = None;
    let mut note = |r: CniResult<()>| {
        if let Err(e) = r {
            eprintln!("podswitch-cni GC: {e}");
            first_error.get_or_insert(e);
        }
    };
    // 1. Attachments the plugin recorded: the full teardown with the lease's own config.
    for r in store.all() {
        if !keep.contains(&r.host_veth) {
            eprintln!(
                "podswitch-cni GC: removing {}/{} ({})",
                r.container_id, r.ifname, r.host_veth
            );
            note(teardown(
                conf,
                raw,
                env,
                &r.container_id,
                &r.ifname,
                &r.host_veth,
                r.pod.as_ref().and_then(|p| p.tap.as_ref()),
                Some(&r),
                &store,
            ));
        }
    }
    // 2. podswitchd ports made by a CNI attachment that is no longer valid.
    let node = Podswitchd::new(&conf.socket);
    let cfg = node.config();
    match &cfg {
        Ok(cfg) => {
            for p in cfg.pods.iter().filter(|p| p.attachment.is_some()) {
                if p.port.starts_with(HOST_VETH_PREFIX) && !keep.contains(&p.port) {
                    let a = p
                        .attachment
                        .as_ref()
                        .map(|a| (a.container_id.clone(), a.ifname.clone()));
                    if let Some((cid, ifname)) = a {
                        note(teardown(
                            conf,
                            raw,
                            env,
                            &cid,
                            &ifname,
                            &p.port,
                            p.tap.as_ref(),
                            None,
                            &store,
                        ));
                    }
                }
            }
        }
        Err(e) => note(Err(e.clone())),
    }
    // 3. Host veths of ours that nothing accounts for (e.g. a killed ADD without record).
    match open_netlink("the host namespace")?.links() {
        Ok(links) => {
            for l in links {
                if l.kind.as_deref() == Some("veth")
                    && l.name.starts_with(HOST_VETH_PREFIX)
                    && l.name.len() == 15
                    && !keep.contains(&l.name)
                {
                    eprintln!("podswitch-cni GC: deleting stray veth {}", l.name);
                    note(
                        open_netlink("the host namespace")?
                            .delete_link(&l.name)
                            .map(|_| ())
                            .map_err(netlink_error(format!("cannot delete veth {}", l.name))),
                    );
                }
            }
        }
        Err(e) => note(Err(CniError::new(
            code::NETLINK,
            format!("cannot list links: {e}"),
        ))),
    }
    // 4. An IPAM plugin that knows GC (CNI 1.1) cleans its own leases.
    if let (Ok(ipam), Ok(cfg)) = (Ipam::find(&conf.ipam_type()?, &env.path), &cfg)
        && ipam
            .versions()
            .is_ok_and(|v| v.iter().any(|s| s == "1.1.0"))
    {
        let stdin = ipam_conf(raw, "1.1.0", cfg.node.pod_cidr, cfg.gateway());
        note(
            ipam.exec("GC", &[], &serde_json::to_vec(&stdin).unwrap_or_default())
                .map(|_| ()),
        );
    }
    first_error.map_or(Ok(()), Err)
}
