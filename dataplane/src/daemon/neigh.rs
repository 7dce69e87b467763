//! Underlay neighbour resolution through the node's kernel.
//!
//! The uplink XDP program passes ARP to the kernel, which owns the node address on the
//! uplink and so already answers and learns ARP there. For every underlay next hop the
//! configuration needs but gives no `[[neighbour]]` MAC for (peer nodes, the uplink
//! gateway, `via` next hops: e.g. a peer added with `program add-peer`, whose MAC a
//! controller cannot know), this thread asks the kernel to resolve it (netlink NTF_USE, as
//! `ip neigh replace IP dev DEV use`), reads the kernel's ARP table, and hands the result
//! to the control side, which publishes a new snapshot when a MAC appears, changes or goes.
//! Entries are refreshed the same way, so a peer that changed its MAC is picked up within
//! a refresh period. Until a next hop is resolved, packets for it are dropped as
//! `neighbour_unresolved` (counted), as a router drops while its ARP is pending.

use super::control::Control;
use super::sys::{ifindex, neigh_use};
use crate::config::Neighbour;
use crate::wire::Mac;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often the kernel's table is read; faster while a next hop is unresolved, so a new
/// peer is usable within tens of milliseconds of its ARP reply.
const POLL: Duration = Duration::from_millis(250);
const POLL_PENDING: Duration = Duration::from_millis(20);
/// How often a resolved next hop is refreshed (NTF_USE on a reachable entry is a no-op
/// for the kernel; on a stale one it starts a probe).
const REFRESH: Duration = Duration::from_secs(5);
/// How often an unresolved next hop is asked for again: 1 s, doubling up to 30 s (a peer
/// on another subnet never resolves on the uplink; it is reached through the gateway).
const RETRY: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long after a next hop shows up the table is read at the fast rate.
const FAST_FOR: Duration = Duration::from_secs(3);

/// Resolution state of one wanted next hop.
struct Ask {
    /// When it was first wanted (the table is read fast for a while after).
    since: Instant,
    /// When the kernel was last asked to resolve or refresh it.
    last: Option<Instant>,
    /// Interval before asking again while unresolved (doubles up to RETRY_MAX).
    retry: Duration,
}

/// Complete IPv4 neighbour entries of `dev` in the text of `/proc/net/arp`.
pub fn parse_proc_arp(text: &str, dev: &str) -> Vec<(Ipv4Addr, Mac)> {
    const ATF_COM: u32 = 0x02;
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 6 || f[5] != dev {
                return None;
            }
            let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
            if flags & ATF_COM == 0 {
                return None;
            }
            let mac: Mac = f[3].parse().ok()?;
            if mac.is_zero() || mac.is_multicast() {
                return None;
            }
            Some((f[0].parse().ok()?, mac))
        })
        .collect()
}

/// Runs until `stop` is set.
pub fn run(control: Arc<Control>, stop: Arc<AtomicBool>) {
    let mut asked: HashMap<Ipv4Addr, Ask> = HashMap::new();
    let mut warned_dev = false;
    while !stop.load(Ordering::Relaxed) {
        let mut pending = false;
        let (dev, wanted) = control.unresolved_next_hops();
        asked.retain(|ip, _| wanted.contains(ip));
        if !wanted.is_empty() {
            let table = std::fs::read_to_string("/proc/net/arp")
                .map(|t| parse_proc_arp(&t, &dev))
                .unwrap_or_default();
            let learned: Vec<Neighbour> = table
                .iter()
                .filter(|(ip, _)| wanted.contains(ip))
                .map(|&(ip, mac)| Neighbour { ip, mac })
                .collect();
            match ifindex(&dev) {
                Ok(ix) => {
                    let now = Instant::now();
                    for ip in &wanted {
                        let resolved = learned.iter().any(|n| n.ip == *ip);
                        let a = asked.entry(*ip).or_insert(Ask {
                            since: now,
                            last: None,
                            retry: RETRY,
                        });
                        pending |= !resolved && a.since.elapsed() < FAST_FOR;
                        let every = if resolved { REFRESH } else { a.retry };
                        if a.last.is_none_or(|t| t.elapsed() >= every) {
                            a.last = Some(now);
                            a.retry = if resolved {
                                RETRY
                            } else {
                                (a.retry * 2).min(RETRY_MAX)
                            };
                            if let Err(e) = neigh_use(ix, *ip) {
                                eprintln!("podswitchd: neighbour {ip} on {dev}: {e}");
                            }
                        }
                    }
                }
                Err(e) if !warned_dev => {
                    warned_dev = true;
                    eprintln!("podswitchd: neighbour resolution: uplink {dev}: {e}");
                }
                Err(_) => {}
            }
            report(&control, learned);
        } else {
            report(&control, Vec::new());
        }
        std::thread::sleep(if pending { POLL_PENDING } else { POLL });
    }
}

fn report(control: &Control, learned: Vec<Neighbour>) {
    let desc: Vec<String> = learned
        .iter()
        .map(|n| format!("{} {}", n.ip, n.mac))
        .collect();
    match control.set_learned(learned) {
        Ok(Some(g)) => eprintln!(
            "podswitchd: underlay neighbours from the kernel: [{}] (generation {g})",
            desc.join(", ")
        ),
        Ok(None) => {}
        Err(e) => eprintln!("podswitchd: learned neighbours rejected: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP: &str =
        "IP address       HW type     Flags       HW address            Mask     Device
192.168.1.12     0x1         0x2         02:00:c0:a8:01:12     *        eth0
192.168.1.13     0x1         0x0         00:00:00:00:00:00     *        eth0
192.168.1.14     0x1         0x2         02:00:c0:a8:01:14     *        psw-host
192.168.1.15     0x1         0x6         02:00:c0:a8:01:15     *        eth0
garbage line
";

    #[test]
    fn complete_entries_of_the_device_only() {
        let got = parse_proc_arp(ARP, "eth0");
        assert_eq!(
            got,
            vec![
                (
                    "192.168.1.12".parse().unwrap(),
                    "02:00:c0:a8:01:12".parse().unwrap()
                ),
                (
                    "192.168.1.15".parse().unwrap(),
                    "02:00:c0:a8:01:15".parse().unwrap()
                ),
            ]
        );
        assert!(parse_proc_arp("", "eth0").is_empty());
    }
}
