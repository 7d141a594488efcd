//! The hypercall dispatcher and the small hypercalls. Each hypercall is one function;
//! unknown numbers and unsupported sub-ops answer `-ENOSYS`.

use super::env::XenEnv;
use super::mem::{read_virt_obj, write_virt_obj, GuestVirtMemory};
use super::{evtchn, gnttab, memory, After, GuestArch, Outcome, Xen};
use crate::exit::ShutdownReason;
use mica_guest_abi::xen::console::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use mica_guest_abi::xen::errno::*;
use mica_guest_abi::xen::features::{self, bit};
use mica_guest_abi::xen::hvm::*;
use mica_guest_abi::xen::misc::*;
use mica_guest_abi::xen::sched::*;
use mica_guest_abi::xen::version::*;
use mica_guest_abi::xen::{DomId, Hypercall, XEN_PAGE_SIZE, XEN_VERSION_MAJOR, XEN_VERSION_MINOR};

/// Everything a hypercall handler may touch.
pub struct HypercallCtx<'a> {
    /// All Xen state (the caller's lock guard).
    pub xen: &'a mut Xen,
    /// The calling domain.
    pub caller: DomId,
    /// The calling vCPU's index in its domain.
    pub vcpu: u32,
    /// The calling vCPU's virtual address space (hypercall argument buffers).
    pub vmem: &'a mut dyn GuestVirtMemory,
    /// Arch-layer services.
    pub env: &'a mut dyn XenEnv,
}

/// Longest CONSOLEIO_write accepted in one call.
pub const CONSOLE_IO_MAX: u64 = 16 * 1024;
/// Most ports one SCHEDOP_poll may name.
pub const POLL_MAX_PORTS: u32 = 128;

/// Handles hypercall `nr` (x16) with arguments x0..x4.
pub fn dispatch(ctx: &mut HypercallCtx<'_>, nr: u64, args: [u64; 5]) -> Outcome {
    dispatch_inner(ctx, nr, args, false)
}

fn dispatch_inner(
    ctx: &mut HypercallCtx<'_>,
    nr: u64,
    args: [u64; 5],
    in_multicall: bool,
) -> Outcome {
    // A domain that is not Xen-aware gets no hypercalls, as on a bare machine.
    if !ctx.xen.domains.contains_key(&ctx.caller) {
        return Outcome::err(ENOSYS);
    }
    let Ok(call) = Hypercall::try_from(nr) else {
        return Outcome::err(ENOSYS);
    };
    // The handlers are kept out of line (`#[inline(never)]`), so this dispatcher stays small
    // and cheap to enter: it is on the path of every hypercall.
    let result = match call {
        Hypercall::XenVersion => xen_version(ctx, args[0], args[1]),
        Hypercall::MemoryOp => memory::memory_op(ctx, args[0], args[1]),
        Hypercall::VcpuOp => memory::vcpu_op(ctx, args[0], args[1], args[2]),
        Hypercall::HvmOp => hvm_op(ctx, args[0], args[1]),
        Hypercall::EventChannelOp => evtchn::event_channel_op(ctx, args[0], args[1]),
        Hypercall::GrantTableOp => gnttab::grant_table_op(ctx, args[0], args[1], args[2]),
        Hypercall::SchedOp => return sched_op(ctx, args[0], args[1]),
        Hypercall::ConsoleIo => console_io(ctx, args[0], args[1], args[2]),
        Hypercall::VmAssist => vm_assist(ctx, args[0], args[1]),
        Hypercall::Multicall if in_multicall => Err(EINVAL),
        Hypercall::Multicall => return multicall(ctx, args[0], args[1]),
        Hypercall::PhysdevOp => physdev_op(ctx, args[0]),
        Hypercall::PlatformOp => platform_op(ctx, args[0]),
        // Toolstack, XSM and device-model interfaces: Mica has no toolstack.
        Hypercall::Sysctl
        | Hypercall::Domctl
        | Hypercall::XsmOp
        | Hypercall::ArgoOp
        | Hypercall::DmOp
        | Hypercall::HypfsOp => Err(ENOSYS),
    };
    match result {
        Ok(v) => Outcome::ret(v),
        Err(e) => Outcome::err(e),
    }
}

fn caller_dom<'x>(ctx: &'x HypercallCtx<'_>) -> Result<&'x super::XenDomain, i32> {
    ctx.xen.domains.get(&ctx.caller).ok_or(ESRCH)
}

