//! Grant tables, version 1: the table's frames are mapped into the hypervisor node's grant
//! region with XENMEM_add_to_physmap (XENMAPSPACE_grant_table), entries are written directly,
//! GNTTABOP_copy copies through grants, and GNTTABOP_map_grant_ref / unmap_grant_ref map
//! another domain's grant into this guest's physical address space and remove it again.

use super::abi::{
    DomId, GrantEntryV1, GNTTAB_NR_RESERVED_ENTRIES, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY,
    GTF_WRITING, XENMAPSPACE_GRANT_TABLE,
};
use super::{field_ptr, hypercall, XenError, PAGE_SIZE};
use core::mem::offset_of;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicUsize, Ordering};

pub use super::hypercall::{
    gnttab_copy as copy, gnttab_map_grant_ref as map, gnttab_query_size as query_size,
    gnttab_unmap_grant_ref as unmap, CopyEnd, GrantMapping,
};

pub use mica_guest_abi::xen::gnttab::{
    GNTST_BAD_GNTREF, GNTST_BAD_HANDLE, GNTST_BAD_PAGE, GNTST_GENERAL_ERROR, GNTST_OKAY,
    GNTST_PERMISSION_DENIED,
};

const ENTRIES_PER_FRAME: u32 = (PAGE_SIZE / core::mem::size_of::<GrantEntryV1>()) as u32;

static TABLE: AtomicUsize = AtomicUsize::new(0);
static FRAMES: AtomicU32 = AtomicU32::new(0);
static NEXT_REF: AtomicU32 = AtomicU32::new(GNTTAB_NR_RESERVED_ENTRIES);

/// Why grants could not be set up or used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// The hypervisor node has no grant region.
    NoRegion,
    /// A hypercall failed.
    Xen(XenError),
    /// The region could not be mapped as Normal memory.
    Map(crate::mmu::MapError),
    /// [`init`] has not run or all references are used.
    NoEntry,
    /// The entry is in use by the hypervisor (GTF_reading / GTF_writing) and cannot be revoked.
    Busy,
}

/// Maps grant frame 0 at the start of `region` (base, size) and returns (frames in use,
/// maximum frames) as GNTTABOP_query_size reported them before the mapping.
pub fn init(region: Option<(usize, usize)>) -> Result<(u32, u32), GrantError> {
    let (base, size) = region.ok_or(GrantError::NoRegion)?;
    if size < PAGE_SIZE || base % PAGE_SIZE != 0 {
        return Err(GrantError::NoRegion);
    }
    let sizes = query_size().map_err(GrantError::Xen)?;
    // SAFETY: the grant region is guest-physical space outside RAM reserved for this.
    unsafe {
        hypercall::add_to_physmap(XENMAPSPACE_GRANT_TABLE, 0, (base / PAGE_SIZE) as u64)
            .map_err(GrantError::Xen)?
    };
    crate::mmu::map_normal(base, PAGE_SIZE).map_err(GrantError::Map)?;
    TABLE.store(base, Ordering::Release);
    FRAMES.store(1, Ordering::Release);
    Ok(sizes)
}

/// Address of the mapped grant table, if [`init`] succeeded.
pub fn table_address() -> Option<usize> {
    match TABLE.load(Ordering::Acquire) {
        0 => None,
        base => Some(base),
    }
}

fn entry(gref: u32) -> Option<*mut GrantEntryV1> {
    let table = table_address()?;
    if gref >= FRAMES.load(Ordering::Acquire) * ENTRIES_PER_FRAME {
        return None;
    }
    Some((table as *mut GrantEntryV1).wrapping_add(gref as usize))
}

fn flags_of(entry: *mut GrantEntryV1) -> &'static AtomicU16 {
    let flags = field_ptr(entry, offset_of!(GrantEntryV1, flags));
    // SAFETY: `entry` is inside the mapped grant table (checked by `entry`), which stays mapped;
    // flags is a 2-aligned u16 shared with the hypervisor and accessed atomically.
    unsafe { AtomicU16::from_ptr(flags) }
}

/// Takes an unused grant reference (never reused in this simple allocator).
pub fn alloc_ref() -> Result<u32, GrantError> {
    let gref = NEXT_REF.fetch_add(1, Ordering::AcqRel);
    entry(gref).map(|_| gref).ok_or(GrantError::NoEntry)
}

/// Lets `domid` access guest frame `gfn` through `gref` (read-only if `readonly`). Writes
/// domid and frame first, then the flags, as the protocol requires.
pub fn grant_access(gref: u32, domid: DomId, gfn: u64, readonly: bool) -> Result<(), GrantError> {
    let entry = entry(gref).ok_or(GrantError::NoEntry)?;
    let frame = u32::try_from(gfn).map_err(|_| GrantError::NoEntry)?;
    let domid_field = field_ptr::<GrantEntryV1, DomId>(entry, offset_of!(GrantEntryV1, domid));
    let frame_field = field_ptr::<GrantEntryV1, u32>(entry, offset_of!(GrantEntryV1, frame));
    // SAFETY: `entry` is inside the mapped table; the entry is not live (flags 0) until the
    // release store below publishes it.
    unsafe { domid_field.write_volatile(domid) };
    // SAFETY: as above.
    unsafe { frame_field.write_volatile(frame) };
    let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
    flags_of(entry).store(flags, Ordering::Release);
    Ok(())
}

/// Ends access through `gref`, unless the hypervisor is using it right now.
pub fn revoke(gref: u32) -> Result<(), GrantError> {
    let entry = entry(gref).ok_or(GrantError::NoEntry)?;
    let flags = flags_of(entry);
    let mut current = flags.load(Ordering::Acquire);
    loop {
        if current & (GTF_READING | GTF_WRITING) != 0 {
            return Err(GrantError::Busy);
        }
        match flags.compare_exchange(current, 0, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(()),
            Err(now) => current = now,
        }
    }
}

/// The flags word of `gref`'s entry.
pub fn entry_flags(gref: u32) -> Option<u16> {
    entry(gref).map(|e| flags_of(e).load(Ordering::Acquire))
}
