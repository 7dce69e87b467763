//! Loader for the podswitch XDP programs in `bpf/uplink.c`.
//!
//! * `xdp_uplink`: node uplink; steers only VXLAN / IPIP / pod-CIDR /
//!   externalIP / Service-CIDR / NodePort traffic, and replies and ICMP errors of
//!   masqueraded flows, to the AF_XDP socket of the receive queue; everything else
//!   goes to the kernel. Owned destination prefixes live in an LPM trie
//!   (`owned_prefixes`, [`MAX_OWNED_PREFIXES`] entries) that [`XdpProgram::set_config`]
//!   synchronises: new entries are added before stale ones are deleted, so an entry
//!   present in both the old and the new configuration is never missing in between.
//! * `xdp_redirect_all`: pod ports; every frame to the socket of the queue.
//!
//! Both fall back to `XDP_PASS` when no socket is bound at `rx_queue_index`,
//! so a crashed/stopped podswitch leaves the node reachable.
//!
//! The object is compiled by `build.rs` (clang -O2 -target bpf, no BTF) and
//! loaded with the libbpf vendored by `libbpf-sys` 0.3 (the version the
//! workspace's `afxdp` 0.4 pins). After loading we keep only dup'ed fds of the
//! program and maps (`OwnedFd`) and close the `bpf_object`, so `XdpProgram`
//! owns no raw pointers and is `Send + Sync` without any `unsafe impl`.
//!
//! Attaching: always *replaces* whatever is attached in the requested mode
//! (plain netlink attach without `XDP_FLAGS_UPDATE_IF_NOEXIST`) after removing
//! any program attached in the *other* mode (the kernel refuses native and
//! generic at the same time). That makes attaching over the leftovers of a
//! crashed run work. It cannot replace a program attached through a `bpf_link`
//! owned by another process (kernel returns EBUSY) - podswitch never uses links.
//!
//! Dropping an `XdpProgram` does NOT detach it: the program stays on the
//! interface (with an empty XSK map it is a pure XDP_PASS) so a daemon restart
//! never blackholes the node; call [`XdpProgram::detach`] or [`detach`].

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use libbpf_sys as bpf;

static BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/uplink.bpf.o"));

/// Capacity of the `owned_prefixes` LPM trie (`MAX_OWNED_PREFIXES` in uplink.c; checked
/// against the loaded map in [`XdpProgram::load`]): pod CIDRs plus external/LB IPs.
pub const MAX_OWNED_PREFIXES: usize = crate::limits::MAX_OWNED_PREFIXES;

const CFG_VXLAN: u32 = 1 << 0;
const CFG_IPIP: u32 = 1 << 1;
const CFG_OWNED: u32 = 1 << 2;
const CFG_SVC_CIDR: u32 = 1 << 3;
const CFG_NODEPORT: u32 = 1 << 4;
const CFG_SNAT: u32 = 1 << 5;

/// Requested XDP attach mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic (skb) mode.
    #[default]
    Auto,
    Native,
    Generic,
}

/// The mode the kernel accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

impl AttachedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        }
    }
    fn flags(self) -> u32 {
        match self {
            AttachedMode::Native => bpf::XDP_FLAGS_DRV_MODE,
            AttachedMode::Generic => bpf::XDP_FLAGS_SKB_MODE,
        }
    }
    fn other(self) -> AttachedMode {
        match self {
            AttachedMode::Native => AttachedMode::Generic,
            AttachedMode::Generic => AttachedMode::Native,
        }
    }
}

/// Which program of the object to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgKind {
    /// `xdp_uplink`: filter, see module docs.
    Uplink,
    /// `xdp_redirect_all`: pod ports.
    RedirectAll,
}

impl ProgKind {
    fn symbol(self) -> &'static str {
        match self {
            ProgKind::Uplink => "xdp_uplink",
            ProgKind::RedirectAll => "xdp_redirect_all",
        }
    }
}

/// Index into the program's per-CPU counters (`enum counter` in uplink.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Counter {
    /// Not podswitch traffic: given to the kernel.
    Pass = 0,
    Vxlan = 1,
    Ipip = 2,
    PodCidr = 3,
    ServiceCidr = 4,
    NodePort = 5,
    /// Matched one of the classes above (which was counted too) but no AF_XDP
    /// socket is bound at the queue: given to the kernel.
    NoSocket = 6,
    /// Replies to masqueraded flows (node address, SNAT port range).
    Snat = 7,
    /// ICMP errors (unreachable incl. fragmentation needed, time exceeded, parameter
    /// problem) to the node address quoting a masqueraded flow.
    SnatIcmpError = 8,
    /// Destination is a Service externalIP or LoadBalancer IP.
    External = 9,
    /// A later fragment to the node address whose first fragment was steered (the
    /// `steered_frags` LRU map remembers the datagram).
    Fragment = 10,
}

