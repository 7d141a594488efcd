//! Turns a decoded exit into an action: the one place that decides what a guest's trapped
//! instruction does. Everything it needs from the vCPU and the rest of Mica comes through
//! [`ExitEnv`], so tests drive it with fake exits and a fake vCPU.

use crate::decode::{self, DecodeError, Map, Mode};
use crate::svm::{PortIo, SvmExit};
use crate::xen_x86;
use mica_hv::exit::ShutdownReason;
use mica_hv::xen::After;

/// General-purpose register numbers (the encoding's order), indexing [`ExitEnv::gprs`].
pub mod reg {
    /// RAX.
    pub const RAX: usize = 0;
    /// RCX.
    pub const RCX: usize = 1;
    /// RDX.
    pub const RDX: usize = 2;
    /// RBX.
    pub const RBX: usize = 3;
    /// RSI.
    pub const RSI: usize = 6;
    /// RDI.
    pub const RDI: usize = 7;
    /// R8.
    pub const R8: usize = 8;
    /// R10.
    pub const R10: usize = 10;
}

/// Leaf 1 ECX: a hypervisor is present.
const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX: on-chip local APIC; ECX: x2APIC. Mica emulates no local APIC, so it says so.
const CPUID1_EDX_APIC: u32 = 1 << 9;
const CPUID1_ECX_X2APIC: u32 = 1 << 21;
/// Leaf 0x8000_0001 ECX: SVM (not offered to guests).
const CPUID_EXT1_ECX_SVM: u32 = 1 << 2;
/// Leaf 1.
const CPUID_FEATURES: u32 = 1;
/// Leaf 0x8000_0001.
const CPUID_EXT_FEATURES: u32 = 0x8000_0001;
/// Leaf 0x8000_000A: SVM revision and features (zeroed for guests).
const CPUID_SVM: u32 = 0x8000_000a;
/// #GP.
pub const VECTOR_GP: u8 = 13;
/// PAUSE is `F3 90` (a REP-prefixed NOP).
const PAUSE_OPCODE: u8 = 0x90;

/// Why a domain is killed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// The trapping instruction could not be decoded.
    Decode(DecodeError),
    /// The bytes at RIP are not the instruction the exit reports.
    UnexpectedInstruction,
    /// No code bytes readable at RIP.
    CodeUnreadable,
    /// An access to guest-physical memory Mica does not map or emulate.
    NestedPageFault {
        /// Guest-physical address.
        gpa: u64,
        /// Error code.
        error: u64,
    },
    /// The guest triple-faulted.
    TripleFault,
    /// VMRUN refused the guest state.
    InvalidState,
    /// HLT with interrupts disabled: nothing can ever wake the vCPU.
    HaltForever,
    /// String port I/O (not emulated).
    StringIo,
    /// An exit Mica does not handle (code).
    Unhandled(u64),
}

/// What the run loop does next with the vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Action {
    /// Run the guest again.
    Resume,
    /// Run it again after giving others a turn.
    Yield,
    /// Wait for an event.
    Block,
    /// SCHEDOP_poll with nothing pending: wait for an event, a polled port to become
    /// pending (masked or not) or system time to reach `deadline_ns`; then end the poll
    /// (`Xen::end_poll`).
    BlockPoll {
        /// Absolute system time in nanoseconds, `None`: no timeout.
        deadline_ns: Option<u64>,
    },
    /// The domain asked to end.
    Shutdown(ShutdownReason),
    /// Deliver this exception (with error code 0) and run the guest.
    InjectException(u8),
    /// End the domain: its fault, not Mica's.
    Kill(Fault),
}

