//! Super-frames through a real podswitchd, end to end in network namespaces.
//!
//! Two nodes on a fabric bridge (lab/netns.sh), podswitchd on each (this package's binary,
//! the house VXLAN configs with `gso = true` on pods a, c and b), the pods keeping their
//! transmit checksum offload and scatter-gather, their veths' MTU raised on both ends (see
//! README, "Super-frames"). Then real TCP transfers of pseudo-random data (Python sockets),
//! checked for content (SHA-256 at both ends) and, from a capture on the receiving pod's
//! interface (tshark), for bad TCP checksums and retransmissions:
//! - pod a -> pod c on node1: super-frames cross the switch whole (multi-buffer rx and tx);
//! - pod a -> pod b on node2: super-frames cut to the VXLAN path by ip4-tso on node1 and
//!   coalesced again toward pod b by ip4-gro on node2 (pod b sees frames larger than the
//!   path, node2 counts them).
//!
//! Needs root, `ip`, `ethtool`, `python3` and `tshark`; skipped with a message when not root,
//! when a tool is missing, or when the kernel refuses AF_XDP multi-buffer.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podswitch::daemon::sys::euid;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const PODSWITCHD: &str = env!("CARGO_BIN_EXE_podswitchd");
const PODSWITCHCTL: &str = env!("CARGO_BIN_EXE_podswitchctl");
/// MTU of a GSO pod's veth (both ends): what an `xdp.frags` program lets the pod's end take.
const GSO_VETH_MTU: u32 = 65000;