/// Number of counters (`C_MAX` in uplink.c).
pub const N_COUNTERS: usize = 11;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; N_COUNTERS] = [
        Counter::Pass,
        Counter::Vxlan,
        Counter::Ipip,
        Counter::PodCidr,
        Counter::ServiceCidr,
        Counter::NodePort,
        Counter::NoSocket,
        Counter::Snat,
        Counter::SnatIcmpError,
        Counter::External,
        Counter::Fragment,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Counter::Pass => "pass",
            Counter::Vxlan => "vxlan",
            Counter::Ipip => "ipip",
            Counter::PodCidr => "pod_cidr",
            Counter::ServiceCidr => "service_cidr",
            Counter::NodePort => "node_port",
            Counter::NoSocket => "no_socket",
            Counter::Snat => "snat",
            Counter::SnatIcmpError => "snat_icmp_error",
            Counter::External => "external",
            Counter::Fragment => "fragment",
        }
    }
}

/// Uplink classification config. Every class is disabled when `None`/`false`/empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkConfig {
    pub node_addr: Ipv4Addr,
    /// (a) UDP to `node_addr` with this destination port (usually 4789 or 8472).
    pub vxlan_port: Option<u16>,
    /// (b) IPv4 protocol 4 to `node_addr`.
    pub ipip: bool,
    /// (c) destination inside one of these (host-gw routing).
    pub pod_cidrs: Vec<(Ipv4Addr, u8)>,
    /// Service externalIPs and LoadBalancer IPs (matched as /32). Together with
    /// `pod_cidrs` at most [`MAX_OWNED_PREFIXES`] distinct prefixes.
    pub external_ips: Vec<Ipv4Addr>,
    /// (d) destination inside the Service CIDR.
    pub service_cidr: Option<(Ipv4Addr, u8)>,
    /// (e) TCP/UDP to `node_addr` with destination port in `lo..=hi`.
    pub nodeport_range: Option<(u16, u16)>,
    /// Source ports (and ICMP echo identifiers) podswitch's masquerade uses: replies to
    /// the node address in this range belong to the switch.
    pub snat_range: Option<(u16, u16)>,
    /// TCP ports of the node address left to the kernel even inside `nodeport_range`
    /// (health-check NodePorts, served by podswitchd in the node's stack).
    pub kernel_tcp_ports: Vec<u16>,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            node_addr: Ipv4Addr::UNSPECIFIED,
            vxlan_port: None,
            ipip: false,
            pod_cidrs: Vec::new(),
            external_ips: Vec::new(),
            service_cidr: None,
            nodeport_range: None,
            snat_range: None,
            kernel_tcp_ports: Vec::new(),
        }
    }
}

/// Binary layout of `struct uplink_config` in uplink.c.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct UplinkConfigRaw {
    flags: u32,
    node_addr: u32,
    svc_addr: u32,
    svc_mask: u32,
    vxlan_port: u16,
    nodeport_lo: u16,
    nodeport_hi: u16,
    snat_lo: u16,
    snat_hi: u16,
    _pad: u16,
}
const _: () = assert!(std::mem::size_of::<UplinkConfigRaw>() == 28);

/// Key of the `owned_prefixes` LPM trie (`struct lpm_v4_key` in uplink.c).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct LpmKey {
    prefixlen: u32,
    /// Network byte order, masked to `prefixlen`.
    addr: [u8; 4],
}
const _: () = assert!(std::mem::size_of::<LpmKey>() == 8);

fn lpm_key(addr: Ipv4Addr, len: u8) -> io::Result<LpmKey> {
    let (a, _) = cidr_be(addr, len)?;
    Ok(LpmKey {
        prefixlen: u32::from(len),
        addr: a.to_ne_bytes(), // already in network byte order
    })
}

fn lpm_update(fd: RawFd, k: &LpmKey, v: u32) -> io::Result<()> {
    // SAFETY: key/value point to live values matching the map's key_size (8) and
    // value_size (4); the kernel only reads them during the call.
    let rc = unsafe {
        bpf::bpf_map_update_elem(
            fd,
            (k as *const LpmKey).cast(),
            (&v as *const u32).cast(),
            0,
        )
    };
    check(rc, "update owned_prefixes")
}

/// Sets entry `port` of the `kernel_tcp_ports` array.
fn array_set(fd: RawFd, port: u16, v: u32) -> io::Result<()> {
    let k = u32::from(port);
    // SAFETY: key/value point to live u32s matching the map's key_size and value_size
    // (4 each); the kernel only reads them during the call.
    let rc = unsafe {
        bpf::bpf_map_update_elem(fd, (&k as *const u32).cast(), (&v as *const u32).cast(), 0)
    };
    check(rc, "update kernel_tcp_ports")
}

fn lpm_delete(fd: RawFd, k: &LpmKey) -> io::Result<()> {
    // SAFETY: key points to a live LpmKey matching the map's key_size (8).
    let rc = unsafe { bpf::bpf_map_delete_elem(fd, (k as *const LpmKey).cast()) };
    check(rc, "delete from owned_prefixes")
}

/// What [`XdpProgram::set_config`] last wrote.
#[derive(Debug, Default)]
struct Written {
    owned: BTreeMap<LpmKey, u32>,
    cfg: Option<UplinkConfigRaw>,
}

