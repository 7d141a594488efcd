//! Event channels, 2-level ABI: a bounded per-domain port table, with the pending and mask
//! bits in the guest's shared_info page and the selector/upcall flag in its vcpu_info.
//! FIFO (EVTCHNOP_init_control) is refused with -ENOSYS, so Linux uses 2-level.

use super::env::{Backend, XenEnv};
use super::hypercall::HypercallCtx;
use super::mem::{read_virt_obj, write_virt_obj, GuestMemory, PageWords};
use super::{SharedInfoLayout, Xen, XenDomain};
use crate::addr::{GuestPhysAddr, PAGE_SIZE};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use mica_guest_abi::xen::errno::*;
use mica_guest_abi::xen::evtchn::*;
use mica_guest_abi::xen::shared::{VCPU_INFO_PENDING_SEL, VCPU_INFO_UPCALL_PENDING};
use mica_guest_abi::xen::{DomId, EvtchnPort, DOMID_SELF};

/// What a port is connected to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PortState {
    /// Not allocated.
    Free,
    /// Allocated; `remote` may bind to it.
    Unbound { remote: DomId },
    /// Connected to `remote_port` of `remote` (possibly the same domain).
    Interdomain {
        remote: DomId,
        remote_port: EvtchnPort,
    },
    /// Bound to a virtual IRQ.
    Virq(u32),
    /// Inter-vCPU notification.
    Ipi,
    /// The far end is a backend inside Mica.
    Backend(Backend),
}

#[derive(Clone, Copy, Debug)]
struct Port {
    state: PortState,
    /// vCPU that receives the upcall.
    vcpu: u32,
}

/// A domain's port table. Port 0 is reserved and never allocated.
#[derive(Debug)]
pub(crate) struct EventChannels {
    ports: Vec<Port>,
    max_ports: u32,
    /// `virq_ports[vcpu][virq]`: the bound port, 0 if none.
    virq_ports: Vec<[EvtchnPort; NR_VIRQS as usize]>,
}

/// VIRQs bound per domain rather than per vCPU (must be bound on vCPU 0; may move).
fn virq_is_global(virq: u32) -> bool {
    !matches!(virq, VIRQ_TIMER | VIRQ_DEBUG | VIRQ_XENOPROF | VIRQ_XENPMU)
}

impl EventChannels {
    pub(crate) fn new(max_ports: u32, nr_vcpus: u32) -> Self {
        Self {
            ports: alloc::vec![Port {
                state: PortState::Free,
                vcpu: 0
            }],
            max_ports,
            virq_ports: alloc::vec![[0; NR_VIRQS as usize]; nr_vcpus as usize],
        }
    }

    #[inline(always)]
    fn get(&self, port: EvtchnPort) -> Option<&Port> {
        if port == 0 {
            return None;
        }
        self.ports.get(port as usize)
    }

    fn get_mut(&mut self, port: EvtchnPort) -> Option<&mut Port> {
        if port == 0 {
            return None;
        }
        self.ports.get_mut(port as usize)
    }

    /// The state of an allocated port.
    #[inline(always)]
    pub(crate) fn state(&self, port: EvtchnPort) -> Option<PortState> {
        self.get(port)
            .map(|p| p.state)
            .filter(|s| *s != PortState::Free)
    }

    #[inline(always)]
    fn vcpu_of(&self, port: EvtchnPort) -> Option<u32> {
        self.get(port).map(|p| p.vcpu)
    }

    /// Whether `port` is in range (allocated or not).
    fn in_range(&self, port: EvtchnPort) -> bool {
        port != 0 && port < self.max_ports
    }

    /// Allocates the lowest free port.
    pub(crate) fn alloc(&mut self, state: PortState, vcpu: u32) -> Option<EvtchnPort> {
        let free = self
            .ports
            .iter()
            .skip(1)
            .position(|p| p.state == PortState::Free)
            .map(|i| i + 1);
        let index = match free {
            Some(i) => i,
            None if (self.ports.len() as u32) < self.max_ports => {
                self.ports.push(Port {
                    state: PortState::Free,
                    vcpu: 0,
                });
                self.ports.len() - 1
            }
            None => return None,
        };
        self.ports[index] = Port { state, vcpu };
        Some(index as EvtchnPort)
    }

    fn set_state(&mut self, port: EvtchnPort, state: PortState) {
        if let Some(p) = self.get_mut(port) {
            p.state = state;
        }
    }