/// Writes a NUL-padded string buffer of `len` bytes.
fn write_string(ctx: &mut HypercallCtx<'_>, arg: u64, s: &[u8], len: usize) -> Result<i64, i32> {
    let mut buf = alloc::vec![0u8; len];
    let n = s.len().min(len.saturating_sub(1));
    buf[..n].copy_from_slice(&s[..n]);
    ctx.vmem.write_virt(arg, &buf).map_err(|_| EFAULT)?;
    Ok(0)
}

/// The XENVER_get_features submap 0 for a domain (what Xen reports on the domain's
/// architecture, minus what Mica does not implement: vNUMA memory_op, the runstate
/// phys-area flag).
pub fn feature_bits(arch: GuestArch, privileged: bool, direct_mapped: bool) -> u32 {
    let mut f = bit(features::XENFEAT_WRITABLE_PAGE_TABLES)
        | bit(features::XENFEAT_AUTO_TRANSLATED_PHYSMAP);
    match arch {
        GuestArch::Arm64 => {
            f |= bit(features::XENFEAT_ARM_SMCCC_SUPPORTED);
            f |= if direct_mapped {
                bit(features::XENFEAT_DIRECT_MAPPED)
            } else {
                bit(features::XENFEAT_NOT_DIRECT_MAPPED)
            };
        }
        // Upcalls arrive on the vector of HVM_PARAM_CALLBACK_IRQ; the arch layer keeps
        // vcpu_time_info current (`Xen::publish_vcpu_time`); Xen 4.17 reports
        // not_direct_mapped on x86 too.
        GuestArch::X86_64 => {
            f |= bit(features::XENFEAT_HVM_CALLBACK_VECTOR)
                | bit(features::XENFEAT_HVM_SAFE_PVCLOCK)
                | bit(features::XENFEAT_NOT_DIRECT_MAPPED)
        }
    }
    if privileged {
        f |= bit(features::XENFEAT_DOM0);
    }
    f
}

/// `xen_version(cmd, arg)`.
fn xen_version(ctx: &mut HypercallCtx<'_>, cmd: u64, arg: u64) -> Result<i64, i32> {
    // The version query is what guests poll: answer it before looking anything up.
    if cmd == XENVER_VERSION {
        return Ok(i64::from(XEN_VERSION_MAJOR << 16 | XEN_VERSION_MINOR));
    }
    xen_version_query(ctx, cmd, arg)
}

/// The `xen_version` sub-ops other than the version itself.
// Out of line: see `dispatch_inner`.
#[inline(never)]
fn xen_version_query(ctx: &mut HypercallCtx<'_>, cmd: u64, arg: u64) -> Result<i64, i32> {
    let dom = caller_dom(ctx)?;
    let (privileged, direct, handle) = (dom.privileged, dom.direct_mapped, dom.handle);
    let arch = dom.arch;
    match cmd {
        XENVER_EXTRAVERSION => write_string(ctx, arg, b".0-mica", XEN_EXTRAVERSION_LEN),
        XENVER_COMPILE_INFO => {
            let mut info = CompileInfo::default();
            info.compiler[..5].copy_from_slice(b"rustc");
            info.compile_by[..4].copy_from_slice(b"mica");
            write_virt_obj(ctx.vmem, arg, &info).map_err(|_| EFAULT)?;
            Ok(0)
        }
        XENVER_CAPABILITIES => {
            let caps: &[u8] = match arch {
                GuestArch::Arm64 => b"xen-3.0-aarch64 ",
                GuestArch::X86_64 => b"xen-3.0-x86_64 hvm-3.0-x86_64 ",
            };
            write_string(ctx, arg, caps, XEN_CAPABILITIES_INFO_LEN)
        }
        XENVER_CHANGESET => write_string(ctx, arg, b"mica", XEN_CHANGESET_INFO_LEN),
        XENVER_PLATFORM_PARAMETERS => {
            write_virt_obj(ctx.vmem, arg, &PlatformParameters { virt_start: 0 })
                .map_err(|_| EFAULT)?;
            Ok(0)
        }
        XENVER_GET_FEATURES => {
            let mut fi: FeatureInfo = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            if fi.submap_idx >= features::XENFEAT_NR_SUBMAPS {
                return Err(EINVAL);
            }
            fi.submap = feature_bits(arch, privileged, direct);
            write_virt_obj(ctx.vmem, arg, &fi).map_err(|_| EFAULT)?;
            Ok(0)
        }
        XENVER_PAGESIZE => Ok(XEN_PAGE_SIZE as i64),
        XENVER_GUEST_HANDLE => {
            ctx.vmem.write_virt(arg, &handle).map_err(|_| EFAULT)?;
            Ok(0)
        }
        XENVER_COMMANDLINE if privileged => write_string(ctx, arg, b"", XEN_COMMANDLINE_LEN),
        XENVER_COMMANDLINE => Err(EPERM),
        XENVER_BUILD_ID => Err(ENODATA),
        _ => Err(ENOSYS),
    }
}