/// The vCPU and Mica's services, as the handler sees them.
pub trait ExitEnv {
    /// General-purpose registers, by encoding number (RSP's slot is unused: it is in the VMCB).
    fn gprs(&mut self) -> &mut [u64; 16];
    /// RIP.
    fn rip(&self) -> u64;
    /// Sets RIP.
    fn set_rip(&mut self, rip: u64);
    /// The mode the code at RIP runs in.
    fn code_mode(&self) -> Mode;
    /// Copies code bytes at CS:RIP into `buf`, returning how many were readable.
    fn fetch_code(&self, buf: &mut [u8; decode::MAX_LEN]) -> usize;
    /// The next RIP the hardware saved, if it does (NRIP save).
    fn hardware_next_rip(&self) -> Option<u64>;
    /// Whether the guest has interrupts enabled (RFLAGS.IF).
    fn interrupts_enabled(&self) -> bool;
    /// The host's CPUID.
    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4];
    /// This vCPU's index and its domain's id.
    fn ids(&self) -> (u32, u16);
    /// A Xen hypercall: (return value, what happens next).
    fn hypercall(&mut self, nr: u64, args: [u64; 5]) -> (i64, After);
    /// Fills the guest page at `gpa` with hypercall stubs; false if it is not guest RAM.
    fn install_hypercall_page(&mut self, gpa: u64) -> bool;
    /// An OUT to an emulated port.
    fn port_out(&mut self, port: u16, size: u8, value: u32);
    /// An IN from an emulated port.
    fn port_in(&mut self, port: u16, size: u8) -> u32;
    /// Whether the guest has a (virtual x2APIC) local APIC to announce in CPUID.
    fn offers_local_apic(&self) -> bool {
        false
    }
    /// An emulated MSR other than the hypercall page: RDMSR (`write` None) returns the value,
    /// WRMSR returns `Some(0)` if taken; `None` means the MSR does not exist (#GP).
    fn emulated_msr(&mut self, index: u32, write: Option<u64>) -> Option<u64> {
        let _ = (index, write);
        None
    }
}

/// Leaf 1 EBX bits 24-31: the initial APIC id.
const CPUID1_EBX_APIC_ID_SHIFT: u32 = 24;

/// Handles one exit.
pub fn handle(exit: SvmExit, env: &mut dyn ExitEnv) -> Action {
    match exit {
        SvmExit::Cpuid => {
            if let Err(fault) = check_and_skip(env, |i| i.is(Map::Secondary, 0xa2, None)) {
                return Action::Kill(fault);
            }
            let (vcpu, domid) = env.ids();
            let gprs = env.gprs();
            let (leaf, sub) = (gprs[reg::RAX] as u32, gprs[reg::RCX] as u32);
            let apic = env.offers_local_apic();
            let answer = xen_x86::cpuid(leaf, vcpu, domid).unwrap_or_else(|| {
                let mut r = env.host_cpuid(leaf, sub);
                match leaf {
                    CPUID_FEATURES if apic => {
                        r[1] = (r[1] & !(0xff << CPUID1_EBX_APIC_ID_SHIFT))
                            | (vcpu & 0xff) << CPUID1_EBX_APIC_ID_SHIFT;
                        r[2] |= CPUID1_ECX_HYPERVISOR | CPUID1_ECX_X2APIC;
                        r[3] |= CPUID1_EDX_APIC;
                    }
                    CPUID_FEATURES => {
                        r[2] = (r[2] | CPUID1_ECX_HYPERVISOR) & !CPUID1_ECX_X2APIC;
                        r[3] &= !CPUID1_EDX_APIC;
                    }
                    CPUID_EXT_FEATURES => r[2] &= !CPUID_EXT1_ECX_SVM,
                    CPUID_SVM => r = [0; 4],
                    _ => {}
                }
                r
            });
            let gprs = env.gprs();
            for (slot, value) in [reg::RAX, reg::RBX, reg::RCX, reg::RDX]
                .into_iter()
                .zip(answer)
            {
                gprs[slot] = u64::from(value);
            }
            Action::Resume
        }
        SvmExit::Vmmcall => {
            if let Err(fault) = check_and_skip(env, |i| i.is(Map::Secondary, 0x01, Some(0xd9))) {
                return Action::Kill(fault);
            }
            let g = *env.gprs();
            let args = [
                g[reg::RDI],
                g[reg::RSI],
                g[reg::RDX],
                g[reg::R10],
                g[reg::R8],
            ];
            let (ret, after) = env.hypercall(g[reg::RAX], args);
            env.gprs()[reg::RAX] = ret as u64;
            match after {
                After::Resume => Action::Resume,
                After::Yield => Action::Yield,
                After::Block => Action::Block,
                After::BlockPoll { deadline_ns } => Action::BlockPoll { deadline_ns },
                After::Shutdown(reason) => Action::Shutdown(reason),
            }
        }
        SvmExit::Msr { write } => msr(env, write),
        SvmExit::Hlt => {
            if let Err(fault) = check_and_skip(env, |i| i.is(Map::Primary, 0xf4, None)) {
                return Action::Kill(fault);
            }
            if env.interrupts_enabled() {
                Action::Block
            } else {
                Action::Kill(Fault::HaltForever)
            }
        }
        SvmExit::Io(io) => port_io(env, io),
        SvmExit::NestedPageFault { gpa, error } => {
            Action::Kill(Fault::NestedPageFault { gpa, error })
        }
        SvmExit::Interrupt | SvmExit::InterruptWindow => Action::Resume,
        SvmExit::Pause => match check_and_skip(env, |i| i.is(Map::Primary, PAUSE_OPCODE, None)) {
            // Spinning: let time-driven work (timers) run before the guest goes on.
            Ok(()) => Action::Yield,
            Err(fault) => Action::Kill(fault),
        },
        SvmExit::Shutdown => Action::Kill(Fault::TripleFault),
        SvmExit::Invalid => Action::Kill(Fault::InvalidState),
        SvmExit::Vmrun => Action::InjectException(6),
        SvmExit::Exception(v) => Action::Kill(Fault::Unhandled(
            crate::svm::code::EXCEPTION_BASE + u64::from(v),
        )),
        SvmExit::Unknown(code) => Action::Kill(Fault::Unhandled(code)),
    }
}

