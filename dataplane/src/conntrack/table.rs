//! The shared conntrack table: shards of (index, entry slab), each behind its own lock.

use super::groups::{Heads, NIL};
use super::index::Index;
use super::key::{Dir, FlowKey, State, flag};
use super::tcp;
use crate::config::services::Timeouts;
use crate::prefetch::prefetch;
use crate::wire::ipv4;
use parking_lot::{Mutex, MutexGuard};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const NS: u64 = 1_000_000_000;
/// Entries examined for a victim when a shard is full.
const EVICT_SCAN: usize = 32;
/// Probes for a free source port before reporting exhaustion (ranges up to this size are
/// searched exhaustively).
const PORT_PROBES: u32 = 1024;

/// Which entries `Conntrack::reap` removes besides expired ones.
#[derive(Clone, Copy)]
enum Reap<'a> {
    Expired,
    /// Also one that never saw a reply (eviction when the table is full).
    OrUnreplied,
    /// Also a closed TCP flow (TIME_WAIT or CLOSE) of the same client address and port
    /// as the new flow `client`, holding the reply tuple `reply` that flow needs. The
    /// client reused its port, so its side of the old connection is gone; keeping the entry
    /// would remap the new one's port into the SNAT range, which a busy client's closed
    /// entries soon fill (the kernel's NAT evicts TIME_WAIT entries in its way too, on its
    /// last attempts).
    OrClosedOf {
        client: &'a FlowKey,
        reply: &'a FlowKey,
    },
}

/// Most shards a table has.
const MAX_SHARDS: usize = 16;

/// One connection (or ClientIP affinity record): one cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(64))]
pub struct Entry {
    pub orig: FlowKey,
    /// For affinity records: `src`/`sport` hold the chosen endpoint.
    pub reply: FlowKey,
    /// Expiry time in ns; 0 marks a free slot.
    pub expires: u64,
    pub bytes: u64,
    pub packets: u32,
    pub state: State,
    pub flags: u8,
    /// Neighbours in the chain of the entry's Service group (`groups`): slots in the shard.
    pub(super) prev: u32,
    pub(super) next: u32,
}

// The links fit in the line the entry already took.
const _: () = assert!(std::mem::size_of::<Entry>() == 64);

/// A packet's match in the table.
#[derive(Clone, Copy, Debug)]
pub struct Hit {
    pub dir: Dir,
    pub entry: Entry,
}

impl Hit {
    /// The tuple the packet must carry after translation.
    #[inline]
    pub fn target(&self) -> FlowKey {
        match self.dir {
            Dir::Orig => self.entry.reply.inverse(),
            Dir::Reply => self.entry.orig.inverse(),
        }
    }
}

/// A packet's match in the table, as the packet path needs it.
#[derive(Clone, Copy, Debug)]
pub struct Tracked {
    pub dir: Dir,
    /// The entry's flags (`flag::*`).
    pub flags: u8,
    /// The tuple the packet must carry after translation.
    pub target: FlowKey,
}

/// Accounts a packet of direction `dir` to its entry: counters, TCP state, expiry.
#[inline]
fn account(e: &mut Entry, dir: Dir, tcp_flags: u8, bytes: u32, now: u64, t: &Timeouts) {
    e.packets = e.packets.wrapping_add(1);
    e.bytes += u64::from(bytes);
    if dir == Dir::Reply {
        e.flags |= flag::SEEN_REPLY;
    }
    let st = match e.state {
        State::Unreplied | State::Replied => {
            if e.flags & flag::SEEN_REPLY != 0 {
                State::Replied
            } else {
                State::Unreplied
            }
        }
        s if e.orig.proto == ipv4::PROTO_TCP => tcp::next(s, &mut e.flags, dir, tcp_flags),
        s => s,
    };
    e.state = st;
    e.expires = now + u64::from(st.timeout_secs(e.orig.proto, t)) * NS;
}

/// What a new connection should look like.
#[derive(Clone, Copy, Debug)]
pub struct NewFlow {
    pub orig: FlowKey,
    /// The reply tuple; its `dport` (the translated source port) is a first choice only when
    /// `port_range` is set.
    pub reply: FlowKey,
    /// Source ports (ICMP identifiers) the translation may use when the first choice is taken.
    pub port_range: Option<[u16; 2]>,
    pub flags: u8,
    pub state: State,
    pub bytes: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    /// The table is full of flows that saw replies.
    Full,
    /// No free translated tuple.
    PortsExhausted,
}

#[derive(Clone, Copy, Debug)]
pub enum Created {
    New(Entry),
    /// Another packet of the same flow created it first.
    Existing(Hit),
}

