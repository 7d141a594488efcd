//! Extended regions: guest-physical space a Xen-aware guest may use for foreign and grant
//! mappings, listed after the grant region in the `hypervisor` node's `reg` (regions 1..N).
//! Linux's unpopulated-alloc takes its scratch addresses for backends (blkback, gntdev,
//! privcmd) from them; without any it falls back to other allocation.
//!
//! They are what is left of the address space once everything the guest sees is taken out:
//! its RAM, its devices, the grant region. As on Xen, a region starts and ends on a 2 MiB
//! boundary and is 64 MiB or larger.

use alloc::vec::Vec;

use crate::addr::{GuestPhysAddr, GuestRange};

/// Smallest region offered (Xen's `EXT_REGION_MIN_SIZE`): smaller holes are not worth a bank.
pub const MIN_SIZE: u64 = 64 << 20;
/// Regions start and end on this boundary, so a guest may map them with 2 MiB blocks.
pub const ALIGN: u64 = 2 << 20;
/// At most this many regions are offered (the lowest ones).
pub const MAX_REGIONS: usize = 8;

/// The parts of `windows` that no range in `used` touches, each cut to 2 MiB boundaries and
/// kept if 64 MiB or more, lowest first, at most [`MAX_REGIONS`]. Ranges are
/// `(start, size)`; a range that would pass the end of the address space is cut there.
/// Windows must come in address order without overlapping; one that does not is skipped.
pub fn find(windows: &[(u64, u64)], used: &[(u64, u64)]) -> Vec<GuestRange> {
    let end_of = |(start, size): (u64, u64)| start.saturating_add(size);
    // Free pieces as [start, end), in address order: each used range trims, splits or
    // removes the pieces it meets, which keeps the order (and needs no sort).
    let mut free: Vec<(u64, u64)> = Vec::new();
    for &window in windows {
        let (start, end) = (window.0, end_of(window));
        if start < end && free.last().is_none_or(|&(_, last_end)| start >= last_end) {
            free.push((start, end));
        }
    }
    for &range in used {
        let (taken_start, taken_end) = (range.0, end_of(range));
        let mut i = 0;
        while i < free.len() {
            let (start, end) = free[i];
            if taken_end <= start || taken_start >= end || taken_start == taken_end {
                i += 1;
                continue;
            }
            match (taken_start > start, taken_end < end) {
                (true, true) => {
                    free[i] = (start, taken_start);
                    free.insert(i + 1, (taken_end, end));
                    i += 2;
                }
                (true, false) => {
                    free[i] = (start, taken_start);
                    i += 1;
                }
                (false, true) => {
                    free[i] = (taken_end, end);
                    i += 1;
                }
                (false, false) => {
                    free.remove(i);
                }
            }
        }
    }
    free.into_iter()
        .filter_map(|(start, end)| {
            let start = start.checked_next_multiple_of(ALIGN)?;
            let end = end - end % ALIGN;
            let size = end.checked_sub(start).filter(|&s| s >= MIN_SIZE)?;
            GuestRange::new(GuestPhysAddr::new(start), size)
        })
        .take(MAX_REGIONS)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn pairs(regions: &[GuestRange]) -> Vec<(u64, u64)> {
        regions.iter().map(|r| (r.start.raw(), r.size)).collect()
    }

    #[test]
    fn a_domu_gets_the_rest_of_its_ram_windows() {
        // Xen's layout: RAM banks at 1 GiB (3 GiB window) and 8 GiB, a 64 MiB domain, the
        // space cut at the 39-bit stage-2 limit.
        let limit = 1 << 39;
        let windows = [(GIB, 3 * GIB), (8 * GIB, limit - 8 * GIB)];
        let used = [
            (GIB, 64 * MIB),
            (0x3800_0000, 16 * MIB),
            (0x0300_1000, 0x1_0000),
        ];
        assert_eq!(
            pairs(&find(&windows, &used)),
            [
                (GIB + 64 * MIB, 3 * GIB - 64 * MIB),
                (8 * GIB, limit - 8 * GIB)
            ]
        );
    }

    #[test]
    fn holes_are_aligned_and_small_ones_dropped() {
        let used = [
            (0x100_1000, 0x1000),
            (0x600_0000, 0x10),
            (0x1000_0000, 0x3000_0000),
        ];
        let found = find(&[(0, 0x8000_0000)], &used);
        // 0..0x1001000 is 16 MiB: too small. 0x1002000..0x6000000 becomes
        // 0x1200000..0x6000000 (78 MiB). 0x6000010..0x10000000 becomes 0x6200000..0x10000000.
        // 0x40000000..0x80000000 is whole.
        assert_eq!(
            pairs(&found),
            [
                (0x120_0000, 0x6000000 - 0x120_0000),
                (0x620_0000, 0x1000_0000 - 0x620_0000),
                (0x4000_0000, 0x4000_0000)
            ]
        );
    }

    #[test]
    fn nothing_left_gives_nothing() {
        assert!(find(&[(0, GIB)], &[(0, GIB)]).is_empty());
        assert!(find(&[], &[]).is_empty());
        assert!(find(&[(0, 32 * MIB)], &[]).is_empty());
    }

    #[test]
    fn ranges_running_off_the_end_are_cut() {
        let found = find(&[(u64::MAX - GIB, u64::MAX)], &[(u64::MAX - 10, 100)]);
        let top = (u64::MAX - 10) / ALIGN * ALIGN;
        let start = (u64::MAX - GIB).next_multiple_of(ALIGN);
        assert_eq!(pairs(&found), [(start, top - start)]);
    }

    #[test]
    fn at_most_the_lowest_eight() {
        let used: Vec<(u64, u64)> = (0..20).map(|i| (i * GIB, MIB)).collect();
        let found = find(&[(0, 20 * GIB)], &used);
        assert_eq!(found.len(), MAX_REGIONS);
        assert_eq!(found[0].start.raw(), 2 * MIB);
        assert!(found.windows(2).all(|w| w[0].start < w[1].start));
    }

    proptest! {
        /// Whatever the input: regions lie inside a window, touch no used range, are
        /// aligned, large enough, sorted and disjoint.
        #[test]
        fn regions_avoid_everything_used(
            windows in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..4),
            used in proptest::collection::vec((any::<u64>(), 0u64..(1 << 40)), 0..12),
        ) {
            let found = find(&windows, &used);
            prop_assert!(found.len() <= MAX_REGIONS);
            for r in &found {
                let (start, end) = (r.start.raw(), r.end().raw());
                prop_assert!(start % ALIGN == 0 && end % ALIGN == 0 && r.size >= MIN_SIZE);
                prop_assert!(windows
                    .iter()
                    .any(|&(s, z)| start >= s && end <= s.saturating_add(z)));
                for &(s, z) in &used {
                    let u_end = s.saturating_add(z);
                    prop_assert!(z == 0 || u_end <= start || s >= end, "{r:?} meets {s:#x}+{z:#x}");
                }
            }
            for pair in found.windows(2) {
                prop_assert!(pair[0].end() <= pair[1].start);
            }
        }
    }
}
