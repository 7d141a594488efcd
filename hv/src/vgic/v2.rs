//! GICv2 distributor register decoding (Arm IHI 0048B), over the same interrupt state as
//! the GICv3 front end.
//!
//! Only the 4 KiB distributor is emulated: the guest's CPU interface is the hardware's
//! virtual CPU interface (GICV) mapped at the GICC address. The model has no Security
//! Extensions: GICD_CTLR has EnableGrp0 (bit 0) and EnableGrp1 (bit 1), IGROUPR is
//! writable, NSACR is RAZ/WI. Registers for INTIDs 0..31 are banked per vCPU. Like the
//! GICv3 front end, unknown and reserved offsets read as zero and ignore writes, and a
//! register accessed with a size it does not support faults.
//!
//! SPI routing: ITARGETSR holds a CPU mask (bits of vCPUs that do not exist read as zero).
//! An SPI goes to the lowest-numbered online vCPU in its mask, or to the lowest-numbered
//! one if none is online; a mask of zero delivers it nowhere (it stays pending). Targets
//! reset to vCPU 0, as in Xen, so a guest that never writes them still gets its SPIs.

use super::state::{Core, PRIVATE_IRQS, SGIS, V2_CPUS};
use super::v3::{
    bits_access, config_access, need, priority_access, Access, CTLR_ENABLE_GRP0, CTLR_ENABLE_GRP1,
    GICD_CTLR, GICD_ICFGR, GICD_ICPENDR, GICD_IGROUPR, GICD_IIDR, GICD_IPRIORITYR, GICD_ISPENDR,
    GICD_TYPER, IIDR, READ_NOTHING,
};
use super::VcpuSet;
use crate::exit::AccessSize;
use alloc::vec;
use alloc::vec::Vec;

/// Size of the GICv2 distributor window.
pub(crate) const DIST_SIZE: u64 = 0x1000;

const GICD_ITARGETSR: u64 = 0x0800;
const GICD_ITARGETSR_END: u64 = 0x0C00;
/// PPI/SPI status registers of the GIC-400 (0xD00..0xDFC), RAZ/WI here.
const GICD_STATUS: u64 = 0x0D00;
const GICD_SGIR: u64 = 0x0F00;
const GICD_CPENDSGIR: u64 = 0x0F10;
const GICD_SPENDSGIR: u64 = 0x0F20;
const ID_REGS: u64 = 0x0FD0;

/// GICD_SGIR fields.
const SGIR_INTID_MASK: u64 = 0xF;
const SGIR_TARGETS_SHIFT: u64 = 16;
const SGIR_FILTER_SHIFT: u64 = 24;

/// ITARGETSR reset value for SPIs: vCPU 0.
const TARGET_RESET: u8 = 0x01;

/// Register state that is not interrupt state.
pub(crate) struct Regs {
    /// ITARGETSR byte of SPI 32 + i, masked to existing vCPUs.
    targets: Vec<u8>,
    /// Bits of existing vCPUs in a CPU mask.
    cpu_mask: u8,
}

impl Regs {
    /// `nr_vcpus` must be at most 8 (checked by the caller).
    pub fn new(nr_vcpus: usize, nr_spis: u32) -> Self {
        let cpu_mask = (0..nr_vcpus.min(V2_CPUS)).fold(0u8, |m, i| m | (1 << i));
        Self {
            targets: vec![TARGET_RESET; nr_spis as usize],
            cpu_mask,
        }
    }
}

/// ID registers from 0xFD0 (PIDR4..7, PIDR0..3, CIDR0..3): a GIC-400 (part 0x390 of Arm,
/// JEP106 0x43B) with architecture revision 2 in PIDR2.
fn id_reg(offset: u64) -> u64 {
    match offset {
        0xFD0 => 0x04,
        0xFE0 => 0x90,
        0xFE4 => 0xB4,
        0xFE8 => 0x2B,
        0xFF0 => 0x0D,
        0xFF4 => 0xF0,
        0xFF8 => 0x05,
        0xFFC => 0xB1,
        _ => 0,
    }
}

