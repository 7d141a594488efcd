//! The per-CPU scheduling loop: pick a vCPU, run it, handle what made it exit.

use crate::esr::{self, Decoded, Syndrome};
use crate::vcpu::{timer_ctl, ExitKind, GuestRegs, VcpuContext, SPSR_EL1H_MASKED};
use crate::world::{self, Domain, Power, DOMAINS, PCPUS};
use crate::{consoles, firmware, gic, stage2, timer};
use aarch64_cpu::registers::*;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use mica_guest_abi::layout::{EVTCHN_PPI, PHYS_TIMER_PPI, VIRT_TIMER_PPI};
use mica_guest_abi::xen::evtchn::EVTCHNOP_SEND;
use mica_guest_abi::xen::Hypercall as XenHypercall;
use mica_hv::addr::GuestPhysAddr;
use mica_hv::exit::{Action, Exit, MmioAccess, ShutdownReason, SysRegAccess};
use mica_hv::psci::{self, PowerOnError, PsciEnv, VcpuPowerState};
use mica_hv::sched::Scheduler;
use mica_hv::vgic::{FillOutcome, ListReg, VcpuSet};
use mica_hv::xen::{After, Runstate};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

/// The Xen hypercall immediate (`HVC #0xEA1`).
const XEN_HYPERCALL_IMM: u16 = 0xEA1;
/// Longest Mica sleeps without looking at its timers and consoles, in microseconds.
const HOUSEKEEPING_US: u64 = 10_000;

/// ESR_EL1 syndromes Mica injects.
mod inject {
    /// Exception class: unknown reason (an undefined instruction).
    pub const EC_UNKNOWN: u64 = 0x00;
    /// Exception class: data abort taken without a change of exception level.
    pub const EC_DABT_SAME_EL: u64 = 0x25;
    /// Exception class: data abort from a lower exception level.
    pub const EC_DABT_LOWER_EL: u64 = 0x24;
    /// Instruction length bit (32-bit instruction).
    pub const IL: u64 = 1 << 25;
    /// Data fault status: synchronous external abort, not on a table walk.
    pub const DFSC_EXTERNAL: u64 = 0b01_0000;
}

