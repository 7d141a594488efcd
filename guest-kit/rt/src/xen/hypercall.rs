//! Xen hypercalls: one raw `HVC #0xEA1` and a typed wrapper per operation the runtime uses.
//!
//! Convention (arch-arm.h): number in x16, arguments in x0..x4, result in x0 (negative errno on
//! error); x16 and the argument registers may be clobbered. Struct arguments are passed by
//! address; the identity map makes a pointer's value its guest-physical address.

use super::abi::*;
use core::arch::asm;
use core::fmt;

/// A hypercall's negative errno result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenError(pub i64);

impl XenError {
    /// The errno name (Linux/Xen numbering), or "errno" for others.
    pub fn name(self) -> &'static str {
        match -self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            6 => "ENXIO",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            19 => "ENODEV",
            22 => "EINVAL",
            28 => "ENOSPC",
            38 => "ENOSYS",
            _ => "errno",
        }
    }
}

impl fmt::Display for XenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// Issues hypercall `nr` with five arguments and returns x0.
///
/// # Safety
/// Every argument the operation treats as an address must point at memory that is valid for
/// the operation's reads and writes (of the struct or buffer the Xen ABI defines for `nr`) for
/// the duration of the call, and the operation must not change this guest's memory in a way
/// the caller does not expect (mapping over live pages, for example).
unsafe fn raw(nr: u64, a0: u64, a1: u64, a2: u64, a3: u64, a4: u64) -> i64 {
    let ret: u64;
    // SAFETY: the caller upholds the buffer contract above; the asm declares every register
    // Xen may clobber and, lacking `nomem`, acts as a compiler barrier for the buffers.
    unsafe {
        asm!(
            "hvc #0xea1",
            inout("x0") a0 => ret,
            inout("x1") a1 => _,
            inout("x2") a2 => _,
            inout("x3") a3 => _,
            inout("x4") a4 => _,
            inout("x16") nr => _,
            options(nostack),
        );
    }
    ret as i64
}

/// `grant_table_op(cmd, op, count = 1)`: one operation on a live argument struct.
///
/// # Safety
/// `op` must be the struct `cmd` takes, and whatever guest memory it names is the caller's to
/// hand to the hypervisor (a destination it may write, a page it may map or unmap).
unsafe fn grant_table_op<T>(cmd: u64, op: &mut T) -> Result<(), XenError> {
    // SAFETY: `op` is live for the call; the caller vouches for the rest.
    let ret = unsafe { raw(HYPERVISOR_GRANT_TABLE_OP, cmd, op as *mut T as u64, 1, 0, 0) };
    result(ret).map(drop)
}

fn result(ret: i64) -> Result<u64, XenError> {
    if ret < 0 {
        Err(XenError(ret))
    } else {
        Ok(ret as u64)
    }
}

/// A hypercall whose second argument is a pointer to `arg` (memory_op, event_channel_op,
/// sched_op, hvm_op, xen_version, vcpu_op and grant_table_op shapes).
fn with_struct<T>(nr: u64, cmd: u64, arg: &mut T) -> Result<u64, XenError> {
    // SAFETY: `arg` is a live, exclusively borrowed struct; callers pass the struct type the
    // ABI defines for (nr, cmd), so Xen reads and writes only within it. None of the ops used
    // with this helper remaps memory the caller still uses.
    result(unsafe { raw(nr, cmd, arg as *mut T as u64, 0, 0, 0) })
}

/// XENVER_version: (major, minor).
pub fn xen_version() -> Result<(u16, u16), XenError> {
    // SAFETY: XENVER_version takes no buffer (the NULL argument is ignored).
    let raw = result(unsafe { raw(HYPERVISOR_XEN_VERSION, XENVER_VERSION, 0, 0, 0, 0) })?;
    Ok(((raw >> 16) as u16, raw as u16))
}

