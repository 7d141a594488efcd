//! `memory_op` (placing shared_info and grant frames in the physmap) and `vcpu_op`
//! (vcpu_info and runstate areas).

use super::env::SpecialPage;
use super::hypercall::HypercallCtx;
use super::mem::{
    self, element_addr, frame_addr, read_obj, read_virt_obj, write_obj, write_virt_obj,
};
use super::{evtchn, Xen, XenEnv};
use crate::addr::GuestPhysAddr;
use mica_guest_abi::xen::errno::*;
use mica_guest_abi::xen::memory::*;
use mica_guest_abi::xen::shared::{VcpuInfo, SHARED_INFO_VCPU_INFO};
use mica_guest_abi::xen::vcpu::*;
use mica_guest_abi::xen::DomId;

/// Most entries in one XENMEM_add_to_physmap_batch.
pub const ADD_TO_PHYSMAP_BATCH_MAX: u16 = 1024;

/// `memory_op(cmd, arg)`.
// Out of line: see `dispatch_inner`.
#[inline(never)]
pub(crate) fn memory_op(ctx: &mut HypercallCtx<'_>, cmd: u64, arg: u64) -> Result<i64, i32> {
    // Mica never preempts, so a continuation extent in the high bits is meaningless.
    if cmd >> MEMOP_EXTENT_SHIFT != 0 {
        return Err(EINVAL);
    }
    match cmd & MEMOP_CMD_MASK {
        XENMEM_ADD_TO_PHYSMAP => {
            let op: AddToPhysmap = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let target = ctx.xen.target(ctx.caller, op.domid)?;
            if target != ctx.caller {
                return Err(EPERM);
            }
            add_to_physmap_one(ctx.xen, target, op.space, op.idx, op.gpfn, ctx.env)?;
            Ok(0)
        }
        XENMEM_ADD_TO_PHYSMAP_BATCH => {
            let op: AddToPhysmapBatch = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let target = ctx.xen.target(ctx.caller, op.domid)?;
            if target != ctx.caller {
                return Err(EPERM);
            }
            if op.size > ADD_TO_PHYSMAP_BATCH_MAX {
                return Err(E2BIG);
            }
            if u32::from(op.space) == XENMAPSPACE_GMFN_RANGE {
                return Err(EOPNOTSUPP);
            }
            for i in 0..u64::from(op.size) {
                let idx_at = element_addr(op.idxs, i, 8).map_err(|_| EFAULT)?;
                let gpfn_at = element_addr(op.gpfns, i, 8).map_err(|_| EFAULT)?;
                let err_at = element_addr(op.errs, i, 4).map_err(|_| EFAULT)?;
                let idx: u64 = read_virt_obj(ctx.vmem, idx_at).map_err(|_| EFAULT)?;
                let gpfn: u64 = read_virt_obj(ctx.vmem, gpfn_at).map_err(|_| EFAULT)?;
                let rc = match add_to_physmap_one(
                    ctx.xen,
                    target,
                    u32::from(op.space),
                    idx,
                    gpfn,
                    ctx.env,
                ) {
                    Ok(()) => 0i32,
                    Err(e) => -e,
                };
                mem::write_virt_obj(ctx.vmem, err_at, &rc).map_err(|_| EFAULT)?;
            }
            Ok(0)
        }
        XENMEM_REMOVE_FROM_PHYSMAP => {
            let op: RemoveFromPhysmap = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let target = ctx.xen.target(ctx.caller, op.domid)?;
            if target != ctx.caller {
                return Err(EPERM);
            }
            remove_special_page(ctx.xen, target, op.gpfn, ctx.env)
                .then_some(0)
                .ok_or(ENOENT)
        }
        // Memory is statically partitioned: no ballooning, no populate-on-demand, no
        // foreign or vNUMA queries.
        _ => Err(ENOSYS),
    }
}

