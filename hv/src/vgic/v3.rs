//! GICv3 register decoding for the distributor and the redistributors (Arm IHI 0069).
//! The GICv2 front end (`v2.rs`) shares the helpers for the registers both have.
//!
//! Offsets are relative to the distributor or to one vCPU's 128 KiB redistributor.
//! Each function returns the value read (0 for writes) and the vCPUs to kick, or a fault
//! for an access size the register does not support. Unknown and reserved offsets read as
//! zero and ignore writes.

use super::state::{Core, Irq, PRIVATE_IRQS};
use super::{VcpuSet, VgicFault, MPIDR_AFFINITY_MASK};
use crate::exit::AccessSize;
use alloc::vec;
use alloc::vec::Vec;

/// What the front end needs to know about the domain.
pub(crate) struct Info {
    /// Affinity of each vCPU.
    pub mpidrs: Vec<u64>,
    pub nr_spis: u32,
}

/// Register state that is not interrupt state.
pub(crate) struct Regs {
    /// GICR_WAKER.ProcessorSleep per vCPU.
    processor_sleep: Vec<bool>,
    /// GICD_IROUTER<32 + i>, as written (masked to the defined fields).
    irouter: Vec<u64>,
}

impl Regs {
    pub fn new(nr_vcpus: usize, nr_spis: u32) -> Self {
        Self {
            processor_sleep: vec![true; nr_vcpus],
            irouter: vec![0; nr_spis as usize],
        }
    }

    pub fn reset_vcpu(&mut self, vcpu: usize) {
        if let Some(s) = self.processor_sleep.get_mut(vcpu) {
            *s = true;
        }
    }
}

pub(super) type Access = Result<(u64, VcpuSet), VgicFault>;

pub(super) const READ_NOTHING: Access = Ok((0, VcpuSet::EMPTY));

// Distributor offsets.
pub(super) const GICD_CTLR: u64 = 0x0000;
pub(super) const GICD_TYPER: u64 = 0x0004;
pub(super) const GICD_IIDR: u64 = 0x0008;
const GICD_TYPER2: u64 = 0x000C;
const GICD_STATUSR: u64 = 0x0010;
pub(super) const GICD_IGROUPR: u64 = 0x0080;
pub(super) const GICD_ISENABLER: u64 = 0x0100;
pub(super) const GICD_ICENABLER: u64 = 0x0180;
pub(super) const GICD_ISPENDR: u64 = 0x0200;
pub(super) const GICD_ICPENDR: u64 = 0x0280;
pub(super) const GICD_ISACTIVER: u64 = 0x0300;
pub(super) const GICD_ICACTIVER: u64 = 0x0380;
pub(super) const GICD_IPRIORITYR: u64 = 0x0400;
pub(super) const GICD_ICFGR: u64 = 0x0C00;
const GICD_IGRPMODR: u64 = 0x0D00;
const GICD_NSACR: u64 = 0x0E00;
const GICD_IROUTER: u64 = 0x6000;
const ID_REGS: u64 = 0xFFD0;

// Redistributor RD_base offsets.
const GICR_CTLR: u64 = 0x0000;
const GICR_IIDR: u64 = 0x0004;
const GICR_TYPER: u64 = 0x0008;
const GICR_STATUSR: u64 = 0x0010;
const GICR_WAKER: u64 = 0x0014;
const GICR_PROPBASER: u64 = 0x0070;
const GICR_PENDBASER: u64 = 0x0078;
/// SGI_base frame offset within a redistributor.
const SGI_BASE: u64 = 0x1_0000;

/// GICD_CTLR bits (single security state).
pub(super) const CTLR_ENABLE_GRP0: u64 = 1 << 0;
pub(super) const CTLR_ENABLE_GRP1: u64 = 1 << 1;
const CTLR_ARE: u64 = 1 << 4;
const CTLR_DS: u64 = 1 << 6;

/// GICR_WAKER bits.
const WAKER_PROCESSOR_SLEEP: u64 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u64 = 1 << 2;

/// IIDR: implementer Arm (JEP106 0x43B), product 'M' for Mica, revision 0.
pub(super) const IIDR: u64 = (0x4D << 24) | 0x43B;

/// IROUTER fields: Aff3, IRM, Aff2, Aff1, Aff0.
const IROUTER_MASK: u64 = 0xFF_80FF_FFFF;
const IROUTER_IRM: u64 = 1 << 31;

