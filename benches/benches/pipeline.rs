//! Per-packet cost of the pipeline at batch 64.
//!
//! For every scenario two functions are measured, each over one batch of 64 frames
//! (`Throughput::Elements(64)`: divide the time by 64, or read the throughput, for ns/packet):
//!
//! - `total`: empty the batch, copy the 64 pristine frames in (as the rx path does), run the
//!   pipeline;
//! - `fill`: the copy alone.
//!
//! pipeline-only = total - fill. Transmit (`for_each_output`) is not included.
//!
//! `cargo bench -p podswitch-benches --bench pipeline`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podswitch::pipeline::{BATCH_SIZE, Batch, Pipeline};
use podswitch_benches::Scenario;
use std::hint::black_box;
use std::time::Duration;

/// A fixed batch time: the pipeline reads it only for the ICMP rate limiter.
const NOW_NS: u64 = 1_000_000_000;

fn pipeline(c: &mut Criterion) {
    for s in Scenario::all() {
        s.check();
        let mut g = c.benchmark_group(format!("pipeline/{}", s.name));
        g.throughput(Throughput::Elements(BATCH_SIZE as u64));
        let mut batch = Batch::new();
        let mut p = Pipeline::new();
        g.bench_function("total", |b| {
            b.iter(|| {
                s.fill(&mut batch);
                p.run(black_box(&s.snap), &mut batch, NOW_NS);
                black_box(&mut batch);
            })
        });
        g.bench_function("fill", |b| {
            b.iter(|| {
                s.fill(black_box(&mut batch));
                black_box(&mut batch);
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = pipeline
}
criterion_main!(benches);