/// Maps one hypervisor page of `space`/`idx` at `gpfn` of `domid`.
fn add_to_physmap_one(
    xen: &mut Xen,
    domid: DomId,
    space: u32,
    idx: u64,
    gpfn: u64,
    env: &mut dyn XenEnv,
) -> Result<(), i32> {
    GuestPhysAddr::from_pfn(gpfn).ok_or(EINVAL)?;
    let dom = xen.domains.get(&domid).ok_or(ESRCH)?;
    let page = match space {
        XENMAPSPACE_SHARED_INFO => {
            if idx != 0 {
                return Err(EINVAL);
            }
            match dom.shared_info_gfn {
                Some(g) if g == gpfn => return Ok(()),
                Some(_) => return Err(EBUSY),
                None => {}
            }
            SpecialPage::SharedInfo
        }
        XENMAPSPACE_GRANT_TABLE => {
            if idx & XENMAPIDX_GRANT_TABLE_STATUS != 0 {
                // Status frames exist only with grant tables v2.
                return Err(EINVAL);
            }
            let n = u32::try_from(idx).map_err(|_| EINVAL)?;
            if n >= dom.gnttab.max_frames() {
                return Err(EINVAL);
            }
            if dom.gnttab.frame_gfn(n) == Some(gpfn) {
                return Ok(());
            }
            SpecialPage::GrantFrame(n)
        }
        XENMAPSPACE_GMFN | XENMAPSPACE_GMFN_RANGE => return Err(EOPNOTSUPP),
        _ => return Err(ENOSYS),
    };
    // Another special page at this frame is replaced, as in Xen.
    remove_special_page(xen, domid, gpfn, env);
    let old = match page {
        SpecialPage::GrantFrame(n) => xen.domains.get(&domid).and_then(|d| d.gnttab.frame_gfn(n)),
        _ => None,
    };
    env.map_special_page(domid, page, gpfn)?;
    if let Some(old) = old {
        env.unmap_special_page(domid, page, old);
    }
    let dom = xen.domains.get_mut(&domid).ok_or(ESRCH)?;
    match page {
        SpecialPage::SharedInfo => {
            dom.shared_info_gfn = Some(gpfn);
            xen.write_wallclock(domid, env);
            evtchn::replay_early(xen, domid, env);
        }
        SpecialPage::GrantFrame(n) => dom.gnttab.set_frame_gfn(n, Some(gpfn)),
        SpecialPage::ConsoleRing => {}
    }
    Ok(())
}

/// Unmaps the shared_info or grant frame at `gfn`, if one is there. Returns whether one was.
fn remove_special_page(xen: &mut Xen, domid: DomId, gfn: u64, env: &mut dyn XenEnv) -> bool {
    let Some(dom) = xen.domains.get_mut(&domid) else {
        return false;
    };
    if dom.shared_info_gfn == Some(gfn) {
        dom.shared_info_gfn = None;
        env.unmap_special_page(domid, SpecialPage::SharedInfo, gfn);
        return true;
    }
    if let Some(n) = dom.gnttab.frame_at(gfn) {
        dom.gnttab.set_frame_gfn(n, None);
        env.unmap_special_page(domid, SpecialPage::GrantFrame(n), gfn);
        return true;
    }
    false
}

