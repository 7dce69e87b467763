//! Opens switch ports as AF_XDP sockets and attaches the XDP programs that feed them.
//!
//! The uplink gets `xdp_uplink`, which redirects only podswitch's traffic (VXLAN/IPIP to
//! the node, pod subnets, Service addresses, NodePorts) and passes the rest — and
//! everything when no socket is bound — to the kernel, so the node's own traffic never
//! depends on podswitchd. Pod and host ports get `xdp_redirect_all`.

use super::control::PortFactory;
use crate::port::Port;
use crate::port::afxdp_port::{AfXdpPort, PortOptions};
use crate::port::xdp_prog::{self, UplinkConfig, XdpMode, XdpProgram};
use crate::tables::{PortEntry, PortKind, Snapshot};
use parking_lot::Mutex;
use std::collections::HashMap;

pub struct AfXdpFactory {
    pub mode: XdpMode,
    /// Service CIDR and NodePort range the uplink program hands to podswitch.
    pub service_cidr: Option<(std::net::Ipv4Addr, u8)>,
    pub nodeport_range: Option<(u16, u16)>,
    programs: Mutex<HashMap<String, XdpProgram>>,
}

impl AfXdpFactory {
    pub fn new(mode: XdpMode) -> Self {
        AfXdpFactory {
            mode,
            service_cidr: Some((std::net::Ipv4Addr::new(10, 96, 0, 0), 12)),
            nodeport_range: Some((30000, 32767)),
            programs: Mutex::new(HashMap::new()),
        }
    }

    fn uplink_config(&self, snap: &Snapshot) -> UplinkConfig {
        let n = &snap.node;
        let mut pod_cidrs = vec![(std::net::Ipv4Addr::from(n.pod_cidr.addr), n.pod_cidr.len)];
        // Host-gw peers route their pods' traffic to this node's pod subnet directly.
        pod_cidrs.truncate(8);
        UplinkConfig {
            node_addr: std::net::Ipv4Addr::from(n.address),
            vxlan_port: Some(n.vxlan.port),
            ipip: true,
            pod_cidrs,
            service_cidr: self.service_cidr,
            nodeport_range: self.nodeport_range,
        }
    }
}

fn rx_queues(ifname: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{ifname}/queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}

impl PortFactory for AfXdpFactory {
    fn open(&self, entry: &PortEntry, snap: &Snapshot) -> Result<Vec<Box<dyn Port>>, String> {
        let name = entry.name.as_str();
        let prog = if entry.kind == PortKind::Uplink {
            XdpProgram::attach_uplink(name, &self.uplink_config(snap), self.mode)
        } else {
            XdpProgram::attach_redirect_all(name, self.mode)
        }
        .map_err(|e| format!("cannot attach XDP program to {name}: {e}"))?;
        let small = entry.kind != PortKind::Uplink;
        let opts = PortOptions {
            program: Some(prog.xsk_map()),
            xdp_mode: self.mode,
            ring_size: if small { 1024 } else { 2048 },
            rx_frames: if small { 2048 } else { 4096 },
            tx_frames: if small { 1024 } else { 2048 },
            ..Default::default()
        };
        let mut socks: Vec<Box<dyn Port>> = Vec::new();
        for q in 0..rx_queues(name) {
            match AfXdpPort::open(name, q, &opts) {
                Ok(p) => {
                    eprintln!("podswitchd: port {name} queue {q}: {}", p.mode());
                    socks.push(Box::new(p));
                }
                Err(e) => {
                    drop(socks);
                    let _ = xdp_prog::detach(name);
                    return Err(format!(
                        "cannot open AF_XDP socket on {name} queue {q}: {e}"
                    ));
                }
            }
        }
        self.programs.lock().insert(entry.name.clone(), prog);
        Ok(socks)
    }

    fn close(&self, entry: &PortEntry) {
        self.programs.lock().remove(&entry.name);
        let _ = xdp_prog::detach(&entry.name);
    }
}
