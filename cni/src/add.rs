//! ADD: address from IPAM, veth pair, MTU, offloads, address and default route in the
//! pod, port registered with podswitchd. A failure undoes what the call made.

use crate::Env;
use crate::ipam::{Ipam, ipam_conf};
use crate::naming;
use crate::netlink::{Netlink, NlError};
use crate::netns::Netns;
use crate::node::{Podswitchd, pod_mtu};
use crate::spec::{
    AddResult, CniError, CniResult, Interface, IpConfig, K8sArgs, NetConf, PodInterface,
    RouteEntry, code,
};
use crate::sys;
use podswitch_model::Mac;
use podswitch_model::attachments::{Record, Store};
use podswitch_model::config::{Attachment, Pod, PodRef, PodTap};
use serde_json::Value;
use std::net::Ipv4Addr;

pub fn netlink_error(what: String) -> impl FnOnce(NlError) -> CniError {
    move |e| CniError::new(code::NETLINK, format!("{what}: {e}"))
}

pub fn open_netlink(where_: &str) -> CniResult<Netlink> {
    Netlink::open().map_err(netlink_error(format!(
        "cannot open a netlink socket in {where_}"
    )))
}

/// The offloads switched off on both ends, as the lab does (`no_offload`): partial
/// checksums and super-frames would pass through AF_XDP copy mode as they are.
const OFFLOADS: [(u32, &str); 5] = [
    (sys::ETHTOOL_STXCSUM, "tx-checksum"),
    (sys::ETHTOOL_SRXCSUM, "rx-checksum"),
    (sys::ETHTOOL_STSO, "tso"),
    (sys::ETHTOOL_SGSO, "gso"),
    (sys::ETHTOOL_SGRO, "gro"),
];

/// MTU of both ends of a super-frame pod's veth (`"gso": true`). Attaching XDP to a veth
/// takes software GSO off its peer, so the pod's TCP only sends 64 KB segments when its MTU
/// lets it; an `xdp.frags` program (which podswitchd attaches to a `gso` port) lets the
/// veth take up to about 73000. The pod's network MTU stays in its podswitchd `mtu`.
pub const GSO_LINK_MTU: u16 = 65000;

/// The offloads a super-frame pod keeps on its end: checksums left partial (podswitchd
/// finishes them), scatter-gather, TSO and GSO, so its stack hands over 64 KB segments.
const GSO_OFFLOADS: [(u32, &str); 4] = [
    (sys::ETHTOOL_STXCSUM, "tx-checksum"),
    (sys::ETHTOOL_SSG, "scatter-gather"),
    (sys::ETHTOOL_STSO, "tso"),
    (sys::ETHTOOL_SGSO, "gso"),
];

/// Switches a super-frame pod's offloads on (`GSO_OFFLOADS`); without them the pod would
/// still work, segmenting in its own stack, so a refusal is logged, not fatal.
fn offloads_gso(ifname: &str, where_: &str) {
    for (cmd, name) in GSO_OFFLOADS {
        if let Err(e) = sys::ethtool_set(ifname, cmd, true) {
            eprintln!("podswitch-cni: {name} offload stays off for {ifname} in {where_}: {e}");
        }
    }
}

/// Switches the offloads off on `ifname` (calling thread's namespace). Transmit checksum
/// offload must go (AF_XDP needs full checksums); the others are best effort.
fn offloads_off(ifname: &str, where_: &str) -> CniResult<()> {
    for (cmd, name) in OFFLOADS {
        if let Err(e) = sys::ethtool_set(ifname, cmd, false) {
            if cmd == sys::ETHTOOL_STXCSUM {
                return Err(CniError::new(
                    code::NETLINK,
                    format!("cannot switch {name} offload off on {ifname} in {where_}: {e}"),
                ));
            }
            eprintln!("podswitch-cni: {name} offload stays on for {ifname} in {where_}: {e}");
        }
    }
    Ok(())
}

/// Milliseconds per ADD step, logged on stderr (where attach time goes).
struct Steps {
    last: std::time::Instant,
    laps: Vec<(&'static str, f64)>,
}

impl Steps {
    fn new() -> Self {
        Steps {
            last: std::time::Instant::now(),
            laps: Vec::new(),
        }
    }
    fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.laps
            .push((name, (now - self.last).as_secs_f64() * 1000.0));
        self.last = now;
    }
}

