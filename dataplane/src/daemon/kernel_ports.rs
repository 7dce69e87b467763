//! Opens switch ports on the kernel's devices: a pod on a tap device gets a tap port
//! (`port::tap_port`); every other port is AF_XDP sockets, fed by XDP programs this
//! attaches.
//!
//! The uplink gets `xdp_uplink`, which redirects only podswitch's traffic (VXLAN/IPIP to
//! the node, pod subnets, Service addresses, NodePorts, replies and ICMP errors of
//! masqueraded flows) and passes the rest — and
//! everything when no socket is bound — to the kernel, so the node's own traffic never
//! depends on podswitchd. Pod and host ports get `xdp_redirect_all`.

use super::control::PortFactory;
use crate::port::Port;
use crate::port::afxdp_port::{AfXdpPort, PortOptions};
use crate::port::tap_port::TapPort;
use crate::port::xdp_prog::{self, UplinkConfig, XdpMode, XdpProgram};
use crate::tables::{PortEntry, PortKind, Snapshot};
use parking_lot::Mutex;
use std::collections::HashMap;

pub struct KernelPorts {
    pub mode: XdpMode,
    programs: Mutex<HashMap<String, XdpProgram>>,
}

impl KernelPorts {
    pub fn new(mode: XdpMode) -> Self {
        KernelPorts {
            mode,
            programs: Mutex::new(HashMap::new()),
        }
    }

    /// What the uplink program steers to podswitch, from the snapshot: tunnels to the node
    /// address, the pod subnet (host-gw peers), externalIPs and LoadBalancer IPs, the Service
    /// CIDR, NodePorts, and replies and ICMP errors of masqueraded flows (the SNAT port
    /// range). The number of external IPs is bounded by `tables::build` (the program's
    /// prefix map capacity), so none is left out.
    fn uplink_config(snap: &Snapshot) -> UplinkConfig {
        use std::net::Ipv4Addr;
        let n = &snap.node;
        let nat = &snap.config.base.nat;
        let external = snap.services.external_ips();
        let svc = nat.service_cidr;
        UplinkConfig {
            node_addr: Ipv4Addr::from(n.address),
            vxlan_port: Some(n.vxlan.port),
            ipip: true,
            pod_cidrs: vec![(Ipv4Addr::from(n.pod_cidr.addr), n.pod_cidr.len)],
            external_ips: external,
            service_cidr: Some((Ipv4Addr::from(svc.addr), svc.len)),
            nodeport_range: Some((nat.node_port_range[0], nat.node_port_range[1])),
            snat_range: nat
                .masquerade
                .then_some((nat.snat_port_range[0], nat.snat_port_range[1])),
            // Health-check NodePorts are answered by podswitchd's listener in the node stack.
            kernel_tcp_ports: snap
                .config
                .services
                .health_checks()
                .map(|(p, _)| p)
                .collect(),
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

impl PortFactory for KernelPorts {
    fn open(&self, entry: &PortEntry, snap: &Snapshot) -> Result<Vec<Box<dyn Port>>, String> {
        let name = entry.name.as_str();
        if let Some(t) = &entry.tap {
            let p = TapPort::open(name, &t.netns, &t.ifname, entry.mtu)
                .map_err(|e| format!("cannot open tap {} in {}: {e}", t.ifname, t.netns))?;
            eprintln!("podswitchd: port {name}: {}", p.mode());
            return Ok(vec![Box::new(p)]);
        }
        let prog = if entry.kind == PortKind::Uplink {
            XdpProgram::attach_uplink(name, &Self::uplink_config(snap), self.mode)
        } else if entry.gso {
            // A port that carries super-frames: the program marked for multi-buffer frames
            // (xdp.frags), else the plain one (then the pod's GSO stays off: single-buffer).
            XdpProgram::attach_redirect_all_frags(name, self.mode).or_else(|e| {
                eprintln!(
                    "podswitchd: port {name}: no multi-buffer XDP ({e}): super-frames off, single-buffer"
                );
                XdpProgram::attach_redirect_all(name, self.mode)
            })
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
            multi_buffer: entry.gso,
            // A super-frame pod's checksums stay partial toward it: its port completes them
            // on transmit where the kernel offers it (`Pipeline::run_offloading`).
            tx_csum_offload: entry.gso && entry.kind == PortKind::Pod,
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

    fn update(&self, snap: &Snapshot) -> Result<(), String> {
        let name = &snap.ports[usize::from(snap.uplink)].name;
        match self.programs.lock().get(name) {
            Some(p) => p
                .set_config(&Self::uplink_config(snap))
                .map_err(|e| format!("cannot update the uplink filter of {name}: {e}")),
            None => Ok(()),
        }
    }

    fn xdp_counters(&self, name: &str) -> Option<Vec<(&'static str, u64)>> {
        let progs = self.programs.lock();
        let counts = progs.get(name)?.counters().ok()?;
        Some(
            xdp_prog::Counter::ALL
                .iter()
                .map(|c| (c.name(), counts[*c as usize]))
                .collect(),
        )
    }

    fn close(&self, entry: &PortEntry) {
        if entry.tap.is_some() {
            return; // the tap's fd closes with its port; its device stays the pod's
        }
        self.programs.lock().remove(&entry.name);
        let _ = xdp_prog::detach(&entry.name);
    }
}
