//! Runs one container of a pod as a host program inside the pod's network namespace
//! (`nsenter --net=…`; the image is not used), in its own process group, logging to a
//! file; restarts it per the pod's restartPolicy with a bounded exponential back-off, and
//! stops the whole group with SIGTERM, then SIGKILL after the grace period.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};

/// Wall-clock stamps for the status.
pub type Stamp = k8s_openapi::jiff::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Never") => Self::Never,
            Some("OnFailure") => Self::OnFailure,
            _ => Self::Always,
        }
    }

    fn restarts_after(self, exit_code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => exit_code != 0,
            Self::Never => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
}

/// What a container is doing, as the Pod status shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: Stamp,
        pgid: i32,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        started_at: Stamp,
        finished_at: Stamp,
    },
}

#[derive(Debug, Clone)]
pub struct Report {
    pub index: usize,
    pub state: State,
    pub restart_count: i32,
}

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A container that ran this long before exiting restarts without delay history.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);

/// Sends `sig` to the process group `pgid`.
pub fn signal_group(pgid: i32, sig: i32) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is shared.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Supervises the container until `stop` carries a grace period; reports every change.
pub async fn supervise(
    index: usize,
    spec: ContainerSpec,
    netns: PathBuf,
    log: PathBuf,
    policy: RestartPolicy,
    reports: mpsc::UnboundedSender<Report>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut restarts = 0;
    let mut backoff = BACKOFF_FIRST;
    loop {
        let report = |state: State, restart_count| {
            let _ = reports.send(Report {
                index,
                state,
                restart_count,
            });
        };
        let mut child = match spawn(&spec, &netns, &log) {
            Ok(c) => c,
            Err(e) => {
                report(
                    State::Waiting {
                        reason: "StartError".into(),
                        message: format!(
                            "container {}: cannot start {:?}: {e}",
                            spec.name, spec.argv
                        ),
                    },
                    restarts,
                );
                if wait_or_stop(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let pgid = child.id().map_or(0, |p| p as i32);
        let started_at = Stamp::now();
        let t0 = Instant::now();
        report(State::Running { started_at, pgid }, restarts);
        let stopped = tokio::select! {
            s = child.wait() => Ok(s),
            g = stop.wait_for(Option::is_some) => Err(g.map(|g| (*g).unwrap_or_default()).unwrap_or_default()),
        };
        let status = match stopped {
            Ok(s) => s,
            Err(grace) => {
                let code = terminate(&mut child, pgid, grace).await;
                report(
                    State::Terminated {
                        exit_code: code,
                        reason: "Completed".into(),
                        started_at,
                        finished_at: Stamp::now(),
                    },
                    restarts,
                );
                return;
            }
        };
        let code = status.map_or(-1, |s| exit_code(&s));
        // The program may have left children in its group behind.
        signal_group(pgid, libc::SIGKILL);
        report(
            State::Terminated {
                exit_code: code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                started_at,
                finished_at: Stamp::now(),
            },
            restarts,
        );
        if !policy.restarts_after(code) {
            // Park until the pod goes away.
            let _ = stop.wait_for(Option::is_some).await;
            return;
        }
        if t0.elapsed() >= BACKOFF_RESET_AFTER {
            backoff = BACKOFF_FIRST;
        }
        if wait_or_stop(&mut stop, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        restarts += 1;
    }
}

/// Sleeps `d` unless the container is stopped first (true).
async fn wait_or_stop(stop: &mut watch::Receiver<Option<Duration>>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(Option::is_some) => true,
    }
}

fn exit_code(s: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

fn spawn(
    spec: &ContainerSpec,
    netns: &std::path::Path,
    log: &std::path::Path,
) -> std::io::Result<tokio::process::Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", netns.display()))
        .arg("--")
        .args(&spec.argv)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("HOME", "/")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    cmd.spawn()
}

/// SIGTERM to the group, SIGKILL after the grace period; returns the exit code.
async fn terminate(child: &mut tokio::process::Child, pgid: i32, grace: Duration) -> i32 {
    signal_group(pgid, libc::SIGTERM);
    let code = match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(s)) => exit_code(&s),
        _ => {
            signal_group(pgid, libc::SIGKILL);
            child.wait().await.map_or(137, |s| exit_code(&s))
        }
    };
    signal_group(pgid, libc::SIGKILL);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        assert!(RestartPolicy::parse(None).restarts_after(0));
        assert!(RestartPolicy::parse(Some("OnFailure")).restarts_after(3));
        assert!(!RestartPolicy::parse(Some("OnFailure")).restarts_after(0));
        assert!(!RestartPolicy::parse(Some("Never")).restarts_after(1));
    }
}
