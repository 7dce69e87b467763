//! The preflight checks Python modules with Debian's interpreter, the one `python3-*`
//! packages install into, not with whatever `python3` comes first on PATH. A machine with
//! pyenv (or a venv) first on PATH has a `python3` that cannot import Debian's scapy; the
//! preflight must still pass there when the packages are installed, and the scripts that
//! import them run the same interpreter (`$DEBIAN_PYTHON`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// True when Debian's interpreter imports every module the test scope needs.
fn debian_python_has_test_modules() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import scapy, json, ipaddress"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn a_foreign_python3_first_on_path_does_not_fail_the_preflight() {
    if !debian_python_has_test_modules() {
        eprintln!("skipped: /usr/bin/python3 with python3-scapy is not installed here");
        return;
    }
    let dir = std::env::temp_dir().join(format!("psw-preflight-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A python3 that imports nothing, like pyenv's without Debian's dist-packages.
    let shim = dir.join("python3");
    std::fs::write(&shim, "#!/bin/sh\necho 'no module' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Only the Python part of the test scope: the other commands may be absent here.
    let script = r#"source scripts/preflight.sh
deps_rows() { printf 'python3:scapy python3-scapy\npython3:json python3\n'; }
preflight test && echo "interpreter: $DEBIAN_PYTHON""#;
    let out = Command::new("bash")
        .args(["-c", script])
        .current_dir(root())
        .env("PATH", &path)
        .env_remove("PYTHON")
        .output()
        .expect("bash runs");
    std::fs::remove_dir_all(&dir).ok();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "preflight failed: {stderr}");
    assert!(
        stdout.contains("interpreter: /usr/bin/python3"),
        "unexpected: {stdout}"
    );
}
