//! The planner's NetworkPolicy step: recompiles when a relevant input changed (see
//! `ClusterState::policy_dirty`), once every input kind has been listed.

use crate::planner::Planner;
use crate::policy::{self, PodFacts};
use crate::state::ClusterState;
use std::collections::BTreeMap;

impl Planner {
    /// Recompiles the policies if their inputs changed; true when the result differs.
    pub fn update_policy(&mut self, st: &mut ClusterState) -> bool {
        if !st.policy_synced() || !std::mem::take(&mut st.policy_dirty) {
            return false;
        }
        let pods: Vec<PodFacts> = st.all_pods.objects.values().map(PodFacts::of).collect();
        let namespaces: BTreeMap<String, BTreeMap<String, String>> = st
            .namespaces
            .objects
            .iter()
            .map(|((_, name), n)| (name.clone(), policy::namespace_labels(n)))
            .collect();
        let node = self.node_name().to_string();
        let c = policy::compile(st.netpols.objects.values(), &pods, &namespaces, &node);
        let changed = self.policy.as_ref() != Some(&c);
        self.policy = Some(c);
        changed
    }
}
