//! IPv4 longest-prefix match as a 16-8-8 stride trie (the shape of VPP's ip4 mtrie).
//!
//! A lookup is at most three dependent loads, whatever the number of prefixes. The trie is
//! built once by the control side from a prefix list and is read-only afterwards.
//!
//! [`Lpm::lookup_batch`] looks up many addresses at once the way VPP's ip4-lookup does: one
//! pass over the batch per trie level, each pass prefetching what the next one reads, so
//! that with a trie far larger than the caches the misses of a whole batch overlap instead
//! of costing three serial misses per address.

use crate::prefetch::prefetch;

const PLY_BIT: u32 = 1 << 31;

/// Addresses [`Lpm::lookup_batch`] handles per round of passes (a receive batch).
pub const LOOKUP_BATCH: usize = 64;

pub use podswitch_model::prefix::{Prefix, mask};

/// Whether two prefixes share an address.
pub fn overlaps(a: Prefix, b: Prefix) -> bool {
    let m = mask(a.len.min(b.len));
    a.addr & m == b.addr & m
}

/// The built trie. Values are `u32` below 2^31; `lookup` returns `None` for no match.
pub struct Lpm {
    /// One entry per /16 (a fixed-size array: indexing by `addr >> 16` needs no check).
    root: Box<[u32; 1 << 16]>,
    plies: Vec<[u32; 256]>,
    len: usize,
}

/// Moves a large ply array into an allocation backed by transparent huge pages: with a
/// million prefixes the plies take hundreds of MiB and every lookup would otherwise pay a
/// TLB miss on top of its cache miss.
fn with_huge_pages(plies: Vec<[u32; 256]>) -> Vec<[u32; 256]> {
    const WORTH_IT: usize = 8 << 20;
    if plies.len() * 1024 < WORTH_IT {
        return plies;
    }
    let mut v: Vec<[u32; 256]> = Vec::with_capacity(plies.len());
    crate::hugepages::advise_huge_pages(v.as_ptr() as usize, plies.len() * 1024);
    v.extend_from_slice(&plies);
    v
}

impl Lpm {
    /// Builds from `(prefix, value)` pairs. Later duplicates of the same prefix win.
    pub fn build(entries: &[(Prefix, u32)]) -> Lpm {
        let mut sorted: Vec<(Prefix, u32)> = entries.to_vec();
        // Shorter prefixes first, so longer ones paint over them.
        sorted.sort_by_key(|(p, _)| p.len);
        let mut t = Lpm {
            root: vec![0u32; 1 << 16]
                .into_boxed_slice()
                .try_into()
                .expect("2^16 entries"),
            plies: Vec::new(),
            len: 0,
        };
        for (p, v) in sorted {
            assert!(v < PLY_BIT - 1, "LPM values must be below 2^31 - 1");
            t.insert(p, v + 1);
        }
        t.plies = with_huge_pages(std::mem::take(&mut t.plies));
        t.len = entries.len();
        t
    }

    fn new_ply(&mut self, fill: u32) -> u32 {
        self.plies.push([fill; 256]);
        (self.plies.len() - 1) as u32 | PLY_BIT
    }

    /// Returns the ply index under `slot`, creating it (filled with the slot's leaf) if needed.
    fn descend(&mut self, slot: u32) -> (usize, u32) {
        if slot & PLY_BIT != 0 {
            ((slot & !PLY_BIT) as usize, slot)
        } else {
            let p = self.new_ply(slot);
            ((p & !PLY_BIT) as usize, p)
        }
    }

    fn insert(&mut self, p: Prefix, leaf: u32) {
        let a = p.addr;
        let len = u32::from(p.len);
        if len <= 16 {
            let start = (a >> 16) as usize;
            let n = 1usize << (16 - len);
            self.root[start..start + n].fill(leaf);
            return;
        }
        let r = (a >> 16) as usize;
        let (p1, slot) = self.descend(self.root[r]);
        self.root[r] = slot;
        let i1 = ((a >> 8) & 0xff) as usize;
        if len <= 24 {
            let n = 1usize << (24 - len);
            self.plies[p1][i1..i1 + n].fill(leaf);
            return;
        }
        let (p2, slot) = self.descend(self.plies[p1][i1]);
        self.plies[p1][i1] = slot;
        let i2 = (a & 0xff) as usize;
        let n = 1usize << (32 - len);
        self.plies[p2][i2..i2 + n].fill(leaf);
    }

