//! The guest-physical memory map of a domU, as Xen's `arch-arm.h` defines it. Guests should
//! read their device tree; these are what Mica (like Xen) puts there.

/// GICv3 distributor of a domU.
pub const GUEST_GICD_BASE: u64 = 0x0300_1000;
/// GICv3 distributor size.
pub const GUEST_GICD_SIZE: u64 = 0x1_0000;
/// GICv2 CPU interface of a domU.
pub const GUEST_GICC_BASE: u64 = 0x0300_2000;
/// GICv2 CPU interface size.
pub const GUEST_GICC_SIZE: u64 = 0x2000;
/// GICv3 redistributors of a domU (one 128 KiB frame per vCPU).
pub const GUEST_GICR_BASE: u64 = 0x0302_0000;
/// Size of the redistributor region (room for 128 vCPUs).
pub const GUEST_GICR_SIZE: u64 = 0x0100_0000;
/// Emulated SBSA UART of a domU.
pub const GUEST_PL011_BASE: u64 = 0x2200_0000;
/// Size of the emulated UART.
pub const GUEST_PL011_SIZE: u64 = 0x1000;
/// INTID of the emulated UART's interrupt (SPI 0).
pub const GUEST_VPL011_SPI: u32 = 32;
/// First guest RAM bank.
pub const GUEST_RAM0_BASE: u64 = 0x4000_0000;
/// Size of the first guest RAM bank.
pub const GUEST_RAM0_SIZE: u64 = 0xC000_0000;
/// Second guest RAM bank.
pub const GUEST_RAM1_BASE: u64 = 0x02_0000_0000;
/// Size of the second guest RAM bank.
pub const GUEST_RAM1_SIZE: u64 = 0xFE_0000_0000;
/// INTID of the EL1 virtual timer.
pub const VIRT_TIMER_PPI: u32 = 27;
/// INTID of the EL1 secure physical timer.
pub const PHYS_SECURE_TIMER_PPI: u32 = 29;
/// INTID of the EL1 non-secure physical timer.
pub const PHYS_TIMER_PPI: u32 = 30;
/// INTID of the EL2 hypervisor timer (host side).
pub const HYP_TIMER_PPI: u32 = 26;
/// INTID of the Xen event-channel upcall.
pub const EVTCHN_PPI: u32 = 31;
/// Maximum vCPUs per domain.
pub const MAX_VCPUS: u32 = 128;
