//! Shared frame builders for the benchmarks.
