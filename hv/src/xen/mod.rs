//! The Xen guest ABI, hypervisor side: hypercall dispatch, event channels (2-level), grant
//! tables (v1), the PV console server, for domains that believe they run on Xen 4.17.
//!
//! All Xen state of all domains lives in one [`Xen`] value, behind one lock held by the
//! arch layer while it calls in. That makes inter-domain operations (event sends, grant
//! maps and copies) free of lock-ordering problems; hypercalls are short and bounded.
//! See [`env`] for the order of the arch layer's own locks.
//!
//! Integration, per trapped `HVC #0xEA1` on vCPU `v` of domain `d`:
//! ```text
//! let mut ctx = HypercallCtx { xen: &mut xen_guard, caller: d, vcpu: v, vmem, env };
//! let out = dispatch(&mut ctx, x16, [x0, x1, x2, x3, x4]);
//! x0 = out.ret as u64;  // then apply out.after (resume, yield, block, shut down)
//! ```
//! Everything the guest passes is untrusted; failures come back as `-errno` (or grant
//! status codes), never as panics.

mod domains;
pub mod env;
mod evtchn;
mod gnttab;
mod hypercall;
pub mod mem;
mod memory;
pub mod pvclock;
mod pvconsole;
mod runstate;
pub mod timer;

#[cfg(test)]
mod tests;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

pub use env::{Backend, SpecialPage, XenEnv};
pub use hypercall::{dispatch, HypercallCtx};
pub use mem::{GuestMemError, GuestMemory, GuestVirtMemory};
pub use runstate::Runstate;

use crate::addr::GuestPhysAddr;
use crate::exit::ShutdownReason;
use domains::DomainTable;
use evtchn::EventChannels;
use gnttab::GrantTable;
use mica_guest_abi::xen::hvm::{self, HVM_NR_PARAMS};
use mica_guest_abi::xen::shared::{
    VcpuInfo, SHARED_INFO_EVTCHN_MASK, SHARED_INFO_EVTCHN_PENDING, SHARED_INFO_VCPU_INFO,
    SHARED_INFO_WC_VERSION, XEN_LEGACY_MAX_VCPUS,
};
use mica_guest_abi::xen::{errno, DomId, DOMID_FIRST_RESERVED, DOMID_SELF};
use pvconsole::PvConsole;

/// Most event-channel ports a domain may have (the 2-level ABI's limit on 64-bit).
pub const MAX_EVTCHN_PORTS: u32 = mica_guest_abi::xen::shared::EVTCHN_2L_NR_CHANNELS;
/// Default grant-table size limit in frames (Xen's `gnttab_max_frames` default).
pub const DEFAULT_MAX_GRANT_FRAMES: u32 = 64;
/// Upper bound on a domain's grant-table frames (the DT grant region must hold them).
pub const MAX_GRANT_FRAMES: u32 = 1024;
/// Bytes of hardware-domain console input kept for CONSOLEIO_read.
pub const HWDOM_CONSOLE_INPUT_MAX: usize = 4096;

/// The guest ABI differences between architectures the Xen layer must know: the
/// shared_info layout, the arch-specific feature bits and the capabilities string. The arch
/// layer names the one its guests expect in [`DomainConfig::arch`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GuestArch {
    /// AArch64 (`arch-arm.h`).
    Arm64,
    /// x86-64 HVM/PVH (`arch-x86/xen.h`).
    X86_64,
}

impl GuestArch {
    /// Where shared_info's fields are.
    pub const fn shared_info(self) -> SharedInfoLayout {
        match self {
            Self::Arm64 => SharedInfoLayout::ARM,
            Self::X86_64 => SharedInfoLayout::X86_64,
        }
    }
}

/// Where the fields of shared_info are. The page's layout is part of each architecture's
/// ABI (x86 has 32 legacy vcpu_info slots of 64 bytes before the event bitmaps, Arm one of
/// 48).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SharedInfoLayout {
    /// vCPUs with a vcpu_info slot inside shared_info (from offset 0).
    pub legacy_vcpus: u32,
    /// Bytes per vcpu_info slot.
    pub vcpu_info_size: u64,
    /// Offset of `evtchn_pending[]`.
    pub evtchn_pending: u64,
    /// Offset of `evtchn_mask[]`.
    pub evtchn_mask: u64,
    /// Offset of `wc_version` (followed by wc_sec, wc_nsec, wc_sec_hi).
    pub wc_version: u64,
}