/// Every entry of the `owned_prefixes` trie (at most its capacity: the walk is bounded).
fn lpm_entries(fd: RawFd) -> io::Result<BTreeMap<LpmKey, u32>> {
    let mut out = BTreeMap::new();
    let mut prev: Option<LpmKey> = None;
    for _ in 0..=MAX_OWNED_PREFIXES {
        let mut next = LpmKey::default();
        let prev_ptr = prev
            .as_ref()
            .map_or(std::ptr::null(), |p| (p as *const LpmKey).cast());
        // SAFETY: prev_ptr is null (first key) or points to a live LpmKey; next is a
        // live LpmKey the kernel writes key_size (8) bytes into.
        let rc =
            unsafe { bpf::bpf_map_get_next_key(fd, prev_ptr, (&mut next as *mut LpmKey).cast()) };
        if let Err(e) = check(rc, "walk owned_prefixes") {
            // ENOENT: no key after `prev` (the walk is complete).
            return if e.kind() == io::ErrorKind::NotFound {
                Ok(out)
            } else {
                Err(e)
            };
        }
        let mut v: u32 = 0;
        // SAFETY: key points to a live LpmKey, value to a live u32 (value_size 4).
        let rc = unsafe {
            bpf::bpf_map_lookup_elem(
                fd,
                (&next as *const LpmKey).cast(),
                (&mut v as *mut u32).cast(),
            )
        };
        // A lookup is a longest-prefix match: it finds this very entry (exact key).
        if rc >= 0 {
            out.insert(next, v);
        }
        prev = Some(next);
    }
    Err(io::Error::other(
        "walk owned_prefixes: more entries than the map's capacity",
    ))
}

fn map_max_entries(fd: RawFd) -> io::Result<u32> {
    let mut info = bpf::bpf_map_info::default();
    let mut len = std::mem::size_of::<bpf::bpf_map_info>() as u32;
    // SAFETY: info is live and `len` is its size; the kernel writes at most len bytes.
    let rc = unsafe {
        bpf::bpf_obj_get_info_by_fd(fd, (&mut info as *mut bpf::bpf_map_info).cast(), &mut len)
    };
    check(rc, "bpf_obj_get_info_by_fd (map)")?;
    Ok(info.max_entries)
}

/// (addr, mask) both in network byte order as the BPF side compares raw `daddr`.
/// The masked address and the mask of `addr/len`, both in network byte order.
fn cidr_be(addr: Ipv4Addr, len: u8) -> io::Result<(u32, u32)> {
    if len > 32 {
        return Err(invalid(format!("bad prefix length /{len}")));
    }
    let mask = crate::tables::lpm::mask(len);
    let a = u32::from(addr) & mask;
    Ok((a.to_be(), mask.to_be()))
}

impl UplinkConfig {
    fn to_raw(&self) -> io::Result<UplinkConfigRaw> {
        let mut r = UplinkConfigRaw {
            node_addr: u32::from(self.node_addr).to_be(),
            ..Default::default()
        };
        if let Some(p) = self.vxlan_port {
            r.flags |= CFG_VXLAN;
            r.vxlan_port = p;
        }
        if self.ipip {
            r.flags |= CFG_IPIP;
        }
        if !self.pod_cidrs.is_empty() || !self.external_ips.is_empty() {
            r.flags |= CFG_OWNED;
        }
        if let Some((a, l)) = self.service_cidr {
            r.flags |= CFG_SVC_CIDR;
            (r.svc_addr, r.svc_mask) = cidr_be(a, l)?;
        }
        if let Some((lo, hi)) = self.nodeport_range {
            if lo > hi {
                return Err(invalid(format!("bad NodePort range {lo}-{hi}")));
            }
            r.flags |= CFG_NODEPORT;
            r.nodeport_lo = lo;
            r.nodeport_hi = hi;
        }
        if let Some((lo, hi)) = self.snat_range {
            if lo > hi {
                return Err(invalid(format!("bad SNAT port range {lo}-{hi}")));
            }
            r.flags |= CFG_SNAT;
            r.snat_lo = lo;
            r.snat_hi = hi;
        }
        Ok(r)
    }

    /// The `owned_prefixes` entries: prefix -> counter class of a match. An error when
    /// there are more than the map holds (nothing would be steered for the rest).
    fn owned(&self) -> io::Result<BTreeMap<LpmKey, u32>> {
        let mut m = BTreeMap::new();
        for &ip in &self.external_ips {
            m.insert(lpm_key(ip, 32)?, Counter::External as u32);
        }
        for &(a, l) in &self.pod_cidrs {
            m.insert(lpm_key(a, l)?, Counter::PodCidr as u32);
        }
        if m.len() > MAX_OWNED_PREFIXES {
            return Err(invalid(format!(
                "uplink filter: {} owned prefixes (pod CIDRs + external/LoadBalancer IPs) exceed its capacity of {MAX_OWNED_PREFIXES}",
                m.len()
            )));
        }
        Ok(m)
    }
}

