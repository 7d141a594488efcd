//! AMD-V (SVM) facts as plain values: the VMCB layout (AMD APM vol. 2, appendix B), the
//! intercept bits Mica sets, and the exit codes, decoded into [`SvmExit`]. A VT-x backend
//! would add its own decoder producing the same kind of exit for the shared handler.

use crate::decode::Mode;

/// Size of a VMCB (one page).
pub const VMCB_SIZE: usize = 4096;

/// VMCB control-area offsets.
pub mod control {
    /// Intercepts: CR reads (low 16 bits) / writes (high 16 bits).
    pub const INTERCEPT_CR: usize = 0x000;
    /// Exception intercepts, one bit per vector.
    pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
    /// Intercept word 3 (INTR ... SHUTDOWN).
    pub const INTERCEPT_MISC1: usize = 0x00c;
    /// Intercept word 4 (VMRUN, VMMCALL, ...).
    pub const INTERCEPT_MISC2: usize = 0x010;
    /// I/O permission map, physical address.
    pub const IOPM_BASE_PA: usize = 0x040;
    /// MSR permission map, physical address.
    pub const MSRPM_BASE_PA: usize = 0x048;
    /// Guest ASID (32 bits).
    pub const GUEST_ASID: usize = 0x058;
    /// TLB control (8 bits).
    pub const TLB_CONTROL: usize = 0x05c;
    /// Virtual interrupt control.
    pub const VINTR: usize = 0x060;
    /// Vector of the pending virtual interrupt (8 bits).
    pub const V_INTR_VECTOR: usize = 0x064;
    /// Interrupt shadow (bit 0: the guest is in an STI or MOV SS shadow).
    pub const INTERRUPT_SHADOW: usize = 0x068;
    /// Exit code.
    pub const EXIT_CODE: usize = 0x070;
    /// Exit information 1.
    pub const EXIT_INFO1: usize = 0x078;
    /// Exit information 2.
    pub const EXIT_INFO2: usize = 0x080;
    /// Event being delivered when the exit happened.
    pub const EXIT_INT_INFO: usize = 0x088;
    /// Nested paging enable (bit 0).
    pub const NP_ENABLE: usize = 0x090;
    /// Event injection.
    pub const EVENT_INJECT: usize = 0x0a8;
    /// Nested page-table root.
    pub const N_CR3: usize = 0x0b0;
    /// VMCB clean bits (0: reload everything).
    pub const CLEAN_BITS: usize = 0x0c0;
    /// Next RIP (with NRIP save).
    pub const NEXT_RIP: usize = 0x0c8;
}

/// VMCB state-save-area offsets.
pub mod save {
    /// Segment registers: selector (u16), attributes (u16), limit (u32), base (u64).
    pub const ES: usize = 0x400;
    /// CS.
    pub const CS: usize = 0x410;
    /// SS.
    pub const SS: usize = 0x420;
    /// DS.
    pub const DS: usize = 0x430;
    /// FS.
    pub const FS: usize = 0x440;
    /// GS.
    pub const GS: usize = 0x450;
    /// GDTR (limit and base only).
    pub const GDTR: usize = 0x460;
    /// LDTR.
    pub const LDTR: usize = 0x470;
    /// IDTR (limit and base only).
    pub const IDTR: usize = 0x480;
    /// TR.
    pub const TR: usize = 0x490;
    /// Current privilege level (8 bits).
    pub const CPL: usize = 0x4cb;
    /// EFER.
    pub const EFER: usize = 0x4d0;
    /// CR4.
    pub const CR4: usize = 0x548;
    /// CR3.
    pub const CR3: usize = 0x550;
    /// CR0.
    pub const CR0: usize = 0x558;
    /// DR7.
    pub const DR7: usize = 0x560;
    /// DR6.
    pub const DR6: usize = 0x568;
    /// RFLAGS.
    pub const RFLAGS: usize = 0x570;
    /// RIP.
    pub const RIP: usize = 0x578;
    /// RSP.
    pub const RSP: usize = 0x5d8;
    /// RAX.
    pub const RAX: usize = 0x5f8;
    /// Guest PAT.
    pub const G_PAT: usize = 0x668;
}

/// Intercept word 3 bits.
pub mod misc1 {
    /// Physical interrupts.
    pub const INTR: u32 = 1 << 0;
    /// NMIs.
    pub const NMI: u32 = 1 << 1;
    /// The guest became able to take a virtual interrupt (V_IRQ): the interrupt window.
    pub const VINTR: u32 = 1 << 4;
    /// PAUSE (a spinning guest exits, so time-based work runs).
    pub const PAUSE: u32 = 1 << 23;
    /// CPUID.
    pub const CPUID: u32 = 1 << 18;
    /// HLT.
    pub const HLT: u32 = 1 << 24;
    /// IN/OUT through the I/O permission map.
    pub const IOIO_PROT: u32 = 1 << 27;
    /// RDMSR/WRMSR through the MSR permission map.
    pub const MSR_PROT: u32 = 1 << 28;
    /// Triple fault.
    pub const SHUTDOWN: u32 = 1 << 31;
}

