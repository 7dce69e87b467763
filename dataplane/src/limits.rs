//! Sizes fixed by the packet buffers and the uplink's XDP program that the table builder
//! also checks a configuration against. They live here so that `tables` (plain data) reads
//! them without depending on `pipeline` or `port`, which use the same values.

/// Largest frame a port may receive: a batch slot (4096 bytes) less its headroom (256).
pub const MAX_FRAME: usize = 4096 - 256;

/// Capacity of the uplink program's `owned_prefixes` LPM trie (`MAX_OWNED_PREFIXES` in
/// uplink.c): pod CIDRs plus external/LoadBalancer IPs.
pub const MAX_OWNED_PREFIXES: usize = 65536;