    fn free(&mut self, port: EvtchnPort) {
        let Some(p) = self.get(port).copied() else {
            return;
        };
        if let PortState::Virq(virq) = p.state {
            if let Some(slot) = self
                .virq_ports
                .get_mut(p.vcpu as usize)
                .and_then(|t| t.get_mut(virq as usize))
            {
                *slot = 0;
            }
        }
        if let Some(p) = self.get_mut(port) {
            *p = Port {
                state: PortState::Free,
                vcpu: 0,
            };
        }
    }

    pub(crate) fn virq_port(&self, virq: u32, vcpu: u32) -> Option<EvtchnPort> {
        let port = *self.virq_ports.get(vcpu as usize)?.get(virq as usize)?;
        (port != 0).then_some(port)
    }

    /// Every allocated port.
    pub(crate) fn allocated(&self) -> impl Iterator<Item = (EvtchnPort, PortState)> + '_ {
        self.ports
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, p)| p.state != PortState::Free)
            .map(|(i, p)| (i as EvtchnPort, p.state))
    }
}

#[inline(always)]
fn word_and_bit(port: EvtchnPort) -> (u64, u64) {
    (u64::from(port / 64), 1u64 << (port % 64))
}

/// A guest page lent by the memory view, with its frame number.
#[derive(Clone, Copy)]
struct Lent<'m> {
    gfn: u64,
    words: &'m PageWords,
}

impl<'m> Lent<'m> {
    fn of(mem: &'m dyn GuestMemory, gfn: u64) -> Option<Self> {
        Some(Self {
            gfn,
            words: mem.words(gfn)?,
        })
    }

    /// The word at byte `offset` of the page (a multiple of 8 below the page size).
    fn at(&self, offset: u64) -> Option<&'m AtomicU64> {
        if !offset.is_multiple_of(8) {
            return None;
        }
        self.words.get((offset / 8) as usize)
    }
}

/// The words of shared_info's event bitmaps holding one port: (pending, mask).
fn event_words<'m>(
    mem: &'m dyn GuestMemory,
    si_gfn: u64,
    layout: &SharedInfoLayout,
    word: u64,
) -> Option<(Lent<'m>, &'m AtomicU64, &'m AtomicU64)> {
    let page = Lent::of(mem, si_gfn)?;
    let pending = page.at(layout.evtchn_pending.checked_add(word * 8)?)?;
    let mask = page.at(layout.evtchn_mask.checked_add(word * 8)?)?;
    Some((page, pending, mask))
}

/// A vcpu_info's upcall flag (as the word holding it and the flag's bit 0 in that word)
/// and its pending selector. `shared` is a page already lent (shared_info, which holds
/// the legacy vcpu_info slots), reused when the vcpu_info is there.
fn vcpu_info_words<'m>(
    mem: &'m dyn GuestMemory,
    vcpu_info: GuestPhysAddr,
    shared: Option<Lent<'m>>,
) -> Option<(&'m AtomicU64, u64, &'m AtomicU64)> {
    let lend = |gfn: u64, known: Option<Lent<'m>>| match known {
        Some(page) if page.gfn == gfn => Some(page),
        _ => Lent::of(mem, gfn),
    };
    let flag_at = vcpu_info.checked_add(VCPU_INFO_UPCALL_PENDING as u64)?;
    let sel_at = vcpu_info.checked_add(VCPU_INFO_PENDING_SEL as u64)?;
    let flag_page = lend(flag_at.pfn(), shared)?;
    // Usually the same page (unless the vcpu_info straddles two).
    let sel_page = lend(sel_at.pfn(), Some(flag_page))?;
    let flag_off = flag_at.raw() % PAGE_SIZE;
    let flag_word = flag_page.at(flag_off & !7)?;
    let flag_bit = 1u64 << (8 * (flag_off % 8));
    Some((flag_word, flag_bit, sel_page.at(sel_at.raw() % PAGE_SIZE)?))
}

/// Makes `port` of `domid` pending (Xen's 2-level `set_pending`): sets the pending bit,
/// and if the port is unmasked and its selector bit was clear, sets the selector and the
/// vCPU's upcall flag, raising the upcall on the flag's 0→1 transition. A vCPU of the
/// domain blocked in SCHEDOP_poll on the port is woken, masked or not.
pub(crate) fn set_pending(xen: &mut Xen, domid: DomId, port: EvtchnPort, env: &mut dyn XenEnv) {
    let Some(dom) = xen.domains.get_mut(&domid) else {
        return;
    };
    if mark_pending(dom, domid, port, env) {
        wake_pollers(dom, domid, port, env);
    }
}