/// Intercept word 4 bits.
pub mod misc2 {
    /// VMRUN (must be set).
    pub const VMRUN: u32 = 1 << 0;
    /// VMMCALL (the hypercall instruction).
    pub const VMMCALL: u32 = 1 << 1;
    /// VMLOAD, VMSAVE, STGI, CLGI, SKINIT: the rest of SVM, not offered to guests.
    pub const OTHER_SVM: u32 = 0b11_1110;
}

/// VINTR: physical interrupts follow the host's RFLAGS.IF, not the guest's.
pub const VINTR_MASKING: u64 = 1 << 24;
/// VINTR: a virtual interrupt is pending (taken when the guest's IF allows).
pub const VINTR_V_IRQ: u64 = 1 << 8;
/// VINTR: the virtual interrupt ignores the virtual TPR.
pub const VINTR_IGN_TPR: u64 = 1 << 20;
/// VINTR: the virtual interrupt's priority (bits 16-19), highest.
pub const VINTR_PRIO_HIGHEST: u64 = 0xf << 16;
/// TLB_CONTROL: flush this guest's ASID on the next VMRUN.
pub const TLB_FLUSH_ASID: u8 = 3;
/// EFER.SVME (required in guest and host EFER).
pub const EFER_SVME: u64 = 1 << 12;
/// Event injection: valid.
pub const EVENT_VALID: u64 = 1 << 31;
/// Event injection: an error code is pushed.
pub const EVENT_ERROR_VALID: u64 = 1 << 11;
/// EVENTINJ type: an external interrupt (type 0).
pub const EVENT_TYPE_INTR: u64 = 0;
/// Event injection type: exception.
pub const EVENT_TYPE_EXCEPTION: u64 = 3 << 8;

/// Segment attribute bits (VMCB's packed form of descriptor bits 40-47 and 52-55).
pub mod attr {
    /// Code segment, execute/read, accessed.
    pub const CODE_ER: u16 = 0xb;
    /// Data segment, read/write, accessed.
    pub const DATA_RW: u16 = 0x3;
    /// Busy 32/64-bit TSS.
    pub const TSS_BUSY: u16 = 0xb;
    /// LDT.
    pub const LDT: u16 = 0x2;
    /// Code or data (not system).
    pub const S: u16 = 1 << 4;
    /// Present.
    pub const P: u16 = 1 << 7;
    /// 64-bit code.
    pub const L: u16 = 1 << 9;
    /// 32-bit default size.
    pub const DB: u16 = 1 << 10;
    /// Limit in pages.
    pub const G: u16 = 1 << 11;
}

/// The code mode of CS, from EFER.LMA and CS's attributes.
pub fn code_mode(efer: u64, cs_attr: u16) -> Mode {
    if efer & crate::guest_walk::EFER_LMA != 0 && cs_attr & attr::L != 0 {
        Mode::Bits64
    } else if cs_attr & attr::DB != 0 {
        Mode::Bits32
    } else {
        Mode::Bits16
    }
}

/// Exit codes Mica handles by name.
pub mod code {
    /// First exception exit (vector 0); vector n is this plus n.
    pub const EXCEPTION_BASE: u64 = 0x40;
    /// Physical interrupt.
    pub const INTR: u64 = 0x60;
    /// NMI.
    pub const NMI: u64 = 0x61;
    /// Interrupt window (VINTR intercept).
    pub const VINTR: u64 = 0x64;
    /// CPUID.
    pub const CPUID: u64 = 0x72;
    /// PAUSE.
    pub const PAUSE: u64 = 0x77;
    /// HLT.
    pub const HLT: u64 = 0x78;
    /// IN/OUT.
    pub const IOIO: u64 = 0x7b;
    /// RDMSR/WRMSR.
    pub const MSR: u64 = 0x7c;
    /// Triple fault.
    pub const SHUTDOWN: u64 = 0x7f;
    /// VMRUN.
    pub const VMRUN: u64 = 0x80;
    /// VMMCALL.
    pub const VMMCALL: u64 = 0x81;
    /// Nested page fault.
    pub const NPF: u64 = 0x400;
    /// VMRUN refused the guest state.
    pub const INVALID: u64 = u64::MAX;
}

/// A trapped IN or OUT.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PortIo {
    /// Port number.
    pub port: u16,
    /// Access size in bytes (1, 2 or 4).
    pub size: u8,
    /// IN (true) or OUT.
    pub input: bool,
    /// INS/OUTS.
    pub string: bool,
    /// Address of the next instruction (SVM reports it for I/O exits).
    pub next_rip: u64,
}

