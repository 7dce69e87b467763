//! Delegation to the IPAM plugin, as the spec describes it: the plugin is found in
//! `CNI_PATH` and executed with the runtime's environment (only `CNI_COMMAND`, and for GC's
//! clean-up the attachment, differ) and the network configuration on stdin.

use crate::spec::{CniError, CniResult, SUPPORTED_VERSIONS, code};
use podswitch_model::Prefix;
use serde_json::{Value, json};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Ipam {
    pub plugin: String,
    pub path: PathBuf,
}

impl Ipam {
    /// Finds the plugin `name` in the directories of `cni_path` (colon separated).
    pub fn find(name: &str, cni_path: &str) -> CniResult<Ipam> {
        if cni_path.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_PATH is empty: cannot find the IPAM plugin {name:?}"),
            ));
        }
        for dir in cni_path.split(':').filter(|d| !d.is_empty()) {
            let p = PathBuf::from(dir).join(name);
            if p.is_file() {
                return Ok(Ipam {
                    plugin: name.to_string(),
                    path: p,
                });
            }
        }
        Err(CniError::new(
            code::IPAM,
            format!("IPAM plugin {name:?} not found in CNI_PATH {cni_path:?}"),
        ))
    }

    /// Runs the plugin with `command`, `stdin`, the current environment and `env`.
    pub fn exec(&self, command: &str, env: &[(&str, &str)], stdin: &[u8]) -> CniResult<Vec<u8>> {
        let mut cmd = Command::new(&self.path);
        cmd.env("CNI_COMMAND", command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // host-local refuses CNI_ARGS keys it does not know (K8S_POD_*) unless told to
        // ignore them, as runtimes do; a runtime that did not gets the same leniency.
        if let Ok(args) = std::env::var("CNI_ARGS")
            && !args.is_empty()
            && !args.split(';').any(|kv| {
                kv.eq_ignore_ascii_case("IgnoreUnknown=1")
                    || kv.eq_ignore_ascii_case("IgnoreUnknown=true")
            })
        {
            cmd.env("CNI_ARGS", format!("IgnoreUnknown=1;{args}"));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| {
            CniError::new(
                code::IPAM,
                format!("cannot run IPAM plugin {}: {e}", self.path.display()),
            )
        })?;
        if let Some(mut input) = child.stdin.take() {
            // A plugin that exits without reading stdin closes the pipe; its exit status says why.
            let _ = input.write_all(stdin);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| CniError::new(code::IPAM, format!("IPAM plugin {}: {e}", self.plugin)))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        // A failing plugin prints a CNI error: pass its code on, saying who failed.
        match serde_json::from_slice::<CniError>(&out.stdout) {
            Ok(e) => Err(CniError {
                code: e.code,
                msg: format!("IPAM plugin {} {command} failed: {}", self.plugin, e.msg),
                details: e.details,
            }),
            Err(_) => Err(CniError::new(
                code::IPAM,
                format!(
                    "IPAM plugin {} {command} failed ({}): {}",
                    self.plugin,
                    out.status,
                    String::from_utf8_lossy(&out.stdout).trim()
                ),
            )),
        }
    }

    /// The versions the plugin speaks (its VERSION answer).
    pub fn versions(&self) -> CniResult<Vec<String>> {
        let out = self.exec("VERSION", &[], br#"{"cniVersion":"0.4.0"}"#)?;
        let v: Value = serde_json::from_slice(&out).map_err(|e| {
            CniError::new(
                code::IPAM,
                format!("IPAM plugin {} VERSION: {e}", self.plugin),
            )
        })?;
        Ok(v.get("supportedVersions")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The version to talk to the plugin in: the configuration's if the plugin speaks it,
    /// else the newest older one both speak (Debian's host-local 1.1.1 stops at 1.0.0,
    /// whose results are the same as 1.1.0's).
    /// `cache_dir` keeps the plugin's VERSION answer, keyed by its path, size and mtime,
    /// so an ADD does not exec the plugin twice.
    pub fn negotiate(&self, wanted: &str, cache_dir: &Path) -> CniResult<String> {
        if wanted != "1.1.0" {
            return Ok(wanted.to_string());
        }
        let theirs = self.cached_versions(cache_dir)?;
        pick_version(wanted, &theirs).ok_or_else(|| {
            CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "IPAM plugin {} speaks none of {} (it supports {})",
                    self.plugin,
                    SUPPORTED_VERSIONS.join(", "),
                    theirs.join(", ")
                ),
            )
        })
    }
}

impl Ipam {
    fn cached_versions(&self, cache_dir: &Path) -> CniResult<Vec<String>> {
        let key = std::fs::metadata(&self.path).ok().and_then(|m| {
            Some(format!(
                "{}:{}:{:?}",
                self.path.display(),
                m.len(),
                m.modified().ok()?
            ))
        });
        let file = cache_dir.join(format!("ipam-versions-{}.json", self.plugin));
        if let Some(key) = &key
            && let Ok(text) = std::fs::read(&file)
            && let Ok(v) = serde_json::from_slice::<Value>(&text)
            && v.get("key").and_then(Value::as_str) == Some(key.as_str())
            && let Some(list) = v.get("versions").and_then(Value::as_array)
        {
            return Ok(list
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect());
        }
        let versions = self.versions()?;
        if let Some(key) = key {
            // A cache that cannot be written only costs the next ADD one more exec.
            let _ = std::fs::create_dir_all(cache_dir).and_then(|()| {
                let tmp = file.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, json!({"key": key, "versions": versions}).to_string())?;
                std::fs::rename(&tmp, &file)
            });
        }
        Ok(versions)
    }
}

