//! How the Xen layer touches guest memory: only through these traits, with bounds checked.
//!
//! Two address spaces matter:
//! - **guest-physical** ([`GuestMemory`]): shared_info, vcpu_info, grant frames, ring pages.
//!   Any domain, at any time (the arch layer walks that domain's stage 2).
//! - **guest-virtual** ([`GuestVirtMemory`]): hypercall argument buffers. On Arm, Xen's
//!   guest handles are virtual addresses of the *calling vCPU* (Linux passes kernel
//!   pointers), translated through the guest's stage 1 and stage 2 (e.g. `AT S12E1R/W`).
//!   Valid only while that vCPU's trap is being handled.
//!
//! Guest memory changes under our feet (other vCPUs run), so every value read from it is
//! decoded from a private copy and validated before use.

use crate::addr::{GuestPhysAddr, PAGE_SIZE};
use core::sync::atomic::AtomicU64;
use mica_guest_abi::xen::Wire;

/// Why a guest memory access failed. Every variant is reported to the guest as `-EFAULT`
/// (or a grant status) and never panics.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GuestMemError {
    /// Not mapped (no stage-1 or stage-2 translation, or outside the domain's memory).
    Unmapped,
    /// Mapped, but not writable by the guest (or not writable for this purpose).
    ReadOnly,
    /// The address range wraps around or is too large.
    OutOfRange,
    /// An atomic access that is not naturally aligned.
    Misaligned,
}

/// Guest-physical memory of one domain.
///
/// The atomic operations exist because the guest updates the same words concurrently on
/// other CPUs (event bitmaps, grant flags). Event words are reached through
/// [`GuestMemory::words`]. The provided `cmpxchg_u16` is a plain read-modify-write,
/// correct only when the guest cannot run concurrently (tests, single-vCPU domains); the
/// arch layer should override it with a real atomic on its mapping of the page.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes from `gpa`.
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError>;
    /// Copies `data` to `gpa`.
    fn write(&mut self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError>;

    /// Orders the accesses before it against those after it, as seen by the guest's other
    /// CPUs (a `DMB ISH` on Arm). Used between ring data and ring indices.
    fn barrier(&self) {}

    /// Lends frame `gfn` as the 512 words the event code updates (shared_info's event
    /// bitmaps, a vcpu_info's upcall flag and selector; the guest updates them atomically
    /// too): one look-up per page, then atomics, for a path taken on every event. `None`
    /// when the frame is not mapped or not writable by the guest. The page stays this
    /// frame's while `self` is borrowed.
    fn words(&self, gfn: u64) -> Option<&PageWords>;
    /// Atomic compare-and-exchange of the `u16` at `gpa` (2-byte aligned): stores `new` if
    /// the current value is `expected`. Returns the value found.
    fn cmpxchg_u16(
        &mut self,
        gpa: GuestPhysAddr,
        expected: u16,
        new: u16,
    ) -> Result<u16, GuestMemError> {
        check_aligned(gpa, 2)?;
        let mut raw = [0u8; 2];
        self.read(gpa, &mut raw)?;
        let found = u16::from_le_bytes(raw);
        if found == expected {
            self.write(gpa, &new.to_le_bytes())?;
        }
        Ok(found)
    }
}

/// Words per 4 KiB page.
pub const WORDS_PER_PAGE: usize = (PAGE_SIZE / 8) as usize;

/// A guest page lent as words ([`GuestMemory::words`]).
pub type PageWords = [AtomicU64; WORDS_PER_PAGE];