/// Why the guest left, decoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SvmExit {
    /// CPUID.
    Cpuid,
    /// VMMCALL: a hypercall.
    Vmmcall,
    /// HLT.
    Hlt,
    /// RDMSR (`write == false`) or WRMSR.
    Msr {
        /// WRMSR.
        write: bool,
    },
    /// IN/OUT.
    Io(PortIo),
    /// A guest-physical access with no (or a read-only) nested mapping.
    NestedPageFault {
        /// Guest-physical address.
        gpa: u64,
        /// Page-fault style error code (bit 1: write, bit 4: fetch).
        error: u64,
    },
    /// A physical interrupt or NMI arrived while the guest ran.
    Interrupt,
    /// The guest can take an interrupt now (it enabled interrupts).
    InterruptWindow,
    /// PAUSE: the guest spins.
    Pause,
    /// Triple fault.
    Shutdown,
    /// An intercepted exception.
    Exception(u8),
    /// The guest executed VMRUN (SVM is not offered to guests).
    Vmrun,
    /// VMRUN refused the VMCB's guest state.
    Invalid,
    /// Anything else.
    Unknown(u64),
}

/// IOIO EXITINFO1 bits.
const IOIO_IN: u64 = 1 << 0;
const IOIO_STRING: u64 = 1 << 2;
const IOIO_SIZE_SHIFT: u32 = 4;
const IOIO_SIZE_MASK: u64 = 0b111;
const IOIO_PORT_SHIFT: u32 = 16;

/// Decodes an exit from EXITCODE, EXITINFO1 and EXITINFO2.
pub fn decode_exit(exit_code: u64, info1: u64, info2: u64) -> SvmExit {
    match exit_code {
        code::CPUID => SvmExit::Cpuid,
        code::VMMCALL => SvmExit::Vmmcall,
        code::HLT => SvmExit::Hlt,
        code::MSR => SvmExit::Msr {
            write: info1 & 1 != 0,
        },
        code::IOIO => {
            let size = match (info1 >> IOIO_SIZE_SHIFT) & IOIO_SIZE_MASK {
                0b001 => 1,
                0b010 => 2,
                0b100 => 4,
                _ => return SvmExit::Unknown(exit_code),
            };
            SvmExit::Io(PortIo {
                port: (info1 >> IOIO_PORT_SHIFT) as u16,
                size,
                input: info1 & IOIO_IN != 0,
                string: info1 & IOIO_STRING != 0,
                next_rip: info2,
            })
        }
        code::NPF => SvmExit::NestedPageFault {
            gpa: info2,
            error: info1,
        },
        code::INTR | code::NMI => SvmExit::Interrupt,
        code::VINTR => SvmExit::InterruptWindow,
        code::PAUSE => SvmExit::Pause,
        code::SHUTDOWN => SvmExit::Shutdown,
        code::VMRUN => SvmExit::Vmrun,
        code::INVALID => SvmExit::Invalid,
        c if (code::EXCEPTION_BASE..code::EXCEPTION_BASE + 32).contains(&c) => {
            SvmExit::Exception((c - code::EXCEPTION_BASE) as u8)
        }
        other => SvmExit::Unknown(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_decode() {
        assert_eq!(decode_exit(0x81, 0, 0), SvmExit::Vmmcall);
        assert_eq!(decode_exit(0x7c, 1, 0), SvmExit::Msr { write: true });
        assert_eq!(decode_exit(0x7c, 0, 0), SvmExit::Msr { write: false });
        // out dx, al to 0x3f8: port in bits 16-31, SZ8, not IN.
        let out = decode_exit(0x7b, 0x3f8 << 16 | 1 << 4, 0x1234);
        assert_eq!(
            out,
            SvmExit::Io(PortIo {
                port: 0x3f8,
                size: 1,
                input: false,
                string: false,
                next_rip: 0x1234
            })
        );
        let ins = decode_exit(0x7b, 0x60 << 16 | 1 << 6 | IOIO_STRING | IOIO_IN, 0);
        assert!(matches!(
            ins,
            SvmExit::Io(PortIo {
                size: 4,
                input: true,
                string: true,
                ..
            })
        ));
        assert_eq!(
            decode_exit(0x400, 0x6, 0xfee0_0000),
            SvmExit::NestedPageFault {
                gpa: 0xfee0_0000,
                error: 6
            }
        );
        assert_eq!(decode_exit(0x4e, 0, 0), SvmExit::Exception(14));
        assert_eq!(decode_exit(u64::MAX, 0, 0), SvmExit::Invalid);
    }

    #[test]
    fn malformed_exits_are_unknown() {
        // An I/O exit with no (or several) size bits.
        assert_eq!(decode_exit(0x7b, 0, 0), SvmExit::Unknown(0x7b));
        assert_eq!(decode_exit(0x7b, 0b011 << 4, 0), SvmExit::Unknown(0x7b));
        assert_eq!(decode_exit(0x8d, 0, 0), SvmExit::Unknown(0x8d));
        assert_eq!(decode_exit(0x60, 0, 0), SvmExit::Interrupt);
    }

    #[test]
    fn code_mode_follows_lma_and_cs() {
        use attr::*;
        let lma = crate::guest_walk::EFER_LMA;
        assert_eq!(code_mode(lma, CODE_ER | S | P | L), Mode::Bits64);
        assert_eq!(code_mode(0, CODE_ER | S | P | L | DB), Mode::Bits32);
        assert_eq!(code_mode(lma, CODE_ER | S | P | DB), Mode::Bits32);
        assert_eq!(code_mode(0, CODE_ER | S | P), Mode::Bits16);
    }
}