/// [`set_pending`] without the pollers, on domain `domid` (`dom`); returns whether the
/// pending bit went from 0 to 1.
fn mark_pending(dom: &mut XenDomain, domid: DomId, port: EvtchnPort, env: &mut dyn XenEnv) -> bool {
    let Some(vcpu) = dom.evtchn.vcpu_of(port) else {
        return false;
    };
    let (word, bit) = word_and_bit(port);
    let Some(si) = dom.shared_info_gpa() else {
        // Kept until the guest maps shared_info, then replayed.
        return match dom.early_pending.get_mut(word as usize) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                true
            }
            _ => false,
        };
    };
    let vcpu_info = dom.vcpu_info_gpa(vcpu);
    let Some(mem) = env.memory(domid) else {
        return false;
    };
    let Some((page, pending, mask)) = event_words(mem, si.pfn(), &dom.layout, word) else {
        return false;
    };
    if pending.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
        return false;
    }
    if mask.load(Ordering::Acquire) & bit != 0 {
        return true;
    }
    if mark_selector(mem, vcpu_info, Some(page), word) {
        env.raise_upcall(domid, vcpu);
    }
    true
}

/// Wakes every vCPU of domain `domid` (`dom`) blocked in SCHEDOP_poll with `port` in its
/// list, ending its poll.
fn wake_pollers(dom: &mut XenDomain, domid: DomId, port: EvtchnPort, env: &mut dyn XenEnv) {
    if dom.polling == 0 {
        return;
    }
    for index in 0..dom.vcpus.len() as u32 {
        let polls_port = dom.vcpus[index as usize]
            .poll
            .as_ref()
            .is_some_and(|ports| ports.contains(&port));
        if polls_port && dom.end_poll(index) {
            env.wake_vcpu(domid, index);
        }
    }
}

/// Sets selector bit `word` in a vcpu_info and, if it was clear, the upcall flag (bit 0 of
/// `evtchn_upcall_pending`, as Xen's `test_and_set_bit`). Returns whether the flag went
/// from 0 to 1 (the PPI must be raised). `shared`: shared_info, if already lent.
fn mark_selector(
    mem: &dyn GuestMemory,
    vcpu_info: Option<GuestPhysAddr>,
    shared: Option<Lent<'_>>,
    word: u64,
) -> bool {
    let Some((flag, flag_bit, sel)) = vcpu_info.and_then(|vi| vcpu_info_words(mem, vi, shared))
    else {
        return false;
    };
    if sel.fetch_or(1 << word, Ordering::AcqRel) & (1 << word) != 0 {
        return false;
    }
    flag.fetch_or(flag_bit, Ordering::AcqRel) & flag_bit == 0
}

/// Replays events that became pending before shared_info was mapped.
pub(crate) fn replay_early(xen: &mut Xen, domid: DomId, env: &mut dyn XenEnv) {
    let Some(dom) = xen.domains.get_mut(&domid) else {
        return;
    };
    let early = core::mem::replace(&mut dom.early_pending, [0; 64]);
    for (w, bits) in early.iter().enumerate() {
        for b in 0..64 {
            if bits & (1 << b) != 0 {
                set_pending(xen, domid, (w * 64 + b) as EvtchnPort, env);
            }
        }
    }
}

fn clear_pending(xen: &Xen, domid: DomId, port: EvtchnPort, env: &mut dyn XenEnv) {
    let Some(dom) = xen.domains.get(&domid) else {
        return;
    };
    let Some(si) = dom.shared_info_gpa() else {
        return;
    };
    let (word, bit) = word_and_bit(port);
    if let Some((_, pending, _)) = env
        .memory(domid)
        .and_then(|mem| event_words(mem, si.pfn(), &dom.layout, word))
    {
        pending.fetch_and(!bit, Ordering::AcqRel);
    }
}

/// Whether `port` of `domid` is pending in shared_info.
pub(crate) fn is_pending(xen: &Xen, domid: DomId, port: EvtchnPort, env: &mut dyn XenEnv) -> bool {
    let Some(dom) = xen.domains.get(&domid) else {
        return false;
    };
    let (word, bit) = word_and_bit(port);
    let Some(si) = dom.shared_info_gpa() else {
        return dom
            .early_pending
            .get(word as usize)
            .is_some_and(|w| w & bit != 0);
    };
    env.memory(domid)
        .and_then(|mem| event_words(mem, si.pfn(), &dom.layout, word))
        .is_some_and(|(_, pending, _)| pending.load(Ordering::Acquire) & bit != 0)
}