/// GICD_TYPER: ITLinesNumber and CPUNumber; no Security Extensions, no LSPIs.
fn typer(core: &Core) -> u64 {
    let lines = (core.intid_end().div_ceil(32) - 1) as u64;
    let cpus = core.vcpus.len().clamp(1, V2_CPUS) as u64 - 1;
    lines | (cpus << 5)
}

/// The vCPU a CPU mask routes to.
fn route(core: &Core, mask: u8) -> Option<u16> {
    let members = || (0..V2_CPUS).filter(move |&i| mask & (1 << i) != 0);
    let online = members().find(|&i| core.vcpus.get(i).is_some_and(|v| v.online));
    online.or_else(|| members().next()).map(|i| i as u16)
}

/// Recomputes every SPI's target (after a vCPU went on- or offline).
pub(crate) fn retarget_all(core: &mut Core, regs: &Regs) -> VcpuSet {
    let mut kick = VcpuSet::EMPTY;
    for (i, &mask) in regs.targets.iter().enumerate() {
        let target = route(core, mask);
        kick = kick.union(core.set_spi_target(PRIVATE_IRQS + i as u32, target));
    }
    kick
}

/// ITARGETSR: one byte per interrupt, byte or word access. `first` is the INTID of the
/// accessed byte. For INTIDs 0..31 every byte reads as the accessing vCPU's own bit.
fn targets_access(
    core: &mut Core,
    regs: &mut Regs,
    vcpu: usize,
    first: u32,
    size: AccessSize,
    write: Option<u64>,
) -> Access {
    need(size, &[AccessSize::Byte, AccessSize::Word])?;
    let n = size.bytes() as u32;
    let own = 1u64 << (vcpu % V2_CPUS);
    let byte = |intid: u32| -> u64 {
        if intid < PRIVATE_IRQS {
            own
        } else {
            intid
                .checked_sub(PRIVATE_IRQS)
                .and_then(|i| regs.targets.get(i as usize))
                .map_or(0, |&m| u64::from(m))
        }
    };
    let Some(v) = write else {
        let value = (0..n).fold(0, |acc, i| acc | (byte(first + i) << (8 * i)));
        return Ok((value, VcpuSet::EMPTY));
    };
    let mut kick = VcpuSet::EMPTY;
    for i in 0..n {
        let intid = first + i;
        let Some(index) = intid.checked_sub(PRIVATE_IRQS) else {
            continue;
        };
        let mask = (v >> (8 * i)) as u8 & regs.cpu_mask;
        if let Some(slot) = regs.targets.get_mut(index as usize) {
            *slot = mask;
            let target = route(core, mask);
            kick = kick.union(core.set_spi_target(intid, target));
        }
    }
    Ok((0, kick))
}

/// GICD_SGIR, written by `vcpu`: SGIINTID, CPUTargetList, TargetListFilter (0: the list,
/// 1: all but the writer, 2: the writer only, 3: reserved, ignored). NSATT is ignored.
pub(crate) fn write_sgir(core: &mut Core, regs: &Regs, vcpu: usize, value: u64) -> VcpuSet {
    let intid = (value & SGIR_INTID_MASK) as u32;
    let own = 1u8 << (vcpu % V2_CPUS);
    let targets = match (value >> SGIR_FILTER_SHIFT) & 3 {
        0 => (value >> SGIR_TARGETS_SHIFT) as u8,
        1 => !own,
        2 => own,
        _ => 0,
    } & regs.cpu_mask;
    let mut kick = VcpuSet::EMPTY;
    for target in (0..V2_CPUS).filter(|&t| targets & (1 << t) != 0) {
        kick = kick.union(core.set_sgi_pending(target, intid, vcpu));
    }
    kick
}

