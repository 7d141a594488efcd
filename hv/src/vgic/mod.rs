//! A virtual GIC for one domain: a GICv3 (distributor and redistributors, [`Vgic::new`])
//! or a GICv2 (distributor only, [`Vgic::new_v2`]).
//!
//! [`Vgic`] is shared by all vCPUs of a domain, which may run on different physical CPUs;
//! its state sits behind one lock and every method takes `&self`. The integrator:
//! - routes trapped accesses to [`Vgic::mmio`] (a fault means: inject a data abort);
//! - raises interrupts with [`Vgic::inject`], [`Vgic::set_level`],
//!   [`Vgic::set_private_level`] and [`Vgic::write_sgi1r`] (trapped ICC_SGI1R_EL1;
//!   GICv3 only: a GICv2 guest sends SGIs through GICD_SGIR, handled by `mmio`);
//! - after a vCPU ran, reads its list registers back and calls [`Vgic::sync_from_lrs`];
//!   before entering it, calls [`Vgic::fill_lrs`] and writes the result (asking for an
//!   underflow maintenance interrupt on overflow, and for an EOI maintenance interrupt on
//!   LRs marked `eoi_notify`); or does both at once with [`Vgic::resync_lrs`] when the
//!   vCPU goes straight back into its guest;
//! - sends an IPI to every physical CPU running a vCPU in a returned [`VcpuSet`];
//! - uses [`Vgic::has_deliverable`] to decide whether a WFI blocks.
//!
//! Both versions use the same list-register protocol. For a GICv2 domain the integrator
//! maps the hardware's virtual CPU interface (GICV) at the guest's GICC address and
//! writes [`ListReg::source`] into the CPUID field of GICH_LR (bits 12:10).
//!
//! Model choices, in the spirit of Xen and KVM: affinity routing is always on, a single
//! security state (GICD_CTLR.DS = 1: EnableGrp0 at bit 0, EnableGrp1 at bit 1, ARE and DS
//! read as one), no LPIs/ITS, IGRPMODR and NSACR RAZ/WI. Interrupts reset to Group 1,
//! disabled, priority 0; PPIs reset level-sensitive, SPIs level-sensitive, SGIs edge.
//! IROUTER with IRM = 1 delivers to the first online vCPU. An SPI routed to an affinity
//! no vCPU has stays pending and is not delivered.
//!
//! GICv2 model (`v2.rs`): no Security Extensions (EnableGrp0/EnableGrp1 in GICD_CTLR),
//! interrupts reset to Group 0 (Linux only enables Group 0 on its virtual CPU interface),
//! SGIs pending per source CPU and listed one source at a time. At most 8 vCPUs.
//!
//! The interrupt state (`state.rs`) is separate from the register decoding (`v3.rs`,
//! `v2.rs`).

mod state;
mod v2;
mod v3;

use self::state::{Core, Model};
use crate::addr::{GuestPhysAddr, GuestRange};
use crate::exit::MmioAccess;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::{Mutex, MutexGuard};

/// Most vCPUs a domain may have (the width of [`VcpuSet`]).
pub const MAX_VCPUS: usize = 128;
/// Most SPIs (INTIDs 32..1019).
pub const MAX_SPIS: u32 = 988;
/// Size of the GICv3 distributor window.
pub const DIST_SIZE: u64 = 0x1_0000;
/// Size of the GICv2 distributor window.
pub const DIST_V2_SIZE: u64 = v2::DIST_SIZE;
/// Most vCPUs of a GICv2 domain (CPU masks are 8 bits wide).
pub const MAX_VCPUS_V2: usize = state::V2_CPUS;
/// Size of one vCPU's redistributor (RD_base and SGI_base frames).
pub const REDIST_FRAME_SIZE: u64 = 0x2_0000;
/// The affinity fields of an MPIDR (Aff3, Aff2, Aff1, Aff0).
pub const MPIDR_AFFINITY_MASK: u64 = 0xFF_00FF_FFFF;

/// A set of vCPU indices (0..128). Two 64-bit words, not a `u128`: a variable shift of a
/// `u128` is a library call on AArch64, and these sets are built on every injection.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct VcpuSet([u64; 2]);

impl VcpuSet {
    /// No vCPU.
    pub const EMPTY: Self = Self([0; 2]);