/// Shared, cloneable handle to a loaded program's XSK map; pass it to
/// `AfXdpPort::open` so the port inserts its socket at its queue id.
#[derive(Debug, Clone)]
pub struct XskMap {
    fd: Arc<OwnedFd>,
    attached: Option<(u32, AttachedMode)>,
}

impl XskMap {
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
    /// (ifindex, mode) of the program owning the map, if it is attached.
    pub fn attached(&self) -> Option<(u32, AttachedMode)> {
        self.attached
    }
    /// Point `queue_id` at the AF_XDP socket `xsk_fd`.
    pub fn insert(&self, queue_id: u32, xsk_fd: RawFd) -> io::Result<()> {
        let val: u32 = xsk_fd as u32;
        // SAFETY: key/value point to live u32s matching the map's key_size and
        // value_size (4/4); libbpf only reads them during the call.
        let rc = unsafe {
            bpf::bpf_map_update_elem(
                self.fd(),
                (&queue_id as *const u32).cast(),
                (&val as *const u32).cast(),
                0,
            )
        };
        check(rc, "update xsks_map")
    }
    /// Remove the socket at `queue_id` (closing the socket does this too).
    pub fn remove(&self, queue_id: u32) -> io::Result<()> {
        // SAFETY: key points to a live u32 matching the map's key_size.
        let rc = unsafe { bpf::bpf_map_delete_elem(self.fd(), (&queue_id as *const u32).cast()) };
        check(rc, "delete from xsks_map")
    }
}

/// A loaded (and possibly attached) podswitch XDP program.
#[derive(Debug)]
pub struct XdpProgram {
    kind: ProgKind,
    prog: OwnedFd,
    cfg_map: OwnedFd,
    owned_map: OwnedFd,
    counters_map: OwnedFd,
    kernel_ports_map: OwnedFd,
    /// The ports set in `kernel_tcp_ports` by the last `set_config`.
    kernel_ports: std::sync::Mutex<std::collections::BTreeSet<u16>>,
    /// What `set_config` last wrote: the `owned_prefixes` entries (the map is ours from
    /// `load` on) and the configuration record. A publish diffs against this copy instead
    /// of walking the trie through the kernel, and writes nothing when it is unchanged.
    written: std::sync::Mutex<Written>,
    xsks: XskMap,
}

impl XdpProgram {
    /// Load the object into the kernel (both programs, fresh maps) without attaching.
    pub fn load(kind: ProgKind) -> io::Result<XdpProgram> {
        Self::load_as(kind, false)
    }

    /// Load the object with its programs marked as handling multi-buffer frames
    /// (`BPF_F_XDP_HAS_FRAGS`, what libbpf does for section `xdp.frags`): a veth with such a
    /// program accepts frames larger than a page, and AF_XDP sockets bound with
    /// `XDP_USE_SG` receive them as descriptor chains. Fails on kernels without XDP
    /// multi-buffer (before 5.18).
    pub fn load_frags(kind: ProgKind) -> io::Result<XdpProgram> {
        Self::load_as(kind, true)
    }

    fn load_as(kind: ProgKind, frags: bool) -> io::Result<XdpProgram> {
        let obj = if frags {
            open_load_frags()?
        } else {
            open_load()?
        };
        Self::from_loaded(kind, ObjGuard(obj))
    }

    fn from_loaded(kind: ProgKind, guard: ObjGuard) -> io::Result<XdpProgram> {
        let obj = guard.0;
        let sym = CString::new(kind.symbol()).map_err(|e| invalid(e.to_string()))?;
        // SAFETY: obj is valid and loaded; the returned pointer (if any) is owned by obj.
        let prog = unsafe { bpf::bpf_object__find_program_by_name(obj, sym.as_ptr()) };
        if prog.is_null() {
            return Err(invalid(format!("program {} not in object", kind.symbol())));
        }
        // SAFETY: prog is a valid program of the loaded obj.
        let prog_fd = dup_fd(unsafe { bpf::bpf_program__fd(prog) })?;
        let map_fd = |n: &str| -> io::Result<OwnedFd> {
            let c = CString::new(n).expect("no NUL");
            // SAFETY: obj is valid and loaded; c outlives the call.
            dup_fd(unsafe { bpf::bpf_object__find_map_fd_by_name(obj, c.as_ptr()) })
        };
        let xsks = map_fd("xsks_map")?;
        let cfg_map = map_fd("uplink_cfg")?;
        let owned_map = map_fd("owned_prefixes")?;
        let counters_map = map_fd("xdp_counters")?;
        let kernel_ports_map = map_fd("kernel_tcp_ports")?;
        drop(guard); // closes libbpf's fds; our dups keep program and maps alive.
        let cap = map_max_entries(owned_map.as_raw_fd())?;
        if cap as usize != MAX_OWNED_PREFIXES {
            return Err(invalid(format!(
                "owned_prefixes holds {cap} entries, MAX_OWNED_PREFIXES says {MAX_OWNED_PREFIXES}: uplink.c and xdp_prog.rs disagree"
            )));
        }
        Ok(XdpProgram {
            kind,
            prog: prog_fd,
            cfg_map,
            owned_map,
            counters_map,
            kernel_ports_map,
            kernel_ports: Default::default(),
            written: Default::default(),
            xsks: XskMap {
                fd: Arc::new(xsks),
                attached: None,
            },
        })
    }