/// `hvm_op(op, arg)`: on Arm only get_param/set_param.
// Out of line: see `dispatch_inner`.
#[inline(never)]
fn hvm_op(ctx: &mut HypercallCtx<'_>, op: u64, arg: u64) -> Result<i64, i32> {
    match op {
        HVMOP_GET_PARAM | HVMOP_SET_PARAM => {}
        _ => return Err(ENOSYS),
    }
    let mut p: HvmParam = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
    let target = ctx.xen.target(ctx.caller, p.domid)?;
    if p.index >= HVM_NR_PARAMS {
        return Err(EINVAL);
    }
    let readable = matches!(
        p.index,
        HVM_PARAM_CALLBACK_IRQ
            | HVM_PARAM_STORE_PFN
            | HVM_PARAM_STORE_EVTCHN
            | HVM_PARAM_CONSOLE_PFN
            | HVM_PARAM_CONSOLE_EVTCHN
    );
    if !readable {
        return Err(EINVAL);
    }
    if op == HVMOP_SET_PARAM {
        return set_callback_vector(ctx, target, p.index, p.value).map(|()| 0);
    }
    let dom = ctx.xen.domains.get(&target).ok_or(ESRCH)?;
    p.value = dom.param(p.index).ok_or(EINVAL)?;
    write_virt_obj(ctx.vmem, arg, &p).map_err(|_| EFAULT)?;
    Ok(0)
}

/// Lowest vector an x86 guest may name for its upcall (0-15 are exceptions' and reserved).
const MIN_CALLBACK_VECTOR: u64 = 0x10;

/// HVMOP_set_param. On Arm every parameter is set by Mica's domain builder (the toolstack's
/// job), never by guests. An x86 HVM/PVH guest names its own upcall vector in
/// HVM_PARAM_CALLBACK_IRQ (type 2 there is "vector"), as Linux does; nothing else.
fn set_callback_vector(
    ctx: &mut HypercallCtx<'_>,
    target: DomId,
    index: u32,
    value: u64,
) -> Result<(), i32> {
    let dom = ctx.xen.domains.get_mut(&target).ok_or(ESRCH)?;
    if dom.arch != GuestArch::X86_64 || target != ctx.caller || index != HVM_PARAM_CALLBACK_IRQ {
        return Err(EPERM);
    }
    let kind = value >> HVM_PARAM_CALLBACK_TYPE_SHIFT;
    let vector = value & !(u64::MAX << HVM_PARAM_CALLBACK_TYPE_SHIFT);
    if kind != HVM_PARAM_CALLBACK_TYPE_VECTOR || !(MIN_CALLBACK_VECTOR..=0xff).contains(&vector) {
        return Err(EINVAL);
    }
    let slot = dom.params.get_mut(index as usize).ok_or(EINVAL)?;
    *slot = value;
    Ok(())
}

/// `sched_op(cmd, arg)`.
// Out of line: see `dispatch_inner`.
#[inline(never)]
fn sched_op(ctx: &mut HypercallCtx<'_>, cmd: u64, arg: u64) -> Outcome {
    let done = |after| Outcome { ret: 0, after };
    let read_reason = |ctx: &mut HypercallCtx<'_>| -> Result<u32, i32> {
        let s: SchedShutdown = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
        if s.reason > SHUTDOWN_MAX {
            return Err(EINVAL);
        }
        Ok(s.reason)
    };
    match cmd {
        SCHEDOP_YIELD => done(After::Yield),
        SCHEDOP_BLOCK => done(After::Block),
        SCHEDOP_SHUTDOWN => match read_reason(ctx) {
            Ok(SHUTDOWN_POWEROFF) => done(After::Shutdown(ShutdownReason::PowerOff)),
            Ok(SHUTDOWN_REBOOT) => done(After::Shutdown(ShutdownReason::Reboot)),
            Ok(SHUTDOWN_CRASH | SHUTDOWN_WATCHDOG) => done(After::Shutdown(ShutdownReason::Crash)),
            // Suspend and soft reset need a toolstack to resume or rebuild the domain.
            Ok(_) => Outcome::err(EOPNOTSUPP),
            Err(e) => Outcome::err(e),
        },
        SCHEDOP_SHUTDOWN_CODE => match read_reason(ctx) {
            Ok(reason) => {
                if let Some(d) = ctx.xen.domains.get_mut(&ctx.caller) {
                    d.shutdown_code = Some(reason);
                }
                done(After::Resume)
            }
            Err(e) => Outcome::err(e),
        },
        SCHEDOP_POLL => poll(ctx, arg).unwrap_or_else(Outcome::err),
        SCHEDOP_REMOTE_SHUTDOWN | SCHEDOP_PIN_OVERRIDE => {
            if caller_dom(ctx).is_ok_and(|d| d.privileged) {
                Outcome::err(ENOSYS)
            } else {
                Outcome::err(EPERM)
            }
        }
        _ => Outcome::err(ENOSYS),
    }
}

