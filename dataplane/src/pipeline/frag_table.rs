//! The fragment table of nat44-in: virtual reassembly without reassembling (VPP's shallow
//! reassembly, `ip4-sv-reass`).
//!
//! Only the first fragment of a datagram carries the ports, so nat44-in translates it like
//! any packet and records here, under (source, destination, protocol, IP id) as the packet
//! arrived, what became of it: the new addresses (unchanged ones included) or "dropped".
//! Later fragments look the datagram up and get the same addresses; their payload is never
//! touched (the L4 checksum sits in the first fragment and covers the whole datagram, so
//! the incremental update made there stays right).
//!
//! - Fixed capacity, reserved when the pipeline is built: `SETS` × `WAYS` entries, a set
//!   chosen by a hash keyed with a per-table random seed (packets choose the keys). A new
//!   datagram takes a free or expired way of its set, else the oldest (counted eviction).
//! - An entry lives `LIFETIME_NS` (2 s) and is freed earlier once every byte of the datagram
//!   went through (the last fragment gives the length).
//! - Fragments that arrive before their first fragment are held, copied into
//!   `HOLD_SLOTS` preallocated frame buffers, at most `HOLD_PER_DATAGRAM` per datagram, for
//!   at most `LIFETIME_NS`; the first fragment releases them.
//!
//! One table per worker: the fragments of a datagram reach the same worker (one queue per
//! veth; NIC RSS hashes IPv4 fragments, first included, on the addresses only).

use super::batch::MAX_FRAME;
use crate::tables::PortId;
use std::hash::BuildHasher;

pub const SETS: usize = 256;
pub const WAYS: usize = 4;
/// How long a datagram's translation and its held fragments live (the kernel's
/// `ipfrag_time` is 30 s; a translated datagram's fragments normally follow within µs).
pub const LIFETIME_NS: u64 = 2_000_000_000;
pub const HOLD_SLOTS: usize = 32;
pub const HOLD_PER_DATAGRAM: usize = 8;

/// A datagram as it arrived: addresses, protocol and IP identification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragKey {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub id: u16,
}

/// What happened to a datagram's first fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragVerdict {
    /// It left with these addresses (the same ones when not translated).
    Pass { src: [u8; 4], dst: [u8; 4] },
    /// It was dropped or rejected.
    Drop,
}

#[derive(Clone, Copy)]
struct Entry {
    key: FragKey,
    verdict: FragVerdict,
    /// 0: free.
    expires: u64,
    /// Payload bytes seen so far.
    got: u32,
    /// Payload length of the whole datagram, once its last fragment was seen (0: unknown).
    total: u32,
}

const FREE: Entry = Entry {
    key: FragKey {
        src: [0; 4],
        dst: [0; 4],
        proto: 0,
        id: 0,
    },
    verdict: FragVerdict::Drop,
    expires: 0,
    got: 0,
    total: 0,
};

/// Where a held fragment came from (restored into the batch slot it is released into).
#[derive(Clone, Copy, Debug, Default)]
pub struct HeldMeta {
    pub key: FragKey,
    /// 0: slot free.
    pub expires: u64,
    pub in_port: PortId,
    pub flags: u8,
    pub peer: u16,
    pub in_tunnel_mtu: u16,
    pub len: u16,
    /// Snapshot generation `in_port` belongs to (a publish may renumber ports).
    pub generation: u64,
}

/// Why an early fragment could not be held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldError {
    /// Every hold buffer is in use.
    Full,
    /// The datagram already has `HOLD_PER_DATAGRAM` fragments held.
    DatagramLimit,
    /// Longer than a hold buffer (cannot happen for frames that fit a batch slot).
    TooLong,
}

pub struct FragTable {
    entries: Box<[Entry]>,
    seed: u64,
    held: Box<[HeldMeta]>,
    hold_data: Box<[u8]>,
    held_count: usize,
}

impl Default for FragTable {
    fn default() -> Self {
        Self::new()
    }
}

