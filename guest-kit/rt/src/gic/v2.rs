//! GICv2: the memory-mapped distributor (GICD) and CPU interface (GICC). Under Mica and Xen the
//! distributor is emulated and the GICC window is the hardware's virtual CPU interface.
//!
//! Groups: a GIC without Security Extensions (Mica's and Xen's virtual GICv2, QEMU's GICv2
//! without `secure=on`) resets every interrupt to Group 0, and bit 0 of GICD_CTLR and GICC_CTLR
//! enables Group 0, signalled as IRQ while GICC_CTLR.FIQEn is clear. (Xen's GICD_IGROUPR is
//! RAZ/WI and its list registers are always Group 0; Linux, too, enables only bit 0.) In the
//! Non-secure view of a GIC with Security Extensions, bit 0 enables the Non-secure group, which
//! firmware gives to the interrupts it hands over. So the driver only sets bit 0 and leaves
//! GICD_IGROUPR as it found it.
//!
//! SGIs: GICC_IAR names the sending CPU of an SGI (bits 12:10) and GICC_EOIR must be written
//! with the same value. [`acknowledge`] returns the INTID alone, as for GICv3, and remembers
//! the sender per receiving CPU and SGI for [`end_of_interrupt`].

use super::{read32, recorded, write32, GicError};
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use mica_guest_abi::gicv2::*;

static GICD_BASE: AtomicUsize = AtomicUsize::new(0);
static GICC_BASE: AtomicUsize = AtomicUsize::new(0);

/// Sending CPU of the SGI each CPU acknowledged last, by [receiving CPU][SGI].
static SGI_SOURCE: [[AtomicU8; SGI_COUNT as usize]; MAX_CPUS] =
    [const { [const { AtomicU8::new(0) }; SGI_COUNT as usize] }; MAX_CPUS];

/// Records the distributor and CPU interface windows.
pub(super) fn set_regions(gicd: usize, gicc: usize) {
    GICD_BASE.store(gicd, Ordering::Release);
    GICC_BASE.store(gicc, Ordering::Release);
}

fn distributor() -> Result<usize, GicError> {
    recorded(&GICD_BASE)
}

fn cpu_interface() -> Result<usize, GicError> {
    recorded(&GICC_BASE)
}

/// Row of [`SGI_SOURCE`] for the calling CPU. GICv2 systems (QEMU, Mica, Xen, the GIC-400
/// boards) number their at most 8 CPUs in MPIDR Aff0.
fn cpu_slot() -> usize {
    (crate::cpu::mpidr() & 0xff) as usize % MAX_CPUS
}

/// Enables forwarding of the guest's interrupt group in the distributor. Call once.
pub(super) fn init_distributor() -> Result<(), GicError> {
    let gicd = distributor()?;
    let ctlr = read32(gicd + GICD_CTLR);
    write32(gicd + GICD_CTLR, ctlr | GICD_CTLR_ENABLE);
    Ok(())
}

/// Lets every priority through and enables signalling of the guest's group on this CPU's
/// interface (EOImode 0: a write to GICC_EOIR also deactivates).
pub(super) fn init_cpu() -> Result<(), GicError> {
    let gicc = cpu_interface()?;
    write32(gicc + GICC_PMR, GICC_PMR_ALL);
    write32(gicc + GICC_BPR, 0);
    write32(gicc + GICC_CTLR, GICC_CTLR_ENABLE);
    Ok(())
}

/// Gives SGI or PPI `intid` `priority` and enables it on this CPU (the registers for INTIDs
/// 0..31 are banked per CPU).
pub(super) fn enable_private(intid: u32, priority: u8) -> Result<(), GicError> {
    if intid >= SPI_FIRST {
        return Err(GicError::BadIntid);
    }
    let gicd = distributor()?;
    let word = gicd + GICD_IPRIORITYR + (intid as usize & !3);
    let shift = (intid % 4) * 8;
    let priorities = read32(word) & !(0xff << shift);
    write32(word, priorities | (u32::from(priority) << shift));
    write32(gicd + GICD_ISENABLER, 1 << intid);
    Ok(())
}

/// Disables SGI or PPI `intid` on this CPU.
pub(super) fn disable_private(intid: u32) -> Result<(), GicError> {
    if intid >= SPI_FIRST {
        return Err(GicError::BadIntid);
    }
    let gicd = distributor()?;
    write32(gicd + GICD_ICENABLER, 1 << intid);
    Ok(())
}

/// Acknowledges the highest-priority pending interrupt (GICC_IAR); returns its INTID, or
/// [`INTID_SPURIOUS`] if the CPU interface is not known. Kept out of line so the GICv3 path of
/// the caller stays short.
#[inline(never)]
pub(super) fn acknowledge() -> u32 {
    let Ok(gicc) = cpu_interface() else {
        return INTID_SPURIOUS;
    };
    let iar = read32(gicc + GICC_IAR);
    let intid = iar & GICC_IAR_INTID_MASK;
    if intid < SGI_COUNT {
        let source = (iar >> GICC_IAR_CPUID_SHIFT) & GICC_IAR_CPUID_MASK;
        SGI_SOURCE[cpu_slot()][intid as usize].store(source as u8, Ordering::Relaxed);
    }
    intid
}

/// Signals the end of interrupt `intid` (GICC_EOIR, with the sender for an SGI). Out of line
/// like [`acknowledge`].
#[inline(never)]
pub(super) fn end_of_interrupt(intid: u32) {
    let Ok(gicc) = cpu_interface() else {
        return;
    };
    let mut value = intid & GICC_IAR_INTID_MASK;
    if intid < SGI_COUNT {
        let source = SGI_SOURCE[cpu_slot()][intid as usize].load(Ordering::Relaxed);
        value |= u32::from(source) << GICC_IAR_CPUID_SHIFT;
    }
    write32(gicc + GICC_EOIR, value);
}
