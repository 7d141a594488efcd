//! The interrupt-state core of the virtual GIC, independent of any register layout.
//!
//! It knows interrupts by INTID: SGIs and PPIs (0..31) banked per vCPU, SPIs (32..)
//! shared and routed to one vCPU. The GICv3 front end (`v3.rs`) decodes registers into
//! calls here, and so does the GICv2 front end (`v2.rs`).
//!
//! List registers are treated as a cache of this state that the integrator writes before
//! entering a vCPU ([`Core::fill`]) and reads back after it ran ([`Core::sync`]). While an
//! interrupt is listed, the part of its state held by the list register (`lr`) is what the
//! guest sees; anything that happens meanwhile (a new edge, a cleared pending bit) is kept
//! beside it and merged at the next sync. Each vCPU keeps a bitmap of the INTIDs that are
//! pending or active for it, so fill and sync never scan all 1020 interrupts.
//!
//! GICv2 SGIs carry the number of the CPU that sent them, and the same SGI may be pending
//! from several sources at once. With [`Model::V2`], an SGI keeps a pending bit per source
//! (`Irq::sources`, mirrored by its `latch`), and a list register holds one source at a
//! time: fill lists the lowest pending source and asks for an EOI maintenance interrupt
//! while other sources wait, so the next one is listed once the guest deactivates it.
//! An active SGI only becomes pending-and-active again for its own source.

use super::{FillOutcome, ListReg, LrState, VcpuSet};
use alloc::vec;
use alloc::vec::Vec;

/// Number of INTIDs a bitmap covers (0..1023).
const INTID_LIMIT: u32 = 1024;
/// Banked interrupts per vCPU (SGIs and PPIs).
pub(crate) const PRIVATE_IRQS: u32 = 32;
/// Number of SGIs.
pub(crate) const SGIS: u32 = 16;

/// Most CPUs a GICv2 can name (sources of SGIs, ITARGETSR bits).
pub(crate) const V2_CPUS: usize = 8;

/// Which architecture the guest sees; it decides the reset group and SGI sources.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Model {
    /// GICv3: interrupts reset to Group 1, SGIs have no source.
    V3,
    /// GICv2: interrupts reset to Group 0 (what a guest that only sets
    /// GICC_CTLR.EnableGrp0 needs, as Linux does), SGIs pending per source CPU.
    V2,
}

/// One interrupt's state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Irq {
    pub enabled: bool,
    /// Pending latch: an edge, or a pending bit set by software. Not counting what an LR holds.
    pub latch: bool,
    /// Input line level, for level-sensitive interrupts.
    pub line: bool,
    /// Active, when not held by an LR.
    pub active: bool,
    /// Edge-triggered (otherwise level-sensitive).
    pub edge: bool,
    pub group1: bool,
    pub priority: u8,
    /// The state written into an LR of `owner`, while listed.
    pub lr: Option<LrState>,
    /// Software cleared the pending state while the LR held it: drop it at sync.
    pub drop_pending: bool,
    /// Software cleared the active state while the LR held it: drop it at sync.
    pub drop_active: bool,
    /// GICv2 SGIs: source CPUs pending, not counting the LR (`latch` is `sources != 0`).
    pub sources: u8,
    /// GICv2 SGIs: the source held by the LR, while listed.
    pub lr_source: u8,
    /// GICv2 SGIs: the source of the active state, when not held by an LR.
    pub active_source: u8,
    /// Backed by the physical SPI of the same number (listed with the hardware bit).
    pub hw: bool,
}

impl Irq {
    fn reset(edge: bool, model: Model) -> Self {
        Self {
            edge,
            group1: model == Model::V3,
            ..Self::default()
        }
    }

    /// Pending as the guest would read it.
    pub fn pending(&self) -> bool {
        self.latch
            || (!self.edge && self.line)
            || (!self.drop_pending && self.lr.is_some_and(LrState::is_pending))
    }

    /// Active as the guest would read it.
    pub fn is_active(&self) -> bool {
        self.active || (!self.drop_active && self.lr.is_some_and(LrState::is_active))
    }
}

impl LrState {
    /// Whether the state includes pending.
    pub fn is_pending(self) -> bool {
        matches!(self, LrState::Pending | LrState::PendingActive)
    }
    /// Whether the state includes active.
    pub fn is_active(self) -> bool {
        matches!(self, LrState::Active | LrState::PendingActive)
    }
}