/// XENVER_extraversion: the version suffix (up to 16 bytes, NUL-padded).
pub fn xen_extraversion() -> Result<[u8; 16], XenError> {
    let mut text = [0u8; 16];
    with_struct(HYPERVISOR_XEN_VERSION, XENVER_EXTRAVERSION, &mut text)?;
    Ok(text)
}

/// XENVER_extraversion written to guest address `addr`, which need not be this guest's RAM:
/// for checking that a hypervisor refuses a buffer it must not write (a device, say).
///
/// # Safety
/// If the hypervisor does write, it writes 16 bytes at `addr`: they must not be memory the
/// caller relies on.
pub unsafe fn xen_extraversion_at(addr: u64) -> Result<u64, XenError> {
    // SAFETY: the caller accepts a 16-byte write at `addr`; XENVER_extraversion touches nothing
    // else.
    result(unsafe { raw(HYPERVISOR_XEN_VERSION, XENVER_EXTRAVERSION, addr, 0, 0, 0) })
}

/// XENVER_get_features: feature submap `index`.
pub fn get_features(index: u32) -> Result<u32, XenError> {
    let mut info = FeatureInfo {
        submap_idx: index,
        submap: 0,
    };
    with_struct(HYPERVISOR_XEN_VERSION, XENVER_GET_FEATURES, &mut info)?;
    Ok(info.submap)
}

/// CONSOLEIO_write: writes `bytes` to the hypervisor console; returns how many were taken.
pub fn console_write(bytes: &[u8]) -> Result<usize, XenError> {
    // SAFETY: Xen reads `bytes.len()` bytes from the live slice.
    let ret = unsafe {
        raw(
            HYPERVISOR_CONSOLE_IO,
            CONSOLEIO_WRITE,
            bytes.len() as u64,
            bytes.as_ptr() as u64,
            0,
            0,
        )
    };
    result(ret).map(|n| n as usize)
}

/// XENMEM_add_to_physmap for this domain: maps `space`/`idx` at guest frame `gpfn`.
///
/// # Safety
/// The guest must not use the RAM page previously at `gpfn` any more (Xen replaces it), and
/// nothing may rely on the old contents of that frame.
pub unsafe fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> Result<(), XenError> {
    let mut arg = AddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn,
    };
    // SAFETY: the caller accepts the remapping of `gpfn`; `arg` is a live struct.
    let ret = unsafe {
        raw(
            HYPERVISOR_MEMORY_OP,
            XENMEM_ADD_TO_PHYSMAP,
            &mut arg as *mut AddToPhysmap as u64,
            0,
            0,
            0,
        )
    };
    result(ret).map(|_| ())
}

/// VCPUOP_register_vcpu_info: Xen keeps `vcpu`'s vcpu_info at `gfn`:`offset` from now on.
///
/// # Safety
/// The 48 bytes at that place must stay reserved for Xen's vcpu_info for the guest's lifetime.
pub unsafe fn register_vcpu_info(vcpu: u32, gfn: u64, offset: u32) -> Result<(), XenError> {
    let mut arg = RegisterVcpuInfo {
        mfn: gfn,
        offset,
        rsvd: 0,
    };
    // SAFETY: `arg` is live; the caller reserves the target area for Xen.
    let ret = unsafe {
        raw(
            HYPERVISOR_VCPU_OP,
            VCPUOP_REGISTER_VCPU_INFO,
            u64::from(vcpu),
            &mut arg as *mut RegisterVcpuInfo as u64,
            0,
            0,
        )
    };
    result(ret).map(|_| ())
}

/// SCHEDOP_yield.
pub fn sched_yield() {
    // SAFETY: yield takes no buffer.
    let _ = unsafe { raw(HYPERVISOR_SCHED_OP, SCHEDOP_YIELD, 0, 0, 0, 0) };
}

/// SCHEDOP_poll: sleeps until one of `ports` is pending (masked or not), an interrupt
/// arrives, or system time reaches `timeout_ns` (0: no timeout). Returns at once if one is
/// already pending.
pub fn sched_poll(ports: &[u32], timeout_ns: u64) -> Result<(), XenError> {
    let nr_ports = u32::try_from(ports.len()).map_err(|_| XenError(-22))?;
    sched_poll_at(ports.as_ptr() as u64, nr_ports, timeout_ns)
}