/// Closes one port of `domid`; the far end of an inter-domain channel goes back to
/// unbound. Ports owned by a Mica backend cannot be closed by the guest.
fn close_port(
    xen: &mut Xen,
    domid: DomId,
    port: EvtchnPort,
    env: &mut dyn XenEnv,
) -> Result<(), i32> {
    let dom = xen.domains.get_mut(&domid).ok_or(ESRCH)?;
    let state = dom.evtchn.state(port).ok_or(EINVAL)?;
    match state {
        PortState::Backend(_) => return Err(EINVAL),
        PortState::Interdomain {
            remote,
            remote_port,
        } => {
            if let Some(r) = xen.domains.get_mut(&remote) {
                if r.evtchn.state(remote_port)
                    == Some(PortState::Interdomain {
                        remote: domid,
                        remote_port: port,
                    })
                {
                    r.evtchn
                        .set_state(remote_port, PortState::Unbound { remote: domid });
                }
            }
        }
        _ => {}
    }
    if let Some(dom) = xen.domains.get_mut(&domid) {
        dom.evtchn.free(port);
    }
    clear_pending(xen, domid, port, env);
    Ok(())
}

/// Closes every port of a dying domain (backend ports too) so peers see them unbound.
pub(crate) fn teardown(xen: &mut Xen, domid: DomId, env: &mut dyn XenEnv) {
    let ports: Vec<(EvtchnPort, PortState)> = match xen.domains.get(&domid) {
        Some(d) => d.evtchn.allocated().collect(),
        None => return,
    };
    for (port, state) in ports {
        if let PortState::Interdomain {
            remote,
            remote_port,
        } = state
        {
            if remote != domid {
                let _ = close_port(xen, domid, port, env);
                // The peer learns about it through its (now unbound) port.
                set_pending(xen, remote, remote_port, env);
                continue;
            }
        }
        if let Some(d) = xen.domains.get_mut(&domid) {
            d.evtchn.free(port);
        }
    }
}

/// Sends an event from `port` of `domid` to wherever it leads.
#[inline(always)]
pub(crate) fn send(
    xen: &mut Xen,
    domid: DomId,
    port: EvtchnPort,
    env: &mut dyn XenEnv,
) -> Result<(), i32> {
    let dom = xen.domains.get(&domid).ok_or(ESRCH)?;
    match dom.evtchn.state(port).ok_or(EINVAL)? {
        PortState::Interdomain {
            remote,
            remote_port,
        } => set_pending(xen, remote, remote_port, env),
        PortState::Ipi => set_pending(xen, domid, port, env),
        PortState::Backend(b) => env.backend_notify(domid, b),
        // Xen drops sends on a port nobody has bound yet.
        PortState::Unbound { .. } => {}
        PortState::Virq(_) | PortState::Free => return Err(EINVAL),
    }
    Ok(())
}

