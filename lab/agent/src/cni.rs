//! The runtime side of CNI (SPEC.md): loads a network configuration list and runs its
//! plugin chain the way a container runtime does. Each plugin is executed with the CNI
//! environment and its own configuration on stdin, with the list's `name` and
//! `cniVersion` injected, `prevResult` chained from the previous plugin's result (ADD) or
//! the cached final result (DEL, CHECK), and `runtimeConfig` holding the capability
//! arguments the plugin declares. DEL runs the chain in reverse order.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The pod identity and sandbox a CNI call is about.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
}

#[derive(Debug, Clone)]
pub struct ConfList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Map<String, Value>>,
}

impl ConfList {
    pub fn load(file: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading CNI conflist {}", file.display()))?;
        Self::parse(&text, file)
    }

    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .with_context(|| format!("CNI conflist {} is not JSON", file.display()))?;
        let name = v["name"]
            .as_str()
            .ok_or_else(|| anyhow!("{}: no \"name\"", file.display()))?;
        let cni_version = v["cniVersion"]
            .as_str()
            .ok_or_else(|| anyhow!("{}: no \"cniVersion\"", file.display()))?;
        let plugins = v["plugins"]
            .as_array()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| anyhow!("{}: no \"plugins\" list", file.display()))?
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Value::Object(m) if m.get("type").and_then(Value::as_str).is_some() => {
                    Ok(m.clone())
                }
                _ => Err(anyhow!("{}: plugin {i} has no \"type\"", file.display())),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            name: name.to_string(),
            cni_version: cni_version.to_string(),
            plugins,
        })
    }

    /// GC exists from CNI 1.1.0 on.
    pub fn supports_gc(&self) -> bool {
        version_at_least(&self.cni_version, (1, 1))
    }

    /// The stdin configuration of plugin `index`: the plugin's own keys plus the list's
    /// name and cniVersion, prevResult when there is one, and runtimeConfig with the
    /// capability arguments the plugin declares (`capabilities: {"ips": true}`).
    pub fn plugin_config(
        &self,
        index: usize,
        prev_result: Option<&Value>,
        capability_args: &Map<String, Value>,
        extra: &Map<String, Value>,
    ) -> Value {
        let mut conf = self.plugins[index].clone();
        conf.insert("name".into(), json!(self.name));
        conf.insert("cniVersion".into(), json!(self.cni_version));
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.clone());
        }
        let caps = conf.get("capabilities").and_then(Value::as_object).cloned();
        let runtime: Map<String, Value> = capability_args
            .iter()
            .filter(|(k, _)| {
                caps.as_ref()
                    .and_then(|c| c.get(*k))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !runtime.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        for (k, v) in extra {
            conf.insert(k.clone(), v.clone());
        }
        Value::Object(conf)
    }
}

fn version_at_least(v: &str, min: (u32, u32)) -> bool {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = it.next().unwrap_or(0);
    let minor = it.next().unwrap_or(0);
    (major, minor) >= min
}

/// `IgnoreUnknown=1;K8S_POD_NAMESPACE=…;K8S_POD_NAME=…;K8S_POD_INFRA_CONTAINER_ID=…;K8S_POD_UID=…`,
/// as the Kubernetes runtimes send it.
pub fn cni_args(a: &Attachment) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        a.pod_namespace, a.pod_name, a.container_id, a.pod_uid
    )
}

/// Runs the CNI plugins of a configuration list.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The configuration list, read at every use as runtimes read /etc/cni/net.d: a node
    /// whose network plugin has not written it yet refuses pods with a clear error.
    pub conf_file: PathBuf,
    /// CNI_PATH: the folders plugins are looked up in.
    pub path: Vec<PathBuf>,
}