/// System registers Mica emulates.
mod regs {
    use mica_hv::exit::SysRegId;
    const fn id(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> SysRegId {
        SysRegId {
            op0,
            op1,
            crn,
            crm,
            op2,
        }
    }
    pub const ICC_SGI1R_EL1: SysRegId = id(3, 0, 12, 11, 5);
    pub const ICC_ASGI1R_EL1: SysRegId = id(3, 0, 12, 11, 6);
    pub const ICC_SGI0R_EL1: SysRegId = id(3, 0, 12, 11, 7);
    pub const CNTP_TVAL_EL0: SysRegId = id(3, 3, 14, 2, 0);
    pub const CNTP_CTL_EL0: SysRegId = id(3, 3, 14, 2, 1);
    pub const CNTP_CVAL_EL0: SysRegId = id(3, 3, 14, 2, 2);
    pub const MDSCR_EL1: SysRegId = id(2, 0, 0, 2, 2);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    /// The guest's virtual timer, while its vCPU is not loaded.
    Virtual,
    /// The emulated EL1 physical timer.
    Physical,
    /// The timeout of a SCHEDOP_poll the vCPU sleeps in.
    PollTimeout,
}

struct TimerEvent {
    deadline: u64,
    domain: u16,
    vcpu: usize,
    kind: TimerKind,
}

/// State only this physical CPU touches.
pub struct Local {
    loaded: Option<(Arc<Domain>, usize)>,
    timers: Vec<TimerEvent>,
    /// When this CPU next flushes consoles, if it is the housekeeping CPU.
    housekeeping: u64,
    /// The list-register buffer `run_vcpu` lends its [`FastPath`] (kept, not rebuilt, for
    /// every vCPU run: its contents only matter between a fill and the next sync).
    lr_buffer: Option<Box<LrBuffer>>,
}

/// Room for every list register a GIC can have.
type LrBuffer = [ListReg; 16];

/// What to do after handling an exit.
#[derive(PartialEq, Eq)]
enum Next {
    /// Keep running the same vCPU.
    Continue,
    /// Go back to the scheduler.
    Reschedule,
}

/// The CPU that flushes idle consoles and polls the PV consoles every `HOUSEKEEPING_US`.
static HOUSEKEEPING_CPU: AtomicUsize = AtomicUsize::new(0);

/// Moves Mica's periodic housekeeping to `cpu` (boot chooses a CPU outside real-time pools).
pub fn set_housekeeping_cpu(cpu: usize) {
    HOUSEKEEPING_CPU.store(cpu, Ordering::Relaxed);
}

fn housekeeping_cpu() -> usize {
    HOUSEKEEPING_CPU.load(Ordering::Relaxed)
}

/// This CPU's logical index (kept in TPIDR_EL2).
pub fn this_cpu() -> usize {
    TPIDR_EL2.get() as usize
}

/// Sets up the EL2 controls every guest runs under. Every CPU, once.
pub fn init_cpu(cpu: usize) {
    TPIDR_EL2.set(cpu as u64);
    HCR_EL2.write(
        HCR_EL2::RW::EL1IsAarch64
            + HCR_EL2::VM::Enable
            + HCR_EL2::SWIO::SET
            + HCR_EL2::FMO::EnableVirtualFIQ
            + HCR_EL2::IMO::EnableVirtualIRQ
            + HCR_EL2::AMO::SET
            + HCR_EL2::FB::SET
            + HCR_EL2::BSU::InnerShareable
            + HCR_EL2::TWI::SET
            + HCR_EL2::TWE::SET
            + HCR_EL2::TSC::SET
            + HCR_EL2::TIDCP::SET,
    );
    // Debug and performance-monitor registers trap and read as zero, so a guest can
    // neither see nor disturb another's counters.
    // PMCR_EL0.N: the number of event counters.
    let pmu_counters = (crate::sysreg::PmcrEl0.get() >> 11) & 0x1f;
    MDCR_EL2.write(
        MDCR_EL2::TDA::SET
            + MDCR_EL2::TDOSA::SET
            + MDCR_EL2::TDRA::SET
            + MDCR_EL2::TPM::SET
            + MDCR_EL2::TPMCR::SET
            + MDCR_EL2::HPMN.val(pmu_counters),
    );
    // Guests own FP/SIMD; Mica saves it on a vCPU switch (the hypervisor itself is built
    // soft-float and never touches it).
    CPTR_EL2.set(0x33ff);
    stage2::init_cpu();
    timer::init_cpu();
}

/// Traps WFI and WFE (the vCPU shares its CPU), or lets them run natively.
fn set_wfi_trap(trap: bool) {
    let (twi, twe) = if trap {
        (HCR_EL2::TWI::SET, HCR_EL2::TWE::SET)
    } else {
        (HCR_EL2::TWI::CLEAR, HCR_EL2::TWE::CLEAR)
    };
    HCR_EL2.modify(twi + twe);
}

/// Runs the scheduler on this CPU forever.
pub fn run(cpu: usize) -> ! {
    let mut local = Local {
        loaded: None,
        timers: Vec::new(),
        housekeeping: 0,
        lr_buffer: None,
    };
    loop {
        let now = timer::now();
        fire_timers(&mut local, now);
        if cpu == housekeeping_cpu() && now >= local.housekeeping {
            consoles::flush_idle(now);
            crate::xen::poll_consoles();
            local.housekeeping = now + timer::us_to_ticks(HOUSEKEEPING_US);
        }
        if local
            .loaded
            .as_ref()
            .is_some_and(|(d, _)| d.dying.load(Ordering::Acquire))
        {
            drop_loaded(&mut local);
        }
        let decision = with_sched(cpu, |s| s.pick_next(now));
        let Some(pick) = decision.run else {
            idle(&mut local, decision.until);
            continue;
        };
        // The loaded vCPU's domain is at hand (a dying one was dropped above).
        let dom = match &local.loaded {
            Some((d, _)) if d.id == pick.domain => Some(d.clone()),
            _ => world::domain(pick.domain),
        };
        match dom {
            Some(dom) if usize::from(pick.vcpu) < dom.vcpus.len() => {
                run_vcpu(&mut local, dom, usize::from(pick.vcpu), decision.until)
            }
            // A vCPU of a domain that is gone: forget it.
            _ => with_sched(cpu, |s| s.remove(pick)),
        }
    }
}

fn with_sched<R>(cpu: usize, f: impl FnOnce(&mut mica_hv::sched::PcpuScheduler) -> R) -> R {
    let mut guard = PCPUS[cpu].sched.lock();
    let sched = guard
        .as_mut()
        .unwrap_or_else(|| panic!("CPU {cpu} has no scheduler (hypervisor bug)"));
    f(sched)
}

/// Waits for an interrupt, or until `until` (a replenishment or window start).
fn idle(local: &mut Local, until: Option<u64>) {
    let deadline = next_deadline(local, until);
    timer::set_deadline(deadline);
    aarch64_cpu::asm::wfi();
    handle_irqs(local, false);
}

/// When the hypervisor timer must next fire: the scheduler's `until` (budget, period or
/// window end), a descheduled vCPU's timer, or (one CPU only) housekeeping. Other CPUs have
/// no housekeeping, so a vCPU alone on its CPU is not interrupted for nothing. The result
/// only moves when one of these does, so re-arming the timer on every guest entry is
/// usually a no-op (see `timer::set_deadline`).
fn next_deadline(local: &Local, until: Option<u64>) -> u64 {
    let housekeeping = if this_cpu() == housekeeping_cpu() {
        local.housekeeping
    } else {
        u64::MAX
    };
    local
        .timers
        .iter()
        .map(|t| t.deadline)
        .chain(until)
        .fold(housekeeping, u64::min)
}

/// Drops the loaded vCPU without saving it (its domain is gone).
fn drop_loaded(local: &mut Local) {
    if local.loaded.take().is_some() {
        CNTV_CTL_EL0.set(0);
    }
}

fn unload(local: &mut Local) {
    let Some((dom, index)) = local.loaded.take() else {
        return;
    };
    if dom.dying.load(Ordering::Acquire) {
        CNTV_CTL_EL0.set(0);
        return;
    }
    // While its translation regime is still loaded (the runstate area may be virtual).
    crate::xen::runstate_descheduled(&dom, index);
    // SAFETY: the vCPU is pinned to this CPU.
    let ctx = unsafe { dom.vcpus[index].context() };
    ctx.save();
    if let Some(deadline) = ctx.vtimer_deadline() {
        local.timers.push(TimerEvent {
            deadline,
            domain: dom.id,
            vcpu: index,
            kind: TimerKind::Virtual,
        });
    }
}

/// Makes `(dom, index)` the vCPU whose state is in the registers.
fn switch_to(local: &mut Local, dom: &Arc<Domain>, index: usize) {
    let already = matches!(&local.loaded, Some((d, i)) if Arc::ptr_eq(d, dom) && *i == index);
    let vcpu = &dom.vcpus[index];
    // SAFETY: the vCPU is pinned to this CPU.
    let ctx = unsafe { vcpu.context() };
    let start = {
        let mut power = vcpu.power.lock();
        match *power {
            Power::OnPending { entry, context } => {
                *power = Power::On;
                Some((entry, context))
            }
            _ => None,
        }
    };
    if !already {
        unload(local);
        stage2::load(dom.vttbr);
        set_wfi_trap(!vcpu.wfi_native);
        local
            .timers
            .retain(|t| !(t.domain == dom.id && t.vcpu == index && t.kind == TimerKind::Virtual));
        local.loaded = Some((dom.clone(), index));
    }
    if let Some((entry, context)) = start {
        ctx.reset(entry, context, vcpu.mpidr);
        ctx.restore();
    } else if !already {
        ctx.restore();
    }
}

fn run_vcpu(local: &mut Local, dom: Arc<Domain>, index: usize, until: Option<u64>) {
    switch_to(local, &dom, index);
    crate::xen::runstate(&dom, index, Runstate::Running);
    timer::set_deadline(next_deadline(local, until));
    let lr_count = gic::list_register_count();
    let lrs = local
        .lr_buffer
        .take()
        .unwrap_or_else(|| Box::new([ListReg::default(); 16]));
    let mut fast = FastPath {
        dom: &dom,
        index,
        enabled: !gic::unwired_virq::enabled(),
        fill: None,
        after: After::Resume,
        lrs,
        lr_count,
        // Unknown at first.
        hardware_in_use: lr_count,
    };
    run_until_rescheduled(local, &dom, index, &mut fast);
    local.lr_buffer = Some(fast.lrs);
}

/// Runs vCPU `index` of `dom` (loaded) until the scheduler must choose again.
fn run_until_rescheduled(
    local: &mut Local,
    dom: &Arc<Domain>,
    index: usize,
    fast: &mut FastPath<'_>,
) {
    loop {
        if dom.dying.load(Ordering::Acquire) {
            return;
        }
        fast.refresh_lrs();
        gic::unwired_virq::before_entry();
        // SAFETY: the vCPU is pinned to this CPU and loaded.
        let ctx = unsafe { dom.vcpus[index].context() };
        let kind = ctx.run(fast);
        gic::unwired_virq::after_exit();
        // (A hypercall the fast path resumed in place did this on its way.)
        fast.sync_lrs();
        let next = match kind {
            ExitKind::Irq | ExitKind::Fiq => {
                if handle_irqs(local, true) {
                    Next::Reschedule
                } else {
                    Next::Continue
                }
            }
            ExitKind::Sync => handle_sync(local, dom, index, ctx),
            ExitKind::HypercallDone => finish_hypercall(local, dom, index, ctx, fast.after),
            ExitKind::SError => {
                guest_log(
                    dom,
                    format_args!("SError from the guest at {:#x}; ending it", ctx.regs.elr),
                );
                destroy(dom, ShutdownReason::Crash);
                Next::Reschedule
            }
        };
        if next == Next::Reschedule {
            return;
        }
    }
}

/// Handles every pending physical interrupt. Returns whether the scheduler should run.
/// `running`: the loaded vCPU was interrupted while running (so it needs no waking).
fn handle_irqs(local: &mut Local, running: bool) -> bool {
    let mut resched = false;
    while let Some(ack) = gic::acknowledge() {
        if crate::passthrough::on_physical(ack.intid) {
            // Stays active until its guest deactivates it (hardware-backed list register).
            gic::priority_drop(ack);
            continue;
        }
        match ack.intid {
            mica_guest_abi::layout::HYP_TIMER_PPI => {
                CNTHP_CTL_EL2.set(0);
                resched = true;
            }
            VIRT_TIMER_PPI => {
                // The loaded vCPU's timer fired: mask it (the guest unmasks it when it
                // programs the next deadline) and pass the interrupt on. The GIC may still
                // hold a stale assertion from before a vCPU switch or a reprogramming: only
                // a timer whose condition is met right now is the loaded vCPU's. Masking a
                // timer that has not fired would silence it for good (the guest sees no
                // ISTATUS, so it never reprograms it).
                let ctl = CNTV_CTL_EL0.get();
                let fired = ctl & timer_ctl::ENABLE != 0
                    && ctl & timer_ctl::ISTATUS != 0
                    && ctl & timer_ctl::IMASK == 0;
                if fired {
                    CNTV_CTL_EL0.set(ctl | timer_ctl::IMASK);
                    if let Some((dom, index)) = &local.loaded {
                        let set = dom.vgic.inject(*index, VIRT_TIMER_PPI);
                        if running {
                            kick_others(dom, *index, set);
                        } else {
                            kick(dom, set);
                        }
                    }
                }
            }
            m if m == gic::maintenance_intid() => gic::clear_maintenance(),
            gic::SGI_KICK => resched = true,
            other if Some(other) == consoles::uart_intid() => {
                while let Some(byte) = crate::console::poll_input() {
                    consoles::input(byte);
                }
            }
            other => crate::info!("unexpected physical interrupt {other} ignored"),
        }
        gic::end_of_interrupt(ack);
    }
    resched
}

fn fire_timers(local: &mut Local, now: u64) {
    let mut i = 0;
    while i < local.timers.len() {
        if local.timers[i].deadline > now {
            i += 1;
            continue;
        }
        let ev = local.timers.swap_remove(i);
        let Some(dom) = world::domain(ev.domain) else {
            continue;
        };
        let intid = match ev.kind {
            TimerKind::Virtual => {
                // SAFETY: the vCPU is pinned to this CPU and not loaded (its virtual timer
                // events are dropped when it is loaded).
                let ctx = unsafe { dom.vcpus[ev.vcpu].context() };
                ctx.el1.cntv_ctl |= timer_ctl::IMASK;
                VIRT_TIMER_PPI
            }
            TimerKind::Physical => PHYS_TIMER_PPI,
            TimerKind::PollTimeout => {
                poll_timeout(&dom, ev.vcpu);
                continue;
            }
        };
        let set = dom.vgic.inject(ev.vcpu, intid);
        kick(&dom, set);
    }
}

/// SCHEDOP_poll found nothing pending (x0 already holds 0): the vCPU sleeps until a polled
/// port becomes pending (`xen::ArchEnv::wake_vcpu`), an interrupt is pending for it, or
/// system time reaches `deadline_ns`. Like `Action::Block`, decided under the run-queue lock
/// the wakers take, so a wake-up just before the sleep is not lost.
fn block_poll(
    local: &mut Local,
    dom: &Arc<Domain>,
    index: usize,
    deadline_ns: Option<u64>,
) -> Next {
    let vcpu = &dom.vcpus[index];
    let vref = dom.vcpu_ref(index);
    let blocked = with_sched(this_cpu(), |s| {
        if vcpu.poll_woken.swap(false, Ordering::Acquire) || dom.vgic.has_deliverable(index) {
            false
        } else {
            s.block(vref);
            true
        }
    });
    // At most one poll timeout per vCPU: an earlier poll's must not end this one.
    local
        .timers
        .retain(|t| !(t.domain == dom.id && t.vcpu == index && t.kind == TimerKind::PollTimeout));
    if !blocked {
        crate::xen::end_poll(dom, index);
        return Next::Continue;
    }
    if let Some(ns) = deadline_ns {
        local.timers.push(TimerEvent {
            deadline: timer::ns_to_ticks(ns),
            domain: dom.id,
            vcpu: index,
            kind: TimerKind::PollTimeout,
        });
    }
    crate::xen::runstate(dom, index, Runstate::Blocked);
    Next::Reschedule
}

/// A poll's timeout passed: wakes the vCPU if it still sleeps in that poll.
fn poll_timeout(dom: &Domain, index: usize) {
    if crate::xen::end_poll(dom, index) {
        let mut set = VcpuSet::default();
        set.insert(index);
        kick(dom, set);
    }
}

/// Wakes the vCPUs in `set` and nudges their physical CPUs.
pub fn kick(dom: &Domain, set: VcpuSet) {
    let me = this_cpu();
    for index in set.iter() {
        let Some(vcpu) = dom.vcpus.get(index) else {
            continue;
        };
        if *vcpu.power.lock() == Power::Off {
            continue;
        }
        with_sched(vcpu.pcpu, |s| s.wake(dom.vcpu_ref(index)));
        if vcpu.pcpu != me {
            gic::send_sgi(
                PCPUS[vcpu.pcpu].mpidr.load(Ordering::Relaxed) as u64,
                gic::SGI_KICK,
            );
        }
    }
}

/// [`kick`] from vCPU `running` of `dom` while it runs on this CPU (handling its exit):
/// it re-enters its guest next, which lists whatever became pending for it, so waking it
/// would only take two locks for nothing. The other vCPUs in `set` are kicked.
pub fn kick_others(dom: &Domain, running: usize, set: VcpuSet) {
    let others = set.without(running);
    if !others.is_empty() {
        kick(dom, others);
    }
}

/// A log line about a guest, rate-limited per domain.
fn guest_log(dom: &Domain, args: core::fmt::Arguments<'_>) {
    let allowed = dom.log_limit.lock().allow(timer::now(), timer::frequency());
    if allowed {
        crate::info!("DOM{} ({}): {}", dom.id, dom.name, args);
    }
}

fn handle_sync(local: &mut Local, dom: &Arc<Domain>, index: usize, ctx: &mut VcpuContext) -> Next {
    let syn = Syndrome {
        esr: ESR_EL2.get(),
        far: FAR_EL2.get(),
        hpfar: HPFAR_EL2.get(),
    };
    let decoded = esr::decode(&syn, &ctx.regs.x);
    let (exit, dest) = match decoded {
        Decoded::Plain(e) => (e, None),
        Decoded::Mmio(e, r) => (e, Some(Dest::Mmio(r))),
        Decoded::SysReg(e, rt) => (e, Some(Dest::SysReg(rt.0))),
    };
    // HVC's preferred return address is already the next instruction; everything else
    // trapped here returns to the trapping instruction.
    let skip = if matches!(exit, Exit::Hvc { .. }) {
        0
    } else {
        4
    };
    let action = match exit {
        Exit::Hvc { imm: 0, args } | Exit::Smc { imm: 0, args } => {
            let mut env = DomainPsci { dom };
            psci::handle(psci::decode(&args), &mut env)
        }
        Exit::Hvc {
            imm: XEN_HYPERCALL_IMM,
            ..
        } => return xen_hypercall(local, dom, index, ctx),
        Exit::Hvc { imm, .. } | Exit::Smc { imm, .. } => {
            guest_log(dom, format_args!("unknown HVC/SMC immediate {imm:#x}"));
            Action::InjectUndefined
        }
        Exit::Mmio(access) => mmio(dom, index, access),
        Exit::UndecodableAbort { addr, instruction } => {
            guest_log(
                dom,
                format_args!(
                    "{} at unmapped {addr} (pc {:#x}): data abort injected",
                    if instruction {
                        "instruction fetch"
                    } else {
                        "access"
                    },
                    ctx.regs.elr
                ),
            );
            Action::InjectDataAbort { addr }
        }
        Exit::SysReg(access) => sysreg(local, dom, index, ctx, access),
        Exit::WaitForInterrupt => Action::Block,
        Exit::WaitForEvent => Action::Yield,
        Exit::Unknown { syndrome } => {
            guest_log(
                dom,
                format_args!("unhandled exception (ESR {syndrome:#x}); ending the domain"),
            );
            Action::ShutdownDomain(ShutdownReason::Crash)
        }
    };
    apply(dom, index, ctx, action, skip, dest, &syn)
}

/// The run loop's state for the vCPU it runs: its list registers, and what the
/// hypercall fast path ([`mica_fast_hypercall`]) needs and leaves behind.
pub struct FastPath<'a> {
    dom: &'a Arc<Domain>,
    index: usize,
    /// Whether hypercalls may be handled without a full exit: not under the unwired
    /// virtual IRQ quirk, which must see every exit.
    enabled: bool,
    /// The list registers' last choice.
    fill: Option<FillOutcome>,
    /// What a hypercall handled in the fast path left to do ([`ExitKind::HypercallDone`]).
    after: After,
    /// The list registers as last written, then as read back.
    lrs: Box<LrBuffer>,
    /// How many list registers the CPU has (at most 16).
    lr_count: usize,
    /// How many list registers, from the first, may be valid in the hardware; the others
    /// are known invalid (a guest cannot make an invalid one valid).
    hardware_in_use: usize,
}