impl SharedInfoLayout {
    /// Arm (`arch-arm.h`): one legacy slot.
    pub const ARM: Self = Self {
        legacy_vcpus: XEN_LEGACY_MAX_VCPUS as u32,
        vcpu_info_size: core::mem::size_of::<VcpuInfo>() as u64,
        evtchn_pending: SHARED_INFO_EVTCHN_PENDING as u64,
        evtchn_mask: SHARED_INFO_EVTCHN_MASK as u64,
        wc_version: SHARED_INFO_WC_VERSION as u64,
    };
    /// x86-64 (`arch-x86/xen.h`): 32 legacy slots of 64 bytes (vcpu_info carries cr2).
    pub const X86_64: Self = Self {
        legacy_vcpus: 32,
        vcpu_info_size: 64,
        evtchn_pending: 2048,
        evtchn_mask: 2560,
        wc_version: 3072,
    };
}

/// How a domain is set up.
#[derive(Clone, Debug)]
pub struct DomainConfig {
    /// Domain id (below `DOMID_FIRST_RESERVED`).
    pub domid: DomId,
    /// Number of vCPUs (at least 1).
    pub nr_vcpus: u32,
    /// The hardware/initial domain: XENFEAT_dom0, may name other domains in hypercalls.
    pub privileged: bool,
    /// May use CONSOLEIO_write/read (Xen allows it only for the hardware domain).
    pub console_io: bool,
    /// RAM is mapped 1:1 to host memory (XENFEAT_direct_mapped).
    pub direct_mapped: bool,
    /// Grant-table frames the domain may use (≤ [`MAX_GRANT_FRAMES`]).
    pub max_grant_frames: u32,
    /// Event-channel ports the domain may use (≤ [`MAX_EVTCHN_PORTS`]).
    pub max_evtchn_ports: u32,
    /// INTID of the event upcall PPI (31 for domUs), reported in HVM_PARAM_CALLBACK_IRQ.
    pub evtchn_ppi: u32,
    /// Guest frame for a PV console ring served by Mica (e.g. 0x39000), or none.
    pub pv_console_gfn: Option<u64>,
    /// The domain's UUID (XENVER_guest_handle).
    pub handle: [u8; 16],
    /// The domain's architecture (its shared_info layout, feature bits).
    pub arch: GuestArch,
}

impl DomainConfig {
    /// A plain domU configuration with Xen's defaults.
    pub fn domu(domid: DomId, nr_vcpus: u32) -> Self {
        Self {
            domid,
            nr_vcpus,
            privileged: false,
            console_io: false,
            direct_mapped: false,
            max_grant_frames: DEFAULT_MAX_GRANT_FRAMES,
            max_evtchn_ports: 1024,
            evtchn_ppi: mica_guest_abi::layout::EVTCHN_PPI,
            pv_console_gfn: None,
            handle: [0; 16],
            arch: GuestArch::Arm64,
        }
    }
}

/// Why a domain could not be created. `Debug` is written out (same text as derived) so the
/// errno prints with the unsigned 64-bit formatter the image already has.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum XenError {
    /// The id is reserved or already in use.
    BadDomid,
    /// A limit in the configuration is zero or too large.
    BadConfig,
    /// The arch layer refused to map a special page (errno).
    MapFailed(i32),
}

impl core::fmt::Debug for XenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadDomid => f.write_str("BadDomid"),
            Self::BadConfig => f.write_str("BadConfig"),
            Self::MapFailed(errno) => {
                let sign = if *errno < 0 { "-" } else { "" };
                write!(f, "MapFailed({sign}{})", u64::from(errno.unsigned_abs()))
            }
        }
    }
}