    #[inline]
    pub fn lookup(&self, addr: [u8; 4]) -> Option<u32> {
        let a = u32::from_be_bytes(addr);
        let mut e = self.root[(a >> 16) as usize];
        if e & PLY_BIT != 0 {
            e = self.plies[(e & !PLY_BIT) as usize][((a >> 8) & 0xff) as usize];
            if e & PLY_BIT != 0 {
                e = self.plies[(e & !PLY_BIT) as usize][(a & 0xff) as usize];
            }
        }
        e.checked_sub(1)
    }

    /// Looks up every address of `addrs` (`u32::from_be_bytes` of the address) into the
    /// same position of `out`: the result of [`Lpm::lookup`] for each, computed a batch of
    /// [`LOOKUP_BATCH`] at a time in one pass per trie level (root entries, first-level plies,
    /// second-level plies), each pass prefetching the entries the next one reads.
    ///
    /// Worth it only when the trie is larger than the caches *and* the caller does other
    /// work between lookups (a pipeline stage): a tight loop of [`Lpm::lookup`] already
    /// overlaps the misses of consecutive addresses in the core's out-of-order window, and
    /// for a cached trie the extra passes cost more than they save (see BENCHMARKS.md).
    ///
    /// # Panics
    /// If `out` is shorter than `addrs`.
    pub fn lookup_batch(&self, addrs: &[u32], out: &mut [Option<u32>]) {
        assert!(out.len() >= addrs.len(), "lookup_batch: output too short");
        for (a, o) in addrs.chunks(LOOKUP_BATCH).zip(out.chunks_mut(LOOKUP_BATCH)) {
            self.lookup_chunk(a, o);
        }
    }

    /// Address of the entry `addr` selects in the ply `slot` points to (for prefetching).
    #[inline(always)]
    fn ply_entry_addr(&self, slot: u32, byte: u32) -> usize {
        self.plies.as_ptr() as usize + ((slot & !PLY_BIT) as usize * 256 + byte as usize) * 4
    }

    #[inline]
    fn lookup_chunk(&self, addrs: &[u32], out: &mut [Option<u32>]) {
        let mut slots = [0u32; LOOKUP_BATCH];
        let slots = &mut slots[..addrs.len()];
        // Read the root entries (independent loads: the core overlaps them without a prefetch
        // pass, measured) and start loading the first-level ply entries they point to.
        for (e, &a) in slots.iter_mut().zip(addrs) {
            *e = self.root[(a >> 16) as usize];
            if *e & PLY_BIT != 0 {
                prefetch(self.ply_entry_addr(*e, (a >> 8) & 0xff));
            }
        }
        // Read those; start loading the second-level ply entries.
        for (e, &a) in slots.iter_mut().zip(addrs) {
            if *e & PLY_BIT != 0 {
                *e = self.plies[(*e & !PLY_BIT) as usize][((a >> 8) & 0xff) as usize];
                if *e & PLY_BIT != 0 {
                    prefetch(self.ply_entry_addr(*e, a & 0xff));
                }
            }
        }
        // Read those: every slot is now a leaf (value + 1, or 0 for no match).
        for ((o, e), &a) in out.iter_mut().zip(slots.iter_mut()).zip(addrs) {
            if *e & PLY_BIT != 0 {
                *e = self.plies[(*e & !PLY_BIT) as usize][(a & 0xff) as usize];
            }
            *o = e.checked_sub(1);
        }
    }

