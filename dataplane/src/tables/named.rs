//! Configuration objects kept by name in a copy-on-write map, with their order in the
//! configuration: cloning shares everything, a change copies one shard, and the objects two
//! versions do not share are found without looking at the others.

use super::cow::ShardedMap;
use std::sync::Arc;

/// Objects by name (`name` of each), in the order they were first added (a replaced object
/// keeps its place). Objects of a list whose name came earlier in it are kept apart
/// (`dups`), never published: the build reports them as defined twice.
#[derive(Debug)]
pub struct Named<T> {
    /// name -> (position, object).
    by_name: ShardedMap<Arc<str>, (u64, Arc<T>)>,
    dups: Vec<(u64, Arc<T>)>,
    next: u64,
}

impl<T> Clone for Named<T> {
    fn clone(&self) -> Self {
        Named {
            by_name: self.by_name.clone(),
            dups: self.dups.clone(),
            next: self.next,
        }
    }
}

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named {
            by_name: ShardedMap::default(),
            dups: Vec::new(),
            next: 0,
        }
    }
}

impl<T: PartialEq> Named<T> {
    /// From a configuration list, `name` naming each object.
    pub fn from_list(list: Vec<T>, name: impl Fn(&T) -> &str) -> Self {
        let mut n = Named::default();
        for x in list {
            let key: Arc<str> = name(&x).into();
            if n.by_name.contains_key(&*key) {
                n.dups.push((n.next, Arc::new(x)));
                n.next += 1;
            } else {
                n.insert(key, Arc::new(x));
            }
        }
        n
    }

    pub fn len(&self) -> usize {
        self.by_name.len() + self.dups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether some name was given twice (then only a full build reports it).
    pub fn has_dups(&self) -> bool {
        !self.dups.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<T>> {
        self.by_name.get(name).map(|(_, x)| x)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Adds `x` as `name`, or replaces the object of that name in its place. An object
    /// equal to the one it replaces changes nothing (the map stays shared).
    pub fn insert(&mut self, name: Arc<str>, x: Arc<T>) {
        if let Some((_, old)) = self.by_name.get(&*name)
            && (Arc::ptr_eq(old, &x) || **old == *x)
        {
            return;
        }
        let at = match self.by_name.get(&*name) {
            Some((at, _)) => *at,
            None => {
                self.next += 1;
                self.next - 1
            }
        };
        self.by_name.insert(name, (at, x));
    }

    /// Removes `name`; whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        self.by_name.remove(name).is_some()
    }

    /// Every object, in no particular order (duplicates last).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<T>> {
        self.by_name
            .iter()
            .map(|(_, (_, x))| x)
            .chain(self.dups.iter().map(|(_, x)| x))
    }

    /// Every object in configuration order (O(n log n): for full builds and dumps).
    pub fn in_order(&self) -> Vec<Arc<T>> {
        let mut v: Vec<(u64, Arc<T>)> = self
            .by_name
            .iter()
            .map(|(_, (i, x))| (*i, x.clone()))
            .chain(self.dups.iter().cloned())
            .collect();
        v.sort_unstable_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, x)| x).collect()
    }

    /// The names whose object differs between `old` and `self` (added, removed or
    /// replaced by an unequal one). Only the shards the two do not share are looked at, so
    /// a change to one object costs one shard's worth of comparisons whatever the size.
    pub fn changed_since(&self, old: &Named<T>) -> Vec<Arc<str>> {
        self.by_name
            .changed_keys(&old.by_name, |a, b| Arc::ptr_eq(&a.1, &b.1) || a.1 == b.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[Arc<str>]) -> Vec<&str> {
        let mut v: Vec<&str> = v.iter().map(|s| &**s).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn keeps_order_finds_changes_and_reports_duplicates() {
        let list: Vec<(String, u32)> = (0..1000).map(|i| (format!("s{i}"), i)).collect();
        let a = Named::from_list(list, |x| &x.0);
        assert_eq!(a.len(), 1000);
        let mut b = a.clone();
        b.insert("s5".into(), Arc::new(("s5".into(), 55)));
        b.insert("s6".into(), Arc::new(("s6".into(), 6))); // equal: no change
        b.insert("new".into(), Arc::new(("new".into(), 1)));
        assert!(b.remove("s7"));
        assert!(!b.remove("nope"));
        assert_eq!(names(&b.changed_since(&a)), ["new", "s5", "s7"]);
        assert!(a.changed_since(&a.clone()).is_empty());
        let order: Vec<u32> = b.in_order().iter().map(|x| x.1).take(8).collect();
        assert_eq!(order, [0, 1, 2, 3, 4, 55, 6, 8]);
        assert_eq!(b.in_order().last().map(|x| x.0.as_str()), Some("new"));
        let d = Named::from_list(vec![("x".to_string(), 1), ("x".to_string(), 2)], |x| &x.0);
        assert!(d.has_dups() && d.len() == 2 && d.get("x").is_some_and(|x| x.1 == 1));
    }
}
