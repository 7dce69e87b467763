//! The CNI 1.1 wire types: the network configuration the runtime sends on stdin, the
//! result and the error printed on stdout, and the error codes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The versions this plugin accepts and answers in.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.4.0", "1.0.0", "1.1.0"];
pub const LATEST: &str = "1.1.0";

/// The spec's well-known error codes, and the plugin's own (100 and up).
#[allow(
    dead_code,
    reason = "the spec's full table, not every code is raised here"
)]
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// The kernel refused a link, address or route change.
    pub const NETLINK: u32 = 100;
    /// podswitchd answered the request with an error.
    pub const PODSWITCHD: u32 = 101;
    /// The interface name is already taken (in the container, or the attachment exists).
    pub const INTERFACE_EXISTS: u32 = 102;
    /// The IPAM plugin could not be found or run, or returned nothing usable.
    pub const IPAM: u32 = 103;
    /// CHECK found the attachment different from prevResult.
    pub const CHECK_FAILED: u32 = 104;
}

/// A CNI error: printed as `{"cniVersion","code","msg","details"}` on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }
    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = serde_json::json!({"cniVersion": version, "code": self.code, "msg": self.msg});
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "code {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

pub type CniResult<T> = Result<T, CniError>;

/// The plugin's network configuration (one entry of a conflist, as the runtime passes it).
#[derive(Debug, Clone, Deserialize)]
pub struct NetConf {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    /// podswitchd's control socket.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The IPAM section, passed on to the IPAM plugin (`host-local` if absent).
    #[serde(default)]
    pub ipam: Option<Value>,
    /// Overrides the pod MTU derived from podswitchd's uplink MTU and overlay.
    #[serde(default)]
    pub mtu: Option<u16>,
    /// The pod hands podswitchd TCP super-frames and takes them (README "Super-frames"):
    /// both veth ends at [`crate::add::GSO_LINK_MTU`], the pod's segmentation and checksum
    /// offloads on, the port registered with `gso = true`.
    #[serde(default)]
    pub gso: bool,
    /// The pod's interface: a veth whose host end podswitchd binds with AF_XDP (`veth`,
    /// the default), or a tap device that podswitchd holds with virtio-net headers
    /// (`tap`: super-frames cross whole at the pod's own MTU; README "Tap pods").
    #[serde(default, rename = "podInterface")]
    pub pod_interface: PodInterface,
    /// Where the plugin keeps one record per attachment (for DEL, GC and restarts).
    #[serde(default = "default_state_dir", rename = "stateDir")]
    pub state_dir: PathBuf,
    #[serde(default, rename = "prevResult")]
    pub prev_result: Option<Value>,
    #[serde(
        default,
        rename = "cni.dev/valid-attachments",
        alias = "cni.dev/attachments"
    )]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodInterface {
    #[default]
    Veth,
    Tap,
}

fn default_socket() -> PathBuf {
    PathBuf::from("/run/podswitch/podswitchd.sock")
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/cni/podswitch")
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

impl NetConf {
    /// Parses stdin; checks the version is one this plugin speaks.
    pub fn parse(stdin: &[u8]) -> CniResult<(NetConf, Value)> {
        let raw: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("network configuration is not valid JSON: {e}"),
            )
        })?;
        let conf: NetConf = serde_json::from_value(raw.clone()).map_err(|e| {
            CniError::new(
                code::INVALID_CONFIG,
                format!("invalid network configuration: {e}"),
            )
        })?;
        if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {:?} is not supported (podswitch-cni speaks {})",
                    conf.cni_version,
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        if let Some(m) = conf.mtu
            && !(576..=9000).contains(&m)
        {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("mtu {m} is outside 576..9000"),
            ));
        }
        Ok((conf, raw))
    }

    /// The IPAM plugin's name (`ipam.type`).
    pub fn ipam_type(&self) -> CniResult<String> {
        match &self.ipam {
            None => Ok("host-local".into()),
            Some(v) => v
                .get("type")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && !s.contains('/'))
                .map(str::to_string)
                .ok_or_else(|| {
                    CniError::new(
                        code::INVALID_CONFIG,
                        "ipam.type is missing or not a plugin name",
                    )
                }),
        }
    }
}

/// One interface of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// One address of a result (`version` only at 0.4.0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

impl IpConfig {
    /// The address and prefix length, if this is an IPv4 CIDR.
    pub fn v4(&self) -> Option<(Ipv4Addr, u8)> {
        let (a, l) = self.address.split_once('/')?;
        let len: u8 = l.parse().ok()?;
        (len <= 32).then_some(())?;
        Some((a.parse().ok()?, len))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<Ipv4Addr>,
}

/// An ADD result (also the shape of `prevResult` and of an IPAM plugin's answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteEntry>,
    #[serde(default, skip_serializing_if = "is_empty_dns")]
    pub dns: Value,
}

fn is_empty_dns(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

impl AddResult {
    pub fn parse(v: &Value) -> CniResult<AddResult> {
        serde_json::from_value(v.clone()).map_err(|e| {
            CniError::new(code::DECODE_FAILURE, format!("cannot read the result: {e}"))
        })
    }

    /// The first IPv4 address of the result.
    pub fn first_v4(&self) -> Option<(&IpConfig, Ipv4Addr, u8)> {
        self.ips
            .iter()
            .find_map(|ip| ip.v4().map(|(a, l)| (ip, a, l)))
    }

    /// The result as the given version prints it: 0.4.0 tags each address with its IP
    /// version; the interface MTU appeared in 1.1.0.
    pub fn for_version(mut self, version: &str) -> AddResult {
        self.cni_version = version.to_string();
        for ip in &mut self.ips {
            ip.version = (version == "0.4.0").then(|| "4".to_string());
        }
        if version != "1.1.0" {
            for i in &mut self.interfaces {
                i.mtu = None;
            }
        }
        self
    }
}

/// The `K8S_POD_*` values of `CNI_ARGS` (`K8S_POD_NAMESPACE=a;K8S_POD_NAME=b;...`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K8sArgs {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
}