/// Checks that the instruction at RIP is the one the exit names and moves RIP past it,
/// using the hardware's next RIP when it saves one, else the decoder.
fn check_and_skip(
    env: &mut dyn ExitEnv,
    expected: impl Fn(&decode::Insn) -> bool,
) -> Result<(), Fault> {
    if let Some(next) = env.hardware_next_rip() {
        env.set_rip(next);
        return Ok(());
    }
    let mut buf = [0u8; decode::MAX_LEN];
    let n = env.fetch_code(&mut buf);
    if n == 0 {
        return Err(Fault::CodeUnreadable);
    }
    let insn = decode::decode(&buf[..n], env.code_mode()).map_err(Fault::Decode)?;
    if !expected(&insn) {
        return Err(Fault::UnexpectedInstruction);
    }
    let next = env.rip().wrapping_add(insn.len as u64);
    let next = match env.code_mode() {
        Mode::Bits64 => next,
        _ => next & u64::from(u32::MAX),
    };
    env.set_rip(next);
    Ok(())
}

fn msr(env: &mut dyn ExitEnv, write: bool) -> Action {
    let opcode = if write { 0x30 } else { 0x32 };
    let g = *env.gprs();
    let index = g[reg::RCX] as u32;
    let value = (g[reg::RDX] & u64::from(u32::MAX)) << 32 | (g[reg::RAX] & u64::from(u32::MAX));
    if index == xen_x86::HYPERCALL_PAGE_MSR && write {
        let Some(gpa) = xen_x86::hypercall_page_gpa(value) else {
            return Action::InjectException(VECTOR_GP);
        };
        if !env.install_hypercall_page(gpa) {
            return Action::InjectException(VECTOR_GP);
        }
    } else {
        let answer = env.emulated_msr(index, write.then_some(value));
        match answer {
            Some(v) if !write => {
                let g = env.gprs();
                g[reg::RAX] = v & u64::from(u32::MAX);
                g[reg::RDX] = v >> 32;
            }
            Some(_) => {}
            // Every other intercepted MSR does not exist for the guest, as on hardware: #GP,
            // with RIP left at the instruction.
            None => return Action::InjectException(VECTOR_GP),
        }
    }
    match check_and_skip(env, |i| i.is(Map::Secondary, opcode, None)) {
        Ok(()) => Action::Resume,
        Err(fault) => Action::Kill(fault),
    }
}

