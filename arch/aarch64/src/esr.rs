//! Decoding of an exception syndrome (ESR_EL2) taken from a guest into a portable
//! [`Exit`]. Pure logic: the caller reads the registers, this module interprets them.

use mica_hv::addr::GuestPhysAddr;
use mica_hv::exit::{AccessSize, Exit, MmioAccess, SysRegAccess};

/// Exception classes (ESR_ELx.EC) Mica handles.
pub mod ec {
    /// WFI or WFE trapped.
    pub const WFX: u64 = 0x01;
    /// HVC from AArch64.
    pub const HVC64: u64 = 0x16;
    /// SMC from AArch64 trapped by HCR_EL2.TSC.
    pub const SMC64: u64 = 0x17;
    /// MSR/MRS/system instruction trapped.
    pub const SYSREG: u64 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOWER: u64 = 0x20;
    /// Data abort from a lower exception level.
    pub const DABT_LOWER: u64 = 0x24;
}

/// The registers that describe one synchronous exception from a guest.
#[derive(Clone, Copy, Debug)]
pub struct Syndrome {
    /// ESR_EL2.
    pub esr: u64,
    /// FAR_EL2 (faulting virtual address; its low 12 bits complete the IPA).
    pub far: u64,
    /// HPFAR_EL2 (faulting IPA bits [47:12] in bits [43:4]).
    pub hpfar: u64,
}

impl Syndrome {
    /// Exception class.
    pub const fn class(&self) -> u64 {
        (self.esr >> 26) & 0x3f
    }
    /// Instruction-specific syndrome.
    pub const fn iss(&self) -> u64 {
        self.esr & 0x1ff_ffff
    }
    /// Whether the trapped instruction was 32 bits wide (always, for AArch64 guests).
    pub const fn instruction_is_32bit(&self) -> bool {
        self.esr & (1 << 25) != 0
    }
    /// The faulting intermediate-physical address of a stage-2 abort.
    pub const fn fault_ipa(&self) -> GuestPhysAddr {
        let page = (self.hpfar >> 4) & ((1 << 40) - 1);
        GuestPhysAddr::new((page << 12) | (self.far & 0xfff))
    }
}

/// Data-abort syndrome fields used for emulation.
mod dabt {
    pub const ISV: u64 = 1 << 24;
    pub const SAS_SHIFT: u64 = 22;
    pub const SSE: u64 = 1 << 21;
    pub const SRT_SHIFT: u64 = 16;
    pub const SF: u64 = 1 << 15;
    pub const WNR: u64 = 1 << 6;
    pub const S1PTW: u64 = 1 << 7;
    /// Fault status code: translation faults at levels 0..3 are 0b0001xx.
    pub const DFSC_MASK: u64 = 0x3f;
}

/// What a data abort asks of the emulator, beyond the portable [`MmioAccess`]: where the
/// value goes (or comes from) in the guest's registers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MmioRegister {
    /// Register number (31 means xzr).
    pub rt: u8,
    /// Sign-extend a narrower read.
    pub sign_extend: bool,
    /// The destination is a 64-bit register (else 32-bit: upper half cleared).
    pub sixty_four: bool,
}

/// The register a trapped system-register access reads into or writes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SysRegRt(pub u8);

/// A decoded synchronous exit plus the register bookkeeping the arch layer needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Decoded {
    /// A portable exit with no register transfer beyond what the exit says.
    Plain(Exit),
    /// An MMIO access; a read completes into `reg`.
    Mmio(Exit, MmioRegister),
    /// A system-register access; a read completes into `rt`.
    SysReg(Exit, SysRegRt),
}

/// The immediate of an HVC or SMC in its syndrome.
const HVC_IMM_MASK: u64 = 0xffff;

/// Value of general register `n` (31 reads as zero, as xzr does).
fn reg(x: &[u64; 31], n: u8) -> u64 {
    x.get(usize::from(n)).copied().unwrap_or(0)
}