/// CPENDSGIR/SPENDSGIR: one byte per SGI of the accessing vCPU, one bit per source CPU.
/// `first` is the SGI of the accessed byte.
fn sgi_sources_access(
    core: &mut Core,
    regs: &Regs,
    vcpu: usize,
    first: u32,
    set: bool,
    size: AccessSize,
    write: Option<u64>,
) -> Access {
    need(size, &[AccessSize::Byte, AccessSize::Word])?;
    let n = size.bytes() as u32;
    let Some(v) = write else {
        let value = (0..n).fold(0u64, |acc, i| {
            let sources = core.sgi_pending_sources(vcpu, first + i);
            acc | (u64::from(sources) << (8 * i))
        });
        return Ok((value, VcpuSet::EMPTY));
    };
    let mut kick = VcpuSet::EMPTY;
    for i in 0..n {
        let intid = first + i;
        let mask = (v >> (8 * i)) as u8 & regs.cpu_mask;
        if set {
            for source in (0..V2_CPUS).filter(|&s| mask & (1 << s) != 0) {
                kick = kick.union(core.set_sgi_pending(vcpu, intid, source));
            }
        } else if mask != 0 {
            kick = kick.union(core.clear_sgi_pending(vcpu, intid, mask));
        }
    }
    Ok((0, kick))
}

/// An access by `vcpu` to the distributor at `offset` (below [`DIST_SIZE`], aligned to
/// the access size).
pub(crate) fn dist_access(
    core: &mut Core,
    regs: &mut Regs,
    vcpu: usize,
    offset: u64,
    size: AccessSize,
    write: Option<u64>,
) -> Access {
    let word = [AccessSize::Word];
    match offset {
        GICD_CTLR => {
            need(size, &word)?;
            match write {
                None => {
                    let mut v = 0;
                    if core.group0_enabled {
                        v |= CTLR_ENABLE_GRP0;
                    }
                    if core.group1_enabled {
                        v |= CTLR_ENABLE_GRP1;
                    }
                    Ok((v, VcpuSet::EMPTY))
                }
                Some(v) => {
                    core.group0_enabled = v & CTLR_ENABLE_GRP0 != 0;
                    core.group1_enabled = v & CTLR_ENABLE_GRP1 != 0;
                    Ok((0, core.all_with_deliverable()))
                }
            }
        }
        GICD_TYPER => {
            need(size, &word)?;
            Ok((typer(core), VcpuSet::EMPTY))
        }
        GICD_IIDR => {
            need(size, &word)?;
            Ok((IIDR, VcpuSet::EMPTY))
        }
        GICD_IGROUPR..GICD_IPRIORITYR => {
            need(size, &word)?;
            let base = offset & !0x7F;
            let reg = ((offset & 0x7F) / 4) as u32;
            let mut write = write;
            if reg == 0 && (base == GICD_ISPENDR || base == GICD_ICPENDR) {
                // SGI pending bits are per source: only SPENDSGIR/CPENDSGIR change them.
                write = write.map(|v| v & !((1 << SGIS) - 1));
            }
            bits_access(core, vcpu, base, reg, write)
        }
        GICD_IPRIORITYR..GICD_ITARGETSR => {
            let first = (offset - GICD_IPRIORITYR) as u32;
            priority_access(core, vcpu, first, size, write)
        }
        GICD_ITARGETSR..GICD_ITARGETSR_END => {
            let first = (offset - GICD_ITARGETSR) as u32;
            targets_access(core, regs, vcpu, first, size, write)
        }
        GICD_ICFGR..GICD_STATUS => {
            need(size, &word)?;
            let first = ((offset - GICD_ICFGR) / 4) as u32 * 16;
            config_access(core, vcpu, first, write)
        }
        GICD_STATUS..GICD_SGIR => {
            // PPI/SPI status (GIC-400) and NSACR (at 0xE00).
            need(size, &word)?;
            READ_NOTHING
        }
        GICD_SGIR => {
            need(size, &word)?;
            match write {
                None => READ_NOTHING,
                Some(v) => Ok((0, write_sgir(core, regs, vcpu, v))),
            }
        }
        GICD_CPENDSGIR..GICD_SPENDSGIR => {
            let first = (offset - GICD_CPENDSGIR) as u32;
            sgi_sources_access(core, regs, vcpu, first, false, size, write)
        }
        GICD_SPENDSGIR..0x0F30 => {
            let first = (offset - GICD_SPENDSGIR) as u32;
            sgi_sources_access(core, regs, vcpu, first, true, size, write)
        }
        ID_REGS..DIST_SIZE => {
            need(size, &word)?;
            Ok((id_reg(offset), VcpuSet::EMPTY))
        }
        _ => READ_NOTHING,
    }
}
