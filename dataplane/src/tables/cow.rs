//! Copy-on-write containers for tables that change a little at a time: a clone shares
//! everything, and a write copies only the page or shard it lands in.
//!
//! The Service table holds 10k+ Services; copying its vectors and maps whole for each
//! Service change cost more than building the Service itself. [`PagedVec`] splits a vector
//! into pages of [`PAGE`] entries and [`ShardedMap`] a hash map into [`SHARDS`] shards,
//! each behind an `Arc`: a change copies the page list (or shard list) of pointers and the
//! few pages or shards it writes. Reads cost one more pointer hop than a flat vector or map.

use super::fasthash::FastMap;
use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

/// Entries per page of a [`PagedVec`].
pub const PAGE: usize = 64;
const PAGE_SHIFT: u32 = PAGE.trailing_zeros();

/// A vector in pages of [`PAGE`] entries, each page shared until written.
#[derive(Debug, Clone)]
pub struct PagedVec<T> {
    pages: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for PagedVec<T> {
    fn default() -> Self {
        PagedVec {
            pages: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone> PagedVec<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        self.pages.get(i >> PAGE_SHIFT)?.get(i & (PAGE - 1))
    }

    pub fn push(&mut self, v: T) {
        if self.len & (PAGE - 1) == 0 {
            self.pages.push(Arc::new(Vec::with_capacity(PAGE)));
        }
        let last = self.pages.len() - 1;
        Arc::make_mut(&mut self.pages[last]).push(v);
        self.len += 1;
    }

    /// Replaces entry `i` (which must exist).
    pub fn set(&mut self, i: usize, v: T) {
        Arc::make_mut(&mut self.pages[i >> PAGE_SHIFT])[i & (PAGE - 1)] = v;
    }

    pub fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let last = self.pages.len() - 1;
        let v = Arc::make_mut(&mut self.pages[last]).pop();
        self.len -= 1;
        if self.pages[last].is_empty() {
            self.pages.pop();
        }
        v
    }

    /// Removes entry `i`, moving the last entry into its place (as `Vec::swap_remove`).
    pub fn swap_remove(&mut self, i: usize) -> T {
        let last = self.pop().expect("swap_remove on an empty PagedVec");
        if i == self.len {
            return last;
        }
        let page = Arc::make_mut(&mut self.pages[i >> PAGE_SHIFT]);
        std::mem::replace(&mut page[i & (PAGE - 1)], last)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.pages.iter().flat_map(|p| p.iter())
    }
}

impl<T: Clone> std::ops::Index<usize> for PagedVec<T> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.pages[i >> PAGE_SHIFT][i & (PAGE - 1)]
    }
}

impl<'a, T: Clone> IntoIterator for &'a PagedVec<T> {
    type Item = &'a T;
    #[allow(
        clippy::type_complexity,
        reason = "the iterator adapter's spelled-out type"
    )]
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'a, Arc<Vec<T>>>,
        std::slice::Iter<'a, T>,
        fn(&'a Arc<Vec<T>>) -> std::slice::Iter<'a, T>,
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.pages.iter().flat_map(|p| p.iter())
    }
}

/// Shards of a [`ShardedMap`].
pub const SHARDS: usize = 256;

/// Which shard a key lives in: a cheap, well-spread function of the key, the same for an
/// owned key and the borrowed form it is looked up by.
pub trait ShardKey {
    fn shard(&self) -> usize;
}

#[inline]
fn spread(x: u64) -> usize {
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize
}

impl ShardKey for u64 {
    #[inline]
    fn shard(&self) -> usize {
        spread(*self)
    }
}

impl ShardKey for [u8; 4] {
    #[inline]
    fn shard(&self) -> usize {
        spread(u64::from(u32::from_be_bytes(*self)))
    }
}

impl ShardKey for str {
    fn shard(&self) -> usize {
        // FNV-1a over the bytes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        spread(h)
    }
}

impl ShardKey for Arc<str> {
    fn shard(&self) -> usize {
        str::shard(self)
    }
}

/// A hash map in [`SHARDS`] shards, each shared until written. The shard pointers sit in
/// the map itself (not behind a vector), so a lookup follows one pointer more than a flat
/// map does, not two.
#[derive(Debug, Clone)]
pub struct ShardedMap<K, V> {
    shards: [Arc<FastMap<K, V>>; SHARDS],
    len: usize,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            shards: std::array::from_fn(|_| Arc::new(FastMap::default())),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone + ShardKey, V: Clone> ShardedMap<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn get<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ShardKey + ?Sized,
    {
        self.shards[k.shard() & (SHARDS - 1)].get(k)
    }