/// `event_channel_op(cmd, arg)`.
// Out of line: see `dispatch_inner`.
#[inline(never)]
pub(crate) fn event_channel_op(ctx: &mut HypercallCtx<'_>, cmd: u64, arg: u64) -> Result<i64, i32> {
    let caller = ctx.caller;
    match cmd {
        EVTCHNOP_ALLOC_UNBOUND => {
            let mut op: EvtchnAllocUnbound = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let owner = ctx.xen.target(caller, op.dom)?;
            let remote = if op.remote_dom == DOMID_SELF {
                caller
            } else {
                op.remote_dom
            };
            if !ctx.xen.domains.contains_key(&remote) {
                return Err(ESRCH);
            }
            let dom = ctx.xen.domains.get_mut(&owner).ok_or(ESRCH)?;
            op.port = dom
                .evtchn
                .alloc(PortState::Unbound { remote }, 0)
                .ok_or(ENOSPC)?;
            write_back(ctx, owner, op.port, arg, &op)
        }
        EVTCHNOP_BIND_INTERDOMAIN => {
            let mut op: EvtchnBindInterdomain = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let remote = if op.remote_dom == DOMID_SELF {
                caller
            } else {
                op.remote_dom
            };
            let rdom = ctx.xen.domains.get(&remote).ok_or(ESRCH)?;
            match rdom.evtchn.state(op.remote_port) {
                Some(PortState::Unbound { remote: allowed }) if allowed == caller => {}
                _ => return Err(EINVAL),
            }
            let dom = ctx.xen.domains.get_mut(&caller).ok_or(ESRCH)?;
            let local = dom
                .evtchn
                .alloc(
                    PortState::Interdomain {
                        remote,
                        remote_port: op.remote_port,
                    },
                    0,
                )
                .ok_or(ENOSPC)?;
            if let Some(r) = ctx.xen.domains.get_mut(&remote) {
                r.evtchn.set_state(
                    op.remote_port,
                    PortState::Interdomain {
                        remote: caller,
                        remote_port: local,
                    },
                );
            }
            op.local_port = local;
            write_back(ctx, caller, local, arg, &op)?;
            // Like Xen: the new port starts pending, so nothing sent earlier is missed.
            set_pending(ctx.xen, caller, local, ctx.env);
            Ok(0)
        }
        EVTCHNOP_BIND_VIRQ => {
            let mut op: EvtchnBindVirq = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let dom = ctx.xen.domains.get_mut(&caller).ok_or(ESRCH)?;
            if op.virq >= NR_VIRQS {
                return Err(EINVAL);
            }
            if op.vcpu >= dom.nr_vcpus() {
                return Err(ENOENT);
            }
            if virq_is_global(op.virq) && op.vcpu != 0 {
                return Err(EINVAL);
            }
            if dom.evtchn.virq_port(op.virq, op.vcpu).is_some() {
                return Err(EEXIST);
            }
            op.port = dom
                .evtchn
                .alloc(PortState::Virq(op.virq), op.vcpu)
                .ok_or(ENOSPC)?;
            if let Some(slot) = dom
                .evtchn
                .virq_ports
                .get_mut(op.vcpu as usize)
                .and_then(|t| t.get_mut(op.virq as usize))
            {
                *slot = op.port;
            }
            write_back(ctx, caller, op.port, arg, &op)
        }
        EVTCHNOP_BIND_IPI => {
            let mut op: EvtchnBindIpi = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let dom = ctx.xen.domains.get_mut(&caller).ok_or(ESRCH)?;
            if op.vcpu >= dom.nr_vcpus() {
                return Err(ENOENT);
            }
            op.port = dom.evtchn.alloc(PortState::Ipi, op.vcpu).ok_or(ENOSPC)?;
            write_back(ctx, caller, op.port, arg, &op)
        }
        EVTCHNOP_CLOSE => {
            let op: EvtchnPortArg = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            close_port(ctx.xen, caller, op.port, ctx.env)?;
            Ok(0)
        }
        EVTCHNOP_SEND => {
            let op: EvtchnPortArg = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            send(ctx.xen, caller, op.port, ctx.env)?;
            Ok(0)
        }
        EVTCHNOP_STATUS => {
            let mut op: EvtchnStatus = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let owner = ctx.xen.target(caller, op.dom)?;
            let dom = ctx.xen.domains.get(&owner).ok_or(ESRCH)?;
            if !dom.evtchn.in_range(op.port) {
                return Err(EINVAL);
            }
            op.vcpu = dom.evtchn.vcpu_of(op.port).unwrap_or(0);
            op.u = [0; 2];
            op.status = match dom.evtchn.state(op.port) {
                None | Some(PortState::Free) => EVTCHNSTAT_CLOSED,
                Some(PortState::Unbound { remote }) => {
                    op.u[0] = u32::from(remote);
                    EVTCHNSTAT_UNBOUND
                }
                Some(PortState::Interdomain {
                    remote,
                    remote_port,
                }) => {
                    op.u = [u32::from(remote), remote_port];
                    EVTCHNSTAT_INTERDOMAIN
                }
                Some(PortState::Backend(_)) => {
                    op.u = [u32::from(mica_guest_abi::xen::DOMID_XEN), 0];
                    EVTCHNSTAT_INTERDOMAIN
                }
                Some(PortState::Virq(v)) => {
                    op.u[0] = v;
                    EVTCHNSTAT_VIRQ
                }
                Some(PortState::Ipi) => EVTCHNSTAT_IPI,
            };
            write_virt_obj(ctx.vmem, arg, &op).map_err(|_| EFAULT)?;
            Ok(0)
        }
        EVTCHNOP_BIND_VCPU => {
            let op: EvtchnBindVcpu = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let dom = ctx.xen.domains.get_mut(&caller).ok_or(ESRCH)?;
            if op.vcpu >= dom.nr_vcpus() {
                return Err(ENOENT);
            }
            let state = dom.evtchn.state(op.port).ok_or(EINVAL)?;
            let movable = match state {
                PortState::Unbound { .. }
                | PortState::Interdomain { .. }
                | PortState::Backend(_) => true,
                PortState::Virq(v) => virq_is_global(v),
                PortState::Ipi | PortState::Free => false,
            };
            if !movable {
                return Err(EINVAL);
            }
            if let Some(p) = dom.evtchn.get_mut(op.port) {
                if let PortState::Virq(v) = p.state {
                    // Keep the VIRQ table keyed by the vCPU the port now notifies.
                    let old = p.vcpu as usize;
                    p.vcpu = op.vcpu;
                    let table = &mut dom.evtchn.virq_ports;
                    if let Some(s) = table.get_mut(old).and_then(|t| t.get_mut(v as usize)) {
                        *s = 0;
                    }
                    if let Some(s) = table
                        .get_mut(op.vcpu as usize)
                        .and_then(|t| t.get_mut(v as usize))
                    {
                        *s = op.port;
                    }
                } else {
                    p.vcpu = op.vcpu;
                }
            }
            Ok(0)
        }
        EVTCHNOP_UNMASK => {
            let op: EvtchnPortArg = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            unmask(ctx.xen, caller, op.port, ctx.env)?;
            Ok(0)
        }
        EVTCHNOP_RESET | EVTCHNOP_RESET_CONT => {
            let op: EvtchnReset = read_virt_obj(ctx.vmem, arg).map_err(|_| EFAULT)?;
            let owner = ctx.xen.target(caller, op.dom)?;
            let ports: Vec<(EvtchnPort, PortState)> = ctx
                .xen
                .domains
                .get(&owner)
                .map(|d| d.evtchn.allocated().collect())
                .unwrap_or_default();
            for (port, state) in ports {
                if !matches!(state, PortState::Backend(_)) {
                    let _ = close_port(ctx.xen, owner, port, ctx.env);
                }
            }
            Ok(0)
        }
        // FIFO is not offered: Linux falls back to 2-level on any error.
        EVTCHNOP_INIT_CONTROL | EVTCHNOP_EXPAND_ARRAY | EVTCHNOP_SET_PRIORITY => Err(ENOSYS),
        // No physical IRQs are routed through event channels on Arm.
        EVTCHNOP_BIND_PIRQ => Err(ENOSYS),
        _ => Err(ENOSYS),
    }
}

