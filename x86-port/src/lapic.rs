//! A guest's local APIC in x2APIC mode, as the guest sees it through MSRs 0x800-0x8ff and
//! IA32_APIC_BASE (already in x2APIC mode at entry, as firmware may leave it): enough for a
//! Linux guest to find an APIC, run in virtual-wire mode and use Xen's PV timer. Registers
//! read back what was written; the EOI, self-IPI and ICR-to-self writes are handled; the
//! APIC's own timer is not modelled (its registers are kept, it never fires: a Xen guest uses
//! VIRQ_TIMER instead). No xAPIC MMIO: the register page is not mapped.

/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// The x2APIC register MSRs.
pub const MSR_X2APIC_FIRST: u32 = 0x800;
/// Last x2APIC MSR.
pub const MSR_X2APIC_LAST: u32 = 0x8ff;
/// The architectural APIC page address.
pub const APIC_DEFAULT_BASE: u64 = 0xfee0_0000;
/// IA32_APIC_BASE bits: bootstrap processor, x2APIC mode, enabled.
const BASE_BSP: u64 = 1 << 8;
const BASE_EXTD: u64 = 1 << 10;
const BASE_ENABLE: u64 = 1 << 11;

/// x2APIC register offsets (MSR - 0x800).
const REG_ID: u32 = 0x02;
const REG_VERSION: u32 = 0x03;
const REG_TPR: u32 = 0x08;
const REG_PPR: u32 = 0x0a;
const REG_EOI: u32 = 0x0b;
const REG_LDR: u32 = 0x0d;
const REG_SVR: u32 = 0x0f;
const REG_ISR_FIRST: u32 = 0x10;
const REG_IRR_LAST: u32 = 0x27;
const REG_ESR: u32 = 0x28;
const REG_LVT_CMCI: u32 = 0x2f;
const REG_ICR: u32 = 0x30;
const REG_LVT_TIMER: u32 = 0x32;
const REG_LVT_ERROR: u32 = 0x37;
const REG_TIMER_INITIAL: u32 = 0x38;
const REG_TIMER_CURRENT: u32 = 0x39;
const REG_TIMER_DIVIDE: u32 = 0x3e;
const REG_SELF_IPI: u32 = 0x3f;
/// Version register: version 0x14, 6 LVT entries (max LVT index 5), as a recent AMD APIC.
const VERSION: u64 = 0x0005_0014;
/// LVT reset value: masked.
const LVT_MASKED: u64 = 1 << 16;
/// ICR: destination shorthand (bits 18-19) "self", and "all including self"; delivery mode
/// (bits 8-10) fixed.
const ICR_SHORTHAND_SHIFT: u32 = 18;
const ICR_SHORTHAND_SELF: u64 = 1;
const ICR_SHORTHAND_ALL: u64 = 2;
const ICR_DELIVERY_MASK: u64 = 0b111 << 8;

/// One vCPU's local APIC.
#[derive(Clone, Debug)]
pub struct Lapic {
    id: u32,
    tpr: u64,
    svr: u64,
    esr: u64,
    icr: u64,
    /// LVT CMCI, timer, thermal, performance, LINT0, LINT1, error.
    lvt: [u64; 7],
    timer_initial: u64,
    timer_divide: u64,
    /// Requested vectors (fixed IPIs to self) not yet delivered.
    pending: [u64; 4],
}

/// Why an access is refused (the guest gets #GP, as on hardware).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Refused;

impl Lapic {
    /// The APIC of vCPU `id` after reset: software-disabled, LVTs masked.
    pub fn new(id: u32) -> Self {
        Self {
            id,
            tpr: 0,
            svr: 0xff,
            esr: 0,
            icr: 0,
            lvt: [LVT_MASKED; 7],
            timer_initial: 0,
            timer_divide: 0,
            pending: [0; 4],
        }
    }

    /// Whether `msr` is one of the APIC's.
    pub fn claims(msr: u32) -> bool {
        msr == MSR_APIC_BASE || (MSR_X2APIC_FIRST..=MSR_X2APIC_LAST).contains(&msr)
    }

    /// RDMSR.
    pub fn read(&self, msr: u32) -> Result<u64, Refused> {
        if msr == MSR_APIC_BASE {
            let bsp = if self.id == 0 { BASE_BSP } else { 0 };
            return Ok(APIC_DEFAULT_BASE | BASE_ENABLE | BASE_EXTD | bsp);
        }
        let reg = msr.checked_sub(MSR_X2APIC_FIRST).ok_or(Refused)?;
        Ok(match reg {
            REG_ID => u64::from(self.id),
            REG_VERSION => VERSION,
            REG_TPR => self.tpr,
            REG_PPR => self.tpr,
            // x2APIC logical id: cluster in bits 16-31, one bit of the 16 in the cluster.
            REG_LDR => u64::from(self.id >> 4) << 16 | 1 << (self.id & 0xf),
            REG_SVR => self.svr,
            REG_ISR_FIRST..=REG_IRR_LAST => 0,
            REG_ESR => self.esr,
            REG_ICR => self.icr,
            REG_LVT_CMCI..=REG_LVT_ERROR if reg != REG_ICR && reg != REG_ICR + 1 => {
                self.lvt[lvt_index(reg)]
            }
            REG_TIMER_INITIAL => self.timer_initial,
            REG_TIMER_CURRENT => 0,
            REG_TIMER_DIVIDE => self.timer_divide,
            // Write-only (EOI, self-IPI) and reserved registers fault on read.
            _ => return Err(Refused),
        })
    }