/// Per-vCPU Xen state.
#[derive(Clone, Debug, Default)]
pub(crate) struct XenVcpu {
    /// Where VCPUOP_register_vcpu_info placed this vCPU's vcpu_info.
    vcpu_info: Option<GuestPhysAddr>,
    /// VCPUOP_register_runstate_memory_area (a guest virtual address).
    runstate_va: Option<u64>,
    /// VCPUOP_register_runstate_phys_area.
    runstate_gpa: Option<GuestPhysAddr>,
    runstate: runstate::RunstateClock,
    /// The PV timers (x86).
    timers: timer::VcpuTimers,
    /// The ports a SCHEDOP_poll is waiting on (at most `POLL_MAX_PORTS`), while blocked in it.
    poll: Option<Vec<mica_guest_abi::xen::EvtchnPort>>,
}

/// The Xen state of one domain.
#[derive(Debug)]
pub struct XenDomain {
    id: DomId,
    privileged: bool,
    console_io: bool,
    direct_mapped: bool,
    handle: [u8; 16],
    vcpus: Vec<XenVcpu>,
    /// Frame where the guest mapped shared_info.
    shared_info_gfn: Option<u64>,
    /// Ports that became pending before shared_info was mapped (2-level bitmap).
    early_pending: [u64; 64],
    /// How many vCPUs are blocked in SCHEDOP_poll (have a `poll` list): kept by
    /// [`XenDomain::start_poll`] and [`XenDomain::end_poll`], so an event finds at once
    /// that it has no poller to wake.
    polling: usize,
    evtchn: EventChannels,
    gnttab: GrantTable,
    params: [u64; HVM_NR_PARAMS as usize],
    vm_assist: u64,
    shutdown_code: Option<u32>,
    console: Option<PvConsole>,
    arch: GuestArch,
    layout: SharedInfoLayout,
}

impl XenDomain {
    /// The domain id.
    pub fn id(&self) -> DomId {
        self.id
    }
    /// Number of vCPUs.
    pub fn nr_vcpus(&self) -> u32 {
        self.vcpus.len() as u32
    }
    /// Guest frame of the shared_info page, once the guest mapped it.
    pub fn shared_info_gfn(&self) -> Option<u64> {
        self.shared_info_gfn
    }
    /// The reason recorded with SCHEDOP_shutdown_code, if any.
    pub fn shutdown_code(&self) -> Option<u32> {
        self.shutdown_code
    }
    /// The PV console's event-channel port, if the domain has a Mica console.
    pub fn console_port(&self) -> Option<u32> {
        self.console.as_ref().map(|c| c.port)
    }

    #[inline(always)]
    fn shared_info_gpa(&self) -> Option<GuestPhysAddr> {
        GuestPhysAddr::from_pfn(self.shared_info_gfn?)
    }

    /// Blocks `vcpu` in SCHEDOP_poll on `ports` (false: no such vCPU).
    fn start_poll(&mut self, vcpu: u32, ports: Vec<mica_guest_abi::xen::EvtchnPort>) -> bool {
        let Some(v) = self.vcpus.get_mut(vcpu as usize) else {
            return false;
        };
        if v.poll.replace(ports).is_none() {
            self.polling += 1;
        }
        true
    }

    /// Ends `vcpu`'s SCHEDOP_poll, if it was polling (returns whether it was).
    fn end_poll(&mut self, vcpu: u32) -> bool {
        let ended = self
            .vcpus
            .get_mut(vcpu as usize)
            .is_some_and(|v| v.poll.take().is_some());
        if ended {
            self.polling -= 1;
        }
        ended
    }

    /// Where `vcpu`'s vcpu_info lives: the registered area, or its legacy slot in
    /// shared_info (vCPU 0 on Arm, vCPUs 0-31 on x86).
    #[inline(always)]
    fn vcpu_info_gpa(&self, vcpu: u32) -> Option<GuestPhysAddr> {
        let v = self.vcpus.get(vcpu as usize)?;
        match v.vcpu_info {
            Some(gpa) => Some(gpa),
            None if vcpu < self.layout.legacy_vcpus => self.shared_info_gpa()?.checked_add(
                SHARED_INFO_VCPU_INFO as u64 + u64::from(vcpu) * self.layout.vcpu_info_size,
            ),
            None => None,
        }
    }

