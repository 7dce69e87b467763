//! Pod attach time, podswitch-cni against the reference `bridge` plugin, measured the same
//! way on the same machine: 100 pods are attached first, then for each of 100 more the
//! time from the start of ADD to its end, and to the first ping answered by a pod
//! attached earlier (the first packet forwarded by the switch).
//!
//! Root only, ignored by default (it takes a minute):
//!   cargo build --release -p podswitch-dataplane --bin podswitchd
//!   cargo test --release -p podswitch-cni --test attach_bench -- --ignored --nocapture

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BEFORE: usize = 100;
const MEASURED: usize = 100;

/// Execs `plugin` ADD in namespace `node` for the pod namespace `pod`.
fn add(lab: &Lab, node: &str, plugin: &str, conf: &str, pod: &str) -> Result<String, String> {
    let netns = lab.netns_path(pod);
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.ns(node), plugin])
        .env("CNI_COMMAND", "ADD")
        .env("CNI_PATH", lab.cni_path())
        .env("CNI_CONTAINERID", format!("bench-{pod}"))
        .env("CNI_NETNS", &netns)
        .env("CNI_IFNAME", "eth0")
        .env(
            "CNI_ARGS",
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={pod}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(conf.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    if !out.status.success() {
        return Err(format!("{v} {}", String::from_utf8_lossy(&out.stderr)));
    }
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    let a = v["ips"][0]["address"].as_str().ok_or("no address")?;
    Ok(a.split('/').next().unwrap_or(a).to_string())
}

/// Pings `to` from `pod` until answered (50 ms per try, 5 s at most).
fn first_reply(lab: &Lab, pod: &str, to: &str) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if lab
            .in_ns(pod, &["ping", "-c", "1", "-W", "0.05", "-q", to])
            .status
            .success()
        {
            return true;
        }
    }
    false
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

struct Run {
    add: Vec<Duration>,
    attach: Vec<Duration>,
}

fn measure(lab: &Lab, node: &str, plugin: &str, conf: &str, prefix: &str) -> Run {
    let pods: Vec<String> = (0..BEFORE + MEASURED)
        .map(|i| format!("{prefix}{i}"))
        .collect();
    // The ones already attached (the first is the ping target).
    let target = add(lab, node, plugin, conf, &pods[0]).expect("target ADD");
    std::thread::scope(|s| {
        for chunk in pods[1..BEFORE].chunks(10) {
            let hs: Vec<_> = chunk
                .iter()
                .map(|p| s.spawn(move || add(lab, node, plugin, conf, p)))
                .collect();
            for h in hs {
                h.join().expect("thread").expect("pre-attach ADD");
            }
        }
    });
    let mut run = Run {
        add: Vec::new(),
        attach: Vec::new(),
    };
    for p in &pods[BEFORE..] {
        let t0 = Instant::now();
        add(lab, node, plugin, conf, p).expect("measured ADD");
        run.add.push(t0.elapsed());
        assert!(first_reply(lab, p, &target), "{p} never reached {target}");
        run.attach.push(t0.elapsed());
    }
    run.add.sort();
    run.attach.sort();
    run
}

fn report(name: &str, r: &Run) {
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
        pct(&r.add, 0.5),
        pct(&r.add, 0.99),
        pct(&r.attach, 0.5),
        pct(&r.attach, 0.99)
    );
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture (root)"]
fn attach_time_podswitch_vs_bridge() {
    let mut pods: Vec<String> = Vec::new();
    for prefix in ["s", "r"] {
        pods.extend((0..BEFORE + MEASURED).map(|i| format!("{prefix}{i}")));
    }
    pods.push("bnode".into());
    let names: Vec<&str> = pods.iter().map(String::as_str).collect();
    let Some(mut lab) = setup_with("z", &names, false) else {
        return;
    };
    lab.start_daemon();

    let psw = lab.conf("1.1.0");
    let ours = measure(&lab, "node", PLUGIN, &psw, "s");

    let bridge = serde_json::json!({
        "cniVersion": "1.0.0", "name": "bench-bridge", "type": "bridge",
        "bridge": "cni0", "isGateway": true, "ipMasq": false,
        "ipam": {"type": "host-local", "subnet": "10.244.2.0/24",
                 "dataDir": lab.dir.join("ipam-bridge")},
    })
    .to_string();
    let bridge_bin = format!("{HOST_LOCAL_DIR}/bridge");
    let reference = measure(&lab, "bnode", &bridge_bin, &bridge, "r");

    println!("| plugin | ADD p50 ms | ADD p99 ms | attach p50 ms | attach p99 ms |");
    println!("|---|---|---|---|---|");
    report("podswitch-cni + podswitchd", &ours);
    report("bridge (reference, cni0)", &reference);
}