/// ID registers from 0xFFD0 (PIDR4..7, PIDR0..3, CIDR0..3): Arm's JEP106 code and
/// architecture revision 3 in PIDR2, the part numbers Xen reports.
fn id_reg(offset: u64, redist: bool) -> u64 {
    match offset {
        0xFFD0 => 0x04,
        0xFFE0 => {
            if redist {
                0x93
            } else {
                0x92
            }
        }
        0xFFE4 => 0xB4,
        0xFFE8 => 0x3B,
        0xFFF0 => 0x0D,
        0xFFF4 => 0xF0,
        0xFFF8 => 0x05,
        0xFFFC => 0xB1,
        _ => 0,
    }
}

pub(super) fn need(size: AccessSize, ok: &[AccessSize]) -> Result<(), VgicFault> {
    if ok.contains(&size) {
        Ok(())
    } else {
        Err(VgicFault::BadSize)
    }
}

/// Reads a one-bit-per-interrupt register covering `first..first + 32`.
fn read_bits(core: &Core, vcpu: usize, first: u32, bit: impl Fn(&Irq) -> bool) -> u64 {
    (0..32u32)
        .filter(|i| core.irq(vcpu, first + i).is_some_and(&bit))
        .fold(0, |acc, i| acc | (1 << i))
}

/// Applies `op` to each interrupt whose bit is set in `value`.
fn write_bits(
    core: &mut Core,
    vcpu: usize,
    first: u32,
    value: u64,
    mut op: impl FnMut(&mut Core, usize, u32) -> VcpuSet,
) -> VcpuSet {
    let mut kick = VcpuSet::EMPTY;
    for i in (0..32u32).filter(|i| value & (1 << i) != 0) {
        let intid = first + i;
        if intid < core.intid_end() {
            kick = kick.union(op(core, vcpu, intid));
        }
    }
    kick
}

/// The registers with one bit per interrupt (IGROUPR to ICACTIVER), `base` being the
/// offset of the register group and `reg` the register index (0 = INTIDs 0..31).
pub(super) fn bits_access(
    core: &mut Core,
    vcpu: usize,
    base: u64,
    reg: u32,
    write: Option<u64>,
) -> Access {
    let first = reg * 32;
    let Some(v) = write else {
        let value = match base {
            GICD_IGROUPR => read_bits(core, vcpu, first, |i| i.group1),
            GICD_ISENABLER | GICD_ICENABLER => read_bits(core, vcpu, first, |i| i.enabled),
            GICD_ISPENDR | GICD_ICPENDR => read_bits(core, vcpu, first, Irq::pending),
            GICD_ISACTIVER | GICD_ICACTIVER => read_bits(core, vcpu, first, Irq::is_active),
            _ => 0,
        };
        return Ok((value, VcpuSet::EMPTY));
    };
    let kick = match base {
        GICD_IGROUPR => {
            let mut kick = VcpuSet::EMPTY;
            for i in 0..32u32 {
                let intid = first + i;
                if let Some(irq) = core.irq_mut(vcpu, intid) {
                    irq.group1 = v & (1 << i) != 0;
                    kick = kick.union(core.touched(vcpu, intid));
                }
            }
            kick
        }
        GICD_ISENABLER => write_bits(core, vcpu, first, v, |c, v, i| c.set_enabled(v, i, true)),
        GICD_ICENABLER => write_bits(core, vcpu, first, v, |c, v, i| c.set_enabled(v, i, false)),
        GICD_ISPENDR => write_bits(core, vcpu, first, v, |c, v, i| c.set_pending(v, i)),
        GICD_ICPENDR => write_bits(core, vcpu, first, v, |c, v, i| c.clear_pending(v, i)),
        GICD_ISACTIVER => write_bits(core, vcpu, first, v, |c, v, i| c.set_active(v, i, true)),
        GICD_ICACTIVER => write_bits(core, vcpu, first, v, |c, v, i| c.set_active(v, i, false)),
        _ => VcpuSet::EMPTY,
    };
    Ok((0, kick))
}

/// IPRIORITYR: one byte per interrupt, byte or word access. `first` is the INTID of the
/// accessed byte.
pub(super) fn priority_access(
    core: &mut Core,
    vcpu: usize,
    first: u32,
    size: AccessSize,
    write: Option<u64>,
) -> Access {
    need(size, &[AccessSize::Byte, AccessSize::Word])?;
    let n = size.bytes() as u32;
    match write {
        None => {
            let v = (0..n).fold(0u64, |acc, i| {
                let p = core.irq(vcpu, first + i).map_or(0, |irq| irq.priority);
                acc | (u64::from(p) << (8 * i))
            });
            Ok((v, VcpuSet::EMPTY))
        }
        Some(v) => {
            for i in 0..n {
                if let Some(irq) = core.irq_mut(vcpu, first + i) {
                    irq.priority = (v >> (8 * i)) as u8;
                }
            }
            READ_NOTHING
        }
    }
}