    /// The stored key and value of `k` (the key shared, not copied, by a caller that keeps it).
    pub fn get_key_value<Q>(&self, k: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ShardKey + ?Sized,
    {
        self.shards[k.shard() & (SHARDS - 1)].get_key_value(k)
    }

    pub fn contains_key<Q>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ShardKey + ?Sized,
    {
        self.get(k).is_some()
    }

    /// The shard of `s` for writing (copied if shared).
    fn shard_mut(&mut self, s: usize) -> &mut FastMap<K, V> {
        Arc::make_mut(&mut self.shards[s & (SHARDS - 1)])
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        let old = self.shard_mut(k.shard()).insert(k, v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ShardKey + ?Sized,
    {
        // Look first: a miss copies nothing.
        self.get(k)?;
        let old = self.shard_mut(k.shard()).remove(k);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The value of `k` for writing, if present (its shard copied if shared).
    pub fn get_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ShardKey + ?Sized,
    {
        self.get(k)?;
        self.shard_mut(k.shard()).get_mut(k)
    }

    /// The value of `k` for writing, inserted as `V::default()` when absent.
    pub fn entry_or_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        if self.get(&k).is_none() {
            self.len += 1;
        }
        self.shard_mut(k.shard()).entry(k).or_default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// The keys whose value differs between `old` and `self` (present in one only, or not
    /// `same`), looking only at the shards the two do not share: after a few writes to a
    /// clone, a few shards' worth of comparisons whatever the size of the map.
    pub fn changed_keys(&self, old: &Self, same: impl Fn(&V, &V) -> bool) -> Vec<K> {
        let mut out = Vec::new();
        for (a, b) in self.shards.iter().zip(old.shards.iter()) {
            if Arc::ptr_eq(a, b) {
                continue;
            }
            for (k, v) in a.iter() {
                if !b.get(k).is_some_and(|w| same(v, w)) {
                    out.push(k.clone());
                }
            }
            out.extend(b.keys().filter(|k| !a.contains_key(*k)).cloned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paged_vec_is_a_vec_whose_clones_share_unwritten_pages() {
        let mut a: PagedVec<u32> = PagedVec::default();
        let mut model: Vec<u32> = Vec::new();
        for i in 0..300 {
            a.push(i);
            model.push(i);
        }
        let b = a.clone();
        // swap_remove across pages, at the end, and at the start.
        for i in [5usize, 130, 297, 0, 64, 63] {
            assert_eq!(a.swap_remove(i), model.swap_remove(i));
        }
        a.set(10, 1000);
        model[10] = 1000;
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), model);
        assert_eq!((&a).into_iter().count(), model.len());
        assert_eq!(a.len(), model.len());
        assert_eq!(a[7], model[7]);
        assert_eq!(a.get(model.len()), None);
        // The clone kept its values, and shares the pages neither wrote.
        assert_eq!(
            b.iter().copied().collect::<Vec<_>>(),
            (0..300).collect::<Vec<_>>()
        );
        assert!(Arc::ptr_eq(&a.pages[3], &b.pages[3]));
        assert!(!Arc::ptr_eq(&a.pages[0], &b.pages[0]));
        while a.pop().is_some() {}
        assert!(a.is_empty() && a.pages.is_empty());
    }

    #[test]
    fn sharded_map_counts_and_copies_one_shard_per_write() {
        let mut m: ShardedMap<u64, u32> = ShardedMap::default();
        assert_eq!(m.get(&1), None);
        assert_eq!(m.remove(&1), None);
        for k in 0..1000u64 {
            m.insert(k, k as u32);
        }
        m.insert(5, 50);
        assert_eq!(m.len(), 1000);
        let before = m.clone();
        *m.entry_or_default(2000) += 1;
        *m.entry_or_default(5) += 1;
        assert_eq!(m.remove(&7), Some(7));
        assert_eq!(m.len(), 1000);
        assert_eq!(
            (m.get(&5), m.get(&2000), m.get(&7)),
            (Some(&51), Some(&1), None)
        );
        assert_eq!((before.get(&5), before.get(&7)), (Some(&50), Some(&7)));
        assert_eq!(m.iter().count(), m.len());
        let shared = (0..SHARDS)
            .filter(|&s| Arc::ptr_eq(&m.shards[s], &before.shards[s]))
            .count();
        assert!(shared >= SHARDS - 3, "{shared} shards shared");
        let mut changed = m.changed_keys(&before, |a, b| a == b);
        changed.sort_unstable();
        assert_eq!(changed, [5, 7, 2000]);
        let mut names: ShardedMap<Arc<str>, u8> = ShardedMap::default();
        names.insert("ns/a".into(), 1);
        assert!(names.contains_key("ns/a"));
        assert_eq!(names.get_mut("ns/a").map(|v| *v), Some(1));
    }
}
