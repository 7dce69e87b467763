//! `AfXdpPort`: one AF_XDP socket per (interface, queue) implementing [`Port`].
//!
//! Why raw syscalls instead of the `afxdp` crate (0.4): its `Umem<'a>` /
//! `Socket<'a>` / `BufMmap<'a>` types are tied together by a lifetime and
//! `Arc`s, its buffers are handed out as `&'a mut [u8]` slices into the shared
//! mmap (so getting an owned, `Send`, `'static` port means leaking the UMEM),
//! and its `Socket::new` always lets the vendored 2020 libbpf load/reuse its
//! own XDP program with `XDP_FLAGS_UPDATE_IF_NOEXIST` (a leftover program from a
//! crashed run - or our uplink filter - would be silently reused). The AF_XDP
//! socket API is small (socket, 4 ring setsockopts, UMEM_REG, mmap, bind) and
//! the rings are a textbook single-producer/single-consumer protocol, so doing
//! it directly gives an owned struct whose `Drop` unmaps/closes everything, with
//! no lifetimes and no leaks. `libbpf-sys` (the same version `afxdp` uses) is
//! still used, in `xdp_prog.rs`, to load and attach the XDP programs.
//!
//! All `unsafe` of the I/O path is in this file.
//!
//! Buffer model (copy semantics, matching the `Port` trait):
//! * UMEM = `rx_frames + tx_frames` chunks of `frame_size` bytes (aligned mode).
//!   Chunks `[0, rx_frames)` belong to RX, the rest to TX; they never mix.
//! * RX chunks cycle fill ring -> kernel -> rx ring -> callback -> free list ->
//!   fill ring. The fill ring is topped up on every `recv_burst` and `flush`.
//! * TX chunks cycle free list -> `send` (copy) -> tx ring -> kernel ->
//!   completion ring -> free list (in `flush`, or in `send` when out of chunks).
//!
//! Frame layout: the kernel writes RX data at chunk + XDP_PACKET_HEADROOM (256)
//! and the descriptor address already includes that offset, so the largest
//! frame a 4096-byte chunk receives is 3840 bytes (1792 for 2048-byte chunks).
//! TX frames are written at the chunk start, up to `frame_size` bytes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

use super::xdp_prog::{self, AttachedMode, XdpMode, XdpProgram, XskMap};
use super::{Port, PortStats, RxInfo};
use crate::pipeline::batch::{TxCsum, TxInfo};

/// `XDP_MAX_TX_SKB_BUDGET` (uapi/linux/if_xdp.h, Linux 6.17+; not in libc yet).
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

/// Kernel headroom in front of every received frame (XDP_PACKET_HEADROOM).
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// Zero-copy request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroCopy {
    /// Try XDP_ZEROCOPY (only when the program runs in native mode), then XDP_COPY.
    #[default]
    Auto,
    On,
    Off,
}

/// How to open a port.
#[derive(Debug, Clone)]
pub struct PortOptions {
    /// `None`: attach our redirect-everything program (`xdp_redirect_all`, same
    /// semantics as libbpf's default xsk program) to the interface, owned by
    /// this port. Use this for pod ports with ONE queue only: a second port on
    /// the same interface would replace it. `Some(map)`: a program we loaded
    /// (e.g. `XdpProgram::attach_uplink`); the socket is inserted into its
    /// XSK map at `queue_id` and no program is loaded here.
    pub program: Option<XskMap>,
    /// Attach mode when `program` is `None` (native, then generic for `Auto`).
    pub xdp_mode: XdpMode,
    pub zero_copy: ZeroCopy,
    /// UMEM chunk size: power of two in 2048..=4096 (page size).
    pub frame_size: u32,
    /// Size of the rx, tx, fill and completion rings (power of two).
    pub ring_size: u32,
    /// RX chunks (>= ring_size so the fill ring can be kept full; default 2 x ring).
    pub rx_frames: u32,
    /// TX chunks (default = ring_size).
    pub tx_frames: u32,
    /// Carry frames larger than one chunk (AF_XDP multi-buffer): bind with `XDP_USE_SG` and,
    /// when this port attaches its own program, attach it marked for multi-buffer frames
    /// (`xdp.frags`), which also lets the veth's peer hand over GSO super-frames. When the
    /// kernel refuses, the port opens single-buffer and says why in `mode()`.
    pub multi_buffer: bool,
    /// Complete TCP/UDP checksums on transmit (`Port::offloads_tx_csum`): the UMEM gets room
    /// for transmit metadata (`tx_metadata_len`) and a frame's `TxCsum` becomes a checksum
    /// request (`XDP_TXMD_FLAGS_CHECKSUM`) in front of it. In copy mode the kernel hands the
    /// frame on as a locally offloaded checksum (what a pod's veth does for its own
    /// traffic). Zero-copy ports do not offload (not every driver honours the request).
    /// When the kernel refuses, the port opens without and says why in `mode()`.
    pub tx_csum_offload: bool,
}