struct Shard {
    index: Index,
    /// First entry of each Service group with entries here (chained through the entries).
    groups: Heads,
    /// Entry slab: capacity reserved up front, pushed into, never reallocated.
    entries: Vec<Entry>,
    free: Vec<u32>,
    live: usize,
    /// Expiry / eviction cursor.
    cursor: usize,
}

/// A shard's lock, plus the addresses of its index and slab (fixed at creation: neither is
/// ever reallocated) for prefetching without the lock.
#[repr(align(64))]
struct Padded(Mutex<Shard>, PrefetchInfo);

#[derive(Clone, Copy)]
struct PrefetchInfo {
    index: usize,
    index_mask: usize,
    slab: usize,
}

/// Counters the table keeps (read by dumps and stats).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct CtStats {
    pub live: usize,
    pub capacity: usize,
    pub shards: usize,
    pub created: u64,
    pub expired: u64,
    pub evicted: u64,
    /// Closed TCP entries a new connection of the same client took the tuple of.
    pub taken_over: u64,
    pub bytes_allocated: usize,
}

/// The connection-tracking table shared by all workers; see the module documentation.
pub struct Conntrack {
    shards: Box<[Padded]>,
    shard_mask: usize,
    per_shard: usize,
    /// An entry id is its shard, then its slot in `slot_bits` bits: splitting an id is a
    /// shift and a mask, not a division (on every conntrack hit).
    slot_bits: u32,
    seed: u64,
    scan: AtomicUsize,
    /// Entries in use, all shards (kept beside the per-shard counts for cheap reads).
    live: AtomicUsize,
    created: AtomicU64,
    expired: AtomicU64,
    evicted: AtomicU64,
    taken_over: AtomicU64,
}

struct Two<'a> {
    a: usize,
    ga: MutexGuard<'a, Shard>,
    gb: Option<MutexGuard<'a, Shard>>,
}

impl Two<'_> {
    fn get(&mut self, s: usize) -> &mut Shard {
        if s == self.a {
            &mut self.ga
        } else {
            self.gb.as_deref_mut().unwrap_or(&mut self.ga)
        }
    }
}

#[inline]
fn mix(mut h: u64) -> u64 {
    h ^= h >> 32;
    h = h.wrapping_mul(0xd6e8_feb8_6659_fd93);
    h ^= h >> 32;
    h = h.wrapping_mul(0xd6e8_feb8_6659_fd93);
    h ^ (h >> 32)
}