impl FastPath<'_> {
    /// Whether choosing the list registers again would change nothing: none is listed
    /// (so the guest cannot have changed one) and the vGIC has not changed since.
    #[inline(always)]
    fn lists_same(&self) -> bool {
        self.fill
            .is_some_and(|f| f.listed == 0 && !f.overflow && self.dom.vgic.unchanged_since(&f))
    }

    /// Before the guest runs: chooses its list registers again, unless nothing would
    /// change.
    fn refresh_lrs(&mut self) {
        if self.lists_same() {
            return;
        }
        let count = self.lr_count.min(self.lrs.len());
        let chosen = self.dom.vgic.fill_lrs(self.index, &mut self.lrs[..count]);
        self.write_lrs(chosen);
    }

    /// Between a hypercall handled in place and the guest's resumption: [`Self::sync_lrs`]
    /// then [`Self::refresh_lrs`], with one vGIC lock for both, after making `inject`
    /// pending if given (the event upcall the vCPU raised for itself). Out of line, so the
    /// plain hypercall's path does not pay for its registers.
    #[inline(never)]
    fn resync_lrs(&mut self, inject: Option<u32>) {
        let listed = self.read_back_lrs();
        if listed == 0 && inject.is_none() {
            self.refresh_lrs();
            return;
        }
        let count = self.lr_count.min(self.lrs.len());
        // `lrs[listed..count]` are still invalid, as the last fill chose them.
        let (chosen, moved) =
            self.dom
                .vgic
                .resync_lrs(self.index, &mut self.lrs[..count], listed, inject);
        self.write_lrs(chosen);
        if !moved.is_empty() {
            kick(self.dom, moved);
        }
    }

    /// [`Self::resync_lrs`] with the event upcall injected, in the common case that
    /// [`mica_hv::vgic::Vgic::relist_upcall`] covers: the upcall alone in the first list
    /// register. Only that register is read and written. Returns false, having done
    /// nothing, when the case does not apply.
    #[inline(always)]
    fn relist_upcall(&mut self) -> bool {
        let Some(last) = self.fill else {
            return false;
        };
        if last.listed != 1 || last.overflow {
            return false;
        }
        let mut lr0 = gic::read_first_lr();
        let Some(chosen) = self
            .dom
            .vgic
            .relist_upcall(self.index, &mut lr0, EVTCHN_PPI)
        else {
            return false;
        };
        gic::write_first_lr(&lr0);
        self.lrs[0] = lr0;
        self.hardware_in_use = chosen.listed;
        // The underflow interrupt stays off: it was (no overflow then) and is (none now).
        self.fill = Some(chosen);
        true
    }

    /// Writes the list registers just chosen (and clears those that may linger).
    #[inline(always)]
    fn write_lrs(&mut self, chosen: FillOutcome) {
        let count = self.lr_count.min(self.lrs.len());
        // What is listed now, and what was listed before and may linger: an exit with
        // nothing to list after one with nothing listed writes no list register.
        let dirty = chosen.listed.max(self.hardware_in_use).min(count);
        for (i, lr) in self.lrs[..dirty].iter().enumerate() {
            gic::write_lr(i, lr);
        }
        self.hardware_in_use = chosen.listed;
        gic::set_underflow_interrupt(chosen.overflow);
        self.fill = Some(chosen);
    }

    /// Reads back the list registers the last fill listed into `lrs` and returns how many:
    /// only those can have changed while the guest ran; the others stayed invalid.
    #[inline(always)]
    fn read_back_lrs(&mut self) -> usize {
        let listed = self.fill.map_or(0, |f| f.listed).min(self.lrs.len());
        for (i, lr) in self.lrs[..listed].iter_mut().enumerate() {
            *lr = gic::read_lr(i);
        }
        listed
    }

    /// After the guest ran (once per run): folds what it did with its listed interrupts
    /// back into the vGIC.
    fn sync_lrs(&mut self) {
        let listed = self.read_back_lrs();
        if listed == 0 {
            return;
        }
        let moved = self.dom.vgic.sync_from_lrs(self.index, &self.lrs[..listed]);
        if !moved.is_empty() {
            kick(self.dom, moved);
        }
    }
}

