//! GICv2 register offsets and bits (Arm IHI 0048B) that guests use: the distributor (GICD) and
//! the memory-mapped CPU interface (GICC). Under a hypervisor the GICC window is the virtual
//! CPU interface (GICV), which has the same layout.

/// Distributor: control register.
pub const GICD_CTLR: usize = 0x0000;
/// Distributor: interrupt controller type (bits 7:5: number of CPU interfaces minus one).
pub const GICD_TYPER: usize = 0x0004;
/// Distributor: implementer identification.
pub const GICD_IIDR: usize = 0x0008;
/// Distributor: interrupt groups, one bit per INTID (word 0 is banked per CPU).
pub const GICD_IGROUPR: usize = 0x0080;
/// Distributor: set-enable, one bit per INTID (word 0, INTIDs 0..31, is banked per CPU).
pub const GICD_ISENABLER: usize = 0x0100;
/// Distributor: clear-enable, one bit per INTID (word 0 banked per CPU).
pub const GICD_ICENABLER: usize = 0x0180;
/// Distributor: set-pending, one bit per INTID.
pub const GICD_ISPENDR: usize = 0x0200;
/// Distributor: clear-pending, one bit per INTID.
pub const GICD_ICPENDR: usize = 0x0280;
/// Distributor: priorities, one byte per INTID (words 0..7 banked per CPU).
pub const GICD_IPRIORITYR: usize = 0x0400;
/// Distributor: SPI target CPU masks, one byte per INTID (words 0..7 read-only, banked).
pub const GICD_ITARGETSR: usize = 0x0800;
/// Distributor: configuration, two bits per INTID (level or edge).
pub const GICD_ICFGR: usize = 0x0c00;
/// Distributor: software-generated interrupt register (write only).
pub const GICD_SGIR: usize = 0x0f00;
/// Distributor: peripheral ID2, bits 7:4 hold the architecture revision (2 for GICv2).
pub const GICD_PIDR2: usize = 0x0fe8;
/// GICD_CTLR bit 0: forward interrupts to the CPU interfaces. Without Security Extensions
/// (what Mica, Xen and QEMU present to a guest) this enables Group 0; in the Non-secure view of
/// a GIC with them it enables the Non-secure group. Either way it is the guest's own group.
pub const GICD_CTLR_ENABLE: u32 = 1 << 0;
/// GICD_CTLR bit 1: enable Group 1 when the GIC has no Security Extensions.
pub const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;

/// Bytes of the distributor window.
pub const GICD_SIZE: usize = 0x1000;
/// Bytes of the CPU interface window (GICC_DIR sits in the second 4 KiB page).
pub const GICC_SIZE: usize = 0x2000;

/// CPU interface: control register.
pub const GICC_CTLR: usize = 0x0000;
/// CPU interface: priority mask (interrupts of a lower value than this are signalled).
pub const GICC_PMR: usize = 0x0004;
/// CPU interface: binary point (priority grouping for preemption).
pub const GICC_BPR: usize = 0x0008;
/// CPU interface: interrupt acknowledge (reading acknowledges).
pub const GICC_IAR: usize = 0x000c;
/// CPU interface: end of interrupt (write the value read from GICC_IAR).
pub const GICC_EOIR: usize = 0x0010;
/// CPU interface: running priority.
pub const GICC_RPR: usize = 0x0014;
/// CPU interface: highest priority pending interrupt.
pub const GICC_HPPIR: usize = 0x0018;
/// CPU interface: identification.
pub const GICC_IIDR: usize = 0x00fc;
/// CPU interface: deactivate interrupt (used only with GICC_CTLR.EOImode = 1).
pub const GICC_DIR: usize = 0x1000;
/// GICC_CTLR bit 0: signal interrupts to the processor. Without Security Extensions (and in a
/// virtual CPU interface) this enables Group 0, which is then signalled as IRQ while FIQEn is
/// clear; in the Non-secure view of a GIC with them it enables the Non-secure group.
pub const GICC_CTLR_ENABLE: u32 = 1 << 0;
/// GICC_PMR value that lets every priority through (implementations keep the top bits only).
pub const GICC_PMR_ALL: u32 = 0xff;

/// GICC_IAR / GICC_EOIR: the interrupt ID (bits 9:0).
pub const GICC_IAR_INTID_MASK: u32 = 0x3ff;
/// GICC_IAR / GICC_EOIR: for an SGI, the CPU interface that sent it (bits 12:10).
pub const GICC_IAR_CPUID_SHIFT: u32 = 10;
/// GICC_IAR / GICC_EOIR: width mask of the source CPU field.
pub const GICC_IAR_CPUID_MASK: u32 = 0x7;

/// CPU interfaces a GICv2 has at most.
pub const MAX_CPUS: usize = 8;
/// SGIs are INTIDs 0..16.
pub const SGI_COUNT: u32 = 16;
/// First PPI.
pub const PPI_FIRST: u32 = 16;
/// First SPI.
pub const SPI_FIRST: u32 = 32;
/// INTIDs at and above this are special (1020..1023: spurious and reserved).
pub const INTID_SPECIAL_FIRST: u32 = 1020;
/// The INTID read from GICC_IAR when nothing is pending.
pub const INTID_SPURIOUS: u32 = 1023;