/// A shared peripheral interrupt with its routing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spi {
    pub irq: Irq,
    /// Where it is delivered when it next becomes pending (`None`: no such vCPU).
    pub target: Option<u16>,
    /// The vCPU holding it in an LR or having it active.
    pub owner: u16,
}

const INTID_WORDS: usize = (INTID_LIMIT / 64) as usize;

/// A bitmap of INTIDs, with a summary of its non-empty words so that the check made on every
/// guest exit ("anything to list?") and the scan visit only words with members.
#[derive(Clone, Debug)]
pub(crate) struct IntidSet {
    words: [u64; INTID_WORDS],
    /// Bit w set: `words[w] != 0`.
    summary: u16,
}

impl IntidSet {
    const fn new() -> Self {
        Self {
            words: [0; INTID_WORDS],
            summary: 0,
        }
    }
    fn insert(&mut self, intid: u32) {
        if intid < INTID_LIMIT {
            let w = (intid / 64) as usize;
            self.words[w] |= 1 << (intid % 64);
            self.summary |= 1 << w;
        }
    }
    fn remove(&mut self, intid: u32) {
        if intid < INTID_LIMIT {
            let w = (intid / 64) as usize;
            self.words[w] &= !(1 << (intid % 64));
            if self.words[w] == 0 {
                self.summary &= !(1 << w);
            }
        }
    }
    fn is_empty(&self) -> bool {
        self.summary == 0
    }
    /// Whether `intid` is the only member.
    #[inline(always)]
    fn is_only(&self, intid: u32) -> bool {
        let w = (intid / 64) as usize;
        intid < INTID_LIMIT && self.summary == 1 << w && self.words[w] == 1 << (intid % 64)
    }
    /// Calls `f` for each member, lowest first.
    fn for_each(&self, mut f: impl FnMut(u32)) {
        let mut summary = self.summary;
        while summary != 0 {
            let w = summary.trailing_zeros() as usize;
            summary &= summary - 1;
            let mut bits = self.words[w];
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                f(w as u32 * 64 + b);
            }
        }
    }
}

/// Per-vCPU state.
#[derive(Debug)]
pub(crate) struct VcpuIrqs {
    pub private: [Irq; PRIVATE_IRQS as usize],
    /// INTIDs pending or active for this vCPU (may hold stale entries, cleaned at fill).
    interesting: IntidSet,
    /// INTIDs currently written into this vCPU's LRs.
    listed: Vec<u32>,
    /// Reused for sorting candidates, to avoid allocating on every entry.
    scratch: Vec<(bool, u8, u32)>,
    pub online: bool,
}

impl VcpuIrqs {
    fn new(model: Model) -> Self {
        let mut private = [Irq::reset(true, model); PRIVATE_IRQS as usize];
        // PPIs reset level-sensitive (the timers are level); SGIs are always edge.
        for irq in private.iter_mut().skip(SGIS as usize) {
            irq.edge = false;
        }
        Self {
            private,
            interesting: IntidSet::new(),
            listed: Vec::new(),
            scratch: Vec::new(),
            online: true,
        }
    }
}

/// The state of all interrupts of one domain.
#[derive(Debug)]
pub(crate) struct Core {
    pub vcpus: Vec<VcpuIrqs>,
    pub spis: Vec<Spi>,
    pub group0_enabled: bool,
    pub group1_enabled: bool,
    /// Private interrupts (bit = INTID < 32) that are edge-triggered with a fixed
    /// configuration (GICv3 leaves PPI configurability to the implementation).
    pub fixed_edge: u32,
    model: Model,
}

impl Core {
    pub fn new(nr_vcpus: usize, nr_spis: u32, model: Model) -> Self {
        Self {
            vcpus: (0..nr_vcpus).map(|_| VcpuIrqs::new(model)).collect(),
            spis: vec![
                Spi {
                    irq: Irq::reset(false, model),
                    target: Some(0),
                    owner: 0,
                };
                nr_spis as usize
            ],
            group0_enabled: false,
            group1_enabled: false,
            fixed_edge: 0,
            model,
        }
    }

    /// Makes private interrupt `intid` edge-triggered on every vCPU, for good.
    pub fn fix_edge(&mut self, intid: u32) {
        if !(SGIS..PRIVATE_IRQS).contains(&intid) {
            return;
        }
        self.fixed_edge |= 1 << intid;
        for v in &mut self.vcpus {
            v.private[intid as usize].edge = true;
        }
    }

