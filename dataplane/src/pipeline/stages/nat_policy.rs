//! Which endpoints a new Service flow may use and whether its source is translated: the
//! traffic policies and kube-proxy's masquerade rules, per kind of client.
//!
//! Upstream's packet-flow expectations (`pkg/proxy/iptables/proxier_test.go`,
//! `TestInternalExternalMasquerade` and its neighbours) with its local-traffic detector:
//! - ClusterIP: internalTrafficPolicy Local means local endpoints only, for every client;
//!   clients that are not pods are masqueraded.
//! - External frontends (NodePort, externalIP, LoadBalancer IP) with externalTrafficPolicy
//!   Cluster: every endpoint, always masqueraded (the reply must come back through this node
//!   whoever the client is).
//! - externalTrafficPolicy Local: clients outside the cluster get the local endpoints and
//!   keep their address; pods and the node itself are "short-circuited" to every endpoint
//!   (pods keep their address, the node's own traffic is masqueraded).
//! - Hairpin (a pod reaching itself) is translated to the gateway address.
//!
//! Where podswitch knows more than an address-based detector (README, Service section):
//! a pod on another node reaching an external frontend of this node is not short-circuited
//! under eTP Local (it gets this node's local endpoints, so the reply passes here), and
//! reaching a ClusterIP here it is masqueraded when the endpoint is on another node.

use crate::tables::services::Frontend;

/// Who opened a new flow, as far as Service NAT cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Client {
    /// A pod on this node (its port; the address is anti-spoof checked).
    LocalPod,
    /// A cluster pod address arriving from another node (decapsulated, or routed host-gw).
    RemotePod,
    /// The node's own stack (host port): hostNetwork pods, the kubelet.
    Node,
    /// Anything else: clients outside the cluster, other nodes' own addresses.
    External,
}

/// The endpoint set a new flow may use (before the endpoint is known).
#[inline]
pub(super) fn local_only(
    fe: Frontend,
    client: Client,
    external_local: bool,
    internal_local: bool,
) -> bool {
    if !fe.is_external() {
        return internal_local;
    }
    external_local && matches!(client, Client::External | Client::RemotePod)
}

/// The source translation of a new flow, once the endpoint is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Snat {
    None,
    /// A pod reaching itself: to the gateway address.
    Hairpin,
    /// To the node address, so the reply comes back through this node.
    NodeAddress,
}

/// `self_endpoint`: the endpoint is the client itself; `endpoint_local`: it is on this node.
#[inline]
pub(super) fn snat(
    fe: Frontend,
    client: Client,
    external_local: bool,
    self_endpoint: bool,
    endpoint_local: bool,
) -> Snat {
    if self_endpoint && client == Client::LocalPod {
        return Snat::Hairpin;
    }
    let masq = match (fe.is_external(), client) {
        // eTP Local, local endpoints: the client address is the point of the policy.
        (true, Client::External | Client::RemotePod) if external_local => false,
        // eTP Local short-circuit for this node's pods: every endpoint, address kept (the
        // reply reaches the client's node, this one, whatever the endpoint).
        (true, Client::LocalPod) if external_local => false,
        (true, _) => true,
        (false, Client::LocalPod) => false,
        (false, Client::RemotePod) => !endpoint_local,
        (false, Client::Node | Client::External) => true,
    };
    if masq { Snat::NodeAddress } else { Snat::None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Client::*;
    use Frontend as F;

    #[test]
    fn external_frontends_under_cluster_policy_are_always_masqueraded() {
        for c in [LocalPod, RemotePod, Node, External] {
            for fe in [F::NodePort, F::External] {
                assert!(
                    !local_only(fe, c, false, true),
                    "iTP never applies to {fe:?}"
                );
                assert_eq!(snat(fe, c, false, false, true), Snat::NodeAddress, "{c:?}");
                assert_eq!(snat(fe, c, false, false, false), Snat::NodeAddress, "{c:?}");
                if c != LocalPod {
                    // A remote pod (or the node) reaching itself: no hairpin, masquerade.
                    assert_eq!(snat(fe, c, false, true, false), Snat::NodeAddress, "{c:?}");
                }
            }
        }
    }

    #[test]
    fn local_external_policy() {
        assert!(local_only(F::NodePort, External, true, false));
        assert!(local_only(F::NodePort, RemotePod, true, false));
        assert!(!local_only(F::NodePort, LocalPod, true, false));
        assert!(!local_only(F::NodePort, Node, true, false));
        assert_eq!(snat(F::NodePort, External, true, false, true), Snat::None);
        assert_eq!(snat(F::NodePort, RemotePod, true, false, true), Snat::None);
        assert_eq!(snat(F::NodePort, LocalPod, true, false, false), Snat::None);
        assert_eq!(
            snat(F::NodePort, Node, true, false, false),
            Snat::NodeAddress
        );
        assert_eq!(snat(F::NodePort, LocalPod, true, true, true), Snat::Hairpin);
    }

    #[test]
    fn cluster_ip() {
        for c in [LocalPod, RemotePod, Node, External] {
            assert!(local_only(F::ClusterIp, c, false, true));
            assert!(!local_only(F::ClusterIp, c, true, false));
        }
        assert_eq!(
            snat(F::ClusterIp, LocalPod, false, false, false),
            Snat::None
        );
        assert_eq!(
            snat(F::ClusterIp, Node, true, false, true),
            Snat::NodeAddress
        );
        assert_eq!(
            snat(F::ClusterIp, External, true, false, true),
            Snat::NodeAddress
        );
        assert_eq!(
            snat(F::ClusterIp, RemotePod, false, false, true),
            Snat::None
        );
        assert_eq!(
            snat(F::ClusterIp, RemotePod, false, false, false),
            Snat::NodeAddress
        );
        assert_eq!(
            snat(F::ClusterIp, LocalPod, false, true, true),
            Snat::Hairpin
        );
    }
}
