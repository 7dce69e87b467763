//! A pod port over a tap device opened with virtio-net headers (`IFF_VNET_HDR`), the pod
//! interface VPP and Calico/VPP give pods. The device is the pod's own interface, in its
//! namespace; podswitchd holds its file descriptor. The kernel hands over and takes TCP
//! super-frames whole with a header saying what they are (segment size, partial checksum),
//! so a pod keeps TSO, GSO and checksum offload whatever its MTU, and nothing is segmented
//! or checksummed between the pod and the switch.
//!
//! The device is made by podswitch-cni (persistent, so it and the pod's addresses outlive
//! a podswitchd restart); the port only attaches to it, from a short-lived thread that
//! enters the pod's namespace (a tap is found by name in the namespace its opener is in).
//!
//! Receive reads one frame per `read`; transmit writes one per `writev` (header and the
//! frame's buffers). The kernel delivers a written frame to the pod's stack in that call:
//! there is no ring to fill and nothing to flush.

use super::{Port, PortStats, RxInfo};
use crate::limits::MAX_FRAME;
use crate::pipeline::batch::{MAX_CHAIN_FRAME, TxInfo};
use crate::wire::virtio_net::{self, Header};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Offloads the port accepts from the pod: partial checksums and IPv4 TCP super-frames
/// (with CWR). IPv6 and UDP super-frames are segmented by the pod's kernel.
const OFFLOADS: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO_ECN;

/// A received frame's header and bytes; room for the largest super-frame.
const RX_BUF: usize = virtio_net::LEN + MAX_CHAIN_FRAME;

pub struct TapPort {
    name: String,
    ifname: String,
    fd: OwnedFd,
    mtu: u16,
    buf: Box<[u8]>,
    /// Bytes in `buf` of a frame read but not taken by the last burst (0: none).
    pending: usize,
    stats: PortStats,
}

impl TapPort {
    /// Attaches to tap device `ifname` in the network namespace at `netns`, as port
    /// `name` whose pod has MTU `mtu`. The device must exist: a missing one is an error,
    /// never made here.
    pub fn open(name: &str, netns: &str, ifname: &str, mtu: u16) -> io::Result<TapPort> {
        let ns = File::open(netns)
            .map_err(|e| io::Error::new(e.kind(), format!("network namespace {netns}: {e}")))?;
        let c_name = CString::new(ifname)
            .ok()
            .filter(|c| c.as_bytes().len() < libc::IFNAMSIZ)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"))?;
        let fd = std::thread::scope(|s| {
            s.spawn(|| attach_in(&ns, &c_name))
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the attaching thread panicked")))
        })?;
        Ok(TapPort {
            name: name.to_string(),
            ifname: ifname.to_string(),
            fd,
            mtu,
            buf: vec![0u8; RX_BUF].into_boxed_slice(),
            pending: 0,
            stats: PortStats::default(),
        })
    }

    /// Reads the next frame into `buf`; its length with the header, or None when nothing
    /// is waiting.
    fn read_frame(&mut self) -> Option<usize> {
        if self.pending > 0 {
            return Some(std::mem::take(&mut self.pending));
        }
        // SAFETY: `buf` is valid for `buf.len()` writable bytes; the fd is our tap.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
            )
        };
        (n > 0).then_some(n as usize)
    }
}

/// On the calling thread, which it moves into `ns` for good (a thread of its own): the
/// tap's fd, attached with virtio-net headers and `OFFLOADS`, non-blocking.
fn attach_in(ns: &File, ifname: &CString) -> io::Result<OwnedFd> {
    // SAFETY: setns on this thread only (CLONE_NEWNET is per thread); `ns` is an open file.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::other(format!(
            "cannot enter the namespace: {}",
            io::Error::last_os_error()
        )));
    }
    let name = ifname.to_string_lossy();
    // SAFETY: a NUL-terminated name.
    if unsafe { libc::if_nametoindex(ifname.as_ptr()) } == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name} in the namespace"),
        ));
    }
    // SAFETY: a constant NUL-terminated path; the result is checked.
    let raw = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::other(format!(
            "cannot open /dev/net/tun: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: `raw` is a fresh descriptor owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero ifreq is valid; the name fits (checked by the caller) and keeps
    // its NUL.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.as_bytes()) {
        *d = *s as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF reads (and writes back) an ifreq we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } != 0 {
        let e = io::Error::last_os_error();
        let why = match e.raw_os_error() {
            Some(libc::EINVAL) => "not a tap device".to_string(),
            Some(libc::EBUSY) => "another process holds it".to_string(),
            _ => e.to_string(),
        };
        return Err(io::Error::new(
            e.kind(),
            format!("cannot attach to {name}: {why}"),
        ));
    }
    let hdr_len: libc::c_int = virtio_net::LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads an int we own; TUNSETOFFLOAD takes its value directly.
    let ok = unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) == 0
            && libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                OFFLOADS as libc::c_ulong,
            ) == 0
    };
    if !ok {
        return Err(io::Error::other(format!(
            "cannot set the offloads of {name}: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(fd)
}

impl Port for TapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn recv_burst(&mut self, max: usize, f: &mut dyn FnMut(&[&[u8]], RxInfo) -> bool) -> usize {
        let mut n = 0;
        while n < max {
            let Some(len) = self.read_frame() else { break };
            // A read shorter than the header is handed on empty: ethernet-input names it.
            let (info, frame) = match Header::parse(&self.buf[..len]) {
                Ok(h) => (
                    RxInfo {
                        segment_size: h.tcp_segment_size().unwrap_or(0),
                    },
                    &self.buf[virtio_net::LEN..len],
                ),
                Err(_) => (RxInfo::default(), &self.buf[..0]),
            };
            // Headers and what fits with them in one slot, the rest chained.
            let (head, tail) = frame.split_at(frame.len().min(MAX_FRAME));
            let taken = if tail.is_empty() {
                f(&[head], info)
            } else {
                f(&[head, tail], info)
            };
            if !taken {
                self.pending = len;
                break;
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += frame.len() as u64;
            n += 1;
        }
        n
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        self.send_chain(&[frame], TxInfo::default())
    }

    fn send_chain(&mut self, chain: &[&[u8]], tx: TxInfo) -> bool {
        let Some(&head) = chain.first() else {
            return false;
        };
        if chain.len() > 3 {
            return false;
        }
        let len: usize = chain.iter().map(|b| b.len()).sum();
        let csum = tx.csum.map(|c| (c.start, c.offset));
        let hdr = Header::for_frame(head, len, self.mtu, csum, tx.segment_size).to_bytes();
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 4];
        iov[0] = libc::iovec {
            iov_base: hdr.as_ptr() as *mut libc::c_void,
            iov_len: hdr.len(),
        };
        for (v, b) in iov[1..].iter_mut().zip(chain) {
            *v = libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            };
        }
        // SAFETY: every iovec points into a buffer borrowed for this call; writev only
        // reads them.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 1 + chain.len() as i32) };
        if n < 0 {
            self.stats.tx_ring_full += 1;
            return false;
        }
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        true
    }

    fn offloads_tx_csum(&self) -> bool {
        true
    }

    fn flush(&mut self) {}

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn mode(&self) -> String {
        format!("tap {} vnet_hdr csum+tso4", self.ifname)
    }
}
