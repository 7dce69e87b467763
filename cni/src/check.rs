//! CHECK: the attachment is still what `prevResult` says: the pod interface with its MAC,
//! address and default route, the host veth, the podswitchd port, and the IPAM lease.

use crate::Env;
use crate::add::{netlink_error, open_netlink};
use crate::ipam::Ipam;
use crate::naming;
use crate::netns::Netns;
use crate::node::Podswitchd;
use crate::spec::{AddResult, CniError, CniResult, NetConf, PodInterface, code};
use podswitch_model::attachments::Store;
use std::net::Ipv4Addr;

fn mismatch(msg: String) -> CniError {
    CniError::new(code::CHECK_FAILED, msg)
}

pub fn check(conf: &NetConf, env: &Env) -> CniResult<()> {
    let (cid, ifname) = env.attachment()?;
    let prev = conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "CHECK needs prevResult"))?;
    let prev = AddResult::parse(prev)?;
    let (ipc, ip, len) = prev
        .first_v4()
        .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "prevResult has no IPv4 address"))?;
    let gateway: Option<Ipv4Addr> = ipc.gateway.or_else(|| {
        prev.routes
            .iter()
            .find(|r| r.dst == "0.0.0.0/0")
            .and_then(|r| r.gw)
    });
    let want_mac = prev
        .interfaces
        .iter()
        .find(|i| i.name == ifname && !i.sandbox.is_empty())
        .map(|i| i.mac.to_lowercase());
    let ns = Netns::open(&env.netns)?;
    let host = naming::host_veth(cid, ifname);

    // A tap pod has no host end: its device is checked in its namespace below.
    if conf.pod_interface == PodInterface::Veth {
        let hl = open_netlink("the host namespace")?
            .link(&host)
            .map_err(netlink_error(format!("cannot look up {host}")))?
            .ok_or_else(|| mismatch(format!("host veth {host} of {cid}/{ifname} is missing")))?;
        if !hl.up {
            return Err(mismatch(format!("host veth {host} is down")));
        }
    }
    ns.run(|| {
        let mut pnl = open_netlink(ns.path())?;
        let l = pnl
            .link(ifname)
            .map_err(netlink_error(format!(
                "cannot look up {ifname} in {}",
                ns.path()
            )))?
            .ok_or_else(|| mismatch(format!("{ifname} is missing in {}", ns.path())))?;
        let mac = podswitch_model::Mac(l.mac).to_string();
        if let Some(w) = &want_mac
            && !w.is_empty()
            && *w != mac
        {
            return Err(mismatch(format!(
                "{ifname} has MAC {mac}, prevResult says {w}"
            )));
        }
        let addrs = pnl.addresses(l.index).map_err(netlink_error(format!(
            "cannot list addresses in {}",
            ns.path()
        )))?;
        if !addrs.contains(&(ip, len)) {
            return Err(mismatch(format!(
                "{ifname} in {} lacks {ip}/{len}",
                ns.path()
            )));
        }
        if let Some(gw) = gateway {
            let routes = pnl.routes().map_err(netlink_error(format!(
                "cannot list routes in {}",
                ns.path()
            )))?;
            if !routes
                .iter()
                .any(|r| r.dst_len == 0 && r.gateway == Some(gw) && r.oif == Some(l.index))
            {
                return Err(mismatch(format!(
                    "no default route via {gw} dev {ifname} in {}",
                    ns.path()
                )));
            }
        }
        Ok(())
    })?;
    let cfg = Podswitchd::new(&conf.socket).config()?;
    let port = cfg
        .pods
        .iter()
        .find(|p| p.port == host)
        .ok_or_else(|| mismatch(format!("podswitchd has no port {host} for {cid}/{ifname}")))?;
    if port.tap.is_some() != (conf.pod_interface == PodInterface::Tap) {
        return Err(mismatch(format!(
            "podswitchd's port {host} is {}, the configuration says podInterface {:?}",
            if port.tap.is_some() {
                "a tap"
            } else {
                "a veth"
            },
            conf.pod_interface
        )));
    }
    if port.ip != ip {
        return Err(mismatch(format!(
            "podswitchd's port {host} has {}, prevResult says {ip}",
            port.ip
        )));
    }
    // The IPAM plugin checks its own lease, with the configuration ADD gave it.
    if let Some(r) = Store::new(&conf.state_dir, &conf.name).load(&host) {
        let ipam = Ipam::find(&conf.ipam_type()?, &env.path)?;
        let stdin = serde_json::to_vec(&r.ipam_conf).unwrap_or_default();
        ipam.exec("CHECK", &[], &stdin)?;
    }
    Ok(())
}
