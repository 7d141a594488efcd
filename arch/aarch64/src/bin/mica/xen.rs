//! The Xen guest interface on AArch64: the glue between `mica_hv::xen` (portable state and
//! hypercall handlers) and this CPU's stage-2 tables, address translation and vGIC.
//!
//! Lock order: [`XEN`] first, then the frame allocator, then a domain's stage-2 table, then
//! vGIC, scheduler and console locks. Nothing takes [`XEN`] while holding one of those.

use crate::world::{self, Domain, FrameTables, FRAMES};
use crate::{consoles, run};
use aarch64_cpu::registers::PAR_EL1;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use mica_aarch64::pagetable::{stage2_ram, with, DESC};
use mica_guest_abi::layout::EVTCHN_PPI;
use mica_guest_abi::xen::{errno, DomId};
use mica_hv::addr::{GuestPhysAddr, HostPhysAddr, HostRange, PAGE_SIZE};
use mica_hv::vgic::VcpuSet;
use mica_hv::xen::env::{Backend, SpecialPage, XenEnv};
use mica_hv::xen::mem::{for_each_piece, GuestMemError, GuestMemory, GuestVirtMemory, PageWords};
use mica_hv::xen::{dispatch, DomainConfig, HypercallCtx, Outcome, Runstate, Xen};
use spin::Mutex;
use tock_registers::interfaces::{Readable, Writeable};

/// Every Xen-aware domain's Xen state.
pub static XEN: Mutex<Option<Xen>> = Mutex::new(None);

/// A page of a domain's physmap that is not its own RAM.
#[derive(Clone, Copy, Debug)]
pub struct Overlay {
    /// Guest frame it appears at (None: allocated, currently not placed).
    pub gfn: Option<u64>,
    /// Host frame behind it.
    pub hpa: u64,
    /// What it is.
    pub kind: OverlayKind,
}

/// Kinds of [`Overlay`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverlayKind {
    /// A hypervisor page (shared_info, grant frame, console ring), owned by the domain
    /// and freed with it.
    Special(SpecialPage),
    /// Another domain's frame, mapped through a grant.
    Foreign {
        /// Mapped read-only.
        readonly: bool,
    },
}

/// Frames of one domain lent before as whole pages ([`GuestMemory::words`]), with their
/// host frames: the event path's shared_info and vcpu_info pages, found again without the
/// overlay list and the RAM map. A slot is good while the physmap generation it was taken
/// at is current; every stage-2 change of the domain ([`set_stage2_page`]) starts a new
/// one. Read and written only under the Xen lock (so relaxed atomics suffice).
#[derive(Default)]
pub struct LentPages {
    generation: AtomicU64,
    slots: [LentSlot; LENT_SLOTS],
}

/// Pages [`LentPages`] remembers, by frame number modulo this (shared_info and a few
/// vcpu_info pages).
const LENT_SLOTS: usize = 4;

#[derive(Default)]
struct LentSlot {
    /// Physmap generation + 1 it was filled at (0: empty).
    taken: AtomicU64,
    gfn: AtomicU64,
    host: AtomicU64,
}

impl LentPages {
    /// Host address of writable page `gfn`, if remembered and still good.
    #[inline(always)]
    fn get(&self, gfn: u64) -> Option<u64> {
        let slot = &self.slots[gfn as usize % LENT_SLOTS];
        let current = self.generation.load(Ordering::Relaxed) + 1;
        (slot.taken.load(Ordering::Relaxed) == current && slot.gfn.load(Ordering::Relaxed) == gfn)
            .then(|| slot.host.load(Ordering::Relaxed))
    }

    fn remember(&self, gfn: u64, host: u64) {
        let slot = &self.slots[gfn as usize % LENT_SLOTS];
        slot.gfn.store(gfn, Ordering::Relaxed);
        slot.host.store(host, Ordering::Relaxed);
        let current = self.generation.load(Ordering::Relaxed) + 1;
        slot.taken.store(current, Ordering::Relaxed);
    }