/// SCHEDOP_poll on `nr_ports` ports at guest address `ports`, which need not be valid (to
/// see the hypervisor refuse a bad list).
pub fn sched_poll_at(ports: u64, nr_ports: u32, timeout_ns: u64) -> Result<(), XenError> {
    let mut arg = SchedPoll {
        ports,
        nr_ports,
        timeout: timeout_ns,
    };
    // SAFETY: `arg` is a live sched_poll the hypervisor only reads, and it only reads the port
    // list: a bad address fails the call (-EFAULT) and changes no guest memory.
    result(unsafe {
        raw(
            HYPERVISOR_SCHED_OP,
            SCHEDOP_POLL,
            &mut arg as *mut SchedPoll as u64,
            0,
            0,
            0,
        )
    })
    .map(|_| ())
}

/// Why the domain stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// Orderly power off (SHUTDOWN_poweroff).
    Poweroff,
    /// Reboot (SHUTDOWN_reboot).
    Reboot,
    /// Crash (SHUTDOWN_crash).
    Crash,
}

impl ShutdownReason {
    fn code(self) -> u32 {
        match self {
            Self::Poweroff => SHUTDOWN_POWEROFF,
            Self::Reboot => SHUTDOWN_REBOOT,
            Self::Crash => SHUTDOWN_CRASH,
        }
    }
}

/// SCHEDOP_shutdown_code: records the reason reported when the domain later shuts down.
pub fn shutdown_code(reason: ShutdownReason) -> Result<(), XenError> {
    let mut arg = SchedShutdown {
        reason: reason.code(),
    };
    with_struct(HYPERVISOR_SCHED_OP, SCHEDOP_SHUTDOWN_CODE, &mut arg).map(|_| ())
}

/// SCHEDOP_shutdown: stops this domain. Returns only on failure.
pub fn shutdown(reason: ShutdownReason) -> XenError {
    let mut arg = SchedShutdown {
        reason: reason.code(),
    };
    match with_struct(HYPERVISOR_SCHED_OP, SCHEDOP_SHUTDOWN, &mut arg) {
        Err(e) => e,
        // Xen does not return from a successful shutdown; a hypervisor that does has failed.
        Ok(_) => XenError(0),
    }
}

/// EVTCHNOP_alloc_unbound: a new port of this domain that `remote` may bind to.
pub fn evtchn_alloc_unbound(remote: DomId) -> Result<u32, XenError> {
    let mut arg = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: remote,
        port: 0,
    };
    with_struct(
        HYPERVISOR_EVENT_CHANNEL_OP,
        EVTCHNOP_ALLOC_UNBOUND,
        &mut arg,
    )?;
    Ok(arg.port)
}

/// EVTCHNOP_bind_interdomain: connects a new local port to `remote`'s unbound `remote_port`.
pub fn evtchn_bind_interdomain(remote: DomId, remote_port: u32) -> Result<u32, XenError> {
    let mut arg = EvtchnBindInterdomain {
        remote_dom: remote,
        remote_port,
        local_port: 0,
    };
    with_struct(
        HYPERVISOR_EVENT_CHANNEL_OP,
        EVTCHNOP_BIND_INTERDOMAIN,
        &mut arg,
    )?;
    Ok(arg.local_port)
}

/// EVTCHNOP_bind_virq: a port for virtual IRQ `virq` delivered to `vcpu`.
pub fn evtchn_bind_virq(virq: u32, vcpu: u32) -> Result<u32, XenError> {
    let mut arg = EvtchnBindVirq {
        virq,
        vcpu,
        port: 0,
    };
    with_struct(HYPERVISOR_EVENT_CHANNEL_OP, EVTCHNOP_BIND_VIRQ, &mut arg)?;
    Ok(arg.port)
}