/// [`mica_fast_hypercall`]'s answer that resumes the guest at once.
const FAST_RESUME: u64 = 0xFF;
/// `enter_guest`'s exit kinds (vcpu.rs) the fast path answers with.
const EXIT_SYNC: u64 = 0;
const EXIT_HYPERCALL_DONE: u64 = 4;

/// A Xen hypercall, called by `guest_exit_sync` (exceptions.S) with only the guest's
/// caller-saved registers stored, before the run loop sees the exit. Most hypercalls only
/// return a value: then the list registers are brought up to date here, as the run loop
/// would, and the guest resumes at once. One that blocks, yields or ends the domain (or a
/// dying domain) leaves through a full exit. Returns [`FAST_RESUME`] or the exit kind
/// `enter_guest` reports.
#[unsafe(no_mangle)]
extern "C" fn mica_fast_hypercall(regs: *mut GuestRegs, fast: *mut FastPath<'_>) -> u64 {
    // SAFETY: `guest_exit_sync` passes back the pointer `VcpuContext::run` gave
    // `enter_guest`: valid, and used by nothing else until `enter_guest` returns.
    let regs = unsafe { &mut *regs };
    // SAFETY: as for `regs`.
    let fast = unsafe { &mut *fast };
    if !fast.enabled {
        return EXIT_SYNC;
    }
    if let Some(port) = sent_port(&regs.x) {
        return fast_send(regs, fast, port);
    }
    let (after, upcall_self) = call_xen(fast.dom, fast.index, regs);
    fast.finish(after, upcall_self)
}