    /// Adds vCPU `i` (ignored if `i >= MAX_VCPUS`).
    pub fn insert(&mut self, i: usize) {
        if i < MAX_VCPUS {
            self.0[i / 64] |= 1 << (i % 64);
        }
    }
    /// Whether vCPU `i` is in the set.
    pub fn contains(&self, i: usize) -> bool {
        i < MAX_VCPUS && self.0[i / 64] & (1 << (i % 64)) != 0
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == [0; 2]
    }
    /// Both sets together.
    pub fn union(self, other: Self) -> Self {
        Self([self.0[0] | other.0[0], self.0[1] | other.0[1]])
    }
    /// The set without vCPU `i`.
    pub fn without(self, i: usize) -> Self {
        let mut out = self;
        if i < MAX_VCPUS {
            out.0[i / 64] &= !(1 << (i % 64));
        }
        out
    }
    /// The raw bits (bit i = vCPU i).
    pub fn bits(&self) -> u128 {
        u128::from(self.0[1]) << 64 | u128::from(self.0[0])
    }
    /// Members, lowest first. Visits only the members (this runs on every guest exit).
    pub fn iter(&self) -> impl Iterator<Item = usize> {
        // One step per member, not per possible vCPU: this runs on every interrupt.
        let mut words = self.0;
        let mut word = 0;
        core::iter::from_fn(move || loop {
            let bits = words.get_mut(word)?;
            if *bits == 0 {
                word += 1;
                continue;
            }
            let lowest = bits.trailing_zeros() as usize;
            *bits &= *bits - 1;
            return Some(word * 64 + lowest);
        })
    }
}

/// Where the vGIC lives and whom it serves.
#[derive(Clone, Debug)]
pub struct VgicConfig {
    /// Distributor base (64 KiB, 64 KiB aligned).
    pub dist_base: GuestPhysAddr,
    /// First redistributor; one 128 KiB frame per vCPU, contiguous, 64 KiB aligned.
    pub redist_base: GuestPhysAddr,
    /// MPIDR of each vCPU, by vCPU index (only the affinity fields matter).
    pub vcpu_mpidrs: Vec<u64>,
    /// Number of SPIs: a multiple of 32, at most [`MAX_SPIS`] (988 is accepted too).
    pub nr_spis: u32,
}

/// Where a virtual GICv2 lives and whom it serves.
#[derive(Clone, Debug)]
pub struct VgicV2Config {
    /// Distributor base (4 KiB, 4 KiB aligned).
    pub dist_base: GuestPhysAddr,
    /// Number of vCPUs, 1..=[`MAX_VCPUS_V2`] (vCPU i is GICv2 CPU interface i).
    pub vcpu_count: usize,
    /// Number of SPIs: a multiple of 32, at most [`MAX_SPIS`] (988 is accepted too).
    pub nr_spis: u32,
}

/// The GIC architecture a [`Vgic`] presents.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GicVersion {
    /// GICv2: distributor only; the CPU interface is the hardware's GICV frame.
    V2,
    /// GICv3: distributor and redistributors; system-register CPU interface.
    V3,
}

/// Why a configuration was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VgicError {
    /// No vCPUs, or more than [`MAX_VCPUS`] ([`MAX_VCPUS_V2`] for a GICv2).
    BadVcpuCount,
    /// Two vCPUs share an affinity.
    DuplicateMpidr,
    /// `nr_spis` is not a multiple of 32 (or 988), or too large.
    BadSpiCount,
    /// A base is not 4 KiB aligned (Xen's guest map puts the GICv3 distributor at
    /// 0x03001000, so 64 KiB alignment cannot be required).
    Misaligned,
    /// A window runs past the end of the address space.
    AddressOverflow,
    /// The distributor and redistributor windows overlap.
    Overlap,
}

/// A trapped access the vGIC refuses: the caller injects a data abort.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VgicFault {
    /// Address not aligned to the access size.
    Unaligned,
    /// Access size not allowed for that register.
    BadSize,
    /// The accessing vCPU index does not exist.
    BadVcpu,
}

/// Result of an emulated access.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MmioOutcome {
    /// The value for a read (masked to the access size), `None` for a write.
    pub read: Option<u64>,
    /// vCPUs that now have something new to deliver (IPI their physical CPUs).
    pub kick: VcpuSet,
}

/// State of a list register.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum LrState {
    /// Empty.
    #[default]
    Invalid,
    /// Pending.
    Pending,
    /// Active.
    Active,
    /// Active, and pending again.
    PendingActive,
}