/// Writes an op struct back; if that fails, undoes the port allocation.
fn write_back<T: mica_guest_abi::xen::Wire>(
    ctx: &mut HypercallCtx<'_>,
    owner: DomId,
    port: EvtchnPort,
    arg: u64,
    op: &T,
) -> Result<i64, i32> {
    if write_virt_obj(ctx.vmem, arg, op).is_err() {
        let _ = close_port(ctx.xen, owner, port, ctx.env);
        return Err(EFAULT);
    }
    Ok(0)
}

/// EVTCHNOP_unmask: clears the mask bit and re-delivers if the port is pending.
fn unmask(xen: &mut Xen, domid: DomId, port: EvtchnPort, env: &mut dyn XenEnv) -> Result<(), i32> {
    let dom = xen.domains.get(&domid).ok_or(ESRCH)?;
    if !dom.evtchn.in_range(port) {
        return Err(EINVAL);
    }
    let Some(si) = dom.shared_info_gpa() else {
        return Ok(());
    };
    let vcpu = dom.evtchn.vcpu_of(port).unwrap_or(0);
    let vcpu_info = dom.vcpu_info_gpa(vcpu);
    let (word, bit) = word_and_bit(port);
    let mem = env.memory(domid).ok_or(ESRCH)?;
    let (page, pending, mask) = event_words(mem, si.pfn(), &dom.layout, word).ok_or(EFAULT)?;
    let was_masked = mask.fetch_and(!bit, Ordering::AcqRel) & bit != 0;
    let pending = pending.load(Ordering::Acquire) & bit != 0;
    if was_masked && pending && mark_selector(mem, vcpu_info, Some(page), word) {
        env.raise_upcall(domid, vcpu);
    }
    Ok(())
}