impl std::fmt::Display for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (n, ms)) in self.laps.iter().enumerate() {
            write!(f, "{}{n} {ms:.1} ms", if i > 0 { ", " } else { "" })?;
        }
        Ok(())
    }
}

/// What an ADD made so far, undone in reverse order when a later step fails.
struct Undo<'a> {
    host_veth: &'a str,
    ipam: Option<(&'a Ipam, Vec<u8>)>,
    veth: bool,
    /// The tap made in the pod's namespace (tap pods).
    tap: Option<(&'a Netns, &'a str)>,
    store: &'a Store,
}

impl Undo<'_> {
    fn run(self) {
        if let Some((ns, ifname)) = self.tap
            && let Err(e) = ns.run(|| {
                open_netlink(ns.path())?
                    .delete_link(ifname)
                    .map_err(netlink_error(format!("cannot delete {ifname}")))
            })
        {
            eprintln!("podswitch-cni: rollback: {e}");
        }
        if self.veth {
            match Netlink::open().and_then(|mut nl| nl.delete_link(self.host_veth)) {
                Ok(_) => {}
                Err(e) => eprintln!(
                    "podswitch-cni: rollback: cannot delete {}: {e}",
                    self.host_veth
                ),
            }
        }
        if let Some((ipam, stdin)) = self.ipam
            && let Err(e) = ipam.exec("DEL", &[], &stdin)
        {
            eprintln!("podswitch-cni: rollback: cannot release the address: {e}");
        }
        if let Err(e) = self.store.remove(self.host_veth) {
            eprintln!("podswitch-cni: rollback: {e}");
        }
    }
}