    fn param(&self, index: u32) -> Option<u64> {
        self.params.get(index as usize).copied()
    }
}

/// What the vCPU does after a hypercall returns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum After {
    /// Continue with the next instruction.
    Resume,
    /// Give up the physical CPU (SCHEDOP_yield).
    Yield,
    /// Sleep until an interrupt (including the event upcall) is pending (SCHEDOP_block).
    Block,
    /// SCHEDOP_poll with nothing pending: sleep until [`XenEnv::wake_vcpu`] names this vCPU
    /// (a polled port became pending, masked or not), an interrupt is pending for it, or
    /// system time reaches `deadline_ns`. Then end the poll with [`Xen::end_poll`] unless
    /// the vCPU's runstate moves to running first ([`Xen::runstate_change`] ends it too).
    BlockPoll {
        /// Absolute system time in nanoseconds, `None`: no timeout.
        deadline_ns: Option<u64>,
    },
    /// End the domain (SCHEDOP_shutdown).
    Shutdown(ShutdownReason),
}

/// The result of a hypercall: write `ret` to x0, then do `after`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Outcome {
    /// Value for x0 (`-errno` on failure).
    pub ret: i64,
    /// What the vCPU does next.
    pub after: After,
}

impl Outcome {
    /// Returns `ret` and resumes.
    pub const fn ret(ret: i64) -> Self {
        Self {
            ret,
            after: After::Resume,
        }
    }
    /// Fails with `errno` and resumes.
    pub const fn err(errno: i32) -> Self {
        Self::ret(errno::neg(errno))
    }
}

/// The Xen state of every domain.
#[derive(Debug, Default)]
pub struct Xen {
    domains: DomainTable,
    /// The privileged domain, which receives VIRQ_DOM_EXC and console input.
    hwdom: Option<DomId>,
    /// Wall-clock time at system time 0 (seconds, nanoseconds), set by XENPF_settime64.
    wallclock: Option<(u64, u32)>,
    /// Hypervisor-console input waiting for CONSOLEIO_read.
    console_input: VecDeque<u8>,
}

impl Xen {
    /// No domains yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A domain's Xen state.
    pub fn domain(&self, domid: DomId) -> Option<&XenDomain> {
        self.domains.get(&domid)
    }

    /// Adds a domain. With `pv_console_gfn`, maps the console ring page through `env`
    /// and allocates its event channel, so the guest finds them in HVM params.
    pub fn create_domain(
        &mut self,
        cfg: &DomainConfig,
        env: &mut dyn XenEnv,
    ) -> Result<(), XenError> {
        if cfg.domid >= DOMID_FIRST_RESERVED || self.domains.contains_key(&cfg.domid) {
            return Err(XenError::BadDomid);
        }
        if cfg.nr_vcpus == 0
            || cfg.nr_vcpus > mica_guest_abi::layout::MAX_VCPUS
            || cfg.max_grant_frames == 0
            || cfg.max_grant_frames > MAX_GRANT_FRAMES
            || cfg.max_evtchn_ports < 2
            || cfg.max_evtchn_ports > MAX_EVTCHN_PORTS
            || (cfg.privileged && self.hwdom.is_some())
        {
            return Err(XenError::BadConfig);
        }
        let mut params = [0u64; HVM_NR_PARAMS as usize];
        params[hvm::HVM_PARAM_CALLBACK_IRQ as usize] = hvm::callback_irq_ppi(cfg.evtchn_ppi);
        let mut dom = XenDomain {
            id: cfg.domid,
            privileged: cfg.privileged,
            console_io: cfg.console_io,
            direct_mapped: cfg.direct_mapped,
            handle: cfg.handle,
            vcpus: alloc::vec![XenVcpu::default(); cfg.nr_vcpus as usize],
            shared_info_gfn: None,
            early_pending: [0; 64],
            polling: 0,
            evtchn: EventChannels::new(cfg.max_evtchn_ports, cfg.nr_vcpus),
            gnttab: GrantTable::new(cfg.max_grant_frames),
            params,
            vm_assist: 0,
            shutdown_code: None,
            console: None,
            arch: cfg.arch,
            layout: cfg.arch.shared_info(),
        };
        if let Some(gfn) = cfg.pv_console_gfn {
            env.map_special_page(cfg.domid, SpecialPage::ConsoleRing, gfn)
                .map_err(XenError::MapFailed)?;
            let port = dom
                .evtchn
                .alloc(evtchn::PortState::Backend(Backend::Console), 0)
                .ok_or(XenError::BadConfig)?;
            dom.params[hvm::HVM_PARAM_CONSOLE_PFN as usize] = gfn;
            dom.params[hvm::HVM_PARAM_CONSOLE_EVTCHN as usize] = u64::from(port);
            dom.console = Some(PvConsole::new(gfn, port));
        }
        if cfg.privileged {
            self.hwdom = Some(cfg.domid);
        }
        self.domains.insert(cfg.domid, dom);
        Ok(())
    }