    /// Load `xdp_uplink`, configure it and attach it to `ifname`.
    pub fn attach_uplink(
        ifname: &str,
        cfg: &UplinkConfig,
        mode: XdpMode,
    ) -> io::Result<XdpProgram> {
        let mut p = XdpProgram::load(ProgKind::Uplink)?;
        p.set_config(cfg)?;
        p.attach(ifname, mode)?;
        Ok(p)
    }

    /// Load `xdp_redirect_all` (pod-port mode) and attach it to `ifname`.
    pub fn attach_redirect_all(ifname: &str, mode: XdpMode) -> io::Result<XdpProgram> {
        let mut p = XdpProgram::load(ProgKind::RedirectAll)?;
        p.attach(ifname, mode)?;
        Ok(p)
    }

    /// Like [`XdpProgram::attach_redirect_all`], the program marked for multi-buffer frames
    /// (see [`XdpProgram::load_frags`]).
    pub fn attach_redirect_all_frags(ifname: &str, mode: XdpMode) -> io::Result<XdpProgram> {
        let mut p = XdpProgram::load_frags(ProgKind::RedirectAll)?;
        p.attach(ifname, mode)?;
        Ok(p)
    }

    pub fn kind(&self) -> ProgKind {
        self.kind
    }

    pub fn prog_fd(&self) -> RawFd {
        self.prog.as_raw_fd()
    }

    /// Handle to give to `AfXdpPort::open`.
    pub fn xsk_map(&self) -> XskMap {
        self.xsks.clone()
    }

    /// (ifindex, mode) if attached.
    pub fn attached(&self) -> Option<(u32, AttachedMode)> {
        self.xsks.attached
    }

