//! `vcpu_op` sub-operations and structs (`vcpu.h`). On Arm Xen supports only
//! register_vcpu_info and register_runstate_memory_area (plus is_up style queries).

use super::wire::wire_struct;

/// Initialise a vCPU's context (x86 PV).
pub const VCPUOP_INITIALISE: u64 = 0;
/// Bring a vCPU up.
pub const VCPUOP_UP: u64 = 1;
/// Take a vCPU down.
pub const VCPUOP_DOWN: u64 = 2;
/// Whether a vCPU is up.
pub const VCPUOP_IS_UP: u64 = 3;
/// Copy out a vCPU's runstate.
pub const VCPUOP_GET_RUNSTATE_INFO: u64 = 4;
/// Register a runstate area by guest virtual address.
pub const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
/// Periodic timer.
pub const VCPUOP_SET_PERIODIC_TIMER: u64 = 6;
/// Stop periodic timer.
pub const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
/// One-shot timer.
pub const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;
/// Stop one-shot timer.
pub const VCPUOP_STOP_SINGLESHOT_TIMER: u64 = 9;
/// Place this vCPU's vcpu_info in guest memory.
pub const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;
/// Send an NMI (x86).
pub const VCPUOP_SEND_NMI: u64 = 11;
/// Physical CPU id (privileged).
pub const VCPUOP_GET_PHYSID: u64 = 12;
/// Register a vcpu_time_info area by virtual address.
pub const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u64 = 13;
/// Register a runstate area by guest physical address.
pub const VCPUOP_REGISTER_RUNSTATE_PHYS_AREA: u64 = 14;
/// Register a vcpu_time_info area by guest physical address.
pub const VCPUOP_REGISTER_VCPU_TIME_PHYS_AREA: u64 = 15;

wire_struct! {
    /// VCPUOP_register_vcpu_info argument: the vcpu_info lives at `mfn * 4K + offset`.
    pub struct VcpuRegisterVcpuInfo: 16 {
        /// Guest frame (4 KiB units) holding the vcpu_info.
        pub mfn: u64 = 0,
        /// Byte offset within the frame.
        pub offset: u32 = 8,
        /// Reserved, must be zero.
        pub rsvd: u32 = 12,
    }
}

wire_struct! {
    /// VCPUOP_register_runstate_memory_area argument: a guest *virtual* address (or, for
    /// the `_phys_area` variant, a guest physical address).
    pub struct VcpuRegisterRunstateMemoryArea: 8 {
        /// Address of a `VcpuRunstateInfo`.
        pub addr: u64 = 0,
    }
}

/// VCPUOP_set_singleshot_timer flag: fail with -ETIME if the timeout is already past.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

wire_struct! {
    /// VCPUOP_set_singleshot_timer argument (x86): an absolute system time.
    pub struct VcpuSetSingleshotTimer: 16 {
        /// When the timer fires, in nanoseconds of system time.
        pub timeout_abs_ns: u64 = 0,
        /// `VCPU_SSHOTTMR_*`.
        pub flags: u32 = 8,
    }
}

wire_struct! {
    /// VCPUOP_set_periodic_timer argument (x86).
    pub struct VcpuSetPeriodicTimer: 8 {
        /// The period in nanoseconds.
        pub period_ns: u64 = 0,
    }
}