impl FragTable {
    /// Reserves everything the table will ever use (about 160 KiB).
    pub fn new() -> Self {
        FragTable {
            entries: vec![FREE; SETS * WAYS].into_boxed_slice(),
            seed: std::collections::hash_map::RandomState::new().hash_one(0x6672_6167_u64),
            held: vec![HeldMeta::default(); HOLD_SLOTS].into_boxed_slice(),
            hold_data: vec![0u8; HOLD_SLOTS * MAX_FRAME].into_boxed_slice(),
            held_count: 0,
        }
    }

    #[inline]
    fn set(&self, k: &FragKey) -> usize {
        let mut h = self.seed
            ^ (u64::from(u32::from_be_bytes(k.src)) << 32 | u64::from(u32::from_be_bytes(k.dst)));
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= u64::from(k.id) << 8 | u64::from(k.proto);
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 32;
        (h as usize % SETS) * WAYS
    }

    /// Records the verdict of a datagram's first fragment (`payload` bytes after the IPv4
    /// header). Returns true when a live entry of another datagram was evicted for it.
    pub fn insert(&mut self, k: FragKey, verdict: FragVerdict, payload: u32, now: u64) -> bool {
        let base = self.set(&k);
        let ways = &mut self.entries[base..base + WAYS];
        let mut victim = 0;
        let mut evicted = true;
        for (w, e) in ways.iter().enumerate() {
            if e.expires != 0 && e.key == k {
                victim = w;
                evicted = false;
                break;
            }
            if e.expires <= now {
                if evicted {
                    victim = w;
                    evicted = false;
                }
            } else if evicted && e.expires < ways[victim].expires {
                victim = w;
            }
        }
        ways[victim] = Entry {
            key: k,
            verdict,
            expires: now + LIFETIME_NS,
            got: payload,
            total: 0,
        };
        evicted
    }

    /// The verdict for a later fragment (`offset` and `payload` in bytes, `last`: MF clear),
    /// counting its bytes; the entry is freed once the whole datagram went through.
    pub fn lookup(
        &mut self,
        k: &FragKey,
        offset: u32,
        payload: u32,
        last: bool,
        now: u64,
    ) -> Option<FragVerdict> {
        let base = self.set(k);
        let e = self.entries[base..base + WAYS]
            .iter_mut()
            .find(|e| e.expires > now && e.key == *k)?;
        let v = e.verdict;
        e.got = e.got.saturating_add(payload);
        if last {
            e.total = offset + payload;
        }
        if e.total != 0 && e.got >= e.total {
            *e = FREE;
        }
        Some(v)
    }

    /// Live entries (tests and dumps; scans the whole table).
    pub fn len(&self, now: u64) -> usize {
        self.entries.iter().filter(|e| e.expires > now).count()
    }

    pub fn is_empty(&self, now: u64) -> bool {
        self.len(now) == 0
    }

    pub fn held_count(&self) -> usize {
        self.held_count
    }

    /// Copies an early fragment (the whole frame) into a hold buffer.
    pub fn hold(&mut self, meta: HeldMeta, frame: &[u8], now: u64) -> Result<(), HoldError> {
        if frame.len() > MAX_FRAME {
            return Err(HoldError::TooLong);
        }
        let mut free = None;
        let mut same = 0;
        for (s, h) in self.held.iter().enumerate() {
            if h.expires == 0 {
                free = free.or(Some(s));
            } else if h.key == meta.key {
                same += 1;
            }
        }
        if same >= HOLD_PER_DATAGRAM {
            return Err(HoldError::DatagramLimit);
        }
        let s = free.ok_or(HoldError::Full)?;
        self.hold_data[s * MAX_FRAME..s * MAX_FRAME + frame.len()].copy_from_slice(frame);
        self.held[s] = HeldMeta {
            expires: now + LIFETIME_NS,
            len: frame.len() as u16,
            ..meta
        };
        self.held_count += 1;
        Ok(())
    }

    /// A held fragment of datagram `k`, if any (release it with `release`).
    pub fn find_held(&self, k: &FragKey) -> Option<usize> {
        if self.held_count == 0 {
            return None;
        }
        self.held.iter().position(|h| h.expires != 0 && h.key == *k)
    }