/// One list register, as the integrator writes it to or reads it from the hardware.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ListReg {
    /// Virtual INTID.
    pub intid: u32,
    /// Priority (the hardware keeps only its top bits).
    pub priority: u8,
    /// Group 1 (else Group 0).
    pub group1: bool,
    /// State.
    pub state: LrState,
    /// Ask for a maintenance interrupt when the guest deactivates it (level-sensitive
    /// interrupts, so a line still high is presented again promptly; GICv2 SGIs pending
    /// from more sources, so the next one is listed). Ignored when read back.
    pub eoi_notify: bool,
    /// GICv2 SGIs: the source CPU (GICH_LR.CPUID, bits 12:10), which the guest reads in
    /// GICC_IAR. 0 for everything else, and for all interrupts of a GICv3. Ignored when
    /// read back (the vGIC remembers what it listed).
    pub source: u8,
    /// Hardware-backed: the virtual INTID is also the physical one, which stays active at
    /// the host until the guest deactivates the virtual interrupt (the hardware then
    /// deactivates both). Never combined with `eoi_notify`.
    pub hw: bool,
}

impl ListReg {
    /// An empty list register.
    pub const INVALID: Self = Self {
        intid: 0,
        priority: 0,
        group1: false,
        state: LrState::Invalid,
        eoi_notify: false,
        source: 0,
        hw: false,
    };
}

/// Result of [`Vgic::fill_lrs`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FillOutcome {
    /// More interrupts wanted a list register than there were: request an underflow
    /// maintenance interrupt so they get their turn.
    pub overflow: bool,
    /// How many list registers were written (the first `listed`; the rest are invalid).
    /// With none, the guest cannot change them: nothing needs reading back after it runs.
    pub listed: usize,
    /// The vGIC's change count when the list registers were chosen (see
    /// [`Vgic::unchanged_since`]).
    pub changes: u64,
}

/// The version-specific registers.
enum Regs {
    V3(v3::Regs),
    V2(v2::Regs),
}

struct State {
    core: Core,
    regs: Regs,
}

/// The virtual GIC of one domain.
pub struct Vgic {
    version: GicVersion,
    dist: GuestRange,
    /// Empty (at the distributor base) for a GICv2.
    redist: GuestRange,
    vcpus: usize,
    /// GICv3 affinities; empty for a GICv2.
    info: v3::Info,
    state: Mutex<State>,
    /// Counts changes of `state` (bumped under its lock by every method that may change
    /// it, except [`Vgic::fill_lrs`]), so a vCPU whose list registers hold nothing can
    /// tell, without the lock, that choosing them again would find nothing either.
    changes: AtomicU64,
}

impl core::fmt::Debug for Vgic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vgic")
            .field("version", &self.version)
            .field("dist", &self.dist)
            .field("redist", &self.redist)
            .field("vcpus", &self.vcpus)
            .finish()
    }
}

fn check_spi_count(nr_spis: u32) -> Result<(), VgicError> {
    if nr_spis > MAX_SPIS || (!nr_spis.is_multiple_of(32) && nr_spis != MAX_SPIS) {
        return Err(VgicError::BadSpiCount);
    }
    Ok(())
}

impl Vgic {
    /// Checks the configuration and builds the vGIC in its reset state.
    pub fn new(cfg: VgicConfig) -> Result<Self, VgicError> {
        let n = cfg.vcpu_mpidrs.len();
        if n == 0 || n > MAX_VCPUS {
            return Err(VgicError::BadVcpuCount);
        }
        let mpidrs: Vec<u64> = cfg
            .vcpu_mpidrs
            .iter()
            .map(|m| m & MPIDR_AFFINITY_MASK)
            .collect();
        for (i, m) in mpidrs.iter().enumerate() {
            if mpidrs[..i].contains(m) {
                return Err(VgicError::DuplicateMpidr);
            }
        }
        check_spi_count(cfg.nr_spis)?;
        if !cfg.dist_base.is_aligned(0x1000) || !cfg.redist_base.is_aligned(0x1000) {
            return Err(VgicError::Misaligned);
        }
        let dist = GuestRange::new(cfg.dist_base, DIST_SIZE).ok_or(VgicError::AddressOverflow)?;
        let redist = GuestRange::new(cfg.redist_base, REDIST_FRAME_SIZE * n as u64)
            .ok_or(VgicError::AddressOverflow)?;
        if dist.overlaps(&redist) {
            return Err(VgicError::Overlap);
        }
        let mut core = Core::new(n, cfg.nr_spis, Model::V3);
        let regs = v3::Regs::new(n, cfg.nr_spis);
        let info = v3::Info {
            mpidrs,
            nr_spis: cfg.nr_spis,
        };
        // IROUTER resets to affinity 0.0.0.0, which may name no vCPU.
        v3::retarget_all(&mut core, &regs, &info);
        Ok(Self {
            version: GicVersion::V3,
            dist,
            redist,
            vcpus: n,
            info,
            state: Mutex::new(State {
                core,
                regs: Regs::V3(regs),
            }),
            changes: AtomicU64::new(0),
        })
    }

