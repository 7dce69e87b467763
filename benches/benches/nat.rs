//! Service NAT benchmarks (issue 3): an established ClusterIP flow through the whole
//! pipeline, the first packet of a new flow, Service lookup with 100 vs 100,000 Services,
//! conntrack lookup with 1k vs 1M entries, and the memory per conntrack entry.
//!
//! Run: `cargo bench -p podswitch-benches --bench nat`

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use etherparse::PacketBuilder;
use podswitch::config::NodeConfig;
use podswitch::config::services::{Endpoint, Protocol, Service, ServicePort};
use podswitch::conntrack::{Conntrack, FlowKey, NewFlow, State};
use podswitch::pipeline::{BATCH_SIZE, Batch, Pipeline};
use podswitch::tables::build::build;
use podswitch_benches::{GATEWAY_MAC, run_batch, udp_from_pod_a};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VIP: [u8; 4] = [10, 96, 0, 10];

fn config() -> NodeConfig {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/node1-vxlan-services.toml");
    NodeConfig::load(&p).expect("config")
}

/// The example config with `n` extra ClusterIP Services (one local endpoint each).
fn config_with_services(n: u32) -> NodeConfig {
    let mut cfg = config();
    for i in 0..n {
        let ip = std::net::Ipv4Addr::from(0x0a64_0000 + i); // 10.100.0.0/14 ..
        cfg.services.push(Service {
            name: format!("svc-{i}"),
            namespace: "bench".into(),
            kind: Default::default(),
            cluster_ip: Some(ip),
            ports: vec![ServicePort {
                name: None,
                protocol: Protocol::Udp,
                port: 53,
                target_port: None,
                node_port: None,
            }],
            external_ips: vec![],
            load_balancer_ips: vec![],
            session_affinity: Default::default(),
            session_affinity_timeout: 10800,
            external_traffic_policy: Default::default(),
            internal_traffic_policy: Default::default(),
            health_check_node_port: None,
            endpoints: vec![Endpoint {
                ip: "10.244.1.11".parse().unwrap(),
                node: None,
                ports: Default::default(),
                ready: true,
                serving: None,
                terminating: false,
            }],
        });
    }
    cfg.nat.service_cidr = "10.64.0.0/10".parse().unwrap();
    cfg
}

