//! PSCI and SMCCC function identifiers and return codes (Arm DEN0022, DEN0028).

/// PSCI_VERSION.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// CPU_SUSPEND (SMC32).
pub const PSCI_CPU_SUSPEND_32: u32 = 0x8400_0001;
/// CPU_SUSPEND (SMC64).
pub const PSCI_CPU_SUSPEND_64: u32 = 0xC400_0001;
/// CPU_OFF.
pub const PSCI_CPU_OFF: u32 = 0x8400_0002;
/// CPU_ON (SMC32).
pub const PSCI_CPU_ON_32: u32 = 0x8400_0003;
/// CPU_ON (SMC64).
pub const PSCI_CPU_ON_64: u32 = 0xC400_0003;
/// AFFINITY_INFO (SMC32).
pub const PSCI_AFFINITY_INFO_32: u32 = 0x8400_0004;
/// AFFINITY_INFO (SMC64).
pub const PSCI_AFFINITY_INFO_64: u32 = 0xC400_0004;
/// MIGRATE_INFO_TYPE.
pub const PSCI_MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// SYSTEM_OFF.
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
/// SYSTEM_RESET.
pub const PSCI_SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI_FEATURES.
pub const PSCI_FEATURES: u32 = 0x8400_000A;

/// SMCCC_VERSION.
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// SMCCC_ARCH_FEATURES.
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;

/// PSCI 1.1 as returned by PSCI_VERSION (major in bits 31:16, minor in 15:0).
pub const PSCI_VERSION_1_1: u32 = 0x0001_0001;
/// SMCCC 1.1.
pub const SMCCC_VERSION_1_1: u32 = 0x0001_0001;

/// PSCI return codes.
pub mod ret {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Function not supported.
    pub const NOT_SUPPORTED: i32 = -1;
    /// Invalid parameters.
    pub const INVALID_PARAMETERS: i32 = -2;
    /// Operation denied.
    pub const DENIED: i32 = -3;
    /// The target CPU is already on.
    pub const ALREADY_ON: i32 = -4;
    /// A CPU_ON for the target is still pending.
    pub const ON_PENDING: i32 = -5;
    /// Internal failure.
    pub const INTERNAL_FAILURE: i32 = -6;
    /// Not present.
    pub const NOT_PRESENT: i32 = -7;
    /// Disabled.
    pub const DISABLED: i32 = -8;
    /// Invalid address.
    pub const INVALID_ADDRESS: i32 = -9;
}

/// AFFINITY_INFO results.
pub mod affinity {
    /// The CPU is on.
    pub const ON: u64 = 0;
    /// The CPU is off.
    pub const OFF: u64 = 1;
    /// The CPU is being turned on.
    pub const ON_PENDING: u64 = 2;
}

/// MIGRATE_INFO_TYPE: a trusted OS is not present, no migration needed.
pub const MIGRATE_INFO_TYPE_NOT_PRESENT: u64 = 2;