    /// Checks the configuration and builds a virtual GICv2 in its reset state.
    pub fn new_v2(cfg: VgicV2Config) -> Result<Self, VgicError> {
        let n = cfg.vcpu_count;
        if n == 0 || n > MAX_VCPUS_V2 {
            return Err(VgicError::BadVcpuCount);
        }
        check_spi_count(cfg.nr_spis)?;
        if !cfg.dist_base.is_aligned(0x1000) {
            return Err(VgicError::Misaligned);
        }
        let dist =
            GuestRange::new(cfg.dist_base, DIST_V2_SIZE).ok_or(VgicError::AddressOverflow)?;
        let redist = GuestRange::new(cfg.dist_base, 0).ok_or(VgicError::AddressOverflow)?;
        let mut core = Core::new(n, cfg.nr_spis, Model::V2);
        let regs = v2::Regs::new(n, cfg.nr_spis);
        v2::retarget_all(&mut core, &regs);
        Ok(Self {
            version: GicVersion::V2,
            dist,
            redist,
            vcpus: n,
            info: v3::Info {
                mpidrs: Vec::new(),
                nr_spis: cfg.nr_spis,
            },
            state: Mutex::new(State {
                core,
                regs: Regs::V2(regs),
            }),
            changes: AtomicU64::new(0),
        })
    }