    pub fn held_meta(&self, s: usize) -> &HeldMeta {
        &self.held[s]
    }

    pub fn held_frame(&self, s: usize) -> &[u8] {
        let n = usize::from(self.held[s].len);
        &self.hold_data[s * MAX_FRAME..s * MAX_FRAME + n]
    }

    /// Frees hold buffer `s`.
    pub fn release(&mut self, s: usize) {
        if self.held[s].expires != 0 {
            self.held[s].expires = 0;
            self.held_count -= 1;
        }
    }

    /// Frees the hold buffers whose first fragment did not come in time; returns how many.
    pub fn expire_held(&mut self, now: u64) -> usize {
        if self.held_count == 0 {
            return 0;
        }
        let mut n = 0;
        for h in self.held.iter_mut() {
            if h.expires != 0 && h.expires <= now {
                h.expires = 0;
                n += 1;
            }
        }
        self.held_count -= n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: u8, id: u16) -> FragKey {
        FragKey {
            src: [10, 0, 0, src],
            dst: [10, 96, 0, 10],
            proto: 17,
            id,
        }
    }
    const PASS: FragVerdict = FragVerdict::Pass {
        src: [1, 1, 1, 1],
        dst: [2, 2, 2, 2],
    };

    #[test]
    fn entry_lives_until_every_byte_went_through() {
        let mut t = FragTable::new();
        assert!(!t.insert(key(1, 7), PASS, 1480, 10));
        assert_eq!(t.lookup(&key(2, 7), 1480, 1480, false, 11), None);
        // Last fragment first: length known, not complete yet.
        assert_eq!(t.lookup(&key(1, 7), 2960, 48, true, 11), Some(PASS));
        assert_eq!(t.lookup(&key(1, 7), 1480, 1480, false, 12), Some(PASS));
        assert!(t.is_empty(12), "freed once complete");
        assert_eq!(t.lookup(&key(1, 7), 1480, 1480, false, 12), None);
    }

    #[test]
    fn entries_expire() {
        let mut t = FragTable::new();
        t.insert(key(1, 7), PASS, 8, 10);
        assert_eq!(t.lookup(&key(1, 7), 8, 8, false, 10 + LIFETIME_NS), None);
    }

    #[test]
    fn full_set_evicts_the_oldest_and_says_so() {
        let mut t = FragTable::new();
        let mut evictions = 0;
        for id in 0..(SETS * WAYS * 2) as u16 {
            evictions += usize::from(t.insert(key(1, id), PASS, 8, 100 + u64::from(id)));
        }
        assert_eq!(t.len(10_000), SETS * WAYS);
        assert_eq!(evictions, SETS * WAYS);
        // The newest survive.
        let last = (SETS * WAYS * 2 - 1) as u16;
        assert!(t.lookup(&key(1, last), 8, 8, false, 10_000).is_some());
    }

    #[test]
    fn hold_is_bounded_per_datagram_and_overall() {
        let mut t = FragTable::new();
        let m = |k| HeldMeta {
            key: k,
            ..HeldMeta::default()
        };
        for _ in 0..HOLD_PER_DATAGRAM {
            t.hold(m(key(1, 1)), &[1, 2, 3], 5).unwrap();
        }
        assert_eq!(t.hold(m(key(1, 1)), &[1], 5), Err(HoldError::DatagramLimit));
        let mut id = 2;
        while t.held_count() < HOLD_SLOTS {
            t.hold(m(key(1, id)), &[9; 60], 5).unwrap();
            id += 1;
        }
        assert_eq!(t.hold(m(key(1, 999)), &[1], 5), Err(HoldError::Full));
        let s = t.find_held(&key(1, 1)).unwrap();
        assert_eq!(t.held_frame(s), &[1, 2, 3]);
        t.release(s);
        assert_eq!(t.held_count(), HOLD_SLOTS - 1);
        assert_eq!(t.expire_held(5 + LIFETIME_NS), HOLD_SLOTS - 1);
        assert_eq!(t.held_count(), 0);
        assert_eq!(t.find_held(&key(1, 1)), None);
    }
}