impl Runtime {
    fn find(&self, plugin_type: &str) -> Result<PathBuf> {
        self.path
            .iter()
            .map(|d| d.join(plugin_type))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "CNI plugin {plugin_type:?} not found in CNI_PATH {}",
                    self.cni_path()
                )
            })
    }

    fn cni_path(&self) -> String {
        self.path
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Executes one plugin; returns its stdout as JSON (Null when empty).
    async fn exec(&self, command: &str, a: Option<&Attachment>, conf: &Value) -> Result<Value> {
        let ty = conf["type"].as_str().unwrap_or_default().to_string();
        let bin = self.find(&ty)?;
        let mut cmd = Command::new(&bin);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_PATH", self.cni_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(a) = a {
            cmd.env("CNI_CONTAINERID", &a.container_id)
                .env("CNI_NETNS", &a.netns)
                .env("CNI_IFNAME", &a.ifname)
                .env("CNI_ARGS", cni_args(a));
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        stdin.write_all(&serde_json::to_vec(conf)?).await?;
        drop(stdin);
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .map_err(|_| anyhow!("CNI {command} of plugin {ty}: no answer in 60 s"))??;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            // The spec's error: {cniVersion, code, msg, details} on stdout.
            let detail = serde_json::from_str::<Value>(&stdout)
                .ok()
                .map(|e| {
                    format!(
                        "code {} {}{}",
                        e["code"],
                        e["msg"].as_str().unwrap_or(""),
                        e["details"]
                            .as_str()
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| {
                    format!(
                        "{} {}",
                        stdout.trim(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    )
                });
            bail!(
                "CNI {command} of plugin {ty} failed ({}): {detail}",
                out.status
            );
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout)
            .with_context(|| format!("CNI {command} of plugin {ty}: result is not JSON"))
    }

    pub fn conf(&self) -> Result<ConfList> {
        if !self.conf_file.exists() {
            bail!(
                "network not ready: no CNI configuration {} yet",
                self.conf_file.display()
            );
        }
        ConfList::load(&self.conf_file)
    }

    /// ADD through the whole chain; returns the final result.
    pub async fn add(&self, a: &Attachment, caps: &Map<String, Value>) -> Result<Value> {
        let list = self.conf()?;
        let mut prev: Option<Value> = None;
        for i in 0..list.plugins.len() {
            let conf = list.plugin_config(i, prev.as_ref(), caps, &Map::new());
            let result = self.exec("ADD", Some(a), &conf).await?;
            prev = Some(result);
        }
        prev.ok_or_else(|| anyhow!("empty plugin chain"))
    }

    /// DEL in reverse order, with the cached ADD result as prevResult. Every plugin runs
    /// even when one fails; the first error is returned.
    pub async fn del(
        &self,
        a: &Attachment,
        cached: Option<&Value>,
        caps: &Map<String, Value>,
    ) -> Result<()> {
        let list = self.conf()?;
        let mut first_err = None;
        for i in (0..list.plugins.len()).rev() {
            let conf = list.plugin_config(i, cached, caps, &Map::new());
            if let Err(e) = self.exec("DEL", Some(a), &conf).await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// GC (CNI 1.1): every plugin is told the attachments that are still valid.
    pub async fn gc(&self, valid: &[(String, String)]) -> Result<()> {
        let list = self.conf()?;
        if !list.supports_gc() {
            return Ok(());
        }
        let attachments: Vec<Value> = valid
            .iter()
            .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
            .collect();
        let mut extra = Map::new();
        extra.insert(
            "cni.dev/valid-attachments".into(),
            Value::Array(attachments),
        );
        for i in 0..list.plugins.len() {
            let conf = list.plugin_config(i, None, &Map::new(), &extra);
            self.exec("GC", None, &conf).await?;
        }
        Ok(())
    }
}

/// The first IPv4 address of a CNI result (`ips[].address` is a CIDR).
pub fn result_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str())
                .filter_map(|a| a.split('/').next())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"lab","plugins":[
        {"type":"bridge","bridge":"cni0","capabilities":{"ips":true},"ipam":{"type":"host-local"}},
        {"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn injects_name_version_prev_result_and_declared_capabilities_only() {
        let l = ConfList::parse(LIST, Path::new("t")).unwrap();
        let mut caps = Map::new();
        caps.insert("ips".into(), json!(["10.244.1.10/24"]));
        let c0 = l.plugin_config(0, None, &caps, &Map::new());
        assert_eq!(c0["name"], "lab");
        assert_eq!(c0["cniVersion"], "1.0.0");
        assert_eq!(c0["runtimeConfig"]["ips"][0], "10.244.1.10/24");
        assert!(c0.get("prevResult").is_none());
        let prev = json!({"ips":[{"address":"10.244.1.10/24"}]});
        let c1 = l.plugin_config(1, Some(&prev), &caps, &Map::new());
        assert_eq!(c1["prevResult"], prev);
        assert!(
            c1.get("runtimeConfig").is_none(),
            "portmap does not declare ips"
        );
        assert_eq!(result_ips(&prev), vec!["10.244.1.10".to_string()]);
    }

    #[test]
    fn bad_lists_are_refused_with_the_file_name() {
        for bad in [
            "{",
            r#"{"name":"x","plugins":[]}"#,
            r#"{"name":"x","cniVersion":"1.0.0","plugins":[{}]}"#,
        ] {
            let e = ConfList::parse(bad, Path::new("/etc/x.conflist")).unwrap_err();
            assert!(format!("{e:#}").contains("/etc/x.conflist"), "{e:#}");
        }
        assert!(!ConfList::parse(LIST, Path::new("t")).unwrap().supports_gc());
        assert!(version_at_least("1.1.0", (1, 1)));
    }

    #[test]
    fn cni_args_carry_the_pod_identity() {
        let a = Attachment {
            container_id: "u1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "pod-a".into(),
            pod_uid: "u1".into(),
        };
        let s = cni_args(&a);
        assert!(s.starts_with("IgnoreUnknown=1;"));
        assert!(s.contains("K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-a;"));
        assert!(s.ends_with("K8S_POD_UID=u1"));
    }
}
