//! Compiles bpf/uplink.c into $OUT_DIR/uplink.bpf.o (embedded with include_bytes!).
//! Needs clang with the BPF target (`$BPF_CLANG` or `clang` on PATH).
use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let src = manifest.join("bpf").join("uplink.c");
    let obj = out.join("uplink.bpf.o");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
    let clang = env::var("BPF_CLANG").unwrap_or_else(|_| "clang".to_string());
    // No -g: the vendored 2020 libbpf must not see BTF from a modern clang.
    let status = Command::new(&clang)
        .args(["-O2", "-target", "bpf", "-Wall", "-Werror", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {clang} (set BPF_CLANG): {e}"));
    assert!(
        status.success(),
        "{clang} failed to compile {}",
        src.display()
    );
}