    /// An HVM parameter of a domain (e.g. the upcall vector an x86 guest chose).
    pub fn hvm_param(&self, domid: DomId, index: u32) -> Option<u64> {
        self.domains.get(&domid)?.param(index)
    }

    /// Sets an HVM parameter as a toolstack would (e.g. HVM_PARAM_STORE_PFN/EVTCHN for a
    /// xenstore served elsewhere). Returns false for an unknown domain or index.
    pub fn set_hvm_param(&mut self, domid: DomId, index: u32, value: u64) -> bool {
        match self
            .domains
            .get_mut(&domid)
            .and_then(|d| d.params.get_mut(index as usize))
        {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        }
    }

    /// Removes a domain: closes its event channels (peers see them unbound), removes every
    /// grant mapping it made and every mapping other domains made of its grants (through
    /// `env`), and tells the hardware domain with VIRQ_DOM_EXC. Call it before freeing the
    /// domain's memory.
    pub fn destroy_domain(&mut self, domid: DomId, env: &mut dyn XenEnv) {
        if !self.domains.contains_key(&domid) {
            return;
        }
        gnttab::teardown(self, domid, env);
        evtchn::teardown(self, domid, env);
        self.domains.remove(&domid);
        if self.hwdom == Some(domid) {
            self.hwdom = None;
            self.console_input.clear();
        } else if let Some(hw) = self.hwdom {
            self.raise_virq(hw, mica_guest_abi::xen::evtchn::VIRQ_DOM_EXC, 0, env);
        }
    }

    /// Ends `vcpu`'s SCHEDOP_poll (it timed out or was woken by an interrupt): a port that
    /// becomes pending later no longer wakes it. Returns whether it was polling.
    pub fn end_poll(&mut self, domid: DomId, vcpu: u32) -> bool {
        self.domains
            .get_mut(&domid)
            .is_some_and(|d| d.end_poll(vcpu))
    }

    /// Whether `vcpu` of `domid` is blocked in SCHEDOP_poll (no port it polls became pending
    /// and [`Xen::end_poll`] has not been called since).
    pub fn is_polling(&self, domid: DomId, vcpu: u32) -> bool {
        self.domains
            .get(&domid)
            .and_then(|d| d.vcpus.get(vcpu as usize))
            .is_some_and(|v| v.poll.is_some())
    }

    /// `EVTCHNOP_send` on `port` by `caller`, the port number already read from the
    /// guest's argument: exactly what [`dispatch`] does with that hypercall, for an arch
    /// layer that decodes the most frequent hypercall itself (the event send, on the
    /// latency path of every notification) instead of through the generic dispatcher.
    pub fn send_event(
        &mut self,
        caller: DomId,
        port: u32,
        env: &mut dyn XenEnv,
    ) -> Result<(), i32> {
        // As `dispatch`: a domain that is not Xen-aware gets no hypercalls.
        if !self.domains.contains_key(&caller) {
            return Err(errno::ENOSYS);
        }
        evtchn::send(self, caller, port, env)
    }

