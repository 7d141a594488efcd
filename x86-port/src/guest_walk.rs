//! Guest-virtual to guest-physical translation through the guest's own page tables, for
//! hypercall argument buffers and instruction fetch (Xen's x86 guest handles are linear
//! addresses of the calling vCPU, as on Arm). Paging off and 4-level long mode are
//! supported; legacy 32-bit paging answers [`WalkError::Unsupported`].

/// CR0.PG.
pub const CR0_PG: u64 = 1 << 31;
/// CR0.WP: supervisor writes honour read-only entries.
pub const CR0_WP: u64 = 1 << 16;
/// EFER.LMA: long mode active.
pub const EFER_LMA: u64 = 1 << 10;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const LARGE: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The guest's paging registers.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Paging {
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
}

/// Why a guest-virtual address has no usable translation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WalkError {
    /// A level is not present (or a table lies outside guest memory).
    NotPresent,
    /// A write through a read-only entry with CR0.WP set.
    ReadOnly,
    /// Not a canonical address.
    NonCanonical,
    /// A paging mode Mica does not walk (32-bit legacy or PAE paging).
    Unsupported,
}

/// Reads guest-physical memory for the walk.
pub trait PhysRead {
    /// The little-endian `u64` at `gpa`, `None` outside guest memory.
    fn read_u64(&self, gpa: u64) -> Option<u64>;
}

/// Translates `gva` for a read or write.
pub fn translate(
    mem: &dyn PhysRead,
    paging: Paging,
    gva: u64,
    write: bool,
) -> Result<u64, WalkError> {
    if paging.cr0 & CR0_PG == 0 {
        // Paging off: linear = physical, 32 bits wide outside long mode.
        return Ok(gva & u64::from(u32::MAX));
    }
    if paging.efer & EFER_LMA == 0 {
        return Err(WalkError::Unsupported);
    }
    let top = gva >> 47;
    if top != 0 && top != (1 << 17) - 1 {
        return Err(WalkError::NonCanonical);
    }
    let mut table = paging.cr3 & ADDR_MASK;
    let mut writable = true;
    for level in (0..4u32).rev() {
        let shift = 12 + 9 * level;
        let index = (gva >> shift) & 0x1ff;
        let entry = mem
            .read_u64(table + index * 8)
            .ok_or(WalkError::NotPresent)?;
        if entry & PRESENT == 0 {
            return Err(WalkError::NotPresent);
        }
        writable &= entry & WRITABLE != 0;
        // 1 GiB pages at level 2, 2 MiB pages at level 1.
        let leaf = level == 0 || (entry & LARGE != 0 && (level == 1 || level == 2));
        if leaf {
            if write && !writable && paging.cr0 & CR0_WP != 0 {
                return Err(WalkError::ReadOnly);
            }
            let page_mask = (1u64 << shift) - 1;
            return Ok((entry & ADDR_MASK & !page_mask) | (gva & page_mask));
        }
        table = entry & ADDR_MASK;
    }
    Err(WalkError::NotPresent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Mem(HashMap<u64, u64>);
    impl PhysRead for Mem {
        fn read_u64(&self, gpa: u64) -> Option<u64> {
            // Unmapped words read as zero (not present); beyond 1 GiB is outside the guest.
            (gpa < 1 << 30).then(|| self.0.get(&gpa).copied().unwrap_or(0))
        }
    }

    const LONG: Paging = Paging {
        cr0: CR0_PG | CR0_WP | 1,
        cr3: 0x1000,
        cr4: 1 << 5,
        efer: EFER_LMA | (1 << 8),
    };

    fn tables() -> Mem {
        let mut m = HashMap::new();
        m.insert(0x1000, 0x2000 | PRESENT | WRITABLE); // PML4[0]
        m.insert(0x2000, 0x3000 | PRESENT | WRITABLE); // PDPT[0]
        m.insert(0x2008, 0x4000_0000 | PRESENT | LARGE); // PDPT[1]: 1 GiB read-only
        m.insert(0x3000, 0x20_0000 | PRESENT | WRITABLE | LARGE); // PD[0]: 2 MiB
        m.insert(0x3008, 0x4000 | PRESENT | WRITABLE); // PD[1] -> PT
        m.insert(0x4000 + 5 * 8, 0x7000 | PRESENT); // PT[5]: read-only 4 KiB
        Mem(m)
    }

    #[test]
    fn long_mode_walks_all_page_sizes() {
        let m = tables();
        assert_eq!(translate(&m, LONG, 0x1234, true), Ok(0x20_1234));
        assert_eq!(translate(&m, LONG, 0x20_5abc, false), Ok(0x7abc));
        assert_eq!(translate(&m, LONG, 0x4012_3456, false), Ok(0x4012_3456));
    }

    #[test]
    fn faults_and_bad_addresses_are_errors() {
        let m = tables();
        assert_eq!(
            translate(&m, LONG, 0x20_5000, true),
            Err(WalkError::ReadOnly)
        );
        let no_wp = Paging {
            cr0: LONG.cr0 & !CR0_WP,
            ..LONG
        };
        assert_eq!(translate(&m, no_wp, 0x20_5000, true), Ok(0x7000));
        assert_eq!(
            translate(&m, LONG, 0x20_6000, false),
            Err(WalkError::NotPresent)
        );
        assert_eq!(
            translate(&m, LONG, 0x0000_8000_0000_0000, false),
            Err(WalkError::NonCanonical)
        );
        // A table pointer outside guest memory ends the walk.
        let wild = Paging {
            cr3: 0x7fff_f000_0000,
            ..LONG
        };
        assert_eq!(translate(&m, wild, 0, false), Err(WalkError::NotPresent));
        let legacy = Paging { efer: 0, ..LONG };
        assert_eq!(translate(&m, legacy, 0, false), Err(WalkError::Unsupported));
    }

    #[test]
    fn paging_off_is_identity_truncated_to_32_bits() {
        let m = tables();
        let off = Paging::default();
        assert_eq!(translate(&m, off, 0x1_0000_1234, true), Ok(0x1234));
    }
}