/// Decodes one synchronous exit. `x` is the guest's x0..x30.
pub fn decode(s: &Syndrome, x: &[u64; 31]) -> Decoded {
    let iss = s.iss();
    let mut args = [0u64; 8];
    args.copy_from_slice(&x[..8]);
    match s.class() {
        ec::WFX => {
            if iss & 1 == 0 {
                Decoded::Plain(Exit::WaitForInterrupt)
            } else {
                Decoded::Plain(Exit::WaitForEvent)
            }
        }
        ec::HVC64 => Decoded::Plain(Exit::Hvc {
            imm: (iss & HVC_IMM_MASK) as u16,
            args,
        }),
        ec::SMC64 => Decoded::Plain(Exit::Smc {
            imm: (iss & HVC_IMM_MASK) as u16,
            args,
        }),
        ec::SYSREG => {
            let rt = ((iss >> 5) & 0x1f) as u8;
            let read = iss & 1 == 1;
            let access = SysRegAccess {
                op0: ((iss >> 20) & 0x3) as u8,
                op2: ((iss >> 17) & 0x7) as u8,
                op1: ((iss >> 14) & 0x7) as u8,
                crn: ((iss >> 10) & 0xf) as u8,
                crm: ((iss >> 1) & 0xf) as u8,
                write: if read { None } else { Some(reg(x, rt)) },
            };
            Decoded::SysReg(Exit::SysReg(access), SysRegRt(rt))
        }
        ec::DABT_LOWER => {
            let addr = s.fault_ipa();
            let is_translation_fault = iss & dabt::DFSC_MASK & !0x3 == 0b00_0100;
            if iss & dabt::ISV == 0 || iss & dabt::S1PTW != 0 || !is_translation_fault {
                return Decoded::Plain(Exit::UndecodableAbort {
                    addr,
                    instruction: false,
                });
            }
            let size = match (iss >> dabt::SAS_SHIFT) & 0x3 {
                0 => AccessSize::Byte,
                1 => AccessSize::Half,
                2 => AccessSize::Word,
                _ => AccessSize::Double,
            };
            let rt = ((iss >> dabt::SRT_SHIFT) & 0x1f) as u8;
            let write = if iss & dabt::WNR != 0 {
                Some(reg(x, rt) & size.mask())
            } else {
                None
            };
            Decoded::Mmio(
                Exit::Mmio(MmioAccess { addr, size, write }),
                MmioRegister {
                    rt,
                    sign_extend: iss & dabt::SSE != 0,
                    sixty_four: iss & dabt::SF != 0,
                },
            )
        }
        ec::IABT_LOWER => Decoded::Plain(Exit::UndecodableAbort {
            addr: s.fault_ipa(),
            instruction: true,
        }),
        _ => Decoded::Plain(Exit::Unknown { syndrome: s.esr }),
    }
}