/// ns/packet for 64 established UDP flows from pod A through a ClusterIP (10.100.0.0:53,
/// one endpoint: pod C on this node), against the same packets sent straight to pod C (no
/// NAT, so the difference is the cost of conntrack + DNAT).
fn established(c: &mut Criterion) {
    let snap = build(&config_with_services(1), 1).unwrap();
    let port = snap.port_by_name("veth-pod-a").unwrap();
    let mut g = c.benchmark_group("nat/established");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    for (name, dst) in [
        ("clusterip_dnat", [10, 100, 0, 0]),
        ("no_nat_pod_to_pod", [10, 244, 1, 11]),
    ] {
        let frames: Vec<Vec<u8>> = (0..BATCH_SIZE as u16)
            .map(|i| udp_from_pod_a(dst, 20000 + i, 53))
            .collect();
        let mut p =
            Pipeline::with_conntrack(Arc::new(Conntrack::new(snap.nat.conntrack_max as usize)));
        let mut b = Batch::new();
        run_batch(&mut p, &snap, &mut b, &frames, port, 1); // creates the entries
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

/// The first packet of new UDP flows to a ClusterIP (Service lookup, Maglev, conntrack
/// entry creation), with 100 and 100,000 Services in the table.
fn new_flow(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat/new_flow");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    for n in [100u32, 100_000] {
        let snap = build(&config_with_services(n), 1).unwrap();
        let port = snap.port_by_name("veth-pod-a").unwrap();
        // Target: the last Service added (kube-proxy's worst case).
        let target = (0x0a64_0000 + n - 1).to_be_bytes();
        let mut b = Batch::new();
        g.bench_with_input(BenchmarkId::new("services", n), &n, |bch, _| {
            let ct = Arc::new(Conntrack::new(1 << 17));
            let mut p = Pipeline::with_conntrack(ct.clone());
            let mut next: u32 = 0;
            let mut now: u64 = 1;
            bch.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Every source port of pod A once, then let the entries expire (outside
                    // the timing) and start again.
                    if next + BATCH_SIZE as u32 > 60_000 {
                        now += 200 * 1_000_000_000;
                        while ct.stats().live > 0 {
                            ct.expire(now, 1 << 16);
                        }
                        next = 0;
                    }
                    let frames: Vec<Vec<u8>> = (0..BATCH_SIZE as u32)
                        .map(|k| udp_from_pod_a(target, 1024 + (next + k) as u16, 53))
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
    }
    g.finish();
}

/// Service table lookup alone, random Services among 100 vs 100,000.
fn service_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat/service_lookup");
    for n in [100u32, 100_000] {
        let snap = build(&config_with_services(n), 1).unwrap();
        let keys: Vec<[u8; 4]> = (0..4096u32)
            .map(|i| (0x0a64_0000 + (i.wrapping_mul(2_654_435_761) % n)).to_be_bytes())
            .collect();
        let node = snap.node.address;
        g.throughput(Throughput::Elements(keys.len() as u64));
        g.bench_with_input(BenchmarkId::new("services", n), &n, |bch, _| {
            bch.iter(|| {
                let mut hits = 0u32;
                for k in &keys {
                    hits += u32::from(snap.services.lookup(black_box(*k), 53, 17, node).is_some());
                }
                assert_eq!(hits, keys.len() as u32);
                hits
            })
        });
    }
    g.finish();
}

fn ct_flow(i: u32) -> NewFlow {
    let src = (0x0af4_0000 + (i >> 14)).to_be_bytes();
    let sport = 1024 + (i & 0x3fff) as u16;
    let orig = FlowKey::new(17, src, VIP, sport, 53);
    let reply = FlowKey::new(17, [10, 244, 2, 20], src, 53, sport);
    NewFlow {
        orig,
        reply,
        port_range: None,
        flags: 0,
        state: State::Unreplied,
        bytes: 60,
    }
}

/// Conntrack lookup of random existing flows in a table of 1k vs 1M entries.
fn ct_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat/conntrack_lookup");
    let t = podswitch::config::services::Timeouts::default();
    for n in [1_000u32, 1_000_000] {
        let ct = Conntrack::new(n as usize + n as usize / 8);
        for i in 0..n {
            ct.create(&ct_flow(i), 1, &t).unwrap();
        }
        let keys: Vec<FlowKey> = (0..4096u32)
            .map(|i| ct_flow(i.wrapping_mul(2_654_435_761) % n).orig)
            .collect();
        g.throughput(Throughput::Elements(keys.len() as u64));
        g.bench_with_input(BenchmarkId::new("entries", n), &n, |bch, _| {
            bch.iter(|| {
                let mut hits = 0u32;
                for k in &keys {
                    hits += u32::from(ct.lookup(black_box(k), 0, 60, 2, &t).is_some());
                }
                assert_eq!(hits, keys.len() as u32);
                hits
            })
        });
        if n == 1_000_000 {
            let st = ct.stats();
            eprintln!(
                "conntrack memory: {} entries, {} bytes allocated for a capacity of {} = {:.1} bytes per entry of capacity (entry struct {} bytes)",
                st.live,
                st.bytes_allocated,
                st.capacity,
                st.bytes_allocated as f64 / st.capacity as f64,
                std::mem::size_of::<podswitch::conntrack::Entry>()
            );
        }
    }
    g.finish();
}

/// Conntrack lookups in batches of 64 as nat44-in does them (`prefetch_batch` over the batch,
/// then the lookups), in a table of 1k vs 1M entries.
fn ct_lookup_batched(c: &mut Criterion) {
    let mut g = c.benchmark_group("nat/conntrack_lookup_batched");
    let t = podswitch::config::services::Timeouts::default();
    for n in [1_000u32, 1_000_000] {
        let ct = Conntrack::new(n as usize + n as usize / 8);
        for i in 0..n {
            ct.create(&ct_flow(i), 1, &t).unwrap();
        }
        let keys: Vec<FlowKey> = (0..4096u32)
            .map(|i| ct_flow(i.wrapping_mul(2_654_435_761) % n).orig)
            .collect();
        g.throughput(Throughput::Elements(keys.len() as u64));
        g.bench_with_input(BenchmarkId::new("entries", n), &n, |bch, _| {
            bch.iter(|| {
                let mut hits = 0u32;
                for batch in keys.chunks(BATCH_SIZE) {
                    ct.prefetch_batch(batch);
                    for k in batch {
                        hits += u32::from(ct.lookup(black_box(k), 0, 60, 2, &t).is_some());
                    }
                }
                assert_eq!(hits, keys.len() as u32);
                hits
            })
        });
    }
    g.finish();
}

/// Established flows through the whole pipeline (ClusterIP DNAT hits) with 1k vs 1M
/// entries in the table: each batch is 64 flows drawn at random among all of them.
fn established_table_size(c: &mut Criterion) {
    let snap = build(&config(), 1).unwrap();
    let host = snap.port_by_name("psw-host").unwrap();
    let host_mac = [0x02, 0x00, 0x0a, 0xf4, 0x01, 0xfe];
    let t = podswitch::config::services::Timeouts::default();
    let mut g = c.benchmark_group("nat/established_table_size");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    for n in [1_000u32, 1_000_000] {
        let ct = Arc::new(Conntrack::new(n as usize + n as usize / 8));
        let flow = |i: u32| {
            let src = (0x0a01_0000 + (i >> 10)).to_be_bytes();
            let sport = 20000 + (i & 1023) as u16;
            let orig = FlowKey::new(17, src, VIP, sport, 53);
            let backend = if i.is_multiple_of(2) {
                [10, 244, 1, 11]
            } else {
                [10, 244, 2, 21]
            };
            let reply = FlowKey::new(17, backend, src, 53, sport);
            (
                orig,
                NewFlow {
                    orig,
                    reply,
                    port_range: None,
                    flags: 2,
                    state: State::Unreplied,
                    bytes: 60,
                },
            )
        };
        for i in 0..n {
            ct.create(&flow(i).1, 1, &t).unwrap();
        }
        let batches: Vec<Vec<Vec<u8>>> = (0..256u32)
            .map(|b| {
                (0..BATCH_SIZE as u32)
                    .map(|k| {
                        let i = (b * 64 + k).wrapping_mul(2_654_435_761) % n;
                        let o = flow(i).0;
                        let mut v = Vec::new();
                        PacketBuilder::ethernet2(host_mac, GATEWAY_MAC)
                            .ipv4(o.src, o.dst, 64)
                            .udp(o.sport, o.dport)
                            .write(&mut v, &[0u8; 18])
                            .unwrap();
                        v
                    })
                    .collect()
            })
            .collect();
        let mut p = Pipeline::with_conntrack(ct.clone());
        let mut b = Batch::new();
        let mut k = 0;
        let mut now = 2;
        g.bench_with_input(BenchmarkId::new("entries", n), &n, |bch, _| {
            bch.iter(|| {
                k = (k + 1) % batches.len();
                now += 1000;
                run_batch(&mut p, &snap, &mut b, &batches[k], host, now);
                black_box(b.len())
            })
        });
        assert_eq!(p.counters.total_drops(), 0, "{}", p.counters.to_json());
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = established, new_flow, service_lookup, ct_lookup, ct_lookup_batched, established_table_size
}
criterion_main!(benches);
