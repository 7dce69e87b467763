//! NetworkPolicy benchmarks (issue 13): the first packet of a flow to a pod selected by 1
//! vs 1,000 policies (10 rules each: 10,000 rules), an established flow with vs without
//! policy, and publishing one policy change with 10,000 pods in address sets, 1,000
//! policies and 100 local pods selected.
//!
//! Run: `cargo bench -p podswitch-benches --bench netpol`

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use podswitch::config::services::Protocol;
use podswitch::config::{
    AddressSet, NodeConfig, Pod, PodPolicy, PolicyDirection, PolicyPort, PolicyRule,
};
use podswitch::conntrack::Conntrack;
use podswitch::daemon::control::Control;
use podswitch::daemon::protocol::Request;
use podswitch::daemon::worker::WorkerShared;
use podswitch::pipeline::{BATCH_SIZE, Batch, Pipeline};
use podswitch::port::mem::MemFactory;
use podswitch::tables::build::build;
use podswitch_benches::{POD_C_IP, run_batch, udp_from_pod_a};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RULES_PER_POLICY: u32 = 10;
const CLUSTER_PODS: u32 = 10_000;

fn config() -> NodeConfig {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/node1-vxlan-services.toml");
    NodeConfig::load(&p).expect("config")
}

/// Cluster pod `i` (10.245.0.0/16 and up: other nodes).
fn cluster_pod(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0af5_0000 + i)
}

/// `policies` policies of 10 rules, each rule allowing one set of 10 cluster pods on one
/// TCP or UDP port; the last rule of the last policy also allows pod A on UDP 53. Every
/// policy selects pod C (and `local` more local pods select the first 10 policies).
fn config_with(policies: u32, local: u32) -> NodeConfig {
    let mut cfg = config();
    let mut rules = Vec::new();
    for p in 0..policies {
        for r in 0..RULES_PER_POLICY {
            let n = p * RULES_PER_POLICY + r;
            let name = format!("p{p}-r{r}");
            let mut prefixes: Vec<_> = (0..10)
                .map(|k| {
                    let ip = cluster_pod((n * 10 + k) % CLUSTER_PODS);
                    format!("{ip}/32").parse().unwrap()
                })
                .collect();
            let last = p + 1 == policies && r + 1 == RULES_PER_POLICY;
            if last {
                prefixes.push("10.244.1.10/32".parse().unwrap());
            }
            cfg.address_sets.push(AddressSet {
                name: name.clone(),
                prefixes,
                except: vec![],
            });
            rules.push(PolicyRule {
                policy: format!("bench/p{p}"),
                rule: r,
                peers: vec![name],
                ports: vec![PolicyPort {
                    protocol: if last || n % 2 == 1 {
                        Protocol::Udp
                    } else {
                        Protocol::Tcp
                    },
                    port: Some(if last { 53 } else { 1000 + (n % 500) as u16 }),
                    end_port: None,
                }],
            });
        }
    }
    let policy_names: Vec<String> = (0..policies).map(|p| format!("bench/p{p}")).collect();
    cfg.pod_policies.push(PodPolicy {
        pod: "default/pod-c".into(),
        ingress: Some(PolicyDirection {
            policies: policy_names,
            rules: rules.clone(),
        }),
        egress: None,
    });
    for l in 0..local {
        let name = format!("bench/local-{l}");
        cfg.pods.push(Pod {
            name: name.clone(),
            port: format!("vb{l}"),
            ip: Ipv4Addr::new(10, 244, 1, 20 + l as u8),
            mac: format!("0a:58:0a:f4:02:{:02x}", l).parse().unwrap(),
            mtu: 1500,
            vlan: None,
            k8s: None,
            attachment: None,
            gso: false,
            tap: None,
        });
        let take = (RULES_PER_POLICY * 10).min(rules.len() as u32) as usize;
        cfg.pod_policies.push(PodPolicy {
            pod: name,
            ingress: Some(PolicyDirection {
                policies: (0..10).map(|p| format!("bench/p{p}")).collect(),
                rules: rules[..take].to_vec(),
            }),
            egress: None,
        });
    }
    cfg
}

