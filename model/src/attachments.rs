//! The CNI plugin's attachment records: one per attachment under
//! `<stateDir>/<network>/<host veth>.json`, written by podswitch-cni before the IPAM call, so
//! that DEL and GC release exactly the lease ADD took (with the same IPAM configuration)
//! even when podswitchd is down or the ADD was killed half-way. podswitchd reads them at
//! start (`--cni-state`) to register again the pods it had before a restart.

use crate::config::Pod;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub host_veth: String,
    /// podswitchd's control socket the port was registered with.
    pub socket: PathBuf,
    /// The exact configuration the IPAM plugin got on ADD.
    pub ipam_conf: Value,
    /// The port registered with podswitchd, once it was.
    #[serde(default)]
    pub pod: Option<Pod>,
}

pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The stores of every network under `state_dir`.
    pub fn networks(state_dir: &Path) -> Vec<Store> {
        let Ok(rd) = std::fs::read_dir(state_dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| Store { dir: e.path() })
            .collect()
    }

    pub fn new(state_dir: &Path, network: &str) -> Self {
        Store {
            dir: state_dir.join(network),
        }
    }

    fn path(&self, host_veth: &str) -> PathBuf {
        self.dir.join(format!("{host_veth}.json"))
    }

    pub fn save(&self, r: &Record) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create state folder {}: {e}", self.dir.display()))?;
        let path = self.path(&r.host_veth);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(r).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn load(&self, host_veth: &str) -> Option<Record> {
        let text = std::fs::read(self.path(host_veth)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn remove(&self, host_veth: &str) -> Result<(), String> {
        match std::fs::remove_file(self.path(host_veth)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!(
                "cannot remove {}: {e}",
                self.path(host_veth).display()
            )),
        }
    }

    /// Every record of the network (unreadable files are reported on stderr and skipped).
    pub fn all(&self) -> Vec<Record> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_slice::<Record>(&t).map_err(|e| e.to_string()))
            {
                Ok(r) => out.push(r),
                Err(e) => eprintln!("skipping CNI state file {}: {e}", p.display()),
            }
        }
        out
    }
}