    /// Whether the guest may change `intid`'s trigger configuration.
    pub fn config_is_fixed(&self, intid: u32) -> bool {
        intid < SGIS || (intid < PRIVATE_IRQS && self.fixed_edge & (1 << intid) != 0)
    }

    /// Whether `intid` is an SGI with per-source pending state.
    #[inline(always)]
    fn per_source(&self, intid: u32) -> bool {
        self.model == Model::V2 && intid < SGIS
    }

    /// One past the highest valid INTID.
    pub fn intid_end(&self) -> u32 {
        PRIVATE_IRQS + self.spis.len() as u32
    }

    /// Resets a vCPU's banked interrupts and drops anything it has listed.
    pub fn reset_vcpu(&mut self, vcpu: usize) {
        if vcpu >= self.vcpus.len() {
            return;
        }
        let listed = core::mem::take(&mut self.vcpus[vcpu].listed);
        for intid in listed {
            if let Some(irq) = self.irq_mut(vcpu, intid) {
                irq.lr = None;
                irq.drop_pending = false;
                irq.drop_active = false;
            }
        }
        let online = self.vcpus[vcpu].online;
        self.vcpus[vcpu] = VcpuIrqs::new(self.model);
        self.vcpus[vcpu].online = online;
        for intid in SGIS..PRIVATE_IRQS {
            if self.fixed_edge & (1 << intid) != 0 {
                self.vcpus[vcpu].private[intid as usize].edge = true;
            }
        }
    }

    pub fn irq(&self, vcpu: usize, intid: u32) -> Option<&Irq> {
        if intid < PRIVATE_IRQS {
            self.vcpus.get(vcpu).map(|v| &v.private[intid as usize])
        } else {
            self.spis
                .get((intid - PRIVATE_IRQS) as usize)
                .map(|s| &s.irq)
        }
    }

    pub fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut Irq> {
        if intid < PRIVATE_IRQS {
            self.vcpus
                .get_mut(vcpu)
                .map(|v| &mut v.private[intid as usize])
        } else {
            self.spis
                .get_mut((intid - PRIVATE_IRQS) as usize)
                .map(|s| &mut s.irq)
        }
    }

    #[inline(always)]
    fn group_enabled(&self, irq: &Irq) -> bool {
        if irq.group1 {
            self.group1_enabled
        } else {
            self.group0_enabled
        }
    }

    /// Where an interrupt's state lives: the owner when listed or active, else its target.
    #[inline(always)]
    fn home(&self, vcpu: usize, intid: u32) -> Option<usize> {
        if intid < PRIVATE_IRQS {
            return (vcpu < self.vcpus.len()).then_some(vcpu);
        }
        let spi = self.spis.get((intid - PRIVATE_IRQS) as usize)?;
        if spi.irq.lr.is_some() || spi.irq.active {
            Some(usize::from(spi.owner))
        } else {
            spi.target.map(usize::from)
        }
    }

    /// After a change to `intid`: records it as interesting for its vCPU and says whom to
    /// kick (the vCPU if it holds it in an LR, or if it is now deliverable).
    #[inline(always)]
    pub fn touched(&mut self, vcpu: usize, intid: u32) -> VcpuSet {
        let mut kick = VcpuSet::EMPTY;
        let Some(home) = self.home(vcpu, intid) else {
            return kick;
        };
        let Some(irq) = self.irq(vcpu, intid).copied() else {
            return kick;
        };
        if irq.pending() || irq.is_active() {
            self.vcpus[home].interesting.insert(intid);
        }
        if irq.lr.is_some() || (irq.pending() && irq.enabled && self.group_enabled(&irq)) {
            kick.insert(home);
        }
        kick
    }

    /// Sets the pending latch (edge injection, ISPENDR, SGI). A GICv2 SGI made pending
    /// this way comes from `vcpu` itself.
    pub fn set_pending(&mut self, vcpu: usize, intid: u32) -> VcpuSet {
        if self.per_source(intid) {
            return self.set_sgi_pending(vcpu, intid, vcpu);
        }
        match self.irq_mut(vcpu, intid) {
            Some(irq) => {
                irq.latch = true;
                self.touched(vcpu, intid)
            }
            None => VcpuSet::EMPTY,
        }
    }

