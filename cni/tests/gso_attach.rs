//! A super-frame pod attached by the plugin (`"gso": true`), end to end, as root: cnitool
//! ADDs two pods through this plugin into a real podswitchd; both veth ends get the
//! super-frame MTU, the pod keeps its segmentation and checksum offloads, podswitchd opens
//! the ports multi-buffer with transmit checksum offload, and a TCP transfer between the
//! pods arrives intact in frames larger than the network MTU (super-frames crossed the
//! switch whole, their partial checksums completed by the kernel through AF_XDP transmit
//! metadata).
//!
//! Skips, saying why, when not root, when cnitool, host-local or podswitchd is missing, or
//! when the kernel refuses AF_XDP multi-buffer on veth.

mod common;

use common::*;
use std::time::Duration;

/// MiB sent from pod a to pod b.
const TRANSFER_MIB: usize = 32;

#[test]
fn gso_pods_get_super_frame_veths_and_exchange_super_frames() {
    let Some(mut lab) = setup("g", &["a", "b"]) else {
        return;
    };
    lab.write_conflist(&[("gso", serde_json::Value::Bool(true))]);
    lab.start_daemon();
    lab.cnitool_ok("add", "a");
    let b = lab.cnitool_ok("add", "b");
    let ip_b = ip_of(&b);

    // The ports: multi-buffer, or the kernel refused it (then nothing below can hold).
    // Workers publish port modes every 100 ms: wait up to 3 s for both.
    let mut ports = String::new();
    for _ in 0..30 {
        ports = lab.dump("ports").to_string();
        if ports.matches("multi-buffer").count() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if ports.contains("refused") {
        skip(&format!("the kernel refused AF_XDP multi-buffer:\n{ports}"));
        return;
    }
    assert_eq!(
        ports.matches("multi-buffer").count(),
        2,
        "both pod ports multi-buffer: {ports}"
    );

    // The veths: MTU 65000 at both ends; the pod's offloads on; its podswitchd MTU is the
    // network's (1450 over VXLAN) and the port carries super-frames.
    assert_eq!(
        lab.read_u64("a", "/sys/class/net/eth0/mtu"),
        65000,
        "pod end"
    );
    for host in lab.host_veths() {
        let mtu = lab.in_ns("node", &["cat", &format!("/sys/class/net/{host}/mtu")]);
        assert_eq!(
            String::from_utf8_lossy(&mtu.stdout).trim(),
            "65000",
            "{host}"
        );
    }
    lab.assert_features(
        "a",
        &[
            "tx-checksumming: on",
            "scatter-gather: on",
            "generic-segmentation-offload: on",
        ],
    );
    let pods = lab.dump("config")["pod"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(pods.len(), 2);
    for p in &pods {
        assert_eq!(p["gso"], true, "{p}");
        assert_eq!(p["mtu"], 1450, "{p}");
    }

    // A TCP transfer a -> b: all bytes arrive unaltered, in frames larger than the network
    // MTU.
    let t = lab.transfer("a", "b", &ip_b, TRANSFER_MIB);
    assert!(
        t.intact(TRANSFER_MIB),
        "received by pod b: {t:?}\n{}",
        lab.daemon_log()
    );
    eprintln!(
        "pod b: {} bytes in {} frames ({} bytes per frame)",
        t.rx_bytes,
        t.rx_frames,
        t.bytes_per_frame()
    );
    assert!(
        t.bytes_per_frame() > 4000,
        "pod b received {t:?}: super-frames did not cross whole"
    );

    // Pod b's partial checksums were left to its port (AF_XDP transmit metadata), where
    // the kernel offers it; the transfer above proves the kernel completed them.
    if ports.contains("csum-offload refused") {
        eprintln!("transmit checksum offload refused by the kernel: {ports}");
        assert!(
            lab.event("csum_finished") > 0,
            "checksums completed by podswitchd"
        );
    } else {
        assert_eq!(
            ports.matches("csum-offload").count(),
            2,
            "both pod ports offload checksums: {ports}"
        );
        assert!(
            lab.event("csum_offloaded") > 0,
            "checksums left to the ports"
        );
    }

    for pod in ["a", "b"] {
        let d = lab.cnitool("del", pod);
        assert!(d.status.success(), "del {pod}");
    }
    assert!(lab.host_veths().is_empty(), "DEL removes the veths");
}