/// The port of an `EVTCHNOP_send` in `x` (hypercall number in x16, command in x0, argument
/// address in x1), if that is the call and its argument can be read here; the generic path
/// answers a bad argument.
#[inline(always)]
fn sent_port(x: &[u64; 31]) -> Option<u32> {
    if x[16] != XenHypercall::EventChannelOp as u64 || x[0] != EVTCHNOP_SEND {
        return None;
    }
    crate::xen::read_arg_u32(x[1])
}

/// The event send's own way through the fast path, decoded here as it is on the latency
/// path of every notification (out of line: the plain hypercall keeps its small frame).
#[inline(never)]
fn fast_send(regs: &mut GuestRegs, fast: &mut FastPath<'_>, port: u32) -> u64 {
    let call = crate::xen::send_event(fast.dom, fast.index, port);
    regs.x[0] = call.outcome.ret as u64;
    fast.finish(call.outcome.after, call.upcall_self)
}

impl FastPath<'_> {
    /// After a hypercall in the fast path, with its result in x0: resumes the guest, with
    /// its list registers brought up to date as the run loop would, unless the hypercall
    /// (or a dying domain) needs a full exit. Returns what [`mica_fast_hypercall`] returns.
    #[inline(always)]
    fn finish(&mut self, after: After, upcall_self: bool) -> u64 {
        if after == After::Resume && !self.dom.dying.load(Ordering::Acquire) {
            if upcall_self {
                // The upcall's injection and the list registers' refresh under one vGIC
                // lock.
                if !self.relist_upcall() {
                    self.resync_lrs(Some(EVTCHN_PPI));
                }
            } else if !self.lists_same() {
                // What the run loop would do between this exit and the next entry.
                self.resync_lrs(None);
            }
            FAST_RESUME
        } else {
            if upcall_self {
                inject_upcall_self(self.dom, self.index);
            }
            self.after = after;
            EXIT_HYPERCALL_DONE
        }
    }
}

