//! A small rtnetlink client: just the link, address and route requests the plugin makes.
//! Messages are built and parsed here; the socket syscalls live in `sys`.

use crate::sys::NetlinkSocket;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLMSGERR_ATTR_MSG: u16 = 1;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const IFF_UP: u32 = 0x1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;
const AF_INET: u8 = libc::AF_INET as u8;

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    pub mtu: u32,
    pub up: bool,
    pub kind: Option<String>,
}

/// An IPv4 route from the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route4 {
    pub dst: Ipv4Addr,
    pub dst_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

/// An error from the kernel (errno and its extended-ack text) or the socket.
#[derive(Debug)]
pub struct NlError {
    pub errno: i32,
    pub msg: String,
}

impl std::fmt::Display for NlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let os = io::Error::from_raw_os_error(self.errno);
        if self.msg.is_empty() {
            write!(f, "{os}")
        } else {
            write!(f, "{os} ({})", self.msg)
        }
    }
}

impl From<io::Error> for NlError {
    fn from(e: io::Error) -> Self {
        NlError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            msg: String::new(),
        }
    }
}

pub type NlResult<T> = Result<T, NlError>;

/// Appends netlink attributes (TLV, 4-byte aligned) to a message body.
#[derive(Default)]
struct Body(Vec<u8>);

impl Body {
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = 4 + value.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.pad()
    }
    fn attr_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }
    fn attr_u32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.attr(kind, &v.to_ne_bytes())
    }
    /// Opens a nested attribute; `end` fills in its length.
    fn begin(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }
    fn end(&mut self, at: usize) -> &mut Self {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self.pad()
    }
    fn pad(&mut self) -> &mut Self {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

/// Iterates the attributes in `buf` as (type without flags, value).
fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at + 4 > buf.len() {
            return None;
        }
        let len = u16::from_ne_bytes([buf[at], buf[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & 0x3fff;
        if len < 4 || at + len > buf.len() {
            return None;
        }
        let value = &buf[at + 4..at + len];
        at += (len + 3) & !3;
        Some((kind, value))
    })
}

fn ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from)
}

fn u32_of(v: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(v).ok().map(u32::from_ne_bytes)
}

