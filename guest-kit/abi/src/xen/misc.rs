//! Smaller interfaces: vm_assist, multicall, physdev_op and platform_op numbers.

use super::wire::wire_struct;

/// vm_assist: enable an assist.
pub const VMASST_CMD_ENABLE: u64 = 0;
/// vm_assist: disable an assist.
pub const VMASST_CMD_DISABLE: u64 = 1;
/// The runstate `XEN_RUNSTATE_UPDATE` flag assist (the only one valid on Arm).
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u64 = 5;

/// Most entries one multicall may carry (Mica's bound; Xen preempts instead).
pub const MULTICALL_MAX_ENTRIES: u64 = 64;

wire_struct! {
    /// One multicall entry (64 bytes on Arm).
    pub struct MulticallEntry: 64 {
        /// Hypercall number.
        pub op: u64 = 0,
        /// OUT: the hypercall's return value.
        pub result: u64 = 8,
        /// Arguments.
        pub args: [u64; 6] = 16,
    }
}

/// physdev_op: the hardware domain reports a PCI device.
pub const PHYSDEVOP_PCI_DEVICE_ADD: u64 = 25;
/// physdev_op: a PCI device went away.
pub const PHYSDEVOP_PCI_DEVICE_REMOVE: u64 = 26;
/// physdev_op: legacy PCI add.
pub const PHYSDEVOP_MANAGE_PCI_ADD: u64 = 15;
/// physdev_op: legacy PCI remove.
pub const PHYSDEVOP_MANAGE_PCI_REMOVE: u64 = 16;
/// physdev_op: legacy PCI add with extra info.
pub const PHYSDEVOP_MANAGE_PCI_ADD_EXT: u64 = 20;

/// platform_op: set the wallclock (64-bit seconds).
pub const XENPF_SETTIME64: u32 = 62;
/// platform_op: the interface version every call carries.
pub const XENPF_INTERFACE_VERSION: u32 = 0x0300_0001;