/// Bytes of transmit metadata in front of every transmitted frame of a port that offloads
/// checksums (`struct xsk_tx_metadata` is 24 bytes; 32 keeps the frames aligned).
const TX_META_LEN: u32 = 32;

impl Default for PortOptions {
    fn default() -> Self {
        PortOptions {
            program: None,
            xdp_mode: XdpMode::Auto,
            zero_copy: ZeroCopy::Auto,
            frame_size: 4096,
            ring_size: 2048,
            rx_frames: 4096,
            tx_frames: 2048,
            multi_buffer: false,
            tx_csum_offload: false,
        }
    }
}

/// Kernel-side socket statistics (getsockopt XDP_STATISTICS).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct XskKernelStats {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// `struct xdp_desc` (uapi).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct XdpDesc {
    addr: u64,
    len: u32,
    options: u32,
}

// ---------------------------------------------------------------------------
// mmap'ed memory

/// An owned anonymous or socket mapping, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a Mapping is exclusively owned by one port; nothing about it is tied
// to the creating thread (the kernel synchronises through the ring atomics).
unsafe impl Send for Mapping {}

impl Mapping {
    fn anon(len: usize) -> io::Result<Mapping> {
        // SAFETY: fresh private anonymous mapping, no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err("mmap umem"));
        }
        Ok(Mapping { ptr: p.cast(), len })
    }

    fn socket(fd: RawFd, len: usize, pgoff: u64, what: &str) -> io::Result<Mapping> {
        // SAFETY: maps a ring of the AF_XDP socket `fd` (kernel-provided memory);
        // no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err(what));
        }
        Ok(Mapping { ptr: p.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and are unmapped once; all
        // references into the mapping are owned by the same port and gone.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// ---------------------------------------------------------------------------
// rings

/// One of the four single-producer/single-consumer rings shared with the kernel.
/// We are the producer of fill/tx and the consumer of rx/completion.
#[derive(Debug)]
struct Ring<T: Copy> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    size: u32,
    /// Our view of the producer index (producer side: next slot to write).
    cached_prod: u32,
    /// Producer side: consumer index + size (= first slot we may not write).
    /// Consumer side: next slot to read.
    cached_cons: u32,
    _map: Mapping,
}

// SAFETY: the raw pointers point into `_map`, which the ring owns; the other
// party is the kernel, which synchronises via the producer/consumer atomics.
unsafe impl<T: Copy> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    fn map(
        fd: RawFd,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
        producer_side: bool,
        what: &str,
    ) -> io::Result<Self> {
        let len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mapping::socket(fd, len, pgoff, what)?;
        // SAFETY: the kernel lays out the ring at the offsets it reported via
        // XDP_MMAP_OFFSETS, all inside `len` bytes; the u32 indexes are 4-byte
        // aligned and AtomicU32 has the layout of u32.
        let (producer, consumer, flags, descs) = unsafe {
            (
                map.ptr.add(off.producer as usize) as *const AtomicU32,
                map.ptr.add(off.consumer as usize) as *const AtomicU32,
                map.ptr.add(off.flags as usize) as *const AtomicU32,
                map.ptr.add(off.desc as usize) as *mut T,
            )
        };
        let mut r = Ring {
            producer,
            consumer,
            flags,
            descs,
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: 0,
            _map: map,
        };
        r.cached_prod = r.prod().load(Ordering::Acquire);
        r.cached_cons = r.cons().load(Ordering::Acquire);
        if producer_side {
            r.cached_cons = r.cached_cons.wrapping_add(size);
        }
        Ok(r)
    }

    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into the mapping owned by self (see Ring::map).
        unsafe { &*self.producer }
    }
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: points into the mapping owned by self (see Ring::map).
        unsafe { &*self.consumer }
    }

    fn needs_wakeup(&self) -> bool {
        // SAFETY: points into the mapping owned by self (see Ring::map).
        unsafe { &*self.flags }.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // ---- producer side (fill, tx) ----

    /// Number of slots (<= want) we may write now.
    fn prod_free(&mut self, want: u32) -> u32 {
        let mut free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free < want {
            self.cached_cons = self.cons().load(Ordering::Acquire).wrapping_add(self.size);
            free = self.cached_cons.wrapping_sub(self.cached_prod);
        }
        free.min(want)
    }

    /// Write the next slot; caller must have checked `prod_free`.
    fn prod_push(&mut self, v: T) {
        debug_assert!(self.cached_cons.wrapping_sub(self.cached_prod) > 0);
        let i = (self.cached_prod & self.mask) as usize;
        // SAFETY: i <= mask < size, so the slot is inside the descriptor array
        // of the mapping; the slot is ours until we publish the producer index.
        unsafe { self.descs.add(i).write_volatile(v) };
        self.cached_prod = self.cached_prod.wrapping_add(1);
    }

    /// Publish written slots to the kernel.
    fn prod_submit(&self) {
        self.prod().store(self.cached_prod, Ordering::Release);
    }

    /// Producer side: slots published but not yet consumed by the kernel.
    fn prod_outstanding(&self) -> u32 {
        self.prod()
            .load(Ordering::Relaxed)
            .wrapping_sub(self.cons().load(Ordering::Acquire))
    }

    // ---- consumer side (rx, completion) ----

    fn cons_avail(&mut self, want: u32) -> u32 {
        let mut avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail == 0 {
            self.cached_prod = self.prod().load(Ordering::Acquire);
            avail = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        avail.min(want)
    }

    /// Read slot `cached_cons + n` (n < value returned by cons_avail).
    fn cons_read(&self, n: u32) -> T {
        let i = (self.cached_cons.wrapping_add(n) & self.mask) as usize;
        // SAFETY: i < size (inside the mapping); the kernel published this slot
        // (Acquire load of the producer in cons_avail) and will not touch it
        // until we release it.
        unsafe { self.descs.add(i).read_volatile() }
    }

    fn cons_release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.cons().store(self.cached_cons, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------
// the port

/// An AF_XDP socket bound to one (interface, queue).
#[derive(Debug)]
pub struct AfXdpPort {
    // Field order = drop order: rings are unmapped, then the socket is closed
    // (which also removes it from the XSK map), then the UMEM is unmapped, then
    // the owned XDP program handle (if any) is dropped (it stays attached).
    rx: Ring<XdpDesc>,
    tx: Ring<XdpDesc>,
    fill: Ring<u64>,
    comp: Ring<u64>,
    fd: OwnedFd,
    umem: Mapping,
    _prog: Option<XdpProgram>,
    _xsk_map: XskMap,

    ifname: String,
    queue_id: u32,
    frame_size: u32,
    zerocopy: bool,
    attached: Option<AttachedMode>,
    rx_free: Vec<u64>,
    tx_free: Vec<u64>,
    tx_unsubmitted: u32,
    tx_budget: u32,
    /// Bound with XDP_USE_SG: rx and tx descriptor chains.
    multi_buffer: bool,
    /// Why multi-buffer was asked for but not given (shown by `mode()`).
    multi_buffer_refused: Option<String>,
    /// Transmit metadata in front of every transmitted frame (0 or `TX_META_LEN`).
    tx_meta_len: u32,
    /// `TxCsum`s become checksum requests (copy mode with transmit metadata).
    csum_offload: bool,
    /// Why checksum offload was asked for but not given (shown by `mode()`).
    csum_offload_refused: Option<String>,
    stats: PortStats,
}

/// Most descriptors one received frame may span before it is handed over as too long.
const MAX_RX_CHAIN: usize = crate::pipeline::batch::MAX_CHAIN_BUFS + 1;

struct Socket {
    rx: Ring<XdpDesc>,
    tx: Ring<XdpDesc>,
    fill: Ring<u64>,
    comp: Ring<u64>,
    fd: OwnedFd,
    umem: Mapping,
    rx_free: Vec<u64>,
    tx_free: Vec<u64>,
    tx_budget: u32,
    tx_meta_len: u32,
    tx_meta_refused: Option<String>,
}

impl AfXdpPort {
    /// Open an AF_XDP socket on `ifname` queue `queue_id`. See [`PortOptions`].
    pub fn open(ifname: &str, queue_id: u32, opts: &PortOptions) -> io::Result<AfXdpPort> {
        let o = opts;
        if !(2048..=4096).contains(&o.frame_size) || !o.frame_size.is_power_of_two() {
            return Err(invalid("frame_size must be 2048 or 4096"));
        }
        if !o.ring_size.is_power_of_two() || o.ring_size < 64 {
            return Err(invalid("ring_size must be a power of two >= 64"));
        }
        if o.rx_frames < o.ring_size || o.tx_frames == 0 || o.tx_frames > o.ring_size {
            return Err(invalid(
                "need rx_frames >= ring_size and 0 < tx_frames <= ring_size",
            ));
        }
        let ifindex = xdp_prog::ifindex(ifname)?;

        if let Some((idx, _)) = o.program.as_ref().and_then(|m| m.attached())
            && idx != ifindex
        {
            return Err(invalid("program's XSK map belongs to another interface"));
        }
        // Zero-copy only makes sense when the program runs in the driver.
        let generic = match &o.program {
            Some(m) => m.attached().map(|(_, m)| m) == Some(AttachedMode::Generic),
            None => o.xdp_mode == XdpMode::Generic,
        };
        let try_zc = match o.zero_copy {
            ZeroCopy::Off => false,
            ZeroCopy::On => true,
            ZeroCopy::Auto => !generic,
        };
        let mut attempts = Vec::new();
        if try_zc {
            attempts.push(libc::XDP_ZEROCOPY);
        }
        if o.zero_copy != ZeroCopy::On {
            attempts.push(libc::XDP_COPY);
        }
        let mut errs = Vec::new();
        let mut sock = None;
        let mut sg = o.multi_buffer;
        let mut refused: Option<String> = None;
        // Multi-buffer first (zero-copy, then copy); when every mode refuses it (kernel
        // or driver without XDP_USE_SG), single-buffer, and `mode()` says why.
        let sg_tries: &[bool] = if sg { &[true, false] } else { &[false] };
        'modes: for &try_sg in sg_tries {
            let mut sg_errs = Vec::new();
            for &bind_flag in &attempts {
                // A failed bind can leave the socket's rings/UMEM in an unusable
                // state, so every attempt starts from a fresh socket.
                match Socket::create_retrying(ifindex, queue_id, o, bind_flag, try_sg) {
                    Ok(s) => {
                        sock = Some(s);
                        sg = try_sg;
                        break 'modes;
                    }
                    Err(e) => sg_errs.push(format!(
                        "{}{}: {e}",
                        if bind_flag == libc::XDP_ZEROCOPY {
                            "zerocopy"
                        } else {
                            "copy"
                        },
                        if try_sg { "+sg" } else { "" }
                    )),
                }
            }
            if try_sg {
                refused = Some(format!("bind with XDP_USE_SG: {}", sg_errs.join("; ")));
            }
            errs.extend(sg_errs);
        }
        let Some(s) = sock else {
            return Err(io::Error::other(format!(
                "{ifname} queue {queue_id}: bind failed: {}",
                errs.join("; ")
            )));
        };
        // Attach our program only once the bind succeeded: a failed open (e.g.
        // EBUSY, queue already bound by another process) must not replace the
        // program another socket on this interface is using.
        let (prog, map) = match &o.program {
            Some(m) => (None, m.clone()),
            None => {
                let p = if sg {
                    match XdpProgram::attach_redirect_all_frags(ifname, o.xdp_mode) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            // Frames above one page could not reach us: say so (the socket
                            // itself still takes chains, e.g. from generic XDP).
                            refused = Some(format!("xdp.frags program: {e}"));
                            None
                        }
                    }
                } else {
                    None
                };
                let p = match p {
                    Some(p) => p,
                    None => XdpProgram::attach_redirect_all(ifname, o.xdp_mode)?,
                };
                let m = p.xsk_map();
                (Some(p), m)
            }
        };
        let attached = map.attached().map(|(_, m)| m);
        map.insert(queue_id, s.fd.as_raw_fd())
            .map_err(|e| io::Error::new(e.kind(), format!("{ifname} queue {queue_id}: {e}")))?;
        let zerocopy = xsk_options(s.fd.as_raw_fd())? & libc::XDP_OPTIONS_ZEROCOPY != 0;
        let csum_offload = s.tx_meta_len > 0 && !zerocopy;
        let csum_offload_refused = match (&s.tx_meta_refused, o.tx_csum_offload) {
            (Some(why), _) => Some(why.clone()),
            (None, true) if zerocopy => Some("zero-copy".to_string()),
            _ => None,
        };

        Ok(AfXdpPort {
            rx: s.rx,
            tx: s.tx,
            fill: s.fill,
            comp: s.comp,
            fd: s.fd,
            umem: s.umem,
            _prog: prog,
            _xsk_map: map,
            ifname: ifname.to_string(),
            queue_id,
            frame_size: o.frame_size,
            zerocopy,
            attached,
            rx_free: s.rx_free,
            tx_free: s.tx_free,
            tx_unsubmitted: 0,
            tx_budget: s.tx_budget,
            multi_buffer: sg,
            multi_buffer_refused: refused,
            tx_meta_len: s.tx_meta_len,
            csum_offload,
            csum_offload_refused,
            stats: PortStats::default(),
        })
    }

    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }
    pub fn is_zerocopy(&self) -> bool {
        self.zerocopy
    }
    pub fn attached_mode(&self) -> Option<AttachedMode> {
        self.attached
    }
    /// True when the socket carries multi-buffer frames (bound with `XDP_USE_SG`).
    pub fn is_multi_buffer(&self) -> bool {
        self.multi_buffer
    }
    /// Why multi-buffer was asked for and not (fully) given, if it was.
    pub fn multi_buffer_refused(&self) -> Option<&str> {
        self.multi_buffer_refused.as_deref()
    }
    /// Largest frame `recv_burst` can deliver (frame_size - XDP_PACKET_HEADROOM).
    pub fn max_rx_frame(&self) -> usize {
        (self.frame_size - XDP_PACKET_HEADROOM) as usize
    }

    /// getsockopt(XDP_STATISTICS).
    pub fn kernel_stats(&self) -> io::Result<XskKernelStats> {
        let (st, _): (libc::xdp_statistics, _) =
            xdp_getsockopt(self.fd.as_raw_fd(), libc::XDP_STATISTICS, "XDP_STATISTICS")?;
        Ok(XskKernelStats {
            rx_dropped: st.rx_dropped,
            rx_invalid_descs: st.rx_invalid_descs,
            tx_invalid_descs: st.tx_invalid_descs,
            rx_ring_full: st.rx_ring_full,
            rx_fill_ring_empty_descs: st.rx_fill_ring_empty_descs,
            tx_ring_empty_descs: st.tx_ring_empty_descs,
        })
    }

    fn chunk_base(&self, addr: u64) -> u64 {
        addr & !(self.frame_size as u64 - 1)
    }

    /// Writes a checksum request (`struct xsk_tx_metadata`: flags, then csum_start and
    /// csum_offset, relative to the frame) into the transmit metadata of the TX chunk at
    /// `base`, in front of the frame.
    fn write_csum_request(&mut self, base: u64, c: TxCsum) {
        let mut m = [0u8; TX_META_LEN as usize];
        m[..8].copy_from_slice(&u64::from(libc::XDP_TXMD_FLAGS_CHECKSUM).to_ne_bytes());
        m[8..10].copy_from_slice(&c.start.to_ne_bytes());
        m[10..12].copy_from_slice(&c.offset.to_ne_bytes());
        debug_assert!(self.tx_meta_len == TX_META_LEN);
        // SAFETY: base is the start of a TX chunk of the UMEM that we own (popped from
        // tx_free, not on the ring); the metadata area is its first TX_META_LEN bytes, in
        // front of the frame, and the chunk is at least 2048 bytes.
        unsafe { ptr::copy_nonoverlapping(m.as_ptr(), self.umem.ptr.add(base as usize), m.len()) };
    }

    /// Move completed TX chunks back to the free list.
    fn reclaim(&mut self) {
        let n = self.comp.cons_avail(self.comp.size);
        for i in 0..n {
            let a = self.comp.cons_read(i);
            let base = self.chunk_base(a);
            self.tx_free.push(base);
        }
        if n > 0 {
            self.comp.cons_release(n);
        }
    }

    /// Top up the fill ring from the RX free list.
    fn refill(&mut self) {
        let n = self.fill.prod_free(self.rx_free.len() as u32);
        for _ in 0..n {
            if let Some(a) = self.rx_free.pop() {
                self.fill.prod_push(a);
            }
        }
        if n > 0 {
            self.fill.prod_submit();
        }
    }

    /// Kick the kernel to transmit what is on the tx ring.
    fn kick_tx(&mut self) {
        // In copy mode one sendto() transmits at most 32 descriptors (or the
        // XDP_MAX_TX_SKB_BUDGET we set) and returns EAGAIN when more remain,
        // so loop (bounded) while it makes progress.
        for _ in 0..16 {
            let before = self.tx.prod_outstanding();
            if before == 0 || !self.tx.needs_wakeup() {
                // Zero-copy drivers clear NEED_WAKEUP while they are polling.
                return;
            }
            // SAFETY: zero-length sendto on our own socket with null buffers and
            // no address: the AF_XDP "kick", nothing is read or written.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null(),
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                // EAGAIN: budget used up or device busy; EBUSY/ENOBUFS: transient.
                // ENETDOWN: link down. Anything else: leave it for the next flush.
                if e != libc::EAGAIN {
                    return;
                }
            }
            if self.zerocopy || self.tx.prod_outstanding() >= before {
                return; // no progress: device busy, retry on next flush
            }
        }
    }
}