/// The calling vCPU's virtual address space, for hypercall argument buffers.
pub trait GuestVirtMemory {
    /// Copies `buf.len()` bytes from guest virtual address `gva`.
    fn read_virt(&self, gva: u64, buf: &mut [u8]) -> Result<(), GuestMemError>;
    /// Copies `data` to guest virtual address `gva` (needs a writable stage-1 mapping).
    fn write_virt(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestMemError>;
}

fn check_aligned(gpa: GuestPhysAddr, align: u64) -> Result<(), GuestMemError> {
    if gpa.is_aligned(align) {
        Ok(())
    } else {
        Err(GuestMemError::Misaligned)
    }
}

/// Reads a little-endian `u64`.
pub fn read_u64<M: GuestMemory + ?Sized>(m: &M, gpa: GuestPhysAddr) -> Result<u64, GuestMemError> {
    let mut raw = [0u8; 8];
    m.read(gpa, &mut raw)?;
    Ok(u64::from_le_bytes(raw))
}

/// Writes a little-endian `u64`.
pub fn write_u64<M: GuestMemory + ?Sized>(
    m: &mut M,
    gpa: GuestPhysAddr,
    v: u64,
) -> Result<(), GuestMemError> {
    m.write(gpa, &v.to_le_bytes())
}

/// Reads a little-endian `u32`.
pub fn read_u32<M: GuestMemory + ?Sized>(m: &M, gpa: GuestPhysAddr) -> Result<u32, GuestMemError> {
    let mut raw = [0u8; 4];
    m.read(gpa, &mut raw)?;
    Ok(u32::from_le_bytes(raw))
}

/// Writes a little-endian `u32`.
pub fn write_u32<M: GuestMemory + ?Sized>(
    m: &mut M,
    gpa: GuestPhysAddr,
    v: u32,
) -> Result<(), GuestMemError> {
    m.write(gpa, &v.to_le_bytes())
}

/// Walks `len` bytes from guest address `start` in pieces that do not cross what `locate`
/// reports: `locate(address)` gives where that address lives (a host or guest-physical
/// address) and how many bytes are left there (at least 1); `visit(place, offset, n)` then
/// handles bytes `offset..offset + n` of the access. The loop every page-by-page guest copy
/// needs, in one place.
pub fn for_each_piece(
    start: u64,
    len: usize,
    mut locate: impl FnMut(u64) -> Result<(u64, usize), GuestMemError>,
    mut visit: impl FnMut(u64, usize, usize) -> Result<(), GuestMemError>,
) -> Result<(), GuestMemError> {
    let mut done = 0;
    while done < len {
        let at = start
            .checked_add(done as u64)
            .ok_or(GuestMemError::OutOfRange)?;
        let (place, left) = locate(at)?;
        let n = left.min(len - done);
        if n == 0 {
            return Err(GuestMemError::OutOfRange);
        }
        visit(place, done, n)?;
        done += n;
    }
    Ok(())
}

/// Largest object the typed helpers copy through the stack; bigger ones use the heap.
const STACK_OBJ_MAX: usize = 128;

/// A zeroed buffer of `size` bytes for `f`. Small ones (the hot hypercall arguments: a port
/// number, a grant-copy entry) come from a stack buffer of about their own size, so the
/// zeroing costs little.
fn with_buffer<R>(size: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    if size <= 16 {
        let mut stack = [0u8; 16];
        f(&mut stack[..size])
    } else if size <= 48 {
        let mut stack = [0u8; 48];
        f(&mut stack[..size])
    } else if size <= STACK_OBJ_MAX {
        let mut stack = [0u8; STACK_OBJ_MAX];
        f(&mut stack[..size])
    } else {
        let mut heap = alloc::vec![0u8; size];
        f(&mut heap)
    }
}

/// Reads and decodes an ABI struct at a guest-physical address.
pub fn read_obj<T: Wire, M: GuestMemory + ?Sized>(
    m: &M,
    gpa: GuestPhysAddr,
) -> Result<T, GuestMemError> {
    with_buffer(T::SIZE, |buf| {
        m.read(gpa, buf)?;
        T::decode(buf).ok_or(GuestMemError::OutOfRange)
    })
}

/// Encodes and writes an ABI struct at a guest-physical address.
pub fn write_obj<T: Wire, M: GuestMemory + ?Sized>(
    m: &mut M,
    gpa: GuestPhysAddr,
    value: &T,
) -> Result<(), GuestMemError> {
    with_buffer(T::SIZE, |buf| {
        value.encode(buf).ok_or(GuestMemError::OutOfRange)?;
        m.write(gpa, buf)
    })
}

/// Reads and decodes an ABI struct at a guest virtual address.
pub fn read_virt_obj<T: Wire, M: GuestVirtMemory + ?Sized>(
    m: &M,
    gva: u64,
) -> Result<T, GuestMemError> {
    gva.checked_add(T::SIZE as u64)
        .ok_or(GuestMemError::OutOfRange)?;
    with_buffer(T::SIZE, |buf| {
        m.read_virt(gva, buf)?;
        T::decode(buf).ok_or(GuestMemError::OutOfRange)
    })
}

/// Encodes and writes an ABI struct at a guest virtual address.
pub fn write_virt_obj<T: Wire, M: GuestVirtMemory + ?Sized>(
    m: &mut M,
    gva: u64,
    value: &T,
) -> Result<(), GuestMemError> {
    gva.checked_add(T::SIZE as u64)
        .ok_or(GuestMemError::OutOfRange)?;
    with_buffer(T::SIZE, |buf| {
        value.encode(buf).ok_or(GuestMemError::OutOfRange)?;
        m.write_virt(gva, buf)
    })
}

/// The address of element `index` of an array of `elem_size`-byte elements at `base`, or
/// an error if it overflows.
pub fn element_addr(base: u64, index: u64, elem_size: u64) -> Result<u64, GuestMemError> {
    index
        .checked_mul(elem_size)
        .and_then(|off| base.checked_add(off))
        .filter(|a| a.checked_add(elem_size).is_some())
        .ok_or(GuestMemError::OutOfRange)
}

/// The guest-physical address of byte `offset` in frame `gfn`, if it fits.
pub fn frame_addr(gfn: u64, offset: u64) -> Option<GuestPhysAddr> {
    if offset >= PAGE_SIZE {
        return None;
    }
    GuestPhysAddr::from_pfn(gfn)?.checked_add(offset)
}

/// Guest-physical memory backed by a map of 4 KiB pages, for tests and fakes. Virtual
/// accesses use the same pages (an identity stage 1).
#[cfg(test)]
pub mod fake {
    use super::*;
    use core::sync::atomic::Ordering;
    use std::collections::BTreeMap;

