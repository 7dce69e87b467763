//! End to end, as root: a node namespace running a real podswitchd, two pods attached by
//! the reference runtime client `cnitool` through this plugin and Debian's `host-local`,
//! traffic between them, then CHECK, DEL (twice), GC and the error paths.
//!
//! Skips, saying why, when not root or when cnitool, host-local or podswitchd is missing.
//! cnitool: `$CNITOOL`, else the cache folder of lab/cluster/build-bins.sh.
//! podswitchd: `$PODSWITCHD`, else the workspace's target/debug (cargo build -p podswitch-dataplane).

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PLUGIN: &str = env!("CARGO_BIN_EXE_podswitch-cni");
const HOST_LOCAL_DIR: &str = "/usr/lib/cni";

fn skip(why: &str) {
    eprintln!("SKIP cnitool_e2e: {why}");
}

fn find_cnitool() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CNITOOL") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let home = std::env::var("HOME").ok()?;
    let cache = Path::new(&home).join(".cache/podswitch/cluster-bins");
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .map(|e| e.path().join("cnitool"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

fn find_podswitchd() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PODSWITCHD") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    // The plugin binary sits in <target>/debug; podswitchd is built there too.
    let p = Path::new(PLUGIN).parent()?.join("podswitchd");
    p.is_file().then_some(p)
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Everything the test made; removed on drop, also when an assertion fails.
struct Lab {
    p: String,
    namespaces: Vec<String>,
    dir: PathBuf,
    daemon: Option<Child>,
    cnitool: PathBuf,
    podswitchd: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_daemon();
        for ns in &self.namespaces {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lab {
    fn add_ns(&mut self, n: &str) {
        let ns = self.ns(n);
        must(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns);
        self.in_ns(n, &["ip", "link", "set", "lo", "up"]);
    }
    fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.p)
    }
    fn netns_path(&self, n: &str) -> String {
        format!("/var/run/netns/{}", self.ns(n))
    }
    fn socket(&self) -> PathBuf {
        self.dir.join("psw.sock")
    }
    fn in_ns(&self, n: &str, args: &[&str]) -> Output {
        let ns = self.ns(n);
        let mut all = vec!["ip", "netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        sh(&all)
    }

    fn start_daemon(&mut self) {
        let log = std::fs::File::create(self.dir.join("podswitchd.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("node")])
            .arg(&self.podswitchd)
            .args(["run", "--config"])
            .arg(self.dir.join("node.toml"))
            .arg("--socket")
            .arg(self.socket())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("podswitchd starts");
        self.daemon = Some(child);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if self.socket().exists()
                && podswitch_model::protocol::request(
                    &self.socket(),
                    &podswitch_model::protocol::Request::Version {},
                )
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "podswitchd did not answer within 15 s: {}",
            self.daemon_log()
        );
    }

    fn stop_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("podswitchd.log")).unwrap_or_default()
    }

    fn cni_path(&self) -> String {
        let plugin_dir = Path::new(PLUGIN)
            .parent()
            .expect("dir")
            .display()
            .to_string();
        format!("{plugin_dir}:{HOST_LOCAL_DIR}")
    }

    /// cnitool VERB podswitch <pod netns>, run in the node namespace like a runtime.
    fn cnitool(&self, verb: &str, pod: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns("node")])
            .arg(&self.cnitool)
            .args([verb, "podswitch", &self.netns_path(pod)])
            .env("NETCONFPATH", self.dir.join("net.d"))
            .env("CNI_PATH", self.cni_path())
            .env(
                "CNI_ARGS",
                format!("K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-{pod};K8S_POD_UID=uid-{pod}"),
            )
            .output()
            .expect("cnitool runs")
    }

    /// The plugin itself, exec'd in the node namespace with `env` and `stdin`.
    fn plugin(&self, command: &str, env: &[(&str, &str)], stdin: &str) -> (bool, Value) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns("node"), PLUGIN])
            .env("CNI_COMMAND", command)
            .env("CNI_PATH", self.cni_path())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("plugin runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("plugin exits");
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        eprintln!(
            "plugin {command}: {} {} | {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        (out.status.success(), v)
    }

    fn conf(&self, version: &str) -> String {
        serde_json::json!({
            "cniVersion": version,
            "name": "podswitch",
            "type": "podswitch-cni",
            "socket": self.socket(),
            "stateDir": self.dir.join("state"),
            "ipam": {"type": "host-local", "dataDir": self.dir.join("ipam")},
        })
        .to_string()
    }

    fn leases(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("ipam/podswitch"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("10."))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn host_veths(&self) -> Vec<String> {
        let o = self.in_ns("node", &["ip", "-o", "link", "show"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with("psw") && n.len() == 15)
            .collect()
    }

    fn ports(&self) -> Vec<String> {
        let r = podswitch_model::protocol::request(
            &self.socket(),
            &podswitch_model::protocol::Request::Dump {
                table: "config".into(),
            },
        )
        .expect("dump config");
        r.data["pod"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["port"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn ping(&self, from: &str, to: &str) -> bool {
        // ARP and the port's first frames may take a moment: up to 10 tries.
        (0..10).any(|_| {
            self.in_ns(from, &["ping", "-c", "1", "-W", "1", to])
                .status
                .success()
        })
    }

    fn tcp(&self, server: &str, server_ip: &str, client: &str) -> bool {
        let listener = Command::new("ip")
            .args(["netns", "exec", &self.ns(server), "python3", "-c"])
            .arg(
                "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);\
                 s.bind(('0.0.0.0',7777));s.listen(1);s.settimeout(10);c,_=s.accept();c.sendall(b'podswitch-ok');c.close()",
            )
            .spawn();
        let Ok(mut listener) = listener else {
            return false;
        };
        std::thread::sleep(Duration::from_millis(300));
        let o = self.in_ns(
            client,
            &[
                "python3",
                "-c",
                &format!(
                    "import socket;s=socket.create_connection(('{server_ip}',7777),timeout=5);print(s.recv(64).decode())"
                ),
            ],
        );
        let _ = listener.wait();
        String::from_utf8_lossy(&o.stdout).contains("podswitch-ok")
    }
}

fn ip_of(add: &Output) -> String {
    let v: Value = serde_json::from_slice(&add.stdout).unwrap_or_else(|e| {
        panic!(
            "cnitool add printed no result ({e}): {} {}",
            String::from_utf8_lossy(&add.stdout),
            String::from_utf8_lossy(&add.stderr)
        )
    });
    let a = v["ips"][0]["address"].as_str().expect("address");
    a.split('/').next().expect("ip").to_string()
}

const NODE_TOML: &str = r#"
[node]
name = "node1"
address = "192.168.1.10"
pod_cidr = "10.244.1.0/24"
cluster_cidr = "10.244.0.0/16"
gateway = "10.244.1.1"
gateway_mac = "0a:58:0a:f4:01:01"
vtep_mac = "0e:00:00:00:00:01"
overlay = "vxlan"

[uplink]
name = "eth0"
mac = "02:00:c0:a8:01:10"
mtu = 1500
"#;

/// The node (podswitchd's namespace, uplink to a "fab" namespace) and pod namespaces.
fn setup(tag: &str, pods: &[&str]) -> Option<Lab> {
    // Root: the effective uid from /proc (no libc call needed).
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(String::from))
        })
        .unwrap_or_default();
    if uid != "0" {
        skip("needs root (network namespaces, XDP)");
        return None;
    }
    let Some(cnitool) = find_cnitool() else {
        skip("no cnitool: set CNITOOL or run lab/cluster/build-bins.sh");
        return None;
    };
    if !Path::new(HOST_LOCAL_DIR).join("host-local").is_file() {
        skip("no host-local in /usr/lib/cni: apt-get install containernetworking-plugins");
        return None;
    }
    let Some(podswitchd) = find_podswitchd() else {
        skip("no podswitchd: set PODSWITCHD or cargo build -p podswitch-dataplane");
        return None;
    };
    let p = format!("pcni{}{tag}", std::process::id() % 100000);
    let dir = std::env::temp_dir().join(format!("{p}-cni"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("net.d")).expect("tempdir");
    let mut lab = Lab {
        p,
        namespaces: Vec::new(),
        dir,
        daemon: None,
        cnitool,
        podswitchd,
    };
    for ns in ["node", "fab"].iter().chain(pods) {
        lab.add_ns(ns);
    }
    let (node, fab) = (lab.ns("node"), lab.ns("fab"));
    must(&[
        "ip", "link", "add", "eth0", "netns", &node, "type", "veth", "peer", "name", "up0",
        "netns", &fab,
    ]);
    lab.in_ns(
        "node",
        &[
            "ip",
            "link",
            "set",
            "eth0",
            "address",
            "02:00:c0:a8:01:10",
            "up",
        ],
    );
    lab.in_ns(
        "node",
        &["ip", "addr", "add", "192.168.1.10/24", "dev", "eth0"],
    );
    lab.in_ns("fab", &["ip", "link", "set", "up0", "up"]);
    std::fs::write(lab.dir.join("node.toml"), NODE_TOML).expect("node.toml");
    std::fs::write(
        lab.dir.join("net.d/10-podswitch.conflist"),
        serde_json::json!({
            "cniVersion": "1.1.0",
            "name": "podswitch",
            "plugins": [serde_json::from_str::<Value>(&lab.conf("1.1.0")).expect("conf")],
        })
        .to_string(),
    )
    .expect("conflist");
    Some(lab)
}

#[test]
fn cnitool_add_check_del_gc_with_traffic_and_errors() {
    let Some(mut lab) = setup("x", &["a", "b", "c", "d", "e"]) else {
        return;
    };
    lab.start_daemon();

    // ADD two pods through the runtime client; traffic flows between them.
    let a = lab.cnitool("add", "a");
    assert!(
        a.status.success(),
        "cnitool add a: {}",
        String::from_utf8_lossy(&a.stderr)
    );
    let ip_a = ip_of(&a);
    let b = lab.cnitool("add", "b");
    assert!(
        b.status.success(),
        "cnitool add b: {}",
        String::from_utf8_lossy(&b.stderr)
    );
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
    let k = lab.in_ns("a", &["ethtool", "-k", "eth0"]);
    let k = String::from_utf8_lossy(&k.stdout);
    for off in [
        "tx-checksumming: off",
        "rx-checksumming: off",
        "generic-segmentation-offload: off",
        "generic-receive-offload: off",
    ] {
        assert!(k.contains(off), "pod a's eth0: {off}: {k}");
    }

    // CHECK passes on a healthy attachment.
    let c = lab.cnitool("check", "a");
    assert!(
        c.status.success(),
        "cnitool check a: {}",
        String::from_utf8_lossy(&c.stderr)
    );

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
    let c = lab.cnitool("check", "b");
    assert!(
        c.status.success(),
        "cnitool check b after restore: {}",
        String::from_utf8_lossy(&c.stderr)
    );

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
    let d = lab.cnitool("del", "b");
    assert!(
        d.status.success(),
        "DEL with podswitchd down: {}",
        String::from_utf8_lossy(&d.stderr)
    );
    assert!(lab.host_veths().is_empty());
    assert!(lab.leases().is_empty());
    // cnitool's own cache for these attachments is gone after DEL; GC clears the rest.
    let _ = lab.cnitool("gc", "a");
}

/// cnitool's container ID: "cnitool-" + the first 10 bytes of sha512(netns path), in hex.
fn sha_prefix(netns: &str) -> String {
    let o = Command::new("sha512sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(netns.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha512sum");
    String::from_utf8_lossy(&o.stdout)[..20].to_string()
}

/// Runs the plugin for `count` attachments at once, one thread each.
fn parallel(lab: &Lab, command: &str, pods: &[String]) -> Vec<(bool, Value)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .map(|pod| {
                s.spawn(move || {
                    let netns = lab.netns_path(pod);
                    let args = format!("K8S_POD_NAMESPACE=par;K8S_POD_NAME={pod}");
                    lab.plugin(
                        command,
                        &[
                            ("CNI_CONTAINERID", &format!("ctr-{pod}")),
                            ("CNI_NETNS", &netns),
                            ("CNI_IFNAME", "eth0"),
                            ("CNI_ARGS", &args),
                        ],
                        &lab.conf("1.1.0"),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    })
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
    let Some(mut lab) = setup("y", &all) else {
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
