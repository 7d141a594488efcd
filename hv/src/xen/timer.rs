//! Xen's per-vCPU PV timers (x86: `VCPUOP_set_singleshot_timer`, `VCPUOP_set_periodic_timer`
//! and their `stop` calls; Linux's `xen_vcpuop_clockevent`): deadlines in system time kept
//! per vCPU, and `VIRQ_TIMER` raised on the vCPU when one passes. The arch layer supplies
//! "now" ([`XenEnv::now_ns`]), arms a host timer for [`Xen::next_timer`] and calls
//! [`Xen::expire_timers`] when it fires. Xen on Arm offers none of these calls (the guest
//! uses the generic timer), so Arm domains get -EINVAL as there.

use super::hypercall::HypercallCtx;
use super::mem::read_virt_obj;
use super::{GuestArch, Xen, XenEnv};
use mica_guest_abi::xen::errno::{EFAULT, EINVAL, ESRCH};
use mica_guest_abi::xen::evtchn::VIRQ_TIMER;
use mica_guest_abi::xen::vcpu::*;
use mica_guest_abi::xen::DomId;

/// Xen refuses periodic timers faster than 1 kHz (`MILLISECS(1)`).
pub const MIN_PERIOD_NS: u64 = 1_000_000;

/// One vCPU's timers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuTimers {
    /// Single-shot deadline.
    singleshot: Option<u64>,
    /// Periodic timer: (period, next deadline).
    periodic: Option<(u64, u64)>,
}

impl VcpuTimers {
    fn next(&self) -> Option<u64> {
        match (self.singleshot, self.periodic.map(|(_, at)| at)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes what has expired at `now`; true if anything fired.
    fn expire(&mut self, now: u64) -> bool {
        let mut fired = false;
        if self.singleshot.is_some_and(|at| at <= now) {
            self.singleshot = None;
            fired = true;
        }
        if let Some((period, at)) = self.periodic {
            if at <= now {
                // One event however many periods passed (as Xen does), the next one ahead.
                let behind = (now - at) / period + 1;
                self.periodic = at
                    .checked_add(behind.saturating_mul(period))
                    .map(|next| (period, next));
                fired = true;
            }
        }
        fired
    }
}

/// The timer commands of `vcpu_op` (`cmd` known to be one of them). Only the calling vCPU's
/// own timers may be changed, as in Xen.
pub(crate) fn vcpu_timer_op(
    ctx: &mut HypercallCtx<'_>,
    cmd: u64,
    vcpu: u32,
    arg: u64,
) -> Result<i64, i32> {
    let dom = ctx.xen.domains.get(&ctx.caller).ok_or(ESRCH)?;
    if dom.arch != GuestArch::X86_64 || vcpu != ctx.vcpu {
        return Err(EINVAL);
    }
    let now = ctx.env.now_ns();
    let change = match cmd {
        VCPUOP_SET_SINGLESHOT_TIMER => {
            // Xen 4.17 ignores VCPU_SSHOTTMR_future: a deadline already past is accepted
            // and fires at the next expiry check (Linux 6.1 still sets the flag).
            let op: VcpuSetSingleshotTimer = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            Change::Singleshot(Some(op.timeout_abs_ns))
        }
        VCPUOP_STOP_SINGLESHOT_TIMER => Change::Singleshot(None),
        VCPUOP_SET_PERIODIC_TIMER => {
            let op: VcpuSetPeriodicTimer = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            if op.period_ns < MIN_PERIOD_NS {
                return Err(EINVAL);
            }
            let first = now.checked_add(op.period_ns).ok_or(EINVAL)?;
            Change::Periodic(Some((op.period_ns, first)))
        }
        VCPUOP_STOP_PERIODIC_TIMER => Change::Periodic(None),
        _ => return Err(EINVAL),
    };
    let dom = ctx.xen.domains.get_mut(&ctx.caller).ok_or(ESRCH)?;
    let v = dom.vcpus.get_mut(vcpu as usize).ok_or(EINVAL)?;
    match change {
        Change::Singleshot(at) => v.timers.singleshot = at,
        Change::Periodic(p) => v.timers.periodic = p,
    }
    Ok(0)
}

enum Change {
    Singleshot(Option<u64>),
    Periodic(Option<(u64, u64)>),
}

impl Xen {
    /// The earliest PV-timer deadline of any vCPU of `domid`, for the host timer.
    pub fn next_timer(&self, domid: DomId) -> Option<u64> {
        self.domains
            .get(&domid)?
            .vcpus
            .iter()
            .filter_map(|v| v.timers.next())
            .min()
    }

    /// Fires the PV timers of `domid` that are due at `now`: VIRQ_TIMER on each such vCPU
    /// (if the guest bound it; else the event is lost, as in Xen). Returns how many fired.
    pub fn expire_timers(&mut self, domid: DomId, now: u64, env: &mut dyn XenEnv) -> u32 {
        let Some(dom) = self.domains.get_mut(&domid) else {
            return 0;
        };
        // The common case on every exit: nothing due, nothing to collect.
        if !dom
            .vcpus
            .iter()
            .any(|v| v.timers.next().is_some_and(|at| at <= now))
        {
            return 0;
        }
        let due: alloc::vec::Vec<u32> = dom
            .vcpus
            .iter_mut()
            .enumerate()
            .filter_map(|(i, v)| v.timers.expire(now).then_some(i as u32))
            .collect();
        for &vcpu in &due {
            self.raise_virq(domid, VIRQ_TIMER, vcpu, env);
        }
        due.len() as u32
    }
}