/// A Xen hypercall (`HVC #0xEA1`) the fast path did not take: number in x16, arguments
/// in x0..x4, result in x0.
fn xen_hypercall(
    local: &mut Local,
    dom: &Arc<Domain>,
    index: usize,
    ctx: &mut VcpuContext,
) -> Next {
    let (after, upcall_self) = call_xen(dom, index, &mut ctx.regs);
    if upcall_self {
        inject_upcall_self(dom, index);
    }
    finish_hypercall(local, dom, index, ctx, after)
}

/// Runs the Xen hypercall in `regs` (number in x16, arguments in x0..x4), puts its result
/// in x0 and says what the vCPU does next, and whether the caller must inject the upcall
/// into this vCPU ([`crate::xen::Hypercall::upcall_self`]).
#[inline(always)]
fn call_xen(dom: &Arc<Domain>, index: usize, regs: &mut GuestRegs) -> (After, bool) {
    let x = &regs.x;
    let call = crate::xen::hypercall(dom, index, x[16], [x[0], x[1], x[2], x[3], x[4]]);
    regs.x[0] = call.outcome.ret as u64;
    (call.outcome.after, call.upcall_self)
}

/// Makes the event upcall pending for vCPU `index` of `dom`, which runs on this CPU (its
/// list registers are chosen before it next enters the guest).
fn inject_upcall_self(dom: &Domain, index: usize) {
    kick_others(dom, index, dom.vgic.inject(index, EVTCHN_PPI));
}

/// Does what a hypercall asked for once its result is in x0.
fn finish_hypercall(
    local: &mut Local,
    dom: &Arc<Domain>,
    index: usize,
    ctx: &mut VcpuContext,
    after: After,
) -> Next {
    let action = match after {
        // The return address is already past the HVC: nothing else to do.
        After::Resume => return Next::Continue,
        After::Yield => Action::Yield,
        After::Block => Action::Block,
        After::BlockPoll { deadline_ns } => return block_poll(local, dom, index, deadline_ns),
        After::Shutdown(reason) => Action::ShutdownDomain(reason),
    };
    // HVC's preferred return address is already the next instruction (no skip); none of
    // these actions reads the syndrome.
    let syn = Syndrome {
        esr: 0,
        far: 0,
        hpfar: 0,
    };
    apply(dom, index, ctx, action, 0, None, &syn)
}

enum Dest {
    Mmio(esr::MmioRegister),
    SysReg(u8),
}