/// ICFGR: two bits per interrupt (bit 1 of each field set = edge). `first` is the first
/// INTID of the register. SGIs are always edge.
pub(super) fn config_access(
    core: &mut Core,
    vcpu: usize,
    first: u32,
    write: Option<u64>,
) -> Access {
    match write {
        None => {
            let v = (0..16u32).fold(0u64, |acc, i| match core.irq(vcpu, first + i) {
                Some(irq) if irq.edge => acc | (2 << (2 * i)),
                _ => acc,
            });
            Ok((v, VcpuSet::EMPTY))
        }
        Some(v) => {
            let mut kick = VcpuSet::EMPTY;
            for i in 0..16u32 {
                let intid = first + i;
                if core.config_is_fixed(intid) {
                    continue;
                }
                if let Some(irq) = core.irq_mut(vcpu, intid) {
                    irq.edge = v & (2 << (2 * i)) != 0;
                    kick = kick.union(core.touched(vcpu, intid));
                }
            }
            Ok((0, kick))
        }
    }
}

/// The vCPU an IROUTER value routes to.
fn route(core: &Core, info: &Info, irouter: u64) -> Option<u16> {
    if irouter & IROUTER_IRM != 0 {
        let first_online = core.vcpus.iter().position(|v| v.online).unwrap_or(0);
        return Some(first_online as u16);
    }
    let affinity = irouter & MPIDR_AFFINITY_MASK;
    info.mpidrs
        .iter()
        .position(|&m| m == affinity)
        .map(|i| i as u16)
}

/// Recomputes every SPI's target (after a vCPU went on- or offline).
pub(crate) fn retarget_all(core: &mut Core, regs: &Regs, info: &Info) -> VcpuSet {
    let mut kick = VcpuSet::EMPTY;
    for (i, &r) in regs.irouter.iter().enumerate() {
        let target = route(core, info, r);
        kick = kick.union(core.set_spi_target(PRIVATE_IRQS + i as u32, target));
    }
    kick
}

fn irouter_access(
    core: &mut Core,
    regs: &mut Regs,
    info: &Info,
    offset: u64,
    size: AccessSize,
    write: Option<u64>,
) -> Access {
    need(size, &[AccessSize::Word, AccessSize::Double])?;
    let intid = ((offset - GICD_IROUTER) / 8) as u32;
    let Some(index) = intid.checked_sub(PRIVATE_IRQS) else {
        return READ_NOTHING;
    };
    let Some(&current) = regs.irouter.get(index as usize) else {
        return READ_NOTHING;
    };
    let high_half = offset % 8 == 4;
    match write {
        None => Ok((
            if high_half { current >> 32 } else { current },
            VcpuSet::EMPTY,
        )),
        Some(v) => {
            let new = match (size, high_half) {
                (AccessSize::Double, _) => v,
                (_, false) => (current & !0xFFFF_FFFF) | v,
                (_, true) => (current & 0xFFFF_FFFF) | (v << 32),
            } & IROUTER_MASK;
            regs.irouter[index as usize] = new;
            let target = route(core, info, new);
            Ok((0, core.set_spi_target(intid, target)))
        }
    }
}

/// GICD_TYPER for this domain.
fn gicd_typer(info: &Info) -> u64 {
    let it_lines = u64::from((info.nr_spis + 32).div_ceil(32) - 1);
    let cpus = (info.mpidrs.len().min(8) - 1) as u64;
    let id_bits = 9u64; // INTIDs up to 1023
    let aff3 = info.mpidrs.iter().any(|m| m >> 32 != 0);
    let rss = info.mpidrs.iter().any(|m| m & 0xFF > 15);
    it_lines | (cpus << 5) | (id_bits << 19) | (u64::from(aff3) << 24) | (u64::from(rss) << 26)
}

