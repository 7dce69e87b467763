//! IPv4 longest-prefix match: ns per lookup with 10, 10k and 1M random prefixes.
//!
//! Prefix lengths are 8..=32, skewed to /24 and longer like a real FIB (see `random_len`);
//! addresses are drawn inside randomly chosen prefixes, so every lookup hits. Two probe sets:
//!
//! - `cold`: 65,536 addresses (random over the whole table: at 1M prefixes the trie is far
//!   larger than the caches, as it is for a busy router);
//! - `hot`: 64 addresses (one batch of a few flows: everything cached).
//!
//! Each set is timed with `Lpm::lookup` one address at a time (`lpm/cold`, `lpm/hot`) and
//! with `Lpm::lookup_batch` in batches of 64 as ip4-lookup calls it (`lpm/cold_batch`,
//! `lpm/hot_batch`): same tables, same addresses, same run.
//!
//! `lpm/stage` and `lpm/stage_batch` time the cold set with ~40 dependent multiply rounds
//! of other work after each lookup, a stand-in for the rest of a pipeline stage: there the
//! core's out-of-order window no longer reaches the next packet's lookup, so the misses of
//! single lookups are paid one packet at a time, which the batch lookup avoids.
//!
//! The trie's memory (`Lpm::memory_bytes`) is printed on stderr before each size.
//!
//! `cargo bench -p podswitch-benches --bench lpm`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use podswitch::tables::lpm::{LOOKUP_BATCH, Lpm, Prefix};
use podswitch_benches::SplitMix64;
use std::hint::black_box;
use std::time::{Duration, Instant};

const SEED: u64 = 0x5eed_f1b0;
const SIZES: [usize; 3] = [10, 10_000, 1_000_000];
const COLD_PROBES: usize = 1 << 16;
const HOT_PROBES: usize = 64;

/// Prefix length: 5% /8-/15, 5% /16, 20% /17-/23, 45% /24, 15% /25-/31, 10% /32.
fn random_len(r: &mut SplitMix64) -> u8 {
    match r.below(100) {
        0..5 => 8 + r.below(8) as u8,
        5..10 => 16,
        10..30 => 17 + r.below(7) as u8,
        30..75 => 24,
        75..90 => 25 + r.below(7) as u8,
        _ => 32,
    }
}

fn prefixes(n: usize, r: &mut SplitMix64) -> Vec<(Prefix, u32)> {
    (0..n)
        .map(|i| {
            let len = random_len(r);
            let p = Prefix::new(r.next_u32().to_be_bytes(), len).expect("length <= 32");
            (p, i as u32)
        })
        .collect()
}

/// `n` addresses, each inside a randomly chosen prefix of `table`.
fn probes(table: &[(Prefix, u32)], n: usize, r: &mut SplitMix64) -> Vec<[u8; 4]> {
    (0..n)
        .map(|_| {
            let (p, _) = table[r.below(table.len() as u32) as usize];
            let host = if p.len == 32 {
                0
            } else {
                r.next_u32() & (u32::MAX >> p.len)
            };
            (p.addr | host).to_be_bytes()
        })
        .collect()
}

fn lookups(t: &Lpm, addrs: &[[u8; 4]]) -> u32 {
    let mut acc = 0u32;
    for &a in addrs {
        acc = acc.wrapping_add(t.lookup(a).unwrap_or(u32::MAX));
    }
    acc
}

/// The same lookups in batches of `LOOKUP_BATCH` through `Lpm::lookup_batch`.
fn batch_lookups(t: &Lpm, addrs: &[u32]) -> u32 {
    let mut acc = 0u32;
    let mut out = [None; LOOKUP_BATCH];
    for chunk in addrs.chunks(LOOKUP_BATCH) {
        let out = &mut out[..chunk.len()];
        t.lookup_batch(chunk, out);
        for r in out.iter() {
            acc = acc.wrapping_add(r.unwrap_or(u32::MAX));
        }
    }
    acc
}

