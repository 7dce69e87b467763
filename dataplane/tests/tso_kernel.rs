//! Userspace TSO compared byte for byte with the kernel's GSO.
//!
//! In a network namespace of its own (the test thread unshares one, so it vanishes with the
//! thread), a veth pair with transmit checksumming, TSO and GSO off on one end: a packet
//! socket with `PACKET_VNET_HDR` sends a TCP super-frame with a virtio-net header asking for
//! segmentation (gso_type TCPV4, gso_size = MSS, checksum partial), the kernel segments it
//! in software before the device (`tcp_gso_segment`, full checksums as the device offers
//! none), and a packet socket on the other end captures the segments. `pipeline::tso` must
//! produce the same bytes from the same super-frame, whatever way its payload is chained.
//!
//! Needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN for unshare), `ip` and `ethtool`;
//! skipped with a message when not root, fails when root and the set-up is refused.

use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

use podswitch::daemon::sys::euid;
use podswitch::pipeline::tso::Plan;

const A: &str = "pswtso-a";
const B: &str = "pswtso-b";
const SPORT: u16 = 40000;
const DPORT: u16 = 5201;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;
const PACKET_VNET_HDR: libc::c_int = 15;

/// One super-frame to segment.
struct Case {
    name: &'static str,
    payload: usize,
    mss: usize,
    tcp_flags: u8,
    ip_id: u16,
    seq: u32,
    /// IPv4 options (a multiple of 4 bytes).
    ip_opts: &'static [u8],
}

const CASES: &[Case] = &[
    Case {
        name: "vxlan path mss, FIN PSH CWR, seq wraps",
        payload: 9000,
        mss: 1398,
        tcp_flags: 0x10 | 0x08 | 0x01 | 0x80,
        ip_id: 0x1234,
        seq: 0xffff_e000,
        ip_opts: &[],
    },
    Case {
        name: "64 KB, ip id wraps",
        payload: 64_000,
        mss: 1448,
        tcp_flags: 0x10 | 0x08,
        ip_id: 0xfffe,
        seq: 1,
        ip_opts: &[],
    },
    Case {
        name: "exact multiple of the mss, IPv4 options",
        payload: 4 * 1390,
        mss: 1390,
        tcp_flags: 0x10,
        ip_id: 7,
        seq: 0x1000_0000,
        ip_opts: &[1, 1, 1, 0],
    },
    Case {
        name: "one byte over one segment",
        payload: 1449,
        mss: 1448,
        tcp_flags: 0x10 | 0x08,
        ip_id: 0,
        seq: 99,
        ip_opts: &[],
    },
];

fn super_frame(c: &Case) -> Vec<u8> {
    let ihl = 20 + c.ip_opts.len();
    let thl = 32;
    let total = ihl + thl + c.payload;
    let mut f = vec![0u8; 14 + total];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..14 + ihl];
    ip[0] = 0x40 | (ihl / 4) as u8;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&c.ip_id.to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 244, 1, 10]);
    ip[16..20].copy_from_slice(&[10, 244, 2, 20]);
    ip[20..].copy_from_slice(c.ip_opts);
    let ck = csum(ip, 0);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    let t = 14 + ihl;
    f[t..t + 2].copy_from_slice(&SPORT.to_be_bytes());
    f[t + 2..t + 4].copy_from_slice(&DPORT.to_be_bytes());
    f[t + 4..t + 8].copy_from_slice(&c.seq.to_be_bytes());
    f[t + 8..t + 12].copy_from_slice(&0x0bad_cafeu32.to_be_bytes());
    f[t + 12] = ((thl / 4) as u8) << 4;
    f[t + 13] = c.tcp_flags;
    f[t + 14..t + 16].copy_from_slice(&502u16.to_be_bytes());
    // NOP, NOP, timestamps.
    f[t + 20..t + 32].copy_from_slice(&[1, 1, 8, 10, 0, 1, 2, 3, 4, 5, 6, 7]);
    for (i, b) in f[t + thl..].iter_mut().enumerate() {
        *b = (i * 7 % 253) as u8;
    }
    // What a GSO sender leaves in the checksum field: the pseudo-header sum, not complemented.
    let ph = pseudo([10, 244, 1, 10], [10, 244, 2, 20], (total - ihl) as u32);
    f[t + 16..t + 18].copy_from_slice(&(!csum(&[], ph)).to_be_bytes());
    f
}

