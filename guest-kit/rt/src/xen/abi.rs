//! The Xen ABI items the runtime uses, from `mica_guest_abi::xen` (shared with Mica, so the
//! guest and the hypervisor cannot disagree), under the names this module's code uses.

use mica_guest_abi::xen::Hypercall;

pub use mica_guest_abi::xen::console::{XenconsInterface as ConsoleInterface, CONSOLEIO_WRITE};
pub use mica_guest_abi::xen::evtchn::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindIpi, EvtchnBindVirq,
    EvtchnPortArg as EvtchnPort, EvtchnStatus, EVTCHNOP_ALLOC_UNBOUND, EVTCHNOP_BIND_INTERDOMAIN,
    EVTCHNOP_BIND_IPI, EVTCHNOP_BIND_VIRQ, EVTCHNOP_CLOSE, EVTCHNOP_SEND, EVTCHNOP_STATUS,
    EVTCHNOP_UNMASK, EVTCHNSTAT_INTERDOMAIN, EVTCHNSTAT_UNBOUND,
};
pub use mica_guest_abi::xen::features::{
    XENFEAT_AUTO_TRANSLATED_PHYSMAP, XENFEAT_DIRECT_MAPPED, XENFEAT_DOM0,
};
pub use mica_guest_abi::xen::gnttab::{
    GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabQuerySize, GnttabUnmapGrantRef,
    GrantEntryV1, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_HOST_MAP, GNTMAP_READONLY,
    GNTTABOP_COPY, GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE, GNTTABOP_UNMAP_GRANT_REF,
    GNTTAB_NR_RESERVED_ENTRIES, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING,
};
pub use mica_guest_abi::xen::hvm::{
    HvmParam, HVMOP_GET_PARAM, HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN,
};
pub use mica_guest_abi::xen::memory::{
    AddToPhysmap, XENMAPSPACE_GRANT_TABLE, XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP,
};
pub use mica_guest_abi::xen::sched::{
    SchedPoll, SchedShutdown, SCHEDOP_POLL, SCHEDOP_SHUTDOWN, SCHEDOP_SHUTDOWN_CODE, SCHEDOP_YIELD,
    SHUTDOWN_CRASH, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT,
};
pub use mica_guest_abi::xen::shared::{SharedInfo, VcpuInfo, EVTCHN_2L_NR_CHANNELS};
pub use mica_guest_abi::xen::vcpu::{
    VcpuRegisterVcpuInfo as RegisterVcpuInfo, VCPUOP_REGISTER_VCPU_INFO,
};
pub use mica_guest_abi::xen::version::{
    FeatureInfo, XENVER_EXTRAVERSION, XENVER_GET_FEATURES, XENVER_VERSION,
};
pub use mica_guest_abi::xen::{DomId, DOMID_SELF};

pub const HYPERVISOR_MEMORY_OP: u64 = Hypercall::MemoryOp.nr();
pub const HYPERVISOR_XEN_VERSION: u64 = Hypercall::XenVersion.nr();
pub const HYPERVISOR_CONSOLE_IO: u64 = Hypercall::ConsoleIo.nr();
pub const HYPERVISOR_GRANT_TABLE_OP: u64 = Hypercall::GrantTableOp.nr();
pub const HYPERVISOR_VCPU_OP: u64 = Hypercall::VcpuOp.nr();
pub const HYPERVISOR_SCHED_OP: u64 = Hypercall::SchedOp.nr();
pub const HYPERVISOR_EVENT_CHANNEL_OP: u64 = Hypercall::EventChannelOp.nr();
pub const HYPERVISOR_HVM_OP: u64 = Hypercall::HvmOp.nr();
