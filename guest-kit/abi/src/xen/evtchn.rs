//! `event_channel_op` sub-operations, VIRQs and structs (`event_channel.h`, `xen.h`).

use super::wire::wire_struct;
use super::{DomId, EvtchnPort};

/// Connect to a remote domain's unbound port.
pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
/// Bind a virtual IRQ.
pub const EVTCHNOP_BIND_VIRQ: u64 = 1;
/// Bind a physical IRQ (x86).
pub const EVTCHNOP_BIND_PIRQ: u64 = 2;
/// Close a port.
pub const EVTCHNOP_CLOSE: u64 = 3;
/// Notify the other end.
pub const EVTCHNOP_SEND: u64 = 4;
/// Query a port.
pub const EVTCHNOP_STATUS: u64 = 5;
/// Allocate a port a remote domain may bind to.
pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
/// Bind an inter-vCPU IPI.
pub const EVTCHNOP_BIND_IPI: u64 = 7;
/// Change the vCPU a port notifies.
pub const EVTCHNOP_BIND_VCPU: u64 = 8;
/// Unmask a port (and re-deliver if pending).
pub const EVTCHNOP_UNMASK: u64 = 9;
/// Close all ports of a domain.
pub const EVTCHNOP_RESET: u64 = 10;
/// Switch to the FIFO ABI.
pub const EVTCHNOP_INIT_CONTROL: u64 = 11;
/// Add a FIFO event-array page.
pub const EVTCHNOP_EXPAND_ARRAY: u64 = 12;
/// Set a FIFO port priority.
pub const EVTCHNOP_SET_PRIORITY: u64 = 13;
/// Reset, and also tear down the FIFO control blocks.
pub const EVTCHNOP_RESET_CONT: u64 = 14;

/// Per-vCPU timer.
pub const VIRQ_TIMER: u32 = 0;
/// Debug request.
pub const VIRQ_DEBUG: u32 = 1;
/// Hypervisor console input available (hardware domain).
pub const VIRQ_CONSOLE: u32 = 2;
/// A domain has exited (hardware domain).
pub const VIRQ_DOM_EXC: u32 = 3;
/// Trace buffer.
pub const VIRQ_TBUF: u32 = 4;
/// Debugger.
pub const VIRQ_DEBUGGER: u32 = 6;
/// Profiler.
pub const VIRQ_XENOPROF: u32 = 7;
/// Console ring has data.
pub const VIRQ_CON_RING: u32 = 8;
/// Physical CPU state changed.
pub const VIRQ_PCPU_STATE: u32 = 9;
/// Memory event.
pub const VIRQ_MEM_EVENT: u32 = 10;
/// Argo.
pub const VIRQ_ARGO: u32 = 11;
/// Hypervisor low on memory.
pub const VIRQ_ENOMEM: u32 = 12;
/// PMU.
pub const VIRQ_XENPMU: u32 = 13;
/// First architecture-specific VIRQ.
pub const VIRQ_ARCH_0: u32 = 16;
/// Number of VIRQs.
pub const NR_VIRQS: u32 = 24;

/// EVTCHNOP_status: port is free.
pub const EVTCHNSTAT_CLOSED: u32 = 0;
/// EVTCHNOP_status: allocated, waiting for a remote bind.
pub const EVTCHNSTAT_UNBOUND: u32 = 1;
/// EVTCHNOP_status: connected to a remote port.
pub const EVTCHNSTAT_INTERDOMAIN: u32 = 2;
/// EVTCHNOP_status: bound to a physical IRQ.
pub const EVTCHNSTAT_PIRQ: u32 = 3;
/// EVTCHNOP_status: bound to a VIRQ.
pub const EVTCHNSTAT_VIRQ: u32 = 4;
/// EVTCHNOP_status: bound to an IPI.
pub const EVTCHNSTAT_IPI: u32 = 5;

wire_struct! {
    /// EVTCHNOP_alloc_unbound.
    pub struct EvtchnAllocUnbound: 8 {
        /// Domain that owns the new port (DOMID_SELF unless privileged).
        pub dom: DomId = 0,
        /// Domain allowed to bind to it.
        pub remote_dom: DomId = 2,
        /// OUT: the new port.
        pub port: EvtchnPort = 4,
    }
}

wire_struct! {
    /// EVTCHNOP_bind_interdomain.
    pub struct EvtchnBindInterdomain: 12 {
        /// Remote domain.
        pub remote_dom: DomId = 0,
        /// Remote unbound port.
        pub remote_port: EvtchnPort = 4,
        /// OUT: local port.
        pub local_port: EvtchnPort = 8,
    }
}

wire_struct! {
    /// EVTCHNOP_bind_virq.
    pub struct EvtchnBindVirq: 12 {
        /// `VIRQ_*`.
        pub virq: u32 = 0,
        /// vCPU to notify.
        pub vcpu: u32 = 4,
        /// OUT: port.
        pub port: EvtchnPort = 8,
    }
}

wire_struct! {
    /// EVTCHNOP_bind_ipi.
    pub struct EvtchnBindIpi: 8 {
        /// vCPU to notify.
        pub vcpu: u32 = 0,
        /// OUT: port.
        pub port: EvtchnPort = 4,
    }
}

wire_struct! {
    /// EVTCHNOP_close, EVTCHNOP_send and EVTCHNOP_unmask: a single port.
    pub struct EvtchnPortArg: 4 {
        /// Port.
        pub port: EvtchnPort = 0,
    }
}

wire_struct! {
    /// EVTCHNOP_status (24 bytes). `u` depends on `status`: unbound → `u[0]` = remote
    /// domid; interdomain → `u[0]` = remote domid, `u[1]` = remote port; virq → `u[0]`.
    pub struct EvtchnStatus: 24 {
        /// Domain to query (DOMID_SELF unless privileged).
        pub dom: DomId = 0,
        /// Port to query.
        pub port: EvtchnPort = 4,
        /// OUT: `EVTCHNSTAT_*`.
        pub status: u32 = 8,
        /// OUT: vCPU notified.
        pub vcpu: u32 = 12,
        /// OUT: status-specific union, as two words.
        pub u: [u32; 2] = 16,
    }
}

wire_struct! {
    /// EVTCHNOP_bind_vcpu.
    pub struct EvtchnBindVcpu: 8 {
        /// Port.
        pub port: EvtchnPort = 0,
        /// New vCPU to notify.
        pub vcpu: u32 = 4,
    }
}

wire_struct! {
    /// EVTCHNOP_reset.
    pub struct EvtchnReset: 2 {
        /// Domain (DOMID_SELF unless privileged).
        pub dom: DomId = 0,
    }
}

wire_struct! {
    /// EVTCHNOP_init_control (FIFO).
    pub struct EvtchnInitControl: 24 {
        /// Guest frame of the control block.
        pub control_gfn: u64 = 0,
        /// Offset of the control block in the frame.
        pub offset: u32 = 8,
        /// vCPU.
        pub vcpu: u32 = 12,
        /// OUT: link bits (17).
        pub link_bits: u8 = 16,
        /// Padding.
        pub pad: [u8; 7] = 17,
    }
}

wire_struct! {
    /// EVTCHNOP_expand_array (FIFO).
    pub struct EvtchnExpandArray: 8 {
        /// Guest frame of the new event-array page.
        pub array_gfn: u64 = 0,
    }
}

wire_struct! {
    /// EVTCHNOP_set_priority (FIFO).
    pub struct EvtchnSetPriority: 8 {
        /// Port.
        pub port: EvtchnPort = 0,
        /// Priority 0 (highest) ..15.
        pub priority: u32 = 4,
    }
}