    /// Number of prefixes it was built from.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Bytes used by the trie arrays.
    pub fn memory_bytes(&self) -> usize {
        self.root.len() * 4 + self.plies.len() * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn longest_match_wins_at_every_stride() {
        let t = Lpm::build(&[
            (p("0.0.0.0/0"), 0),
            (p("10.244.0.0/16"), 1),
            (p("10.244.1.0/24"), 2),
            (p("10.244.1.10/32"), 3),
            (p("10.244.1.128/25"), 4),
            (p("10.0.0.0/8"), 5),
        ]);
        assert_eq!(t.lookup([8, 8, 8, 8]), Some(0));
        assert_eq!(t.lookup([10, 1, 2, 3]), Some(5));
        assert_eq!(t.lookup([10, 244, 2, 20]), Some(1));
        assert_eq!(t.lookup([10, 244, 1, 11]), Some(2));
        assert_eq!(t.lookup([10, 244, 1, 10]), Some(3));
        assert_eq!(t.lookup([10, 244, 1, 200]), Some(4));
    }

    #[test]
    fn no_default_means_miss() {
        let t = Lpm::build(&[(p("10.244.1.0/24"), 7)]);
        assert_eq!(t.lookup([10, 244, 2, 1]), None);
        assert_eq!(t.lookup([10, 244, 1, 1]), Some(7));
    }

    #[test]
    fn prefix_text() {
        assert_eq!(p("10.244.1.77/24").to_string(), "10.244.1.0/24");
        assert!("10.0.0.0/33".parse::<Prefix>().is_err());
        assert!("10.0.0/8".parse::<Prefix>().is_err());
    }

    proptest! {
        #[test]
        fn matches_linear_scan(
            prefixes in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..60),
            probes in proptest::collection::vec(any::<u32>(), 1..50),
        ) {
            let entries: Vec<(Prefix, u32)> = prefixes
                .iter()
                .enumerate()
                .map(|(i, (a, l))| (Prefix::new(a.to_be_bytes(), *l).unwrap(), i as u32))
                .collect();
            let t = Lpm::build(&entries);
            for a in probes {
                // Reference: longest prefix; among equal prefixes the last one given.
                let mut best: Option<(u8, u32)> = None;
                for (pfx, v) in &entries {
                    if pfx.contains(a) && best.is_none_or(|(l, _)| pfx.len >= l) {
                        best = Some((pfx.len, *v));
                    }
                }
                prop_assert_eq!(t.lookup(a.to_be_bytes()), best.map(|(_, v)| v));
            }
        }

        #[test]
        fn batch_matches_single_lookup(
            prefixes in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..300),
            // Probes near the prefixes (same /16 or /24, so the plies are exercised) and
            // anywhere; more than one round of `LOOKUP_BATCH`, and a partial last one.
            probes in proptest::collection::vec((any::<u32>(), 0usize..300, 0u8..3), 0..200),
        ) {
            let entries: Vec<(Prefix, u32)> = prefixes
                .iter()
                .enumerate()
                .map(|(i, (a, l))| (Prefix::new(a.to_be_bytes(), *l).unwrap(), i as u32))
                .collect();
            let t = Lpm::build(&entries);
            let addrs: Vec<u32> = probes
                .iter()
                .map(|&(r, k, how)| match (how, entries.get(k % entries.len().max(1))) {
                    (0, Some((p, _))) => p.addr | (r & 0xffff),
                    (1, Some((p, _))) => p.addr | (r & 0xff),
                    _ => r,
                })
                .collect();
            let mut out = vec![Some(u32::MAX); addrs.len()];
            t.lookup_batch(&addrs, &mut out);
            for (a, got) in addrs.iter().zip(&out) {
                prop_assert_eq!(*got, t.lookup(a.to_be_bytes()));
            }
        }
    }

    #[test]
    fn batch_of_every_size() {
        let t = Lpm::build(&[
            (p("10.244.0.0/16"), 1),
            (p("10.244.1.0/24"), 2),
            (p("10.244.1.10/32"), 3),
        ]);
        let pool = [
            u32::from_be_bytes([10, 244, 1, 10]),
            u32::from_be_bytes([10, 244, 1, 11]),
            u32::from_be_bytes([10, 244, 2, 1]),
            u32::from_be_bytes([8, 8, 8, 8]),
        ];
        for n in [0, 1, 63, 64, 65, 128, 130] {
            let addrs: Vec<u32> = (0..n).map(|i| pool[i % pool.len()]).collect();
            let mut out = vec![None; n + 3];
            t.lookup_batch(&addrs, &mut out);
            for (i, a) in addrs.iter().enumerate() {
                assert_eq!(out[i], t.lookup(a.to_be_bytes()), "n {n} i {i}");
            }
            assert!(out[n..].iter().all(Option::is_none));
        }
    }
}
