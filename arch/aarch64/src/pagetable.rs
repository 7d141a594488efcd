//! VMSAv8-64 translation tables with the 4 KiB granule, three levels (1 GiB, 2 MiB and 4 KiB
//! entries), walked from level 1: a 39-bit input address space. One builder serves the
//! hypervisor's own stage-1 tables and every domain's stage-2 tables; only the leaf
//! attributes differ.

use tock_registers::fields::FieldValue;
use tock_registers::register_bitfields;
use tock_registers::LocalRegisterCopy;

/// Entries in one table.
pub const ENTRIES: usize = 512;
/// Input-address bits covered from level 1 (T0SZ = 64 - 39 = 25).
pub const INPUT_BITS: u32 = 39;

register_bitfields![u64,
    /// A table or leaf descriptor, with the stage-1 and stage-2 attribute fields.
    pub DESC [
        VALID OFFSET(0) NUMBITS(1) [],
        /// Table (levels 1-2) or page (level 3) when set; block when clear.
        TABLE_OR_PAGE OFFSET(1) NUMBITS(1) [],
        /// Stage 1: index into MAIR_EL2.
        ATTR_INDX OFFSET(2) NUMBITS(3) [],
        /// Stage 2: memory type and cacheability.
        S2_MEMATTR OFFSET(2) NUMBITS(4) [
            DeviceNgnre = 0b0001,
            NormalWriteBack = 0b1111
        ],
        /// Stage 2: access permissions.
        S2AP OFFSET(6) NUMBITS(2) [
            None = 0b00,
            ReadOnly = 0b01,
            ReadWrite = 0b11
        ],
        /// Stage 1 (EL2): AP[2:1].
        AP OFFSET(6) NUMBITS(2) [
            ReadWrite = 0b00,
            ReadOnly = 0b10
        ],
        SH OFFSET(8) NUMBITS(2) [
            NonShareable = 0b00,
            OuterShareable = 0b10,
            InnerShareable = 0b11
        ],
        AF OFFSET(10) NUMBITS(1) [],
        OUTPUT_ADDR OFFSET(12) NUMBITS(36) [],
        /// Stage 2: execute-never; stage 1 at EL2: XN.
        XN OFFSET(54) NUMBITS(1) []
    ]
];

/// A descriptor value.
pub type Descriptor = LocalRegisterCopy<u64, DESC::Register>;

/// Why a mapping could not be made.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapError {
    /// An address or size is not 4 KiB aligned.
    Unaligned,
    /// The input range goes beyond the 39-bit input address space.
    OutOfRange,
    /// Part of the range is already mapped.
    AlreadyMapped,
    /// No memory for a translation table.
    OutOfTables,
}

/// Where translation tables come from. Mica identity-maps its memory, so a table's
/// physical address is also a pointer to it.
pub trait TableMemory {
    /// A zeroed, 4 KiB aligned page, by physical address.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Returns a page from [`TableMemory::alloc_table`].
    fn free_table(&mut self, pa: u64);
    /// The table at physical address `pa` (from `alloc_table`), as a mutable slice.
    ///
    /// # Safety
    /// `pa` must come from this allocator's `alloc_table` and still be allocated; nothing else
    /// may access that table while the returned reference lives.
    unsafe fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES];
}

/// `d` with the fields of `f` set.
pub fn with(mut d: Descriptor, f: FieldValue<u64, DESC::Register>) -> Descriptor {
    d.modify(f);
    d
}

const LEVEL_SHIFT: [u32; 4] = [39, 30, 21, 12];
const PAGE: u64 = 4096;

/// Leaf attributes for the hypervisor's own normal memory (MAIR index 0).
pub fn el2_normal() -> Descriptor {
    with(
        Descriptor::new(0),
        DESC::ATTR_INDX.val(0) + DESC::AP::ReadWrite + DESC::SH::InnerShareable + DESC::AF::SET,
    )
}

