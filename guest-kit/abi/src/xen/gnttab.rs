//! `grant_table_op` sub-operations, grant entries and status codes (`grant_table.h`).

use super::wire::wire_struct;
use super::{DomId, GrantHandle, GrantRef};

/// Map a foreign grant.
pub const GNTTABOP_MAP_GRANT_REF: u64 = 0;
/// Unmap a mapped grant.
pub const GNTTABOP_UNMAP_GRANT_REF: u64 = 1;
/// Set up (and report) the grant table frames (non-translated guests).
pub const GNTTABOP_SETUP_TABLE: u64 = 2;
/// Dump the table to the console.
pub const GNTTABOP_DUMP_TABLE: u64 = 3;
/// Page transfer (x86 PV).
pub const GNTTABOP_TRANSFER: u64 = 4;
/// Copy through grants.
pub const GNTTABOP_COPY: u64 = 5;
/// Current and maximum table size.
pub const GNTTABOP_QUERY_SIZE: u64 = 6;
/// Unmap and replace (x86 PV).
pub const GNTTABOP_UNMAP_AND_REPLACE: u64 = 7;
/// Choose grant-table version 1 or 2.
pub const GNTTABOP_SET_VERSION: u64 = 8;
/// v2 status frames.
pub const GNTTABOP_GET_STATUS_FRAMES: u64 = 9;
/// Current version.
pub const GNTTABOP_GET_VERSION: u64 = 10;
/// Swap two grant entries.
pub const GNTTABOP_SWAP_GRANT_REF: u64 = 11;
/// Cache maintenance on granted pages.
pub const GNTTABOP_CACHE_FLUSH: u64 = 12;

/// Entries reserved at the start of every table.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// Reserved entry for the console backend.
pub const GNTTAB_RESERVED_CONSOLE: GrantRef = 0;
/// Reserved entry for the xenstore backend.
pub const GNTTAB_RESERVED_XENSTORE: GrantRef = 1;
/// v1 entries per 4 KiB frame.
pub const GRANT_ENTRIES_V1_PER_FRAME: u32 = 512;

/// Entry type mask (bits 0-1).
pub const GTF_TYPE_MASK: u16 = 3;
/// Unused entry.
pub const GTF_INVALID: u16 = 0;
/// `domid` may map or copy `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `domid` may transfer a page into this entry.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// Transitive grant (v2).
pub const GTF_TRANSITIVE: u16 = 3;
/// Guest flag: read-only access only.
pub const GTF_READONLY: u16 = 1 << 2;
/// Hypervisor flag: the grantee has it mapped or is copying from it.
pub const GTF_READING: u16 = 1 << 3;
/// Hypervisor flag: the grantee has it mapped writable or is copying into it.
pub const GTF_WRITING: u16 = 1 << 4;
/// x86 cache attribute.
pub const GTF_PWT: u16 = 1 << 5;
/// x86 cache attribute.
pub const GTF_PCD: u16 = 1 << 6;
/// x86 cache attribute.
pub const GTF_PAT: u16 = 1 << 7;
/// Sub-page grant (v2).
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// Transfer committed.
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// Transfer completed.
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

/// Map for device (DMA) access.
pub const GNTMAP_DEVICE_MAP: u32 = 1;
/// Map for CPU access at `host_addr` (a guest physical address on Arm).
pub const GNTMAP_HOST_MAP: u32 = 2;
/// Map read-only.
pub const GNTMAP_READONLY: u32 = 4;
/// Application (user) mapping (x86 PV).
pub const GNTMAP_APPLICATION_MAP: u32 = 8;
/// `host_addr` is a PTE address (x86 PV).
pub const GNTMAP_CONTAINS_PTE: u32 = 16;

/// Copy source is a grant reference (else a frame of the caller).
pub const GNTCOPY_SOURCE_GREF: u16 = 1;
/// Copy destination is a grant reference.
pub const GNTCOPY_DEST_GREF: u16 = 2;

/// Success.
pub const GNTST_OKAY: i16 = 0;
/// Other error.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// Unknown domain.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// Bad grant reference.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// Bad map handle.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// Bad host address.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// Bad device address.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// No room for a new mapping.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// Not allowed.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// Bad page.
pub const GNTST_BAD_PAGE: i16 = -9;
/// Copy crosses a page or is otherwise malformed.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// Address too big.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// Retry.
pub const GNTST_EAGAIN: i16 = -12;
/// No space.
pub const GNTST_NO_SPACE: i16 = -13;