/// An access to the distributor at `offset`.
pub(crate) fn dist_access(
    core: &mut Core,
    regs: &mut Regs,
    info: &Info,
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
                    let v = CTLR_ARE
                        | CTLR_DS
                        | if core.group0_enabled {
                            CTLR_ENABLE_GRP0
                        } else {
                            0
                        }
                        | if core.group1_enabled {
                            CTLR_ENABLE_GRP1
                        } else {
                            0
                        };
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
            Ok((gicd_typer(info), VcpuSet::EMPTY))
        }
        GICD_IIDR => {
            need(size, &word)?;
            Ok((IIDR, VcpuSet::EMPTY))
        }
        GICD_TYPER2 | GICD_STATUSR => {
            need(size, &word)?;
            READ_NOTHING
        }
        GICD_IGROUPR..GICD_IPRIORITYR => {
            need(size, &word)?;
            let base = offset & !0x7F;
            let reg = ((offset & 0x7F) / 4) as u32;
            if reg == 0 {
                // Banked per redistributor when affinity routing is on.
                return READ_NOTHING;
            }
            bits_access(core, 0, base, reg, write)
        }
        GICD_IPRIORITYR..0x0800 => {
            let first = (offset - GICD_IPRIORITYR) as u32;
            if first < PRIVATE_IRQS {
                need(size, &[AccessSize::Byte, AccessSize::Word])?;
                return READ_NOTHING;
            }
            priority_access(core, 0, first, size, write)
        }
        GICD_ICFGR..GICD_IGRPMODR => {
            need(size, &word)?;
            let first = ((offset - GICD_ICFGR) / 4) as u32 * 16;
            if first < PRIVATE_IRQS {
                return READ_NOTHING;
            }
            config_access(core, 0, first, write)
        }
        GICD_IGRPMODR..0x0D80 | GICD_NSACR..0x0F00 => {
            need(size, &word)?;
            READ_NOTHING
        }
        GICD_IROUTER..0x7FE0 => irouter_access(core, regs, info, offset, size, write),
        ID_REGS..=0xFFFC => {
            need(size, &word)?;
            Ok((id_reg(offset, false), VcpuSet::EMPTY))
        }
        _ => READ_NOTHING,
    }
}

/// An access to redistributor `frame` (a vCPU index) at `offset` within its 128 KiB.
pub(crate) fn redist_access(
    core: &mut Core,
    regs: &mut Regs,
    info: &Info,
    frame: usize,
    offset: u64,
    size: AccessSize,
    write: Option<u64>,
) -> Access {
    let Some(&mpidr) = info.mpidrs.get(frame) else {
        return READ_NOTHING;
    };
    let word = [AccessSize::Word];
    let word_or_double = [AccessSize::Word, AccessSize::Double];
    if offset >= SGI_BASE {
        let offset = offset - SGI_BASE;
        return match offset {
            GICD_IGROUPR | GICD_ISENABLER | GICD_ICENABLER | GICD_ISPENDR | GICD_ICPENDR
            | GICD_ISACTIVER | GICD_ICACTIVER => {
                need(size, &word)?;
                bits_access(core, frame, offset, 0, write)
            }
            GICD_IPRIORITYR..0x0420 => {
                priority_access(core, frame, (offset - GICD_IPRIORITYR) as u32, size, write)
            }
            0x0C00 | 0x0C04 => {
                need(size, &word)?;
                config_access(core, frame, ((offset - 0x0C00) / 4) as u32 * 16, write)
            }
            GICD_IGRPMODR | GICD_NSACR => {
                need(size, &word)?;
                READ_NOTHING
            }
            ID_REGS..=0xFFFC => {
                need(size, &word)?;
                READ_NOTHING
            }
            _ => READ_NOTHING,
        };
    }
    match offset {
        GICR_CTLR | GICR_STATUSR => {
            need(size, &word)?;
            READ_NOTHING
        }
        GICR_IIDR => {
            need(size, &word)?;
            Ok((IIDR, VcpuSet::EMPTY))
        }
        0x0008 | 0x000C => {
            need(
                size,
                if offset == GICR_TYPER {
                    &word_or_double
                } else {
                    &word
                },
            )?;
            let affinity = (mpidr & 0xFF_FFFF) | (((mpidr >> 32) & 0xFF) << 24);
            let last = frame + 1 == info.mpidrs.len();
            let typer = (affinity << 32) | ((frame as u64) << 8) | (u64::from(last) << 4);
            Ok((
                if offset == 0x000C { typer >> 32 } else { typer },
                VcpuSet::EMPTY,
            ))
        }
        GICR_WAKER => {
            need(size, &word)?;
            match write {
                None => {
                    let asleep = regs.processor_sleep.get(frame).copied().unwrap_or(false);
                    let v = if asleep {
                        WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP
                    } else {
                        0
                    };
                    Ok((v, VcpuSet::EMPTY))
                }
                Some(v) => {
                    if let Some(s) = regs.processor_sleep.get_mut(frame) {
                        *s = v & WAKER_PROCESSOR_SLEEP != 0;
                    }
                    READ_NOTHING
                }
            }
        }
        GICR_PROPBASER | 0x0074 | GICR_PENDBASER | 0x007C => {
            need(
                size,
                if offset.is_multiple_of(8) {
                    &word_or_double
                } else {
                    &word
                },
            )?;
            READ_NOTHING
        }
        ID_REGS..=0xFFFC => {
            need(size, &word)?;
            Ok((id_reg(offset, true), VcpuSet::EMPTY))
        }
        _ => READ_NOTHING,
    }
}