fn port_io(env: &mut dyn ExitEnv, io: PortIo) -> Action {
    if io.string {
        return Action::Kill(Fault::StringIo);
    }
    let mask = match io.size {
        1 => 0xff,
        2 => 0xffff,
        _ => u32::MAX,
    };
    if io.input {
        let value = env.port_in(io.port, io.size) & mask;
        let rax = &mut env.gprs()[reg::RAX];
        // IN writes AL/AX and keeps the rest; a 32-bit IN zero-extends into RAX.
        *rax = if io.size == 4 {
            u64::from(value)
        } else {
            (*rax & !u64::from(mask)) | u64::from(value)
        };
    } else {
        let value = env.gprs()[reg::RAX] as u32 & mask;
        env.port_out(io.port, io.size, value);
    }
    env.set_rip(io.next_rip);
    Action::Resume
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svm::decode_exit;

    struct FakeVcpu {
        gprs: [u64; 16],
        rip: u64,
        code: Vec<u8>,
        mode: Mode,
        nrip: Option<u64>,
        if_flag: bool,
        calls: Vec<(u64, [u64; 5])>,
        hypercall_pages: Vec<u64>,
        out: Vec<(u16, u32)>,
        apic: Option<crate::lapic::Lapic>,
    }

    impl FakeVcpu {
        fn at(code: &[u8]) -> Self {
            Self {
                gprs: [0; 16],
                rip: 0x1000,
                code: code.to_vec(),
                mode: Mode::Bits64,
                nrip: None,
                if_flag: true,
                calls: Vec::new(),
                hypercall_pages: Vec::new(),
                out: Vec::new(),
                apic: None,
            }
        }
    }

    impl ExitEnv for FakeVcpu {
        fn gprs(&mut self) -> &mut [u64; 16] {
            &mut self.gprs
        }
        fn rip(&self) -> u64 {
            self.rip
        }
        fn set_rip(&mut self, rip: u64) {
            self.rip = rip;
        }
        fn code_mode(&self) -> Mode {
            self.mode
        }
        fn fetch_code(&self, buf: &mut [u8; decode::MAX_LEN]) -> usize {
            let n = self.code.len().min(buf.len());
            buf[..n].copy_from_slice(&self.code[..n]);
            n
        }
        fn hardware_next_rip(&self) -> Option<u64> {
            self.nrip
        }
        fn interrupts_enabled(&self) -> bool {
            self.if_flag
        }
        fn host_cpuid(&self, _leaf: u32, _sub: u32) -> [u32; 4] {
            [u32::MAX; 4]
        }
        fn ids(&self) -> (u32, u16) {
            (0, 1)
        }
        fn hypercall(&mut self, nr: u64, args: [u64; 5]) -> (i64, After) {
            self.calls.push((nr, args));
            match nr {
                29 => (0, After::Shutdown(ShutdownReason::PowerOff)),
                _ => (-38, After::Resume),
            }
        }
        fn install_hypercall_page(&mut self, gpa: u64) -> bool {
            self.hypercall_pages.push(gpa);
            gpa < 0x100_0000
        }
        fn port_out(&mut self, port: u16, _size: u8, value: u32) {
            self.out.push((port, value));
        }
        fn port_in(&mut self, _port: u16, _size: u8) -> u32 {
            0x60
        }
        fn offers_local_apic(&self) -> bool {
            self.apic.is_some()
        }
        fn emulated_msr(&mut self, index: u32, write: Option<u64>) -> Option<u64> {
            let apic = self.apic.as_mut()?;
            match write {
                Some(v) => apic.write(index, v).ok().map(|()| 0),
                None => apic.read(index).ok(),
            }
        }
    }

    #[test]
    fn an_offered_apic_shows_in_cpuid_and_its_msrs_work() {
        let mut v = FakeVcpu::at(&[0x0f, 0xa2]);
        v.apic = Some(crate::lapic::Lapic::new(0));
        v.gprs[reg::RAX] = 1;
        handle(SvmExit::Cpuid, &mut v);
        assert_ne!(v.gprs[reg::RCX] as u32 & CPUID1_ECX_X2APIC, 0);
        assert_ne!(v.gprs[reg::RDX] as u32 & CPUID1_EDX_APIC, 0);
        assert_eq!(v.gprs[reg::RBX] >> 24, 0, "initial APIC id 0");
        // RDMSR IA32_APIC_BASE: EDX:EAX, RIP past the 2-byte instruction.
        let mut v = FakeVcpu::at(&[0x0f, 0x32]);
        v.apic = Some(crate::lapic::Lapic::new(0));
        v.gprs[reg::RCX] = 0x1b;
        v.gprs[reg::RDX] = 0xdead;
        assert_eq!(handle(decode_exit(0x7c, 0, 0), &mut v), Action::Resume);
        assert_eq!((v.gprs[reg::RAX], v.gprs[reg::RDX]), (0xfee0_0d00, 0));
        assert_eq!(v.rip, 0x1002);
        // WRMSR of EOI with a nonzero value, and RDMSR of a write-only register: #GP.
        let mut v = FakeVcpu::at(&[0x0f, 0x30]);
        v.apic = Some(crate::lapic::Lapic::new(0));
        v.gprs[reg::RCX] = 0x80b;
        v.gprs[reg::RAX] = 1;
        assert_eq!(
            handle(decode_exit(0x7c, 1, 0), &mut v),
            Action::InjectException(VECTOR_GP)
        );
        assert_eq!(v.rip, 0x1000);
        v.gprs[reg::RAX] = 0;
        assert_eq!(handle(decode_exit(0x7c, 1, 0), &mut v), Action::Resume);
        // Without an APIC the same MSR does not exist.
        let mut v = FakeVcpu::at(&[0x0f, 0x32]);
        v.gprs[reg::RCX] = 0x1b;
        assert_eq!(
            handle(decode_exit(0x7c, 0, 0), &mut v),
            Action::InjectException(VECTOR_GP)
        );
    }

    const VMMCALL: [u8; 3] = [0x0f, 0x01, 0xd9];

    #[test]
    fn hypercalls_take_xen_registers_and_skip_vmmcall() {
        let mut v = FakeVcpu::at(&VMMCALL);
        v.gprs[reg::RAX] = 17;
        v.gprs[reg::RDI] = 1;
        v.gprs[reg::RSI] = 2;
        v.gprs[reg::RDX] = 3;
        v.gprs[reg::R10] = 4;
        v.gprs[reg::R8] = 5;
        assert_eq!(handle(decode_exit(0x81, 0, 0), &mut v), Action::Resume);
        assert_eq!(v.calls, vec![(17, [1, 2, 3, 4, 5])]);
        assert_eq!(v.gprs[reg::RAX], (-38i64) as u64);
        assert_eq!(v.rip, 0x1003);
        v.gprs[reg::RAX] = 29;
        assert_eq!(
            handle(SvmExit::Vmmcall, &mut v),
            Action::Shutdown(ShutdownReason::PowerOff)
        );
    }

    #[test]
    fn hardware_next_rip_wins_when_present() {
        let mut v = FakeVcpu::at(&[]);
        v.nrip = Some(0x2000);
        assert_eq!(handle(SvmExit::Vmmcall, &mut v), Action::Resume);
        assert_eq!(v.rip, 0x2000);
    }

    #[test]
    fn wrong_or_unreadable_code_kills_the_domain() {
        let mut v = FakeVcpu::at(&[0x90, 0x90]);
        assert_eq!(
            handle(SvmExit::Vmmcall, &mut v),
            Action::Kill(Fault::UnexpectedInstruction)
        );
        assert!(v.calls.is_empty(), "no hypercall made for a mismatch");
        let mut v = FakeVcpu::at(&[]);
        assert_eq!(
            handle(SvmExit::Cpuid, &mut v),
            Action::Kill(Fault::CodeUnreadable)
        );
        let mut v = FakeVcpu::at(&[0x0f, 0x01]);
        assert_eq!(
            handle(SvmExit::Vmmcall, &mut v),
            Action::Kill(Fault::Decode(DecodeError::Truncated))
        );
        assert_eq!(v.rip, 0x1000, "RIP unchanged on a fault");
    }

    #[test]
    fn cpuid_shows_xen_and_hides_svm() {
        let mut v = FakeVcpu::at(&[0x0f, 0xa2]);
        v.gprs[reg::RAX] = xen_x86::CPUID_BASE as u64;
        assert_eq!(handle(SvmExit::Cpuid, &mut v), Action::Resume);
        assert_eq!(v.gprs[reg::RBX] as u32, xen_x86::SIGNATURE[0]);
        assert_eq!(v.rip, 0x1002);
        let mut v = FakeVcpu::at(&[0x0f, 0xa2]);
        v.gprs[reg::RAX] = u64::from(CPUID_EXT_FEATURES);
        handle(SvmExit::Cpuid, &mut v);
        assert_eq!(v.gprs[reg::RCX] as u32 & CPUID_EXT1_ECX_SVM, 0);
        let mut v = FakeVcpu::at(&[0x0f, 0xa2]);
        v.gprs[reg::RAX] = 1;
        handle(SvmExit::Cpuid, &mut v);
        assert_ne!(v.gprs[reg::RCX] as u32 & CPUID1_ECX_HYPERVISOR, 0);
        assert_eq!(v.gprs[reg::RCX] as u32 & CPUID1_ECX_X2APIC, 0);
        assert_eq!(v.gprs[reg::RDX] as u32 & CPUID1_EDX_APIC, 0);
    }

    #[test]
    fn hypercall_page_msr_and_other_msrs() {
        let mut v = FakeVcpu::at(&[0x0f, 0x30]);
        v.gprs[reg::RCX] = u64::from(xen_x86::HYPERCALL_PAGE_MSR);
        v.gprs[reg::RAX] = 0x5000;
        assert_eq!(handle(SvmExit::Msr { write: true }, &mut v), Action::Resume);
        assert_eq!(v.hypercall_pages, vec![0x5000]);
        assert_eq!(v.rip, 0x1002);
        // Page index 1 does not exist; an address outside RAM is refused: #GP, RIP kept.
        v.rip = 0x1000;
        v.gprs[reg::RAX] = 0x5001;
        assert_eq!(
            handle(SvmExit::Msr { write: true }, &mut v),
            Action::InjectException(VECTOR_GP)
        );
        v.gprs[reg::RAX] = 0;
        v.gprs[reg::RDX] = 1;
        assert_eq!(
            handle(SvmExit::Msr { write: true }, &mut v),
            Action::InjectException(VECTOR_GP)
        );
        assert_eq!(v.rip, 0x1000);
        let mut v = FakeVcpu::at(&[0x0f, 0x32]);
        v.gprs[reg::RCX] = 0xc001_0117;
        assert_eq!(
            handle(SvmExit::Msr { write: false }, &mut v),
            Action::InjectException(VECTOR_GP)
        );
    }

    #[test]
    fn port_io_uses_the_reported_next_rip() {
        let mut v = FakeVcpu::at(&[]);
        v.gprs[reg::RAX] = 0x1234_5641;
        let out = decode_exit(0x7b, 0x3f8 << 16 | 1 << 4, 0x1001);
        assert_eq!(handle(out, &mut v), Action::Resume);
        assert_eq!((v.out[0], v.rip), ((0x3f8, 0x41), 0x1001));
        let input = decode_exit(0x7b, 0x3fd << 16 | 1 << 4 | 1, 0x1002);
        handle(input, &mut v);
        assert_eq!(v.gprs[reg::RAX], 0x1234_5660, "IN AL keeps the upper bits");
        let string = decode_exit(0x7b, 0x3f8 << 16 | 1 << 4 | 1 << 2, 0);
        assert_eq!(handle(string, &mut v), Action::Kill(Fault::StringIo));
    }

    #[test]
    fn pause_is_skipped_and_yields_and_the_interrupt_window_resumes() {
        let mut v = FakeVcpu::at(&[0xf3, 0x90]);
        assert_eq!(handle(decode_exit(0x77, 0, 0), &mut v), Action::Yield);
        assert_eq!(v.rip, 0x1002);
        let mut v = FakeVcpu::at(&[0x90]);
        assert_eq!(
            handle(decode_exit(0x77, 0, 0), &mut v),
            Action::Yield,
            "plain NOP length"
        );
        assert_eq!(v.rip, 0x1001);
        let mut v = FakeVcpu::at(&[0x0f, 0xa2]);
        assert_eq!(
            handle(decode_exit(0x77, 0, 0), &mut v),
            Action::Kill(Fault::UnexpectedInstruction)
        );
        let mut v = FakeVcpu::at(&[]);
        assert_eq!(handle(decode_exit(0x64, 0, 0), &mut v), Action::Resume);
        assert_eq!(v.rip, 0x1000, "an interrupt window moves nothing");
    }

    #[test]
    fn bad_guest_state_kills_never_panics() {
        let mut v = FakeVcpu::at(&[0xf4]);
        v.if_flag = false;
        assert_eq!(
            handle(SvmExit::Hlt, &mut v),
            Action::Kill(Fault::HaltForever)
        );
        v.rip = 0x1000;
        v.if_flag = true;
        assert_eq!(handle(SvmExit::Hlt, &mut v), Action::Block);
        for code in [0x7f, u64::MAX, 0x8d, 0x400, 0x4e] {
            assert!(matches!(
                handle(decode_exit(code, 0, 0), &mut FakeVcpu::at(&[])),
                Action::Kill(_)
            ));
        }
    }
}