/// The namespaces, daemons and files of one run; removed on drop, also when a check fails.
struct Lab {
    prefix: String,
    dir: PathBuf,
    daemons: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        let _ = sh(&self.prefix, "netns_cleanup");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a bash snippet with lab/netns.sh sourced and `P` set to the prefix.
fn sh(prefix: &str, script: &str) -> Result<String, String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -e; P={prefix}; source {REPO}/lab/netns.sh; {script}"
        ))
        .output()
        .map_err(|e| format!("bash: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{script}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The house config of node `n` with `gso = true` on the given pod ports.
fn config(n: u32, gso_ports: &[&str], dir: &Path) -> PathBuf {
    let src =
        std::fs::read_to_string(format!("{REPO}/config/node{n}-vxlan.toml")).expect("house config");
    let mut out = String::new();
    for line in src.lines() {
        out.push_str(line);
        out.push('\n');
        if let Some(port) = line.strip_prefix("port = \"")
            && gso_ports.contains(&port.trim_end_matches('"'))
        {
            out.push_str("gso = true\n");
        }
    }
    let p = dir.join(format!("node{n}.toml"));
    std::fs::write(&p, out).expect("write config");
    p
}

fn ctl(sock: &Path, args: &[&str]) -> String {
    let out = Command::new(PODSWITCHCTL)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("podswitchctl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// podswitchd for node `n` with one worker per core of `cores` (e.g. "0" or "0,1").
fn start_daemon(lab: &mut Lab, n: u32, cfg: &Path, cores: &str) -> PathBuf {
    let sock = lab.dir.join(format!("node{n}.sock"));
    let log = std::fs::File::create(lab.dir.join(format!("node{n}.log"))).expect("log");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}-node{n}", lab.prefix),
            PODSWITCHD,
            "run",
        ])
        .arg("--config")
        .arg(cfg)
        .arg("--socket")
        .arg(&sock)
        .args(["--cores", cores])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("podswitchd");
    lab.daemons.push(child);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        if sock.exists() && ctl(&sock, &["version"]).contains("podswitch") {
            return sock;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "podswitchd on node{n} did not answer: {}",
        std::fs::read_to_string(lab.dir.join(format!("node{n}.log"))).unwrap_or_default()
    );
}

const RECEIVER: &str = r#"
import socket, hashlib, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(60)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(60); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b:
        break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"#;

const SENDER: &str = r#"
import socket, hashlib, random, sys
r = random.Random(7); h = hashlib.sha256(); n = 0
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
for _ in range(int(sys.argv[3])):
    b = r.randbytes(1 << 20); c.sendall(b); h.update(b); n += len(b)
c.close()
print(n, h.hexdigest(), flush=True)
"#;

/// Sends `mib` MiB from pod `from` to `to_ip` (pod namespace `to_ns`) while capturing on
/// the receiver; returns (bytes, sha) of both sides and the capture file.
fn transfer(lab: &Lab, from: &str, to_ns: &str, to_ip: &str, port: u16, mib: u32) -> PathBuf {
    let pcap = lab.dir.join(format!("{to_ns}.pcap"));
    let mut cap = Command::new("ip")
        .args(["netns", "exec", to_ns, "tshark", "-q", "-i", "eth0", "-w"])
        .arg(&pcap)
        .args(["-f", &format!("tcp port {port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark");
    // tshark says "Capturing on 'eth0'" once it captures.
    let mut err = BufReader::new(cap.stderr.take().expect("stderr"));
    let mut line = String::new();
    let t0 = Instant::now();
    while !line.contains("Capturing") && t0.elapsed() < Duration::from_secs(10) {
        line.clear();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
    }
    let mut rx = Command::new("ip")
        .args([
            "netns",
            "exec",
            to_ns,
            "python3",
            "-c",
            RECEIVER,
            &port.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("receiver");
    let mut rx_out = BufReader::new(rx.stdout.take().expect("stdout"));
    let mut ready = String::new();
    rx_out.read_line(&mut ready).expect("receiver ready");
    assert_eq!(ready.trim(), "ready");
    let tx = Command::new("ip")
        .args(["netns", "exec", from, "python3", "-c", SENDER, to_ip])
        .args([&port.to_string(), &mib.to_string()])
        .output()
        .expect("sender");
    let sent = String::from_utf8_lossy(&tx.stdout).trim().to_string();
    let mut got = String::new();
    rx_out.read_line(&mut got).expect("receiver result");
    let _ = rx.wait();
    std::thread::sleep(Duration::from_millis(500));
    // Stop the capture with SIGINT so it finishes its file.
    let _ = Command::new("kill")
        .args(["-INT", &cap.id().to_string()])
        .status();
    let _ = cap.wait();
    assert!(
        tx.status.success(),
        "sender failed: {}",
        String::from_utf8_lossy(&tx.stderr)
    );
    assert_eq!(
        got.trim(),
        sent,
        "{from} -> {to_ns}: received bytes and SHA-256 equal the sent ones"
    );
    assert!(sent.starts_with(&format!("{} ", u64::from(mib) << 20)));
    pcap
}

/// (data segments, bad checksums, retransmissions, largest frame) from `src` in a capture,
/// in one pass of tshark's TCP analysis.
fn analyse(pcap: &Path, src: &str) -> (usize, usize, usize, usize) {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-o", "tcp.check_checksum:TRUE", "-Y"])
        .arg(format!("ip.src == {src} && tcp.len > 0"))
        .args(["-T", "fields", "-E", "separator=;", "-e", "frame.len"])
        .args([
            "-e",
            "tcp.checksum.status",
            "-e",
            "tcp.analysis.retransmission",
        ])
        .args(["-e", "tcp.analysis.fast_retransmission"])
        .output()
        .expect("tshark -r");
    let (mut segs, mut bad, mut retrans, mut largest) = (0, 0, 0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split(';').collect();
        segs += 1;
        largest = largest.max(f[0].parse().unwrap_or(0));
        // Checksum status: 0 bad, 1 good, 2 unverified.
        if f.get(1) == Some(&"0") {
            bad += 1;
        }
        if f.iter().skip(2).any(|v| !v.is_empty()) {
            retrans += 1;
        }
    }
    (segs, bad, retrans, largest)
}

/// Two pipeline event counters of a daemon, summed over its workers.
fn event_counts(sock: &Path, a: &str, b: &str) -> (u64, u64) {
    let v: serde_json::Value =
        serde_json::from_str(&ctl(sock, &["-o", "json", "stats"])).expect("stats JSON");
    let mut sums = (0, 0);
    for w in v["workers"].as_array().into_iter().flatten() {
        let e = &w["pipeline"]["events"];
        sums.0 += e[a].as_u64().unwrap_or(0);
        sums.1 += e[b].as_u64().unwrap_or(0);
    }
    sums
}

/// The tests of this file run one at a time: each loads both cores with a real transfer.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A fresh lab under a prefix of its own (`tag` tells the tests apart), or `None` (said
/// why) when not root or a tool is missing.
fn new_lab(tag: &str) -> Option<Lab> {
    if euid() != 0 {
        eprintln!("skipped: gso_e2e needs root (network namespaces, AF_XDP)");
        return None;
    }
    for t in ["ip", "ethtool", "python3", "tshark"] {
        if !have(t) {
            eprintln!("skipped: gso_e2e needs `{t}`");
            return None;
        }
    }
    let prefix = format!("psg{tag}{}", std::process::id() % 100_000);
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let lab = Lab {
        prefix: prefix.clone(),
        dir,
        daemons: Vec::new(),
    };
    sh(&prefix, "netns_cleanup").expect("clean start");
    Some(lab)
}

/// True (else said why) when node `sock`'s `port` is multi-buffer. Workers publish their
/// ports' modes every 100 ms: waits up to 3 s for it.
fn multi_buffer(sock: &Path, port: &str) -> bool {
    let mut ports = String::new();
    for _ in 0..30 {
        ports = ctl(sock, &["dump", "ports"]);
        if ports
            .lines()
            .any(|l| l.contains(port) && l.contains("xdp="))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The MODE column says `multi-buffer`, or `multi-buffer refused (why)`; a LABEL column
    // follows it.
    let ok = ports
        .lines()
        .any(|l| l.contains(port) && l.contains(" multi-buffer") && !l.contains("refused"));
    if !ok {
        eprintln!("skipped: the kernel refused AF_XDP multi-buffer on veth:\n{ports}");
    }
    ok
}

/// GSO pods (`node:pod` of the lab): offloads on in the pod, transmit checksum offload on
/// the switch's end (the switch leaves checksums toward them to it), veth MTU raised on
/// both ends (the xdp.frags program lets the pod's end take it).
fn gso_pods(prefix: &str, pods: &str) {
    sh(
        prefix,
        &format!(
            "for x in {pods}; do n=${{x%%:*}}; p=${{x#*:}}
               nsx $P-n$n-$p ethtool -K eth0 tx on sg on tso on gso on >/dev/null 2>&1 || true
               nsx $P-node$n ethtool -K veth-pod-$p tx on >/dev/null 2>&1 || true
               nsx $P-node$n ip link set veth-pod-$p mtu {GSO_VETH_MTU}
               nsx $P-n$n-$p ip link set eth0 mtu {GSO_VETH_MTU}
             done"
        ),
    )
    .expect("offloads and MTU");
}

#[test]
fn super_frames_cross_workers_whole() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut lab) = new_lab("w") else {
        return;
    };
    let prefix = lab.prefix.clone();
    sh(
        &prefix,
        "fabric_up
         node_up 1 192.168.1.10 02:00:c0:a8:01:10
         host_port 1 02:00:0a:f4:01:fe 10.244.1.1
         pod_up 1 a 10.244.1.10 0a:58:0a:f4:01:0a 10.244.1.1
         pod_up 1 c 10.244.1.11 0a:58:0a:f4:01:0b 10.244.1.1",
    )
    .expect("namespaces");
    let c1 = config(1, &["veth-pod-a", "veth-pod-c"], &lab.dir);
    // Two workers: ports go to the least loaded, so pods a and c land on different ones.
    let s1 = start_daemon(&mut lab, 1, &c1, "0,1");
    if !multi_buffer(&s1, "veth-pod-a") {
        return;
    }
    gso_pods(&prefix, "1:a 1:c");
    let pcap = transfer(
        &lab,
        &format!("{prefix}-n1-a"),
        &format!("{prefix}-n1-c"),
        "10.244.1.11",
        5303,
        64,
    );
    let (segs, bad, retrans, largest) = analyse(&pcap, "10.244.1.10");
    let v: serde_json::Value =
        serde_json::from_str(&ctl(&s1, &["-o", "json", "stats"])).expect("stats JSON");
    let sum = |k: &str| -> u64 {
        v["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| w[k].as_u64().unwrap_or(0))
            .sum()
    };
    let (out, dropped) = (sum("handoff_out"), sum("handoff_dropped"));
    eprintln!(
        "a -> c over two workers: {segs} data frames, largest {largest}, {bad} bad checksums, {retrans} retransmissions; {out} hand-offs, {dropped} dropped"
    );
    assert!(out > 0, "frames crossed between the workers: {v}");
    assert_eq!(dropped, 0, "no hand-off dropped");
    assert!(
        largest > 9000,
        "super-frames reach pod c whole (largest {largest})"
    );
    // Handed over with their checksums completed (only a worker's own ports offload).
    assert_eq!(bad, 0, "no bad TCP checksums reach pod c");
    assert!(
        retrans * 1000 <= segs,
        "retransmissions: {retrans} of {segs}"
    );
    let _ = std::fs::remove_file(&pcap);
}

#[test]
fn super_frames_cross_podswitch_same_node_and_over_vxlan() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut lab) = new_lab("n") else {
        return;
    };
    let prefix = lab.prefix.clone();
    sh(
        &prefix,
        "fabric_up
         node_up 1 192.168.1.10 02:00:c0:a8:01:10
         node_up 2 192.168.1.11 02:00:c0:a8:01:11
         host_port 1 02:00:0a:f4:01:fe 10.244.1.1
         host_port 2 02:00:0a:f4:02:fe 10.244.2.1
         pod_up 1 a 10.244.1.10 0a:58:0a:f4:01:0a 10.244.1.1
         pod_up 1 c 10.244.1.11 0a:58:0a:f4:01:0b 10.244.1.1
         pod_up 2 b 10.244.2.20 0a:58:0a:f4:02:14 10.244.2.1
         pod_up 2 d 10.244.2.21 0a:58:0a:f4:02:15 10.244.2.1",
    )
    .expect("namespaces");
    let c1 = config(1, &["veth-pod-a", "veth-pod-c"], &lab.dir);
    let c2 = config(2, &["veth-pod-b"], &lab.dir);
    let s1 = start_daemon(&mut lab, 1, &c1, "0");
    let s2 = start_daemon(&mut lab, 2, &c2, "1");
    if !multi_buffer(&s1, "veth-pod-a") {
        return;
    }
    let ports = ctl(&s1, &["dump", "ports"]);
    gso_pods(&prefix, "1:a 1:c 2:b");

    // Same node: whole super-frames, their checksums finished by the switch.
    let pcap = transfer(
        &lab,
        &format!("{prefix}-n1-a"),
        &format!("{prefix}-n1-c"),
        "10.244.1.11",
        5301,
        256,
    );
    let (segs, bad, retrans, largest) = analyse(&pcap, "10.244.1.10");
    let (offloaded, finished) = event_counts(&s1, "csum_offloaded", "csum_finished");
    eprintln!(
        "a -> c: {segs} data frames, largest {largest} bytes, {bad} bad checksums, {retrans} retransmissions; node1: {offloaded} checksums left to pod c's port, {finished} completed"
    );
    if ports.contains("csum-offload refused") {
        assert_eq!(bad, 0, "no bad TCP checksums reach pod c");
    } else {
        // Left to the veth's transmit offload, the frames reach pod c as a veth's own
        // traffic does: checksum partial (a capture calls it bad), taken as offloaded by
        // pod c's kernel. The SHA-256 comparison in `transfer` proves the bytes.
        assert!(offloaded > 0, "pod c's port offloads checksums:\n{ports}");
    }
    // A lost frame shows up as a retransmission; none is dropped by the switch (its drop
    // counters stay empty), but the kernel may lose one at a veth queue under load.
    assert!(
        retrans * 1000 <= segs,
        "retransmissions a -> c: {retrans} of {segs}"
    );
    assert!(
        largest > 9000,
        "super-frames reach pod c whole (largest {largest})"
    );
    let _ = std::fs::remove_file(&pcap);

    // Across nodes over VXLAN: super-frames cut to the path by ip4-tso on node1, the
    // segments coalesced again toward pod b by ip4-gro on node2.
    let pcap = transfer(
        &lab,
        &format!("{prefix}-n1-a"),
        &format!("{prefix}-n2-b"),
        "10.244.2.20",
        5302,
        64,
    );
    let (segs, bad, retrans, largest) = analyse(&pcap, "10.244.1.10");
    eprintln!(
        "a -> b: {segs} data frames, largest {largest} bytes, {bad} bad checksums, {retrans} retransmissions"
    );
    assert_eq!(bad, 0, "no bad TCP checksums reach pod b");
    // A wrong merge would show as bad checksums (above) and mass retransmissions; a few
    // are losses at a full ring when the machine is loaded (podswitchd shares its core).
    assert!(
        retrans * 100 <= segs,
        "retransmissions a -> b: {retrans} of {segs}"
    );
    assert!(
        largest > 1450 + 14,
        "coalesced super-frames reach pod b (largest {largest})"
    );
    let (frames, merged) = event_counts(&s2, "gro_super_frames", "gro_segments_merged");
    eprintln!("node2: {frames} super-frames made of {merged} segments");
    assert!(frames > 0 && merged > frames, "ip4-gro coalesced on node2");
    let stats = ctl(&s1, &["stats"]);
    let tso = stats
        .lines()
        .find(|l| l.trim_start().starts_with("ip4-tso "))
        .unwrap_or_default()
        .to_string();
    assert!(!tso.is_empty(), "ip4-tso ran on node1:\n{stats}");
    eprintln!("node1: {tso}");
    let _ = std::fs::remove_file(&pcap);
}
