//! Host-physical page-frame allocator.
//!
//! Boot code hands it the RAM banks from the device tree ([`FrameAllocator::add_region`]) and
//! carves out everything that is already in use: Mica's image, the DTB, boot modules,
//! `/memreserve/` entries ([`FrameAllocator::reserve`]). Guest RAM and Mica's own tables are
//! then taken from what is left. The free list is a sorted vector of disjoint, non-adjacent
//! page-aligned spans; that is plenty for the handful of allocations a static partitioning
//! hypervisor makes.
//!
//! Freeing memory that is already free (or was never RAM) is a hypervisor bug; [`FrameAllocator::free`]
//! reports it as an [`Err`] and leaves the allocator unchanged, so the caller decides how loud to be.

use alloc::vec::Vec;
use core::fmt;

use crate::addr::{HostPhysAddr, HostRange, PAGE_SIZE};

/// A half-open span `[start, end)` of page-aligned host-physical addresses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// Why [`FrameAllocator::free`] refused a range.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FreeError {
    /// The range is empty or not page-aligned (allocations always are).
    Unaligned,
    /// Part of the range is not RAM this allocator manages, or is reserved.
    NotManaged,
    /// Part of the range is already free: a double free.
    AlreadyFree,
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned => f.write_str("freed range is empty or not page-aligned"),
            Self::NotManaged => f.write_str("freed range is not allocatable RAM"),
            Self::AlreadyFree => f.write_str("freed range is already free (double free)"),
        }
    }
}

/// Allocator of host-physical page frames. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct FrameAllocator {
    /// Free spans, sorted by address, disjoint and never touching (always coalesced).
    free: Vec<Span>,
    /// All RAM ever added (page-rounded inward), sorted and coalesced.
    ram: Vec<Span>,
    /// All reserved spans (page-rounded outward), sorted and coalesced.
    reserved: Vec<Span>,
}

fn page_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

