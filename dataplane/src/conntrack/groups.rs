//! Per-Service lists of a shard's entries, so that the cleanup after a Service change visits
//! that Service's entries only instead of walking the whole table.
//!
//! Every Service connection belongs to the group of its frontend (the frontend key of its
//! original destination, port and protocol) and every ClientIP-affinity record to the group
//! of its Service port's tag; other entries (masquerade, policy) belong to none. A shard
//! keeps, per group with an entry in it, the slot of the group's first entry ([`Heads`]), and
//! the entries of a group are chained through `prev`/`next` slot numbers stored in the
//! entries themselves (the entry's cache line had room for them). Linking and unlinking are
//! O(1), allocate nothing (the heads are reserved with the shard: a shard never holds more
//! groups than entries) and happen under the shard lock that already guards the entry.
//! An entry's group never changes while it lives: its original tuple and its SERVICE and
//! AFFINITY flags are set when it is created.

use super::key::flag;
use super::table::Entry;
use crate::tables::services::frontend_key;

/// "No slot": the end of a chain.
pub(super) const NIL: u32 = u32::MAX;

/// Set in the group keys of affinity records; frontend keys use the low 56 bits only.
const AFFINITY_GROUP: u64 = 1 << 63;

/// The group of the Service connections to frontend `key` (a `frontend_key`).
pub fn frontend_group(key: u64) -> u64 {
    key
}

/// The group of the affinity records of the Service port with affinity tag `tag`.
pub fn affinity_group(tag: u32) -> u64 {
    AFFINITY_GROUP | u64::from(tag)
}

/// The group entry `e` belongs to, if any.
pub fn group_of(e: &Entry) -> Option<u64> {
    if e.flags & flag::AFFINITY != 0 {
        Some(affinity_group(u32::from_be_bytes(e.orig.dst)))
    } else if e.flags & flag::SERVICE != 0 {
        let o = &e.orig;
        Some(frontend_group(frontend_key(o.dst, o.dport, o.proto)))
    } else {
        None
    }
}

/// Group key -> slot of the group's first entry in the shard. Fixed-capacity open
/// addressing (linear probing, backward-shift deletion); slots are `[key, first + 1]`,
/// all-zero when empty, so the allocator can hand out lazily zeroed pages.
pub(super) struct Heads {
    slots: Box<[[u64; 2]]>,
    mask: usize,
}

#[inline]
fn hash(key: u64) -> usize {
    let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h ^ (h >> 29)) as usize
}

impl Heads {
    /// Room for `max_groups` groups at a load factor of at most 3/4.
    pub fn new(max_groups: usize) -> Self {
        let buckets = (max_groups * 4 / 3 + 1).next_power_of_two().max(8);
        Heads {
            slots: vec![[0u64; 2]; buckets].into_boxed_slice(),
            mask: buckets - 1,
        }
    }