pub fn add(conf: &NetConf, raw: &Value, env: &Env) -> CniResult<AddResult> {
    let (cid, ifname) = env.attachment()?;
    let ns = Netns::open(&env.netns)?;
    let k8s = K8sArgs::parse(&env.args)?;
    let host = naming::host_veth(cid, ifname);

    // Checks first: nothing is changed when one fails.
    let mut steps_ms = Steps::new();
    let taken = ns.run(|| Ok(open_netlink(ns.path())?.link(ifname)))?;
    if taken
        .map_err(netlink_error(format!(
            "cannot look up {ifname} in {}",
            ns.path()
        )))?
        .is_some()
    {
        return Err(CniError::new(
            code::INTERFACE_EXISTS,
            format!("interface {ifname} already exists in {}", ns.path()),
        ));
    }
    let mut nl = open_netlink("the host namespace")?;
    if nl
        .link(&host)
        .map_err(netlink_error(format!("cannot look up {host}")))?
        .is_some()
    {
        return Err(CniError::new(
            code::INTERFACE_EXISTS,
            format!("container {cid} already has {ifname} attached (host veth {host} exists)"),
        ));
    }
    let node = Podswitchd::new(&conf.socket);
    steps_ms.lap("checks");
    let cfg = node.config()?;
    steps_ms.lap("config");
    let gateway = cfg.gateway();
    let mtu = conf.mtu.unwrap_or_else(|| pod_mtu(&cfg));
    let tap = conf.pod_interface == PodInterface::Tap;
    // A tap carries super-frames at the pod's own MTU; a veth needs a large one for them.
    let link_mtu = if conf.gso && !tap { GSO_LINK_MTU } else { mtu };
    let ipam = Ipam::find(&conf.ipam_type()?, &env.path)?;
    let version = ipam.negotiate(&conf.cni_version, &conf.state_dir)?;
    steps_ms.lap("ipam-version");
    let ipam_stdin = ipam_conf(raw, &version, cfg.node.pod_cidr, gateway);
    let ipam_bytes = serde_json::to_vec(&ipam_stdin).unwrap_or_default();

    let store = Store::new(&conf.state_dir, &conf.name);
    let mut record = Record {
        container_id: cid.to_string(),
        ifname: ifname.to_string(),
        netns: env.netns.clone(),
        host_veth: host.clone(),
        socket: conf.socket.clone(),
        ipam_conf: ipam_stdin,
        pod: None,
    };
    // Written before the lease is taken, so a DEL after a crash here releases it.
    store
        .save(&record)
        .map_err(|e| CniError::new(code::IO_FAILURE, e))?;
    let mut undo = Undo {
        host_veth: &host,
        ipam: None,
        veth: false,
        tap: None,
        store: &store,
    };
    let steps = (|| {
        let out = ipam.exec("ADD", &[], &ipam_bytes)?;
        steps_ms.lap("ipam");
        undo.ipam = Some((&ipam, ipam_bytes.clone()));
        let out: Value = serde_json::from_slice(&out).map_err(|e| {
            CniError::new(
                code::IPAM,
                format!("IPAM plugin {} returned no JSON result: {e}", ipam.plugin),
            )
        })?;
        let lease = AddResult::parse(&out)?;
        let (_, ip, len) = lease.first_v4().ok_or_else(|| {
            CniError::new(
                code::IPAM,
                format!("IPAM plugin {} returned no IPv4 address", ipam.plugin),
            )
        })?;
        if !cfg.node.pod_cidr.contains(u32::from(ip)) {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "IPAM gave {ip}, outside the node's pod CIDR {} that podswitchd serves",
                    cfg.node.pod_cidr
                ),
            ));
        }
        let mac = naming::pod_mac(ip);
        let pod_side = PodSide {
            ns: &ns,
            ifname,
            mac,
            mtu: link_mtu,
            ip,
            len,
            gateway,
        };
        if tap {
            undo.tap = Some((&ns, ifname));
            wire_tap(&pod_side)?;
            steps_ms.lap("tap");
        } else {
            wire(&mut nl, &host, &pod_side, conf.gso, &mut undo.veth)?;
            steps_ms.lap("veth");
        }
        let host_mac = if tap {
            None
        } else {
            Some(
                nl.link(&host)
                    .map_err(netlink_error(format!("cannot look up {host}")))?
                    .map(|l| l.mac)
                    .unwrap_or_default(),
            )
        };
        let pod = Pod {
            name: match (&k8s.namespace, &k8s.name) {
                (Some(n), Some(p)) => format!("{n}/{p}"),
                _ => cid.to_string(),
            },
            port: host.clone(),
            ip,
            mac: Mac(mac),
            mtu,
            vlan: None,
            gso: conf.gso && !tap,
            tap: tap.then(|| PodTap {
                netns: env.netns.clone(),
                ifname: ifname.to_string(),
            }),
            k8s: match (&k8s.namespace, &k8s.name) {
                (Some(n), Some(p)) => Some(PodRef {
                    namespace: n.clone(),
                    name: p.clone(),
                    uid: k8s.uid.clone(),
                }),
                _ => None,
            },
            attachment: Some(Attachment {
                container_id: cid.to_string(),
                ifname: ifname.to_string(),
            }),
        };
        record.pod = Some(pod.clone());
        store
            .save(&record)
            .map_err(|e| CniError::new(code::IO_FAILURE, e))?;
        node.add_pod(&pod)?;
        steps_ms.lap("podswitchd");
        eprintln!(
            "podswitch-cni ADD {cid}/{ifname}: {ip} on {host}{}; {}",
            if tap { " (tap)" } else { "" },
            steps_ms
        );
        // A veth pod lists the host end first; a tap pod has only its own interface.
        let mut interfaces: Vec<Interface> = host_mac
            .map(|m| Interface {
                name: host.clone(),
                mac: Mac(m).to_string(),
                mtu: Some(link_mtu),
                sandbox: String::new(),
            })
            .into_iter()
            .collect();
        interfaces.push(Interface {
            name: ifname.to_string(),
            mac: Mac(mac).to_string(),
            mtu: Some(link_mtu),
            sandbox: env.netns.clone(),
        });
        Ok(AddResult {
            cni_version: conf.cni_version.clone(),
            ips: vec![IpConfig {
                version: None,
                address: format!("{ip}/{len}"),
                gateway: Some(gateway),
                interface: Some(interfaces.len() - 1),
            }],
            interfaces,
            routes: vec![RouteEntry {
                dst: "0.0.0.0/0".into(),
                gw: Some(gateway),
            }],
            dns: lease.dns,
        })
    })();
    match steps {
        Ok(r) => Ok(r),
        Err(e) => {
            undo.run();
            Err(e)
        }
    }
}

/// The pod's end of its link and what it gets: namespace, name, MAC, MTU, address and
/// default route.
struct PodSide<'a> {
    ns: &'a Netns,
    ifname: &'a str,
    mac: [u8; 6],
    mtu: u16,
    ip: Ipv4Addr,
    len: u8,
    gateway: Ipv4Addr,
}

