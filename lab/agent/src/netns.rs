//! Pod network namespaces, named like `ip netns` names them (a bind mount under
//! /run/netns), made and removed with the `ip` tool so they are visible to `ip netns`.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use tokio::process::Command;

const NETNS_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

async fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .await
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Creates the namespace with its loopback up.
pub async fn create(name: &str) -> Result<()> {
    ip(&["netns", "add", name]).await?;
    ip(&["-n", name, "link", "set", "lo", "up"]).await
}

/// Removes the namespace; a namespace that is already gone is fine.
pub async fn remove(name: &str) -> Result<()> {
    if !exists(name) {
        return Ok(());
    }
    ip(&["netns", "del", name]).await
}