impl Socket {
    /// `create`, retried on EBUSY right after the previous socket on this queue was closed
    /// (a restart): the kernel releases the queue's buffer pool from a workqueue, so retry
    /// for up to ~1 s before giving up.
    fn create_retrying(
        ifindex: u32,
        queue_id: u32,
        o: &PortOptions,
        bind_flag: u16,
        sg: bool,
    ) -> io::Result<Socket> {
        let mut res = Socket::create(ifindex, queue_id, o, bind_flag, sg);
        for _ in 0..20 {
            match &res {
                Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    res = Socket::create(ifindex, queue_id, o, bind_flag, sg);
                }
                _ => break,
            }
        }
        res
    }

    fn create(
        ifindex: u32,
        queue_id: u32,
        o: &PortOptions,
        bind_flag: u16,
        sg: bool,
    ) -> io::Result<Socket> {
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os_err("socket(AF_XDP)"));
        }
        // SAFETY: raw is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let sfd = fd.as_raw_fd();

        let nframes = (o.rx_frames + o.tx_frames) as usize;
        let umem = Mapping::anon(nframes * o.frame_size as usize)?;
        let reg = libc::xdp_umem_reg {
            addr: umem.ptr as u64,
            len: umem.len as u64,
            chunk_size: o.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        // With transmit metadata first (Linux >= 6.11 for the flag); a kernel that refuses
        // it gets the plain registration, and the port says why it does not offload.
        let mut tx_meta_len = 0;
        let mut tx_meta_refused = None;
        if o.tx_csum_offload {
            let with_meta = libc::xdp_umem_reg {
                flags: libc::XDP_UMEM_TX_METADATA_LEN,
                tx_metadata_len: TX_META_LEN,
                ..reg
            };
            match setsockopt(sfd, libc::XDP_UMEM_REG, &with_meta, "XDP_UMEM_REG") {
                Ok(()) => tx_meta_len = TX_META_LEN,
                Err(e) => tx_meta_refused = Some(format!("transmit metadata: {e}")),
            }
        }
        if tx_meta_len == 0 {
            setsockopt(sfd, libc::XDP_UMEM_REG, &reg, "XDP_UMEM_REG")?;
        }
        let comp_size = o.tx_frames.next_power_of_two();
        setsockopt(
            sfd,
            libc::XDP_UMEM_FILL_RING,
            &o.ring_size,
            "XDP_UMEM_FILL_RING",
        )?;
        setsockopt(
            sfd,
            libc::XDP_UMEM_COMPLETION_RING,
            &comp_size,
            "XDP_UMEM_COMPLETION_RING",
        )?;
        setsockopt(sfd, libc::XDP_RX_RING, &o.ring_size, "XDP_RX_RING")?;
        setsockopt(sfd, libc::XDP_TX_RING, &o.ring_size, "XDP_TX_RING")?;
        // Copy mode transmits at most 32 frames per sendto() by default; Linux
        // >= 6.17 lets us raise that (XDP_MAX_TX_SKB_BUDGET, must be 32..=tx
        // ring size, needs the tx ring first). Older kernels: ENOPROTOOPT, ignored.
        let budget: u32 = 256.min(o.ring_size);
        let tx_budget =
            match setsockopt(sfd, XDP_MAX_TX_SKB_BUDGET, &budget, "XDP_MAX_TX_SKB_BUDGET") {
                Ok(()) => budget,
                Err(_) => 32,
            };

        let (off, len): (libc::xdp_mmap_offsets, _) =
            xdp_getsockopt(sfd, libc::XDP_MMAP_OFFSETS, "XDP_MMAP_OFFSETS")?;
        if len != std::mem::size_of::<libc::xdp_mmap_offsets>() {
            return Err(io::Error::other(
                "kernel too old: no ring flags (need_wakeup needs Linux >= 5.4)",
            ));
        }
        let rx = Ring::<XdpDesc>::map(
            sfd,
            &off.rx,
            o.ring_size,
            libc::XDP_PGOFF_RX_RING as u64,
            false,
            "mmap rx ring",
        )?;
        let tx = Ring::<XdpDesc>::map(
            sfd,
            &off.tx,
            o.ring_size,
            libc::XDP_PGOFF_TX_RING as u64,
            true,
            "mmap tx ring",
        )?;
        let mut fill = Ring::<u64>::map(
            sfd,
            &off.fr,
            o.ring_size,
            libc::XDP_UMEM_PGOFF_FILL_RING,
            true,
            "mmap fill ring",
        )?;
        let comp = Ring::<u64>::map(
            sfd,
            &off.cr,
            comp_size,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            false,
            "mmap completion ring",
        )?;

        let fs = o.frame_size as u64;
        // Pop order does not matter; keep low addresses at the end (popped first).
        let mut rx_free: Vec<u64> = (0..o.rx_frames as u64).rev().map(|i| i * fs).collect();
        let tx_free: Vec<u64> = (o.rx_frames as u64..(o.rx_frames + o.tx_frames) as u64)
            .rev()
            .map(|i| i * fs)
            .collect();

        // Fill before bind so the first packets after bind find buffers.
        let n = fill.prod_free(rx_free.len() as u32);
        for _ in 0..n {
            if let Some(a) = rx_free.pop() {
                fill.prod_push(a);
            }
        }
        fill.prod_submit();

        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: bind_flag
                | libc::XDP_USE_NEED_WAKEUP
                | if sg { libc::XDP_USE_SG } else { 0 },
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue_id,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: sa is a live sockaddr_xdp and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                sfd,
                (&sa as *const libc::sockaddr_xdp).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os_err("bind"));
        }
        Ok(Socket {
            rx,
            tx,
            fill,
            comp,
            fd,
            umem,
            rx_free,
            tx_free,
            tx_budget,
            tx_meta_len,
            tx_meta_refused,
        })
    }
}

