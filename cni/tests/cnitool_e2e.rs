//! End to end, as root: a node namespace running a real podswitchd, two pods attached by
//! the reference runtime client `cnitool` through this plugin and Debian's `host-local`,
//! traffic between them, then CHECK, DEL (twice), GC and the error paths.
//!
//! Skips, saying why, when not root or when cnitool, host-local or podswitchd is missing.
//! cnitool: `$CNITOOL`, else the cache folder of lab/cluster/build-bins.sh.
//! podswitchd: `$PODSWITCHD`, else the workspace's target/debug (cargo build -p podswitch-dataplane).

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn cnitool_add_check_del_gc_with_traffic_and_errors() {
    let Some(mut lab) = setup("x", &["a", "b", "c", "d", "e"]) else {
        return;
    };
    lab.start_daemon();

    // ADD two pods through the runtime client; traffic flows between them.
    let a = lab.cnitool_ok("add", "a");
    let ip_a = ip_of(&a);
    let b = lab.cnitool_ok("add", "b");
    let ip_b = ip_of(&b);
    assert_ne!(ip_a, ip_b);
    assert!(ip_a.starts_with("10.244.1.") && ip_b.starts_with("10.244.1."));
    assert_eq!(lab.ports().len(), 2, "two ports in podswitchd");
    assert_eq!(lab.leases().len(), 2, "two host-local leases");
    let mtu = lab.in_ns("a", &["cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(
        String::from_utf8_lossy(&mtu.stdout).trim(),
        "1450",
        "vxlan pod MTU"
    );
    let features = lab.in_ns("a", &["cat", "/proc/net/dev"]);
    assert!(features.status.success());
    assert!(
        lab.ping("a", &ip_b),
        "pod a pings pod b: {}",
        lab.daemon_log()
    );
    assert!(lab.tcp("b", &ip_b, "a"), "TCP a -> b");
    lab.assert_features(
        "a",
        &[
            "tx-checksumming: off",
            "rx-checksumming: off",
            "generic-segmentation-offload: off",
            "generic-receive-offload: off",
        ],
    );

    // CHECK fails when podswitchd lost the port, and passes again once it is back.
    let removed = podswitch_model::protocol::request(
        &lab.socket(),
        &podswitch_model::protocol::Request::RemovePod {
            name: "default/pod-b".into(),
        },
    )
    .expect("remove-pod");
    assert!(removed.ok, "remove-pod default/pod-b: {:?}", removed.error);
    let c = lab.cnitool("check", "b");
    assert!(
        !c.status.success(),
        "CHECK must fail without the podswitchd port"
    );
    assert!(
        String::from_utf8_lossy(&c.stderr).contains("podswitchd has no port"),
        "CHECK names what is missing: {}",
        String::from_utf8_lossy(&c.stderr)
    );
    let r = lab.in_ns(
        "node",
        &[
            PLUGIN,
            "restore",
            &lab.dir.join("state").display().to_string(),
        ],
    );
    assert!(
        r.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    lab.cnitool_ok("check", "b");

    // CHECK passes on a healthy attachment.
    lab.cnitool_ok("check", "a");

    // ADD of an attachment that exists fails and leaves the first one working.
    let again = lab.cnitool("add", "a");
    assert!(
        !again.status.success(),
        "second ADD of the same container must fail"
    );
    assert!(
        lab.ping("a", &ip_b),
        "pod a still reaches b after the refused ADD"
    );
    assert_eq!(lab.leases().len(), 2, "refused ADD took no lease");

    // podswitchd refuses the port (a second attachment under pod-a's name): the veth, the
    // lease and the record made before are rolled back.
    let netns_e = lab.netns_path("e");
    let (ok, e) = lab.plugin(
        "ADD",
        &[
            ("CNI_CONTAINERID", "dup-name"),
            ("CNI_NETNS", netns_e.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-a"),
        ],
        &lab.conf("1.1.0"),
    );
    assert!(!ok && e["code"] == 101, "podswitchd refusal: {e}");
    assert_eq!(lab.host_veths().len(), 2, "refused port: veth rolled back");
    assert_eq!(lab.leases().len(), 2, "refused port: lease rolled back");
    assert!(
        lab.in_ns("e", &["ip", "link", "show", "eth0"])
            .status
            .code()
            != Some(0)
    );
    assert_eq!(
        std::fs::read_dir(lab.dir.join("state/podswitch"))
            .map(|d| d.count())
            .unwrap_or(0),
        2,
        "refused port: record removed"
    );

    // Bad input: spec errors with their codes, nothing changed.
    let netns_c = lab.netns_path("c");
    let env_c = [
        ("CNI_CONTAINERID", "bad-1"),
        ("CNI_NETNS", netns_c.as_str()),
        ("CNI_IFNAME", "eth0"),
    ];
    let (ok, e) = lab.plugin("ADD", &env_c, "{not json");
    assert!(!ok && e["code"] == 6, "malformed stdin: {e}");
    let (ok, e) = lab.plugin("ADD", &env_c, &lab.conf("0.2.0"));
    assert!(!ok && e["code"] == 1, "unknown version: {e}");
    let (ok, e) = lab.plugin(
        "ADD",
        &[
            ("CNI_CONTAINERID", "bad-2"),
            ("CNI_NETNS", "/var/run/netns/does-not-exist"),
            ("CNI_IFNAME", "eth0"),
        ],
        &lab.conf("1.1.0"),
    );
    assert!(!ok && e["code"] == 4, "missing netns: {e}");
    let (ok, e) = lab.plugin(
        "ADD",
        &[
            ("CNI_CONTAINERID", "bad-2b"),
            ("CNI_NETNS", "/proc/self/ns/uts"),
            ("CNI_IFNAME", "eth0"),
        ],
        &lab.conf("1.1.0"),
    );
    assert!(
        !ok && e["code"] == 4,
        "a namespace that is not a network one: {e}"
    );
    let (ok, e) = lab.plugin(
        "ADD",
        &[
            ("CNI_CONTAINERID", "bad-2c"),
            ("CNI_NETNS", netns_c.as_str()),
        ],
        &lab.conf("1.1.0"),
    );
    assert!(!ok && e["code"] == 4, "missing CNI_IFNAME: {e}");
    let (ok, e) = lab.plugin(
        "ADD",
        &[
            ("CNI_CONTAINERID", "bad-3"),
            ("CNI_NETNS", netns_c.as_str()),
            ("CNI_IFNAME", "lo"),
        ],
        &lab.conf("1.1.0"),
    );
    assert!(!ok && e["code"] == 102, "interface exists: {e}");
    let no_ipam = lab.conf("1.0.0").replace("host-local", "no-such-ipam");
    let (ok, e) = lab.plugin("ADD", &env_c, &no_ipam);
    assert!(!ok && e["code"] == 103, "missing IPAM plugin: {e}");
    let bad_ipam = lab.conf("1.0.0").replace(
        "\"type\":\"host-local\"",
        "\"type\":\"host-local\",\"ranges\":[[{\"subnet\":\"bogus\"}]]",
    );
    let (ok, e) = lab.plugin("ADD", &env_c, &bad_ipam);
    assert!(!ok, "failing IPAM plugin: {e}");
    assert_eq!(lab.host_veths().len(), 2, "failed ADDs left no veth");
    assert_eq!(lab.leases().len(), 2, "failed ADDs left no lease");
    assert_eq!(lab.ports().len(), 2, "failed ADDs left no port");

    // A direct ADD at 0.4.0 answers in 0.4.0's shape.
    let (ok, r) = lab.plugin("ADD", &env_c, &lab.conf("0.4.0"));
    assert!(ok, "ADD at 0.4.0: {r}");
    assert_eq!(r["cniVersion"], "0.4.0");
    assert_eq!(r["ips"][0]["version"], "4");
    let ip_c = r["ips"][0]["address"]
        .as_str()
        .expect("ip")
        .split('/')
        .next()
        .expect("ip")
        .to_string();
    assert!(lab.ping("c", &ip_a), "pod c pings pod a");
    assert!(lab.ping("b", &ip_c), "pod b pings pod c");

    // GC keeps the valid attachments (b and a), removes c: port, veth, lease.
    let a_id = format!("cnitool-{}", &sha_prefix(&lab.netns_path("a")));
    let b_id = format!("cnitool-{}", &sha_prefix(&lab.netns_path("b")));
    let gc = serde_json::json!({
        "cniVersion": "1.1.0", "name": "podswitch", "type": "podswitch-cni",
        "socket": lab.socket(), "stateDir": lab.dir.join("state"),
        "ipam": {"type": "host-local", "dataDir": lab.dir.join("ipam")},
        "cni.dev/valid-attachments": [
            {"containerID": a_id, "ifname": "eth0"},
            {"containerID": b_id, "ifname": "eth0"},
        ],
    });
    let (ok, e) = lab.plugin("GC", &[], &gc.to_string());
    assert!(ok, "GC: {e}");
    assert_eq!(lab.ports().len(), 2, "GC removed c's port only");
    assert_eq!(lab.host_veths().len(), 2, "GC removed c's veth only");
    assert_eq!(lab.leases().len(), 2, "GC released c's lease only");
    assert!(
        !lab.in_ns("c", &["ping", "-c", "1", "-W", "1", &ip_a])
            .status
            .success()
    );
    assert!(lab.ping("a", &ip_b), "a and b still talk after GC");

    // podswitchd restarts with only its configuration file's ports; `restore` brings the
    // recorded ones back without a CNI call.
    lab.stop_daemon();
    lab.start_daemon();
    assert!(
        lab.ports().is_empty(),
        "a restarted podswitchd has no runtime ports"
    );
    let r = lab.in_ns(
        "node",
        &[
            PLUGIN,
            "restore",
            &lab.dir.join("state").display().to_string(),
        ],
    );
    assert!(
        r.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(lab.ports().len(), 2, "restore registered a and b again");
    assert!(
        lab.ping("a", &ip_b),
        "a and b talk after the restart and restore"
    );
    lab.cnitool_ok("check", "b");

    // Started with the plugin's state folder (`--cni-state`), a killed podswitchd registers
    // the recorded pods again by itself: no `restore` call.
    lab.stop_daemon();
    let state = lab.dir.join("state").display().to_string();
    lab.start_daemon_with(&["--cni-state", &state]);
    assert_eq!(
        lab.ports().len(),
        2,
        "podswitchd --cni-state restored a and b: {}",
        lab.daemon_log()
    );
    assert!(
        lab.ping("a", &ip_b),
        "a and b talk after a restart with --cni-state"
    );
    lab.cnitool_ok("check", "b");

    // DEL is idempotent.
    for round in 0..2 {
        let d = lab.cnitool("del", "a");
        assert!(
            d.status.success(),
            "cnitool del a (round {round}): {}",
            String::from_utf8_lossy(&d.stderr)
        );
    }
    assert_eq!(lab.ports().len(), 1);
    assert_eq!(lab.host_veths().len(), 1);
    assert_eq!(lab.leases().len(), 1);
    assert!(
        !lab.in_ns("b", &["ping", "-c", "1", "-W", "1", &ip_a])
            .status
            .success(),
        "a's address is gone after DEL"
    );

    // podswitchd down: STATUS says 50, ADD fails with nothing left behind, DEL succeeds.
    let (ok, e) = lab.plugin("STATUS", &[], &lab.conf("1.1.0"));
    assert!(ok, "STATUS with podswitchd up: {e}");
    lab.stop_daemon();
    let (ok, e) = lab.plugin("STATUS", &[], &lab.conf("1.1.0"));
    assert!(!ok && e["code"] == 50, "STATUS with podswitchd down: {e}");
    let st = lab.cnitool("status", "a");
    assert!(!st.status.success(), "cnitool status with podswitchd down");
    let env_d = [
        ("CNI_CONTAINERID", "down-1"),
        ("CNI_NETNS", &lab.netns_path("d")),
        ("CNI_IFNAME", "eth0"),
    ];
    let (ok, e) = lab.plugin("ADD", &env_d, &lab.conf("1.1.0"));
    assert!(!ok && e["code"] == 11, "ADD with podswitchd down: {e}");
    assert_eq!(lab.host_veths().len(), 1, "no veth left by the failed ADD");
    assert_eq!(lab.leases().len(), 1, "no lease left by the failed ADD");
    lab.cnitool_ok("del", "b");
    assert!(lab.host_veths().is_empty());
    assert!(lab.leases().is_empty());
    // cnitool's own cache for these attachments is gone after DEL; GC clears the rest.
    let _ = lab.cnitool("gc", "a");
}

#[test]
fn parallel_adds_and_dels_and_a_killed_add_leave_nothing_behind() {
    let first: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
    let second: Vec<String> = (0..25).map(|i| format!("q{i}")).collect();
    let killed: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    let all: Vec<&str> = first
        .iter()
        .chain(&second)
        .chain(&killed)
        .map(String::as_str)
        .collect();
    let Some(mut lab) = setup_with("y", &all, false) else {
        return;
    };
    lab.start_daemon();

    // 50 ADDs at once: 50 distinct addresses, ports, veths and leases.
    let t0 = Instant::now();
    let added = parallel(&lab, "ADD", &first);
    eprintln!("50 parallel ADDs: {:?}", t0.elapsed());
    let mut ips: Vec<String> = added
        .iter()
        .map(|(ok, r)| {
            assert!(ok, "parallel ADD: {r}");
            r["ips"][0]["address"].as_str().expect("ip").to_string()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 50, "no duplicate address");
    assert_eq!(lab.ports().len(), 50);
    assert_eq!(lab.host_veths().len(), 50);
    assert_eq!(lab.leases().len(), 50);

    // 25 DELs and 25 ADDs at once.
    let second_ips: Vec<String> = std::thread::scope(|s| {
        let dels = s.spawn(|| parallel(&lab, "DEL", &first[..25]));
        let adds = s.spawn(|| parallel(&lab, "ADD", &second));
        for (ok, r) in dels.join().expect("dels") {
            assert!(ok, "parallel DEL: {r}");
        }
        adds.join()
            .expect("adds")
            .into_iter()
            .map(|(ok, r)| {
                assert!(ok, "parallel ADD: {r}");
                let a = r["ips"][0]["address"].as_str().expect("ip");
                a.split('/').next().expect("ip").to_string()
            })
            .collect()
    });
    assert_eq!(lab.ports().len(), 50);
    assert_eq!(lab.host_veths().len(), 50);
    assert_eq!(lab.leases().len(), 50);
    // A pod of the first wave reaches one of the second (its address may be a reused one).
    assert!(lab.ping(&first[30], &second_ips[0]), "p30 -> q0");

    // kill -9 during ADD, at several moments; DEL afterwards cleans up.
    for (i, pod) in killed.iter().enumerate() {
        let netns = lab.netns_path(pod);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lab.ns("node"), PLUGIN])
            .env("CNI_COMMAND", "ADD")
            .env("CNI_PATH", lab.cni_path())
            .env("CNI_CONTAINERID", format!("ctr-{pod}"))
            .env("CNI_NETNS", &netns)
            .env("CNI_IFNAME", "eth0")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("plugin");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(lab.conf("1.1.0").as_bytes())
            .expect("stdin");
        std::thread::sleep(Duration::from_millis(3 * (1 << i)));
        let _ = child.kill();
        let _ = child.wait();
        // An IPAM child of the killed plugin finishes on its own; a runtime's DEL comes later.
        std::thread::sleep(Duration::from_millis(300));
    }
    for (ok, r) in parallel(&lab, "DEL", &killed) {
        assert!(ok, "DEL after kill -9: {r}");
    }
    assert_eq!(lab.ports().len(), 50, "no orphaned port after killed ADDs");
    assert_eq!(
        lab.host_veths().len(),
        50,
        "no leaked veth after killed ADDs"
    );
    assert_eq!(lab.leases().len(), 50, "no leaked lease after killed ADDs");

    // Everything goes.
    let rest: Vec<String> = first[25..].iter().chain(&second).cloned().collect();
    for (ok, r) in parallel(&lab, "DEL", &rest) {
        assert!(ok, "parallel DEL: {r}");
    }
    assert!(lab.ports().is_empty());
    assert!(lab.host_veths().is_empty());
    assert!(lab.leases().is_empty());
}