    /// Write the uplink configuration (takes effect for the next packet).
    ///
    /// The owned prefixes are synchronised in three steps: add or update every wanted
    /// entry, write the configuration, delete the entries no longer wanted; an entry in
    /// both the old and the new configuration is never absent. A configuration that
    /// does not fit ([`MAX_OWNED_PREFIXES`]) or bad prefixes change nothing; when the
    /// kernel refuses an insert, the entries added by this call are removed again and
    /// the old configuration stays.
    pub fn set_config(&self, cfg: &UplinkConfig) -> io::Result<()> {
        let raw = cfg.to_raw()?;
        let want = cfg.owned()?;
        let fd = self.owned_map.as_raw_fd();
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let kernel_ports_same = {
            let k = self.kernel_ports.lock().unwrap_or_else(|e| e.into_inner());
            k.len() == cfg.kernel_tcp_ports.len()
                && cfg.kernel_tcp_ports.iter().all(|p| k.contains(p))
        };
        if written.owned == want && written.cfg == Some(raw) && kernel_ports_same {
            return Ok(());
        }
        let have = written.owned.clone();
        let mut added: Vec<LpmKey> = Vec::new();
        for (k, &v) in &want {
            if have.get(k) == Some(&v) {
                continue;
            }
            if let Err(e) = lpm_update(fd, k, v) {
                // Back to what was there: remove what we added, restore what we changed.
                for a in &added {
                    match have.get(a) {
                        Some(&old) => lpm_update(fd, a, old).ok(),
                        None => lpm_delete(fd, a).ok(),
                    };
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "uplink filter: cannot add {}/{} ({} prefixes wanted): {e}",
                        Ipv4Addr::from(k.addr),
                        k.prefixlen,
                        want.len()
                    ),
                ));
            }
            added.push(*k);
        }
        for k in &added {
            written.owned.insert(*k, want[k]);
        }
        // Kernel ports before the configuration: a health-check port is never steered.
        let mut kports = self.kernel_ports.lock().unwrap_or_else(|e| e.into_inner());
        for &p in &cfg.kernel_tcp_ports {
            if !kports.contains(&p) {
                array_set(self.kernel_ports_map.as_raw_fd(), p, 1)?;
                kports.insert(p);
            }
        }
        let key: u32 = 0;
        // SAFETY: key/value point to live values whose sizes match the map's
        // key_size (4) and value_size (28, asserted above against uplink.c).
        let rc = unsafe {
            bpf::bpf_map_update_elem(
                self.cfg_map.as_raw_fd(),
                (&key as *const u32).cast(),
                (&raw as *const UplinkConfigRaw).cast(),
                0,
            )
        };
        check(rc, "update uplink_cfg")?;
        written.cfg = Some(raw);
        let gone: Vec<u16> = kports
            .iter()
            .copied()
            .filter(|p| !cfg.kernel_tcp_ports.contains(p))
            .collect();
        for p in gone {
            match array_set(self.kernel_ports_map.as_raw_fd(), p, 0) {
                Ok(()) => {
                    kports.remove(&p);
                }
                Err(e) => eprintln!("podswitchd: uplink filter: cannot release TCP port {p}: {e}"),
            }
        }
        // The new configuration is live from here on: a stale prefix that cannot be removed
        // only steers a little more to podswitch (which drops what it does not own, counted),
        // so it is reported, not turned into a failed change that is in fact half applied
        // (and kept in `written`, so the next publish tries again).
        let stale: Vec<(LpmKey, u32)> = have
            .iter()
            .filter(|(k, _)| !want.contains_key(k))
            .map(|(k, v)| (*k, *v))
            .collect();
        let mut now = want;
        for (k, v) in &stale {
            match lpm_delete(fd, k) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    eprintln!(
                        "podswitchd: uplink filter: cannot remove {}/{}: {e}",
                        Ipv4Addr::from(k.addr),
                        k.prefixlen
                    );
                    now.insert(*k, *v);
                }
                _ => {}
            }
        }
        written.owned = now;
        Ok(())
    }

    /// The owned prefixes the program currently matches, as (prefix, length, counter
    /// class), sorted.
    pub fn owned_prefixes(&self) -> io::Result<Vec<(Ipv4Addr, u8, Counter)>> {
        Ok(lpm_entries(self.owned_map.as_raw_fd())?
            .into_iter()
            .map(|(k, v)| {
                let c = Counter::ALL
                    .get(v as usize)
                    .copied()
                    .unwrap_or(Counter::PodCidr);
                (Ipv4Addr::from(k.addr), k.prefixlen as u8, c)
            })
            .collect())
    }

    /// Counter value summed over all possible CPUs.
    pub fn counter(&self, c: Counter) -> io::Result<u64> {
        let ncpu = possible_cpus()?;
        let mut vals = vec![0u64; ncpu];
        let key = c as u32;
        // SAFETY: for a per-CPU array the kernel writes value_size (8, rounded
        // to 8) bytes for each possible CPU: `vals` has exactly that many u64s.
        let rc = unsafe {
            bpf::bpf_map_lookup_elem(
                self.counters_map.as_raw_fd(),
                (&key as *const u32).cast(),
                vals.as_mut_ptr().cast(),
            )
        };
        check(rc, "lookup xdp_counters")?;
        Ok(vals.iter().sum())
    }

    /// All counters, indexed by `Counter as usize`.
    pub fn counters(&self) -> io::Result<[u64; N_COUNTERS]> {
        let mut out = [0; N_COUNTERS];
        for c in Counter::ALL {
            out[c as usize] = self.counter(c)?;
        }
        Ok(out)
    }

    /// Run the program once on `pkt` with BPF_PROG_TEST_RUN; returns the XDP action
    /// (2 = XDP_PASS; 4 = XDP_REDIRECT is never seen here as test-run has no socket,
    /// use the counters to see the classification).
    pub fn test_run(&self, pkt: &[u8]) -> io::Result<u32> {
        let mut data = pkt.to_vec();
        let mut out = vec![0u8; pkt.len() + 512];
        let mut out_len = out.len() as u32;
        let (mut ret, mut dur) = (0u32, 0u32);
        // SAFETY: all pointers reference live local buffers; out_len holds the
        // capacity of `out` on entry, as the kernel expects.
        let rc = unsafe {
            bpf::bpf_prog_test_run(
                self.prog_fd(),
                1,
                data.as_mut_ptr().cast(),
                data.len() as u32,
                out.as_mut_ptr().cast(),
                &mut out_len,
                &mut ret,
                &mut dur,
            )
        };
        check(rc, "bpf_prog_test_run")?;
        Ok(ret)
    }

    /// Attach to `ifname`, replacing whatever XDP program is there.
    pub fn attach(&mut self, ifname: &str, mode: XdpMode) -> io::Result<AttachedMode> {
        let ifindex = ifindex(ifname)?;
        let try_mode = |m: AttachedMode| -> io::Result<()> {
            // Kernel refuses native+generic at once: clear the other mode first
            // (no-op when nothing is attached there).
            set_link_xdp(ifindex, -1, m.other().flags()).ok();
            // No UPDATE_IF_NOEXIST: replaces a leftover program of this mode.
            set_link_xdp(ifindex, self.prog.as_raw_fd(), m.flags())
        };
        let got = match mode {
            XdpMode::Native => try_mode(AttachedMode::Native).map(|_| AttachedMode::Native),
            XdpMode::Generic => try_mode(AttachedMode::Generic).map(|_| AttachedMode::Generic),
            XdpMode::Auto => match try_mode(AttachedMode::Native) {
                Ok(()) => Ok(AttachedMode::Native),
                Err(native_err) => try_mode(AttachedMode::Generic)
                    .map(|_| AttachedMode::Generic)
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("{ifname}: native: {native_err}; generic: {e}"),
                        )
                    }),
            },
        }?;
        self.xsks.attached = Some((ifindex, got));
        Ok(got)
    }

    /// Detach this program from its interface (only if it is still the one attached).
    pub fn detach(&mut self) -> io::Result<()> {
        if let Some((ifindex, mode)) = self.xsks.attached.take() {
            let mut info = bpf::xdp_link_info::default();
            // SAFETY: info is a live, correctly sized xdp_link_info.
            let rc = unsafe {
                bpf::bpf_get_link_xdp_info(
                    ifindex as i32,
                    &mut info,
                    std::mem::size_of::<bpf::xdp_link_info>() as bpf::size_t,
                    0,
                )
            };
            check(rc, "bpf_get_link_xdp_info")?;
            let attached_id = match mode {
                AttachedMode::Native => info.drv_prog_id,
                AttachedMode::Generic => info.skb_prog_id,
            };
            if attached_id != 0 && attached_id == prog_id(self.prog.as_raw_fd())? {
                set_link_xdp(ifindex, -1, mode.flags())?;
            }
        }
        Ok(())
    }
}