impl Port for AfXdpPort {
    fn name(&self) -> &str {
        &self.ifname
    }

    fn recv_burst(&mut self, max: usize, f: &mut dyn FnMut(&[&[u8]], RxInfo) -> bool) -> usize {
        // Every available descriptor is looked at, `max` frames are delivered: a frame is
        // a chain of descriptors, all but its last with XDP_PKT_CONTD (multi-buffer only).
        let avail = self.rx.cons_avail(self.rx.size);
        let mut used = 0u32;
        let mut frames = 0usize;
        let mut chain: [&[u8]; MAX_RX_CHAIN] = [&[]; MAX_RX_CHAIN];
        while frames < max && used < avail {
            // Find the end of the frame; a chain whose end is not published yet stays on
            // the ring for the next call.
            let mut n = 0u32;
            let mut complete = false;
            while used + n < avail {
                let d = self.rx.cons_read(used + n);
                n += 1;
                if !self.multi_buffer || d.options & libc::XDP_PKT_CONTD == 0 {
                    complete = true;
                    break;
                }
            }
            if !complete {
                break;
            }
            let mut k = 0usize;
            let mut ok = true;
            let mut bytes = 0u64;
            for j in 0..n {
                let d = self.rx.cons_read(used + j);
                let (off, len) = (d.addr as usize, d.len as usize);
                // In aligned mode addr = chunk + 256 (+ umem headroom); never trust the
                // ring blindly before making a slice.
                if off.checked_add(len).is_none_or(|end| end > self.umem.len) {
                    ok = false;
                    continue;
                }
                if k < MAX_RX_CHAIN {
                    // SAFETY: [off, off+len) is inside the UMEM mapping (checked above)
                    // and the chunk is ours until it goes back on the fill ring, which
                    // happens only after `f` returns. The slices do not outlive this
                    // iteration of the loop.
                    chain[k] = unsafe { std::slice::from_raw_parts(self.umem.ptr.add(off), len) };
                    k += 1;
                    bytes += len as u64;
                }
            }
            if ok && k > 0 {
                // A chain longer than MAX_RX_CHAIN is handed over cut at MAX_RX_CHAIN
                // buffers: more than the batch takes, so it is dropped by name there.
                if !f(&chain[..k], RxInfo::default()) {
                    break; // not taken: stays on the ring for the next burst
                }
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += bytes;
            }
            for j in 0..n {
                let d = self.rx.cons_read(used + j);
                let base = self.chunk_base(d.addr);
                self.rx_free.push(base);
            }
            used += n;
            frames += 1;
        }
        if used > 0 {
            self.rx.cons_release(used);
            self.refill();
        }
        frames
    }