wire_struct! {
    /// A version-1 grant entry (8 bytes, 512 per frame). The granting guest writes
    /// `domid` and `frame`, then `flags`.
    pub struct GrantEntryV1: 8 {
        /// `GTF_*`.
        pub flags: u16 = 0,
        /// Domain being granted access.
        pub domid: DomId = 2,
        /// Granted guest frame (4 KiB units).
        pub frame: u32 = 4,
    }
}

wire_struct! {
    /// GNTTABOP_map_grant_ref (32 bytes).
    pub struct GnttabMapGrantRef: 32 {
        /// IN: guest physical address to map at (Arm, GNTMAP_host_map).
        pub host_addr: u64 = 0,
        /// IN: `GNTMAP_*`.
        pub flags: u32 = 8,
        /// IN: grant reference in `dom`'s table.
        pub ref_: GrantRef = 12,
        /// IN: granting domain.
        pub dom: DomId = 16,
        /// OUT: `GNTST_*`.
        pub status: i16 = 18,
        /// OUT: handle for unmap.
        pub handle: GrantHandle = 20,
        /// OUT: bus address for device mappings.
        pub dev_bus_addr: u64 = 24,
    }
}

wire_struct! {
    /// GNTTABOP_unmap_grant_ref (24 bytes).
    pub struct GnttabUnmapGrantRef: 24 {
        /// IN: address given at map time.
        pub host_addr: u64 = 0,
        /// IN: device address given at map time.
        pub dev_bus_addr: u64 = 8,
        /// IN: handle from map.
        pub handle: GrantHandle = 16,
        /// OUT: `GNTST_*`.
        pub status: i16 = 20,
    }
}

wire_struct! {
    /// GNTTABOP_setup_table (24 bytes).
    pub struct GnttabSetupTable: 24 {
        /// IN: domain.
        pub dom: DomId = 0,
        /// IN: frames wanted.
        pub nr_frames: u32 = 4,
        /// OUT: `GNTST_*`.
        pub status: i16 = 8,
        /// IN: handle of a `u64 frame_list[nr_frames]` (OUT contents).
        pub frame_list: u64 = 16,
    }
}

wire_struct! {
    /// One end of a GNTTABOP_copy (16 bytes). `u` is a grant reference (low 32 bits) when
    /// the matching GNTCOPY_*_gref flag is set, else a frame of the caller.
    pub struct GnttabCopyPtr: 16 {
        /// Grant reference or guest frame.
        pub u: u64 = 0,
        /// Domain.
        pub domid: DomId = 8,
        /// Byte offset in the page.
        pub offset: u16 = 10,
    }
}

wire_struct! {
    /// GNTTABOP_copy (40 bytes).
    pub struct GnttabCopy: 40 {
        /// Source.
        pub source: GnttabCopyPtr = 0,
        /// Destination.
        pub dest: GnttabCopyPtr = 16,
        /// Bytes to copy (must not cross a page at either end).
        pub len: u16 = 32,
        /// `GNTCOPY_*`.
        pub flags: u16 = 34,
        /// OUT: `GNTST_*`.
        pub status: i16 = 36,
    }
}

wire_struct! {
    /// GNTTABOP_query_size (16 bytes).
    pub struct GnttabQuerySize: 16 {
        /// IN: domain.
        pub dom: DomId = 0,
        /// OUT: current frames.
        pub nr_frames: u32 = 4,
        /// OUT: maximum frames.
        pub max_nr_frames: u32 = 8,
        /// OUT: `GNTST_*`.
        pub status: i16 = 12,
    }
}

wire_struct! {
    /// GNTTABOP_set_version.
    pub struct GnttabSetVersion: 4 {
        /// IN: 1 or 2; OUT: the version in use.
        pub version: u32 = 0,
    }
}

wire_struct! {
    /// GNTTABOP_get_version.
    pub struct GnttabGetVersion: 8 {
        /// IN: domain.
        pub dom: DomId = 0,
        /// Padding.
        pub pad: u16 = 2,
        /// OUT: version.
        pub version: u32 = 4,
    }
}

wire_struct! {
    /// GNTTABOP_cache_flush (16 bytes).
    pub struct GnttabCacheFlush: 16 {
        /// Bus address or grant reference.
        pub a: u64 = 0,
        /// Offset in the page.
        pub offset: u16 = 8,
        /// Length.
        pub length: u16 = 10,
        /// GNTTAB_CACHE_* operations.
        pub op: u32 = 12,
    }
}
