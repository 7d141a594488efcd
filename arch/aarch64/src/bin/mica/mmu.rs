//! Mica's own address space: an identity map of the first 512 GiB of physical addresses,
//! RAM as normal cacheable memory and everything else as device memory.
//!
//! Two steps: [`enable_early`] maps with 1 GiB blocks only (normal memory just for the
//! blocks holding the image and the device tree) so Rust can parse the device tree with
//! caches on; [`install_final`] then maps RAM exactly (2 MiB granules) once the memory
//! nodes are known. Secondary CPUs join with [`enable_secondary`].

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    ID_AA64MMFR0_EL1, MAIR_EL1, MAIR_EL2, SCTLR_EL1, SCTLR_EL2, TCR_EL1, TCR_EL2, TTBR0_EL1,
    TTBR0_EL2,
};
use core::cell::UnsafeCell;
use mica_aarch64::pagetable::{el2_device, el2_normal, with, Descriptor, DESC, ENTRIES};
use mica_hv::addr::HostRange;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
/// Level-2 tables available for 1 GiB slots that mix RAM and devices.
const L2_POOL: usize = 16;

#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

/// The hypervisor's translation tables. Written only by the boot CPU before secondaries
/// start, read by the MMU afterwards.
struct Tables {
    early: UnsafeCell<Table>,
    root: UnsafeCell<Table>,
    l2: UnsafeCell<[Table; L2_POOL]>,
}

// SAFETY: the tables are written only during single-threaded boot (see `install_final`).
unsafe impl Sync for Tables {}

static TABLES: Tables = Tables {
    early: UnsafeCell::new(Table([0; ENTRIES])),
    root: UnsafeCell::new(Table([0; ENTRIES])),
    l2: UnsafeCell::new([const { Table([0; ENTRIES]) }; L2_POOL]),
};

/// Which exception level's translation regime to program.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Regime {
    /// Mica's own (normal case).
    El2,
    /// Only to print a useful error when started at EL1.
    El1,
}

fn block(pa: u64, attrs: Descriptor) -> u64 {
    with(attrs, DESC::VALID::SET + DESC::OUTPUT_ADDR.val(pa >> 12)).get()
}

fn table_desc(pa: u64) -> u64 {
    with(
        Descriptor::new(0),
        DESC::VALID::SET + DESC::TABLE_OR_PAGE::SET + DESC::OUTPUT_ADDR.val(pa >> 12),
    )
    .get()
}

/// Physical-address size for TCR.PS/IPS: what the CPU supports, at most 40 bits (our
/// 39-bit identity map never produces more).
fn pa_size_field() -> u64 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange).min(0b010)
}

/// Maps with 1 GiB blocks and turns the MMU on. `normal` lists addresses whose 1 GiB
/// block must be normal memory (the image, the device tree).
///
/// # Safety
/// Must run once, on the boot CPU, with the MMU off, before any other CPU runs.
pub unsafe fn enable_early(regime: Regime, normal: &[u64]) {
    // SAFETY: single-threaded boot, MMU off: nothing else references the early table.
    let early = unsafe { &mut *TABLES.early.get() };
    for (slot, entry) in early.0.iter_mut().enumerate() {
        let pa = slot as u64 * GIB;
        let is_normal = normal.iter().any(|&a| a / GIB == slot as u64);
        *entry = block(
            pa,
            if is_normal {
                el2_normal()
            } else {
                el2_device()
            },
        );
    }
    let root = early.0.as_ptr() as u64;
    // SAFETY: the table maps the running code and stack identically, as the caller promised.
    unsafe { turn_on(regime, root) };
}

/// Builds the exact map from the RAM ranges and switches to it.
///
/// # Safety
/// Boot CPU only, before secondaries start; `ram` must include the image, stack and DTB.
pub unsafe fn install_final(ram: &[HostRange]) -> Result<(), &'static str> {
    // SAFETY: single-threaded boot; the live map is the early table, not this one.
    let root = unsafe { &mut *TABLES.root.get() };
    // SAFETY: as above.
    let pool = unsafe { &mut *TABLES.l2.get() };
    let mut used = 0;
    let is_ram = |start: u64, size: u64| {
        ram.iter()
            .any(|r| r.start.raw() <= start && start + size <= r.start.raw() + r.size)
    };
    let touches_ram = |start: u64, size: u64| {
        ram.iter()
            .any(|r| r.start.raw() < start + size && start < r.start.raw() + r.size)
    };
    for slot in 0..ENTRIES {
        let base = slot as u64 * GIB;
        root.0[slot] = if is_ram(base, GIB) {
            block(base, el2_normal())
        } else if !touches_ram(base, GIB) {
            block(base, el2_device())
        } else {
            let l2 = pool
                .get_mut(used)
                .ok_or("too many 1 GiB regions mix RAM and devices")?;
            used += 1;
            for (i, entry) in l2.0.iter_mut().enumerate() {
                let pa = base + i as u64 * MIB2;
                *entry = block(
                    pa,
                    if is_ram(pa, MIB2) {
                        el2_normal()
                    } else {
                        el2_device()
                    },
                );
            }
            table_desc(l2.0.as_ptr() as u64)
        };
    }
    barrier::dsb(barrier::ISHST);
    TTBR0_EL2.set(root.0.as_ptr() as u64);
    barrier::isb(barrier::SY);
    invalidate_tlb();
    HOST_RAM.call_once(|| ram.to_vec());
    Ok(())
}

