//! Nested page tables: guest-physical to host-physical, 4-level, 4 KiB leaves. AMD's nested
//! tables use the long-mode entry format (and hardware treats every nested access as a user
//! access, so every entry has U set).
//!
//! Table pages are reached only through [`TableMemory`], so the builder runs on the host in
//! tests and on identity-mapped RAM in Mica.

/// Entries per table.
pub const ENTRIES: usize = 512;
/// Size of a leaf page.
pub const PAGE: u64 = 4096;
/// Guest-physical addresses must be below this (4 levels, 48 bits).
pub const GPA_LIMIT: u64 = 1 << 48;
/// Host-physical addresses must be below this (the entry format's 52 bits).
pub const HPA_LIMIT: u64 = 1 << 52;

/// Entry bit: present.
pub const PRESENT: u64 = 1 << 0;
/// Entry bit: writable.
pub const WRITABLE: u64 = 1 << 1;
/// Entry bit: user (required on every nested-table level).
pub const USER: u64 = 1 << 2;
/// Entry bit: a large page at this level (Mica never makes them; found only if corrupted).
pub const LARGE: u64 = 1 << 7;
/// The address bits of an entry.
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// How a page may be accessed by the guest.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Perm {
    /// Read, write and execute.
    ReadWrite,
    /// Read and execute; writes fault.
    ReadOnly,
}

/// Why a mapping change failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NptError {
    /// An address or length is not page aligned.
    Unaligned,
    /// An address (or the end of a range) is beyond what the tables can express.
    OutOfRange,
    /// No memory for a table page.
    NoMemory,
    /// A large page is where a table was expected (never made by this builder).
    LargePage,
}

/// Access to the pages holding the tables (host-physical addresses).
pub trait TableMemory {
    /// A zeroed, page-aligned page for a new table.
    fn alloc_table(&mut self) -> Option<u64>;
    /// Entry `index` of the table at `table`.
    fn read_entry(&self, table: u64, index: usize) -> u64;
    /// Sets entry `index` of the table at `table`.
    fn write_entry(&mut self, table: u64, index: usize, value: u64);
}

/// One guest's nested page tables.
#[derive(Debug)]
pub struct Npt {
    root: u64,
}

fn index(gpa: u64, level: u32) -> usize {
    ((gpa >> (12 + 9 * level)) & (ENTRIES as u64 - 1)) as usize
}

impl Npt {
    /// Empty tables (every guest-physical access faults).
    pub fn new(mem: &mut dyn TableMemory) -> Result<Self, NptError> {
        let root = mem.alloc_table().ok_or(NptError::NoMemory)?;
        Ok(Self { root })
    }

    /// Tables built earlier whose top table is at `root` (for read-only walks elsewhere).
    pub fn from_root(root: u64) -> Self {
        Self { root }
    }

    /// Host-physical address of the top table (the VMCB's nested CR3).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The leaf table covering `gpa`, creating missing tables if `create`.
    fn leaf_table(
        &self,
        mem: &mut dyn TableMemory,
        gpa: u64,
        create: bool,
    ) -> Result<Option<u64>, NptError> {
        let mut table = self.root;
        for level in (1..=3).rev() {
            let i = index(gpa, level);
            let entry = mem.read_entry(table, i);
            if entry & PRESENT == 0 {
                if !create {
                    return Ok(None);
                }
                let next = mem.alloc_table().ok_or(NptError::NoMemory)?;
                mem.write_entry(table, i, next | PRESENT | WRITABLE | USER);
                table = next;
            } else if entry & LARGE != 0 {
                return Err(NptError::LargePage);
            } else {
                table = entry & ADDR_MASK;
            }
        }
        Ok(Some(table))
    }

    fn check(gpa: u64, hpa: u64) -> Result<(), NptError> {
        if !gpa.is_multiple_of(PAGE) || !hpa.is_multiple_of(PAGE) {
            return Err(NptError::Unaligned);
        }
        if gpa >= GPA_LIMIT || hpa >= HPA_LIMIT {
            return Err(NptError::OutOfRange);
        }
        Ok(())
    }

