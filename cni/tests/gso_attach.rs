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
use std::process::Command;
use std::time::Duration;

/// Bytes sent from pod a to pod b.
const TRANSFER: usize = 32 << 20;

fn read_u64(lab: &Lab, pod: &str, path: &str) -> u64 {
    let o = lab.in_ns(pod, &["cat", path]);
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path} in {pod}: {e}"))
}

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
        read_u64(&lab, "a", "/sys/class/net/eth0/mtu"),
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

    // A TCP transfer a -> b: all bytes arrive, in frames larger than the network MTU.
    let rx_bytes = "/sys/class/net/eth0/statistics/rx_bytes";
    let rx_packets = "/sys/class/net/eth0/statistics/rx_packets";
    let (bytes0, packets0) = (
        read_u64(&lab, "b", rx_bytes),
        read_u64(&lab, "b", rx_packets),
    );
    let server = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("b"),
            "timeout",
            "30",
            "python3",
            "-c",
        ])
        .arg(
            "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);\
             s.bind(('0.0.0.0',7778));s.listen(1);c,_=s.accept();n=0\n\
             while True:\n  d=c.recv(1<<20)\n  if not d: break\n  n+=len(d)\n\
             print(n)",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("server");
    std::thread::sleep(Duration::from_millis(300));
    let client = lab.in_ns(
        "a",
        &[
            "timeout",
            "30",
            "python3",
            "-c",
            &format!(
                "import socket;s=socket.create_connection(('{ip_b}',7778),timeout=10);\
                 d=bytes(range(256))*4096;[s.sendall(d) for _ in range({})];s.close()",
                TRANSFER >> 20
            ),
        ],
    );
    assert!(
        client.status.success(),
        "client: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    let got = server.wait_with_output().expect("server exits");
    assert_eq!(
        String::from_utf8_lossy(&got.stdout).trim(),
        TRANSFER.to_string(),
        "bytes received by pod b: {}",
        lab.daemon_log()
    );
    let bytes = read_u64(&lab, "b", rx_bytes) - bytes0;
    let packets = read_u64(&lab, "b", rx_packets) - packets0;
    assert!(packets > 0);
    eprintln!(
        "pod b: {bytes} bytes in {packets} frames ({} bytes per frame)",
        bytes / packets
    );
    assert!(
        bytes / packets > 4000,
        "pod b received {bytes} bytes in {packets} frames: super-frames did not cross whole"
    );

    // Pod b's partial checksums were left to its port (AF_XDP transmit metadata), where
    // the kernel offers it; the transfer above proves the kernel completed them.
    // Workers publish their counters every 100 ms: read them for up to 2 s.
    let events = |name: &str| -> u64 {
        let stats = podswitch_model::protocol::request(
            &lab.socket(),
            &podswitch_model::protocol::Request::Stats {},
        )
        .expect("stats");
        stats.data["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| w["pipeline"]["events"][name].as_u64().unwrap_or(0))
            .sum()
    };
    let settled = |name: &str| {
        (0..20).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            events(name) > 0
        })
    };
    if ports.contains("csum-offload refused") {
        eprintln!("transmit checksum offload refused by the kernel: {ports}");
        assert!(
            settled("csum_finished"),
            "checksums completed by podswitchd"
        );
    } else {
        assert_eq!(
            ports.matches("csum-offload").count(),
            2,
            "both pod ports offload checksums: {ports}"
        );
        assert!(settled("csum_offloaded"), "checksums left to the ports");
    }

    for pod in ["a", "b"] {
        let d = lab.cnitool("del", pod);
        assert!(d.status.success(), "del {pod}");
    }
    assert!(lab.host_veths().is_empty(), "DEL removes the veths");
}