    /// WRMSR.
    pub fn write(&mut self, msr: u32, value: u64) -> Result<(), Refused> {
        if msr == MSR_APIC_BASE {
            // Leaving x2APIC mode or disabling the APIC is not offered.
            let keep = BASE_ENABLE | BASE_EXTD;
            return if value & keep == keep {
                Ok(())
            } else {
                Err(Refused)
            };
        }
        let reg = msr.checked_sub(MSR_X2APIC_FIRST).ok_or(Refused)?;
        let low = value & u64::from(u32::MAX);
        match reg {
            REG_TPR => self.tpr = low & 0xff,
            REG_EOI if value == 0 => {}
            REG_SVR => self.svr = low,
            REG_ESR => self.esr = 0,
            REG_ICR => {
                self.icr = value;
                let shorthand = (value >> ICR_SHORTHAND_SHIFT) & 0b11;
                let to_self = shorthand == ICR_SHORTHAND_SELF
                    || shorthand == ICR_SHORTHAND_ALL
                    || (shorthand == 0 && value >> 32 == u64::from(self.id));
                if to_self && value & ICR_DELIVERY_MASK == 0 {
                    self.request(value as u8);
                }
            }
            REG_LVT_CMCI..=REG_LVT_ERROR if reg != REG_ICR + 1 => self.lvt[lvt_index(reg)] = low,
            REG_TIMER_INITIAL => self.timer_initial = low,
            REG_TIMER_DIVIDE => self.timer_divide = low & 0b1011,
            REG_SELF_IPI => self.request(value as u8),
            _ => return Err(Refused),
        }
        Ok(())
    }

    fn request(&mut self, vector: u8) {
        // Vectors 0-15 are reserved (an APIC reports an illegal vector instead).
        if vector >= 16 {
            self.pending[usize::from(vector / 64)] |= 1 << (vector % 64);
        }
    }

    /// The highest requested vector, taken (delivered by the caller).
    pub fn take_pending(&mut self) -> Option<u8> {
        for word in (0..4).rev() {
            let bits = self.pending[word];
            if bits != 0 {
                let bit = 63 - bits.leading_zeros();
                self.pending[word] &= !(1 << bit);
                return Some((word as u32 * 64 + bit) as u8);
            }
        }
        None
    }

    /// Whether a vector waits.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|w| *w != 0)
    }
}

/// LVT registers 0x2f (CMCI) and 0x32-0x37 map onto the seven slots.
fn lvt_index(reg: u32) -> usize {
    match reg {
        REG_LVT_CMCI => 0,
        r => (r - REG_LVT_TIMER + 1).min(6) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_says_enabled_x2apic_and_refuses_to_leave_it() {
        let mut a = Lapic::new(0);
        let base = a.read(MSR_APIC_BASE).unwrap();
        assert_eq!(base, 0xfee0_0d00);
        assert_eq!(a.write(MSR_APIC_BASE, base), Ok(()));
        assert_eq!(a.write(MSR_APIC_BASE, base & !BASE_EXTD), Err(Refused));
        assert_eq!(Lapic::new(1).read(MSR_APIC_BASE).unwrap() & BASE_BSP, 0);
    }

    #[test]
    fn registers_read_back_and_reserved_ones_fault() {
        let mut a = Lapic::new(3);
        assert_eq!(a.read(0x802), Ok(3));
        assert_eq!(a.read(0x803), Ok(VERSION));
        assert_eq!(a.read(0x80d), Ok(1 << 3));
        a.write(0x80f, 0x1ff).unwrap();
        assert_eq!(a.read(0x80f), Ok(0x1ff));
        a.write(0x832, 0x20030).unwrap();
        assert_eq!(a.read(0x832), Ok(0x20030));
        a.write(0x835, 0x700).unwrap();
        assert_eq!(a.read(0x835), Ok(0x700));
        assert_eq!(a.read(0x837), Ok(LVT_MASKED));
        assert_eq!(a.read(0x80b), Err(Refused), "EOI is write-only");
        assert_eq!(a.write(0x80b, 1), Err(Refused), "EOI takes 0 only");
        assert_eq!(a.write(0x80b, 0), Ok(()));
        assert_eq!(a.read(0x831), Err(Refused));
        assert_eq!(a.write(0x802, 5), Err(Refused), "the id is read-only");
        assert_eq!(a.read(0x8ff), Err(Refused));
        assert_eq!(a.read(0x7ff), Err(Refused));
        for msr in 0x800..=0x8ff {
            let _ = a.read(msr);
            let _ = a.write(msr, u64::MAX);
        }
    }

    #[test]
    fn self_ipis_are_delivered_highest_first() {
        let mut a = Lapic::new(0);
        a.write(0x83f, 0xf3).unwrap();
        a.write(0x830, 1 << 18 | 0x40).unwrap(); // self shorthand, fixed
        a.write(0x830, 0x41).unwrap(); // to id 0 = self
        a.write(0x830, 5u64 << 32 | 0x42).unwrap(); // another CPU: not here
        a.write(0x830, 1 << 18 | 4 << 8 | 0x43).unwrap(); // NMI delivery: not a vector
        a.write(0x83f, 0x05).unwrap(); // reserved vector
        assert_eq!(a.take_pending(), Some(0xf3));
        assert_eq!(a.take_pending(), Some(0x41));
        assert_eq!(a.take_pending(), Some(0x40));
        assert_eq!(a.take_pending(), None);
        assert!(!a.has_pending());
    }
}
