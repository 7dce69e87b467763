//! The few system calls the daemon makes directly: eventfd wake-ups, poll, peer
//! credentials, the cycle counter, stopping a listener and one netlink request (neighbour
//! resolution). All `unsafe` of the daemon lives here.

use std::os::fd::{AsRawFd, RawFd};

/// Reads the CPU cycle counter (falls back to nanoseconds off x86_64).
#[inline]
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions and touches no memory.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static T0: OnceLock<std::time::Instant> = OnceLock::new();
        T0.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
    }
}

/// An eventfd used to wake a worker sleeping in `poll`.
pub struct EventFd(RawFd);

impl EventFd {
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: plain syscall with constant flags; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(EventFd(fd))
    }
    pub fn fd(&self) -> RawFd {
        self.0
    }
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd; EAGAIN (counter full) is fine.
        unsafe { libc::write(self.0, (&one as *const u64).cast(), 8) };
    }
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd.
        unsafe { libc::read(self.0, (&mut v as *mut u64).cast(), 8) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: we own this fd and close it once.
        unsafe { libc::close(self.0) };
    }
}

/// Stops a listening TCP socket at once: its pending connections are reset and new ones
/// refused, while the fd stays open for whoever still holds it (and the port can be bound
/// again by a socket with SO_REUSEADDR). Linux: shutdown(SHUT_RD) disconnects a listener.
pub fn stop_listening(l: &std::net::TcpListener) {
    // SAFETY: plain syscall on a descriptor `l` keeps open; errors leave it as it was.
    unsafe { libc::shutdown(l.as_raw_fd(), libc::SHUT_RD) };
}

/// Waits until one of `fds` is readable or `timeout_ms` passes; false on a timeout.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> bool {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid array of pollfd of the given length for the call's duration.
    let n = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    // An error (EINTR) counts as a wake-up: the caller re-checks its queues either way.
    n != 0
}

/// The uid of the process at the other end of a Unix stream socket.
pub fn peer_uid(s: &impl AsRawFd) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes and sized for SO_PEERCRED.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Runs `f` with the process umask set to `mask` (e.g. so a socket is never created wider
/// than 0600, not even for the moment before its chmod).
pub fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask only swaps the process file-creation mask; it cannot fail.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let r = f();
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    r
}

pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// The interface index of `name` in this network namespace.
pub fn ifindex(name: &str) -> std::io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in name"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(i)
}

/// Asks the kernel to resolve (or refresh) its neighbour entry for `ip` on interface
/// `ifindex`, as `ip neigh replace IP dev DEV use` does: RTM_NEWNEIGH with NTF_USE makes
/// the kernel send an ARP request now if the entry is missing, stale or failed. Waits for
/// the kernel's acknowledgement.
pub fn neigh_use(ifindex: u32, ip: std::net::Ipv4Addr) -> std::io::Result<()> {
    const NDA_DST: u16 = 1;
    const NTF_USE: u8 = 0x01;
    const NUD_PERMANENT: u16 = 0x80; // ignored with NTF_USE; what iproute2 sends
    // nlmsghdr (16) + ndmsg (12) + rtattr NDA_DST (4 + 4)
    let mut msg = [0u8; 36];
    msg[0..4].copy_from_slice(&36u32.to_ne_bytes());
    msg[4..6].copy_from_slice(&libc::RTM_NEWNEIGH.to_ne_bytes());
    let flags =
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_REPLACE | libc::NLM_F_CREATE) as u16;
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence
    msg[16] = libc::AF_INET as u8;
    msg[20..24].copy_from_slice(&(ifindex as i32).to_ne_bytes());
    msg[24..26].copy_from_slice(&NUD_PERMANENT.to_ne_bytes());
    msg[26] = NTF_USE;
    msg[28..30].copy_from_slice(&8u16.to_ne_bytes());
    msg[30..32].copy_from_slice(&NDA_DST.to_ne_bytes());
    msg[32..36].copy_from_slice(&ip.octets());

    // SAFETY: plain socket creation with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created by us and is closed exactly once, by this guard.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a valid timeval for the call's duration; SO_RCVTIMEO bounds the wait.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        // Without the timeout the acknowledgement could be waited for forever.
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a zeroed sockaddr_nl with only the family set addresses the kernel (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `msg` and `kernel` are valid for reads of the given lengths.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut buf = [0u8; 512];
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // NLMSG_ERROR carries the errno (0 = ack) right after the 16-byte header.
    let n = n as usize;
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == libc::NLMSG_ERROR as u16 {
        let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if err != 0 {
            return Err(std::io::Error::from_raw_os_error(-err));
        }
    }
    Ok(())
}

/// The CPUs the calling thread may run on (its affinity mask).
pub fn allowed_cpus() -> std::io::Result<Vec<usize>> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live cpu_set_t and the size passed is its size; pid 0 = this thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `set` was filled by the kernel; CPU_ISSET only reads it, i < CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect())
}

/// Restricts the calling thread (and the threads it spawns afterwards) to `cpus`.
pub fn set_cpus(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET writes one bit of the live `set`; the bound is checked first.
        if c < libc::CPU_SETSIZE as usize {
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: `set` is a live cpu_set_t and the size passed is its size; pid 0 = this thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod affinity_tests {
    use super::*;

    #[test]
    fn a_thread_restricted_to_one_cpu_reports_it_and_spawns_within_it() {
        std::thread::spawn(|| {
            let all = allowed_cpus().expect("sched_getaffinity");
            assert!(!all.is_empty());
            let last = *all.last().expect("a cpu");
            set_cpus(&[last]).expect("sched_setaffinity");
            assert_eq!(allowed_cpus().expect("again"), vec![last]);
            // A thread spawned now inherits the mask (what the control side relies on).
            let child = std::thread::spawn(|| allowed_cpus().expect("child"))
                .join()
                .expect("child thread");
            assert_eq!(child, vec![last]);
        })
        .join()
        .expect("test thread");
    }
}
