//! GICv3 register offsets and bits (Arm IHI 0069) that both the virtual GIC and guests use.

/// Distributor: control register.
pub const GICD_CTLR: usize = 0x0000;
/// Distributor: interrupt controller type.
pub const GICD_TYPER: usize = 0x0004;
/// Distributor: implementer identification.
pub const GICD_IIDR: usize = 0x0008;
/// Distributor: peripheral ID2, bits 7:4 hold the architecture revision (3 for GICv3).
pub const GICD_PIDR2: usize = 0xffe8;
/// GICD_CTLR: enable group 1 (non-secure) interrupts.
pub const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;
/// GICD_CTLR: affinity routing enable (ARE_NS in the non-secure view).
pub const GICD_CTLR_ARE: u32 = 1 << 4;
/// GICD_CTLR: register write pending.
pub const GICD_CTLR_RWP: u32 = 1 << 31;

/// Bytes of one redistributor's frames (RD_base then SGI_base) without virtual LPIs.
pub const GICR_STRIDE: usize = 0x2_0000;
/// Bytes of one redistributor's frames with virtual LPIs (GICv4: VLPI and reserved frames).
pub const GICR_STRIDE_VLPI: usize = 0x4_0000;
/// Offset of the SGI_base frame from RD_base.
pub const GICR_SGI_BASE: usize = 0x1_0000;
/// Redistributor: control register.
pub const GICR_CTLR: usize = 0x0000;
/// Redistributor: type register (64-bit; affinity in bits 63:32).
pub const GICR_TYPER: usize = 0x0008;
/// Redistributor: power management.
pub const GICR_WAKER: usize = 0x0014;
/// GICR_TYPER: virtual LPIs supported (the stride is then [`GICR_STRIDE_VLPI`]).
pub const GICR_TYPER_VLPIS: u64 = 1 << 1;
/// GICR_TYPER: this is the last redistributor of the region.
pub const GICR_TYPER_LAST: u64 = 1 << 4;
/// GICR_TYPER: shift of the affinity value (Aff3.Aff2.Aff1.Aff0).
pub const GICR_TYPER_AFFINITY_SHIFT: u32 = 32;
/// GICR_WAKER: the connected PE is asleep (write 0 to wake it).
pub const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// GICR_WAKER: the redistributor's interfaces are quiescent.
pub const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// SGI_base: group of SGIs and PPIs (one bit per INTID 0..31).
pub const GICR_IGROUPR0: usize = 0x0080;
/// SGI_base: set-enable for SGIs and PPIs.
pub const GICR_ISENABLER0: usize = 0x0100;
/// SGI_base: clear-enable for SGIs and PPIs.
pub const GICR_ICENABLER0: usize = 0x0180;
/// SGI_base: set-pending for SGIs and PPIs.
pub const GICR_ISPENDR0: usize = 0x0200;
/// SGI_base: clear-pending for SGIs and PPIs.
pub const GICR_ICPENDR0: usize = 0x0280;
/// SGI_base: priorities, one byte per INTID 0..31.
pub const GICR_IPRIORITYR: usize = 0x0400;
/// SGI_base: configuration of PPIs (two bits per INTID 16..31).
pub const GICR_ICFGR1: usize = 0x0c04;

/// INTIDs at and above this are special (1020..1023: spurious and reserved).
pub const INTID_SPECIAL_FIRST: u32 = 1020;
/// The INTID read from ICC_IAR1_EL1 when nothing is pending.
pub const INTID_SPURIOUS: u32 = 1023;
/// First PPI.
pub const PPI_FIRST: u32 = 16;
/// First SPI.
pub const SPI_FIRST: u32 = 32;