/// SCHEDOP_poll (Xen's `do_poll`): reads the ports in order, failing on the first that
/// cannot be read (-EFAULT) or is not an allocated port of the caller (-EINVAL), and
/// returning 0 at once at the first pending one (masked or not; later entries are not
/// looked at). Otherwise the vCPU blocks until one of them becomes pending, an interrupt
/// is pending for it, or system time reaches `timeout` (0: no timeout); then it returns 0.
/// A timeout already past (or past 2^63, a negative time to Xen) returns 0 at once.
fn poll(ctx: &mut HypercallCtx<'_>, arg: u64) -> Result<Outcome, i32> {
    let p: SchedPoll = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
    if p.nr_ports > POLL_MAX_PORTS {
        return Err(EINVAL);
    }
    // Bounded by POLL_MAX_PORTS (512 bytes), freed when the poll ends.
    let mut ports = alloc::vec::Vec::with_capacity(p.nr_ports as usize);
    for i in 0..u64::from(p.nr_ports) {
        let at = super::mem::element_addr(p.ports, i, 4).map_err(|_| EFAULT)?;
        let port: u32 = read_virt_obj(ctx.vmem, at).map_err(|_| EFAULT)?;
        if caller_dom(ctx)?.evtchn.state(port).is_none() {
            return Err(EINVAL);
        }
        if evtchn::is_pending(ctx.xen, ctx.caller, port, ctx.env) {
            return Ok(Outcome::ret(0));
        }
        ports.push(port);
    }
    let deadline_ns = (p.timeout != 0).then_some(p.timeout);
    if deadline_ns.is_some_and(|t| t > i64::MAX as u64 || t <= ctx.env.now_ns()) {
        return Ok(Outcome::ret(0));
    }
    let dom = ctx.xen.domains.get_mut(&ctx.caller).ok_or(ESRCH)?;
    if !dom.start_poll(ctx.vcpu, ports) {
        return Err(ESRCH);
    }
    Ok(Outcome {
        ret: 0,
        after: After::BlockPoll { deadline_ns },
    })
}

/// `console_io(cmd, count, buf)`: the hypervisor console, for domains allowed to use it.
// Out of line: see `dispatch_inner`.
#[inline(never)]
fn console_io(ctx: &mut HypercallCtx<'_>, cmd: u64, count: u64, buf: u64) -> Result<i64, i32> {
    if !caller_dom(ctx)?.console_io {
        return Err(EPERM);
    }
    match cmd {
        CONSOLEIO_WRITE => {
            if count > CONSOLE_IO_MAX {
                return Err(E2BIG);
            }
            let mut chunk = [0u8; 256];
            let mut done = 0u64;
            while done < count {
                let n = (count - done).min(chunk.len() as u64) as usize;
                let at = buf.checked_add(done).ok_or(EFAULT)?;
                ctx.vmem
                    .read_virt(at, &mut chunk[..n])
                    .map_err(|_| EFAULT)?;
                ctx.env.console_write(ctx.caller, &chunk[..n]);
                done += n as u64;
            }
            Ok(0)
        }
        CONSOLEIO_READ => {
            let n = (count.min(CONSOLE_IO_MAX) as usize).min(ctx.xen.console_input.len());
            let bytes: alloc::vec::Vec<u8> =
                ctx.xen.console_input.iter().take(n).copied().collect();
            ctx.vmem.write_virt(buf, &bytes).map_err(|_| EFAULT)?;
            ctx.xen.console_input.drain(..n);
            Ok(n as i64)
        }
        _ => Err(ENOSYS),
    }
}

