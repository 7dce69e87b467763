//! What the agent made for each pod, kept on disk (one JSON file per pod UID) so that a
//! restarted agent re-adopts running pods and cleans up after deleted ones.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The pod's network namespace name (under /run/netns).
    pub netns: String,
    /// CNI_CONTAINERID of the attachment (the pod UID).
    pub container_id: String,
    /// The final result of the CNI ADD chain, given back as prevResult on DEL.
    pub cni_result: Option<serde_json::Value>,
    pub pod_ip: Option<String>,
    /// Process groups of the containers last started (killed on adoption or cleanup).
    #[serde(default)]
    pub pgids: Vec<i32>,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("pods"))
            .with_context(|| format!("creating state folder {}", dir.display()))?;
        std::fs::create_dir_all(dir.join("logs"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self, uid: &str) -> PathBuf {
        self.dir.join("pods").join(format!("{uid}.json"))
    }

    pub fn log_file(&self, rec: &PodRecord, container: &str) -> PathBuf {
        self.dir.join("logs").join(format!(
            "{}_{}_{}_{}.log",
            rec.namespace, rec.name, rec.uid, container
        ))
    }

    pub fn save(&self, rec: &PodRecord) -> Result<()> {
        let tmp = self.file(&format!("{}.tmp", rec.uid));
        std::fs::write(&tmp, serde_json::to_vec_pretty(rec)?)?;
        std::fs::rename(&tmp, self.file(&rec.uid))?;
        Ok(())
    }

    pub fn remove(&self, uid: &str) {
        let _ = std::fs::remove_file(self.file(uid));
    }

    /// Every readable record; unreadable files are reported and skipped.
    pub fn load_all(&self) -> Vec<PodRecord> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.dir.join("pods")) else {
            return out;
        };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&p)
                .map_err(anyhow::Error::from)
                .and_then(|b| serde_json::from_slice(&b).map_err(anyhow::Error::from))
            {
                Ok(rec) => out.push(rec),
                Err(e) => tracing::warn!("state file {} unreadable, skipped: {e}", p.display()),
            }
        }
        out
    }
}