/// The veth pair and everything on it: host end up without offloads, pod end with its
/// MAC, MTU, address and default route, and its offloads off (on for a super-frame pod).
fn wire(
    nl: &mut Netlink,
    host: &str,
    pod: &PodSide<'_>,
    gso: bool,
    made: &mut bool,
) -> CniResult<()> {
    let (ns, ifname) = (pod.ns, pod.ifname);
    nl.add_veth(host, ifname, ns.raw_fd(), pod.mac, u32::from(pod.mtu))
        .map_err(|e| {
            let code = if e.errno == libc::EEXIST {
                code::INTERFACE_EXISTS
            } else {
                code::NETLINK
            };
            CniError::new(
                code,
                format!(
                    "cannot create veth {host} <-> {ifname} in {}: {e}",
                    ns.path()
                ),
            )
        })?;
    *made = true;
    let link = nl
        .link(host)
        .map_err(netlink_error(format!("cannot look up {host}")))?
        .ok_or_else(|| {
            CniError::new(
                code::NETLINK,
                format!("veth {host} vanished after creation"),
            )
        })?;
    offloads_off(host, "the host namespace")?;
    if gso {
        // podswitchd leaves a super-frame pod's checksums to this end's transmit offload
        // (AF_XDP transmit metadata); with it on, the pod's kernel takes them as a veth's
        // own, as the kernel's bridge path does; with it off the kernel computes them.
        if let Err(e) = sys::ethtool_set(host, sys::ETHTOOL_STXCSUM, true) {
            eprintln!("podswitch-cni: tx-checksum offload stays off for {host}: {e}");
        }
    }
    nl.set_up(link.index)
        .map_err(netlink_error(format!("cannot set {host} up")))?;
    ns.run(|| {
        let mut pnl = open_netlink(ns.path())?;
        let index = pod_link(&mut pnl, pod)?;
        offloads_off(ifname, ns.path())?;
        if gso {
            offloads_gso(ifname, ns.path());
        }
        address(&mut pnl, pod, index)
    })
}

/// A tap pod's device, made in its namespace: persistent (podswitchd attaches to it, and
/// again after a restart), with its MAC, MTU, address and default route. Its offloads are
/// what podswitchd accepts when it attaches (checksum and TSO), so nothing is set here;
/// until then its carrier is off.
fn wire_tap(pod: &PodSide<'_>) -> CniResult<()> {
    let (ns, ifname) = (pod.ns, pod.ifname);
    ns.run(|| {
        sys::create_persistent_tap(ifname).map_err(|e| {
            let code = if e.raw_os_error() == Some(libc::EBUSY) {
                code::INTERFACE_EXISTS
            } else {
                code::NETLINK
            };
            CniError::new(
                code,
                format!("cannot create tap {ifname} in {}: {e}", ns.path()),
            )
        })?;
        let mut pnl = open_netlink(ns.path())?;
        let index = pod_link(&mut pnl, pod)?;
        pnl.set_mac_mtu(index, pod.mac, u32::from(pod.mtu))
            .map_err(netlink_error(format!(
                "cannot set the MAC and MTU of {ifname} in {}",
                ns.path()
            )))?;
        address(&mut pnl, pod, index)
    })
}

/// The pod's interface index (in the calling thread's namespace, the pod's).
fn pod_link(pnl: &mut Netlink, pod: &PodSide<'_>) -> CniResult<u32> {
    let (ns, ifname) = (pod.ns, pod.ifname);
    pnl.link(ifname)
        .map_err(netlink_error(format!(
            "cannot look up {ifname} in {}",
            ns.path()
        )))?
        .map(|l| l.index)
        .ok_or_else(|| {
            CniError::new(
                code::NETLINK,
                format!("{ifname} is not in {} after creation", ns.path()),
            )
        })
}

/// Sets the pod's interface up, with its address and default route.
fn address(pnl: &mut Netlink, pod: &PodSide<'_>, index: u32) -> CniResult<()> {
    let (ns, ifname, ip, len, gateway) = (pod.ns, pod.ifname, pod.ip, pod.len, pod.gateway);
    pnl.set_up(index).map_err(netlink_error(format!(
        "cannot set {ifname} up in {}",
        ns.path()
    )))?;
    pnl.add_address(index, ip, len)
        .map_err(netlink_error(format!(
            "cannot add {ip}/{len} to {ifname} in {}",
            ns.path()
        )))?;
    pnl.add_route(Ipv4Addr::UNSPECIFIED, 0, gateway, index)
        .map_err(netlink_error(format!(
            "cannot add the default route via {gateway} in {}",
            ns.path()
        )))
}