    /// Forgets every slot: the physmap changes.
    fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts the Xen layer.
pub fn init() {
    *XEN.lock() = Some(Xen::new());
}

/// Registers a domain with the Xen layer.
pub fn create_domain(cfg: &DomainConfig) -> Result<(), mica_hv::xen::XenError> {
    let mut guard = XEN.lock();
    let xen = guard.as_mut().ok_or(mica_hv::xen::XenError::BadConfig)?;
    xen.create_domain(cfg, &mut ArchEnv::default())
}

/// Removes a domain's event channels and grants (before its memory goes).
pub fn destroy_domain(id: u16) {
    let mut guard = XEN.lock();
    if let Some(xen) = guard.as_mut() {
        if xen.domain(id).is_some() {
            xen.destroy_domain(id, &mut ArchEnv::default());
        }
    }
}

/// What a hypercall left to its caller.
pub struct Hypercall {
    pub outcome: Outcome,
    /// The event upcall became pending for the calling vCPU itself, and is not injected
    /// yet: the caller makes the upcall PPI pending before the vCPU runs or sleeps (the
    /// fast path does it under the same vGIC lock as its list-register refresh). Nobody
    /// else can tell the difference: the vCPU is running on this CPU, and the
    /// `evtchn_upcall_pending` flag already set keeps other senders from raising it again.
    pub upcall_self: bool,
}

impl Hypercall {
    /// The answer with no Xen layer.
    const NO_XEN: Self = Self {
        outcome: Outcome::err(errno::ENOSYS),
        upcall_self: false,
    };
}

/// Handles `HVC #0xEA1` from vCPU `vcpu` of `dom`.
// Inlined into the hypercall fast path: one call frame less on every hypercall.
#[inline(always)]
pub fn hypercall(dom: &Arc<Domain>, vcpu: usize, nr: u64, args: [u64; 5]) -> Hypercall {
    let mut guard = XEN.lock();
    let Some(xen) = guard.as_mut() else {
        return Hypercall::NO_XEN;
    };
    let mut env = ArchEnv::for_hypercall(dom, vcpu);
    let mut vmem = VcpuVirtMemory;
    let mut ctx = HypercallCtx {
        xen,
        caller: dom.id,
        vcpu: vcpu as u32,
        vmem: &mut vmem,
        env: &mut env,
    };
    // `dispatch` refuses a domain that is not Xen-aware with ENOSYS.
    let outcome = dispatch(&mut ctx, nr, args);
    let done = after_hypercall(xen, &mut env, outcome);
    // Dropping the environment looks at every cache slot (on every hypercall); with no
    // domain held there is nothing to release.
    if !env.holds_domains() {
        core::mem::forget(env);
    }
    done
}

/// `EVTCHNOP_send` on `port` (already read from the argument) by vCPU `vcpu` of `dom`: the
/// same as [`hypercall`] with it, for the fast path, which decodes this hypercall itself
/// as it is on the latency path of every notification.
#[inline(always)]
pub fn send_event(dom: &Arc<Domain>, vcpu: usize, port: u32) -> Hypercall {
    let mut guard = XEN.lock();
    let Some(xen) = guard.as_mut() else {
        return Hypercall::NO_XEN;
    };
    let mut env = ArchEnv::for_hypercall(dom, vcpu);
    let outcome = match xen.send_event(dom.id, port, &mut env) {
        Ok(()) => Outcome::ret(0),
        Err(e) => Outcome::err(e),
    };
    let done = after_hypercall(xen, &mut env, outcome);
    // As in `hypercall`.
    if !env.holds_domains() {
        core::mem::forget(env);
    }
    done
}

/// A hypercall's end under the Xen lock: drains the consoles it notified.
#[inline(always)]
fn after_hypercall(xen: &mut Xen, env: &mut ArchEnv<'_>, outcome: Outcome) -> Hypercall {
    if !env.console_dirty.is_empty() {
        let dirty = core::mem::take(&mut env.console_dirty);
        if dirty.overflowed {
            drain_all_consoles(xen, env);
        }
        for &d in dirty.listed() {
            drain_console(xen, d, env);
        }
    }
    Hypercall {
        outcome,
        upcall_self: env.upcall_self,
    }
}

/// [`crate::world::Vcpu::runstate`] before anything was published.
pub const RUNSTATE_UNKNOWN: u8 = u8::MAX;
/// ... for a vCPU of a domain that is not Xen-aware: nothing to publish, ever.
const RUNSTATE_NOT_XEN: u8 = u8::MAX - 1;

/// Publishes that vCPU `vcpu` of `dom` entered `state`, if that is a change. Must run on the
/// vCPU's physical CPU with its translation regime loaded (the area may be registered by
/// guest virtual address).
pub fn runstate(dom: &Arc<Domain>, vcpu: usize, state: Runstate) {
    let Some(v) = dom.vcpus.get(vcpu) else {
        return;
    };
    let code = state as u8;
    let last = v.runstate.load(Ordering::Relaxed);
    if last == code || last == RUNSTATE_NOT_XEN {
        return;
    }
    let mut guard = XEN.lock();
    let Some(xen) = guard.as_mut() else {
        return;
    };
    if xen.domain(dom.id).is_none() {
        v.runstate.store(RUNSTATE_NOT_XEN, Ordering::Relaxed);
        return;
    }
    v.runstate.store(code, Ordering::Relaxed);
    if state == Runstate::Running {
        // Running again ends a poll (`runstate_change` drops its Xen state below).
        v.poll_woken.store(false, Ordering::Relaxed);
    }
    let now_ns = crate::timer::ticks_to_ns(crate::timer::now());
    let mut env = ArchEnv::for_vcpu(dom, vcpu);
    xen.runstate_change(
        dom.id,
        vcpu as u32,
        state,
        now_ns,
        &mut VcpuVirtMemory,
        &mut env,
    );
    // As in `hypercall`.
    if !env.holds_domains() {
        core::mem::forget(env);
    }
}

/// Ends the SCHEDOP_poll of vCPU `vcpu` of `dom` (timed out, or not slept at all): returns
/// whether it was still polling (no polled port became pending).
pub fn end_poll(dom: &Domain, vcpu: usize) -> bool {
    let mut guard = XEN.lock();
    let Some(xen) = guard.as_mut() else {
        return false;
    };
    if let Some(v) = dom.vcpus.get(vcpu) {
        // Under the Xen lock: no waker can set it again until the vCPU polls again.
        v.poll_woken.store(false, Ordering::Relaxed);
    }
    xen.end_poll(dom.id, vcpu as u32)
}

/// A vCPU taken off its CPU: running becomes runnable (blocked and offline stay).
pub fn runstate_descheduled(dom: &Arc<Domain>, vcpu: usize) {
    let running = dom
        .vcpus
        .get(vcpu)
        .is_some_and(|v| v.runstate.load(Ordering::Relaxed) == Runstate::Running as u8);
    if running {
        runstate(dom, vcpu, Runstate::Runnable);
    }
}

fn drain_console(xen: &mut Xen, dom: DomId, env: &mut ArchEnv<'_>) {
    let mut buf = [0u8; 256];
    loop {
        let n = xen.console_poll_output(dom, &mut buf, env);
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            consoles::guest_byte(dom, b);
        }
    }
}