impl K8sArgs {
    pub fn parse(args: &str) -> CniResult<K8sArgs> {
        let mut out = K8sArgs::default();
        for pair in args.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_ARGS: {pair:?} is not KEY=VALUE"),
                )
            })?;
            let v = Some(v.to_string()).filter(|v| !v.is_empty());
            match k {
                "K8S_POD_NAMESPACE" => out.namespace = v,
                "K8S_POD_NAME" => out.name = v,
                "K8S_POD_UID" => out.uid = v,
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_with_defaults_parses() {
        let (c, _) =
            NetConf::parse(br#"{"cniVersion":"1.1.0","name":"podswitch","type":"podswitch-cni"}"#)
                .expect("parses");
        assert_eq!(c.socket, PathBuf::from("/run/podswitch/podswitchd.sock"));
        assert_eq!(c.ipam_type().expect("ipam"), "host-local");
        assert_eq!(c.mtu, None);
    }

    #[test]
    fn conf_keys_parse() {
        let (c, raw) = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"n","type":"podswitch-cni","socket":"/run/x.sock",
                "mtu":1400,"ipam":{"type":"static"},"runtimeConfig":{},
                "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#,
        )
        .expect("parses");
        assert_eq!(c.socket, PathBuf::from("/run/x.sock"));
        assert_eq!(c.mtu, Some(1400));
        assert_eq!(c.ipam_type().expect("ipam"), "static");
        assert_eq!(c.valid_attachments.expect("valid")[0].container_id, "c1");
        assert!(raw.get("runtimeConfig").is_some());
    }

    #[test]
    fn bad_input_has_the_spec_codes() {
        let e = NetConf::parse(b"{not json").expect_err("bad json");
        assert_eq!(e.code, code::DECODE_FAILURE);
        let e = NetConf::parse(br#"{"cniVersion":"0.3.1","name":"n","type":"t"}"#).expect_err("v");
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","type":"t"}"#).expect_err("name");
        assert_eq!(e.code, code::INVALID_CONFIG);
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":70000}"#)
            .expect_err("mtu");
        assert_eq!(e.code, code::INVALID_CONFIG);
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"t","ipam":{}}"#)
            .and_then(|(c, _)| c.ipam_type())
            .expect_err("ipam");
        assert_eq!(e.code, code::INVALID_CONFIG);
    }

    #[test]
    fn ipam_results_of_both_versions_parse() {
        let v040: Value = serde_json::from_str(
            r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.244.1.2/24","gateway":"10.244.1.1"}],"dns":{}}"#,
        )
        .expect("json");
        let r = AddResult::parse(&v040).expect("0.4.0");
        let (_, a, l) = r.first_v4().expect("v4");
        assert_eq!((a, l), ("10.244.1.2".parse().expect("ip"), 24));
        let v100: Value = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.244.1.3/24","gateway":"10.244.1.1"}],"routes":[{"dst":"0.0.0.0/0"}]}"#,
        )
        .expect("json");
        let r = AddResult::parse(&v100).expect("1.0.0");
        assert_eq!(r.routes[0].dst, "0.0.0.0/0");
    }

    #[test]
    fn results_print_per_version() {
        let r = AddResult {
            cni_version: "1.1.0".into(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: "0a:58:0a:f4:01:02".into(),
                mtu: Some(1450),
                sandbox: "/var/run/netns/x".into(),
            }],
            ips: vec![IpConfig {
                version: None,
                address: "10.244.1.2/24".into(),
                gateway: Some("10.244.1.1".parse().expect("ip")),
                interface: Some(0),
            }],
            routes: vec![],
            dns: Value::Null,
        };
        let old = serde_json::to_value(r.clone().for_version("0.4.0")).expect("json");
        assert_eq!(old["ips"][0]["version"], "4");
        assert!(old["interfaces"][0].get("mtu").is_none());
        assert!(old.get("dns").is_none());
        let new = serde_json::to_value(r.for_version("1.1.0")).expect("json");
        assert!(new["ips"][0].get("version").is_none());
        assert_eq!(new["interfaces"][0]["mtu"], 1450);
    }

    #[test]
    fn k8s_args_parse() {
        let a = K8sArgs::parse("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=u-1;K8S_POD_INFRA_CONTAINER_ID=abc")
            .expect("args");
        assert_eq!(a.namespace.as_deref(), Some("default"));
        assert_eq!(a.name.as_deref(), Some("web-0"));
        assert_eq!(a.uid.as_deref(), Some("u-1"));
        assert_eq!(K8sArgs::parse("").expect("empty"), K8sArgs::default());
        assert_eq!(
            K8sArgs::parse("junk").expect_err("junk").code,
            code::INVALID_ENV
        );
    }

    #[test]
    fn errors_print_in_the_spec_shape() {
        let e = CniError::new(code::NOT_AVAILABLE, "podswitchd is down").details("connect: ENOENT");
        let v = e.to_json("1.1.0");
        assert_eq!(v["code"], 50);
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["details"], "connect: ENOENT");
    }
}