    pub fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<[u64; 2]>()
    }

    /// Position of `key`, or of the empty slot ending its probe run.
    #[inline]
    fn find(&self, key: u64) -> usize {
        let mut i = hash(key) & self.mask;
        while self.slots[i][1] != 0 && self.slots[i][0] != key {
            i = (i + 1) & self.mask;
        }
        i
    }

    /// The first entry of group `key`, or [`NIL`].
    #[inline]
    pub fn first(&self, key: u64) -> u32 {
        let s = self.slots[self.find(key)];
        if s[1] == 0 { NIL } else { (s[1] - 1) as u32 }
    }

    /// Makes `slot` the first entry of group `key` (adding the group if new). The caller
    /// guarantees room: at most as many groups as the shard has entries.
    #[cfg(test)]
    fn set_first(&mut self, key: u64, slot: u32) {
        let i = self.find(key);
        self.slots[i] = [key, u64::from(slot) + 1];
    }

    /// Forgets group `key` (its last entry went).
    #[cfg(test)]
    fn remove(&mut self, key: u64) {
        let i = self.find(key);
        if self.slots[i][1] != 0 {
            self.remove_at(i);
        }
    }

    /// Empties position `i` (occupied), moving later members of its probe run back.
    fn remove_at(&mut self, i: usize) {
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        while self.slots[j][1] != 0 {
            let home = hash(self.slots[j][0]) & self.mask;
            // Movable if its home is not in the cyclic range (hole, j].
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.slots[hole] = [0; 2];
    }

    /// Adds entry `slot` of `entries` to the front of its group's chain (nothing when it
    /// belongs to no group). The entry must be in place and not yet linked.
    #[inline]
    pub fn link(&mut self, entries: &mut [Entry], slot: usize) {
        let Some(key) = group_of(&entries[slot]) else {
            return;
        };
        // One probe of the heads: the group's position serves to read and to write it.
        let i = self.find(key);
        let first = match self.slots[i][1] {
            0 => NIL,
            f => (f - 1) as u32,
        };
        entries[slot].prev = NIL;
        entries[slot].next = first;
        if first != NIL {
            entries[first as usize].prev = slot as u32;
        }
        self.slots[i] = [key, slot as u64 + 1];
    }

    /// Takes entry `slot` of `entries` out of its group's chain (nothing when it belongs
    /// to no group); call before the slot is freed.
    #[inline]
    pub fn unlink(&mut self, entries: &mut [Entry], slot: usize) {
        let Some(key) = group_of(&entries[slot]) else {
            return;
        };
        let (prev, next) = (entries[slot].prev, entries[slot].next);
        if next != NIL {
            entries[next as usize].prev = prev;
        }
        if prev != NIL {
            entries[prev as usize].next = next;
        } else {
            let i = self.find(key);
            debug_assert_eq!(self.slots[i][1], slot as u64 + 1, "first of its group");
            if next != NIL {
                self.slots[i][1] = u64::from(next) + 1;
            } else {
                self.remove_at(i);
            }
        }
        entries[slot].prev = NIL;
        entries[slot].next = NIL;
    }

    /// Calls `f` with the slot of every entry of group `key` (live or expired).
    #[inline]
    pub fn for_each(&self, entries: &[Entry], key: u64, mut f: impl FnMut(usize)) {
        let mut at = self.first(key);
        while at != NIL {
            f(at as usize);
            at = entries[at as usize].next;
        }
    }

    /// Every group key with its chain, for consistency checks in tests.
    #[cfg(test)]
    pub fn groups(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().filter(|s| s[1] != 0).map(|s| s[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_insert_find_remove_with_collisions() {
        let mut h = Heads::new(40);
        // Forty keys in 64 buckets, most differing only in their high bits.
        let keys: Vec<u64> = (0..40u64).map(|i| (i << 40) | (i % 3)).collect();
        for (n, &k) in keys.iter().enumerate() {
            h.set_first(k, n as u32);
        }
        for (n, &k) in keys.iter().enumerate() {
            assert_eq!(h.first(k), n as u32);
        }
        for &k in keys.iter().step_by(3) {
            h.remove(k);
        }
        for (n, &k) in keys.iter().enumerate() {
            let want = if n % 3 == 0 { NIL } else { n as u32 };
            assert_eq!(h.first(k), want, "key {n}");
        }
        assert_eq!(h.groups().count(), 40 - 14);
    }

    #[test]
    fn groups_of_entries() {
        let mut e = Entry::default();
        assert_eq!(group_of(&e), None);
        e.orig.dst = [10, 96, 0, 1];
        e.orig.dport = 80;
        e.orig.proto = 6;
        e.flags = flag::SERVICE | flag::SEEN_REPLY;
        assert_eq!(group_of(&e), Some(frontend_key([10, 96, 0, 1], 80, 6)));
        e.flags = flag::AFFINITY;
        assert_eq!(group_of(&e), Some(affinity_group(0x0a60_0001)));
        assert_ne!(
            affinity_group(0),
            frontend_group(frontend_key([0; 4], 0, 0))
        );
    }
}