fn apply(
    dom: &Arc<Domain>,
    index: usize,
    ctx: &mut VcpuContext,
    action: Action,
    skip: u64,
    dest: Option<Dest>,
    syn: &Syndrome,
) -> Next {
    match action {
        Action::Resume => {
            ctx.regs.elr += skip;
            Next::Continue
        }
        Action::ResumeWith { regs } => {
            for (i, r) in regs.iter().enumerate() {
                if let Some(v) = r {
                    ctx.regs.x[i] = *v;
                }
            }
            ctx.regs.elr += skip;
            Next::Continue
        }
        Action::CompleteRead { value } => {
            match dest {
                Some(Dest::Mmio(r)) if r.rt < 31 => {
                    let size = match decode_size(syn) {
                        Some(s) => s,
                        None => mica_hv::exit::AccessSize::Double,
                    };
                    ctx.regs.x[usize::from(r.rt)] = esr::extend_read(value, size, r);
                }
                Some(Dest::SysReg(rt)) if rt < 31 => ctx.regs.x[usize::from(rt)] = value,
                _ => {}
            }
            ctx.regs.elr += skip;
            Next::Continue
        }
        Action::InjectDataAbort { .. } => {
            let el1 = (ctx.regs.spsr >> 2) & 0x3 == 1;
            let ec = if el1 {
                inject::EC_DABT_SAME_EL
            } else {
                inject::EC_DABT_LOWER_EL
            };
            let wnr = syn.esr & (1 << 6);
            inject_exception(
                ctx,
                (ec << 26) | inject::IL | wnr | inject::DFSC_EXTERNAL,
                Some(syn.far),
            );
            Next::Continue
        }
        Action::InjectUndefined => {
            inject_exception(ctx, (inject::EC_UNKNOWN << 26) | inject::IL, None);
            Next::Continue
        }
        Action::Block => {
            ctx.regs.elr += skip;
            // Under the run-queue lock, so a wake-up between the check and the block is
            // not lost (wakers take the same lock after making the interrupt pending).
            let vref = dom.vcpu_ref(index);
            let blocked = with_sched(this_cpu(), |s| {
                if dom.vgic.has_deliverable(index) {
                    false
                } else {
                    s.block(vref);
                    true
                }
            });
            if blocked {
                crate::xen::runstate(dom, index, Runstate::Blocked);
                Next::Reschedule
            } else {
                Next::Continue
            }
        }
        Action::Yield => {
            ctx.regs.elr += skip;
            with_sched(this_cpu(), |s| s.yield_now(dom.vcpu_ref(index)));
            Next::Reschedule
        }
        Action::VcpuOff => {
            ctx.regs.elr += skip;
            *dom.vcpus[index].power.lock() = Power::Off;
            crate::xen::runstate(dom, index, Runstate::Offline);
            with_sched(this_cpu(), |s| s.block(dom.vcpu_ref(index)));
            Next::Reschedule
        }
        Action::ShutdownDomain(reason) => {
            destroy(dom, reason);
            Next::Reschedule
        }
    }
}

fn decode_size(syn: &Syndrome) -> Option<mica_hv::exit::AccessSize> {
    mica_hv::exit::AccessSize::from_bytes(1 << ((syn.esr >> 22) & 0x3))
}

/// Makes the guest take a synchronous exception at EL1 with syndrome `esr`.
fn inject_exception(ctx: &mut VcpuContext, esr: u64, far: Option<u64>) {
    let spsr = ctx.regs.spsr;
    let from_el1 = (spsr >> 2) & 0x3 == 1;
    let aarch32 = spsr & (1 << 4) != 0;
    let offset = match (from_el1, spsr & 1 == 1, aarch32) {
        (true, true, _) => 0x200,
        (true, false, _) => 0x000,
        (false, _, false) => 0x400,
        (false, _, true) => 0x600,
    };
    ELR_EL1.set(ctx.regs.elr);
    SPSR_EL1.set(spsr);
    ESR_EL1.set(esr);
    if let Some(far) = far {
        FAR_EL1.set(far);
    }
    ctx.regs.elr = VBAR_EL1.get() + offset;
    ctx.regs.spsr = SPSR_EL1H_MASKED;
}

fn mmio(dom: &Arc<Domain>, index: usize, access: MmioAccess) -> Action {
    if let Some(result) = dom.vgic.mmio(index, access) {
        return match result {
            Ok(outcome) => {
                kick_others(dom, index, outcome.kick);
                match outcome.read {
                    Some(value) => Action::CompleteRead { value },
                    None => Action::Resume,
                }
            }
            Err(_) => {
                guest_log(
                    dom,
                    format_args!("bad GIC access {access:?}: data abort injected"),
                );
                Action::InjectDataAbort { addr: access.addr }
            }
        };
    }
    if let Some(offset) = access
        .addr
        .offset_from(dom.uart.range.start)
        .filter(|&o| o < dom.uart.range.size)
    {
        return uart_access(dom, index, offset, access);
    }
    guest_log(
        dom,
        format_args!(
            "access to unmapped {} ({}): data abort injected",
            access.addr,
            if access.write.is_some() {
                "write"
            } else {
                "read"
            }
        ),
    );
    Action::InjectDataAbort { addr: access.addr }
}

fn uart_access(dom: &Arc<Domain>, index: usize, offset: u64, access: MmioAccess) -> Action {
    let mut out = [0u8; 8];
    let mut n = 0;
    let (result, line) = {
        let mut uart = dom.uart.model.lock();
        let r = uart.mmio(offset, access.size, access.write, &mut |b| {
            if n < out.len() {
                out[n] = b;
                n += 1;
            }
        });
        (r, uart.irq_line())
    };
    for &b in &out[..n] {
        consoles::guest_byte(dom.id, b);
    }
    kick_others(dom, index, dom.vgic.set_level(dom.uart.intid, line));
    match result {
        Ok(value) if access.write.is_none() => Action::CompleteRead { value },
        Ok(_) => Action::Resume,
        Err(_) => Action::InjectDataAbort { addr: access.addr },
    }
}

fn sysreg(
    local: &mut Local,
    dom: &Arc<Domain>,
    index: usize,
    ctx: &mut VcpuContext,
    a: SysRegAccess,
) -> Action {
    let read = |v: u64| Action::CompleteRead { value: v };
    if a.is(regs::ICC_SGI1R_EL1) {
        if let Some(v) = a.write {
            kick_others(dom, index, dom.vgic.write_sgi1r(index, v));
        }
        return Action::Resume;
    }
    if a.is(regs::ICC_SGI0R_EL1) || a.is(regs::ICC_ASGI1R_EL1) {
        // Group 0 and alternate SGIs have no meaning for a guest with one security state.
        return Action::Resume;
    }
    if a.is(regs::CNTP_CTL_EL0) || a.is(regs::CNTP_CVAL_EL0) || a.is(regs::CNTP_TVAL_EL0) {
        return phys_timer(local, dom, index, ctx, a);
    }
    if a.is(regs::MDSCR_EL1) {
        return match a.write {
            Some(v) => {
                ctx.mdscr = v;
                Action::Resume
            }
            None => read(ctx.mdscr),
        };
    }
    // Debug (op0 = 2) and PMU (CRn = 9, CRn = 14 op1 = 3) registers: read as zero,
    // writes ignored, like a CPU with nothing to debug or count.
    let is_pmu = a.op0 == 3 && (a.crn == 9 || (a.crn == 14 && a.op1 == 3 && a.crm >= 8));
    if a.op0 == 2 || is_pmu {
        return match a.write {
            Some(_) => Action::Resume,
            None => read(0),
        };
    }
    guest_log(
        dom,
        format_args!(
            "system register S{}_{}_C{}_C{}_{} not emulated: undefined instruction injected",
            a.op0, a.op1, a.crn, a.crm, a.op2
        ),
    );
    Action::InjectUndefined
}