    /// Locks the state to change it, and counts the change.
    fn change(&self) -> MutexGuard<'_, State> {
        let guard = self.state.lock();
        // Only written under the lock: no read-modify-write needed.
        let count = self.changes.load(Ordering::Relaxed);
        self.changes.store(count.wrapping_add(1), Ordering::Release);
        guard
    }

    /// Whether nothing changed since the list registers were chosen with outcome
    /// `fill`, so that choosing them again now would give the same result. Lock-free: a
    /// change made on another CPU right after this returns `true` is followed by a kick
    /// of the vCPUs it concerns, as for a change made while the vCPU runs.
    pub fn unchanged_since(&self, fill: &FillOutcome) -> bool {
        self.changes.load(Ordering::Acquire) == fill.changes
    }

    /// The architecture presented to the guest.
    pub fn version(&self) -> GicVersion {
        self.version
    }

    /// Number of vCPUs.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus
    }

    /// Number of SPIs.
    pub fn nr_spis(&self) -> u32 {
        self.info.nr_spis
    }

    /// The distributor window (64 KiB for a GICv3, 4 KiB for a GICv2).
    pub fn dist_range(&self) -> GuestRange {
        self.dist
    }

    /// The redistributor window (all vCPUs); empty for a GICv2.
    pub fn redist_range(&self) -> GuestRange {
        self.redist
    }

    /// Emulates an access by `vcpu`; `None` when the address is not the vGIC's (for a
    /// GICv2: anything outside the 4 KiB distributor, the GICC address included).
    pub fn mmio(&self, vcpu: usize, access: MmioAccess) -> Option<Result<MmioOutcome, VgicFault>> {
        let (in_dist, offset) = if let Some(off) = access.addr.offset_from(self.dist.start) {
            if off < self.dist.size {
                (true, off)
            } else {
                (false, access.addr.offset_from(self.redist.start)?)
            }
        } else {
            (false, access.addr.offset_from(self.redist.start)?)
        };
        if !in_dist && offset >= self.redist.size {
            return None;
        }
        if vcpu >= self.vcpu_count() {
            return Some(Err(VgicFault::BadVcpu));
        }
        if !offset.is_multiple_of(access.size.bytes()) {
            return Some(Err(VgicFault::Unaligned));
        }
        let write = access.write.map(|v| v & access.size.mask());
        let mut st = self.change();
        let State { core, regs } = &mut *st;
        let result = match regs {
            Regs::V2(regs) => v2::dist_access(core, regs, vcpu, offset, access.size, write),
            Regs::V3(regs) if in_dist => {
                v3::dist_access(core, regs, &self.info, offset, access.size, write)
            }
            Regs::V3(regs) => {
                let frame = (offset / REDIST_FRAME_SIZE) as usize;
                v3::redist_access(
                    core,
                    regs,
                    &self.info,
                    frame,
                    offset % REDIST_FRAME_SIZE,
                    access.size,
                    write,
                )
            }
        };
        Some(result.map(|(value, kick)| MmioOutcome {
            read: if write.is_none() {
                Some(value & access.size.mask())
            } else {
                None
            },
            kick,
        }))
    }

    /// Makes `intid` pending as an edge: the banked copy of `vcpu` for SGIs/PPIs, the
    /// routed vCPU for SPIs. Invalid INTIDs or vCPUs are ignored.
    pub fn inject(&self, vcpu: usize, intid: u32) -> VcpuSet {
        if intid < state::PRIVATE_IRQS && vcpu >= self.vcpu_count() {
            return VcpuSet::EMPTY;
        }
        self.change().core.set_pending(vcpu, intid)
    }

    /// Drives the input line of a level-sensitive SPI (e.g. the vPL011's).
    pub fn set_level(&self, intid: u32, high: bool) -> VcpuSet {
        if intid < state::PRIVATE_IRQS {
            return VcpuSet::EMPTY;
        }
        self.change().core.set_line(0, intid, high)
    }

    /// Drives the input line of a level-sensitive PPI of `vcpu` (e.g. a timer).
    pub fn set_private_level(&self, vcpu: usize, intid: u32, high: bool) -> VcpuSet {
        if !(state::SGIS..state::PRIVATE_IRQS).contains(&intid) || vcpu >= self.vcpu_count() {
            return VcpuSet::EMPTY;
        }
        self.change().core.set_line(vcpu, intid, high)
    }

    /// A trapped write of ICC_SGI1R_EL1 by `from_vcpu`. Ignored by a GICv2 (its guests
    /// have no system-register interface).
    pub fn write_sgi1r(&self, from_vcpu: usize, value: u64) -> VcpuSet {
        if self.version != GicVersion::V3 {
            return VcpuSet::EMPTY;
        }
        let intid = ((value >> 24) & 0xF) as u32;
        let mut st = self.change();
        let mut kick = VcpuSet::EMPTY;
        if value & (1 << 40) != 0 {
            for v in (0..self.vcpu_count()).filter(|&v| v != from_vcpu) {
                kick = kick.union(st.core.set_pending(v, intid));
            }
            return kick;
        }
        let target_list = value & 0xFFFF;
        let aff1 = (value >> 16) & 0xFF;
        let aff2 = (value >> 32) & 0xFF;
        let aff3 = (value >> 48) & 0xFF;
        let range_sel = (value >> 44) & 0xF;
        let cluster = (aff3 << 32) | (aff2 << 16) | (aff1 << 8);
        for bit in (0..16).filter(|b| target_list & (1 << b) != 0) {
            let aff0 = range_sel * 16 + bit;
            if let Some(v) = self.vcpu_by_affinity(cluster | aff0) {
                kick = kick.union(st.core.set_pending(v, intid));
            }
        }
        kick
    }

    /// The vCPU whose MPIDR affinity is `affinity` (always `None` for a GICv2, which is
    /// not told the MPIDRs).
    pub fn vcpu_by_affinity(&self, affinity: u64) -> Option<usize> {
        let affinity = affinity & MPIDR_AFFINITY_MASK;
        self.info.mpidrs.iter().position(|&m| m == affinity)
    }

    /// Folds the list registers read back after `vcpu` ran into the state (pass every LR
    /// written by the last [`Vgic::fill_lrs`]). Returns other vCPUs to kick (a pending
    /// SPI that was retargeted while listed here).
    pub fn sync_from_lrs(&self, vcpu: usize, lrs: &[ListReg]) -> VcpuSet {
        self.change().core.sync(vcpu, lrs)
    }

    /// Chooses the contents of `vcpu`'s list registers (all of `lrs` is written).
    pub fn fill_lrs(&self, vcpu: usize, lrs: &mut [ListReg]) -> FillOutcome {
        let mut st = self.state.lock();
        let mut fill = st.core.fill(vcpu, lrs);
        fill.changes = self.changes.load(Ordering::Relaxed);
        fill
    }

    /// [`Vgic::inject`] of `inject` (if any), [`Vgic::sync_from_lrs`] then
    /// [`Vgic::fill_lrs`] under one lock, for a vCPU that runs again on the same CPU (a
    /// hypercall handled without leaving the vCPU, which may have raised its own event
    /// upcall). `lrs[..listed]` holds the list registers read back, `listed` being what
    /// the last fill returned; the rest of `lrs` must still be invalid, as that fill left
    /// them. On return all of `lrs` is the new choice. Also returns the other vCPUs to
    /// kick.
    pub fn resync_lrs(
        &self,
        vcpu: usize,
        lrs: &mut [ListReg],
        listed: usize,
        inject: Option<u32>,
    ) -> (FillOutcome, VcpuSet) {
        // As `inject` refuses them.
        let inject = inject.filter(|&i| i >= state::PRIVATE_IRQS || vcpu < self.vcpus);
        let mut st = self.change();
        let (mut fill, kick) = st.core.resync(vcpu, lrs, listed, inject);
        fill.changes = self.changes.load(Ordering::Relaxed);
        (fill, kick)
    }

    /// The event upcall's round in brief: [`Vgic::resync_lrs`] injecting `intid` for a
    /// vCPU whose last fill listed only `intid`, in its first list register (`lr0`, read
    /// back; the others are invalid), when nothing else is pending or active for it either.
    /// Then `lr0` becomes the new choice and the outcome is what `resync_lrs` would give
    /// (no other vCPU to kick). `None`, changing nothing, when the case does not apply.
    #[inline(always)]
    pub fn relist_upcall(&self, vcpu: usize, lr0: &mut ListReg, intid: u32) -> Option<FillOutcome> {
        let mut st = self.change();
        let mut fill =
            st.core
                .relist_private_edge(vcpu, core::slice::from_mut(lr0), 1, Some(intid))?;
        fill.changes = self.changes.load(Ordering::Relaxed);
        Some(fill)
    }

    /// Marks SPI `intid` as backed by the physical interrupt of the same number (a device
    /// passed through): it is listed with the hardware bit, so the guest's deactivation
    /// deactivates the physical interrupt too.
    pub fn set_hw_backed(&self, intid: u32, hw: bool) {
        if intid < 32 {
            return;
        }
        let mut s = self.change();
        if let Some(irq) = s.core.irq_mut(0, intid) {
            irq.hw = hw;
        }
    }

    /// Makes private interrupt `intid` edge-triggered for good (guest writes to its
    /// configuration are ignored): for the Xen event-channel upcall, which is injected once
    /// per 0→1 change of `evtchn_upcall_pending`, as Xen does, so its end of interrupt
    /// needs no maintenance interrupt.
    pub fn fix_edge_triggered(&self, intid: u32) {
        self.change().core.fix_edge(intid);
    }

    /// Whether SPI `intid` is still pending or active: a passed-through interrupt whose
    /// physical source must stay masked until the guest has handled it.
    pub fn spi_in_service(&self, intid: u32) -> bool {
        if intid < 32 {
            return false;
        }
        let s = self.state.lock();
        s.core
            .irq(0, intid)
            .is_some_and(|i| i.pending() || i.is_active())
    }

    /// Whether `vcpu` has an enabled, pending, not active interrupt (listed or not).
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        self.state.lock().core.has_deliverable(vcpu)
    }

    /// Resets `vcpu`'s banked interrupts and redistributor (e.g. before PSCI CPU_ON).
    pub fn reset_vcpu(&self, vcpu: usize) {
        let mut st = self.change();
        st.core.reset_vcpu(vcpu);
        if let Regs::V3(regs) = &mut st.regs {
            regs.reset_vcpu(vcpu);
        }
    }

    /// Marks `vcpu` on- or offline for 1-of-N SPI routing (IRM = 1 goes to the first
    /// online vCPU; a GICv2 ITARGETSR mask to its first online member). All vCPUs start
    /// online. Returns vCPUs to kick.
    pub fn set_vcpu_online(&self, vcpu: usize, online: bool) -> VcpuSet {
        let mut st = self.change();
        let State { core, regs } = &mut *st;
        match core.vcpus.get_mut(vcpu) {
            Some(v) => v.online = online,
            None => return VcpuSet::EMPTY,
        }
        match regs {
            Regs::V3(regs) => v3::retarget_all(core, regs, &self.info),
            Regs::V2(regs) => v2::retarget_all(core, regs),
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v2;
