//! Large tables ask the kernel for transparent huge pages: a lookup in a table of a million
//! entries otherwise pays a TLB miss (and a page walk) per access on top of the cache misses.

/// Advises the kernel that `[addr, addr + len)` should be backed by huge pages (best effort;
/// only the 2 MiB-aligned part inside the range is advised).
pub(crate) fn advise_huge_pages(addr: usize, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = addr.next_multiple_of(HUGE);
    let end = (addr + len) / HUGE * HUGE;
    if end <= start {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: madvise(MADV_HUGEPAGE) only changes how the kernel backs pages of a mapping
    // this process owns (the table's own allocation, alive as long as the table); it never
    // changes their contents, and a failure is harmless (ignored).
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}