fn c_string(v: &[u8]) -> String {
    let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

fn parse_link(body: &[u8]) -> Option<Link> {
    if body.len() < 16 {
        return None;
    }
    let index = u32::from_ne_bytes(body[4..8].try_into().ok()?);
    let flags = u32::from_ne_bytes(body[8..12].try_into().ok()?);
    let mut link = Link {
        index,
        name: String::new(),
        mac: [0; 6],
        mtu: 0,
        up: flags & IFF_UP != 0,
        kind: None,
    };
    for (kind, v) in attrs(&body[16..]) {
        match kind {
            IFLA_IFNAME => link.name = c_string(v),
            IFLA_MTU => link.mtu = u32_of(v).unwrap_or(0),
            IFLA_ADDRESS => {
                if let Ok(m) = <[u8; 6]>::try_from(v) {
                    link.mac = m;
                }
            }
            IFLA_LINKINFO => {
                for (k, iv) in attrs(v) {
                    if k == IFLA_INFO_KIND {
                        link.kind = Some(c_string(iv));
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

/// A route-netlink socket in the namespace of the thread that opened it.
pub struct Netlink {
    sock: NetlinkSocket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    pub fn open() -> NlResult<Self> {
        Ok(Netlink {
            sock: NetlinkSocket::open()?,
            seq: 1,
            buf: vec![0; 1 << 16],
        })
    }

    /// Sends one request and collects the reply bodies (one for a get, many for a dump)
    /// until the ack, the error or the end of the dump.
    fn exchange(&mut self, kind: u16, flags: u16, body: &[u8]) -> NlResult<Vec<(u16, Vec<u8>)>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut msg = Vec::with_capacity(NLMSG_HDR + body.len());
        msg.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        self.sock.send(&msg)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            let mut at = 0usize;
            while at + NLMSG_HDR <= n {
                let b = &self.buf[at..n];
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let ty = u16::from_ne_bytes([b[4], b[5]]);
                let mseq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
                if len < NLMSG_HDR || len > b.len() {
                    return Err(NlError {
                        errno: libc::EBADMSG,
                        msg: "truncated netlink message".into(),
                    });
                }
                let payload = &b[NLMSG_HDR..len];
                at += (len + 3) & !3;
                if mseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        let errno = payload
                            .get(..4)
                            .and_then(|e| <[u8; 4]>::try_from(e).ok())
                            .map(i32::from_ne_bytes)
                            .unwrap_or(-libc::EBADMSG);
                        if errno == 0 {
                            return Ok(out);
                        }
                        return Err(NlError {
                            errno: -errno,
                            msg: ext_ack_text(payload),
                        });
                    }
                    _ => {
                        out.push((ty, payload.to_vec()));
                        if !dump {
                            return Ok(out);
                        }
                    }
                }
            }
        }
    }

    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> NlResult<()> {
        self.exchange(kind, flags | NLM_F_ACK, body).map(|_| ())
    }

    /// The link called `name`, or None when there is none.
    pub fn link(&mut self, name: &str) -> NlResult<Option<Link>> {
        let mut b = Body::default();
        b.bytes(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        match self.exchange(RTM_GETLINK, 0, &b.0) {
            Ok(msgs) => Ok(msgs
                .iter()
                .find(|(t, _)| *t == RTM_NEWLINK)
                .and_then(|(_, body)| parse_link(body))),
            Err(e) if e.errno == libc::ENODEV => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> NlResult<Vec<Link>> {
        let mut b = Body::default();
        b.bytes(&ifinfomsg(0, 0, 0));
        let msgs = self.exchange(RTM_GETLINK, NLM_F_DUMP, &b.0)?;
        Ok(msgs
            .iter()
            .filter(|(t, _)| *t == RTM_NEWLINK)
            .filter_map(|(_, body)| parse_link(body))
            .collect())
    }

    /// Creates the veth pair `host` <-> `peer`; the peer is created directly inside the
    /// namespace `peer_netns` with its MAC, both ends with `mtu`. Fails with EEXIST if
    /// either name is taken.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: RawFd,
        peer_mac: [u8; 6],
        mtu: u32,
    ) -> NlResult<()> {
        let mut b = Body::default();
        b.bytes(&ifinfomsg(0, 0, 0))
            .attr_str(IFLA_IFNAME, host)
            .attr_u32(IFLA_MTU, mtu);
        let info = b.begin(IFLA_LINKINFO);
        b.attr_str(IFLA_INFO_KIND, "veth");
        let data = b.begin(IFLA_INFO_DATA);
        let p = b.begin(VETH_INFO_PEER);
        b.bytes(&ifinfomsg(0, 0, 0))
            .attr_str(IFLA_IFNAME, peer)
            .attr_u32(IFLA_MTU, mtu)
            .attr(IFLA_ADDRESS, &peer_mac)
            .attr_u32(IFLA_NET_NS_FD, peer_netns as u32);
        b.end(p);
        b.end(data);
        b.end(info);
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &b.0)
    }

    /// Sets link `index`'s MAC and MTU.
    pub fn set_mac_mtu(&mut self, index: u32, mac: [u8; 6], mtu: u32) -> NlResult<()> {
        let mut b = Body::default();
        b.bytes(&ifinfomsg(index, 0, 0))
            .attr(IFLA_ADDRESS, &mac)
            .attr_u32(IFLA_MTU, mtu);
        self.request(RTM_NEWLINK, 0, &b.0)
    }

    pub fn set_up(&mut self, index: u32) -> NlResult<()> {
        let mut b = Body::default();
        b.bytes(&ifinfomsg(index, IFF_UP, IFF_UP));
        self.request(RTM_NEWLINK, 0, &b.0)
    }

    /// Deletes the link `name`; Ok(false) when there was none.
    pub fn delete_link(&mut self, name: &str) -> NlResult<bool> {
        let mut b = Body::default();
        b.bytes(&ifinfomsg(0, 0, 0)).attr_str(IFLA_IFNAME, name);
        match self.request(RTM_DELLINK, 0, &b.0) {
            Ok(()) => Ok(true),
            Err(e) if e.errno == libc::ENODEV => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, len: u8) -> NlResult<()> {
        let mut b = Body::default();
        let mut hdr = [0u8; 8];
        hdr[0] = AF_INET;
        hdr[1] = len;
        hdr[4..8].copy_from_slice(&index.to_ne_bytes());
        b.bytes(&hdr)
            .attr(IFA_LOCAL, &ip.octets())
            .attr(IFA_ADDRESS, &ip.octets());
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &b.0)
    }

    /// The IPv4 addresses (with prefix length) on link `index`.
    pub fn addresses(&mut self, index: u32) -> NlResult<Vec<(Ipv4Addr, u8)>> {
        let mut b = Body::default();
        let mut hdr = [0u8; 8];
        hdr[0] = AF_INET;
        b.bytes(&hdr);
        let msgs = self.exchange(RTM_GETADDR, NLM_F_DUMP, &b.0)?;
        let mut out = Vec::new();
        for (_, body) in &msgs {
            if body.len() < 8 || body[0] != AF_INET {
                continue;
            }
            let len = body[1];
            let ifindex = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
            if ifindex != index {
                continue;
            }
            let ip = attrs(&body[8..])
                .find(|(k, _)| *k == IFA_LOCAL)
                .or_else(|| attrs(&body[8..]).find(|(k, _)| *k == IFA_ADDRESS))
                .and_then(|(_, v)| ipv4(v));
            if let Some(ip) = ip {
                out.push((ip, len));
            }
        }
        Ok(out)
    }

    /// Adds `dst/len via gateway dev index` to the main table.
    pub fn add_route(
        &mut self,
        dst: Ipv4Addr,
        len: u8,
        gateway: Ipv4Addr,
        index: u32,
    ) -> NlResult<()> {
        let mut b = Body::default();
        // rtmsg: family, dst_len, src_len, tos, table, protocol, scope (universe), type, flags
        let hdr = [
            AF_INET,
            len,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            0,
            RTN_UNICAST,
            0,
            0,
            0,
            0,
        ];
        b.bytes(&hdr);
        if len > 0 {
            b.attr(RTA_DST, &dst.octets());
        }
        b.attr(RTA_GATEWAY, &gateway.octets())
            .attr_u32(RTA_OIF, index);
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &b.0)
    }

    /// The IPv4 routes of the main table.
    pub fn routes(&mut self) -> NlResult<Vec<Route4>> {
        let mut b = Body::default();
        b.bytes(&[AF_INET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let msgs = self.exchange(RTM_GETROUTE, NLM_F_DUMP, &b.0)?;
        let mut out = Vec::new();
        for (_, body) in &msgs {
            if body.len() < 12 || body[0] != AF_INET || body[4] != RT_TABLE_MAIN {
                continue;
            }
            let mut r = Route4 {
                dst: Ipv4Addr::UNSPECIFIED,
                dst_len: body[1],
                gateway: None,
                oif: None,
            };
            for (k, v) in attrs(&body[12..]) {
                match k {
                    RTA_DST => r.dst = ipv4(v).unwrap_or(Ipv4Addr::UNSPECIFIED),
                    RTA_GATEWAY => r.gateway = ipv4(v),
                    RTA_OIF => r.oif = u32_of(v),
                    _ => {}
                }
            }
            out.push(r);
        }
        Ok(out)
    }
}

/// The kernel's extended-ack message in an NLMSG_ERROR payload, if it sent one.
fn ext_ack_text(payload: &[u8]) -> String {
    // errno (4) + the offending request's header (16), then TLVs when the ack is capped.
    let Some(rest) = payload.get(4 + NLMSG_HDR..) else {
        return String::new();
    };
    attrs(rest)
        .find(|(k, _)| *k == NLMSGERR_ATTR_MSG)
        .map(|(_, v)| c_string(v))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_round_trip() {
        let mut b = Body::default();
        let n = b.begin(IFLA_LINKINFO);
        b.attr_str(IFLA_INFO_KIND, "veth");
        b.end(n);
        b.attr_u32(IFLA_MTU, 1450);
        let got: Vec<_> = attrs(&b.0).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, IFLA_LINKINFO);
        let inner: Vec<_> = attrs(got[0].1).collect();
        assert_eq!(c_string(inner[0].1), "veth");
        assert_eq!(u32_of(got[1].1), Some(1450));
    }

    #[test]
    fn link_message_parses() {
        let mut b = Body::default();
        b.bytes(&ifinfomsg(7, IFF_UP, 0))
            .attr_str(IFLA_IFNAME, "psw0123456789ab")
            .attr_u32(IFLA_MTU, 1450)
            .attr(IFLA_ADDRESS, &[0x0a, 0x58, 10, 244, 1, 2]);
        let l = parse_link(&b.0).expect("link");
        assert_eq!(l.index, 7);
        assert_eq!(l.name, "psw0123456789ab");
        assert_eq!(l.mtu, 1450);
        assert!(l.up);
        assert_eq!(l.mac, [0x0a, 0x58, 10, 244, 1, 2]);
    }

    #[test]
    fn truncated_attributes_stop_cleanly() {
        let buf = [8u8, 0, 3, 0, b'a'];
        assert_eq!(attrs(&buf).count(), 0);
    }
}
