//! Changes to the boot identity map after start-up: marking a range Normal write-back memory,
//! or Device memory.
//!
//! The boot code maps every 1 GiB block as Device memory except those holding the image and the
//! DTB. Pages shared with a hypervisor (grant-table frames, a console ring placed outside RAM)
//! must be Normal write-back, and they may sit in a block that also holds devices (Xen's domU
//! layout puts the grant space at 0x3800_0000, in the block with the GIC and the UART). So the
//! block is split into 2 MiB blocks (a level-2 table) and only the 2 MiB blocks covering the
//! range become Normal.
//!
//! The reverse happens when a device (a GIC's registers) sits in a block that the boot code
//! made Normal because it also holds the DTB: its 2 MiB blocks become Device. The block that
//! holds the running image cannot be split this way (break-before-make would unmap the code
//! doing it), so a device there is refused.

use crate::boot::{DEVICE_BLOCK, NORMAL_BLOCK};
use core::arch::asm;
use core::cell::UnsafeCell;

/// Level-2 tables available for splitting 1 GiB blocks.
const SPLIT_TABLES: usize = 4;
const ENTRIES: usize = 512;
const BLOCK_1G_SHIFT: u32 = 30;
const BLOCK_2M_SHIFT: u32 = 21;
/// Output-address bits of a level-1 block descriptor (47:30).
const L1_BLOCK_ADDRESS: u64 = 0x0000_ffff_c000_0000;
/// Output-address bits of a table descriptor or level-2 block (47:12; blocks use 47:21).
const TABLE_ADDRESS: u64 = 0x0000_ffff_ffff_f000;
const DESCRIPTOR_TYPE: u64 = 0b11;
const TYPE_BLOCK: u64 = 0b01;
const TYPE_TABLE: u64 = 0b11;
/// Normal write-back, inner shareable, never executable: for data shared with a hypervisor.
const NORMAL_DATA_BLOCK: u64 = NORMAL_BLOCK | (1 << 54) | (1 << 53);
/// Lower attributes of a block descriptor (AttrIndx, NS, AP, SH, AF, nG: bits 11:2), which tell
/// Normal from Device blocks.
const LOWER_ATTRIBUTES: u64 = 0xffc;

#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

struct SplitTables(UnsafeCell<[Table; SPLIT_TABLES]>);

// SAFETY: the tables are only written by `map_normal`, which holds `LOCK`.
unsafe impl Sync for SplitTables {}

static TABLES: SplitTables = SplitTables(UnsafeCell::new(
    [const { Table([0; ENTRIES]) }; SPLIT_TABLES],
));
static LOCK: spin::Mutex<usize> = spin::Mutex::new(0);

extern "C" {
    static mut __page_table: [u64; ENTRIES];
}

/// Why a range could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The range is empty, wraps, or lies beyond the 512 GiB the identity map covers.
    OutOfRange,
    /// Every level-2 table is in use.
    NoTable,
    /// A device range lies in the 1 GiB block holding the running image.
    ImageBlock,
}

/// What a range becomes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Memory {
    Normal,
    Device,
}

impl Memory {
    /// Block descriptor attributes (level 1 or 2) for this kind of memory.
    fn block(self) -> u64 {
        match self {
            Memory::Normal => NORMAL_DATA_BLOCK,
            Memory::Device => DEVICE_BLOCK,
        }
    }
}

/// Makes `[base, base + size)` Normal write-back, non-executable memory in the identity map,
/// with 2 MiB granularity. Blocks already Normal are left alone. Runs with IRQs masked; must
/// not be called while another CPU uses the blocks it touches.
pub fn map_normal(base: usize, size: usize) -> Result<(), MapError> {
    map(base, size, Memory::Normal)
}

/// Makes `[base, base + size)` Device-nGnRnE, non-executable memory in the identity map, with
/// 2 MiB granularity: for device registers in a block the boot code made Normal. Blocks already
/// Device are left alone (the usual case: the boot code maps every block Device except those
/// holding the image and the DTB). Same contract as [`map_normal`].
pub fn map_device(base: usize, size: usize) -> Result<(), MapError> {
    map(base, size, Memory::Device)
}

fn map(base: usize, size: usize, memory: Memory) -> Result<(), MapError> {
    let end = base.checked_add(size).ok_or(MapError::OutOfRange)?;
    if size == 0 || end > ENTRIES << BLOCK_1G_SHIFT {
        return Err(MapError::OutOfRange);
    }
    let mut used = LOCK.lock();
    let saved = mask_interrupts();
    let mut result = Ok(());
    let mut chunk = base & !((1 << BLOCK_2M_SHIFT) - 1);
    while chunk < end {
        if let Err(e) = map_chunk(chunk, memory, &mut used) {
            result = Err(e);
            break;
        }
        chunk += 1 << BLOCK_2M_SHIFT;
    }
    restore_interrupts(saved);
    result
}

