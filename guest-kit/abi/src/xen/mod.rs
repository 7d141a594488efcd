//! The Xen guest ABI on Arm, as Xen's public headers define it (`xen/include/public`):
//! hypercall numbers, sub-operations, error numbers and the structs passed through guest
//! memory, with their exact little-endian layouts.
//!
//! Calling convention (AArch64): `HVC #0xEA1` ([`XEN_HYPERCALL_TAG`]), hypercall number in
//! x16, arguments in x0..x4, result in x0 (a negated [`errno`] value on error). Structs are
//! passed by guest-physical address and use AAPCS64 layout on every guest.

pub mod console;
pub mod errno;
pub mod evtchn;
pub mod features;
pub mod gnttab;
pub mod hvm;
pub mod memory;
pub mod misc;
pub mod sched;
pub mod shared;
pub mod vcpu;
pub mod version;
pub mod wire;

pub use wire::Wire;

/// The immediate of the `HVC` instruction that makes a Xen hypercall.
pub const XEN_HYPERCALL_TAG: u16 = 0xEA1;

/// Xen's page size: every frame number in the ABI counts 4 KiB frames, whatever page size
/// the guest kernel uses.
pub const XEN_PAGE_SIZE: u64 = 4096;
/// log2 of [`XEN_PAGE_SIZE`].
pub const XEN_PAGE_SHIFT: u32 = 12;

/// A domain identifier.
pub type DomId = u16;
/// First domain id with a special meaning.
pub const DOMID_FIRST_RESERVED: DomId = 0x7FF0;
/// "The calling domain".
pub const DOMID_SELF: DomId = 0x7FF0;
/// The I/O pseudo-domain.
pub const DOMID_IO: DomId = 0x7FF1;
/// The hypervisor itself.
pub const DOMID_XEN: DomId = 0x7FF2;
/// Copy-on-write pseudo-domain.
pub const DOMID_COW: DomId = 0x7FF3;
/// No domain.
pub const DOMID_INVALID: DomId = 0x7FF4;
/// Any domain (e.g. an unbound port open to anyone).
pub const DOMID_ANY: DomId = 0x7FF5;
/// The idle domain.
pub const DOMID_IDLE: DomId = 0x7FFF;

/// Event-channel port number.
pub type EvtchnPort = u32;
/// Grant reference.
pub type GrantRef = u32;
/// Grant handle returned by a map operation.
pub type GrantHandle = u32;

/// The Xen version Mica reports to guests (XENVER_version and the DT compatible string).
pub const XEN_VERSION_MAJOR: u32 = 4;
/// Minor part of the reported version.
pub const XEN_VERSION_MINOR: u32 = 17;
/// The `compatible` string of the device tree's `hypervisor` node.
pub const DT_HYPERVISOR_COMPATIBLE: &str = "xen,xen-4.17";

/// Hypercall numbers (`xen.h`). Only those that exist on Arm are listed; anything else
/// fails [`Hypercall::try_from`] and a hypervisor answers `-ENOSYS`.
#[repr(u64)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Hypercall {
    /// Platform operations (dom0: settime, EFI runtime).
    PlatformOp = 7,
    /// Memory reservation and physmap operations.
    MemoryOp = 12,
    /// A batch of hypercalls.
    Multicall = 13,
    /// Version and feature queries.
    XenVersion = 17,
    /// Hypervisor console read/write.
    ConsoleIo = 18,
    /// Grant-table operations.
    GrantTableOp = 20,
    /// VM assists.
    VmAssist = 21,
    /// Per-vCPU operations.
    VcpuOp = 24,
    /// XSM/Flask.
    XsmOp = 27,
    /// Scheduler operations.
    SchedOp = 29,
    /// Event-channel operations.
    EventChannelOp = 32,
    /// Physical device operations (PCI add/remove on Arm).
    PhysdevOp = 33,
    /// HVM operations (params on Arm).
    HvmOp = 34,
    /// System control (toolstack).
    Sysctl = 35,
    /// Domain control (toolstack).
    Domctl = 36,
    /// Argo inter-domain messaging.
    ArgoOp = 39,
    /// Device-model operations.
    DmOp = 41,
    /// Hypervisor filesystem.
    HypfsOp = 42,
}

impl TryFrom<u64> for Hypercall {
    type Error = u64;
    fn try_from(nr: u64) -> Result<Self, u64> {
        Ok(match nr {
            7 => Self::PlatformOp,
            12 => Self::MemoryOp,
            13 => Self::Multicall,
            17 => Self::XenVersion,
            18 => Self::ConsoleIo,
            20 => Self::GrantTableOp,
            21 => Self::VmAssist,
            24 => Self::VcpuOp,
            27 => Self::XsmOp,
            29 => Self::SchedOp,
            32 => Self::EventChannelOp,
            33 => Self::PhysdevOp,
            34 => Self::HvmOp,
            35 => Self::Sysctl,
            36 => Self::Domctl,
            39 => Self::ArgoOp,
            41 => Self::DmOp,
            42 => Self::HypfsOp,
            other => return Err(other),
        })
    }
}