/// Housekeeping: drains every PV console ring (output a guest wrote without notifying).
pub fn poll_consoles() {
    let Some(mut guard) = XEN.try_lock() else {
        return;
    };
    let Some(xen) = guard.as_mut() else {
        return;
    };
    drain_all_consoles(xen, &mut ArchEnv::default());
}

/// Drains the PV console ring of every domain that has one.
fn drain_all_consoles(xen: &mut Xen, env: &mut ArchEnv<'_>) {
    let ids: Vec<u16> = world::DOMAINS
        .read()
        .iter()
        .flatten()
        .map(|d| d.id)
        .collect();
    for id in ids {
        if xen.domain(id).is_some_and(|d| d.console_port().is_some()) {
            drain_console(xen, id, env);
        }
    }
}

/// Keyboard input for a Xen-aware domain. Returns false if the domain takes its input
/// through its emulated UART instead.
pub fn console_input(dom: u16, bytes: &[u8]) -> bool {
    let mut guard = XEN.lock();
    let Some(xen) = guard.as_mut() else {
        return false;
    };
    let Some(d) = xen.domain(dom) else {
        return false;
    };
    let mut env = ArchEnv::default();
    if d.console_port().is_some() {
        xen.console_push_input(dom, bytes, &mut env);
        true
    } else if dom == 0 {
        xen.hwdom_console_input(bytes, &mut env);
        // dom0 may also read its emulated UART: give it both.
        false
    } else {
        false
    }
}

