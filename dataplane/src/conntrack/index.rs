//! A fixed-capacity open-addressing hash index (linear probing, backward-shift deletion, no
//! tombstones): flow key -> entry id. Allocated once; never grows.

/// Slot: the four key words, then the entry id + 1 (0 = empty).
type Slot = [u32; 5];

pub(super) struct Index {
    slots: Box<[Slot]>,
    mask: usize,
    len: usize,
    max_len: usize,
}

impl Index {
    pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

    /// Address of the first slot (the slots never move).
    pub fn base_addr(&self) -> usize {
        self.slots.as_ptr() as usize
    }

    pub fn mask(&self) -> usize {
        self.mask
    }

    /// An index for up to `max_keys` keys at a load factor of at most 3/4.
    pub fn new(max_keys: usize) -> Self {
        let buckets = (max_keys * 4 / 3 + 1).next_power_of_two().max(8);
        // All-zero slots are empty; `vec!` of zeroed arrays lets the allocator hand out
        // lazily zeroed pages, so a large table costs memory only as it fills.
        Index {
            slots: vec![[0u32; 5]; buckets].into_boxed_slice(),
            mask: buckets - 1,
            len: 0,
            max_len: max_keys,
        }
    }

    pub fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
    }

    pub fn is_full(&self) -> bool {
        self.len >= self.max_len
    }

    /// Whether `n` more keys fit.
    pub fn has_room(&self, n: usize) -> bool {
        self.len + n <= self.max_len
    }

    #[inline]
    pub fn get(&self, k: &[u32; 4], h: u64) -> Option<u32> {
        let mut i = h as usize & self.mask;
        loop {
            let s = &self.slots[i];
            if s[4] == 0 {
                return None;
            }
            if s[..4] == k[..] {
                return Some(s[4] - 1);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Inserts a key known to be absent; false when the index is full.
    pub fn insert(&mut self, k: &[u32; 4], h: u64, id: u32) -> bool {
        if self.is_full() {
            return false;
        }
        let mut i = h as usize & self.mask;
        while self.slots[i][4] != 0 {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = [k[0], k[1], k[2], k[3], id + 1];
        self.len += 1;
        true
    }

    /// Removes `k`; `hash` recomputes the hash of keys shifted back into the hole.
    pub fn remove(&mut self, k: &[u32; 4], h: u64, hash: impl Fn(&[u32; 4]) -> u64) -> bool {
        let mut i = h as usize & self.mask;
        loop {
            let s = &self.slots[i];
            if s[4] == 0 {
                return false;
            }
            if s[..4] == k[..] {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Backward shift: move later members of the probe run into the hole.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let s = self.slots[j];
            if s[4] == 0 {
                break;
            }
            let key = [s[0], s[1], s[2], s[3]];
            let home = hash(&key) as usize & self.mask;
            // Movable if its home is not in the cyclic range (hole, j].
            let dist_home = j.wrapping_sub(home) & self.mask;
            let dist_hole = j.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.slots[hole] = s;
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.slots[hole] = [0; 5];
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(k: &[u32; 4]) -> u64 {
        u64::from(k[0] % 5) // many collisions on purpose
    }

    #[test]
    fn insert_get_remove_with_collisions() {
        let mut ix = Index::new(40);
        let keys: Vec<[u32; 4]> = (0..40).map(|i| [i, i * 7, 1, 6]).collect();
        for (n, k) in keys.iter().enumerate() {
            assert!(ix.insert(k, h(k), n as u32));
        }
        assert!(!ix.insert(&[99, 0, 0, 0], 0, 99));
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(ix.get(k, h(k)), Some(n as u32));
        }
        for k in keys.iter().step_by(3) {
            assert!(ix.remove(k, h(k), h));
        }
        for (n, k) in keys.iter().enumerate() {
            let want = if n % 3 == 0 { None } else { Some(n as u32) };
            assert_eq!(ix.get(k, h(k)), want, "key {n}");
        }
    }
}
