//! What workers read: the table snapshot plus which worker owns each port.

use crate::tables::Snapshot;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// A port's stable handle: never reused while the daemon runs, unlike snapshot port ids.
pub type Handle = u32;

pub struct View {
    pub snap: Snapshot,
    /// Per snapshot port id: the worker that owns the port.
    pub owner: Vec<u16>,
    /// Per snapshot port id: the port's stable handle.
    pub handle: Vec<Handle>,
}

pub struct ViewCell(ArcSwap<View>);

impl ViewCell {
    pub fn new(v: View) -> Self {
        ViewCell(ArcSwap::from_pointee(v))
    }
    pub fn load(&self) -> Arc<View> {
        self.0.load_full()
    }
    pub fn publish(&self, v: View) {
        self.0.store(Arc::new(v));
    }
}