/// A domain at hand: borrowed (the caller's, kept alive by its run loop) or held.
enum DomainRef<'a> {
    Borrowed(&'a Domain),
    Held(Arc<Domain>),
}

impl core::ops::Deref for DomainRef<'_> {
    type Target = Domain;
    fn deref(&self) -> &Domain {
        match self {
            DomainRef::Borrowed(d) => d,
            DomainRef::Held(d) => d,
        }
    }
}

/// One domain's memory as the Xen layer sees it.
struct DomainMemory<'a> {
    dom: DomainRef<'a>,
}

impl DomainMemory<'_> {
    /// Host address of `gpa` and the bytes left in its page, for a read or (`write`) a
    /// write: a frame granted read-only refuses writes, as its stage-2 mapping does.
    fn host(&self, gpa: GuestPhysAddr, write: bool) -> Result<(u64, usize), GuestMemError> {
        let page = gpa.align_down(PAGE_SIZE).raw();
        let off = gpa.raw() - page;
        let left = (PAGE_SIZE - off) as usize;
        if let Some(o) = self
            .dom
            .overlays
            .lock()
            .iter()
            .find(|o| o.gfn == Some(page >> 12))
        {
            if write && o.kind == (OverlayKind::Foreign { readonly: true }) {
                return Err(GuestMemError::ReadOnly);
            }
            return Ok((o.hpa + off, left));
        }
        let (host, avail) = self.dom.ram_to_host(gpa).ok_or(GuestMemError::Unmapped)?;
        Ok((host.raw(), left.min(avail as usize)))
    }

    /// Host address of writable page `gfn`, looked up and remembered in [`LentPages`]
    /// (out of line: the event path finds its pages there already).
    #[cold]
    #[inline(never)]
    fn lend(&self, gfn: u64) -> Option<u64> {
        let gpa = GuestPhysAddr::from_pfn(gfn)?;
        let (host, left) = self.host(gpa, true).ok()?;
        if left < PAGE_SIZE as usize {
            return None;
        }
        self.dom.lent.remember(gfn, host);
        Some(host)
    }

    /// Whether frame `gfn` is the domain's own (RAM or a page Mica gave it), not another
    /// domain's frame mapped through a grant.
    fn owns(&self, gfn: u64) -> bool {
        !self
            .dom
            .overlays
            .lock()
            .iter()
            .any(|o| o.gfn == Some(gfn) && matches!(o.kind, OverlayKind::Foreign { .. }))
    }
}

impl GuestMemory for DomainMemory<'_> {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
        let locate = |at| self.host(GuestPhysAddr::new(at), false);
        for_each_piece(gpa.raw(), buf.len(), locate, |host, done, n| {
            // SAFETY: `host..host+n` is RAM of this domain (or a page it was given), identity
            // mapped; the guest may change it concurrently, which only affects the values.
            unsafe {
                core::ptr::copy_nonoverlapping(host as *const u8, buf[done..].as_mut_ptr(), n)
            };
            Ok(())
        })
    }

    fn write(&mut self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        let locate = |at| self.host(GuestPhysAddr::new(at), true);
        for_each_piece(gpa.raw(), data.len(), locate, |host, done, n| {
            // SAFETY: as for `read`; the page belongs to this domain.
            unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), host as *mut u8, n) };
            Ok(())
        })
    }

    fn barrier(&self) {
        aarch64_cpu::asm::barrier::dmb(aarch64_cpu::asm::barrier::ISH);
    }

    fn words(&self, gfn: u64) -> Option<&PageWords> {
        let host = match self.dom.lent.get(gfn) {
            Some(host) => host,
            None => self.lend(gfn)?,
        };
        // SAFETY: a whole 4 KiB page of this domain's RAM (or a page it was given), page
        // aligned and identity-mapped as normal memory, writable by the guest (found now,
        // or remembered from a look-up made since the last physmap change). It stays
        // mapped while the domain lives, which `self` ensures (a borrowed or held
        // reference), and stays this frame's while `self` is borrowed: every physmap
        // change goes through an `ArchEnv` under the Xen lock, which this operation holds,
        // and its own `ArchEnv` cannot be called meanwhile. The guest updates these words
        // atomically too, so atomics are the type for them.
        Some(unsafe { &*(host as *const PageWords) })
    }

    fn cmpxchg_u16(
        &mut self,
        gpa: GuestPhysAddr,
        expected: u16,
        new: u16,
    ) -> Result<u16, GuestMemError> {
        if !gpa.is_aligned(2) {
            return Err(GuestMemError::Misaligned);
        }
        let (p, _) = self.host(gpa, true)?;
        // SAFETY: a 2-byte aligned half-word of this domain's RAM, identity-mapped.
        let a = unsafe { AtomicU16::from_ptr(p as *mut u16) };
        Ok(
            match a.compare_exchange(expected, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(v) | Err(v) => v,
            },
        )
    }
}

