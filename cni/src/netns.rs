//! Work inside a container's network namespace. `setns` changes only the calling thread,
//! so each piece of work runs on a short-lived thread of its own and the process's main
//! thread never leaves the host namespace.

use crate::spec::{CniError, CniResult, code};
use crate::sys;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;

/// An open network namespace (a `/var/run/netns/<name>` or `/proc/<pid>/ns/net` path).
pub struct Netns {
    file: File,
    path: String,
}

impl Netns {
    pub fn open(path: &str) -> CniResult<Self> {
        if path.is_empty() {
            return Err(CniError::new(code::INVALID_ENV, "CNI_NETNS is empty"));
        }
        let file = File::open(Path::new(path)).map_err(|e| {
            CniError::new(
                code::INVALID_ENV,
                format!("CNI_NETNS: cannot open network namespace {path:?}: {e}"),
            )
        })?;
        Ok(Netns {
            file,
            path: path.to_string(),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Runs `f` on a thread that has entered this namespace; fails with a clear message
    /// when the path is not a network namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> CniResult<T> + Send) -> CniResult<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                sys::enter_netns(self.file.as_fd()).map_err(|e| {
                    CniError::new(
                        code::INVALID_ENV,
                        format!(
                            "CNI_NETNS {:?} is not a network namespace (setns: {e})",
                            self.path
                        ),
                    )
                })?;
                f()
            })
            .join()
            .map_err(|_| {
                CniError::new(
                    code::IO_FAILURE,
                    format!("the thread working in {:?} panicked", self.path),
                )
            })?
        })
    }
}