/// Leaf attributes for the hypervisor's view of devices (MAIR index 1, never executable).
pub fn el2_device() -> Descriptor {
    with(
        Descriptor::new(0),
        DESC::ATTR_INDX.val(1) + DESC::AP::ReadWrite + DESC::AF::SET + DESC::XN::SET,
    )
}

/// Stage-2 leaf attributes for guest RAM.
pub fn stage2_ram() -> Descriptor {
    with(
        Descriptor::new(0),
        DESC::S2_MEMATTR::NormalWriteBack
            + DESC::S2AP::ReadWrite
            + DESC::SH::InnerShareable
            + DESC::AF::SET,
    )
}

/// Stage-2 leaf attributes for a passed-through device.
pub fn stage2_device() -> Descriptor {
    with(
        Descriptor::new(0),
        DESC::S2_MEMATTR::DeviceNgnre + DESC::S2AP::ReadWrite + DESC::AF::SET + DESC::XN::SET,
    )
}

/// A three-level translation table rooted at level 1.
pub struct PageTable {
    root: u64,
}

impl PageTable {
    /// An empty table.
    pub fn new(mem: &mut impl TableMemory) -> Result<Self, MapError> {
        let root = mem.alloc_table().ok_or(MapError::OutOfTables)?;
        Ok(Self { root })
    }

