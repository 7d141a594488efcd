//! What a guest did to leave guest mode, as plain values, and what the hypervisor does
//! about it. The architecture layer decodes its syndrome registers into an [`Exit`]; the
//! portable handlers answer with an [`Action`]. Tests feed fake exits straight in.

use crate::addr::GuestPhysAddr;

/// Width of a trapped memory access.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AccessSize {
    /// 1 byte.
    Byte = 1,
    /// 2 bytes.
    Half = 2,
    /// 4 bytes.
    Word = 4,
    /// 8 bytes.
    Double = 8,
}

impl AccessSize {
    /// Size in bytes.
    pub const fn bytes(self) -> u64 {
        self as u64
    }
    /// From a byte count, `None` if not 1, 2, 4 or 8.
    pub const fn from_bytes(n: u64) -> Option<Self> {
        match n {
            1 => Some(Self::Byte),
            2 => Some(Self::Half),
            4 => Some(Self::Word),
            8 => Some(Self::Double),
            _ => None,
        }
    }
    /// Mask of the valid low bits for this size.
    pub const fn mask(self) -> u64 {
        match self {
            Self::Double => u64::MAX,
            s => (1u64 << (s.bytes() * 8)) - 1,
        }
    }
}

/// A trapped access to emulated MMIO.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MmioAccess {
    /// Guest-physical address accessed.
    pub addr: GuestPhysAddr,
    /// Access width.
    pub size: AccessSize,
    /// `Some(value)` for a write, `None` for a read.
    pub write: Option<u64>,
}

/// A trapped system-register access. The encoding fields name the register.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SysRegAccess {
    /// op0 field.
    pub op0: u8,
    /// op1 field.
    pub op1: u8,
    /// CRn field.
    pub crn: u8,
    /// CRm field.
    pub crm: u8,
    /// op2 field.
    pub op2: u8,
    /// `Some(value)` for a write (MSR), `None` for a read (MRS).
    pub write: Option<u64>,
}

impl SysRegAccess {
    /// Whether this access names the register with the given encoding.
    pub const fn is(&self, reg: SysRegId) -> bool {
        self.op0 == reg.op0
            && self.op1 == reg.op1
            && self.crn == reg.crn
            && self.crm == reg.crm
            && self.op2 == reg.op2
    }
}

/// The encoding of a system register, as written in the Arm ARM (op0, op1, CRn, CRm, op2).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SysRegId {
    /// op0 field.
    pub op0: u8,
    /// op1 field.
    pub op1: u8,
    /// CRn field.
    pub crn: u8,
    /// CRm field.
    pub crm: u8,
    /// op2 field.
    pub op2: u8,
}

/// Why a vCPU stopped running guest code.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Exit {
    /// A hypervisor call with its immediate and the first arguments (x0..x7 on AArch64).
    Hvc {
        /// Instruction immediate.
        imm: u16,
        /// Argument registers.
        args: [u64; 8],
    },
    /// A secure monitor call trapped to the hypervisor.
    Smc {
        /// Instruction immediate.
        imm: u16,
        /// Argument registers.
        args: [u64; 8],
    },
    /// A load or store to guest-physical memory that stage 2 does not map, with the
    /// access decoded by hardware.
    Mmio(MmioAccess),
    /// A stage-2 fault the hardware could not decode (no valid syndrome), or an
    /// instruction fetch from unmapped memory.
    UndecodableAbort {
        /// Faulting guest-physical address.
        addr: GuestPhysAddr,
        /// Whether it was an instruction fetch.
        instruction: bool,
    },
    /// A trapped system-register access (MSR/MRS), decoded.
    SysReg(SysRegAccess),
    /// The guest waits for an interrupt (WFI).
    WaitForInterrupt,
    /// The guest waits for an event (WFE).
    WaitForEvent,
    /// An exception the hypervisor has no handler for; the guest is at fault.
    Unknown {
        /// The raw syndrome, for the log.
        syndrome: u64,
    },
}

/// Why a domain ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ShutdownReason {
    /// Powered off by request.
    PowerOff,
    /// Asked to be restarted.
    Reboot,
    /// Killed for misbehaving.
    Crash,
}

/// What the architecture layer must do after a handler ran.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Skip the trapping instruction and continue.
    Resume,
    /// Skip the trapping instruction, write the listed registers (x0..x3), continue.
    ResumeWith {
        /// Register values for x0..x3; `None` leaves a register alone.
        regs: [Option<u64>; 4],
    },
    /// Complete a trapped MMIO read: write `value` to the destination register, skip, continue.
    CompleteRead {
        /// Value read, already masked to the access size.
        value: u64,
    },
    /// Do not skip the instruction; inject a synchronous external data abort at `addr`.
    InjectDataAbort {
        /// The faulting guest address to report.
        addr: GuestPhysAddr,
    },
    /// Inject an undefined-instruction exception.
    InjectUndefined,
    /// Skip the instruction and deschedule the vCPU until an interrupt is pending.
    Block,
    /// Skip the instruction and give up the physical CPU.
    Yield,
    /// Skip the instruction and stop this vCPU (PSCI CPU_OFF).
    VcpuOff,
    /// End the whole domain.
    ShutdownDomain(ShutdownReason),
}