/// The calling vCPU's virtual address space, through the MMU's own translation
/// (`AT S12E1R/W`), so hypercall buffers are found exactly as the guest sees them.
struct VcpuVirtMemory;

impl VcpuVirtMemory {
    /// Host address of guest virtual `gva` for a read or write, and the bytes left in its page.
    fn translate(gva: u64, write: bool) -> Result<(u64, usize), GuestMemError> {
        let saved = PAR_EL1.get();
        if write {
            // SAFETY: an address translation only updates PAR_EL1, which is restored below.
            unsafe { core::arch::asm!("at s12e1w, {}", "isb", in(reg) gva, options(nostack)) };
        } else {
            // SAFETY: as above.
            unsafe { core::arch::asm!("at s12e1r, {}", "isb", in(reg) gva, options(nostack)) };
        }
        let par = PAR_EL1.get();
        PAR_EL1.set(saved);
        if par & 1 != 0 {
            return Err(GuestMemError::Unmapped);
        }
        let off = gva & (PAGE_SIZE - 1);
        let pa = (par & 0x0000_ffff_ffff_f000) | off;
        // A buffer the guest placed on a device (dom0's passed-through MMIO) is refused:
        // Mica's own map has devices as device memory, where its copies could fault.
        if !crate::mmu::is_host_ram(pa) {
            return Err(GuestMemError::Unmapped);
        }
        Ok((pa, (PAGE_SIZE - off) as usize))
    }
}

/// The 32-bit word at guest virtual address `gva` of the calling vCPU (a hypercall's
/// argument), if `gva` is aligned and readable; `None` leaves the error to the generic
/// path.
#[inline(always)]
pub fn read_arg_u32(gva: u64) -> Option<u32> {
    if !gva.is_multiple_of(4) {
        return None;
    }
    // Aligned: the word is within one page.
    let (pa, _) = VcpuVirtMemory::translate(gva, false).ok()?;
    // SAFETY: an aligned word of memory the guest may read, as `read_virt` says; the
    // guest may change it concurrently, hence the atomic load.
    Some(unsafe { AtomicU32::from_ptr(pa as *mut u32) }.load(Ordering::Relaxed))
}

impl GuestVirtMemory for VcpuVirtMemory {
    fn read_virt(&self, gva: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
        let locate = |at| Self::translate(at, false);
        for_each_piece(gva, buf.len(), locate, |pa, done, n| {
            // SAFETY: the MMU translated the guest address to this host address through the
            // guest's own stage 2, so it is memory the guest may read; identity-mapped here.
            unsafe { core::ptr::copy_nonoverlapping(pa as *const u8, buf[done..].as_mut_ptr(), n) };
            Ok(())
        })
    }

    fn write_virt(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestMemError> {
        let locate = |at| Self::translate(at, true);
        for_each_piece(gva, data.len(), locate, |pa, done, n| {
            // SAFETY: as for `read_virt`, translated for writing.
            unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), pa as *mut u8, n) };
            Ok(())
        })
    }
}

