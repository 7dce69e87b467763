//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size in
//! which every backend owns about the same number of slots, and removing one of N backends
//! moves only about 1/N of the slots.
//!
//! Built by the control side per Service port; the pipeline indexes it with the flow hash.

/// Table sizes (primes); the smallest one with at least 100 slots per backend is used.
const SIZES: [usize; 5] = [251, 1021, 4093, 16381, 65537];

/// Picks the table size for `n` backends.
pub fn table_size(n: usize) -> usize {
    match n {
        0 => 0,
        1 => 1,
        _ => SIZES
            .iter()
            .copied()
            .find(|&m| m >= n * 100)
            .unwrap_or(SIZES[SIZES.len() - 1]),
    }
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Builds the table for backends identified by stable 64-bit ids (e.g. ip << 16 | port);
/// entry values are indexes into `ids`.
pub fn build(ids: &[u64]) -> Vec<u16> {
    let n = ids.len().min(usize::from(u16::MAX));
    let m = table_size(n);
    if n <= 1 {
        return vec![0; m];
    }
    // Each backend walks its permutation (offset + j * skip) mod m and takes the first
    // free slot. Its position is advanced by an addition and a branch-free wrap (`step`):
    // as a branch, the wrap was a coin flip per probe, mispredicted about half the time.
    // Four positions of the walk are probed at once (their slots loaded independently,
    // the first free one picked from a bit mask), so a placement rarely waits on the
    // branch that ends the walk; the result is the same slot the one-by-one walk finds.
    let mut pos: Vec<usize> = Vec::with_capacity(n);
    // skip, 2 skip, 3 skip, 4 skip (mod m)
    let mut skips: Vec<[usize; PROBES]> = Vec::with_capacity(n);
    for &id in &ids[..n] {
        let offset = (mix(id ^ 0x6d61_676c_6576_0001) % m as u64) as usize;
        let skip = (mix(id ^ 0x6d61_676c_6576_0002) % (m as u64 - 1)) as usize + 1;
        let mut k = [skip; PROBES];
        for j in 1..PROBES {
            k[j] = step(k[j - 1], skip, m);
        }
        pos.push(offset);
        skips.push(k);
    }
    let mut table = vec![u16::MAX; m];
    let mut filled = 0;
    'outer: loop {
        for (i, (p, k)) in pos.iter_mut().zip(&skips).enumerate() {
            let mut at = *p;
            let slot = loop {
                let mut cand = [at; PROBES];
                for (c, &s) in cand[1..].iter_mut().zip(k) {
                    *c = step(at, s, m);
                }
                let mut free = 0u32;
                for (j, &c) in cand.iter().enumerate() {
                    free |= u32::from(table[c] == u16::MAX) << j;
                }
                if free != 0 {
                    break cand[free.trailing_zeros() as usize];
                }
                at = step(at, k[PROBES - 1], m);
            };
            table[slot] = i as u16;
            *p = step(slot, k[0], m);
            filled += 1;
            if filled == m {
                break 'outer;
            }
        }
    }
    table
}

/// Positions of a backend's walk probed at once.
const PROBES: usize = 4;

/// `(pos + skip) mod m` for `pos, skip < m`, without a branch.
#[inline(always)]
fn step(pos: usize, skip: usize, m: usize) -> usize {
    let t = (pos + skip).wrapping_sub(m);
    // t is "negative" (wrapped) exactly when pos + skip < m: add m back then.
    t.wrapping_add(m & ((t as isize >> (usize::BITS - 1)) as usize))
}

/// The backend index for a flow hash (`None` for an empty table).
#[inline]
pub fn pick(table: &[u16], hash: u32) -> Option<u16> {
    if table.is_empty() {
        return None;
    }
    Some(table[(hash as usize) % table.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_and_minimal_disruption() {
        let ids: Vec<u64> = (0..10u64).map(|i| (0x0af4_0200 + i) << 16 | 8080).collect();
        let t = build(&ids);
        assert_eq!(t.len(), 1021);
        let mut counts = [0usize; 10];
        for &e in &t {
            counts[usize::from(e)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (90..=115).contains(&c)),
            "{counts:?}"
        );
        // Remove backend 3: only its slots (plus a few) change owner.
        let mut less = ids.clone();
        less.remove(3);
        let t2 = build(&less);
        let moved = t
            .iter()
            .zip(&t2)
            .filter(|&(&a, &b)| ids[usize::from(a)] != less[usize::from(b)])
            .count();
        let frac = moved as f64 / t.len() as f64;
        assert!(frac < 0.15, "moved {frac}");
    }

    /// The textbook fill (a multiply and a division per probe), which `build` must match
    /// slot for slot: flows keep their backends whichever way the table was built.
    fn reference(ids: &[u64]) -> Vec<u16> {
        let (n, m) = (ids.len(), table_size(ids.len()));
        let perm: Vec<(usize, usize)> = ids
            .iter()
            .map(|&id| {
                let offset = (mix(id ^ 0x6d61_676c_6576_0001) % m as u64) as usize;
                let skip = (mix(id ^ 0x6d61_676c_6576_0002) % (m as u64 - 1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let (mut next, mut table, mut filled) = (vec![0usize; n], vec![u16::MAX; m], 0);
        while filled < m {
            for (i, &(offset, skip)) in perm.iter().enumerate() {
                if filled == m {
                    break;
                }
                let mut c = (offset + next[i] * skip) % m;
                while table[c] != u16::MAX {
                    next[i] += 1;
                    c = (offset + next[i] * skip) % m;
                }
                table[c] = i as u16;
                next[i] += 1;
                filled += 1;
            }
        }
        table
    }

    #[test]
    fn same_table_as_the_textbook_fill() {
        for n in [2u64, 3, 7, 10, 11, 41, 200] {
            let ids: Vec<u64> = (0..n).map(|i| (0x0af4_0100 + i * 3) << 16 | 80).collect();
            assert_eq!(build(&ids), reference(&ids), "{n} backends");
        }
    }

    /// Many backend sets of every table size, with ids as unrelated as real ones: the
    /// four-at-once probing must pick the same slot as the one-by-one walk every time.
    #[test]
    fn same_table_as_the_textbook_fill_for_many_sets() {
        let mut seed = 1u64;
        for n in (2..=41).chain([99, 100, 101, 163, 164, 655]) {
            for _ in 0..4 {
                let ids: Vec<u64> = (0..n)
                    .map(|_| {
                        seed = mix(seed);
                        seed
                    })
                    .collect();
                assert_eq!(build(&ids), reference(&ids), "{n} backends");
            }
        }
    }

    #[test]
    fn degenerate_sizes() {
        assert!(build(&[]).is_empty());
        assert_eq!(build(&[7]), vec![0]);
        assert_eq!(pick(&[], 5), None);
    }
}