    /// Maps one page, replacing what was there. The caller flushes the guest's TLB.
    pub fn map_page(
        &mut self,
        mem: &mut dyn TableMemory,
        gpa: u64,
        hpa: u64,
        perm: Perm,
    ) -> Result<(), NptError> {
        Self::check(gpa, hpa)?;
        let table = self.leaf_table(mem, gpa, true)?.ok_or(NptError::NoMemory)?;
        let write = match perm {
            Perm::ReadWrite => WRITABLE,
            Perm::ReadOnly => 0,
        };
        mem.write_entry(table, index(gpa, 0), hpa | PRESENT | USER | write);
        Ok(())
    }

    /// Maps `len` bytes at `gpa` to host memory at `hpa`, page by page.
    pub fn map_range(
        &mut self,
        mem: &mut dyn TableMemory,
        gpa: u64,
        hpa: u64,
        len: u64,
        perm: Perm,
    ) -> Result<(), NptError> {
        if !len.is_multiple_of(PAGE) {
            return Err(NptError::Unaligned);
        }
        let gpa_end = gpa.checked_add(len).ok_or(NptError::OutOfRange)?;
        let hpa_end = hpa.checked_add(len).ok_or(NptError::OutOfRange)?;
        if gpa_end > GPA_LIMIT || hpa_end > HPA_LIMIT {
            return Err(NptError::OutOfRange);
        }
        let mut off = 0;
        while off < len {
            self.map_page(mem, gpa + off, hpa + off, perm)?;
            off += PAGE;
        }
        Ok(())
    }

    /// Removes the mapping of the page at `gpa` (a hole: guest accesses fault).
    pub fn unmap_page(&mut self, mem: &mut dyn TableMemory, gpa: u64) -> Result<(), NptError> {
        Self::check(gpa, 0)?;
        if let Some(table) = self.leaf_table(mem, gpa, false)? {
            mem.write_entry(table, index(gpa, 0), 0);
        }
        Ok(())
    }

    /// Where `gpa` (any byte) is mapped, and how.
    pub fn translate(&self, mem: &mut dyn TableMemory, gpa: u64) -> Option<(u64, Perm)> {
        if gpa >= GPA_LIMIT {
            return None;
        }
        let table = self.leaf_table(mem, gpa, false).ok()??;
        let entry = mem.read_entry(table, index(gpa, 0));
        if entry & PRESENT == 0 {
            return None;
        }
        let perm = if entry & WRITABLE != 0 {
            Perm::ReadWrite
        } else {
            Perm::ReadOnly
        };
        Some(((entry & ADDR_MASK) | (gpa % PAGE), perm))
    }

