//! What the privileged plugin tests share: the node and pod namespaces, podswitchd,
//! cnitool and direct plugin calls.
#![allow(dead_code, reason = "each test binary uses part of it")]

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_podswitch-cni");
pub const HOST_LOCAL_DIR: &str = "/usr/lib/cni";

pub fn skip(why: &str) {
    eprintln!("SKIP: {why}");
}

pub fn find_cnitool() -> Option<PathBuf> {
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

pub fn find_podswitchd() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PODSWITCHD") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    // The plugin binary sits in <target>/debug; podswitchd is built there too.
    let p = Path::new(PLUGIN).parent()?.join("podswitchd");
    p.is_file().then_some(p)
}

pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"))
}

pub fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Everything the test made; removed on drop, also when an assertion fails.
pub struct Lab {
    pub p: String,
    pub namespaces: Vec<String>,
    pub dir: PathBuf,
    pub daemon: Option<Child>,
    pub cnitool: Option<PathBuf>,
    pub podswitchd: PathBuf,
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
    pub fn add_ns(&mut self, n: &str) {
        let ns = self.ns(n);
        must(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns);
        self.in_ns(n, &["ip", "link", "set", "lo", "up"]);
    }
    pub fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.p)
    }
    pub fn netns_path(&self, n: &str) -> String {
        format!("/var/run/netns/{}", self.ns(n))
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.join("psw.sock")
    }
    pub fn in_ns(&self, n: &str, args: &[&str]) -> Output {
        let ns = self.ns(n);
        let mut all = vec!["ip", "netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        sh(&all)
    }

    pub fn start_daemon(&mut self) {
        self.start_daemon_with(&[]);
    }

    /// `start_daemon` with extra `podswitchd run` arguments.
    pub fn start_daemon_with(&mut self, extra: &[&str]) {
        let log = std::fs::File::create(self.dir.join("podswitchd.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("node")])
            .arg(&self.podswitchd)
            .args(["run", "--config"])
            .arg(self.dir.join("node.toml"))
            .arg("--socket")
            .arg(self.socket())
            .args(extra)
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

    pub fn stop_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("podswitchd.log")).unwrap_or_default()
    }

    pub fn cni_path(&self) -> String {
        let plugin_dir = Path::new(PLUGIN)
            .parent()
            .expect("dir")
            .display()
            .to_string();
        format!("{plugin_dir}:{HOST_LOCAL_DIR}")
    }

    /// cnitool VERB podswitch <pod netns>, run in the node namespace like a runtime.
    pub fn cnitool(&self, verb: &str, pod: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns("node")])
            .arg(self.cnitool.as_ref().expect("setup checked cnitool"))
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

    /// `cnitool`, which must succeed (else the test fails with its stderr and the daemon's
    /// log).
    pub fn cnitool_ok(&self, verb: &str, pod: &str) -> Output {
        let o = self.cnitool(verb, pod);
        assert!(
            o.status.success(),
            "cnitool {verb} {pod}: {} {}",
            String::from_utf8_lossy(&o.stderr),
            self.daemon_log()
        );
        o
    }

    /// The plugin itself, exec'd in the node namespace with `env` and `stdin`.
    pub fn plugin(&self, command: &str, env: &[(&str, &str)], stdin: &str) -> (bool, Value) {
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

    pub fn conf(&self, version: &str) -> String {
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

    /// Asserts that `ethtool -k eth0` in `pod` shows every line of `want`.
    pub fn assert_features(&self, pod: &str, want: &[&str]) {
        let k = self.in_ns(pod, &["ethtool", "-k", "eth0"]);
        let k = String::from_utf8_lossy(&k.stdout);
        for w in want {
            assert!(k.contains(w), "pod {pod}'s eth0: {w}: {k}");
        }
    }

    /// podswitchd's `dump TABLE`, as JSON.
    pub fn dump(&self, table: &str) -> Value {
        podswitch_model::protocol::request(
            &self.socket(),
            &podswitch_model::protocol::Request::Dump {
                table: table.into(),
            },
        )
        .unwrap_or_else(|e| panic!("dump {table}: {e}"))
        .data
    }

    /// The configuration list cnitool reads: `conf("1.1.0")` with `extra` fields set.
    pub fn write_conflist(&self, extra: &[(&str, Value)]) {
        let mut plugin: Value = serde_json::from_str(&self.conf("1.1.0")).expect("conf");
        for (k, v) in extra {
            plugin[*k] = v.clone();
        }
        std::fs::write(
            self.dir.join("net.d/10-podswitch.conflist"),
            serde_json::json!({
                "cniVersion": "1.1.0",
                "name": "podswitch",
                "plugins": [plugin],
            })
            .to_string(),
        )
        .expect("conflist");
    }

    pub fn leases(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("ipam/podswitch"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("10."))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn host_veths(&self) -> Vec<String> {
        let o = self.in_ns("node", &["ip", "-o", "link", "show"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with("psw") && n.len() == 15)
            .collect()
    }

    pub fn ports(&self) -> Vec<String> {
        self.dump("config")["pod"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["port"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn ping(&self, from: &str, to: &str) -> bool {
        // ARP and the port's first frames may take a moment: up to 10 tries.
        (0..10).any(|_| {
            self.in_ns(from, &["ping", "-c", "1", "-W", "1", to])
                .status
                .success()
        })
    }

    /// Reads a number from a file in `pod`'s namespace (a sysfs counter).
    pub fn read_u64(&self, pod: &str, path: &str) -> u64 {
        let o = self.in_ns(pod, &["cat", path]);
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{path} in {pod}: {e}"))
    }

    /// Sends `mib` MiB of pseudo-random bytes over TCP from `client` to `server` (at
    /// `server_ip`); returns what the server received (bytes and SHA-256) beside the
    /// SHA-256 of what was sent, and the bytes and frames the server's eth0 took meanwhile.
    pub fn transfer(&self, client: &str, server: &str, server_ip: &str, mib: usize) -> Transfer {
        let rx_bytes = "/sys/class/net/eth0/statistics/rx_bytes";
        let rx_packets = "/sys/class/net/eth0/statistics/rx_packets";
        let (bytes0, frames0) = (
            self.read_u64(server, rx_bytes),
            self.read_u64(server, rx_packets),
        );
        let listener = Command::new("ip")
            .args(["netns", "exec", &self.ns(server), "timeout", "30", "python3", "-c"])
            .arg(
                "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);\
                 import hashlib;h=hashlib.sha256();\
                 s.bind(('0.0.0.0',7778));s.listen(1);c,_=s.accept();n=0\n\
                 while True:\n  d=c.recv(1<<20)\n  if not d: break\n  n+=len(d);h.update(d)\n\
                 print(n,h.hexdigest())",
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("server");
        std::thread::sleep(Duration::from_millis(300));
        let sent = self.in_ns(
            client,
            &[
                "timeout",
                "30",
                "python3",
                "-c",
                &format!(
                    "import socket,random,hashlib;s=socket.create_connection(('{server_ip}',7778),timeout=10);\
                     r=random.Random(7);h=hashlib.sha256()\n\
                     for _ in range({mib}):\n  d=r.randbytes(1<<20);h.update(d);s.sendall(d)\n\
                     s.close();print(h.hexdigest())"
                ),
            ],
        );
        assert!(
            sent.status.success(),
            "client: {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        let got = listener.wait_with_output().expect("server exits");
        let got = String::from_utf8_lossy(&got.stdout).into_owned();
        let mut got = got.split_whitespace();
        Transfer {
            received: got.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            received_sha256: got.next().unwrap_or_default().to_string(),
            sent_sha256: String::from_utf8_lossy(&sent.stdout).trim().to_string(),
            rx_bytes: self.read_u64(server, rx_bytes) - bytes0,
            rx_frames: self.read_u64(server, rx_packets) - frames0,
        }
    }

    /// Pipeline event `name` summed over podswitchd's workers, once it is non-zero (the
    /// workers publish every 100 ms: read for up to 2 s); 0 if it stays so.
    pub fn event(&self, name: &str) -> u64 {
        let read = || -> u64 {
            let stats = podswitch_model::protocol::request(
                &self.socket(),
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
        for _ in 0..20 {
            let n = read();
            if n > 0 {
                return n;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        0
    }

    pub fn tcp(&self, server: &str, server_ip: &str, client: &str) -> bool {
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

/// What `Lab::transfer` measured.
#[derive(Debug)]
pub struct Transfer {
    /// Bytes the server's socket received.
    pub received: usize,
    /// SHA-256 of the bytes received and of those sent (hex).
    pub received_sha256: String,
    pub sent_sha256: String,
    /// Bytes and frames the server's eth0 received meanwhile.
    pub rx_bytes: u64,
    pub rx_frames: u64,
}

impl Transfer {
    /// Every byte arrived, in order and unaltered.
    pub fn intact(&self, mib: usize) -> bool {
        self.received == mib << 20
            && self.sent_sha256.len() == 64
            && self.received_sha256 == self.sent_sha256
    }

    pub fn bytes_per_frame(&self) -> u64 {
        self.rx_bytes / self.rx_frames.max(1)
    }
}

pub fn ip_of(add: &Output) -> String {
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

pub const NODE_TOML: &str = r#"
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
pub fn setup(tag: &str, pods: &[&str]) -> Option<Lab> {
    setup_with(tag, pods, true)
}

/// As `setup`; `need_cnitool` false for tests that only exec the plugin directly.
pub fn setup_with(tag: &str, pods: &[&str], need_cnitool: bool) -> Option<Lab> {
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
    let cnitool = find_cnitool();
    if need_cnitool && cnitool.is_none() {
        skip("no cnitool: set CNITOOL or run lab/cluster/build-bins.sh");
        return None;
    }
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
    lab.write_conflist(&[]);
    Some(lab)
}

/// cnitool's container ID: "cnitool-" + the first 10 bytes of sha512(netns path), in hex.
pub fn sha_prefix(netns: &str) -> String {
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
pub fn parallel(lab: &Lab, command: &str, pods: &[String]) -> Vec<(bool, Value)> {
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
