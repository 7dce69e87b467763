//! flannel's net-conf.json: the cluster network and the overlay backend, read from the same
//! file flanneld reads, so a podswitch node and a flannel node agree on them.
//!
//! `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}`

use podswitch_model::Prefix;
use podswitch_model::config::Overlay;
use serde::Deserialize;
use std::path::Path;

/// The parts of net-conf.json podswitch uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    pub network: Prefix,
    pub backend: Overlay,
    pub vni: u32,
    pub port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Raw {
    network: Option<String>,
    #[serde(default)]
    backend: Option<RawBackend>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawBackend {
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "VNI")]
    vni: Option<u32>,
    port: Option<u16>,
}

/// flannel's backend type names, as written in `backend-type` annotations too.
pub fn parse_backend(s: &str) -> Result<Overlay, String> {
    match s {
        "vxlan" => Ok(Overlay::Vxlan),
        "ipip" => Ok(Overlay::Ipip),
        "host-gw" => Ok(Overlay::HostGw),
        other => Err(format!(
            "unknown backend type {other:?} (podswitch supports vxlan, ipip, host-gw)"
        )),
    }
}

impl NetConf {
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| format!("net-conf.json: {e}"))?;
        let network = raw
            .network
            .ok_or("net-conf.json: \"Network\" is missing")?
            .parse::<Prefix>()
            .map_err(|e| format!("net-conf.json: Network: {e}"))?;
        let b = raw.backend.unwrap_or(RawBackend {
            kind: None,
            vni: None,
            port: None,
        });
        // flannel's defaults: the udp backend is its default, but podswitch only speaks the
        // kernel-compatible ones, so an absent type means vxlan as in every flannel manifest.
        let backend = parse_backend(b.kind.as_deref().unwrap_or("vxlan"))
            .map_err(|e| format!("net-conf.json: Backend.Type: {e}"))?;
        let vni = b.vni.unwrap_or(1);
        if vni == 0 || vni >= 1 << 24 {
            return Err(format!(
                "net-conf.json: Backend.VNI {vni} is not a 24-bit VNI above 0"
            ));
        }
        let port = b.port.unwrap_or(8472);
        if port == 0 {
            return Err("net-conf.json: Backend.Port must not be 0".into());
        }
        Ok(NetConf {
            network,
            backend,
            vni,
            port,
        })
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannel_defaults_and_fields() {
        let n =
            NetConf::parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#).unwrap();
        assert_eq!(n.network.to_string(), "10.244.0.0/16");
        assert_eq!((n.backend, n.vni, n.port), (Overlay::Vxlan, 1, 8472));
        let n = NetConf::parse(
            r#"{"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"host-gw","VNI":7,"Port":4789}}"#,
        )
        .unwrap();
        assert_eq!((n.backend, n.vni, n.port), (Overlay::HostGw, 7, 4789));
    }

    #[test]
    fn bad_input_is_named() {
        for (text, want) in [
            (r#"{"Backend":{"Type":"vxlan"}}"#, "Network"),
            (r#"{"Network":"10.244.0.0/33"}"#, "Network"),
            (
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"wireguard"}}"#,
                "wireguard",
            ),
            (
                r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":0}}"#,
                "VNI",
            ),
            ("{", "net-conf.json"),
        ] {
            let e = NetConf::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