/// EVTCHNOP_bind_ipi: a port that notifies `vcpu` of this domain.
pub fn evtchn_bind_ipi(vcpu: u32) -> Result<u32, XenError> {
    let mut arg = EvtchnBindIpi { vcpu, port: 0 };
    with_struct(HYPERVISOR_EVENT_CHANNEL_OP, EVTCHNOP_BIND_IPI, &mut arg)?;
    Ok(arg.port)
}

fn port_op(cmd: u64, port: u32) -> Result<(), XenError> {
    let mut arg = EvtchnPort { port };
    with_struct(HYPERVISOR_EVENT_CHANNEL_OP, cmd, &mut arg).map(|_| ())
}

/// EVTCHNOP_send: notifies the other end of `port`.
pub fn evtchn_send(port: u32) -> Result<(), XenError> {
    port_op(EVTCHNOP_SEND, port)
}

/// EVTCHNOP_send with its argument (the port) at guest address `arg`, which need not be
/// valid or aligned (to see the hypervisor read it wherever it is, or refuse it).
pub fn evtchn_send_at(arg: u64) -> Result<(), XenError> {
    // SAFETY: EVTCHNOP_send only reads its argument: a bad address fails the call (-EFAULT)
    // and changes no guest memory.
    result(unsafe { raw(HYPERVISOR_EVENT_CHANNEL_OP, EVTCHNOP_SEND, arg, 0, 0, 0) }).map(|_| ())
}

/// EVTCHNOP_unmask: clears the mask bit and re-raises the event if it is pending.
pub fn evtchn_unmask(port: u32) -> Result<(), XenError> {
    port_op(EVTCHNOP_UNMASK, port)
}

/// EVTCHNOP_close.
pub fn evtchn_close(port: u32) -> Result<(), XenError> {
    port_op(EVTCHNOP_CLOSE, port)
}

/// State of one of this domain's ports (EVTCHNOP_status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortStatus {
    /// EVTCHNSTAT_* value.
    pub status: u32,
    /// vCPU notified.
    pub vcpu: u32,
    /// For unbound ports, the domain allowed to bind; for interdomain ports, the peer.
    pub peer_domain: DomId,
    /// For interdomain ports, the peer's port.
    pub peer_port: u32,
}

/// EVTCHNOP_status for this domain's `port`.
pub fn evtchn_status(port: u32) -> Result<PortStatus, XenError> {
    let mut arg = EvtchnStatus {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    };
    with_struct(HYPERVISOR_EVENT_CHANNEL_OP, EVTCHNOP_STATUS, &mut arg)?;
    Ok(PortStatus {
        status: arg.status,
        vcpu: arg.vcpu,
        peer_domain: arg.u[0] as u16,
        peer_port: arg.u[1],
    })
}

/// GNTTABOP_query_size for this domain: (frames in use, maximum frames).
pub fn gnttab_query_size() -> Result<(u32, u32), XenError> {
    let mut arg = GnttabQuerySize {
        dom: DOMID_SELF,
        ..Default::default()
    };
    // SAFETY: the struct GNTTABOP_QUERY_SIZE takes; it names no guest memory.
    unsafe { grant_table_op(GNTTABOP_QUERY_SIZE, &mut arg)? };
    if arg.status != 0 {
        return Err(XenError(i64::from(arg.status)));
    }
    Ok((arg.nr_frames, arg.max_nr_frames))
}

/// One end of a [`gnttab_copy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyEnd {
    /// A grant reference of `domid`.
    Grant {
        domid: DomId,
        gref: u32,
        offset: u16,
    },
    /// A frame of `domid` (the caller's own with DOMID_SELF).
    Frame { domid: DomId, gfn: u64, offset: u16 },
}

impl CopyEnd {
    fn encode(self) -> (GnttabCopyPtr, bool) {
        match self {
            Self::Grant {
                domid,
                gref,
                offset,
            } => (
                GnttabCopyPtr {
                    u: u64::from(gref),
                    domid,
                    offset,
                },
                true,
            ),
            Self::Frame { domid, gfn, offset } => (
                GnttabCopyPtr {
                    u: gfn,
                    domid,
                    offset,
                },
                false,
            ),
        }
    }
}