    /// Makes GICv2 SGI `intid` of `vcpu` pending from CPU `source`.
    pub fn set_sgi_pending(&mut self, vcpu: usize, intid: u32, source: usize) -> VcpuSet {
        if intid >= SGIS || source >= V2_CPUS {
            return VcpuSet::EMPTY;
        }
        match self.irq_mut(vcpu, intid) {
            Some(irq) => {
                irq.sources |= 1 << source;
                irq.latch = true;
                self.touched(vcpu, intid)
            }
            None => VcpuSet::EMPTY,
        }
    }

    /// Clears the pending state of GICv2 SGI `intid` of `vcpu` for the sources in `mask`.
    pub fn clear_sgi_pending(&mut self, vcpu: usize, intid: u32, mask: u8) -> VcpuSet {
        if intid >= SGIS {
            return VcpuSet::EMPTY;
        }
        match self.irq_mut(vcpu, intid) {
            Some(irq) => {
                irq.sources &= !mask;
                irq.latch = irq.sources != 0;
                if irq.lr.is_some_and(LrState::is_pending) && mask & (1 << irq.lr_source) != 0 {
                    irq.drop_pending = true;
                }
                self.touched(vcpu, intid)
            }
            None => VcpuSet::EMPTY,
        }
    }

    /// The sources from which GICv2 SGI `intid` of `vcpu` is pending, as the guest sees it.
    pub fn sgi_pending_sources(&self, vcpu: usize, intid: u32) -> u8 {
        if intid >= SGIS {
            return 0;
        }
        match self.irq(vcpu, intid) {
            Some(irq) => {
                let listed = !irq.drop_pending && irq.lr.is_some_and(LrState::is_pending);
                irq.sources | if listed { 1 << irq.lr_source } else { 0 }
            }
            None => 0,
        }
    }

    /// Clears the pending state set by software or an edge (ICPENDR). A level line still
    /// high keeps the interrupt pending. A GICv2 SGI loses all its sources.
    pub fn clear_pending(&mut self, vcpu: usize, intid: u32) -> VcpuSet {
        if self.per_source(intid) {
            return self.clear_sgi_pending(vcpu, intid, 0xFF);
        }
        match self.irq_mut(vcpu, intid) {
            Some(irq) => {
                irq.latch = false;
                if irq.lr.is_some_and(LrState::is_pending) {
                    irq.drop_pending = true;
                }
                self.touched(vcpu, intid)
            }
            None => VcpuSet::EMPTY,
        }
    }

    /// Sets or clears the active state (ISACTIVER, ICACTIVER). A GICv2 SGI made active
    /// this way has `vcpu` itself as its source.
    pub fn set_active(&mut self, vcpu: usize, intid: u32, active: bool) -> VcpuSet {
        let is_spi = intid >= PRIVATE_IRQS;
        let home = self.home(vcpu, intid);
        let own_source = (vcpu % V2_CPUS) as u8;
        match self.irq_mut(vcpu, intid) {
            Some(irq) => {
                if active {
                    if !irq.is_active() && irq.lr.is_none() {
                        irq.active = true;
                        irq.active_source = own_source;
                        if is_spi {
                            if let Some(h) = home {
                                self.spis[(intid - PRIVATE_IRQS) as usize].owner = h as u16;
                            }
                        }
                    }
                } else {
                    irq.active = false;
                    if irq.lr.is_some_and(LrState::is_active) {
                        irq.drop_active = true;
                    }
                }
                self.touched(vcpu, intid)
            }
            None => VcpuSet::EMPTY,
        }
    }

    pub fn set_enabled(&mut self, vcpu: usize, intid: u32, enabled: bool) -> VcpuSet {
        match self.irq_mut(vcpu, intid) {
            Some(irq) => {
                irq.enabled = enabled;
                self.touched(vcpu, intid)
            }
            None => VcpuSet::EMPTY,
        }
    }

    /// Drives a level-sensitive input line.
    pub fn set_line(&mut self, vcpu: usize, intid: u32, high: bool) -> VcpuSet {
        match self.irq_mut(vcpu, intid) {
            Some(irq) if irq.line != high => {
                irq.line = high;
                self.touched(vcpu, intid)
            }
            _ => VcpuSet::EMPTY,
        }
    }

