//! `xen_version` sub-operations (`version.h`).

use super::wire::wire_struct;

/// Returns `major << 16 | minor`.
pub const XENVER_VERSION: u64 = 0;
/// Writes a 16-byte string (`xen_extraversion_t`).
pub const XENVER_EXTRAVERSION: u64 = 1;
/// Writes [`CompileInfo`].
pub const XENVER_COMPILE_INFO: u64 = 2;
/// Writes a 1024-byte capabilities string.
pub const XENVER_CAPABILITIES: u64 = 3;
/// Writes a 64-byte changeset string.
pub const XENVER_CHANGESET: u64 = 4;
/// Writes [`PlatformParameters`].
pub const XENVER_PLATFORM_PARAMETERS: u64 = 5;
/// Reads and writes [`FeatureInfo`].
pub const XENVER_GET_FEATURES: u64 = 6;
/// Returns the page size.
pub const XENVER_PAGESIZE: u64 = 7;
/// Writes the 16-byte domain handle (UUID).
pub const XENVER_GUEST_HANDLE: u64 = 8;
/// Writes the 1024-byte hypervisor command line (privileged).
pub const XENVER_COMMANDLINE: u64 = 9;
/// Build id (privileged).
pub const XENVER_BUILD_ID: u64 = 10;

/// Length of the extraversion string buffer.
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// Length of the capabilities string buffer.
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// Length of the changeset string buffer.
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// Length of the domain handle.
pub const XEN_DOMAIN_HANDLE_LEN: usize = 16;
/// Length of the command-line buffer.
pub const XEN_COMMANDLINE_LEN: usize = 1024;

wire_struct! {
    /// XENVER_get_features argument.
    pub struct FeatureInfo: 8 {
        /// IN: which 32-bit submap (only 0 exists).
        pub submap_idx: u32 = 0,
        /// OUT: the feature bits.
        pub submap: u32 = 4,
    }
}

wire_struct! {
    /// XENVER_platform_parameters result.
    pub struct PlatformParameters: 8 {
        /// Start of the hypervisor's virtual area (0 on Arm: guests own their whole VA).
        pub virt_start: u64 = 0,
    }
}

wire_struct! {
    /// XENVER_compile_info result (NUL-terminated strings).
    pub struct CompileInfo: 144 {
        /// Compiler.
        pub compiler: [u8; 64] = 0,
        /// Who built it.
        pub compile_by: [u8; 16] = 64,
        /// Build domain.
        pub compile_domain: [u8; 32] = 80,
        /// Build date.
        pub compile_date: [u8; 32] = 112,
    }
}