impl Hypercall {
    /// Every hypercall number in the enum.
    pub const ALL: [Hypercall; 18] = [
        Self::PlatformOp,
        Self::MemoryOp,
        Self::Multicall,
        Self::XenVersion,
        Self::ConsoleIo,
        Self::GrantTableOp,
        Self::VmAssist,
        Self::VcpuOp,
        Self::XsmOp,
        Self::SchedOp,
        Self::EventChannelOp,
        Self::PhysdevOp,
        Self::HvmOp,
        Self::Sysctl,
        Self::Domctl,
        Self::ArgoOp,
        Self::DmOp,
        Self::HypfsOp,
    ];

    /// The number passed in x16.
    pub const fn nr(self) -> u64 {
        self as u64
    }

    /// How many argument registers the hypercall uses (x0..); the rest are preserved.
    pub const fn arg_count(self) -> usize {
        match self {
            Self::PlatformOp | Self::Sysctl | Self::Domctl | Self::XsmOp => 1,
            Self::ConsoleIo | Self::GrantTableOp | Self::VcpuOp | Self::DmOp => 3,
            Self::ArgoOp | Self::HypfsOp => 5,
            _ => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_numbers_round_trip() {
        for h in Hypercall::ALL {
            assert_eq!(Hypercall::try_from(h.nr()), Ok(h));
        }
        assert_eq!(Hypercall::MemoryOp.nr(), 12);
        assert_eq!(Hypercall::EventChannelOp.nr(), 32);
        assert_eq!(Hypercall::try_from(0), Err(0));
        assert_eq!(Hypercall::try_from(6), Err(6)); // sched_op_compat: not on Arm
        assert_eq!(Hypercall::try_from(u64::MAX), Err(u64::MAX));
    }

    #[test]
    fn constants() {
        assert_eq!(XEN_HYPERCALL_TAG, 0xEA1);
        assert_eq!(DOMID_SELF, 0x7FF0);
        assert_eq!(Hypercall::VcpuOp.arg_count(), 3);
        assert_eq!(Hypercall::SchedOp.arg_count(), 2);
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use core::mem::size_of;

    /// Sizes from compiling Xen's public headers for Arm (also asserted at compile time).
    #[test]
    fn struct_sizes_match_xen() {
        assert_eq!(size_of::<shared::VcpuTimeInfo>(), 32);
        assert_eq!(size_of::<shared::VcpuInfo>(), 48);
        assert_eq!(size_of::<shared::SharedInfo>(), 1088);
        assert_eq!(size_of::<shared::VcpuRunstateInfo>(), 48);
        assert_eq!(size_of::<memory::AddToPhysmap>(), 24);
        assert_eq!(size_of::<memory::AddToPhysmapBatch>(), 32);
        assert_eq!(size_of::<memory::MemoryReservation>(), 32);
        assert_eq!(size_of::<vcpu::VcpuRegisterVcpuInfo>(), 16);
        assert_eq!(size_of::<hvm::HvmParam>(), 16);
        assert_eq!(size_of::<evtchn::EvtchnAllocUnbound>(), 8);
        assert_eq!(size_of::<evtchn::EvtchnBindInterdomain>(), 12);
        assert_eq!(size_of::<evtchn::EvtchnBindVirq>(), 12);
        assert_eq!(size_of::<evtchn::EvtchnStatus>(), 24);
        assert_eq!(size_of::<evtchn::EvtchnInitControl>(), 24);
        assert_eq!(size_of::<gnttab::GrantEntryV1>(), 8);
        assert_eq!(size_of::<gnttab::GnttabMapGrantRef>(), 32);
        assert_eq!(size_of::<gnttab::GnttabUnmapGrantRef>(), 24);
        assert_eq!(size_of::<gnttab::GnttabSetupTable>(), 24);
        assert_eq!(size_of::<gnttab::GnttabCopy>(), 40);
        assert_eq!(size_of::<gnttab::GnttabQuerySize>(), 16);
        assert_eq!(size_of::<sched::SchedPoll>(), 24);
        assert_eq!(size_of::<console::XenconsInterface>(), 3092);
        assert_eq!(console::XENCONS_OUT_PROD, 3084);
        assert_eq!(size_of::<console::XenstoreDomainInterface>(), 2076);
        assert_eq!(size_of::<misc::MulticallEntry>(), 64);
        assert_eq!(size_of::<version::CompileInfo>(), 144);
    }

    #[test]
    fn decode_of_short_buffer_fails_cleanly() {
        assert!(gnttab::GnttabCopy::decode(&[0u8; 39]).is_none());
        let mut c = gnttab::GnttabCopy::default();
        c.dest.offset = 0x123;
        c.status = -10;
        let mut buf = [0u8; 40];
        c.encode(&mut buf).unwrap();
        assert_eq!(&buf[26..28], &[0x23, 0x01]);
        assert_eq!(&buf[36..38], &(-10i16).to_le_bytes());
        assert_eq!(gnttab::GnttabCopy::decode(&buf), Some(c));
    }
}