    /// Sends an event on `port` of `domid` from Mica (e.g. a backend), as if from the far end.
    pub fn notify(&mut self, domid: DomId, port: u32, env: &mut dyn XenEnv) {
        evtchn::set_pending(self, domid, port, env);
    }

    /// Raises `virq` on `vcpu` of `domid` if the domain bound it.
    pub fn raise_virq(&mut self, domid: DomId, virq: u32, vcpu: u32, env: &mut dyn XenEnv) {
        let port = self
            .domains
            .get(&domid)
            .and_then(|d| d.evtchn.virq_port(virq, vcpu));
        if let Some(port) = port {
            evtchn::set_pending(self, domid, port, env);
        }
    }

    /// Queues input for the hardware domain's CONSOLEIO_read and raises VIRQ_CONSOLE.
    /// Bytes beyond [`HWDOM_CONSOLE_INPUT_MAX`] queued are dropped. Returns bytes queued.
    pub fn hwdom_console_input(&mut self, bytes: &[u8], env: &mut dyn XenEnv) -> usize {
        let Some(hw) = self.hwdom else { return 0 };
        let room = HWDOM_CONSOLE_INPUT_MAX.saturating_sub(self.console_input.len());
        let n = room.min(bytes.len());
        self.console_input.extend(&bytes[..n]);
        if n > 0 {
            self.raise_virq(hw, mica_guest_abi::xen::evtchn::VIRQ_CONSOLE, 0, env);
        }
        n
    }

    /// Reads guest output from the PV console ring of `domid` into `out`; returns the byte
    /// count (0 if none, or if the domain has no Mica console). Call it when
    /// [`XenEnv::backend_notify`] reports [`Backend::Console`], or periodically.
    pub fn console_poll_output(
        &mut self,
        domid: DomId,
        out: &mut [u8],
        env: &mut dyn XenEnv,
    ) -> usize {
        pvconsole::poll_output(self, domid, out, env)
    }

    /// Puts input bytes into the PV console ring of `domid`; returns how many fit.
    pub fn console_push_input(
        &mut self,
        domid: DomId,
        bytes: &[u8],
        env: &mut dyn XenEnv,
    ) -> usize {
        pvconsole::push_input(self, domid, bytes, env)
    }

    /// Resolves a domid argument: DOMID_SELF or the caller's own id is the caller; other
    /// domains only for a privileged caller.
    fn target(&self, caller: DomId, domid: DomId) -> Result<DomId, i32> {
        if domid == DOMID_SELF || domid == caller {
            return Ok(caller);
        }
        let privileged = self.domains.get(&caller).is_some_and(|d| d.privileged);
        if !privileged {
            return Err(errno::EPERM);
        }
        if self.domains.contains_key(&domid) {
            Ok(domid)
        } else {
            Err(errno::ESRCH)
        }
    }

    /// Writes the wall clock into a domain's shared_info (seqlock: odd while writing).
    fn write_wallclock(&self, domid: DomId, env: &mut dyn XenEnv) {
        let Some(si) = self.domains.get(&domid).and_then(|d| d.shared_info_gpa()) else {
            return;
        };
        let (sec, nsec) = self.wallclock.unwrap_or_else(|| env.wallclock());
        let Some(mem) = env.memory(domid) else { return };
        let Some(at) = self
            .domains
            .get(&domid)
            .and_then(|d| si.checked_add(d.layout.wc_version))
        else {
            return;
        };
        let version = mem::read_u32(mem, at).unwrap_or(0);
        let odd = version.wrapping_add(1) | 1;
        let mut fields = [0u8; 16];
        fields[..4].copy_from_slice(&odd.to_le_bytes());
        fields[4..8].copy_from_slice(&(sec as u32).to_le_bytes());
        fields[8..12].copy_from_slice(&nsec.to_le_bytes());
        fields[12..16].copy_from_slice(&((sec >> 32) as u32).to_le_bytes());
        if mem.write(at, &fields).is_ok() {
            mem.barrier();
            let _ = mem::write_u32(mem, at, odd.wrapping_add(1));
        }
    }
}
