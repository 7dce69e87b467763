//! The Pod status the agent reports, from the containers' states: phase, podIP(s),
//! hostIP(s), the PodScheduled / Initialized / ContainersReady / Ready conditions and
//! one containerStatus per container (the EndpointSlice controller reads Ready and podIPs).

use crate::process::{Report, State};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What the agent knows about a pod's containers.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    pub container_names: &'a [String],
    pub images: &'a [String],
    /// Latest report per container (None: not started yet).
    pub reports: &'a [Option<Report>],
    pub pod_ip: Option<&'a str>,
    pub host_ip: &'a str,
    pub start_time: Time,
    /// A pod-level problem (network set-up, bad spec): phase Pending with this reason.
    pub problem: Option<(&'a str, &'a str)>,
    pub restart_never_or_on_failure: bool,
}

fn condition(kind: &str, ok: bool, now: &Time, reason: Option<&str>) -> PodCondition {
    PodCondition {
        type_: kind.into(),
        status: if ok { "True" } else { "False" }.into(),
        last_transition_time: Some(now.clone()),
        reason: reason.map(str::to_string),
        ..Default::default()
    }
}

fn container_status(name: &str, image: &str, r: Option<&Report>) -> ContainerStatus {
    let (state, ready, restarts) = match r.map(|r| (&r.state, r.restart_count)) {
        None => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    message: None,
                }),
                ..Default::default()
            },
            false,
            0,
        ),
        Some((State::Waiting { reason, message }, n)) => (
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: Some(message.clone()),
                }),
                ..Default::default()
            },
            false,
            n,
        ),
        Some((State::Running { started_at, .. }, n)) => (
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..Default::default()
            },
            true,
            n,
        ),
        Some((
            State::Terminated {
                exit_code,
                reason,
                started_at,
                finished_at,
            },
            n,
        )) => (
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    reason: Some(reason.clone()),
                    started_at: Some(Time(*started_at)),
                    finished_at: Some(Time(*finished_at)),
                    ..Default::default()
                }),
                ..Default::default()
            },
            false,
            n,
        ),
    };
    ContainerStatus {
        name: name.into(),
        image: image.into(),
        image_id: String::new(),
        ready,
        started: Some(ready),
        restart_count: restarts,
        state: Some(state),
        ..Default::default()
    }
}

pub fn build(s: &Snapshot<'_>) -> PodStatus {
    let now = Time(crate::process::Stamp::now());
    let statuses: Vec<ContainerStatus> = s
        .container_names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            container_status(
                n,
                s.images.get(i).map_or("", String::as_str),
                s.reports.get(i).and_then(Option::as_ref),
            )
        })
        .collect();
    let all_ready = !statuses.is_empty() && statuses.iter().all(|c| c.ready);
    let terminated: Vec<i32> = s
        .reports
        .iter()
        .filter_map(|r| match r.as_ref().map(|r| &r.state) {
            Some(State::Terminated { exit_code, .. }) => Some(*exit_code),
            _ => None,
        })
        .collect();
    let phase = if s.problem.is_some() || s.pod_ip.is_none() {
        "Pending"
    } else if s.restart_never_or_on_failure
        && !statuses.is_empty()
        && terminated.len() == statuses.len()
    {
        if terminated.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else {
        "Running"
    };
    let not_ready = (!all_ready).then_some("ContainersNotReady");
    PodStatus {
        phase: Some(phase.into()),
        reason: s.problem.map(|(r, _)| r.to_string()),
        message: s.problem.map(|(_, m)| m.to_string()),
        host_ip: Some(s.host_ip.into()),
        host_ips: Some(vec![HostIP {
            ip: s.host_ip.into(),
        }]),
        pod_ip: s.pod_ip.map(str::to_string),
        pod_ips: s.pod_ip.map(|ip| vec![PodIP { ip: ip.into() }]),
        start_time: Some(s.start_time.clone()),
        conditions: Some(vec![
            condition("PodScheduled", true, &now, None),
            condition("PodReadyToStartContainers", s.pod_ip.is_some(), &now, None),
            condition("Initialized", true, &now, None),
            condition("ContainersReady", all_ready, &now, not_ready),
            condition("Ready", all_ready, &now, not_ready),
        ]),
        container_statuses: Some(statuses),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Stamp;

    #[test]
    fn ready_only_when_every_container_runs() {
        let names = vec!["web".to_string(), "side".to_string()];
        let images = vec![String::new(), String::new()];
        let running = Report {
            index: 0,
            state: State::Running {
                started_at: Stamp::now(),
                pgid: 10,
            },
            restart_count: 0,
        };
        let reports = vec![Some(running.clone()), None];
        let all = vec![
            Some(running.clone()),
            Some(Report {
                index: 1,
                ..running
            }),
        ];
        let mut snap = Snapshot {
            container_names: &names,
            images: &images,
            reports: &reports,
            pod_ip: Some("10.244.1.10"),
            host_ip: "192.168.1.10",
            start_time: Time(Stamp::now()),
            problem: None,
            restart_never_or_on_failure: false,
        };
        let st = build(&snap);
        assert_eq!(st.phase.as_deref(), Some("Running"));
        let ready = |st: &PodStatus| {
            st.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .status
                .clone()
        };
        assert_eq!(ready(&st), "False");
        snap.reports = &all;
        let st = build(&snap);
        assert_eq!(ready(&st), "True");
        assert_eq!(st.pod_ips.unwrap()[0].ip, "10.244.1.10");
        snap.problem = Some(("NetworkSetupFailed", "CNI ADD failed"));
        assert_eq!(build(&snap).phase.as_deref(), Some("Pending"));
    }
}