/// Host RAM as mapped by [`install_final`] (normal memory); everything else is device memory.
static HOST_RAM: spin::Once<alloc::vec::Vec<HostRange>> = spin::Once::new();

/// Whether the page holding physical address `pa` is host RAM. Mica copies guest data only
/// to and from RAM: a guest pointing a hypercall buffer at a device (through its stage 2) must
/// get an error, not make Mica access device memory on its behalf.
pub fn is_host_ram(pa: u64) -> bool {
    HOST_RAM.get().is_some_and(|ram| {
        ram.iter().any(|r| {
            pa.checked_sub(r.start.raw())
                .is_some_and(|off| off < r.size)
        })
    })
}

/// Turns the MMU on for a secondary CPU with the final tables.
///
/// # Safety
/// The final tables must be installed and cleaned to the point of coherency.
pub unsafe fn enable_secondary() {
    // SAFETY: the tables are complete and identity-map this CPU's code and stack.
    unsafe { turn_on(Regime::El2, TABLES.root.get() as u64) };
}

/// The address range holding the final tables, to clean before secondaries read them.
pub fn tables_range() -> (usize, usize) {
    let start = TABLES.root.get() as usize;
    (start, core::mem::size_of::<Table>() * (1 + L2_POOL))
}

fn invalidate_tlb() {
    // SAFETY: TLB maintenance for EL2 has no memory-safety effect.
    unsafe { core::arch::asm!("tlbi alle2", "dsb ish", "isb", options(nostack)) };
}

/// # Safety
/// `root` must identity-map the running code, its stack and its data.
unsafe fn turn_on(regime: Regime, root: u64) {
    // Attr0: normal write-back read/write-allocate; Attr1: device nGnRE.
    match regime {
        Regime::El2 => {
            MAIR_EL2.write(
                MAIR_EL2::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
                    + MAIR_EL2::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc
                    + MAIR_EL2::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck,
            );
            TCR_EL2.write(
                TCR_EL2::T0SZ.val(64 - mica_aarch64::pagetable::INPUT_BITS as u64)
                    + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                    + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                    + TCR_EL2::SH0::Inner
                    + TCR_EL2::TG0::KiB_4
                    + TCR_EL2::PS.val(pa_size_field()),
            );
            TTBR0_EL2.set(root);
            barrier::isb(barrier::SY);
            invalidate_tlb();
            SCTLR_EL2
                .modify(SCTLR_EL2::M::Enable + SCTLR_EL2::C::Cacheable + SCTLR_EL2::I::Cacheable);
        }
        Regime::El1 => {
            MAIR_EL1.write(
                MAIR_EL1::Attr0_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
                    + MAIR_EL1::Attr0_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc
                    + MAIR_EL1::Attr1_Device::nonGathering_nonReordering_EarlyWriteAck,
            );
            TCR_EL1.write(
                TCR_EL1::T0SZ.val(64 - mica_aarch64::pagetable::INPUT_BITS as u64)
                    + TCR_EL1::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                    + TCR_EL1::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                    + TCR_EL1::SH0::Inner
                    + TCR_EL1::TG0::KiB_4
                    + TCR_EL1::EPD1::DisableTTBR1Walks
                    + TCR_EL1::IPS.val(pa_size_field()),
            );
            TTBR0_EL1.set(root);
            barrier::isb(barrier::SY);
            // SAFETY: TLB maintenance has no memory-safety effect.
            unsafe { core::arch::asm!("tlbi vmalle1", "dsb ish", "isb", options(nostack)) };
            SCTLR_EL1
                .modify(SCTLR_EL1::M::Enable + SCTLR_EL1::C::Cacheable + SCTLR_EL1::I::Cacheable);
        }
    }
    barrier::isb(barrier::SY);
}