    /// Sparse guest memory: only the listed frames exist. Pages are words, so they can be
    /// lent ([`GuestMemory::words`]) like the arch layer's; each is leaked, to be lent
    /// for `'static` from behind the tests' `RefCell`s (a test makes a few).
    #[derive(Default, Clone)]
    pub struct FakeMemory {
        /// Frame number to contents.
        pub pages: BTreeMap<u64, &'static PageWords>,
        /// Frames that reject writes.
        pub read_only: std::collections::BTreeSet<u64>,
    }

    impl FakeMemory {
        /// Adds zeroed frames `[first, first + count)`.
        pub fn add(&mut self, first: u64, count: u64) {
            for f in first..first + count {
                let page: Box<PageWords> = Box::new(core::array::from_fn(|_| AtomicU64::new(0)));
                self.pages.insert(f, Box::leak(page));
            }
        }

        /// Frame `gfn` as words, unless absent or read-only.
        pub fn page(&self, gfn: u64) -> Option<&'static PageWords> {
            if self.read_only.contains(&gfn) {
                return None;
            }
            self.pages.get(&gfn).copied()
        }

        fn byte(&self, frame: u64, off: usize) -> u8 {
            let word = self.pages[&frame][off / 8].load(Ordering::Relaxed);
            (word >> (8 * (off % 8))) as u8
        }

        fn set_byte(&self, frame: u64, off: usize, value: u8) {
            let shift = 8 * (off % 8);
            let word = &self.pages[&frame][off / 8];
            let old = word.load(Ordering::Relaxed);
            word.store(
                (old & !(0xFF << shift)) | u64::from(value) << shift,
                Ordering::Relaxed,
            );
        }

        fn walk(
            &self,
            addr: u64,
            len: usize,
            mut f: impl FnMut(u64, usize, usize, usize),
        ) -> Result<(), GuestMemError> {
            let end = addr
                .checked_add(len as u64)
                .ok_or(GuestMemError::OutOfRange)?;
            let mut a = addr;
            let mut done = 0usize;
            while a < end {
                let frame = a >> 12;
                let off = (a & 0xfff) as usize;
                let n = ((4096 - off) as u64).min(end - a) as usize;
                if !self.pages.contains_key(&frame) {
                    return Err(GuestMemError::Unmapped);
                }
                f(frame, off, done, n);
                a += n as u64;
                done += n;
            }
            Ok(())
        }
    }