    /// Calls `f` with every table page (for freeing them when the guest is destroyed).
    pub fn for_each_table(&self, mem: &dyn TableMemory, f: &mut dyn FnMut(u64)) {
        fn walk(mem: &dyn TableMemory, table: u64, level: u32, f: &mut dyn FnMut(u64)) {
            if level > 0 {
                for i in 0..ENTRIES {
                    let e = mem.read_entry(table, i);
                    if e & PRESENT != 0 && e & LARGE == 0 {
                        walk(mem, e & ADDR_MASK, level - 1, f);
                    }
                }
            }
            f(table);
        }
        walk(mem, self.root, 3, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Tables in a hash map, handing out fake host pages from 16 MiB on, with a budget.
    struct FakeMem {
        tables: HashMap<u64, [u64; ENTRIES]>,
        next: u64,
        budget: usize,
    }

    impl FakeMem {
        fn new(budget: usize) -> Self {
            Self {
                tables: HashMap::new(),
                next: 0x100_0000,
                budget,
            }
        }
    }

    impl TableMemory for FakeMem {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.budget == 0 {
                return None;
            }
            self.budget -= 1;
            let page = self.next;
            self.next += PAGE;
            self.tables.insert(page, [0; ENTRIES]);
            Some(page)
        }
        fn read_entry(&self, table: u64, index: usize) -> u64 {
            self.tables[&table][index]
        }
        fn write_entry(&mut self, table: u64, index: usize, value: u64) {
            self.tables.get_mut(&table).unwrap()[index] = value;
        }
    }

    #[test]
    fn mapped_pages_translate_with_user_bit_on_every_level() {
        let mut mem = FakeMem::new(64);
        let mut npt = Npt::new(&mut mem).unwrap();
        npt.map_range(&mut mem, 0x10_0000, 0x4000_0000, 3 * PAGE, Perm::ReadWrite)
            .unwrap();
        npt.map_page(&mut mem, 0xfee0_0000, 0x5000_0000, Perm::ReadOnly)
            .unwrap();
        assert_eq!(
            npt.translate(&mut mem, 0x10_1234),
            Some((0x4000_1234, Perm::ReadWrite))
        );
        assert_eq!(
            npt.translate(&mut mem, 0xfee0_0010),
            Some((0x5000_0010, Perm::ReadOnly))
        );
        assert_eq!(npt.translate(&mut mem, 0x10_3000), None);
        assert_eq!(npt.translate(&mut mem, 0), None);
        for table in mem.tables.values() {
            for &e in table.iter().filter(|e| **e & PRESENT != 0) {
                assert_ne!(e & USER, 0, "entry {e:#x} lacks U");
                assert_eq!(e & LARGE, 0);
            }
        }
        // One root, one PDPT, two PDs (0 and 3 GiB), two leaf tables.
        let mut count = 0;
        npt.for_each_table(&mem, &mut |_| count += 1);
        assert_eq!(count, 6);
    }

    #[test]
    fn unmap_leaves_a_hole_and_remap_replaces() {
        let mut mem = FakeMem::new(16);
        let mut npt = Npt::new(&mut mem).unwrap();
        npt.map_range(&mut mem, 0, 0x20_0000, 4 * PAGE, Perm::ReadWrite)
            .unwrap();
        npt.unmap_page(&mut mem, PAGE).unwrap();
        assert_eq!(npt.translate(&mut mem, PAGE), None);
        assert!(npt.translate(&mut mem, 2 * PAGE).is_some());
        npt.map_page(&mut mem, 2 * PAGE, 0x90_0000, Perm::ReadOnly)
            .unwrap();
        assert_eq!(
            npt.translate(&mut mem, 2 * PAGE),
            Some((0x90_0000, Perm::ReadOnly))
        );
        // Unmapping where no table exists is fine and allocates nothing.
        let before = mem.tables.len();
        npt.unmap_page(&mut mem, 0x7f00_0000_0000).unwrap();
        assert_eq!(mem.tables.len(), before);
    }

    #[test]
    fn bad_input_is_refused_without_partial_damage() {
        let mut mem = FakeMem::new(16);
        let mut npt = Npt::new(&mut mem).unwrap();
        let rw = Perm::ReadWrite;
        assert_eq!(
            npt.map_page(&mut mem, 0x1001, 0, rw),
            Err(NptError::Unaligned)
        );
        assert_eq!(
            npt.map_page(&mut mem, 0, 0x10, rw),
            Err(NptError::Unaligned)
        );
        assert_eq!(
            npt.map_page(&mut mem, GPA_LIMIT, 0, rw),
            Err(NptError::OutOfRange)
        );
        assert_eq!(
            npt.map_page(&mut mem, 0, HPA_LIMIT, rw),
            Err(NptError::OutOfRange)
        );
        assert_eq!(
            npt.map_range(&mut mem, u64::MAX - 0xfff, 0, PAGE, rw),
            Err(NptError::OutOfRange)
        );
        assert_eq!(
            npt.map_range(&mut mem, 0, 0, 100, rw),
            Err(NptError::Unaligned)
        );
        assert_eq!(
            npt.map_range(&mut mem, GPA_LIMIT - PAGE, 0, 2 * PAGE, rw),
            Err(NptError::OutOfRange)
        );
        assert_eq!(npt.translate(&mut mem, u64::MAX), None);
        assert_eq!(mem.tables.len(), 1, "refused calls allocate no tables");
    }

    #[test]
    fn running_out_of_table_memory_is_an_error() {
        let mut mem = FakeMem::new(2);
        let mut npt = Npt::new(&mut mem).unwrap();
        assert_eq!(
            npt.map_page(&mut mem, 0, 0x1000, Perm::ReadWrite),
            Err(NptError::NoMemory)
        );
        assert_eq!(npt.translate(&mut mem, 0), None);
    }

    #[test]
    fn a_corrupt_large_entry_is_reported_not_followed() {
        let mut mem = FakeMem::new(8);
        let mut npt = Npt::new(&mut mem).unwrap();
        let root = npt.root();
        mem.write_entry(root, 0, 0x20_0000 | PRESENT | LARGE);
        assert_eq!(
            npt.map_page(&mut mem, 0, 0x1000, Perm::ReadWrite),
            Err(NptError::LargePage)
        );
        assert_eq!(npt.translate(&mut mem, 0), None);
    }
}