    fn send_chain(&mut self, chain: &[&[u8]], tx: TxInfo) -> bool {
        // The segment size is not for the wire: AF_XDP has no GSO metadata.
        let csum = tx.csum;
        let meta = self.tx_meta_len as usize;
        // Bytes of frame per chunk: the chunk less the transmit metadata in front.
        let room = self.frame_size as usize - meta;
        if let ([one], None) = (chain, csum)
            && one.len() <= room
        {
            return self.send(one);
        }
        if csum.is_some() && !self.csum_offload {
            return false; // never given: `offloads_tx_csum` is false
        }
        let len: usize = chain.iter().map(|b| b.len()).sum();
        if len == 0 || (len > room && !self.multi_buffer) {
            return false;
        }
        let need = len.div_ceil(room);
        if need > MAX_RX_CHAIN {
            return false;
        }
        if self.tx_free.len() < need {
            self.reclaim();
        }
        if self.tx_free.len() < need || self.tx.prod_free(need as u32) < need as u32 {
            self.stats.tx_ring_full += 1;
            return false;
        }
        // Re-cut the chain into whole chunks: descriptor k holds bytes [k*room, (k+1)*room).
        let mut src = chain.iter().copied();
        let mut cur: &[u8] = src.next().unwrap_or(&[]);
        for k in 0..need {
            let Some(base) = self.tx_free.pop() else {
                return false; // checked above
            };
            let addr = base + meta as u64;
            let want = room.min(len - k * room);
            let mut done = 0;
            while done < want {
                while cur.is_empty() {
                    cur = src.next().unwrap_or(&[]);
                }
                let n = cur.len().min(want - done);
                // SAFETY: base is the start of a TX chunk inside the UMEM that we own (see
                // `send`); meta + done + n <= meta + want <= frame_size, so the copy stays
                // in the chunk.
                unsafe {
                    ptr::copy_nonoverlapping(
                        cur.as_ptr(),
                        self.umem.ptr.add(addr as usize + done),
                        n,
                    )
                };
                cur = &cur[n..];
                done += n;
            }
            let mut options = if k + 1 < need { libc::XDP_PKT_CONTD } else { 0 };
            if k == 0
                && let Some(c) = csum
            {
                self.write_csum_request(base, c);
                options |= libc::XDP_TX_METADATA;
            }
            self.tx.prod_push(XdpDesc {
                addr,
                len: want as u32,
                options,
            });
        }
        self.tx_unsubmitted += need as u32;
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        true
    }

