//! Runs each pipeline scenario for a fixed number of batches, for instruction counting under
//! callgrind (deterministic, unlike the criterion timings on a shared machine):
//!
//! ```text
//! cargo build --profile bench -p podswitch-benches --example pipeline_ir
//! valgrind --tool=callgrind --toggle-collect='pipeline_ir::run_batches' \
//!     target/release/examples/pipeline_ir vxlan_encap
//! ```
//!
//! Instructions per packet = collected Ir / (BATCHES * 64). `--toggle-collect='pipeline_ir::fill_batches'`
//! counts the batch fill alone.

use podswitch::pipeline::{BATCH_SIZE, Batch, Pipeline};
use podswitch_benches::Scenario;
use std::hint::black_box;

const BATCHES: usize = 10_000;

#[inline(never)]
fn run_batches(s: &Scenario, p: &mut Pipeline, b: &mut Batch) {
    for _ in 0..BATCHES {
        s.fill(b);
        p.run(black_box(&s.snap), b, 1_000_000_000);
        black_box(&mut *b);
    }
}

#[inline(never)]
fn fill_batches(s: &Scenario, b: &mut Batch) {
    for _ in 0..BATCHES {
        s.fill(black_box(&mut *b));
        black_box(&mut *b);
    }
}

fn main() {
    let want: Vec<String> = std::env::args().skip(1).collect();
    for s in Scenario::all() {
        if !want.is_empty() && !want.iter().any(|w| w == s.name) {
            continue;
        }
        s.check();
        let mut p = Pipeline::new();
        let mut b = Batch::new();
        run_batches(&s, &mut p, &mut b);
        fill_batches(&s, &mut b);
        println!("{}: {} packets", s.name, BATCHES * BATCH_SIZE);
    }
}
