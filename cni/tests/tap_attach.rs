//! Tap pods (`"podInterface": "tap"`), end to end, as root: cnitool ADDs pods through this
//! plugin into a real podswitchd. Each pod's interface is a persistent tap device in its
//! namespace, at the network MTU, with checksum and TSO offloads once podswitchd holds it;
//! a TCP transfer between two tap pods arrives whole in super-frames (their checksums left
//! to the kernel), one toward a veth pod is cut to its MTU, one from a veth pod is
//! coalesced and described with its segments' real size (`gso_size`); CHECK passes; a restarted
//! podswitchd (`--cni-state`) attaches to the taps again; a tap that is not there is
//! refused by name; GC and DEL remove the devices.
//!
//! Skips, saying why, when not root or when cnitool, host-local or podswitchd is missing.

mod common;

use common::*;
use podswitch_model::protocol::{Request, request};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

/// MiB per transfer.
const TRANSFER_MIB: usize = 32;

/// The dump of the ports once podswitchd's workers list `n` tap ports (they publish
/// every 100 ms: up to 3 s).
fn tap_ports(lab: &Lab, n: usize) -> String {
    let mut ports = String::new();
    for _ in 0..30 {
        ports = lab.dump("ports").to_string();
        if ports.matches("tap eth0").count() >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ports
}

/// Counts the `gso_size` of the TCP super-frames `pod` receives on eth0 for `secs` seconds
/// (a packet socket with `PACKET_VNET_HDR` sees each frame's virtio-net header). Returns
/// once the capture is listening; `.1` then yields `size:count` pairs when it ends.
fn gso_sizes(
    lab: &Lab,
    pod: &str,
    secs: u32,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns(pod),
            "timeout",
            "20",
            "python3",
            "-c",
        ])
        .arg(format!(
            "import socket,struct,time\n\
             s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(0x0800))\n\
             s.setsockopt(263,15,1)\n\
             s.bind(('eth0',0));s.settimeout(0.5);seen={{}};end=time.time()+{secs}\n\
             print('listening',flush=True)\n\
             while time.time()<end:\n\
             \x20try: d=s.recv(70000)\n\
             \x20except socket.timeout: continue\n\
             \x20if d[1]&0x7f==1: g=struct.unpack('<H',d[4:6])[0];seen[g]=seen.get(g,0)+1\n\
             print(' '.join('%d:%d'%kv for kv in sorted(seen.items())))"
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("capture");
    let mut out = BufReader::new(child.stdout.take().expect("capture output"));
    let mut first = String::new();
    out.read_line(&mut first).expect("capture output");
    assert_eq!(first.trim(), "listening", "the capture did not start");
    (child, out)
}

#[test]
fn tap_pods_exchange_super_frames_and_survive_a_restart() {
    let Some(mut lab) = setup("t", &["a", "b", "c"]) else {
        return;
    };
    lab.write_conflist(&[("podInterface", Value::from("tap"))]);
    lab.start_daemon();
    let a = lab.cnitool_ok("add", "a");
    let b = lab.cnitool_ok("add", "b");
    let (ip_a, ip_b) = (ip_of(&a), ip_of(&b));
    let result: Value = serde_json::from_slice(&a.stdout).expect("ADD result");
    assert_eq!(
        result["interfaces"].as_array().map(Vec::len),
        Some(1),
        "a tap pod has only its own interface: {result}"
    );

    let ports = tap_ports(&lab, 2);
    assert_eq!(ports.matches("tap eth0").count(), 2, "{ports}");
    assert!(lab.host_veths().is_empty(), "no veth for a tap pod");
    // The pod's interface is a tap at the network MTU, with the offloads podswitchd took.
    let flags = lab.in_ns("a", &["cat", "/sys/class/net/eth0/tun_flags"]);
    assert!(flags.status.success(), "eth0 in pod a is a tun/tap device");
    assert_eq!(lab.read_u64("a", "/sys/class/net/eth0/mtu"), 1450);
    lab.assert_features(
        "a",
        &["tx-checksumming: on", "tcp-segmentation-offload: on"],
    );
    let pods = lab.dump("config")["pod"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        pods.iter().all(|p| p["tap"]["ifname"] == "eth0"),
        "{pods:?}"
    );

    // Tap pod to tap pod: whole super-frames, checksums left to the receiving tap; every
    // byte arrives unaltered (SHA-256 of what was sent and received).
    assert!(lab.ping("a", &ip_b), "a pings b: {}", lab.daemon_log());
    let t = lab.transfer("a", "b", &ip_b, TRANSFER_MIB);
    assert!(t.intact(TRANSFER_MIB), "{t:?}\n{}", lab.daemon_log());
    eprintln!("tap -> tap: {t:?}, {} bytes per frame", t.bytes_per_frame());
    assert!(
        t.bytes_per_frame() > 4000,
        "pod b received {t:?}: super-frames did not cross whole"
    );
    assert!(lab.event("csum_offloaded") > 0, "checksums left to the tap");
    lab.cnitool_ok("check", "a");

    // A restarted podswitchd attaches to the taps again from the plugin's records.
    lab.stop_daemon();
    let state = lab.dir.join("state").display().to_string();
    lab.start_daemon_with(&["--cni-state", &state]);
    let ports = tap_ports(&lab, 2);
    assert_eq!(
        ports.matches("tap eth0").count(),
        2,
        "restored: {ports}\n{}",
        lab.daemon_log()
    );
    assert!(lab.ping("b", &ip_a), "b pings a after the restart");

    // A veth pod beside them: a tap pod's super-frames are cut to its MTU.
    lab.write_conflist(&[]);
    let c = lab.cnitool_ok("add", "c");
    let ip_c = ip_of(&c);
    let t = lab.transfer("a", "c", &ip_c, TRANSFER_MIB / 4);
    assert!(t.intact(TRANSFER_MIB / 4), "{t:?}\n{}", lab.daemon_log());
    eprintln!("tap -> veth: {t:?}");
    assert!(
        t.bytes_per_frame() <= 1514,
        "pod c got frames over its MTU: {t:?}"
    );
    assert!(lab.event("tso_segments_made") > 0, "ip4-tso cut them");

    // The veth pod sending smaller segments (its MTU lowered to 1100: 1048 payload bytes
    // with timestamps) to tap pod a: ip4-gro coalesces them, and a's kernel is told their
    // real size, as a kernel bridge would tell it, not the 1398 its own MTU gives.
    assert!(
        lab.in_ns("c", &["ip", "link", "set", "eth0", "mtu", "1100"])
            .status
            .success()
    );
    let (mut capture, mut seen_out) = gso_sizes(&lab, "a", 8);
    let t = lab.transfer("c", "a", &ip_a, TRANSFER_MIB / 4);
    let mut seen = String::new();
    seen_out.read_to_string(&mut seen).expect("capture output");
    capture.wait().expect("capture exits");
    assert!(t.intact(TRANSFER_MIB / 4), "{t:?}\n{}", lab.daemon_log());
    let seen = seen.trim();
    eprintln!("veth (MTU 1100) -> tap: {t:?}, gso_size seen: {seen}");
    assert!(
        seen.contains("1048:") && !seen.contains("1398:"),
        "gso_size of the super-frames pod a received (size:count): {seen}"
    );

    // A tap that is not there is refused by name; the switch goes on.
    let mut bad: Value = lab.dump("config")["pod"][0].clone();
    bad["name"] = "ghost".into();
    bad["port"] = "ghost0".into();
    bad["ip"] = "10.244.1.200".into();
    bad["mac"] = "02:00:00:00:00:c8".into();
    bad["tap"]["ifname"] = "nosuch0".into();
    bad.as_object_mut().map(|o| o.remove("attachment"));
    let pod = serde_json::from_value(bad).expect("pod");
    let r = request(&lab.socket(), &Request::AddPod { pod }).expect("an answer");
    let msg = r.error.clone().unwrap_or_default();
    assert!(
        !r.ok && msg.contains("nosuch0") && msg.contains("no interface"),
        "{r:?}"
    );
    assert!(lab.ping("a", &ip_b), "a still pings b");

    // GC without b among the valid attachments, and without b's record (as after a lost
    // state folder): b's port goes, found in podswitchd, and its tap with it.
    let port_b = lab.dump("config")["pod"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["tap"]["netns"] == lab.netns_path("b").as_str())
        .and_then(|p| p["port"].as_str().map(String::from))
        .expect("b's port");
    std::fs::remove_file(lab.dir.join(format!("state/podswitch/{port_b}.json")))
        .expect("b's record");
    let valid: Vec<Value> = ["a", "c"]
        .iter()
        .map(|p| {
            let id = format!("cnitool-{}", sha_prefix(&lab.netns_path(p)));
            serde_json::json!({"containerID": id, "ifname": "eth0"})
        })
        .collect();
    let mut gc: Value = serde_json::from_str(&lab.conf("1.1.0")).expect("conf");
    gc["cni.dev/valid-attachments"] = Value::Array(valid);
    let (ok, e) = lab.plugin("GC", &[], &gc.to_string());
    assert!(ok, "GC: {e}");
    assert_eq!(lab.ports().len(), 2, "GC removed b's port only");
    assert!(
        !lab.in_ns("b", &["ip", "link", "show", "eth0"])
            .status
            .success(),
        "GC removed b's tap"
    );
    assert!(lab.ping("a", &ip_c), "a and c still talk after GC");

    for pod in ["a", "b", "c"] {
        let d = lab.cnitool("del", pod);
        assert!(
            d.status.success(),
            "del {pod}: {}",
            String::from_utf8_lossy(&d.stderr)
        );
    }
    assert!(
        !lab.in_ns("a", &["ip", "link", "show", "eth0"])
            .status
            .success(),
        "DEL removes the tap"
    );
    assert!(lab.ports().is_empty());
}