    /// Changes an SPI's target vCPU.
    pub fn set_spi_target(&mut self, intid: u32, target: Option<u16>) -> VcpuSet {
        let Some(spi) = intid
            .checked_sub(PRIVATE_IRQS)
            .and_then(|i| self.spis.get_mut(i as usize))
        else {
            return VcpuSet::EMPTY;
        };
        spi.target = target;
        self.touched(0, intid)
    }

    /// vCPUs with something deliverable (after the enable bits in the distributor changed).
    pub fn all_with_deliverable(&self) -> VcpuSet {
        let mut set = VcpuSet::EMPTY;
        for v in 0..self.vcpus.len() {
            if self.has_deliverable(v) {
                set.insert(v);
            }
        }
        set
    }

    /// Whether `intid` counts for `vcpu` at fill time; `None` when stale.
    #[inline(always)]
    fn belongs(&self, vcpu: usize, intid: u32) -> Option<Irq> {
        let irq = *self.irq(vcpu, intid)?;
        if !irq.pending() && !irq.is_active() {
            return None;
        }
        if intid >= PRIVATE_IRQS && self.home(vcpu, intid) != Some(vcpu) {
            return None;
        }
        Some(irq)
    }

    /// An enabled, pending, not active interrupt exists for `vcpu`.
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        let Some(v) = self.vcpus.get(vcpu) else {
            return false;
        };
        let mut found = false;
        v.interesting.for_each(|intid| {
            if !found {
                if let Some(irq) = self.belongs(vcpu, intid) {
                    found = irq.pending()
                        && !irq.is_active()
                        && irq.enabled
                        && self.group_enabled(&irq);
                }
            }
        });
        found
    }

    /// Folds the list registers read back after `vcpu` ran into the state. Returns other
    /// vCPUs that now have something to deliver (a retargeted SPI).
    pub fn sync(&mut self, vcpu: usize, lrs: &[ListReg]) -> VcpuSet {
        let mut kick = VcpuSet::EMPTY;
        let Some(v) = self.vcpus.get_mut(vcpu) else {
            return kick;
        };
        let listed = core::mem::take(&mut v.listed);
        for &intid in &listed {
            let per_source = self.per_source(intid);
            let hw = lrs
                .iter()
                .find(|lr| lr.intid == intid)
                .map_or(LrState::Invalid, |lr| lr.state);
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                continue;
            };
            if irq.lr.is_none() {
                continue;
            }
            let hw_pending = hw.is_pending() && !irq.drop_pending;
            let hw_active = hw.is_active() && !irq.drop_active;
            if per_source {
                // The LR held one source. The recorded one is used, not the CPUID field
                // read back, so a wrong read-back cannot make up a source.
                if hw_pending {
                    irq.sources |= 1 << irq.lr_source;
                }
                irq.latch = irq.sources != 0;
                irq.active_source = irq.lr_source;
            } else if irq.edge {
                irq.latch |= hw_pending;
            } else if irq.lr.is_some_and(|written| written.is_pending()) && !hw.is_pending() {
                // The guest acknowledged what was listed as pending: that consumes a
                // software-set pending latch (a line still high keeps it pending). A latch
                // set while the interrupt was listed only as active (a new injection during
                // its handler) was never shown to the guest and must survive.
                irq.latch = false;
            }
            irq.active = hw_active;
            irq.lr = None;
            irq.drop_pending = false;
            irq.drop_active = false;
            let k = self.touched(vcpu, intid);
            k.iter().filter(|&o| o != vcpu).for_each(|o| kick.insert(o));
        }
        // Keep the allocation for the next fill.
        let mut listed = listed;
        listed.clear();
        self.vcpus[vcpu].listed = listed;
        kick
    }

    /// Chooses what `vcpu` finds in its list registers: every active interrupt first, then
    /// the most urgent deliverable pending ones. Fills `lrs` completely (unused = Invalid).
    pub fn fill(&mut self, vcpu: usize, lrs: &mut [ListReg]) -> FillOutcome {
        const NOTHING: FillOutcome = FillOutcome {
            overflow: false,
            listed: 0,
            changes: 0,
        };
        let Some(v) = self.vcpus.get(vcpu) else {
            lrs.fill(ListReg::INVALID);
            return NOTHING;
        };
        // The common exit (a hypercall, an MMIO access) has nothing to list: skip the scan.
        if v.listed.is_empty() && v.interesting.is_empty() {
            lrs.fill(ListReg::INVALID);
            return NOTHING;
        }
        lrs.fill(ListReg::INVALID);
        if !self.vcpus[vcpu].listed.is_empty() {
            // Not synced since the last fill: take the LRs as unchanged.
            let unchanged: Vec<ListReg> = self.vcpus[vcpu]
                .listed
                .iter()
                .filter_map(|&intid| {
                    let state = self.irq(vcpu, intid)?.lr?;
                    Some(ListReg {
                        intid,
                        state,
                        ..ListReg::INVALID
                    })
                })
                .collect();
            self.sync(vcpu, &unchanged);
        }
        let mut candidates = core::mem::take(&mut self.vcpus[vcpu].scratch);
        candidates.clear();
        // Word by word, copying one word at a time (not the whole set) since the scan
        // drops stale members as it goes.
        let mut words = self.vcpus[vcpu].interesting.summary;
        while words != 0 {
            let w = words.trailing_zeros() as usize;
            words &= words - 1;
            let mut bits = self.vcpus[vcpu].interesting.words[w];
            while bits != 0 {
                let intid = w as u32 * 64 + bits.trailing_zeros();
                bits &= bits - 1;
                match self.belongs(vcpu, intid) {
                    None => self.vcpus[vcpu].interesting.remove(intid),
                    Some(irq) => {
                        if irq.active {
                            candidates.push((false, irq.priority, intid));
                        } else if irq.pending() && irq.enabled && self.group_enabled(&irq) {
                            candidates.push((true, irq.priority, intid));
                        }
                    }
                }
            }
        }
        // Active first (false < true), then by priority, then by INTID.
        candidates.sort_unstable();
        let overflow = candidates.len() > lrs.len();
        let mut listed = core::mem::take(&mut self.vcpus[vcpu].listed);
        for (slot, &(_, _, intid)) in lrs.iter_mut().zip(candidates.iter()) {
            let groups = (self.group0_enabled, self.group1_enabled);
            let per_source = self.per_source(intid);
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                continue;
            };
            let deliverable = irq.enabled && if irq.group1 { groups.1 } else { groups.0 };
            if per_source {
                *slot = ListReg {
                    intid,
                    ..Self::list_sgi_source(irq, deliverable)
                };
                listed.push(intid);
                continue;
            }
            let state = if irq.active {
                if irq.edge && irq.latch && deliverable {
                    irq.latch = false;
                    LrState::PendingActive
                } else {
                    LrState::Active
                }
            } else {
                if irq.edge {
                    irq.latch = false;
                }
                LrState::Pending
            };
            irq.active = false;
            irq.lr = Some(state);
            *slot = Self::list(intid, irq, state);
            if intid >= PRIVATE_IRQS {
                self.spis[(intid - PRIVATE_IRQS) as usize].owner = vcpu as u16;
            }
            listed.push(intid);
        }
        // Slots written (a candidate that vanished leaves its slot invalid, not compacted).
        let count = candidates.len().min(lrs.len());
        self.vcpus[vcpu].listed = listed;
        self.vcpus[vcpu].scratch = candidates;
        FillOutcome {
            overflow,
            listed: count,
            changes: 0,
        }
    }

    /// [`Core::sync`] then [`Core::fill`], for a vCPU that runs again on the same CPU.
    /// `lrs[..listed]` holds the list registers read back (`listed` from the last fill);
    /// the rest must be invalid, as that fill left them. On return all of `lrs` is the new
    /// choice. Also returns the other vCPUs to kick, as `sync` does.
    ///
    /// `inject`: an interrupt made pending first, as [`Core::set_pending`] does (the event
    /// upcall a vCPU raised for itself).
    pub fn resync(
        &mut self,
        vcpu: usize,
        lrs: &mut [ListReg],
        listed: usize,
        inject: Option<u32>,
    ) -> (FillOutcome, VcpuSet) {
        if let Some(fill) = self.relist_private_edge(vcpu, lrs, listed, inject) {
            return (fill, VcpuSet::EMPTY);
        }
        let mut kick = VcpuSet::EMPTY;
        if let Some(intid) = inject {
            kick = self.set_pending(vcpu, intid).without(vcpu);
        }
        let moved = self.sync(vcpu, &lrs[..listed.min(lrs.len())]);
        (self.fill(vcpu, lrs), kick.union(moved))
    }

    /// The short cut of [`Core::resync`] for the event-channel upcall's round: the only
    /// interrupt listed, and the only one pending or active for the vCPU, is one private
    /// edge-triggered interrupt in the first LR (and the one injected, if any). Gives
    /// exactly what `sync` then `fill` would, without their scan, sort and vectors; `None`,
    /// having changed nothing, when the case does not apply.
    #[inline(always)]
    pub(crate) fn relist_private_edge(
        &mut self,
        vcpu: usize,
        lrs: &mut [ListReg],
        listed: usize,
        inject: Option<u32>,
    ) -> Option<FillOutcome> {
        let groups = (self.group0_enabled, self.group1_enabled);
        let two_level_sgis = self.model == Model::V2;
        let v = self.vcpus.get_mut(vcpu)?;
        let &[intid] = v.listed.as_slice() else {
            return None;
        };
        let slot = lrs.first_mut()?;
        if listed != 1
            || intid >= PRIVATE_IRQS
            || (two_level_sgis && intid < SGIS)
            || !v.interesting.is_only(intid)
            || inject.is_some_and(|i| i != intid)
        {
            return None;
        }
        let irq = &mut v.private[intid as usize];
        if !irq.edge || irq.hw || irq.lr.is_none() {
            return None;
        }
        // Sync, as for any edge interrupt (an LR that no longer names it counts as empty).
        let read_back = if slot.intid == intid {
            slot.state
        } else {
            LrState::Invalid
        };
        // An injection sets the latch, as `set_pending` would have before the sync.
        irq.latch |= inject.is_some() || (read_back.is_pending() && !irq.drop_pending);
        irq.active = read_back.is_active() && !irq.drop_active;
        irq.lr = None;
        irq.drop_pending = false;
        irq.drop_active = false;
        // Fill with this one candidate (or none).
        let deliverable = irq.enabled && if irq.group1 { groups.1 } else { groups.0 };
        let state = if irq.active {
            if irq.latch && deliverable {
                LrState::PendingActive
            } else {
                LrState::Active
            }
        } else if irq.latch && deliverable {
            LrState::Pending
        } else {
            // Nothing to list; still interesting only while pending (but not deliverable).
            if !irq.latch {
                v.interesting.remove(intid);
            }
            v.listed.clear();
            *slot = ListReg::INVALID;
            return Some(FillOutcome {
                overflow: false,
                listed: 0,
                changes: 0,
            });
        };
        if state.is_pending() {
            irq.latch = false;
        }
        irq.active = false;
        irq.lr = Some(state);
        *slot = Self::list(intid, irq, state);
        Some(FillOutcome {
            overflow: false,
            listed: 1,
            changes: 0,
        })
    }

    /// The list register for `intid` (not a GICv2 SGI) in `state`.
    #[inline(always)]
    fn list(intid: u32, irq: &Irq, state: LrState) -> ListReg {
        ListReg {
            intid,
            priority: irq.priority,
            group1: irq.group1,
            state,
            // A hardware-backed LR's deactivation reaches the physical interrupt; the EOI
            // bit does not exist in that form.
            eoi_notify: !irq.edge && !irq.hw,
            source: 0,
            hw: irq.hw,
        }
    }

    /// Puts one source of a GICv2 SGI into an LR: the active source (pending again too if
    /// that source is pending), else the lowest pending source. While other sources wait,
    /// the LR asks for an EOI maintenance interrupt so they are listed in turn.
    fn list_sgi_source(irq: &mut Irq, deliverable: bool) -> ListReg {
        let (source, state) = if irq.active {
            let bit = 1u8 << (irq.active_source % V2_CPUS as u8);
            if irq.sources & bit != 0 && deliverable {
                irq.sources &= !bit;
                (irq.active_source, LrState::PendingActive)
            } else {
                (irq.active_source, LrState::Active)
            }
        } else {
            // Only deliverable pending SGIs are candidates, so a source is set.
            let source = irq.sources.trailing_zeros().min(V2_CPUS as u32 - 1) as u8;
            irq.sources &= !(1 << source);
            (source, LrState::Pending)
        };
        irq.latch = irq.sources != 0;
        irq.active = false;
        irq.lr = Some(state);
        irq.lr_source = source;
        ListReg {
            intid: 0,
            priority: irq.priority,
            group1: irq.group1,
            state,
            eoi_notify: irq.sources != 0,
            source,
            hw: false,
        }
    }
}