fn align_up(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// Inserts `s` into a sorted, coalesced span list, merging with anything it overlaps or touches.
fn union_insert(list: &mut Vec<Span>, s: Span) {
    if s.start >= s.end {
        return;
    }
    let mut merged = s;
    // Keep everything strictly apart from `s`; fold the rest into `merged`.
    list.retain(|x| {
        if x.end < merged.start || x.start > merged.end {
            true
        } else {
            merged.start = merged.start.min(x.start);
            merged.end = merged.end.max(x.end);
            false
        }
    });
    // `retain` visits in address order, so spans that touch `merged` only after it has grown
    // to the right are still seen; the list being coalesced means none can touch it after it
    // grows to the left.
    let pos = list.partition_point(|x| x.start < merged.start);
    list.insert(pos, merged);
}

/// Removes `s` from a sorted span list, splitting spans as needed.
fn subtract(list: &mut Vec<Span>, s: Span) {
    if s.start >= s.end {
        return;
    }
    let mut out = Vec::with_capacity(list.len() + 1);
    for x in list.iter() {
        if x.end <= s.start || x.start >= s.end {
            out.push(*x);
            continue;
        }
        if x.start < s.start {
            out.push(Span {
                start: x.start,
                end: s.start,
            });
        }
        if x.end > s.end {
            out.push(Span {
                start: s.end,
                end: x.end,
            });
        }
    }
    *list = out;
}

/// Whether `s` lies wholly inside one span of the sorted, coalesced `list`.
fn covered(list: &[Span], s: Span) -> bool {
    list.iter().any(|x| x.start <= s.start && s.end <= x.end)
}

/// Whether `s` shares a byte with any span of `list`.
fn touches(list: &[Span], s: Span) -> bool {
    list.iter().any(|x| x.start < s.end && s.start < x.end)
}

fn to_range(s: Span) -> Option<HostRange> {
    HostRange::new(HostPhysAddr::new(s.start), s.len())
}

/// In `free`, the best place for `size` bytes aligned to `align`: (index, aligned start). Best
/// fit: the span that leaves the least over, lowest address on ties.
fn best_fit(free: &[Span], size: u64, align: u64) -> Option<(usize, u64)> {
    let mut best: Option<(usize, u64, u64)> = None;
    for (i, s) in free.iter().enumerate() {
        let Some(start) = align_up(s.start, align) else {
            continue;
        };
        let Some(end) = start.checked_add(size) else {
            continue;
        };
        if end > s.end {
            continue;
        }
        let waste = s.len() - size;
        if best.is_none_or(|(_, _, w)| waste < w) {
            best = Some((i, start, waste));
        }
    }
    best.map(|(i, start, _)| (i, start))
}

impl FrameAllocator {
    /// An allocator with no memory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds free RAM. The range is rounded inward to whole pages; anything already reserved
    /// stays reserved.
    pub fn add_region(&mut self, r: HostRange) {
        let Some(start) = align_up(r.start.raw(), PAGE_SIZE) else {
            return;
        };
        let end = page_down(r.end().raw());
        if start >= end {
            return;
        }
        let span = Span { start, end };
        union_insert(&mut self.ram, span);
        let mut pieces = alloc::vec![span];
        for res in &self.reserved {
            subtract(&mut pieces, *res);
        }
        for p in pieces {
            union_insert(&mut self.free, p);
        }
    }

    /// Marks a range as in use for good (image, DTB, boot modules, `/memreserve/`). Rounded
    /// outward to whole pages. Reserving memory that is not free (or not RAM) is harmless.
    pub fn reserve(&mut self, r: HostRange) {
        if r.size == 0 {
            return;
        }
        let start = page_down(r.start.raw());
        // The last partial page of the address space can never be RAM (add_region rounds
        // inward), so clamping there loses nothing.
        let end = align_up(r.end().raw(), PAGE_SIZE).unwrap_or(page_down(u64::MAX));
        let span = Span { start, end };
        union_insert(&mut self.reserved, span);
        subtract(&mut self.free, span);
    }

    /// Allocates `size` bytes (rounded up to whole pages) of contiguous memory aligned to
    /// `align` (a power of two; anything below 4 KiB means 4 KiB). `None` if `size` is zero,
    /// `align` is not a power of two, or no free span fits.
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<HostPhysAddr> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let align = align.max(PAGE_SIZE);
        let size = align_up(size, PAGE_SIZE)?;
        let (_, start) = best_fit(&self.free, size, align)?;
        subtract(
            &mut self.free,
            Span {
                start,
                end: start + size,
            },
        );
        Some(HostPhysAddr::new(start))
    }

    /// Allocates `size` bytes (rounded up to whole pages) as few, large chunks, largest first,
    /// for guest RAM. Each chunk starts on `preferred_align` (e.g. 2 MiB, so stage 2 can use
    /// block mappings) where the free memory allows, else on a page. All or nothing: on
    /// failure (`None`) nothing is taken. `None` as well for a zero size or an alignment that
    /// is not a power of two.
    pub fn alloc_chunks(&mut self, size: u64, preferred_align: u64) -> Option<Vec<HostRange>> {
        if size == 0 || !preferred_align.is_power_of_two() {
            return None;
        }
        let big = preferred_align.max(PAGE_SIZE);
        let mut remaining = align_up(size, PAGE_SIZE)?;
        if remaining > self.free_bytes() {
            return None;
        }
        // Plan on a copy so a failure leaves `self` untouched.
        let mut free = self.free.clone();
        let mut chunks = Vec::new();
        while remaining > 0 {
            let (start, len) = if remaining >= big {
                // The span with the most whole aligned blocks, else the largest span.
                let aligned = free
                    .iter()
                    .filter_map(|s| {
                        let a = align_up(s.start, big)?;
                        let blocks = s.end.checked_sub(a)? / big * big;
                        (blocks > 0).then_some((a, blocks))
                    })
                    .max_by_key(|&(a, blocks)| (blocks, core::cmp::Reverse(a)));
                match aligned {
                    Some((a, blocks)) => (a, blocks.min(remaining)),
                    None => {
                        let s = free
                            .iter()
                            .max_by_key(|s| (s.len(), core::cmp::Reverse(s.start)))?;
                        (s.start, s.len().min(remaining))
                    }
                }
            } else {
                // A tail smaller than a block: whole in the tightest span, else spread.
                match best_fit(&free, remaining, PAGE_SIZE) {
                    Some((_, start)) => (start, remaining),
                    None => {
                        let s = free
                            .iter()
                            .max_by_key(|s| (s.len(), core::cmp::Reverse(s.start)))?;
                        (s.start, s.len().min(remaining))
                    }
                }
            };
            if len == 0 {
                return None;
            }
            subtract(
                &mut free,
                Span {
                    start,
                    end: start + len,
                },
            );
            chunks.push(to_range(Span {
                start,
                end: start + len,
            })?);
            remaining -= len;
        }
        self.free = free;
        Some(chunks)
    }

    /// Returns a dead domain's memory: `scrub` (which must overwrite every byte of the range)
    /// runs first, so no later owner can read what the domain left there; memory that is not
    /// allocated is neither scrubbed nor freed (the error says why).
    pub fn free_scrubbed(
        &mut self,
        r: HostRange,
        scrub: impl FnOnce(HostRange),
    ) -> Result<(), FreeError> {
        self.check_freeable(r)?;
        scrub(r);
        self.free(r)
    }

    /// Whether [`Self::free`] would accept `r`, without changing anything.
    fn check_freeable(&self, r: HostRange) -> Result<(), FreeError> {
        let mut probe = self.clone();
        probe.free(r)
    }

    /// Returns memory to the free pool, coalescing with its neighbours. The range must be
    /// page-aligned, inside RAM added with [`Self::add_region`], not reserved, and wholly
    /// allocated; otherwise nothing changes and the error says which rule broke.
    pub fn free(&mut self, r: HostRange) -> Result<(), FreeError> {
        let start = r.start.raw();
        let end = r.end().raw();
        if r.size == 0 || !start.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) {
            return Err(FreeError::Unaligned);
        }
        let span = Span { start, end };
        if !covered(&self.ram, span) || touches(&self.reserved, span) {
            return Err(FreeError::NotManaged);
        }
        if touches(&self.free, span) {
            return Err(FreeError::AlreadyFree);
        }
        union_insert(&mut self.free, span);
        Ok(())
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(Span::len).sum()
    }

    /// Size in bytes of the largest contiguous free span (0 when empty).
    pub fn largest_free(&self) -> u64 {
        self.free.iter().map(Span::len).max().unwrap_or(0)
    }

    /// The free spans, sorted by address (for diagnostics and tests).
    pub fn free_ranges(&self) -> impl Iterator<Item = HostRange> + '_ {
        self.free.iter().filter_map(|s| to_range(*s))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod scrub_tests {
    use super::*;
    use crate::addr::HostPhysAddr;
    use alloc::vec::Vec;

    fn hr(start: u64, size: u64) -> HostRange {
        HostRange::new(HostPhysAddr::new(start), size).unwrap()
    }

    #[test]
    fn memory_is_scrubbed_before_it_is_free_again() {
        let mut f = FrameAllocator::new();
        f.add_region(hr(0x4000_0000, 0x100_0000));
        let a = f.alloc(0x10_0000, 0x1000).unwrap();
        let r = hr(a.raw(), 0x10_0000);
        let before = f.free_bytes();
        let mut scrubbed = Vec::new();
        f.free_scrubbed(r, |x| scrubbed.push(x)).unwrap();
        assert_eq!(scrubbed, [r]);
        assert_eq!(f.free_bytes(), before + 0x10_0000);
        // Freeing it again is refused, and nothing is scrubbed twice.
        assert!(f.free_scrubbed(r, |x| scrubbed.push(x)).is_err());
        assert_eq!(scrubbed.len(), 1);
        // Memory that was never managed is refused too.
        assert!(f
            .free_scrubbed(hr(0x1000_0000, 0x1000), |_| panic!("scrubbed"))
            .is_err());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    fn hr(start: u64, size: u64) -> HostRange {
        HostRange::new(HostPhysAddr::new(start), size).unwrap()
    }

    fn spans(a: &FrameAllocator) -> Vec<(u64, u64)> {
        a.free.iter().map(|s| (s.start, s.end)).collect()
    }

    #[test]
    fn add_rounds_inward_and_reserve_outward() {
        let mut a = FrameAllocator::new();
        a.add_region(hr(0x4000_0123, 0x10_0000));
        assert_eq!(spans(&a), vec![(0x4000_1000, 0x4010_0000)]);
        a.reserve(hr(0x4000_2fff, 2));
        assert_eq!(
            spans(&a),
            vec![(0x4000_1000, 0x4000_2000), (0x4000_4000, 0x4010_0000)]
        );
        // A region smaller than a page after rounding adds nothing.
        a.add_region(hr(0x5000_0001, 0xffe));
        assert_eq!(a.free_bytes(), 0x1000 + 0xfc000);
    }

    #[test]
    fn reserve_before_add_is_honoured() {
        let mut a = FrameAllocator::new();
        a.reserve(hr(0x4800_0000, 0x1000));
        a.add_region(hr(0x4000_0000, 0x1000_0000));
        assert_eq!(
            spans(&a),
            vec![(0x4000_0000, 0x4800_0000), (0x4800_1000, 0x5000_0000)]
        );
    }

    #[test]
    fn reserving_what_is_not_free_is_a_no_op() {
        let mut a = FrameAllocator::new();
        a.add_region(hr(0x4000_0000, 16 * MIB));
        let before = spans(&a);
        a.reserve(hr(0x1000, 0x1000));
        a.reserve(hr(0x4000_0000, 0));
        a.reserve(hr(u64::MAX - 10, 10));
        assert_eq!(spans(&a), before);
    }

    #[test]
    fn alloc_respects_alignment_and_holes() {
        let mut a = FrameAllocator::new();
        a.add_region(hr(0x4000_0000, 64 * MIB));
        a.reserve(hr(0x4000_0000, 0x5000));
        let p = a.alloc(1, 2 * MIB).unwrap();
        assert!(p.is_aligned(2 * MIB));
        assert!(p.raw() >= 0x4000_5000);
        let q = a.alloc(0x3000, 4096).unwrap();
        assert!(q.is_aligned(4096));
        assert_ne!(p, q);
        assert_eq!(a.free_bytes(), 64 * MIB - 0x5000 - 0x1000 - 0x3000);
        // Best fit: a 0x3000 request lands in the small gap left by the reservation.
        let mut b = FrameAllocator::new();
        b.add_region(hr(0x4000_0000, 64 * MIB));
        b.reserve(hr(0x4000_3000, 0x1000));
        assert_eq!(b.alloc(0x3000, 4096), Some(HostPhysAddr::new(0x4000_0000)));
    }

    #[test]
    fn alloc_rejects_bad_requests() {
        let mut a = FrameAllocator::new();
        a.add_region(hr(0x4000_0000, 4 * MIB));
        assert_eq!(a.alloc(0, 4096), None);
        assert_eq!(a.alloc(4096, 3 * 4096), None);
        assert_eq!(a.alloc(u64::MAX, 4096), None);
        assert_eq!(a.alloc(8 * MIB, 4096), None);
        assert_eq!(a.alloc(4096, 1 << 40), None);
        assert_eq!(a.free_bytes(), 4 * MIB);
        // Tiny alignments are raised to a page.
        assert!(a.alloc(1, 1).unwrap().is_aligned(4096));
    }

    #[test]
    fn exhaustion_then_free_restores() {
        let mut a = FrameAllocator::new();
        a.add_region(hr(0x4000_0000, 16 * 4096));
        let pages: Vec<_> = (0..16).map(|_| a.alloc(4096, 4096).unwrap()).collect();
        assert_eq!(a.alloc(4096, 4096), None);
        assert_eq!(a.free_bytes(), 0);
        assert_eq!(a.largest_free(), 0);
        // Free in a scrambled order: everything coalesces back into one span.
        for i in [3, 0, 15, 7, 1, 2, 14, 4, 5, 6, 13, 8, 12, 9, 11, 10] {
            a.free(hr(pages[i].raw(), 4096)).unwrap();
        }
        assert_eq!(spans(&a), vec![(0x4000_0000, 0x4001_0000)]);
        assert_eq!(a.largest_free(), 16 * 4096);
    }

    #[test]
    fn free_refuses_bugs() {
        let mut a = FrameAllocator::new();
        a.add_region(hr(0x4000_0000, 4 * MIB));
        a.reserve(hr(0x4000_0000, 0x1000));
        let p = a.alloc(0x2000, 4096).unwrap();
        assert_eq!(a.free(hr(p.raw() + 1, 0x1000)), Err(FreeError::Unaligned));
        assert_eq!(a.free(hr(p.raw(), 0)), Err(FreeError::Unaligned));
        assert_eq!(a.free(hr(0x1000, 0x1000)), Err(FreeError::NotManaged));
        assert_eq!(a.free(hr(0x4000_0000, 0x1000)), Err(FreeError::NotManaged));
        // Overlapping a free page is a double free; nothing changes.
        let before = spans(&a);
        assert_eq!(a.free(hr(p.raw(), 0x3000)), Err(FreeError::AlreadyFree));
        assert_eq!(spans(&a), before);
        assert_eq!(a.free(hr(p.raw(), 0x2000)), Ok(()));
        assert_eq!(a.free(hr(p.raw(), 0x2000)), Err(FreeError::AlreadyFree));
    }

    #[test]
    fn chunks_prefer_large_aligned_blocks() {
        let mut a = FrameAllocator::new();
        // Two banks: 6 MiB and 10 MiB, the first starting off a 2 MiB boundary.
        a.add_region(hr(0x4010_0000, 6 * MIB));
        a.add_region(hr(0x8000_0000, 10 * MIB));
        let chunks = a.alloc_chunks(12 * MIB, 2 * MIB).unwrap();
        assert_eq!(chunks[0], hr(0x8000_0000, 10 * MIB));
        assert_eq!(chunks[1], hr(0x4020_0000, 2 * MIB));
        assert_eq!(chunks.len(), 2);
        for c in &chunks {
            assert!(c.start.is_aligned(2 * MIB));
        }
        assert_eq!(a.free_bytes(), 4 * MIB);
    }

    #[test]
    fn chunks_fall_back_to_pages_and_are_all_or_nothing() {
        let mut a = FrameAllocator::new();
        // Fragment memory so no 2 MiB-aligned 2 MiB block exists.
        a.add_region(hr(0x4000_0000, 8 * MIB));
        for i in 0..4 {
            a.reserve(hr(0x4000_0000 + i * 2 * MIB + MIB, 4096));
        }
        let free = a.free_bytes();
        assert_eq!(a.alloc_chunks(free + 4096, 2 * MIB), None);
        assert_eq!(a.free_bytes(), free);
        let chunks = a.alloc_chunks(3 * MIB, 2 * MIB).unwrap();
        let total: u64 = chunks.iter().map(|c| c.size).sum();
        assert_eq!(total, 3 * MIB);
        for w in chunks.windows(2) {
            assert!(w[0].size >= w[1].size, "largest first");
        }
        assert_eq!(a.free_bytes(), free - 3 * MIB);
        assert_eq!(a.alloc_chunks(0, 2 * MIB), None);
        assert_eq!(a.alloc_chunks(4096, 3), None);
        // A sub-page request is rounded up.
        assert_eq!(a.alloc_chunks(1, 2 * MIB).unwrap()[0].size, 4096);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc(u64, u32),
        Chunks(u64),
        Free(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..3 * MIB, 12u32..23).prop_map(|(s, a)| Op::Alloc(s, a)),
            (1u64..8 * MIB).prop_map(Op::Chunks),
            any::<usize>().prop_map(Op::Free),
        ]
    }

    proptest! {
        #[test]
        fn allocations_never_overlap_and_free_restores(
            banks in prop::collection::vec((0u64..64, 1u64..4096), 1..4),
            holes in prop::collection::vec((0u64..(256 * MIB), 1u64..(2 * MIB)), 0..6),
            ops in prop::collection::vec(op(), 1..40),
        ) {
            let mut a = FrameAllocator::new();
            for (slot, pages) in &banks {
                a.add_region(hr(0x4000_0000 + slot * 4 * MIB + 0x123, pages * 4096));
            }
            let reserved: Vec<HostRange> =
                holes.iter().map(|(s, l)| hr(0x4000_0000 + s, *l)).collect();
            for r in &reserved {
                a.reserve(*r);
            }
            let initial = spans(&a);
            let initial_spans = a.free.clone();
            let total = a.free_bytes();
            let mut live: Vec<HostRange> = Vec::new();
            for op in ops {
                match op {
                    Op::Alloc(size, shift) => {
                        if let Some(p) = a.alloc(size, 1 << shift) {
                            prop_assert!(p.is_aligned(1 << shift));
                            live.push(hr(p.raw(), size.div_ceil(4096) * 4096));
                        }
                    }
                    Op::Chunks(size) => {
                        let before = a.free_bytes();
                        match a.alloc_chunks(size, 2 * MIB) {
                            Some(c) => live.extend(c),
                            None => prop_assert_eq!(a.free_bytes(), before),
                        }
                    }
                    Op::Free(i) => {
                        if !live.is_empty() {
                            let r = live.swap_remove(i % live.len());
                            prop_assert_eq!(a.free(r), Ok(()));
                        }
                    }
                }
                let used: u64 = live.iter().map(|r| r.size).sum();
                prop_assert_eq!(a.free_bytes() + used, total);
                for (i, r) in live.iter().enumerate() {
                    let inside = initial_spans
                        .iter()
                        .any(|s| s.start <= r.start.raw() && r.end().raw() <= s.end);
                    prop_assert!(inside);
                    for q in &reserved {
                        prop_assert!(!r.overlaps(q));
                    }
                    for o in &live[i + 1..] {
                        prop_assert!(!r.overlaps(o));
                    }
                    prop_assert!(a.free_ranges().all(|f| !f.overlaps(r)));
                }
                for w in a.free.windows(2) {
                    prop_assert!(w[0].end < w[1].start, "sorted and coalesced");
                }
            }
            for r in live.drain(..) {
                prop_assert_eq!(a.free(r), Ok(()));
            }
            prop_assert_eq!(spans(&a), initial);
        }
    }
}