/// New UDP flows from pod A to pod C:53 (rule evaluation + conntrack entry creation).
fn first_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("netpol/first_packet");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    for n in [1u32, 1000] {
        let snap = build(&config_with(n, 0), 1).unwrap();
        let port = snap.port_by_name("veth-pod-a").unwrap();
        let mut b = Batch::new();
        g.bench_with_input(BenchmarkId::new("policies", n), &n, |bch, _| {
            let ct = Arc::new(Conntrack::new(1 << 17));
            let mut p = Pipeline::with_conntrack(ct.clone());
            let mut next: u32 = 0;
            let mut now: u64 = 1;
            bch.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if next + BATCH_SIZE as u32 > 60_000 {
                        now += 200 * 1_000_000_000;
                        while ct.stats().live > 0 {
                            ct.expire(now, 1 << 16);
                        }
                        next = 0;
                    }
                    let frames: Vec<Vec<u8>> = (0..BATCH_SIZE as u32)
                        .map(|k| udp_from_pod_a(POD_C_IP, 1024 + (next + k) as u16, 53))
                        .collect();
                    next += BATCH_SIZE as u32;
                    now += 1000;
                    let t0 = Instant::now();
                    run_batch(&mut p, &snap, &mut b, &frames, port, now);
                    total += t0.elapsed();
                }
                total
            })
        });
        assert_eq!(
            snap.policy
                .by_ip(POD_C_IP)
                .unwrap()
                .ingress
                .as_ref()
                .unwrap()
                .rules()
                .len() as u32,
            n * RULES_PER_POLICY
        );
    }
    g.finish();
}

/// 64 established UDP flows A → C:53, C selected by 1,000 policies vs no policy at all.
fn established(c: &mut Criterion) {
    let mut g = c.benchmark_group("netpol/established");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    for (name, cfg) in [
        ("no_policy", config()),
        ("policies_1000", config_with(1000, 0)),
    ] {
        let snap = build(&cfg, 1).unwrap();
        let port = snap.port_by_name("veth-pod-a").unwrap();
        let frames: Vec<Vec<u8>> = (0..BATCH_SIZE as u16)
            .map(|i| udp_from_pod_a(POD_C_IP, 20000 + i, 53))
            .collect();
        let mut p = Pipeline::with_conntrack(Arc::new(Conntrack::new(1 << 17)));
        let mut b = Batch::new();
        run_batch(&mut p, &snap, &mut b, &frames, port, 1);
        let mut now = 2;
        g.bench_function(name, |bch| {
            bch.iter(|| {
                now += 1000;
                run_batch(&mut p, &snap, &mut b, &frames, port, now);
                black_box(b.len())
            })
        });
        assert_eq!(p.counters.total_drops(), 0);
    }
    g.finish();
}

/// One address set changed (a pod label change: one IP more or less) and published, with
/// 10,000 cluster pods in 10,000 sets, 1,000 policies, pod C selected by all of them and 100
/// more local pods by 10 each (the set is used by pod C and all 100).
fn publish(c: &mut Criterion) {
    let cfg = config_with(1000, 100);
    let w = Arc::new(vec![Arc::new(WorkerShared::new(0).expect("worker"))]);
    let (tx, _rx) = crossbeam::channel::unbounded();
    let ctl = Control::start(cfg.clone(), w, vec![tx], Arc::new(MemFactory)).expect("control");
    let base = cfg.address_sets[5].clone();
    let mut flip = false;
    let mut g = c.benchmark_group("netpol/publish");
    g.sample_size(20);
    g.bench_function("address_set_change_1000_policies", |bch| {
        bch.iter(|| {
            flip = !flip;
            let mut s = base.clone();
            if flip {
                s.prefixes.push("10.250.0.1/32".parse().unwrap());
            }
            let r = ctl.handle(Request::AddAddressSet { set: s });
            assert!(r.ok, "{:?}", r.error);
        })
    });
    let pod_c = cfg.pod_policies[0].clone();
    g.bench_function("pod_policy_change_1000_policies", |bch| {
        bch.iter(|| {
            flip = !flip;
            let mut p = pod_c.clone();
            if flip {
                p.ingress.as_mut().unwrap().rules.pop();
            }
            let r = ctl.handle(Request::SetPodPolicy { policy: p });
            assert!(r.ok, "{:?}", r.error);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = first_packet, established, publish
}
criterion_main!(benches);
