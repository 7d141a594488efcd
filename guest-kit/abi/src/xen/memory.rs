//! `memory_op` sub-operations and structs (`memory.h`).

use super::wire::wire_struct;
use super::DomId;

/// Give memory to the domain.
pub const XENMEM_INCREASE_RESERVATION: u64 = 0;
/// Return memory (balloon out).
pub const XENMEM_DECREASE_RESERVATION: u64 = 1;
/// Highest machine frame.
pub const XENMEM_MAXIMUM_RAM_PAGE: u64 = 2;
/// Current page count of a domain.
pub const XENMEM_CURRENT_RESERVATION: u64 = 3;
/// Maximum page count of a domain.
pub const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
/// Populate guest frames with memory.
pub const XENMEM_POPULATE_PHYSMAP: u64 = 6;
/// Place a hypervisor-provided page (shared_info, grant frame, ...) in the physmap.
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// Exchange pages.
pub const XENMEM_EXCHANGE: u64 = 11;
/// Highest guest frame number in use.
pub const XENMEM_MAXIMUM_GPFN: u64 = 14;
/// Remove a page from the physmap.
pub const XENMEM_REMOVE_FROM_PHYSMAP: u64 = 15;
/// Batched add_to_physmap (also "add_to_physmap_range").
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u64 = 23;
/// Claim pages for a domain being built.
pub const XENMEM_CLAIM_PAGES: u64 = 24;
/// vNUMA topology.
pub const XENMEM_GET_VNUMAINFO: u64 = 26;
/// Map a resource of another domain.
pub const XENMEM_ACQUIRE_RESOURCE: u64 = 28;
/// The low bits of the memory_op command are the sub-op; the rest is a continuation
/// start extent (`MEMOP_EXTENT_SHIFT`).
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;
/// Shift of the continuation extent in the memory_op command.
pub const MEMOP_EXTENT_SHIFT: u32 = 6;

/// Map space: the shared-info page (`idx` must be 0).
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// Map space: grant-table frame `idx`.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// Map space: one of the domain's own frames.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// Map space: a range of the domain's own frames.
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// Map space: another domain's frame (privileged).
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// Map space: device MMIO (privileged).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// Bit in `idx` selecting grant v2 status frames.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

wire_struct! {
    /// XENMEM_add_to_physmap argument (24 bytes).
    pub struct AddToPhysmap: 24 {
        /// Target domain (DOMID_SELF).
        pub domid: DomId = 0,
        /// Page count for XENMAPSPACE_gmfn_range.
        pub size: u16 = 2,
        /// One of `XENMAPSPACE_*`.
        pub space: u32 = 4,
        /// Index in the space (grant frame number, ...).
        pub idx: u64 = 8,
        /// Guest frame where the page should appear.
        pub gpfn: u64 = 16,
    }
}

wire_struct! {
    /// XENMEM_add_to_physmap_batch argument (32 bytes). The three handles are guest
    /// addresses of arrays of `size` elements: `u64` indices, `u64` gpfns, `i32` errors.
    pub struct AddToPhysmapBatch: 32 {
        /// Target domain.
        pub domid: DomId = 0,
        /// One of `XENMAPSPACE_*` (16-bit here).
        pub space: u16 = 2,
        /// Number of entries.
        pub size: u16 = 4,
        /// Foreign domain for XENMAPSPACE_gmfn_foreign, 0 otherwise.
        pub foreign_domid: DomId = 6,
        /// Handle: `u64 idxs[size]`.
        pub idxs: u64 = 8,
        /// Handle: `u64 gpfns[size]`.
        pub gpfns: u64 = 16,
        /// Handle: `i32 errs[size]` (OUT).
        pub errs: u64 = 24,
    }
}

wire_struct! {
    /// XENMEM_remove_from_physmap argument.
    pub struct RemoveFromPhysmap: 16 {
        /// Target domain.
        pub domid: DomId = 0,
        /// Guest frame to unmap.
        pub gpfn: u64 = 8,
    }
}

wire_struct! {
    /// XENMEM_{increase,decrease}_reservation / populate_physmap argument (32 bytes).
    pub struct MemoryReservation: 32 {
        /// Handle: array of frame numbers.
        pub extent_start: u64 = 0,
        /// Number of extents.
        pub nr_extents: u64 = 8,
        /// log2 pages per extent.
        pub extent_order: u32 = 16,
        /// XENMEMF_* flags.
        pub mem_flags: u32 = 20,
        /// Target domain.
        pub domid: DomId = 24,
    }
}