/// Per-packet work after the lookup that depends on its result (see the module comment).
#[inline(always)]
fn work(mut x: u32) -> u32 {
    for _ in 0..40 {
        x = x.wrapping_mul(0x9e37_79b9) ^ (x >> 13);
    }
    x
}

fn stage_lookups(t: &Lpm, addrs: &[u32]) -> u32 {
    let mut acc = 0u32;
    for &a in addrs {
        acc = work(acc ^ t.lookup(a.to_be_bytes()).unwrap_or(u32::MAX));
    }
    acc
}

fn stage_batch_lookups(t: &Lpm, addrs: &[u32]) -> u32 {
    let mut acc = 0u32;
    let mut out = [None; LOOKUP_BATCH];
    for chunk in addrs.chunks(LOOKUP_BATCH) {
        let out = &mut out[..chunk.len()];
        t.lookup_batch(chunk, out);
        for r in out.iter() {
            acc = work(acc ^ r.unwrap_or(u32::MAX));
        }
    }
    acc
}

fn lpm(c: &mut Criterion) {
    let mut tables = Vec::new();
    for n in SIZES {
        let mut r = SplitMix64(SEED ^ n as u64);
        let entries = prefixes(n, &mut r);
        let t0 = Instant::now();
        let t = Lpm::build(&entries);
        let built = t0.elapsed();
        let cold = probes(&entries, COLD_PROBES, &mut r);
        let hot = probes(&entries, HOT_PROBES, &mut r);
        assert!(
            cold.iter().chain(&hot).all(|&a| t.lookup(a).is_some()),
            "every probe must hit"
        );
        eprintln!(
            "lpm: {n} prefixes: trie memory {} bytes ({:.1} MiB), built in {:.0} ms",
            t.memory_bytes(),
            t.memory_bytes() as f64 / (1 << 20) as f64,
            built.as_secs_f64() * 1e3
        );
        tables.push((n, t, cold, hot));
    }
    for (set, count) in [("cold", COLD_PROBES), ("hot", HOT_PROBES)] {
        let mut g = c.benchmark_group(format!("lpm/{set}"));
        g.throughput(Throughput::Elements(count as u64));
        for (n, t, cold, hot) in &tables {
            let addrs = if set == "cold" { cold } else { hot };
            g.bench_with_input(BenchmarkId::from_parameter(n), addrs, |b, addrs| {
                b.iter(|| lookups(black_box(t), black_box(addrs)))
            });
        }
        g.finish();
        let mut g = c.benchmark_group(format!("lpm/{set}_batch"));
        g.throughput(Throughput::Elements(count as u64));
        for (n, t, cold, hot) in &tables {
            let addrs: Vec<u32> = (if set == "cold" { cold } else { hot })
                .iter()
                .map(|&a| u32::from_be_bytes(a))
                .collect();
            assert_eq!(
                batch_lookups(t, &addrs),
                lookups(t, if set == "cold" { cold } else { hot }),
                "batch and single lookups agree"
            );
            g.bench_with_input(BenchmarkId::from_parameter(n), &addrs, |b, addrs| {
                b.iter(|| batch_lookups(black_box(t), black_box(addrs)))
            });
        }
        g.finish();
    }
    for (name, f) in [
        ("stage", stage_lookups as fn(&Lpm, &[u32]) -> u32),
        ("stage_batch", stage_batch_lookups),
    ] {
        let mut g = c.benchmark_group(format!("lpm/{name}"));
        g.throughput(Throughput::Elements(COLD_PROBES as u64));
        for (n, t, cold, _) in &tables {
            let addrs: Vec<u32> = cold.iter().map(|&a| u32::from_be_bytes(a)).collect();
            g.bench_with_input(BenchmarkId::from_parameter(n), &addrs, |b, addrs| {
                b.iter(|| f(black_box(t), black_box(addrs)))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = lpm
}
criterion_main!(benches);
