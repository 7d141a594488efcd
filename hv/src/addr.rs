//! Address types. A host-physical address, a guest's intermediate-physical address (what
//! the guest believes is physical; the input of stage-2 translation) and a hypervisor
//! virtual address are different things; mixing them up is a security bug, so each has
//! its own type and arithmetic on them is checked.

use core::fmt;

/// Size of the smallest translation granule Mica uses (4 KiB).
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident, $tag:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw address.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            /// The raw address.
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// `self + bytes`, or `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// `self - bytes`, or `None` on underflow.
            pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
                match self.0.checked_sub(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// Bytes from `base` up to `self`, or `None` if `self` is below `base`.
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }
            /// Rounds up to a multiple of `align` (a power of two), or `None` on overflow.
            pub const fn checked_align_up(self, align: u64) -> Option<Self> {
                match self.0.checked_add(align - 1) {
                    Some(v) => Some(Self(v & !(align - 1))),
                    None => None,
                }
            }
            /// The page frame number.
            pub const fn pfn(self) -> u64 {
                self.0 >> PAGE_SHIFT
            }
            /// The address of page frame `pfn`, or `None` if it does not fit in 64 bits.
            pub const fn from_pfn(pfn: u64) -> Option<Self> {
                if pfn > (u64::MAX >> PAGE_SHIFT) {
                    None
                } else {
                    Some(Self(pfn << PAGE_SHIFT))
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($tag, "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address_type!(
    /// A host-physical address: what the hardware's memory system sees.
    HostPhysAddr,
    "HPA"
);
address_type!(
    /// A guest (intermediate-)physical address: what a guest programs into its own page
    /// tables and devices, translated by stage 2. On ARM this is the IPA.
    GuestPhysAddr,
    "GPA"
);

/// A half-open range `[start, start + size)` of addresses of one kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Range<A> {
    /// First address in the range.
    pub start: A,
    /// Size in bytes.
    pub size: u64,
}

macro_rules! range_impl {
    ($a:ty) => {
        impl Range<$a> {
            /// A range, or `None` if it would wrap around the address space.
            pub fn new(start: $a, size: u64) -> Option<Self> {
                start.checked_add(size)?;
                Some(Self { start, size })
            }
            /// One past the last address (never wraps: checked at construction).
            pub fn end(&self) -> $a {
                <$a>::new(self.start.raw().saturating_add(self.size))
            }
            /// Whether `addr` lies inside.
            pub fn contains(&self, addr: $a) -> bool {
                addr >= self.start && addr < self.end()
            }
            /// Whether `[addr, addr + len)` lies wholly inside.
            pub fn contains_range(&self, addr: $a, len: u64) -> bool {
                match addr.checked_add(len) {
                    Some(end) => addr >= self.start && end <= self.end(),
                    None => false,
                }
            }
            /// Whether the two ranges share at least one byte.
            pub fn overlaps(&self, other: &Self) -> bool {
                self.size != 0
                    && other.size != 0
                    && self.start < other.end()
                    && other.start < self.end()
            }
        }
    };
}
range_impl!(HostPhysAddr);
range_impl!(GuestPhysAddr);

/// A host-physical range.
pub type HostRange = Range<HostPhysAddr>;
/// A guest-physical range.
pub type GuestRange = Range<GuestPhysAddr>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic_refuses_overflow() {
        let a = GuestPhysAddr::new(u64::MAX - 1);
        assert_eq!(a.checked_add(1), Some(GuestPhysAddr::new(u64::MAX)));
        assert_eq!(a.checked_add(2), None);
        assert_eq!(GuestPhysAddr::new(4).checked_sub(5), None);
        assert_eq!(
            HostPhysAddr::new(u64::MAX).checked_align_up(PAGE_SIZE),
            None
        );
    }

    #[test]
    fn alignment_helpers() {
        let a = HostPhysAddr::new(0x4000_1234);
        assert_eq!(a.align_down(PAGE_SIZE), HostPhysAddr::new(0x4000_1000));
        assert_eq!(
            a.checked_align_up(PAGE_SIZE),
            Some(HostPhysAddr::new(0x4000_2000))
        );
        assert!(!a.is_aligned(PAGE_SIZE));
        assert_eq!(a.pfn(), 0x40001);
        assert_eq!(
            HostPhysAddr::from_pfn(0x40001),
            Some(HostPhysAddr::new(0x4000_1000))
        );
        assert_eq!(HostPhysAddr::from_pfn(u64::MAX), None);
    }

    #[test]
    fn ranges() {
        assert!(GuestRange::new(GuestPhysAddr::new(u64::MAX), 2).is_none());
        let r = GuestRange::new(GuestPhysAddr::new(0x1000), 0x1000).unwrap();
        assert!(r.contains(GuestPhysAddr::new(0x1fff)));
        assert!(!r.contains(GuestPhysAddr::new(0x2000)));
        assert!(r.contains_range(GuestPhysAddr::new(0x1800), 0x800));
        assert!(!r.contains_range(GuestPhysAddr::new(0x1800), 0x801));
        assert!(!r.contains_range(GuestPhysAddr::new(0x1800), u64::MAX));
        let s = GuestRange::new(GuestPhysAddr::new(0x1fff), 1).unwrap();
        assert!(r.overlaps(&s));
        let t = GuestRange::new(GuestPhysAddr::new(0x2000), 1).unwrap();
        assert!(!r.overlaps(&t));
    }
}