/// The value to write to the destination register after an emulated MMIO read.
pub fn extend_read(value: u64, size: AccessSize, r: MmioRegister) -> u64 {
    let bits = size.bytes() * 8;
    let mut v = value & size.mask();
    if r.sign_extend && bits < 64 && v & (1 << (bits - 1)) != 0 {
        v |= !size.mask();
    }
    if !r.sixty_four {
        v &= 0xffff_ffff;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esr(ec: u64, iss: u64) -> u64 {
        (ec << 26) | (1 << 25) | iss
    }

    #[test]
    fn hvc_carries_immediate_and_arguments() {
        let mut x = [0u64; 31];
        x[0] = 0x8400_0000;
        x[7] = 7;
        let s = Syndrome {
            esr: esr(ec::HVC64, 0xEA1),
            far: 0,
            hpfar: 0,
        };
        match decode(&s, &x) {
            Decoded::Plain(Exit::Hvc { imm, args }) => {
                assert_eq!(imm, 0xEA1);
                assert_eq!(args[0], 0x8400_0000);
                assert_eq!(args[7], 7);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn data_abort_write_word() {
        let mut x = [0u64; 31];
        x[3] = 0xdead_beef_1234_5678;
        // ISV, SAS=word, SRT=3, WnR, DFSC = translation fault level 3.
        let iss = (1 << 24) | (2 << 22) | (3 << 16) | (1 << 6) | 0b00_0111;
        let s = Syndrome {
            esr: esr(ec::DABT_LOWER, iss),
            far: 0xffff_0000_0900_0018,
            hpfar: (0x0900_0000 >> 12) << 4,
        };
        match decode(&s, &x) {
            Decoded::Mmio(Exit::Mmio(a), r) => {
                assert_eq!(a.addr, GuestPhysAddr::new(0x0900_0018));
                assert_eq!(a.size, AccessSize::Word);
                assert_eq!(a.write, Some(0x1234_5678));
                assert_eq!(r.rt, 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn data_abort_without_syndrome_is_undecodable() {
        let s = Syndrome {
            esr: esr(ec::DABT_LOWER, 0b000111),
            far: 0x123,
            hpfar: 0x1000 << 4,
        };
        assert_eq!(
            decode(&s, &[0; 31]),
            Decoded::Plain(Exit::UndecodableAbort {
                addr: GuestPhysAddr::new(0x100_0123),
                instruction: false
            })
        );
    }

    #[test]
    fn permission_fault_is_not_emulated_as_mmio() {
        // ISV set but DFSC = permission fault: never treat it as device emulation.
        let iss = (1 << 24) | (2 << 22) | 0b001111;
        let s = Syndrome {
            esr: esr(ec::DABT_LOWER, iss),
            far: 0,
            hpfar: 0,
        };
        assert!(matches!(
            decode(&s, &[0; 31]),
            Decoded::Plain(Exit::UndecodableAbort { .. })
        ));
    }

    #[test]
    fn sysreg_read_and_write() {
        let mut x = [0u64; 31];
        x[5] = 42;
        // ICC_SGI1R_EL1: op0=3 op1=0 CRn=12 CRm=11 op2=5, write from x5.
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (5 << 5) | (11 << 1);
        let s = Syndrome {
            esr: esr(ec::SYSREG, iss),
            far: 0,
            hpfar: 0,
        };
        match decode(&s, &x) {
            Decoded::SysReg(Exit::SysReg(a), SysRegRt(5)) => {
                assert_eq!((a.op0, a.op1, a.crn, a.crm, a.op2), (3, 0, 12, 11, 5));
                assert_eq!(a.write, Some(42));
            }
            other => panic!("{other:?}"),
        }
        let s = Syndrome {
            esr: esr(ec::SYSREG, iss | 1 | (31 << 5)),
            far: 0,
            hpfar: 0,
        };
        assert!(matches!(
            decode(&s, &x),
            Decoded::SysReg(Exit::SysReg(SysRegAccess { write: None, .. }), SysRegRt(31))
        ));
    }

    #[test]
    fn unknown_class_is_reported() {
        let s = Syndrome {
            esr: esr(0x3f, 0),
            far: 0,
            hpfar: 0,
        };
        assert!(matches!(
            decode(&s, &[0; 31]),
            Decoded::Plain(Exit::Unknown { .. })
        ));
    }

    #[test]
    fn read_extension() {
        let r = MmioRegister {
            rt: 0,
            sign_extend: true,
            sixty_four: true,
        };
        assert_eq!(
            extend_read(0x80, AccessSize::Byte, r),
            0xffff_ffff_ffff_ff80
        );
        let r32 = MmioRegister {
            sixty_four: false,
            ..r
        };
        assert_eq!(extend_read(0x8000, AccessSize::Half, r32), 0xffff_8000);
        let plain = MmioRegister {
            rt: 0,
            sign_extend: false,
            sixty_four: true,
        };
        assert_eq!(
            extend_read(0x1_2345_6789, AccessSize::Word, plain),
            0x2345_6789
        );
    }
}
