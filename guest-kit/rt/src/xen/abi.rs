//! The Xen ABI numbers and structs the runtime uses (`xen/include/public`, Arm layouts).
//!
//! TODO(xenabi): switch to `mica_guest_abi::xen` once it lands on main; these are private
//! copies so the runtime builds before that, and the layout asserts below pin them.

#![allow(dead_code)]

use core::mem::{offset_of, size_of};

pub type DomId = u16;
pub const DOMID_SELF: DomId = 0x7FF0;

// Hypercall numbers (xen.h).
pub const HYPERVISOR_MEMORY_OP: u64 = 12;
pub const HYPERVISOR_XEN_VERSION: u64 = 17;
pub const HYPERVISOR_CONSOLE_IO: u64 = 18;
pub const HYPERVISOR_GRANT_TABLE_OP: u64 = 20;
pub const HYPERVISOR_VCPU_OP: u64 = 24;
pub const HYPERVISOR_SCHED_OP: u64 = 29;
pub const HYPERVISOR_EVENT_CHANNEL_OP: u64 = 32;
pub const HYPERVISOR_HVM_OP: u64 = 34;

// xen_version sub-ops (version.h).
pub const XENVER_VERSION: u64 = 0;
pub const XENVER_EXTRAVERSION: u64 = 1;
pub const XENVER_GET_FEATURES: u64 = 6;

// Feature bits of submap 0 (features.h).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
pub const XENFEAT_DOM0: u32 = 11;
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;

// console_io sub-ops.
pub const CONSOLEIO_WRITE: u64 = 0;

// memory_op.
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;

// vcpu_op.
pub const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;

// sched_op.
pub const SCHEDOP_YIELD: u64 = 0;
pub const SCHEDOP_SHUTDOWN: u64 = 2;
pub const SCHEDOP_SHUTDOWN_CODE: u64 = 5;
pub const SHUTDOWN_POWEROFF: u32 = 0;
pub const SHUTDOWN_REBOOT: u32 = 1;
pub const SHUTDOWN_CRASH: u32 = 3;

// event_channel_op.
pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
pub const EVTCHNOP_BIND_VIRQ: u64 = 1;
pub const EVTCHNOP_CLOSE: u64 = 3;
pub const EVTCHNOP_SEND: u64 = 4;
pub const EVTCHNOP_STATUS: u64 = 5;
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
pub const EVTCHNOP_BIND_IPI: u64 = 7;
pub const EVTCHNOP_UNMASK: u64 = 9;
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
pub const EVTCHN_2L_NR_CHANNELS: u32 = 4096;

// grant_table_op.
pub const GNTTABOP_COPY: u64 = 5;
pub const GNTTABOP_QUERY_SIZE: u64 = 6;
pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_READONLY: u16 = 1 << 2;
pub const GTF_READING: u16 = 1 << 3;
pub const GTF_WRITING: u16 = 1 << 4;
pub const GNTCOPY_SOURCE_GREF: u16 = 1;
pub const GNTCOPY_DEST_GREF: u16 = 2;
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;

// hvm_op.
pub const HVMOP_GET_PARAM: u64 = 1;
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FeatureInfo {
    pub submap_idx: u32,
    pub submap: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct AddToPhysmap {
    pub domid: DomId,
    pub size: u16,
    pub space: u32,
    pub idx: u64,
    pub gpfn: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterVcpuInfo {
    pub mfn: u64,
    pub offset: u32,
    pub rsvd: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SchedShutdown {
    pub reason: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnAllocUnbound {
    pub dom: DomId,
    pub remote_dom: DomId,
    pub port: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnBindInterdomain {
    pub remote_dom: DomId,
    pub remote_port: u32,
    pub local_port: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnBindVirq {
    pub virq: u32,
    pub vcpu: u32,
    pub port: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnBindIpi {
    pub vcpu: u32,
    pub port: u32,
}

/// The `{u32 port}` argument of close, send and unmask.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnPort {
    pub port: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EvtchnStatus {
    pub dom: DomId,
    pub port: u32,
    pub status: u32,
    pub vcpu: u32,
    /// unbound: {u16 dom}; interdomain: {u16 dom, u32 port @4}; virq/pirq/ipi: u32.
    pub u: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GnttabQuerySize {
    pub dom: DomId,
    pub nr_frames: u32,
    pub max_nr_frames: u32,
    pub status: i16,
}

/// One side of a grant copy: a grant reference or a frame number, by `flags`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GnttabCopyPtr {
    /// `u32 ref` or `u64 gmfn`.
    pub u: u64,
    pub domid: DomId,
    pub offset: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GnttabCopy {
    pub source: GnttabCopyPtr,
    pub dest: GnttabCopyPtr,
    pub len: u16,
    pub flags: u16,
    pub status: i16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GrantEntryV1 {
    pub flags: u16,
    pub domid: DomId,
    pub frame: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HvmParam {
    pub domid: DomId,
    pub pad: u16,
    pub index: u32,
    pub value: u64,
}

#[repr(C)]
pub struct VcpuInfo {
    pub evtchn_upcall_pending: u8,
    pub evtchn_upcall_mask: u8,
    pub pad: [u8; 6],
    pub evtchn_pending_sel: u64,
    pub time: [u64; 4],
}

#[repr(C)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; 1],
    pub evtchn_pending: [u64; 64],
    pub evtchn_mask: [u64; 64],
    pub wc_version: u32,
    pub wc_sec: u32,
    pub wc_nsec: u32,
    pub wc_sec_hi: u32,
}

/// The PV console ring page (io/console.h).
#[repr(C)]
pub struct ConsoleInterface {
    pub input: [u8; 1024],
    pub output: [u8; 2048],
    pub in_cons: u32,
    pub in_prod: u32,
    pub out_cons: u32,
    pub out_prod: u32,
}

const _: () = {
    assert!(size_of::<AddToPhysmap>() == 24);
    assert!(size_of::<RegisterVcpuInfo>() == 16);
    assert!(size_of::<EvtchnAllocUnbound>() == 8);
    assert!(size_of::<EvtchnBindInterdomain>() == 12);
    assert!(offset_of!(EvtchnBindInterdomain, remote_port) == 4);
    assert!(size_of::<EvtchnStatus>() == 24);
    assert!(offset_of!(EvtchnStatus, u) == 16);
    assert!(size_of::<GnttabQuerySize>() == 16);
    assert!(offset_of!(GnttabQuerySize, status) == 12);
    assert!(size_of::<GnttabCopyPtr>() == 16);
    assert!(size_of::<GnttabCopy>() == 40);
    assert!(offset_of!(GnttabCopy, len) == 32);
    assert!(offset_of!(GnttabCopy, status) == 36);
    assert!(size_of::<GrantEntryV1>() == 8);
    assert!(size_of::<HvmParam>() == 16);
    assert!(size_of::<VcpuInfo>() == 48);
    assert!(size_of::<SharedInfo>() == 1088);
    assert!(offset_of!(SharedInfo, evtchn_pending) == 48);
    assert!(offset_of!(SharedInfo, evtchn_mask) == 560);
    assert!(offset_of!(SharedInfo, wc_version) == 1072);
    assert!(offset_of!(ConsoleInterface, in_cons) == 3072);
    assert!(offset_of!(ConsoleInterface, out_prod) == 3084);
};
