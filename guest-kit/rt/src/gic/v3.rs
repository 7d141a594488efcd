//! GICv3: distributor enable, this CPU's redistributor and CPU interface (ICC_* system
//! registers), enabling a PPI, acknowledge and end of interrupt. All MMIO accesses are 32-bit
//! except the 64-bit read of GICR_TYPER.

use super::{poll, read32, read64, recorded, write32, GicError};
use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering};
use mica_guest_abi::gicv3::*;

static GICD_BASE: AtomicUsize = AtomicUsize::new(0);
static GICR_BASE: AtomicUsize = AtomicUsize::new(0);
static GICR_SIZE: AtomicUsize = AtomicUsize::new(0);

/// Records the distributor and redistributor region.
pub(super) fn set_regions(gicd: usize, gicr: usize, gicr_size: usize) {
    GICD_BASE.store(gicd, Ordering::Release);
    GICR_BASE.store(gicr, Ordering::Release);
    GICR_SIZE.store(gicr_size, Ordering::Release);
}

fn distributor() -> Result<usize, GicError> {
    recorded(&GICD_BASE)
}

/// Enables affinity routing and group 1 interrupts in the distributor. Call once.
pub(super) fn init_distributor() -> Result<(), GicError> {
    let gicd = distributor()?;
    let ctlr = read32(gicd + GICD_CTLR);
    write32(gicd + GICD_CTLR, ctlr | GICD_CTLR_ARE);
    poll(gicd + GICD_CTLR, GICD_CTLR_RWP, false)?;
    write32(
        gicd + GICD_CTLR,
        ctlr | GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1,
    );
    poll(gicd + GICD_CTLR, GICD_CTLR_RWP, false)
}

/// This CPU's affinity as GICR_TYPER reports it: Aff3.Aff2.Aff1.Aff0.
fn current_affinity() -> u64 {
    let mpidr = crate::cpu::mpidr();
    ((mpidr >> 8) & 0xff00_0000) | (mpidr & 0x00ff_ffff)
}

/// RD_base of the calling CPU's redistributor.
pub(super) fn redistributor() -> Result<usize, GicError> {
    let base = GICR_BASE.load(Ordering::Acquire);
    let size = GICR_SIZE.load(Ordering::Acquire);
    if base == 0 {
        return Err(GicError::NotFound);
    }
    let want = current_affinity();
    let mut offset = 0;
    while offset + GICR_STRIDE <= size {
        let typer = read64(base + offset + GICR_TYPER);
        if typer >> GICR_TYPER_AFFINITY_SHIFT == want {
            return Ok(base + offset);
        }
        if typer & GICR_TYPER_LAST != 0 {
            break;
        }
        offset += if typer & GICR_TYPER_VLPIS != 0 {
            GICR_STRIDE_VLPI
        } else {
            GICR_STRIDE
        };
    }
    Err(GicError::NoRedistributor)
}

/// Wakes this CPU's redistributor and enables its CPU interface for group 1 interrupts of any
/// priority. Call on each CPU that takes interrupts.
pub(super) fn init_cpu() -> Result<(), GicError> {
    let rd = redistributor()?;
    let waker = read32(rd + GICR_WAKER);
    write32(rd + GICR_WAKER, waker & !GICR_WAKER_PROCESSOR_SLEEP);
    poll(rd + GICR_WAKER, GICR_WAKER_CHILDREN_ASLEEP, false)?;
    // SAFETY: GICv3 CPU interface system registers (ICV_* under a hypervisor); setting SRE
    // selects the system-register interface, the rest only affects interrupt delivery.
    unsafe {
        asm!(
            "mrs {tmp}, icc_sre_el1",
            "orr {tmp}, {tmp}, #1",
            "msr icc_sre_el1, {tmp}",
            "isb",
            "mov {tmp}, #0xff",
            "msr icc_pmr_el1, {tmp}",
            "msr icc_bpr1_el1, xzr",
            "mov {tmp}, #1",
            "msr icc_igrpen1_el1, {tmp}",
            "isb",
            tmp = out(reg) _,
            options(nostack),
        );
    }
    Ok(())
}

/// Makes SGI or PPI `intid` a group 1 interrupt with `priority` and enables it on this CPU.
pub(super) fn enable_private(intid: u32, priority: u8) -> Result<(), GicError> {
    if intid >= SPI_FIRST {
        return Err(GicError::BadIntid);
    }
    let sgi = redistributor()? + GICR_SGI_BASE;
    let bit = 1u32 << intid;
    write32(sgi + GICR_IGROUPR0, read32(sgi + GICR_IGROUPR0) | bit);
    let word = sgi + GICR_IPRIORITYR + (intid as usize & !3);
    let shift = (intid % 4) * 8;
    let priorities = read32(word) & !(0xff << shift);
    write32(word, priorities | (u32::from(priority) << shift));
    write32(sgi + GICR_ISENABLER0, bit);
    Ok(())
}

/// Disables SGI or PPI `intid` on this CPU.
pub(super) fn disable_private(intid: u32) -> Result<(), GicError> {
    if intid >= SPI_FIRST {
        return Err(GicError::BadIntid);
    }
    let sgi = redistributor()? + GICR_SGI_BASE;
    write32(sgi + GICR_ICENABLER0, 1 << intid);
    Ok(())
}

/// Acknowledges the highest-priority pending group 1 interrupt (ICC_IAR1_EL1).
pub(super) fn acknowledge() -> u32 {
    let intid: u64;
    // SAFETY: reading IAR1 acknowledges an interrupt; it has no memory effects.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) intid, options(nomem, nostack)) };
    (intid & 0xff_ffff) as u32
}

/// Signals the end of interrupt `intid` (ICC_EOIR1_EL1, EOImode 0: also deactivates it).
pub(super) fn end_of_interrupt(intid: u32) {
    // SAFETY: writing EOIR1 drops the running priority; it has no memory effects.
    unsafe {
        asm!("msr icc_eoir1_el1, {}", "isb", in(reg) u64::from(intid), options(nomem, nostack))
    };
}