/// Domains whose memory one Xen operation keeps at hand (an operation touches at most the
/// caller and one peer; more evict the oldest).
const CACHED_DOMAINS: usize = 2;

/// The arch layer's services for one Xen operation. Nothing here allocates unless a
/// console needs draining: this sits on every hypercall's path.
#[derive(Default)]
struct ArchEnv<'a> {
    mems: [Option<(DomId, DomainMemory<'a>)>; CACHED_DOMAINS],
    /// Slot the next uncached domain takes.
    next_slot: usize,
    /// Whether a slot was ever given a held domain (`DomainRef::Held`).
    held: bool,
    /// The vCPU (domain, index) the operation is for, running on this CPU: its domain is
    /// at hand without a look-up.
    caller: Option<(&'a Arc<Domain>, usize)>,
    /// The caller's memory (made on first use), at hand without a look-up.
    own: Option<DomainMemory<'a>>,
    /// Whether an upcall for the caller's own vCPU is left to the caller to inject
    /// (hypercalls: [`Hypercall::upcall_self`]).
    defer_upcall_self: bool,
    /// Such an upcall was raised.
    upcall_self: bool,
    /// Domains whose console ring to drain after the operation (their backend was
    /// notified).
    console_dirty: DomainList,
}

/// A short list of domains, with no allocation (it sits on every hypercall's path); past
/// its capacity it only records that it overflowed.
#[derive(Default)]
struct DomainList {
    ids: [DomId; 4],
    len: usize,
    overflowed: bool,
}

impl DomainList {
    fn is_empty(&self) -> bool {
        self.len == 0 && !self.overflowed
    }

    fn listed(&self) -> &[DomId] {
        &self.ids[..self.len]
    }

    /// Adds `id` unless it is listed; remembers an overflow when full.
    fn insert(&mut self, id: DomId) {
        if self.listed().contains(&id) {
            return;
        }
        match self.ids.get_mut(self.len) {
            Some(slot) => {
                *slot = id;
                self.len += 1;
            }
            None => self.overflowed = true,
        }
    }
}

impl<'a> ArchEnv<'a> {
    /// The environment of an operation for vCPU `vcpu` of `dom`, running on this CPU.
    fn for_vcpu(dom: &'a Arc<Domain>, vcpu: usize) -> Self {
        Self {
            caller: Some((dom, vcpu)),
            ..Self::default()
        }
    }

    /// The environment of a hypercall by vCPU `vcpu` of `dom`, running on this CPU: an
    /// upcall it raises for itself is left to the caller ([`Hypercall::upcall_self`]).
    #[inline(always)]
    fn for_hypercall(dom: &'a Arc<Domain>, vcpu: usize) -> Self {
        Self {
            defer_upcall_self: true,
            ..Self::for_vcpu(dom, vcpu)
        }
    }

    /// Domain `id`: the caller's or one already at hand, else looked up.
    fn domain(&self, id: DomId) -> Option<Arc<Domain>> {
        if let Some((d, _)) = self.caller.filter(|(d, _)| d.id == id) {
            return Some(d.clone());
        }
        let cached = self.mems.iter().flatten().find(|(cached, _)| *cached == id);
        match cached.map(|(_, mem)| &mem.dom) {
            Some(DomainRef::Held(d)) => Some(d.clone()),
            // The slots hold only held views; the caller was answered above.
            Some(DomainRef::Borrowed(_)) | None => any_domain(id),
        }
    }

    /// Whether a cache slot holds a domain (a reference to release).
    fn holds_domains(&self) -> bool {
        self.held
    }

    /// Makes the upcall PPI pending for `vcpu` of `dom` (`own`: the caller's vCPU) and
    /// kicks it (out of line: a hypercall's upcall for its own vCPU is left to the caller).
    #[inline(never)]
    fn inject_upcall(&mut self, dom: DomId, vcpu: usize, own: bool) {
        let Some(d) = self.domain(dom) else {
            return;
        };
        let set = d.vgic.inject(vcpu, EVTCHN_PPI);
        if own {
            run::kick_others(&d, vcpu, set);
        } else {
            run::kick(&d, set);
        }
    }

    /// [`XenEnv::memory`] of a domain other than the caller's (out of line: the caller's
    /// own memory, the usual case, needs no frame).
    #[inline(never)]
    fn peer_memory(&mut self, dom: DomId) -> Option<&mut dyn GuestMemory> {
        let cached = self
            .mems
            .iter()
            .position(|slot| slot.as_ref().is_some_and(|(id, _)| *id == dom));
        let pos = match cached {
            Some(p) => p,
            None => {
                let d = DomainRef::Held(self.domain(dom)?);
                self.held = true;
                let p = self.next_slot % CACHED_DOMAINS;
                self.next_slot = p + 1;
                self.mems[p] = Some((dom, DomainMemory { dom: d }));
                p
            }
        };
        self.mems[pos]
            .as_mut()
            .map(|(_, m)| m as &mut dyn GuestMemory)
    }

    /// Forgets `dom`'s cached memory view (its stage 2 changed).
    fn forget(&mut self, dom: DomId) {
        for slot in &mut self.mems {
            if slot.as_ref().is_some_and(|(id, _)| *id == dom) {
                *slot = None;
            }
        }
    }
}

fn any_domain(id: DomId) -> Option<Arc<Domain>> {
    world::DOMAINS
        .read()
        .get(usize::from(id))
        .and_then(|d| d.clone())
}

/// Points `gfn` of `dom` at host frame `hpa` (or unmaps it) and drops stale translations.
fn set_stage2_page(dom: &Domain, gfn: u64, target: Option<(u64, bool)>) -> Result<(), i32> {
    let mut frames = FRAMES.lock();
    let frames = frames.as_mut().ok_or(errno::ENOMEM)?;
    let mut table = dom.stage2.lock();
    let table = table.as_mut().ok_or(errno::ESRCH)?;
    let output = target.map(|(hpa, readonly)| {
        let mut attrs = stage2_ram();
        if readonly {
            attrs = with(attrs, DESC::S2AP::ReadOnly);
        }
        (hpa, attrs)
    });
    let gpa = gfn.checked_mul(PAGE_SIZE).ok_or(errno::EINVAL)?;
    // Before the change (which may half succeed): no page lent from now on is stale.
    dom.lent.forget_all();
    table
        .set_page(&mut FrameTables(frames), gpa, output)
        .map_err(|_| errno::EINVAL)?;
    crate::stage2::flush_vmid(dom.vttbr);
    Ok(())
}

impl XenEnv for ArchEnv<'_> {
    fn memory(&mut self, dom: DomId) -> Option<&mut dyn GuestMemory> {
        if let Some((caller, _)) = self.caller.filter(|(c, _)| c.id == dom) {
            let own = self.own.get_or_insert(DomainMemory {
                dom: DomainRef::Borrowed(caller),
            });
            return Some(own);
        }
        self.peer_memory(dom)
    }

    fn map_special_page(&mut self, dom: DomId, page: SpecialPage, gfn: u64) -> Result<(), i32> {
        let d = any_domain(dom).ok_or(errno::ESRCH)?;
        let existing = d
            .overlays
            .lock()
            .iter()
            .find(|o| o.kind == OverlayKind::Special(page))
            .copied();
        let hpa = match existing {
            Some(o) => {
                if let Some(old) = o.gfn {
                    set_stage2_page(&d, old, None)?;
                }
                o.hpa
            }
            None => {
                let mut frames = FRAMES.lock();
                let frames = frames.as_mut().ok_or(errno::ENOMEM)?;
                let hpa = frames
                    .alloc(PAGE_SIZE, PAGE_SIZE)
                    .ok_or(errno::ENOMEM)?
                    .raw();
                // SAFETY: a fresh, identity-mapped page nobody else uses.
                unsafe { core::ptr::write_bytes(hpa as *mut u8, 0, PAGE_SIZE as usize) };
                hpa
            }
        };
        set_stage2_page(&d, gfn, Some((hpa, false)))?;
        let mut overlays = d.overlays.lock();
        overlays.retain(|o| o.kind != OverlayKind::Special(page) && o.gfn != Some(gfn));
        overlays.push(Overlay {
            gfn: Some(gfn),
            hpa,
            kind: OverlayKind::Special(page),
        });
        self.forget(dom);
        Ok(())
    }

    fn unmap_special_page(&mut self, dom: DomId, page: SpecialPage, gfn: u64) {
        let Some(d) = any_domain(dom) else {
            return;
        };
        let _ = set_stage2_page(&d, gfn, None);
        for o in d.overlays.lock().iter_mut() {
            if o.kind == OverlayKind::Special(page) && o.gfn == Some(gfn) {
                o.gfn = None;
            }
        }
    }

    fn map_foreign(
        &mut self,
        grantee: DomId,
        gfn: u64,
        granter: DomId,
        granter_gfn: u64,
        readonly: bool,
    ) -> Result<(), i32> {
        let src = any_domain(granter).ok_or(errno::ESRCH)?;
        let dst = any_domain(grantee).ok_or(errno::ESRCH)?;
        let gpa = GuestPhysAddr::new(granter_gfn.checked_mul(PAGE_SIZE).ok_or(errno::EINVAL)?);
        let view = DomainMemory {
            dom: DomainRef::Held(src),
        };
        // Only the granter's own frames: a frame it has itself through a grant (perhaps
        // read-only) is not its to pass on, as on Xen (the page's owner is checked).
        if !view.owns(granter_gfn) {
            return Err(errno::EINVAL);
        }
        let (hpa, _) = view.host(gpa, false).map_err(|_| errno::EINVAL)?;
        set_stage2_page(&dst, gfn, Some((hpa, readonly)))?;
        let mut overlays = dst.overlays.lock();
        overlays.retain(|o| o.gfn != Some(gfn));
        overlays.push(Overlay {
            gfn: Some(gfn),
            hpa,
            kind: OverlayKind::Foreign { readonly },
        });
        self.forget(grantee);
        Ok(())
    }

    fn unmap_foreign(&mut self, grantee: DomId, gfn: u64) {
        let Some(d) = any_domain(grantee) else {
            return;
        };
        let _ = set_stage2_page(&d, gfn, None);
        d.overlays
            .lock()
            .retain(|o| !(o.gfn == Some(gfn) && matches!(o.kind, OverlayKind::Foreign { .. })));
    }

    fn raise_upcall(&mut self, dom: DomId, vcpu: u32) {
        let vcpu = vcpu as usize;
        let own = self
            .caller
            .is_some_and(|(c, index)| c.id == dom && index == vcpu);
        if own && self.defer_upcall_self {
            self.upcall_self = true;
            return;
        }
        self.inject_upcall(dom, vcpu, own);
    }

    fn wake_vcpu(&mut self, dom: DomId, vcpu: u32) {
        let vcpu = vcpu as usize;
        let Some(d) = self.domain(dom) else {
            return;
        };
        let Some(v) = d.vcpus.get(vcpu) else {
            return;
        };
        // Before the wake, which takes the run-queue lock `run::block_poll` checks under.
        v.poll_woken.store(true, Ordering::Release);
        let mut set = VcpuSet::default();
        set.insert(vcpu);
        match self.caller {
            Some((c, index)) if c.id == dom && index == vcpu => {}
            _ => run::kick(&d, set),
        }
    }

    fn now_ns(&self) -> u64 {
        crate::timer::ticks_to_ns(crate::timer::now())
    }

    fn console_write(&mut self, dom: DomId, bytes: &[u8]) {
        for &b in bytes {
            consoles::guest_byte(dom, b);
        }
    }

    fn backend_notify(&mut self, dom: DomId, backend: Backend) {
        if backend == Backend::Console {
            self.console_dirty.insert(dom);
        }
    }
}

/// Hypervisor pages a dead domain leaves behind, to give back.
pub fn special_pages(overlays: &[Overlay]) -> impl Iterator<Item = HostRange> + '_ {
    overlays
        .iter()
        .filter(|o| matches!(o.kind, OverlayKind::Special(_)))
        .filter_map(|o| HostRange::new(HostPhysAddr::new(o.hpa), PAGE_SIZE))
}