fn phys_timer(
    local: &mut Local,
    dom: &Arc<Domain>,
    index: usize,
    ctx: &mut VcpuContext,
    a: SysRegAccess,
) -> Action {
    let now = timer::now();
    let t = &mut ctx.ptimer;
    match a.write {
        None => {
            let value = if a.is(regs::CNTP_CTL_EL0) {
                let fired = t.ctl & timer_ctl::ENABLE != 0 && now >= t.cval;
                (t.ctl & (timer_ctl::ENABLE | timer_ctl::IMASK))
                    | if fired { timer_ctl::ISTATUS } else { 0 }
            } else if a.is(regs::CNTP_CVAL_EL0) {
                t.cval
            } else {
                // TVAL is a signed 32-bit down-counter.
                u64::from(t.cval.wrapping_sub(now) as u32)
            };
            return Action::CompleteRead { value };
        }
        Some(v) => {
            if a.is(regs::CNTP_CTL_EL0) {
                t.ctl = v & (timer_ctl::ENABLE | timer_ctl::IMASK);
            } else if a.is(regs::CNTP_CVAL_EL0) {
                t.cval = v;
            } else {
                t.cval = now.wrapping_add(i64::from(v as u32 as i32) as u64);
            }
        }
    }
    let (ctl, cval) = (t.ctl, t.cval);
    local
        .timers
        .retain(|e| !(e.domain == dom.id && e.vcpu == index && e.kind == TimerKind::Physical));
    if ctl & timer_ctl::ENABLE != 0 && ctl & timer_ctl::IMASK == 0 {
        local.timers.push(TimerEvent {
            deadline: cval,
            domain: dom.id,
            vcpu: index,
            kind: TimerKind::Physical,
        });
        timer::set_deadline(next_deadline(local, None));
    }
    Action::Resume
}

/// PSCI as a domain sees it.
struct DomainPsci<'a> {
    dom: &'a Arc<Domain>,
}

impl PsciEnv for DomainPsci<'_> {
    fn vcpu_index_by_mpidr(&self, mpidr: u64) -> Option<usize> {
        let affinity = mpidr & 0xff_00ff_ffff;
        self.dom.vcpus.iter().position(|v| v.mpidr == affinity)
    }
    fn vcpu_state(&self, idx: usize) -> VcpuPowerState {
        match self.dom.vcpus.get(idx).map(|v| *v.power.lock()) {
            Some(Power::On) => VcpuPowerState::On,
            Some(Power::OnPending { .. }) => VcpuPowerState::OnPending,
            _ => VcpuPowerState::Off,
        }
    }
    fn power_on(&mut self, idx: usize, entry: u64, context: u64) -> Result<(), PowerOnError> {
        let vcpu = self
            .dom
            .vcpus
            .get(idx)
            .ok_or(PowerOnError::InvalidAddress)?;
        {
            let mut power = vcpu.power.lock();
            match *power {
                Power::On => return Err(PowerOnError::AlreadyOn),
                Power::OnPending { .. } => return Err(PowerOnError::OnPending),
                Power::Off => *power = Power::OnPending { entry, context },
            }
        }
        let mut set = VcpuSet::default();
        set.insert(idx);
        kick(self.dom, set);
        Ok(())
    }
    fn entry_is_valid(&self, entry: u64) -> bool {
        entry.is_multiple_of(4) && self.dom.is_ram(GuestPhysAddr::new(entry), 4)
    }
}

/// Ends a domain: its vCPUs stop, its memory is scrubbed and freed when the last CPU
/// lets go of it. The initial domain's end powers the machine off (or resets it).
pub fn destroy(dom: &Arc<Domain>, reason: ShutdownReason) {
    if dom.dying.swap(true, Ordering::AcqRel) {
        return;
    }
    let how = match reason {
        ShutdownReason::PowerOff => "powered off",
        ShutdownReason::Reboot => "asked for a reset",
        ShutdownReason::Crash => "crashed",
    };
    consoles::remove_domain(dom.id);
    crate::passthrough::release(dom.id);
    // Event channels and grants go before the memory (while the domain is still listed).
    crate::xen::destroy_domain(dom.id);
    crate::info!("DOM{} ({}) {how}; domain destroyed", dom.id, dom.name);
    if let Some(slot) = DOMAINS.write().get_mut(usize::from(dom.id)) {
        *slot = None;
    }
    let me = this_cpu();
    for (index, vcpu) in dom.vcpus.iter().enumerate() {
        with_sched(vcpu.pcpu, |s| s.remove(dom.vcpu_ref(index)));
        PCPUS[vcpu.pcpu].load.fetch_sub(1, Ordering::Relaxed);
        if vcpu.pcpu != me {
            gic::send_sgi(
                PCPUS[vcpu.pcpu].mpidr.load(Ordering::Relaxed) as u64,
                gic::SGI_KICK,
            );
        }
    }
    let none_left = DOMAINS.read().iter().all(|d| d.is_none());
    if dom.initial || none_left {
        if dom.initial && reason == ShutdownReason::Reboot {
            crate::info!("initial domain reset: resetting the machine");
            firmware::system_reset();
        }
        crate::info!(
            "{}: powering off",
            if dom.initial {
                "initial domain ended"
            } else {
                "no domains left"
            }
        );
        firmware::system_off();
        crate::halt();
    }
}