/// The newest of our versions, not newer than `wanted`, that `theirs` includes.
pub fn pick_version(wanted: &str, theirs: &[String]) -> Option<String> {
    let upto = SUPPORTED_VERSIONS.iter().position(|v| *v == wanted)?;
    SUPPORTED_VERSIONS[..=upto]
        .iter()
        .rev()
        .find(|v| theirs.iter().any(|t| t == *v))
        .map(|v| v.to_string())
}

/// The configuration the IPAM plugin gets: the runtime's, at `version`, with an
/// `ipam` section whose `host-local` range is the node's pod CIDR unless it names one.
pub fn ipam_conf(raw: &Value, version: &str, pod_cidr: Prefix, gateway: Ipv4Addr) -> Value {
    let mut conf = raw.clone();
    conf["cniVersion"] = json!(version);
    let mut ipam = raw
        .get("ipam")
        .cloned()
        .unwrap_or_else(|| json!({"type": "host-local"}));
    let is_host_local = ipam.get("type").and_then(Value::as_str) == Some("host-local");
    if is_host_local && ipam.get("ranges").is_none() && ipam.get("subnet").is_none() {
        ipam["ranges"] =
            json!([[{"subnet": pod_cidr.to_string(), "gateway": gateway.to_string()}]]);
    }
    conf["ipam"] = ipam;
    conf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_negotiate_down_to_a_common_one() {
        let debian: Vec<String> = ["0.3.1", "0.4.0", "1.0.0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(pick_version("1.1.0", &debian).as_deref(), Some("1.0.0"));
        assert_eq!(pick_version("0.4.0", &debian).as_deref(), Some("0.4.0"));
        assert_eq!(pick_version("1.1.0", &["0.1.0".to_string()]), None);
    }

    #[test]
    fn host_local_gets_the_pod_cidr() {
        let raw = json!({"cniVersion":"1.1.0","name":"podswitch","type":"podswitch-cni",
                         "ipam":{"type":"host-local","dataDir":"/tmp/x"}});
        let c = ipam_conf(
            &raw,
            "1.0.0",
            "10.244.1.0/24".parse().expect("p"),
            "10.244.1.1".parse().expect("gw"),
        );
        assert_eq!(c["cniVersion"], "1.0.0");
        assert_eq!(c["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(c["ipam"]["ranges"][0][0]["gateway"], "10.244.1.1");
        assert_eq!(c["ipam"]["dataDir"], "/tmp/x");
        assert_eq!(c["name"], "podswitch");
        // No ipam section: host-local with the node's range.
        let c = ipam_conf(
            &json!({"cniVersion":"1.0.0","name":"n"}),
            "1.0.0",
            "10.244.2.0/24".parse().expect("p"),
            "10.244.2.1".parse().expect("gw"),
        );
        assert_eq!(c["ipam"]["type"], "host-local");
        assert_eq!(c["ipam"]["ranges"][0][0]["subnet"], "10.244.2.0/24");
        // A range given by the operator is kept.
        let raw = json!({"name":"n","ipam":{"type":"host-local","subnet":"10.9.0.0/24"}});
        let c = ipam_conf(
            &raw,
            "1.0.0",
            "10.244.1.0/24".parse().expect("p"),
            "10.244.1.1".parse().expect("gw"),
        );
        assert!(c["ipam"].get("ranges").is_none());
    }
}