/// `vcpu_op(cmd, vcpuid, arg)`: the area registrations, and on x86 the PV timers.
// Out of line: see `dispatch_inner`.
#[inline(never)]
pub(crate) fn vcpu_op(
    ctx: &mut HypercallCtx<'_>,
    cmd: u64,
    vcpuid: u64,
    arg: u64,
) -> Result<i64, i32> {
    let dom = ctx.xen.domains.get(&ctx.caller).ok_or(ESRCH)?;
    let vcpu = u32::try_from(vcpuid)
        .ok()
        .filter(|v| *v < dom.nr_vcpus())
        .ok_or(ENOENT)?;
    match cmd {
        VCPUOP_REGISTER_VCPU_INFO => {
            let op: VcpuRegisterVcpuInfo = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            register_vcpu_info(ctx.xen, ctx.caller, vcpu, &op, ctx.env)?;
            Ok(0)
        }
        VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
            // A guest virtual address, valid only in the guest's own translation regime: the
            // arch layer publishes into it on state changes (`Xen::runstate_change`) while
            // the vCPU's translation is loaded. It is written once now, as Xen does.
            let op: VcpuRegisterRunstateMemoryArea =
                read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let dom = ctx.xen.domains.get_mut(&ctx.caller).ok_or(ESRCH)?;
            let Some(v) = dom.vcpus.get_mut(vcpu as usize) else {
                return Err(ENOENT);
            };
            v.runstate_va = (op.addr != 0).then_some(op.addr);
            let info = v.runstate.info();
            if v.runstate_va.is_some() && vcpu == ctx.vcpu {
                // Only the caller's own translation is loaded; another vCPU's area is
                // written at its next state change.
                write_virt_obj(ctx.vmem, op.addr, &info).map_err(|_| EFAULT)?;
            }
            Ok(0)
        }
        VCPUOP_REGISTER_RUNSTATE_PHYS_AREA => {
            let op: VcpuRegisterRunstateMemoryArea =
                read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let gpa = GuestPhysAddr::new(op.addr);
            if !gpa.is_aligned(8) {
                return Err(EINVAL);
            }
            let dom = ctx.xen.domains.get(&ctx.caller).ok_or(ESRCH)?;
            let state = dom
                .vcpus
                .get(vcpu as usize)
                .map(|v| v.runstate.info())
                .ok_or(ENOENT)?;
            let mem = ctx.env.memory(ctx.caller).ok_or(ESRCH)?;
            write_obj(mem, gpa, &state).map_err(|_| EFAULT)?;
            let dom = ctx.xen.domains.get_mut(&ctx.caller).ok_or(ESRCH)?;
            if let Some(v) = dom.vcpus.get_mut(vcpu as usize) {
                v.runstate_gpa = Some(gpa);
            }
            Ok(0)
        }
        VCPUOP_SET_SINGLESHOT_TIMER
        | VCPUOP_STOP_SINGLESHOT_TIMER
        | VCPUOP_SET_PERIODIC_TIMER
        | VCPUOP_STOP_PERIODIC_TIMER => super::timer::vcpu_timer_op(ctx, cmd, vcpu, arg),
        _ => Err(EINVAL),
    }
}

/// VCPUOP_register_vcpu_info: moves `vcpu`'s vcpu_info to guest memory (once), copying the
/// old contents, then marks everything pending so the guest rescans (as Xen does).
fn register_vcpu_info(
    xen: &mut Xen,
    domid: DomId,
    vcpu: u32,
    op: &VcpuRegisterVcpuInfo,
    env: &mut dyn XenEnv,
) -> Result<(), i32> {
    let dom = xen.domains.get(&domid).ok_or(ESRCH)?;
    // Once per vCPU: Xen answers a second registration with -EINVAL.
    if dom
        .vcpus
        .get(vcpu as usize)
        .is_some_and(|v| v.vcpu_info.is_some())
    {
        return Err(EINVAL);
    }
    // The selector is updated atomically, so it must be naturally aligned. An area that
    // straddles a page boundary is accepted (Linux 6.1 may allocate one).
    let gpa = frame_addr(op.mfn, u64::from(op.offset)).ok_or(EINVAL)?;
    if !gpa.is_aligned(8) {
        return Err(ENXIO);
    }
    let last = gpa
        .checked_add(core::mem::size_of::<VcpuInfo>() as u64 - 1)
        .ok_or(EINVAL)?;
    // Only the domain's own pages: a page it has through a grant is the granter's (Xen's
    // get_page_from_gfn fails for it, -EINVAL).
    let pages = [gpa.pfn(), last.pfn()];
    if pages.iter().any(|&gfn| dom.gnttab.maps_at(gfn)) {
        return Err(EINVAL);
    }
    let old_at = if vcpu == 0 {
        dom.shared_info_gpa()
            .and_then(|si| si.checked_add(SHARED_INFO_VCPU_INFO as u64))
    } else {
        None
    };
    let mem = env.memory(domid).ok_or(ESRCH)?;
    let mut info = match old_at {
        Some(at) => read_obj::<VcpuInfo, _>(mem, at).unwrap_or_default(),
        None => VcpuInfo::default(),
    };
    info.evtchn_pending_sel = u64::MAX;
    info.evtchn_upcall_pending = 1;
    write_obj(mem, gpa, &info).map_err(|_| EFAULT)?;
    if let Some(v) = xen
        .domains
        .get_mut(&domid)
        .and_then(|d| d.vcpus.get_mut(vcpu as usize))
    {
        v.vcpu_info = Some(gpa);
    }
    env.raise_upcall(domid, vcpu);
    Ok(())
}