fn csum(data: &[u8], mut acc: u32) -> u16 {
    let mut it = data.chunks_exact(2);
    for w in &mut it {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [b] = it.remainder() {
        acc += u32::from(*b) << 8;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

fn pseudo(src: [u8; 4], dst: [u8; 4], len: u32) -> u32 {
    let w = |a: [u8; 4]| {
        u32::from(u16::from_be_bytes([a[0], a[1]])) + u32::from(u16::from_be_bytes([a[2], a[3]]))
    };
    w(src) + w(dst) + 6 + len
}

fn vnet_hdr(c: &Case) -> [u8; 10] {
    let ihl = 20 + c.ip_opts.len();
    let hdr_len = (14 + ihl + 32) as u16;
    let mut h = [0u8; 10];
    h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h[1] = VIRTIO_NET_HDR_GSO_TCPV4
        | if c.tcp_flags & 0x80 != 0 {
            VIRTIO_NET_HDR_GSO_ECN
        } else {
            0
        };
    // Little-endian on this (x86/arm64 little-endian) machine's packet socket.
    h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    h[4..6].copy_from_slice(&(c.mss as u16).to_le_bytes());
    h[6..8].copy_from_slice(&((14 + ihl) as u16).to_le_bytes());
    h[8..10].copy_from_slice(&16u16.to_le_bytes());
    h
}

/// The segments pipeline::tso makes of `f` with its payload cut into `chunk`-byte buffers
/// after the headers (0: one buffer).
fn ours(f: &[u8], mss: usize, first: usize, chunk: usize) -> Vec<Vec<u8>> {
    let mut chain: Vec<&[u8]> = vec![&f[..first.min(f.len())]];
    let mut at = first.min(f.len());
    while at < f.len() {
        let end = if chunk == 0 {
            f.len()
        } else {
            (at + chunk).min(f.len())
        };
        chain.push(&f[at..end]);
        at = end;
    }
    let plan = Plan::new(&chain, mss).expect("plan");
    (0..plan.segments())
        .map(|k| {
            let mut out = vec![0u8; plan.segment_len(k)];
            plan.write(&chain, k, &mut out);
            out
        })
        .collect()
}

fn run(cmd: &str, args: &[&str]) -> io::Result<()> {
    let out = Command::new(cmd).args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn have(cmd: &str) -> bool {
    Command::new(cmd).arg("-V").output().is_ok() || Command::new(cmd).arg("help").output().is_ok()
}

/// A raw packet socket (closed on drop).
struct Sock(libc::c_int);

impl Drop for Sock {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor and close it once.
        unsafe { libc::close(self.0) };
    }
}

fn ifindex(name: &str) -> io::Result<libc::c_int> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i as libc::c_int)
}

fn ll_addr(ifindex: libc::c_int, proto: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = proto.to_be();
    a.sll_ifindex = ifindex;
    a.sll_halen = 6;
    a.sll_addr[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    a
}

fn packet_socket(ifindex: libc::c_int, proto: u16) -> io::Result<Sock> {
    // SAFETY: plain socket call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto.to_be())) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let s = Sock(fd);
    let a = ll_addr(ifindex, proto);
    // SAFETY: `a` is a valid sockaddr_ll and the length matches it.
    let r = unsafe {
        libc::bind(
            s.0,
            (&a as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(s)
}

fn set_int(s: &Sock, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: `v` lives across the call and the length is its size.
    let r = unsafe {
        libc::setsockopt(
            s.0,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn send_gso(tx: &Sock, ifindex: libc::c_int, c: &Case, frame: &[u8]) -> io::Result<()> {
    let mut buf = vnet_hdr(c).to_vec();
    buf.extend_from_slice(frame);
    let a = ll_addr(ifindex, 0x0800);
    // SAFETY: `buf` and `a` are valid for the call; lengths match them.
    let n = unsafe {
        libc::sendto(
            tx.0,
            buf.as_ptr().cast(),
            buf.len(),
            0,
            (&a as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    assert_eq!(n as usize, buf.len(), "short send");
    Ok(())
}

/// Receives frames of our flow until `want` arrived or 3 s passed.
fn capture(rx: &Sock, want: usize) -> Vec<Vec<u8>> {
    capture_where(rx, want, |f| is_ours(f, 0))
}

/// An IPv4 TCP frame of the test flow, its Ethernet header at `at`.
fn is_ours(f: &[u8], at: usize) -> bool {
    let f = &f[at.min(f.len())..];
    if f.len() < 38 || f[12..14] != [0x08, 0x00] || f[23] != 6 {
        return false;
    }
    let t = 14 + usize::from(f[14] & 0x0f) * 4;
    f.len() >= t + 4 && f[t..t + 2] == SPORT.to_be_bytes() && f[t + 2..t + 4] == DPORT.to_be_bytes()
}

/// A VXLAN frame (UDP 8472) carrying a frame of the test flow.
fn is_ours_in_vxlan(f: &[u8]) -> bool {
    f.len() > 50
        && f[12..14] == [0x08, 0x00]
        && f[23] == 17
        && f[36..38] == 8472u16.to_be_bytes()
        && is_ours(f, 50)
}

fn capture_where(rx: &Sock, want: usize, keep: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while got.len() < want && Instant::now() < deadline {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(rx.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue; // timeout (SO_RCVTIMEO) or interrupted: the deadline bounds the loop
        }
        let f = &buf[..n as usize];
        if keep(f) {
            got.push(f.to_vec());
        }
    }
    got
}

fn set_up() -> io::Result<(Sock, Sock, libc::c_int)> {
    // SAFETY: unshare only affects this thread (a test thread of its own, never reused for
    // another namespace); the namespace and its veth pair vanish when the thread ends.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    run("ip", &["link", "add", A, "type", "veth", "peer", "name", B])?;
    run("ip", &["link", "set", A, "up"])?;
    run("ip", &["link", "set", B, "up"])?;
    // No offload on A: the kernel segments and checksums in software before the device.
    run(
        "ethtool",
        &["-K", A, "tx", "off", "tso", "off", "gso", "off"],
    )?;
    // No coalescing on B: the capture sees the segments as they left A.
    let _ = run("ethtool", &["-K", B, "gro", "off"]);
    let ia = ifindex(A)?;
    let ib = ifindex(B)?;
    let rx = packet_socket(ib, libc::ETH_P_ALL as u16)?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: `tv` lives across the call and the length is its size.
    let r = unsafe {
        libc::setsockopt(
            rx.0,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    set_int(&rx, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20)?;
    let tx = packet_socket(ia, 0)?;
    set_int(&tx, libc::SOL_PACKET, PACKET_VNET_HDR, 1)?;
    Ok((tx, rx, ia))
}

#[test]
fn segments_equal_the_kernels_gso() {
    if euid() != 0 {
        eprintln!("skipped (not root): needs a network namespace and packet sockets");
        return;
    }
    if !have("ip") || !have("ethtool") {
        panic!("running as root but `ip` or `ethtool` is missing (scripts/deps.sh installs them)");
    }
    // A thread of its own: unshare(CLONE_NEWNET) changes only the calling thread.
    let r = std::thread::spawn(|| -> Result<usize, String> {
        let (tx, rx, ia) = set_up().map_err(|e| format!("set-up: {e}"))?;
        let mut compared = 0;
        for c in CASES {
            let f = super_frame(c);
            let want = ours(&f, c.mss, f.len(), 0);
            send_gso(&tx, ia, c, &f).map_err(|e| format!("{}: send: {e}", c.name))?;
            let got = capture(&rx, want.len());
            if got.len() != want.len() {
                return Err(format!(
                    "{}: kernel emitted {} segments, pipeline::tso made {}",
                    c.name,
                    got.len(),
                    want.len()
                ));
            }
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                if g != w {
                    let at = g.iter().zip(w).position(|(x, y)| x != y);
                    return Err(format!(
                        "{}: segment {k} differs (kernel {} bytes, ours {}; first difference at byte {at:?})\nkernel {:02x?}\nours   {:02x?}",
                        c.name,
                        g.len(),
                        w.len(),
                        &g[..g.len().min(80)],
                        &w[..w.len().min(80)]
                    ));
                }
            }
            // The same segments whatever way the payload is chained.
            let hdr = 14 + 20 + c.ip_opts.len() + 32;
            for (first, chunk) in [(hdr, 4096), (hdr + 1, 4093), (2000, 4000)] {
                if ours(&f, c.mss, first, chunk) != want {
                    return Err(format!("{}: chain ({first}, {chunk}) changes the segments", c.name));
                }
            }
            compared += got.len();
        }
        Ok(compared)
    })
    .join()
    .expect("test thread");
    match r {
        Ok(n) => eprintln!("{n} kernel segments compared byte for byte"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn segments_equal_what_a_kernel_vxlan_device_sends() {
    if euid() != 0 {
        eprintln!("skipped (not root): needs a network namespace and packet sockets");
        return;
    }
    // The super-frame goes into a kernel VXLAN device over the offload-less veth end: the
    // kernel encapsulates it whole and segments it (UDP tunnel GSO) before the veth.
    let r = std::thread::spawn(|| -> Result<usize, String> {
        let (_, rx, _) = set_up().map_err(|e| format!("set-up: {e}"))?;
        // Room for the 50 outer bytes on segments of a 1500-byte inner path.
        let setup: [&[&str]; 6] = [
            &["link", "set", A, "mtu", "1600"],
            &["link", "set", B, "mtu", "1600"],
            &["addr", "add", "192.168.77.1/24", "dev", A],
            &[
                "link",
                "add",
                "pswtso-vx",
                "type",
                "vxlan",
                "id",
                "1",
                "local",
                "192.168.77.1",
                "remote",
                "192.168.77.2",
                "dstport",
                "8472",
                "dev",
                A,
            ],
            &["link", "set", "pswtso-vx", "up"],
            &[
                "neigh",
                "replace",
                "192.168.77.2",
                "lladdr",
                "02:00:00:00:00:02",
                "dev",
                A,
            ],
        ];
        for a in setup {
            run("ip", a).map_err(|e| format!("set-up: {e}"))?;
        }
        let vx = ifindex("pswtso-vx").map_err(|e| format!("vxlan device: {e}"))?;
        let tx = packet_socket(vx, 0).map_err(|e| format!("socket: {e}"))?;
        set_int(&tx, libc::SOL_PACKET, PACKET_VNET_HDR, 1).map_err(|e| format!("vnet: {e}"))?;
        let mut compared = 0;
        for c in CASES {
            let f = super_frame(c);
            let want = ours(&f, c.mss, f.len(), 0);
            send_gso(&tx, vx, c, &f).map_err(|e| format!("{}: send: {e}", c.name))?;
            let got = capture_where(&rx, want.len(), is_ours_in_vxlan);
            if got.len() != want.len() {
                return Err(format!(
                    "{}: kernel VXLAN emitted {} segments, pipeline::tso made {}",
                    c.name,
                    got.len(),
                    want.len()
                ));
            }
            let id0 = u16::from_be_bytes([got[0][18], got[0][19]]);
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                if g[50..] != w[..] {
                    return Err(format!("{}: inner segment {k} differs", c.name));
                }
                // Outer headers per segment: lengths follow the segment, the identification
                // advances by one (podswitch's template sends DF with id 0 instead, RFC 6864).
                let ip_len = usize::from(u16::from_be_bytes([g[16], g[17]]));
                let udp_len = usize::from(u16::from_be_bytes([g[38], g[39]]));
                let id = u16::from_be_bytes([g[18], g[19]]);
                if ip_len != w.len() + 36 || udp_len != w.len() + 16 {
                    return Err(format!("{}: outer lengths of segment {k}", c.name));
                }
                if id != id0.wrapping_add(k as u16) {
                    return Err(format!("{}: outer id of segment {k}: {id:#x}", c.name));
                }
            }
            compared += got.len();
        }
        Ok(compared)
    })
    .join()
    .expect("test thread");
    match r {
        Ok(n) => eprintln!("{n} kernel VXLAN segments compared (inner byte for byte)"),
        Err(e) => panic!("{e}"),
    }
}