/// Makes the 2 MiB block at `chunk` `memory`.
fn map_chunk(chunk: usize, memory: Memory, used: &mut usize) -> Result<(), MapError> {
    let l1_index = chunk >> BLOCK_1G_SHIFT;
    let l2_index = (chunk >> BLOCK_2M_SHIFT) % ENTRIES;
    // The boot code's level-1 table is live and identity mapped; only this module changes it
    // after boot, under LOCK. Raw pointers avoid references to a static mut.
    let l1_entry = (&raw mut __page_table).cast::<u64>().wrapping_add(l1_index);
    // SAFETY: as above; l1_index < 512 (checked by map_normal).
    let entry = unsafe { l1_entry.read_volatile() };
    let wanted = chunk as u64 | memory.block();
    match entry & DESCRIPTOR_TYPE {
        TYPE_BLOCK if entry & LOWER_ATTRIBUTES == memory.block() & LOWER_ATTRIBUTES => Ok(()),
        TYPE_BLOCK if memory == Memory::Device && l1_index == image_block() => {
            Err(MapError::ImageBlock)
        }
        TYPE_BLOCK => {
            let slot = *used;
            if slot >= SPLIT_TABLES {
                return Err(MapError::NoTable);
            }
            *used += 1;
            // SAFETY: table `slot` is not yet referenced by the page tables; LOCK is held.
            let table = unsafe { &mut (*TABLES.0.get())[slot].0 };
            let attributes = entry & !L1_BLOCK_ADDRESS;
            let block_base = entry & L1_BLOCK_ADDRESS;
            for (i, l2) in table.iter_mut().enumerate() {
                *l2 = (block_base + ((i as u64) << BLOCK_2M_SHIFT)) | attributes;
            }
            table[l2_index] = wanted;
            let table_address = table.as_ptr() as u64;
            // SAFETY: break-before-make on a live entry: invalidate, flush, install the table.
            // IRQs are masked and no other CPU touches this block (the caller's contract).
            unsafe { replace_entry(l1_entry, table_address | TYPE_TABLE) };
            Ok(())
        }
        TYPE_TABLE => {
            let table = (entry & TABLE_ADDRESS) as *mut u64;
            // SAFETY: the table was installed by this module (the boot code only writes blocks);
            // l2_index < 512.
            let l2_entry = table.wrapping_add(l2_index);
            // SAFETY: as above.
            if unsafe { l2_entry.read_volatile() } != wanted {
                // SAFETY: break-before-make as above.
                unsafe { replace_entry(l2_entry, wanted) };
            }
            Ok(())
        }
        _ => Err(MapError::OutOfRange),
    }
}

/// Index of the 1 GiB block holding this code (and the rest of the image).
fn image_block() -> usize {
    (map_chunk as *const () as usize) >> BLOCK_1G_SHIFT
}

/// Replaces a live descriptor with break-before-make.
///
/// # Safety
/// `entry` must point at a descriptor of the live identity map, and nothing may access the
/// memory it maps until this returns.
unsafe fn replace_entry(entry: *mut u64, value: u64) {
    // SAFETY: the caller guarantees `entry` is a live descriptor that may be invalidated.
    unsafe { entry.write_volatile(0) };
    // SAFETY: barriers and TLB invalidation only; required between the two writes.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi vmalle1is",
            "dsb ish",
            "isb",
            options(nostack)
        )
    };
    // SAFETY: as for the first write; `value` is a valid descriptor built by the caller.
    unsafe { entry.write_volatile(value) };
    // SAFETY: barriers only, so the walker sees the new descriptor before we continue.
    unsafe { asm!("dsb ishst", "isb", options(nostack)) };
}

fn mask_interrupts() -> u64 {
    let daif: u64;
    // SAFETY: reads and sets PSTATE interrupt masks only.
    unsafe { asm!("mrs {}, daif", "msr daifset, #2", out(reg) daif, options(nomem, nostack)) };
    daif
}

fn restore_interrupts(daif: u64) {
    // SAFETY: restores the PSTATE interrupt masks read by `mask_interrupts`.
    unsafe { asm!("msr daif, {}", in(reg) daif, options(nomem, nostack)) };
}