    /// Physical address of the level-1 table (for TTBR0_EL2 / VTTBR_EL2).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps `[input, input + size)` to `[output, ...)` with `attrs`, using 1 GiB and 2 MiB
    /// blocks wherever both sides are aligned. Fails without partial effect on the mappings
    /// already present only for [`MapError::AlreadyMapped`] detected before writing; tables
    /// allocated along the way stay (they are freed with the table).
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        input: u64,
        output: u64,
        size: u64,
        attrs: Descriptor,
    ) -> Result<(), MapError> {
        if !input.is_multiple_of(PAGE) || !output.is_multiple_of(PAGE) || !size.is_multiple_of(PAGE)
        {
            return Err(MapError::Unaligned);
        }
        let end = input.checked_add(size).ok_or(MapError::OutOfRange)?;
        if end > 1 << INPUT_BITS || output.checked_add(size).is_none() {
            return Err(MapError::OutOfRange);
        }
        let (mut ia, mut oa) = (input, output);
        while ia < end {
            let mapped = self.map_one(mem, ia, oa, end - ia, attrs)?;
            ia += mapped;
            oa += mapped;
        }
        Ok(())
    }

    /// Maps the largest block that fits at `ia`; returns its size.
    fn map_one(
        &mut self,
        mem: &mut impl TableMemory,
        ia: u64,
        oa: u64,
        remaining: u64,
        attrs: Descriptor,
    ) -> Result<u64, MapError> {
        let mut table = self.root;
        for (level, &shift) in LEVEL_SHIFT.iter().enumerate().skip(1) {
            let block = 1u64 << shift;
            let index = ((ia >> shift) & (ENTRIES as u64 - 1)) as usize;
            // SAFETY: `table` is the root or a table this PageTable allocated from `mem`,
            // and `&mut self` gives exclusive access to the whole tree.
            let entries = unsafe { mem.table(table) };
            let entry = Descriptor::new(entries[index]);
            let fits = ia.is_multiple_of(block) && oa.is_multiple_of(block) && remaining >= block;
            if level == 3 || (fits && !entry.is_set(DESC::VALID)) {
                if entry.is_set(DESC::VALID) {
                    return Err(MapError::AlreadyMapped);
                }
                let kind = if level == 3 {
                    DESC::TABLE_OR_PAGE::SET
                } else {
                    DESC::TABLE_OR_PAGE::CLEAR
                };
                let leaf = with(
                    attrs,
                    DESC::VALID::SET + kind + DESC::OUTPUT_ADDR.val(oa >> 12),
                );
                entries[index] = leaf.get();
                return Ok(block);
            }
            if entry.is_set(DESC::VALID) {
                if !entry.is_set(DESC::TABLE_OR_PAGE) {
                    return Err(MapError::AlreadyMapped);
                }
                table = entry.read(DESC::OUTPUT_ADDR) << 12;
            } else {
                let next = mem.alloc_table().ok_or(MapError::OutOfTables)?;
                // SAFETY: as above; the new table is not yet linked anywhere.
                let entries = unsafe { mem.table(table) };
                entries[index] = with(
                    Descriptor::new(0),
                    DESC::VALID::SET + DESC::TABLE_OR_PAGE::SET + DESC::OUTPUT_ADDR.val(next >> 12),
                )
                .get();
                table = next;
            }
        }
        unreachable!("level 3 always maps a page")
    }

    /// Points the 4 KiB page at `input` to `output` with `attrs`, or unmaps it (`None`),
    /// splitting a block mapping that covers it into smaller ones with the same attributes.
    /// Returns whether a valid translation changed, in which case the caller must invalidate
    /// the TLB entries for `input` (and, after a split, for the whole block) before relying
    /// on the change.
    pub fn set_page(
        &mut self,
        mem: &mut impl TableMemory,
        input: u64,
        output: Option<(u64, Descriptor)>,
    ) -> Result<bool, MapError> {
        if !input.is_multiple_of(PAGE) || output.is_some_and(|(o, _)| !o.is_multiple_of(PAGE)) {
            return Err(MapError::Unaligned);
        }
        if input >= 1 << INPUT_BITS {
            return Err(MapError::OutOfRange);
        }
        let mut table = self.root;
        let mut changed = false;
        for (level, &shift) in LEVEL_SHIFT.iter().enumerate().skip(1) {
            let index = ((input >> shift) & (ENTRIES as u64 - 1)) as usize;
            // SAFETY: `table` belongs to this tree; `&mut self` makes access exclusive.
            let entries = unsafe { mem.table(table) };
            let entry = Descriptor::new(entries[index]);
            if level == 3 {
                changed = entry.is_set(DESC::VALID);
                entries[index] = match output {
                    Some((oa, attrs)) => with(
                        attrs,
                        DESC::VALID::SET
                            + DESC::TABLE_OR_PAGE::SET
                            + DESC::OUTPUT_ADDR.val(oa >> 12),
                    )
                    .get(),
                    None => 0,
                };
                return Ok(changed);
            }
            if !entry.is_set(DESC::VALID) {
                if output.is_none() {
                    return Ok(false);
                }
                let next = mem.alloc_table().ok_or(MapError::OutOfTables)?;
                // SAFETY: as above.
                let entries = unsafe { mem.table(table) };
                entries[index] = with(
                    Descriptor::new(0),
                    DESC::VALID::SET + DESC::TABLE_OR_PAGE::SET + DESC::OUTPUT_ADDR.val(next >> 12),
                )
                .get();
                table = next;
            } else if !entry.is_set(DESC::TABLE_OR_PAGE) {
                // A block: replace it by a table of the next level mapping the same range.
                let next = mem.alloc_table().ok_or(MapError::OutOfTables)?;
                let base = entry.read(DESC::OUTPUT_ADDR) << 12;
                let child_size = 1u64 << LEVEL_SHIFT[level + 1];
                let mut attrs = entry;
                attrs.modify(
                    DESC::VALID::CLEAR + DESC::TABLE_OR_PAGE::CLEAR + DESC::OUTPUT_ADDR.val(0),
                );
                let kind = if level + 1 == 3 {
                    DESC::TABLE_OR_PAGE::SET
                } else {
                    DESC::TABLE_OR_PAGE::CLEAR
                };
                // SAFETY: the new table is not linked yet; nothing else can reach it.
                let child = unsafe { mem.table(next) };
                for (k, e) in child.iter_mut().enumerate() {
                    let oa = base + k as u64 * child_size;
                    *e = with(
                        attrs,
                        DESC::VALID::SET + kind + DESC::OUTPUT_ADDR.val(oa >> 12),
                    )
                    .get();
                }
                // SAFETY: as above.
                let entries = unsafe { mem.table(table) };
                entries[index] = with(
                    Descriptor::new(0),
                    DESC::VALID::SET + DESC::TABLE_OR_PAGE::SET + DESC::OUTPUT_ADDR.val(next >> 12),
                )
                .get();
                changed = true;
                table = next;
            } else {
                table = entry.read(DESC::OUTPUT_ADDR) << 12;
            }
        }
        Ok(changed)
    }

    /// The output address `input` translates to, if mapped.
    pub fn translate(&self, mem: &mut impl TableMemory, input: u64) -> Option<u64> {
        if input >= 1 << INPUT_BITS {
            return None;
        }
        let mut table = self.root;
        for (level, &shift) in LEVEL_SHIFT.iter().enumerate().skip(1) {
            let index = ((input >> shift) & (ENTRIES as u64 - 1)) as usize;
            // SAFETY: walking tables owned by this PageTable; `&self` prevents mutation.
            let entry = Descriptor::new(unsafe { mem.table(table) }[index]);
            if !entry.is_set(DESC::VALID) {
                return None;
            }
            let addr = entry.read(DESC::OUTPUT_ADDR) << 12;
            if level == 3 || !entry.is_set(DESC::TABLE_OR_PAGE) {
                return Some(addr + (input & ((1 << shift) - 1)));
            }
            table = addr;
        }
        None
    }

    /// Frees every table of this tree (not the memory it mapped).
    pub fn destroy(self, mem: &mut impl TableMemory) {
        fn free_level(mem: &mut impl TableMemory, table: u64, level: usize) {
            if level < 3 {
                for i in 0..ENTRIES {
                    // SAFETY: the tree is being torn down by its owner; no one else walks it.
                    let entry = Descriptor::new(unsafe { mem.table(table) }[i]);
                    if entry.is_set(DESC::VALID) && entry.is_set(DESC::TABLE_OR_PAGE) {
                        free_level(mem, entry.read(DESC::OUTPUT_ADDR) << 12, level + 1);
                    }
                }
            }
            mem.free_table(table);
        }
        free_level(mem, self.root, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Tables in host memory, addressed by fake physical addresses.
    #[derive(Default)]
    struct HostTables {
        next: u64,
        tables: HashMap<u64, Box<[u64; ENTRIES]>>,
        limit: Option<usize>,
    }

    impl TableMemory for HostTables {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.limit.is_some_and(|l| self.tables.len() >= l) {
                return None;
            }
            self.next += PAGE;
            let pa = 0x1_0000_0000 + self.next;
            self.tables.insert(pa, Box::new([0; ENTRIES]));
            Some(pa)
        }
        fn free_table(&mut self, pa: u64) {
            assert!(self.tables.remove(&pa).is_some(), "double free of {pa:#x}");
        }
        unsafe fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES] {
            self.tables.get_mut(&pa).expect("unknown table")
        }
    }

    #[test]
    fn blocks_used_where_aligned() {
        let mut mem = HostTables::default();
        let mut pt = PageTable::new(&mut mem).unwrap();
        pt.map(
            &mut mem,
            0x4000_0000,
            0x8000_0000,
            0x4000_0000,
            stage2_ram(),
        )
        .unwrap();
        // One root only: a single 1 GiB block.
        assert_eq!(mem.tables.len(), 1);
        assert_eq!(pt.translate(&mut mem, 0x4123_4567), Some(0x8123_4567));
        assert_eq!(pt.translate(&mut mem, 0x3fff_ffff), None);
        pt.destroy(&mut mem);
        assert!(mem.tables.is_empty());
    }

    #[test]
    fn mixed_granules() {
        let mut mem = HostTables::default();
        let mut pt = PageTable::new(&mut mem).unwrap();
        // 2 MiB-aligned on both sides but 4 KiB tail: 2 MiB blocks then pages.
        pt.map(&mut mem, 0x4000_0000, 0x5020_0000, 0x40_3000, stage2_ram())
            .unwrap();
        assert_eq!(pt.translate(&mut mem, 0x4000_0000), Some(0x5020_0000));
        assert_eq!(pt.translate(&mut mem, 0x4040_2fff), Some(0x5060_2fff));
        assert_eq!(pt.translate(&mut mem, 0x4040_3000), None);
        // root + L2 + L3
        assert_eq!(mem.tables.len(), 3);
        pt.destroy(&mut mem);
        assert!(mem.tables.is_empty());
    }

    #[test]
    fn set_page_splits_blocks_and_unmaps() {
        let mut mem = HostTables::default();
        let mut pt = PageTable::new(&mut mem).unwrap();
        pt.map(
            &mut mem,
            0x4000_0000,
            0x8000_0000,
            0x4000_0000,
            stage2_ram(),
        )
        .unwrap();
        // Replace one page inside the 1 GiB block: L1 block -> L2 table -> L3 table.
        let changed = pt
            .set_page(
                &mut mem,
                0x4020_3000,
                Some((0x1_2345_6000, stage2_device())),
            )
            .unwrap();
        assert!(changed);
        assert_eq!(pt.translate(&mut mem, 0x4020_3010), Some(0x1_2345_6010));
        // Neighbours keep their old translation.
        assert_eq!(pt.translate(&mut mem, 0x4020_2000), Some(0x8020_2000));
        assert_eq!(pt.translate(&mut mem, 0x4020_4000), Some(0x8020_4000));
        assert_eq!(pt.translate(&mut mem, 0x7fff_f000), Some(0xbfff_f000));
        assert_eq!(mem.tables.len(), 3);
        assert!(pt.set_page(&mut mem, 0x4020_3000, None).unwrap());
        assert_eq!(pt.translate(&mut mem, 0x4020_3000), None);
        // Unmapping an unmapped page changes nothing and allocates nothing.
        assert!(!pt.set_page(&mut mem, 0x10_0000, None).unwrap());
        assert_eq!(mem.tables.len(), 3);
        assert_eq!(pt.set_page(&mut mem, 0x123, None), Err(MapError::Unaligned));
        assert_eq!(
            pt.set_page(&mut mem, 1 << 40, None),
            Err(MapError::OutOfRange)
        );
        pt.destroy(&mut mem);
        assert!(mem.tables.is_empty());
    }

    #[test]
    fn refuses_bad_requests() {
        let mut mem = HostTables::default();
        let mut pt = PageTable::new(&mut mem).unwrap();
        assert_eq!(
            pt.map(&mut mem, 0x1001, 0, 0x1000, stage2_ram()),
            Err(MapError::Unaligned)
        );
        assert_eq!(
            pt.map(&mut mem, (1 << 39) - 0x1000, 0, 0x2000, stage2_ram()),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            pt.map(&mut mem, u64::MAX - 0xfff, 0, 0x1000, stage2_ram()),
            Err(MapError::OutOfRange)
        );
        pt.map(&mut mem, 0x20_0000, 0x20_0000, 0x1000, stage2_ram())
            .unwrap();
        assert_eq!(
            pt.map(&mut mem, 0x20_0000, 0x30_0000, 0x1000, stage2_ram()),
            Err(MapError::AlreadyMapped)
        );
        // A block over an existing table is refused too.
        assert_eq!(
            pt.map(&mut mem, 0, 0, 0x4000_0000, stage2_ram()),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(pt.translate(&mut mem, 1 << 40), None);
    }

    #[test]
    fn running_out_of_tables_is_an_error() {
        let mut mem = HostTables {
            limit: Some(2),
            ..Default::default()
        };
        let mut pt = PageTable::new(&mut mem).unwrap();
        assert_eq!(
            pt.map(&mut mem, 0x1000, 0x1000, 0x1000, stage2_ram()),
            Err(MapError::OutOfTables)
        );
    }

    #[test]
    fn attributes_are_encoded() {
        let ram = stage2_ram();
        assert_eq!(ram.read(DESC::S2_MEMATTR), 0b1111);
        assert_eq!(ram.read(DESC::S2AP), 0b11);
        assert!(ram.is_set(DESC::AF));
        assert!(stage2_device().is_set(DESC::XN));
        assert_eq!(el2_device().read(DESC::ATTR_INDX), 1);
    }
}