/// GNTTABOP_copy of one segment: returns the per-op GNTST_* status (0 = okay), or the
/// hypercall's own error.
///
/// # Safety
/// A destination frame of this domain is written by Xen: it must not hold anything Rust
/// code currently borrows.
pub unsafe fn gnttab_copy(source: CopyEnd, dest: CopyEnd, len: u16) -> Result<i16, XenError> {
    let (source, source_gref) = source.encode();
    let (dest, dest_gref) = dest.encode();
    let mut flags = 0;
    if source_gref {
        flags |= GNTCOPY_SOURCE_GREF;
    }
    if dest_gref {
        flags |= GNTCOPY_DEST_GREF;
    }
    let mut op = GnttabCopy {
        source,
        dest,
        len,
        flags,
        status: 0,
    };
    // SAFETY: the struct GNTTABOP_COPY takes; the caller vouches for the destination frame.
    unsafe { grant_table_op(GNTTABOP_COPY, &mut op)? };
    Ok(op.status)
}

/// What one GNTTABOP_map_grant_ref answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantMapping {
    /// The op's GNTST_* status (0 = okay).
    pub status: i16,
    /// The handle to unmap it with; only meaningful when `status` is okay.
    pub handle: u32,
}

/// GNTTABOP_map_grant_ref of one grant: maps `dom`'s grant `gref` at the guest-physical page
/// `host_addr` (GNTMAP_host_map; with GNTMAP_readonly if `readonly`). Returns the op's status
/// and handle, or the hypercall's own error.
///
/// # Safety
/// If the map succeeds, the hypervisor puts the granted frame at `host_addr` in this guest's
/// physical address space, replacing whatever was there: `host_addr` must be space the guest
/// does not otherwise use (an extended region of the hypervisor node, not RAM it holds data
/// in).
pub unsafe fn gnttab_map_grant_ref(
    dom: DomId,
    gref: u32,
    host_addr: u64,
    readonly: bool,
) -> Result<GrantMapping, XenError> {
    let mut flags = GNTMAP_HOST_MAP;
    if readonly {
        flags |= GNTMAP_READONLY;
    }
    let mut op = GnttabMapGrantRef {
        host_addr,
        flags,
        ref_: gref,
        dom,
        ..Default::default()
    };
    // SAFETY: the struct GNTTABOP_MAP_GRANT_REF takes; the caller vouches for the page at
    // `host_addr`.
    unsafe { grant_table_op(GNTTABOP_MAP_GRANT_REF, &mut op)? };
    Ok(GrantMapping {
        status: op.status,
        handle: op.handle,
    })
}

/// GNTTABOP_unmap_grant_ref of one mapping: removes the grant mapped at `host_addr` with
/// `handle`. Returns the op's GNTST_* status (0 = okay), or the hypercall's own error.
///
/// # Safety
/// If the unmap succeeds, nothing is mapped at `host_addr` any more: nothing may still use
/// that page (no live borrow of it, and no later access until something is mapped again).
pub unsafe fn gnttab_unmap_grant_ref(host_addr: u64, handle: u32) -> Result<i16, XenError> {
    let mut op = GnttabUnmapGrantRef {
        host_addr,
        handle,
        ..Default::default()
    };
    // SAFETY: the struct GNTTABOP_UNMAP_GRANT_REF takes; the caller vouches that the page at
    // `host_addr` is no longer used.
    unsafe { grant_table_op(GNTTABOP_UNMAP_GRANT_REF, &mut op)? };
    Ok(op.status)
}

/// HVMOP_get_param for this domain.
pub fn hvm_get_param(index: u32) -> Result<u64, XenError> {
    let mut arg = HvmParam {
        domid: DOMID_SELF,
        pad: 0,
        index,
        value: 0,
    };
    with_struct(HYPERVISOR_HVM_OP, HVMOP_GET_PARAM, &mut arg)?;
    Ok(arg.value)
}
