//! The cache prefetch hint used by batch lookups (LPM trie, conntrack): start loading a
//! cache line for a whole batch of packets first, use it afterwards, so that the misses of
//! a batch overlap instead of being paid one packet at a time.

/// Starts loading the cache line holding `addr` into all cache levels. A hint: it never
/// faults and never changes memory, so any address (even one past an allocation) is fine.
#[inline(always)]
pub(crate) fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only needs SSE, part of the x86_64 baseline; a prefetch is a
    // hint that never dereferences or faults, so any address is fine.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}