    impl GuestMemory for FakeMemory {
        fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
            let mut chunks = Vec::new();
            self.walk(gpa.raw(), buf.len(), |fr, off, done, n| {
                chunks.push((fr, off, done, n))
            })?;
            for (fr, off, done, n) in chunks {
                for i in 0..n {
                    buf[done + i] = self.byte(fr, off + i);
                }
            }
            Ok(())
        }
        fn write(&mut self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
            let mut chunks = Vec::new();
            self.walk(gpa.raw(), data.len(), |fr, off, done, n| {
                chunks.push((fr, off, done, n))
            })?;
            if chunks.iter().any(|c| self.read_only.contains(&c.0)) {
                return Err(GuestMemError::ReadOnly);
            }
            for (fr, off, done, n) in chunks {
                for i in 0..n {
                    self.set_byte(fr, off + i, data[done + i]);
                }
            }
            Ok(())
        }
        fn words(&self, gfn: u64) -> Option<&PageWords> {
            self.page(gfn)
        }
    }

    impl GuestVirtMemory for FakeMemory {
        fn read_virt(&self, gva: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
            self.read(GuestPhysAddr::new(gva), buf)
        }
        fn write_virt(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestMemError> {
            self.write(GuestPhysAddr::new(gva), data)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeMemory;

    #[test]
    fn pieces_split_at_what_locate_reports_and_errors_stop_the_walk() {
        let mut seen = Vec::new();
        let page = |at: u64| Ok((at.wrapping_add(0x1000), (0x100 - at % 0x100) as usize));
        for_each_piece(0xf0, 0x120, page, |place, offset, n| {
            seen.push((place, offset, n));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                (0x10f0, 0, 0x10),
                (0x1100, 0x10, 0x100),
                (0x1200, 0x110, 0x10)
            ]
        );
        assert_eq!(
            for_each_piece(u64::MAX - 1, 4, page, |_, _, _| Ok(())),
            Err(GuestMemError::OutOfRange),
            "an access wrapping the address space"
        );
        assert_eq!(
            for_each_piece(0, 8, |_| Ok((0, 0)), |_, _, _| Ok(())),
            Err(GuestMemError::OutOfRange),
            "a place with no room left cannot loop forever"
        );
        assert_eq!(
            for_each_piece(0, 8, |_| Err(GuestMemError::Unmapped), |_, _, _| Ok(())),
            Err(GuestMemError::Unmapped)
        );
    }
    use super::*;
    use core::sync::atomic::Ordering;
    use mica_guest_abi::xen::evtchn::EvtchnBindVirq;

    #[test]
    fn typed_access_round_trips_and_crosses_pages() {
        let mut m = FakeMemory::default();
        m.add(0x40, 2);
        let at = GuestPhysAddr::new(0x40ffc); // straddles two frames
        let v = EvtchnBindVirq {
            virq: 3,
            vcpu: 1,
            port: 9,
        };
        write_obj(&mut m, at, &v).unwrap();
        assert_eq!(read_obj::<EvtchnBindVirq, _>(&m, at), Ok(v));
        assert_eq!(
            read_obj::<EvtchnBindVirq, _>(&m, GuestPhysAddr::new(0x41ffc)),
            Err(GuestMemError::Unmapped)
        );
        assert_eq!(
            read_virt_obj::<EvtchnBindVirq, _>(&m, u64::MAX - 4),
            Err(GuestMemError::OutOfRange)
        );
    }

    #[test]
    fn lent_words_are_the_bytes_and_read_only_pages_are_not_lent() {
        let mut m = FakeMemory::default();
        m.add(1, 2);
        let a = GuestPhysAddr::new(0x1008);
        let words = m.page(1).unwrap();
        assert_eq!(words[1].fetch_or(0b101, Ordering::AcqRel), 0);
        assert_eq!(read_u64(&m, a), Ok(0b101));
        write_u64(&mut m, a, 4).unwrap();
        assert_eq!(words[1].load(Ordering::Acquire), 4);
        assert_eq!(m.cmpxchg_u16(a, 7, 9), Ok(4));
        assert_eq!(m.cmpxchg_u16(a, 4, 9), Ok(4));
        assert_eq!(read_u64(&m, a), Ok(9));
        m.read_only.insert(2);
        assert!(m.words(2).is_none() && m.words(3).is_none());
    }

    #[test]
    fn address_helpers_refuse_overflow() {
        assert!(element_addr(u64::MAX - 10, 1, 8).is_err());
        assert!(element_addr(0, u64::MAX, 64).is_err());
        assert_eq!(element_addr(0x1000, 2, 8), Ok(0x1010));
        assert_eq!(frame_addr(1, 4096), None);
        assert_eq!(frame_addr(u64::MAX, 0), None);
        assert_eq!(frame_addr(2, 8), Some(GuestPhysAddr::new(0x2008)));
    }
}
