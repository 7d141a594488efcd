//! Stage-2 translation control: the format shared by every domain's tables.

use aarch64_cpu::registers::{ID_AA64MMFR0_EL1, VTCR_EL2, VTTBR_EL2};
use mica_aarch64::pagetable::INPUT_BITS;
use tock_registers::interfaces::{Readable, Writeable};

/// Programs VTCR_EL2: 4 KiB granule, 39-bit guest-physical space walked from level 1,
/// cacheable inner-shareable table walks. Every CPU, once.
pub fn init_cpu() {
    let pa = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b010);
    VTCR_EL2.write(
        VTCR_EL2::T0SZ.val(64 - u64::from(INPUT_BITS))
            + VTCR_EL2::SL0.val(0b01)
            + VTCR_EL2::IRGN0::NormalWBRAWA
            + VTCR_EL2::ORGN0::NormalWBRAWA
            + VTCR_EL2::SH0::Inner
            + VTCR_EL2::TG0::Granule4KB
            + VTCR_EL2::PS.val(pa)
            + VTCR_EL2::RES1::SET,
    );
}

/// The VTTBR_EL2 value for a table root and VMID.
pub fn vttbr(root: u64, vmid: u16) -> u64 {
    root | (u64::from(vmid & 0xff) << 48)
}

/// Switches stage 2 to `vttbr`.
pub fn load(vttbr: u64) {
    VTTBR_EL2.set(vttbr);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Removes every TLB entry of the VMID in `vttbr`, on all CPUs.
pub fn flush_vmid(vttbr: u64) {
    let current = VTTBR_EL2.get();
    load(vttbr);
    // SAFETY: TLB maintenance has no memory-safety effect.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "tlbi vmalls12e1is",
            "dsb ish",
            "isb",
            options(nostack)
        )
    };
    load(current);
}