/// The literal "let libbpf load its default program" option: calls the
/// vendored libbpf's `xsk_setup_xdp_prog`, which loads libbpf's built-in
/// redirect program (same semantics as `xdp_redirect_all`) in whatever mode the
/// kernel picks (no flags: native when the driver supports it) - or, if ANY
/// XDP program is already attached, silently reuses that program's map named
/// `xsks_map` (e.g. a leftover `xdp_uplink`!) and fails with ENOENT when it has
/// none. Prefer [`XdpProgram::attach_redirect_all`]; this exists for parity
/// with the `afxdp` crate's behaviour.
pub fn libbpf_default_program(ifname: &str) -> io::Result<XskMap> {
    let ifindex = ifindex(ifname)?;
    let mut fd: i32 = -1;
    // SAFETY: fd is a live c_int the call writes the map fd into; libbpf keeps
    // no pointer to it.
    let rc = unsafe { bpf::xsk_setup_xdp_prog(ifindex as i32, &mut fd) };
    check(rc, "xsk_setup_xdp_prog")?;
    if fd < 0 {
        return Err(io::Error::other("xsk_setup_xdp_prog returned no map"));
    }
    // SAFETY: libbpf hands us this map fd and does not close or reuse it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let (drv, skb) = attached_ids(ifname)?;
    let mode = if drv != 0 {
        Some(AttachedMode::Native)
    } else if skb != 0 {
        Some(AttachedMode::Generic)
    } else {
        None
    };
    Ok(XskMap {
        fd: Arc::new(owned),
        attached: mode.map(|m| (ifindex, m)),
    })
}

/// Remove any XDP program (native and generic) from `ifname`.
pub fn detach(ifname: &str) -> io::Result<()> {
    let ifindex = ifindex(ifname)?;
    let a = set_link_xdp(ifindex, -1, bpf::XDP_FLAGS_DRV_MODE);
    let b = set_link_xdp(ifindex, -1, bpf::XDP_FLAGS_SKB_MODE);
    a.and(b)
}

/// Ids of the programs currently attached to `ifname`: (native, generic); 0 = none.
pub fn attached_ids(ifname: &str) -> io::Result<(u32, u32)> {
    let ifindex = ifindex(ifname)?;
    let mut info = bpf::xdp_link_info::default();
    // SAFETY: info is a live, correctly sized xdp_link_info.
    let rc = unsafe {
        bpf::bpf_get_link_xdp_info(
            ifindex as i32,
            &mut info,
            std::mem::size_of::<bpf::xdp_link_info>() as bpf::size_t,
            0,
        )
    };
    check(rc, "bpf_get_link_xdp_info")?;
    Ok((info.drv_prog_id, info.skb_prog_id))
}

/// Opens and loads the embedded object (all programs as plain XDP); the caller owns it.
fn open_load() -> io::Result<*mut bpf::bpf_object> {
    let name = CString::new("podswitch").map_err(|e| invalid(e.to_string()))?;
    let opts = bpf::bpf_object_open_opts {
        sz: std::mem::size_of::<bpf::bpf_object_open_opts>() as bpf::size_t,
        object_name: name.as_ptr(),
        ..Default::default()
    };
    // SAFETY: BPF_OBJECT is a 'static byte slice; libbpf copies what it needs
    // out of it during open; opts/name outlive the call.
    let obj = unsafe {
        bpf::bpf_object__open_mem(
            BPF_OBJECT.as_ptr().cast(),
            BPF_OBJECT.len() as bpf::size_t,
            &opts,
        )
    };
    // SAFETY: libbpf_get_error only inspects the pointer value (ERR_PTR encoding).
    let err = unsafe { bpf::libbpf_get_error(obj.cast()) };
    if obj.is_null() || err != 0 {
        let e = if err != 0 {
            -(err as i32)
        } else {
            libc::EINVAL
        };
        return Err(io::Error::new(
            io::Error::from_raw_os_error(e).kind(),
            format!("bpf_object__open_mem: {}", io::Error::from_raw_os_error(e)),
        ));
    }
    let guard = ObjGuard(obj);
    // SAFETY: obj is a valid, not yet loaded bpf_object owned by `guard`; the
    // program pointers returned by bpf_program__next belong to it.
    unsafe {
        let mut p = bpf::bpf_program__next(std::ptr::null_mut(), obj);
        while !p.is_null() {
            bpf::bpf_program__set_xdp(p);
            p = bpf::bpf_program__next(p, obj);
        }
    }
    // SAFETY: obj is valid (see above).
    let rc = unsafe { bpf::bpf_object__load(obj) };
    check(
        rc,
        "bpf_object__load (run with libbpf warnings on stderr for the verifier log)",
    )?;
    Ok(std::mem::ManuallyDrop::new(guard).0)
}