impl Conntrack {
    /// A table for at most `max_entries` entries; all memory is reserved here.
    pub fn new(max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        // Few enough shards that a large table's per-shard storage spans several 2 MiB huge
        // pages, enough that workers rarely meet on a lock.
        let nshards = (max_entries / 32768)
            .next_power_of_two()
            .clamp(1, MAX_SHARDS);
        let per_shard = max_entries.div_ceil(nshards);
        // A shard indexes the original tuples of its entries and reply tuples that hash to
        // it: 2 per entry on average, with slack for the spread.
        let keys = 2 * per_shard + per_shard / 4 + 16;
        let shards = (0..nshards)
            .map(|_| {
                let index = Index::new(keys);
                let entries: Vec<Entry> = Vec::with_capacity(per_shard);
                let pf = PrefetchInfo {
                    index: index.base_addr(),
                    index_mask: index.mask(),
                    slab: entries.as_ptr() as usize,
                };
                crate::hugepages::advise_huge_pages(pf.index, index.bytes());
                crate::hugepages::advise_huge_pages(
                    pf.slab,
                    per_shard * std::mem::size_of::<Entry>(),
                );
                Padded(
                    Mutex::new(Shard {
                        index,
                        groups: Heads::new(per_shard),
                        entries,
                        free: Vec::with_capacity(per_shard),
                        live: 0,
                        cursor: 0,
                    }),
                    pf,
                )
            })
            .collect();
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(max_entries);
            h.finish() | 1
        };
        Conntrack {
            shards,
            shard_mask: nshards - 1,
            per_shard,
            slot_bits: per_shard.next_power_of_two().trailing_zeros(),
            seed,
            scan: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            created: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            taken_over: AtomicU64::new(0),
        }
    }

    /// Keyed hash of a flow key (the seed is random per table: packets choose the keys).
    #[inline]
    fn hash_words(&self, w: &[u32; 4]) -> u64 {
        let a = (u64::from(w[0]) << 32 | u64::from(w[1])) ^ self.seed;
        let b = u64::from(w[2]) << 32 | u64::from(w[3]);
        mix(a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.rotate_left(23) ^ self.seed.rotate_left(17))
    }

    #[inline]
    fn shard_of(&self, h: u64) -> usize {
        (h >> 48) as usize & self.shard_mask
    }

    fn lock(&self, s: usize) -> MutexGuard<'_, Shard> {
        self.shards[s].0.lock()
    }

    /// Locks two shards in index order (deadlock-free); they may be the same.
    fn lock2(&self, a: usize, b: usize) -> Two<'_> {
        if a == b {
            Two {
                a,
                ga: self.lock(a),
                gb: None,
            }
        } else if a < b {
            let ga = self.lock(a);
            let gb = self.lock(b);
            Two {
                a,
                ga,
                gb: Some(gb),
            }
        } else {
            let gb = self.lock(b);
            let ga = self.lock(a);
            Two {
                a,
                ga,
                gb: Some(gb),
            }
        }
    }

    #[inline]
    fn split(&self, id: u32) -> (usize, usize) {
        let id = id as usize;
        (id >> self.slot_bits, id & ((1 << self.slot_bits) - 1))
    }

    /// The id of slot `slot` of shard `s`.
    #[inline]
    fn id_of(&self, s: usize, slot: usize) -> u32 {
        (s << self.slot_bits | slot) as u32
    }

    /// Keys [`Conntrack::prefetch_batch`] takes at a time (a receive batch).
    pub const PREFETCH_BATCH: usize = 64;

    /// Starts loading, for every key of `keys` (at most [`Conntrack::PREFETCH_BATCH`]; the
    /// rest are ignored), the index slot it hashes to and then the entry it belongs to, so
    /// that the lookups that follow find both in cache instead of waiting for memory one
    /// packet at a time. Each key is hashed once; the index slots of the whole batch are
    /// prefetched (no lock) before any is read, and the reads lock each shard once for all
    /// the keys in it rather than once per key. A hint only: finds nothing, changes nothing.
    pub fn prefetch_batch(&self, keys: &[FlowKey]) {
        const N: usize = Conntrack::PREFETCH_BATCH;
        let keys = &keys[..keys.len().min(N)];
        let mut hashes = [0u64; N];
        // Keys counted per shard, then their positions ordered by shard (a counting sort).
        let mut per_shard = [0u8; MAX_SHARDS + 1];
        for (h, k) in hashes.iter_mut().zip(keys) {
            *h = self.hash_words(&k.words());
            let s = self.shard_of(*h);
            let pf = self.shards[s].1;
            let at = pf.index + (*h as usize & pf.index_mask) * Index::SLOT_BYTES;
            prefetch(at);
            // A slot may straddle two cache lines.
            prefetch(at + Index::SLOT_BYTES - 1);
            per_shard[s + 1] += 1;
        }
        for s in 1..per_shard.len() {
            per_shard[s] += per_shard[s - 1];
        }
        let mut order = [0u8; N];
        for (n, &h) in hashes[..keys.len()].iter().enumerate() {
            let s = self.shard_of(h);
            order[usize::from(per_shard[s])] = n as u8;
            per_shard[s] += 1;
        }
        // `per_shard[s]` is now the end of shard `s`'s run in `order`.
        let mut start = 0;
        for (s, &end) in per_shard[..self.shards.len()].iter().enumerate() {
            let end = usize::from(end);
            if end == start {
                continue;
            }
            let g = self.lock(s);
            for &n in &order[start..end] {
                let n = usize::from(n);
                if let Some(id) = g.index.get(&keys[n].words(), hashes[n]) {
                    let (owner, slot) = self.split(id);
                    prefetch(self.shards[owner].1.slab + slot * std::mem::size_of::<Entry>());
                }
            }
            drop(g);
            start = end;
        }
    }

    /// Entries in use (approximate while other workers change the table).
    #[inline]
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// Finds the entry `key` belongs to and accounts the packet: counters, TCP state, expiry.
    /// Expired entries are not found. `tcp_flags` is ignored for other protocols.
    #[inline]
    pub fn lookup(
        &self,
        key: &FlowKey,
        tcp_flags: u8,
        bytes: u32,
        now: u64,
        t: &Timeouts,
    ) -> Option<Hit> {
        self.find(key, now, |e, dir| {
            account(e, dir, tcp_flags, bytes, now, t);
            Hit { dir, entry: *e }
        })
    }

    /// As [`Conntrack::lookup`], for the packet path: returns only what a packet needs
    /// (direction, entry flags, the tuple to translate to) rather than a copy of the entry.
    #[inline]
    pub fn track(
        &self,
        key: &FlowKey,
        tcp_flags: u8,
        bytes: u32,
        now: u64,
        t: &Timeouts,
    ) -> Option<Tracked> {
        self.find(key, now, |e, dir| {
            account(e, dir, tcp_flags, bytes, now, t);
            Tracked {
                dir,
                flags: e.flags,
                target: match dir {
                    Dir::Orig => e.reply.inverse(),
                    Dir::Reply => e.orig.inverse(),
                },
            }
        })
    }

    /// Finds the entry `key` belongs to without accounting a packet (ICMP errors, tools).
    pub fn peek(&self, key: &FlowKey, now: u64) -> Option<Hit> {
        self.find(key, now, |e, dir| Hit { dir, entry: *e })
    }

    #[inline]
    fn find<R>(&self, key: &FlowKey, now: u64, f: impl FnOnce(&mut Entry, Dir) -> R) -> Option<R> {
        let w = key.words();
        let h = self.hash_words(&w);
        let s = self.shard_of(h);
        let mut g = self.lock(s);
        let id = g.index.get(&w, h)?;
        let (owner, slot) = self.split(id);
        if owner == s {
            return Self::visit(g.entries.get_mut(slot)?, key, now, f);
        }
        // The entry lives with its original tuple in another shard: one lock at a time, and
        // the tuple check below catches a slot reused in between.
        drop(g);
        let mut g = self.lock(owner);
        Self::visit(g.entries.get_mut(slot)?, key, now, f)
    }

    #[inline]
    fn visit<R>(
        e: &mut Entry,
        key: &FlowKey,
        now: u64,
        f: impl FnOnce(&mut Entry, Dir) -> R,
    ) -> Option<R> {
        if e.expires <= now || e.flags & flag::AFFINITY != 0 {
            return None;
        }
        let dir = if e.orig == *key {
            Dir::Orig
        } else if e.reply == *key {
            Dir::Reply
        } else {
            return None;
        };
        Some(f(e, dir))
    }

    /// Creates a connection, choosing a free translated source port when needed.
    pub fn create(&self, req: &NewFlow, now: u64, t: &Timeouts) -> Result<Created, CreateError> {
        let ow = req.orig.words();
        let oh = self.hash_words(&ow);
        let o = self.shard_of(oh);
        let is_icmp = req.orig.proto == ipv4::PROTO_ICMP;
        let first = req.reply.dport;
        let (lo, span, probes) = match req.port_range {
            Some([lo, hi]) => {
                let span = u32::from(hi) - u32::from(lo) + 1;
                (u32::from(lo), span, span.min(PORT_PROBES))
            }
            None => (u32::from(first), 1, 1),
        };
        let start = (oh >> 8) as u32 % span;
        // The original port is kept when free (and, for source translation, in the range).
        let first_in_range = req.port_range.is_none()
            || req.flags & flag::SNAT == 0
            || (lo..lo + span).contains(&u32::from(first));
        let mut retries = 0;
        let mut k: i64 = if first_in_range { -1 } else { 0 };
        while k < i64::from(probes) {
            let port = if k < 0 {
                first
            } else {
                (lo + (start + k as u32) % span) as u16
            };
            let mut reply = req.reply;
            reply.dport = port;
            if is_icmp {
                reply.sport = port;
            }
            let rw = reply.words();
            let rh = self.hash_words(&rw);
            let r = self.shard_of(rh);
            enum Next {
                Done(Entry),
                Exists,
                Taken(u32),
                Evict,
                Full,
            }
            let next = {
                let mut two = self.lock2(o, r);
                let os = two.get(o);
                if os.index.get(&ow, oh).is_some() {
                    Next::Exists
                } else if let Some(id) = two.get(r).index.get(&rw, rh) {
                    Next::Taken(id)
                } else if two.get(o).live >= self.per_shard {
                    Next::Evict
                } else if !two.get(o).index.has_room(if o == r { 2 } else { 1 })
                    || !two.get(r).index.has_room(1)
                {
                    Next::Full
                } else {
                    let os = two.get(o);
                    let slot = match os.free.pop() {
                        Some(sl) => sl as usize,
                        None => {
                            os.entries.push(Entry::default());
                            os.entries.len() - 1
                        }
                    };
                    let id = self.id_of(o, slot);
                    let e = Entry {
                        orig: req.orig,
                        reply,
                        expires: now
                            + u64::from(req.state.timeout_secs(req.orig.proto, t)).max(1) * NS,
                        bytes: u64::from(req.bytes),
                        packets: 1,
                        state: req.state,
                        flags: req.flags,
                        prev: NIL,
                        next: NIL,
                    };
                    os.entries[slot] = e;
                    os.groups.link(&mut os.entries, slot);
                    os.live += 1;
                    self.live.fetch_add(1, Ordering::Relaxed);
                    let ok = os.index.insert(&ow, oh, id);
                    let ok = two.get(r).index.insert(&rw, rh, id) && ok;
                    debug_assert!(ok, "room was checked under the same locks");
                    Next::Done(e)
                }
            };
            match next {
                Next::Done(e) => {
                    self.created.fetch_add(1, Ordering::Relaxed);
                    return Ok(Created::New(e));
                }
                Next::Exists => {
                    if let Some(h) = self.lookup(&req.orig, 0, req.bytes, now, t) {
                        return Ok(Created::Existing(h));
                    }
                    // An expired entry still holds the tuple: reap it and try again.
                    self.reap_key(&req.orig, now);
                    retries += 1;
                    if retries > 3 {
                        return Err(CreateError::Full);
                    }
                    continue;
                }
                Next::Taken(id) => {
                    // A new TCP connection may take over the tuple of its client's closed one.
                    let also = if req.state == State::TcpSynSent {
                        Reap::OrClosedOf {
                            client: &req.orig,
                            reply: &reply,
                        }
                    } else {
                        Reap::Expired
                    };
                    if retries < 3 && self.reap(id, now, also) {
                        retries += 1;
                        continue;
                    }
                }
                Next::Evict => {
                    if retries < 3 && self.evict_one(o, now) {
                        retries += 1;
                        continue;
                    }
                    return Err(CreateError::Full);
                }
                Next::Full => return Err(CreateError::Full),
            }
            k += 1;
        }
        Err(CreateError::PortsExhausted)
    }

    /// Removes entry `id` if it is expired, or matches what `also` allows.
    fn reap(&self, id: u32, now: u64, also: Reap<'_>) -> bool {
        let (o, slot) = self.split(id);
        let (orig, reply, flags) = {
            let g = self.lock(o);
            let Some(e) = g.entries.get(slot) else {
                return false;
            };
            (e.orig, e.reply, e.flags)
        };
        let ow = orig.words();
        let oh = self.hash_words(&ow);
        let affinity = flags & flag::AFFINITY != 0;
        let rw = reply.words();
        let rh = self.hash_words(&rw);
        let r = if affinity { o } else { self.shard_of(rh) };
        let mut two = self.lock2(o, r);
        let e = two.get(o).entries[slot];
        let expired = e.expires <= now;
        let ok = e.expires != 0
            && e.orig == orig
            && e.reply == reply
            && (expired
                || match also {
                    Reap::Expired => false,
                    Reap::OrUnreplied => e.flags & (flag::SEEN_REPLY | flag::AFFINITY) == 0,
                    Reap::OrClosedOf { client, reply } => {
                        e.flags & flag::AFFINITY == 0
                            && e.reply == *reply
                            && e.orig.proto == ipv4::PROTO_TCP
                            && matches!(e.state, State::TcpTimeWait | State::TcpClose)
                            && e.orig.src == client.src
                            && e.orig.sport == client.sport
                    }
                });
        if !ok {
            return false;
        }
        let os = two.get(o);
        let hw = |k: &[u32; 4]| self.hash_words(k);
        os.index.remove(&ow, oh, hw);
        os.groups.unlink(&mut os.entries, slot);
        os.entries[slot].expires = 0;
        os.free.push(slot as u32);
        os.live -= 1;
        self.live.fetch_sub(1, Ordering::Relaxed);
        if !affinity {
            two.get(r).index.remove(&rw, rh, hw);
        }
        if !expired && matches!(also, Reap::OrClosedOf { .. }) {
            self.taken_over.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Removes entry `id` unconditionally (stale cleanup); `expect` guards against reuse.
    fn remove(&self, id: u32, expect: &FlowKey) -> bool {
        let (o, slot) = self.split(id);
        {
            let mut g = self.lock(o);
            match g.entries.get_mut(slot) {
                Some(e) if e.expires != 0 && e.orig == *expect => e.expires = 1,
                _ => return false,
            }
        }
        self.reap(id, 1, Reap::Expired)
    }

    fn reap_key(&self, key: &FlowKey, now: u64) {
        let w = key.words();
        let h = self.hash_words(&w);
        let id = self.lock(self.shard_of(h)).index.get(&w, h);
        if let Some(id) = id {
            self.reap(id, now, Reap::Expired);
        }
    }

    /// Evicts one expired or never-replied entry of shard `s`; false if there is none.
    fn evict_one(&self, s: usize, now: u64) -> bool {
        let victim = {
            let mut g = self.lock(s);
            let n = g.entries.len();
            let mut found = None;
            for _ in 0..EVICT_SCAN.min(n) {
                let c = g.cursor % n;
                g.cursor = c + 1;
                let e = &g.entries[c];
                if e.expires != 0
                    && (e.expires <= now || e.flags & (flag::SEEN_REPLY | flag::AFFINITY) == 0)
                {
                    found = Some(self.id_of(s, c));
                    break;
                }
            }
            found
        };
        match victim {
            Some(id) if self.reap(id, now, Reap::OrUnreplied) => {
                self.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Incremental expiry: examines at most `budget` slots of the next shard; returns the
    /// number of entries removed. Workers call it once per batch.
    pub fn expire(&self, now: u64, budget: usize) -> usize {
        let s = self.scan.fetch_add(1, Ordering::Relaxed) & self.shard_mask;
        let mut ids = [0u32; 16];
        let mut n = 0;
        {
            let mut g = self.lock(s);
            let len = g.entries.len();
            if len == 0 {
                return 0;
            }
            for _ in 0..budget.min(len) {
                let c = g.cursor % len;
                g.cursor = c + 1;
                let e = &g.entries[c];
                if e.expires != 0 && e.expires <= now {
                    ids[n] = self.id_of(s, c);
                    n += 1;
                    if n == ids.len() {
                        break;
                    }
                }
            }
        }
        let removed = ids[..n]
            .iter()
            .filter(|&&id| self.reap(id, now, Reap::Expired))
            .count();
        self.expired.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// The endpoint remembered for a ClientIP-affinity key, if still valid.
    pub fn affinity_get(&self, key: &FlowKey, now: u64) -> Option<([u8; 4], u16)> {
        let w = key.words();
        let h = self.hash_words(&w);
        let s = self.shard_of(h);
        let g = self.lock(s);
        let id = g.index.get(&w, h)?;
        let (_, slot) = self.split(id);
        let e = &g.entries[slot];
        (e.expires > now && e.orig == *key).then_some((e.reply.src, e.reply.sport))
    }

    /// Records (or refreshes) the endpoint for a ClientIP-affinity key; best effort: nothing
    /// is recorded when the shard is full.
    pub fn affinity_set(&self, key: &FlowKey, ep: ([u8; 4], u16), timeout_secs: u32, now: u64) {
        let w = key.words();
        let h = self.hash_words(&w);
        let s = self.shard_of(h);
        let expires = now + u64::from(timeout_secs) * NS;
        let reply = FlowKey {
            proto: key.proto,
            src: ep.0,
            dst: [0; 4],
            sport: ep.1,
            dport: 0,
        };
        let mut g = self.lock(s);
        if let Some(id) = g.index.get(&w, h) {
            let (_, slot) = self.split(id);
            let e = &mut g.entries[slot];
            e.reply = reply;
            e.expires = expires;
            e.packets = e.packets.wrapping_add(1);
            return;
        }
        if g.live >= self.per_shard || g.index.is_full() {
            return;
        }
        let slot = match g.free.pop() {
            Some(sl) => sl as usize,
            None => {
                g.entries.push(Entry::default());
                g.entries.len() - 1
            }
        };
        let id = self.id_of(s, slot);
        g.entries[slot] = Entry {
            orig: *key,
            reply,
            expires,
            bytes: 0,
            packets: 1,
            state: State::Affinity,
            flags: flag::AFFINITY,
            prev: NIL,
            next: NIL,
        };
        let sh = &mut *g;
        sh.groups.link(&mut sh.entries, slot);
        g.live += 1;
        self.live.fetch_add(1, Ordering::Relaxed);
        g.index.insert(&w, h, id);
    }

    /// Copies of every live entry (affinity records included), with their ids.
    pub fn entries(&self, now: u64) -> Vec<(u32, Entry)> {
        let mut out = Vec::new();
        for (s, sh) in self.shards.iter().enumerate() {
            let g = sh.0.lock();
            for (i, e) in g.entries.iter().enumerate() {
                if e.expires > now {
                    out.push((self.id_of(s, i), *e));
                }
            }
        }
        out
    }

    /// The ids and original tuples of the live entries `pick` selects, read shard by shard
    /// without copying the entries out.
    pub fn select(&self, now: u64, mut pick: impl FnMut(&Entry) -> bool) -> Vec<(u32, FlowKey)> {
        let mut out = Vec::new();
        for (s, sh) in self.shards.iter().enumerate() {
            let g = sh.0.lock();
            if g.live == 0 {
                continue;
            }
            for (i, e) in g.entries.iter().enumerate() {
                if e.expires > now && pick(e) {
                    out.push((self.id_of(s, i), e.orig));
                }
            }
        }
        out
    }

    /// As [`Conntrack::select`], but only among the entries of the Service `groups`
    /// (`conntrack::groups`): each shard's chains of those groups are walked, nothing else.
    pub fn select_groups(
        &self,
        now: u64,
        groups: &[u64],
        mut pick: impl FnMut(&Entry) -> bool,
    ) -> Vec<(u32, FlowKey)> {
        let mut out = Vec::new();
        for (s, sh) in self.shards.iter().enumerate() {
            let g = sh.0.lock();
            if g.live == 0 {
                continue;
            }
            for &key in groups {
                g.groups.for_each(&g.entries, key, |i| {
                    let e = &g.entries[i];
                    if e.expires > now && pick(e) {
                        out.push((self.id_of(s, i), e.orig));
                    }
                });
            }
        }
        out
    }

    /// Removes the entry `key` belongs to (either direction); false when there is none.
    pub fn remove_flow(&self, key: &FlowKey) -> bool {
        let w = key.words();
        let h = self.hash_words(&w);
        let Some(id) = self.lock(self.shard_of(h)).index.get(&w, h) else {
            return false;
        };
        let (owner, slot) = self.split(id);
        let orig = self.lock(owner).entries.get(slot).map(|e| e.orig);
        orig.is_some_and(|o| self.remove(id, &o))
    }

    /// Removes the given entries (ids from `entries`, guarded by their original tuple).
    pub fn remove_entries(&self, victims: &[(u32, FlowKey)]) -> usize {
        victims.iter().filter(|(id, k)| self.remove(*id, k)).count()
    }

    pub fn stats(&self) -> CtStats {
        let mut st = CtStats {
            capacity: self.capacity(),
            shards: self.shards.len(),
            created: self.created.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            taken_over: self.taken_over.load(Ordering::Relaxed),
            ..CtStats::default()
        };
        for sh in self.shards.iter() {
            let g = sh.0.lock();
            st.live += g.live;
            st.bytes_allocated += g.index.bytes()
                + g.groups.bytes()
                + g.entries.capacity() * std::mem::size_of::<Entry>()
                + g.free.capacity() * 4;
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn flow(i: u32) -> NewFlow {
        let a = (0x0af4_0100 + (i % 200)).to_be_bytes();
        let orig = FlowKey::new(
            ipv4::PROTO_UDP,
            a,
            [10, 96, 0, 10],
            1024 + (i / 200) as u16,
            53,
        );
        let reply = FlowKey::new(ipv4::PROTO_UDP, [10, 244, 2, 20], a, 53, orig.sport);
        NewFlow {
            orig,
            reply,
            port_range: None,
            flags: 0,
            state: State::Unreplied,
            bytes: 60,
        }
    }

    #[test]
    fn prefetch_batch_changes_nothing() {
        let t = Timeouts::default();
        // Enough entries for 16 shards; keys of both directions, and unknown ones.
        let ct = Conntrack::new(1 << 19);
        assert_eq!(ct.shards.len(), MAX_SHARDS);
        for i in 0..5000 {
            ct.create(&flow(i), 1, &t).unwrap();
        }
        let keys: Vec<FlowKey> = (0..200u32)
            .map(|i| match i % 3 {
                0 => flow(i * 7).orig,
                1 => flow(i * 7).reply,
                _ => flow(100_000 + i).orig,
            })
            .collect();
        for n in [0, 1, 17, 64, 65, 200] {
            ct.prefetch_batch(&keys[..n]);
        }
        assert_eq!(ct.len(), 5000);
        for (i, k) in keys.iter().enumerate() {
            let hit = ct.peek(k, 2);
            assert_eq!(hit.is_some(), i % 3 != 2, "key {i}");
        }
    }

    #[test]
    fn both_directions_from_many_threads() {
        let t = Timeouts::default();
        let ct = Arc::new(Conntrack::new(100_000));
        assert!(ct.stats().shards > 1);
        let threads: Vec<_> = (0..4u32)
            .map(|w| {
                let ct = ct.clone();
                let t = t.clone();
                std::thread::spawn(move || {
                    for i in (w * 5000)..(w + 1) * 5000 {
                        let f = flow(i);
                        assert!(matches!(ct.create(&f, 1, &t), Ok(Created::New(_))));
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(ct.stats().live, 20_000);
        for i in 0..20_000 {
            let f = flow(i);
            let h = ct.lookup(&f.reply, 0, 60, 2, &t).unwrap();
            assert_eq!(h.dir, Dir::Reply);
            assert_eq!(h.entry.state, State::Replied);
            assert_eq!(ct.lookup(&f.orig, 0, 60, 3, &t).unwrap().dir, Dir::Orig);
        }
        // Everything expires after the UDP stream timeout, removed in bounded steps.
        let later = 3 + 121 * NS;
        assert!(ct.peek(&flow(7).orig, later).is_none());
        let mut removed = 0;
        for _ in 0..100_000 {
            removed += ct.expire(later, 64);
            if removed == 20_000 {
                break;
            }
        }
        assert_eq!(removed, 20_000);
        assert_eq!(ct.stats().live, 0);
    }

    #[test]
    fn clash_on_reply_tuple_remaps_the_port() {
        let t = Timeouts::default();
        let ct = Conntrack::new(16);
        let mut a = flow(1);
        a.port_range = Some([2000, 2001]); // the client's port 1024 is kept when free
        let mut b = a;
        b.orig.dst = [10, 96, 0, 11]; // another VIP, same endpoint, same client port
        let Ok(Created::New(ea)) = ct.create(&a, 1, &t) else {
            panic!()
        };
        let Ok(Created::New(eb)) = ct.create(&b, 1, &t) else {
            panic!()
        };
        assert_eq!(ea.reply.dport, a.orig.sport);
        assert_ne!(eb.reply.dport, ea.reply.dport);
        assert!((2000..=2001).contains(&eb.reply.dport));
    }

    /// A client's connection to an endpoint through a Service address, from `sport` (the
    /// endpoint's port 8080 answers to the client's port: the reply tuple).
    fn tcp_flow(src: [u8; 4], sport: u16, vip: [u8; 4], client: [u8; 4], cport: u16) -> NewFlow {
        NewFlow {
            orig: FlowKey::new(ipv4::PROTO_TCP, src, vip, sport, 80),
            reply: FlowKey::new(ipv4::PROTO_TCP, [10, 244, 2, 20], client, 8080, cport),
            port_range: Some([2000, 2001]),
            flags: flag::SERVICE,
            state: State::TcpSynSent,
            bytes: 60,
        }
    }

    #[test]
    fn a_clients_new_connection_takes_the_tuple_of_its_closed_one() {
        let t = Timeouts::default();
        let ct = Conntrack::new(64);
        let pod_a = [10, 244, 1, 10];
        let a = tcp_flow(pod_a, 40000, [10, 96, 0, 10], pod_a, 40000);
        assert!(matches!(ct.create(&a, 1, &t), Ok(Created::New(_))));
        let reset = crate::wire::tcp::FLAG_RST | crate::wire::tcp::FLAG_ACK;
        ct.track(&a.orig, reset, 40, 2, &t).expect("a's entry");
        assert_eq!(ct.peek(&a.orig, 3).unwrap().entry.state, State::TcpClose);
        // The client reuses its port toward another Service with the same endpoint: the new
        // connection keeps the port, and the closed entry goes.
        let b = tcp_flow(pod_a, 40000, [10, 96, 0, 11], pod_a, 40000);
        let Ok(Created::New(eb)) = ct.create(&b, 3, &t) else {
            panic!("b refused")
        };
        assert_eq!(eb.reply.dport, 40000);
        assert!(ct.peek(&a.orig, 4).is_none());
        assert_eq!(ct.stats().taken_over, 1);
        // A live connection keeps its tuple: a third one from that port is remapped.
        let c = tcp_flow(pod_a, 40000, [10, 96, 0, 12], pod_a, 40000);
        let Ok(Created::New(ec)) = ct.create(&c, 4, &t) else {
            panic!("c refused")
        };
        assert!((2000..=2001).contains(&ec.reply.dport), "{ec:?}");
        assert!(ct.peek(&b.orig, 5).is_some());
        // A closed flow of another client (here masqueraded to pod A's port 41000) is not
        // taken over by pod A's own port 41000.
        let other = tcp_flow([10, 244, 1, 11], 5000, [10, 96, 0, 13], pod_a, 41000);
        assert!(matches!(ct.create(&other, 5, &t), Ok(Created::New(_))));
        ct.track(&other.orig, reset, 40, 6, &t)
            .expect("other's entry");
        let d = tcp_flow(pod_a, 41000, [10, 96, 0, 13], pod_a, 41000);
        let Ok(Created::New(ed)) = ct.create(&d, 7, &t) else {
            panic!("d refused")
        };
        assert_ne!(ed.reply.dport, 41000);
        assert!(ct.peek(&other.orig, 8).is_some());
        assert_eq!(ct.stats().taken_over, 1);
    }
}

#[cfg(test)]
mod groups_tests;