    fn offloads_tx_csum(&self) -> bool {
        self.csum_offload
    }

    fn send(&mut self, frame: &[u8]) -> bool {
        let len = frame.len();
        let meta = self.tx_meta_len as usize;
        if len == 0 || len > self.frame_size as usize - meta {
            return false;
        }
        if self.tx_free.is_empty() {
            self.reclaim();
        }
        if self.tx.prod_free(1) == 0 {
            self.stats.tx_ring_full += 1;
            return false;
        }
        let Some(base) = self.tx_free.pop() else {
            self.stats.tx_ring_full += 1;
            return false;
        };
        let addr = base + meta as u64;
        debug_assert!(addr as usize + len <= self.umem.len);
        // SAFETY: base is the start of a TX chunk inside the UMEM (we created
        // all TX addresses and the kernel returns them unchanged through the
        // completion ring), meta + len <= frame_size, and the chunk is ours: it is on
        // neither the tx ring nor in flight. `frame` cannot alias the UMEM TX
        // chunk because we own it exclusively.
        unsafe { ptr::copy_nonoverlapping(frame.as_ptr(), self.umem.ptr.add(addr as usize), len) };
        self.tx.prod_push(XdpDesc {
            addr,
            len: len as u32,
            options: 0,
        });
        self.tx_unsubmitted += 1;
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += len as u64;
        true
    }