/// `BPF_F_XDP_HAS_FRAGS` (uapi/linux/bpf.h): the program handles multi-buffer frames.
const BPF_F_XDP_HAS_FRAGS: i32 = 1 << 5;

/// Like [`open_load`], every program loaded with `BPF_F_XDP_HAS_FRAGS`. The vendored libbpf
/// (0.3) has no per-program flag setter and predates the `xdp.frags` section name; its
/// `bpf_prog_load_xattr` sets the flags but reads a file, so the object is handed over
/// through a memfd.
fn open_load_frags() -> io::Result<*mut bpf::bpf_object> {
    let fname = c"podswitch-bpf";
    // SAFETY: plain memfd_create with a valid NUL-terminated name.
    let raw = unsafe { libc::memfd_create(fname.as_ptr(), libc::MFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw is a fresh fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, BPF_OBJECT)?;
    let path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| invalid(e.to_string()))?;
    let attr = bpf::bpf_prog_load_attr {
        file: path.as_ptr(),
        prog_type: bpf::BPF_PROG_TYPE_XDP,
        prog_flags: BPF_F_XDP_HAS_FRAGS,
        ..Default::default()
    };
    let mut obj: *mut bpf::bpf_object = std::ptr::null_mut();
    let mut first_fd: i32 = -1;
    // SAFETY: attr and path outlive the call; obj/first_fd are live out-parameters. On
    // success libbpf hands us the loaded object (closed by the caller's ObjGuard).
    let rc = unsafe { bpf::bpf_prog_load_xattr(&attr, &mut obj, &mut first_fd) };
    check(
        rc,
        "load XDP programs with BPF_F_XDP_HAS_FRAGS (multi-buffer)",
    )?;
    if obj.is_null() {
        return Err(io::Error::other("bpf_prog_load_xattr returned no object"));
    }
    Ok(obj)
}

// ---------------------------------------------------------------------------

struct ObjGuard(*mut bpf::bpf_object);
impl Drop for ObjGuard {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful bpf_object__open_mem and is
        // closed exactly once, here.
        unsafe { bpf::bpf_object__close(self.0) }
    }
}

fn set_link_xdp(ifindex: u32, fd: RawFd, flags: u32) -> io::Result<()> {
    // SAFETY: plain netlink request; no pointers passed.
    let rc = unsafe { bpf::bpf_set_link_xdp_fd(ifindex as i32, fd, flags) };
    check(rc, if fd < 0 { "detach XDP" } else { "attach XDP" })
}

fn prog_id(fd: RawFd) -> io::Result<u32> {
    let mut info = bpf::bpf_prog_info::default();
    let mut len = std::mem::size_of::<bpf::bpf_prog_info>() as u32;
    // SAFETY: info is live and `len` is its size; the kernel writes at most len bytes.
    let rc = unsafe {
        bpf::bpf_obj_get_info_by_fd(fd, (&mut info as *mut bpf::bpf_prog_info).cast(), &mut len)
    };
    check(rc, "bpf_obj_get_info_by_fd")?;
    Ok(info.id)
}

pub(crate) fn ifindex(ifname: &str) -> io::Result<u32> {
    let c = CString::new(ifname).map_err(|_| invalid("interface name contains NUL".into()))?;
    // SAFETY: c is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{ifname}: {e}")));
    }
    Ok(idx)
}

fn dup_fd(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(if fd < -1 {
            -fd
        } else {
            libc::ENOENT
        }));
    }
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd; returns a new fd that we own.
    let nfd = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if nfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: nfd is a freshly created fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(nfd) })
}

fn possible_cpus() -> io::Result<usize> {
    // Format like "0-1" or "0,2-5".
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut n = 0;
    for part in s.trim().split(',') {
        let mut it = part.split('-');
        let a: usize = it
            .next()
            .unwrap_or("0")
            .parse()
            .map_err(|_| invalid(s.clone()))?;
        let b: usize = match it.next() {
            Some(b) => b.parse().map_err(|_| invalid(s.clone()))?,
            None => a,
        };
        n = n.max(b + 1);
    }
    Ok(n)
}

/// libbpf 0.3 returns negative errno (sometimes -1 with errno set).
fn check(rc: i32, what: &str) -> io::Result<()> {
    if rc >= 0 {
        return Ok(());
    }
    let e = if rc == -1 {
        io::Error::last_os_error()
    } else {
        io::Error::from_raw_os_error(-rc)
    };
    Err(io::Error::new(e.kind(), format!("{what}: {e}")))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}