/// `vm_assist(cmd, type)`: only the runstate-update flag exists on Arm.
// Out of line: see `dispatch_inner`.
#[inline(never)]
fn vm_assist(ctx: &mut HypercallCtx<'_>, cmd: u64, kind: u64) -> Result<i64, i32> {
    if kind != VMASST_TYPE_RUNSTATE_UPDATE_FLAG {
        return Err(EINVAL);
    }
    let dom = ctx.xen.domains.get_mut(&ctx.caller).ok_or(ESRCH)?;
    match cmd {
        VMASST_CMD_ENABLE => dom.vm_assist |= 1 << kind,
        VMASST_CMD_DISABLE => dom.vm_assist &= !(1 << kind),
        _ => return Err(ENOSYS),
    }
    Ok(0)
}

/// `multicall(list, nr)`: runs each entry through the dispatcher and stores its result.
/// Stops after an entry that yields, blocks or shuts down (its action is returned).
// Out of line: see `dispatch_inner`.
#[inline(never)]
fn multicall(ctx: &mut HypercallCtx<'_>, list: u64, nr: u64) -> Outcome {
    if nr > MULTICALL_MAX_ENTRIES {
        return Outcome::err(EINVAL);
    }
    let size = core::mem::size_of::<MulticallEntry>() as u64;
    for i in 0..nr {
        let Ok(at) = super::mem::element_addr(list, i, size) else {
            return Outcome::err(EFAULT);
        };
        let Ok(entry) = read_virt_obj::<MulticallEntry, _>(ctx.vmem, at) else {
            return Outcome::err(EFAULT);
        };
        let a = entry.args;
        let out = dispatch_inner(ctx, entry.op, [a[0], a[1], a[2], a[3], a[4]], true);
        let result_at = at.saturating_add(8);
        if write_virt_obj(ctx.vmem, result_at, &(out.ret as u64)).is_err() {
            return Outcome::err(EFAULT);
        }
        if out.after != After::Resume {
            return Outcome {
                ret: 0,
                after: out.after,
            };
        }
    }
    Outcome::ret(0)
}

/// `physdev_op(cmd, arg)`: on Arm only PCI add/remove, which Mica acknowledges for the
/// hardware domain (it does no PCI passthrough, so there is nothing to record).
// Out of line: see `dispatch_inner`.
#[inline(never)]
fn physdev_op(ctx: &mut HypercallCtx<'_>, cmd: u64) -> Result<i64, i32> {
    use mica_guest_abi::xen::misc::{PHYSDEVOP_PCI_DEVICE_ADD, PHYSDEVOP_PCI_DEVICE_REMOVE};
    match cmd {
        PHYSDEVOP_PCI_DEVICE_ADD | PHYSDEVOP_PCI_DEVICE_REMOVE => {
            if caller_dom(ctx)?.privileged {
                Ok(0)
            } else {
                Err(EPERM)
            }
        }
        _ => Err(ENOSYS),
    }
}

/// `platform_op(op)`: XENPF_settime64 from the hardware domain sets every domain's wall
/// clock. The struct is `{u32 cmd; u32 interface_version; union}`; settime64's union is
/// `{u64 secs; u32 nsecs; u32 mbz; u64 system_time}`.
// Out of line: see `dispatch_inner`.
#[inline(never)]
fn platform_op(ctx: &mut HypercallCtx<'_>, arg: u64) -> Result<i64, i32> {
    if !caller_dom(ctx)?.privileged {
        return Err(EPERM);
    }
    let head: [u32; 2] = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
    if head[1] != XENPF_INTERFACE_VERSION {
        return Err(EACCES);
    }
    if head[0] != XENPF_SETTIME64 {
        return Err(ENOSYS);
    }
    let body_at = arg.checked_add(8).ok_or(EFAULT)?;
    let body: [u64; 3] = read_virt_obj(ctx.vmem, body_at).map_err(|_| EFAULT)?;
    let (secs, nsecs, system_time) = (body[0], body[1] as u32, body[2]);
    if nsecs >= 1_000_000_000 || (body[1] >> 32) != 0 {
        return Err(EINVAL);
    }
    // Wall clock at system time 0 = given time - system_time.
    let total = u128::from(secs) * 1_000_000_000 + u128::from(nsecs);
    let base = total.saturating_sub(u128::from(system_time));
    let sec = u64::try_from(base / 1_000_000_000).map_err(|_| EINVAL)?;
    ctx.xen.wallclock = Some((sec, (base % 1_000_000_000) as u32));
    let ids: alloc::vec::Vec<DomId> = ctx.xen.domains.keys().collect();
    for id in ids {
        ctx.xen.write_wallclock(id, ctx.env);
    }
    Ok(0)
}