    fn flush(&mut self) {
        self.reclaim();
        if self.tx_unsubmitted > 0 {
            self.tx.prod_submit();
            self.tx_unsubmitted = 0;
        }
        self.kick_tx();
        self.refill();
        if self.fill.needs_wakeup() {
            // Zero-copy drivers may sleep until woken; copy mode never sets this.
            // SAFETY: zero-length non-blocking recvfrom on our own socket, null
            // buffers: only wakes the driver, nothing is read or written.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            };
        }
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn stats(&self) -> PortStats {
        let mut s = self.stats;
        // The kernel counts exactly what we want: packets that found no buffer.
        if let Ok(k) = self.kernel_stats() {
            s.rx_fill_empty = k.rx_fill_ring_empty_descs;
        }
        s
    }

    fn mode(&self) -> String {
        format!(
            "xdp={} {} queue={} frame={} ring={}{}{}{}",
            self.attached.map_or("?", |m| m.as_str()),
            if self.zerocopy { "zerocopy" } else { "copy" },
            self.queue_id,
            self.frame_size,
            self.rx.size,
            if self.zerocopy {
                String::new()
            } else {
                format!(" tx_budget={}", self.tx_budget)
            },
            match (&self.multi_buffer_refused, self.multi_buffer) {
                (Some(why), _) => format!(" multi-buffer refused ({why})"),
                (None, true) => " multi-buffer".to_string(),
                (None, false) => String::new(),
            },
            match (&self.csum_offload_refused, self.csum_offload) {
                (Some(why), _) => format!(" csum-offload refused ({why})"),
                (None, true) => " csum-offload".to_string(),
                (None, false) => String::new(),
            },
        )
    }
}

fn xsk_options(fd: RawFd) -> io::Result<u32> {
    let (opt, _): (libc::xdp_options, _) = xdp_getsockopt(fd, libc::XDP_OPTIONS, "XDP_OPTIONS")?;
    Ok(opt.flags)
}

/// The `SOL_XDP` getsockopt results this file reads: plain C structs of integers, for which
/// all-zero bytes are a valid value.
trait XdpSockopt: Copy {}
impl XdpSockopt for libc::xdp_statistics {}
impl XdpSockopt for libc::xdp_mmap_offsets {}
impl XdpSockopt for libc::xdp_options {}

/// getsockopt(SOL_XDP, `opt`) into a `T`; returns it and the length the kernel wrote.
fn xdp_getsockopt<T: XdpSockopt>(
    fd: RawFd,
    opt: libc::c_int,
    name: &str,
) -> io::Result<(T, usize)> {
    // SAFETY: every XdpSockopt type is plain old data; all-zero is a valid value.
    let mut v: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: v is live and len is its size; the kernel writes at most len bytes.
    let rc =
        unsafe { libc::getsockopt(fd, libc::SOL_XDP, opt, (&mut v as *mut T).cast(), &mut len) };
    if rc != 0 {
        return Err(os_err(&format!("getsockopt {name}")));
    }
    Ok((v, len as usize))
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, val: &T, what: &str) -> io::Result<()> {
    // SAFETY: val is a live T and the length passed is size_of::<T>().
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os_err(what));
    }
    Ok(())
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    fn assert_send<T: Send>() {}
    #[test]
    fn port_is_send() {
        assert_send::<AfXdpPort>();
        assert_send::<Box<dyn Port>>();
    }
}
