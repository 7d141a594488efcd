//! PSCI 1.1 and SMCCC 1.1 for guests (Arm DEN0022, DEN0028), over HVC or SMC.
//!
//! [`decode`] turns the argument registers into a [`PsciCall`]; [`handle`] answers it
//! against a [`PsciEnv`] (the domain's vCPUs as the integrator sees them) and returns the
//! [`Action`] for the architecture layer. Nothing here trusts the guest: unknown function
//! ids get NOT_SUPPORTED, bad MPIDRs INVALID_PARAMETERS, bad entry points INVALID_ADDRESS.
//!
//! Design notes:
//! - CPU_SUSPEND is treated as a standby request, like Xen does: the vCPU blocks until an
//!   interrupt is pending and the call then returns SUCCESS, even for power-down states
//!   (the spec allows an implementation to wake from a power-down request as if from
//!   standby). [`Action::Block`] carries no registers, so the integrator must set x0 to
//!   [`CPU_SUSPEND_RESULT`] when it handles that action for a CPU_SUSPEND.
//! - SMCCC_ARCH_FEATURES says NOT_SUPPORTED for the Spectre/SSB workaround ids
//!   (SMCCC_ARCH_WORKAROUND_1/2/3): Mica does not forward those calls to firmware, so
//!   claiming them would give the guest a false sense of mitigation. It reports only the
//!   SMCCC functions it implements (SMCCC_VERSION and SMCCC_ARCH_FEATURES).

use crate::exit::{Action, ShutdownReason};
use mica_guest_abi::psci::{self as abi, ret};

/// x0 to write when a CPU_SUSPEND's [`Action::Block`] completes (PSCI SUCCESS).
pub const CPU_SUSPEND_RESULT: u64 = 0;

/// The affinity fields of an MPIDR (Aff3 and Aff2..Aff0); the rest is ignored.
pub const MPIDR_AFFINITY_MASK: u64 = 0xFF_00FF_FFFF;

/// A decoded PSCI or SMCCC call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PsciCall {
    /// PSCI_VERSION.
    Version,
    /// PSCI_FEATURES for the given function id.
    Features(u32),
    /// CPU_SUSPEND.
    CpuSuspend {
        /// Requested power state (original format).
        power_state: u32,
        /// Resume address for power-down states.
        entry: u64,
        /// Value for x0 at `entry`.
        context: u64,
    },
    /// CPU_OFF.
    CpuOff,
    /// CPU_ON.
    CpuOn {
        /// MPIDR of the vCPU to start (affinity bits only).
        target_mpidr: u64,
        /// Where it starts.
        entry: u64,
        /// Its x0.
        context: u64,
    },
    /// AFFINITY_INFO.
    AffinityInfo {
        /// MPIDR asked about (affinity bits only).
        target_mpidr: u64,
        /// Lowest affinity level; only 0 is supported.
        lowest_level: u32,
    },
    /// MIGRATE_INFO_TYPE.
    MigrateInfoType,
    /// SYSTEM_OFF.
    SystemOff,
    /// SYSTEM_RESET.
    SystemReset,
    /// SMCCC_VERSION.
    SmcccVersion,
    /// SMCCC_ARCH_FEATURES for the given function id.
    SmcccArchFeatures(u32),
    /// Anything else, with its function id.
    Unknown(u32),
}

/// Power state of a vCPU as PSCI sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VcpuPowerState {
    /// Running or runnable.
    On,
    /// Off.
    Off,
    /// A CPU_ON was accepted but the vCPU has not started yet.
    OnPending,
}

/// Why [`PsciEnv::power_on`] refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PowerOnError {
    /// The vCPU is already on.
    AlreadyOn,
    /// A CPU_ON for it is in flight.
    OnPending,
    /// The entry point is not acceptable.
    InvalidAddress,
}

/// The domain as PSCI needs to see it.
pub trait PsciEnv {
    /// Index of the vCPU whose MPIDR affinity equals `mpidr` (already masked with
    /// [`MPIDR_AFFINITY_MASK`]).
    fn vcpu_index_by_mpidr(&self, mpidr: u64) -> Option<usize>;
    /// Power state of vCPU `idx` (an index returned by `vcpu_index_by_mpidr`).
    fn vcpu_state(&self, idx: usize) -> VcpuPowerState;
    /// Starts vCPU `idx` at `entry` with x0 = `context`.
    fn power_on(&mut self, idx: usize, entry: u64, context: u64) -> Result<(), PowerOnError>;
    /// Whether `entry` is a sensible start address (inside the domain's RAM).
    fn entry_is_valid(&self, entry: u64) -> bool;
}

/// Decodes the argument registers of an HVC/SMC: function id in the low 32 bits of
/// `args[0]`; for SMC32 ids (bit 30 clear) the other arguments are 32-bit.
pub fn decode(args: &[u64; 8]) -> PsciCall {
    let fid = args[0] as u32;
    let smc64 = fid & 0x4000_0000 != 0;
    let arg = |i: usize| {
        if smc64 {
            args[i]
        } else {
            args[i] & 0xFFFF_FFFF
        }
    };
    match fid {
        abi::PSCI_VERSION => PsciCall::Version,
        abi::PSCI_FEATURES => PsciCall::Features(args[1] as u32),
        abi::PSCI_CPU_SUSPEND_32 | abi::PSCI_CPU_SUSPEND_64 => PsciCall::CpuSuspend {
            power_state: args[1] as u32,
            entry: arg(2),
            context: arg(3),
        },
        abi::PSCI_CPU_OFF => PsciCall::CpuOff,
        abi::PSCI_CPU_ON_32 | abi::PSCI_CPU_ON_64 => PsciCall::CpuOn {
            target_mpidr: arg(1) & MPIDR_AFFINITY_MASK,
            entry: arg(2),
            context: arg(3),
        },
        abi::PSCI_AFFINITY_INFO_32 | abi::PSCI_AFFINITY_INFO_64 => PsciCall::AffinityInfo {
            target_mpidr: arg(1) & MPIDR_AFFINITY_MASK,
            lowest_level: args[2] as u32,
        },
        abi::PSCI_MIGRATE_INFO_TYPE => PsciCall::MigrateInfoType,
        abi::PSCI_SYSTEM_OFF => PsciCall::SystemOff,
        abi::PSCI_SYSTEM_RESET => PsciCall::SystemReset,
        abi::SMCCC_VERSION => PsciCall::SmcccVersion,
        abi::SMCCC_ARCH_FEATURES => PsciCall::SmcccArchFeatures(args[1] as u32),
        other => PsciCall::Unknown(other),
    }
}

/// Whether a function id names a PSCI function [`handle`] implements.
fn psci_implemented(fid: u32) -> bool {
    matches!(
        fid,
        abi::PSCI_VERSION
            | abi::PSCI_FEATURES
            | abi::PSCI_CPU_SUSPEND_32
            | abi::PSCI_CPU_SUSPEND_64
            | abi::PSCI_CPU_OFF
            | abi::PSCI_CPU_ON_32
            | abi::PSCI_CPU_ON_64
            | abi::PSCI_AFFINITY_INFO_32
            | abi::PSCI_AFFINITY_INFO_64
            | abi::PSCI_MIGRATE_INFO_TYPE
            | abi::PSCI_SYSTEM_OFF
            | abi::PSCI_SYSTEM_RESET
            // DEN0028: SMCCC_VERSION is discovered through PSCI_FEATURES.
            | abi::SMCCC_VERSION
    )
}

/// Resume with x0 = a PSCI return code (sign-extended, as the ABI wants).
fn code(ret: i32) -> Action {
    value(i64::from(ret) as u64)
}

/// Resume with x0 = `v`.
fn value(v: u64) -> Action {
    Action::ResumeWith {
        regs: [Some(v), None, None, None],
    }
}

/// Answers a call for the calling vCPU.
pub fn handle(call: PsciCall, env: &mut impl PsciEnv) -> Action {
    match call {
        PsciCall::Version => value(u64::from(abi::PSCI_VERSION_1_1)),
        PsciCall::Features(fid) => {
            // For CPU_SUSPEND, 0 also says: original power_state format, no OS-initiated mode.
            if psci_implemented(fid) {
                code(ret::SUCCESS)
            } else {
                code(ret::NOT_SUPPORTED)
            }
        }
        PsciCall::CpuSuspend { .. } => Action::Block,
        PsciCall::CpuOff => Action::VcpuOff,
        PsciCall::CpuOn {
            target_mpidr,
            entry,
            context,
        } => {
            let Some(idx) = env.vcpu_index_by_mpidr(target_mpidr) else {
                return code(ret::INVALID_PARAMETERS);
            };
            match env.vcpu_state(idx) {
                VcpuPowerState::On => return code(ret::ALREADY_ON),
                VcpuPowerState::OnPending => return code(ret::ON_PENDING),
                VcpuPowerState::Off => {}
            }
            if !env.entry_is_valid(entry) {
                return code(ret::INVALID_ADDRESS);
            }
            match env.power_on(idx, entry, context) {
                Ok(()) => code(ret::SUCCESS),
                Err(PowerOnError::AlreadyOn) => code(ret::ALREADY_ON),
                Err(PowerOnError::OnPending) => code(ret::ON_PENDING),
                Err(PowerOnError::InvalidAddress) => code(ret::INVALID_ADDRESS),
            }
        }
        PsciCall::AffinityInfo {
            target_mpidr,
            lowest_level,
        } => {
            if lowest_level != 0 {
                return code(ret::INVALID_PARAMETERS);
            }
            match env.vcpu_index_by_mpidr(target_mpidr) {
                None => code(ret::INVALID_PARAMETERS),
                Some(idx) => value(match env.vcpu_state(idx) {
                    VcpuPowerState::On => abi::affinity::ON,
                    VcpuPowerState::Off => abi::affinity::OFF,
                    VcpuPowerState::OnPending => abi::affinity::ON_PENDING,
                }),
            }
        }
        PsciCall::MigrateInfoType => value(abi::MIGRATE_INFO_TYPE_NOT_PRESENT),
        PsciCall::SystemOff => Action::ShutdownDomain(ShutdownReason::PowerOff),
        PsciCall::SystemReset => Action::ShutdownDomain(ShutdownReason::Reboot),
        PsciCall::SmcccVersion => value(u64::from(abi::SMCCC_VERSION_1_1)),
        PsciCall::SmcccArchFeatures(fid) => match fid {
            abi::SMCCC_VERSION | abi::SMCCC_ARCH_FEATURES => code(ret::SUCCESS),
            _ => code(ret::NOT_SUPPORTED),
        },
        PsciCall::Unknown(_) => code(ret::NOT_SUPPORTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    struct FakeDomain {
        mpidrs: Vec<u64>,
        states: Vec<VcpuPowerState>,
        started: Vec<(usize, u64, u64)>,
        refuse: Option<PowerOnError>,
    }

    impl FakeDomain {
        fn new(n: usize) -> Self {
            let mut states = vec![VcpuPowerState::Off; n];
            states[0] = VcpuPowerState::On;
            Self {
                mpidrs: (0..n as u64).collect(),
                states,
                started: Vec::new(),
                refuse: None,
            }
        }
    }

    impl PsciEnv for FakeDomain {
        fn vcpu_index_by_mpidr(&self, mpidr: u64) -> Option<usize> {
            self.mpidrs.iter().position(|&m| m == mpidr)
        }
        fn vcpu_state(&self, idx: usize) -> VcpuPowerState {
            self.states[idx]
        }
        fn power_on(&mut self, idx: usize, entry: u64, context: u64) -> Result<(), PowerOnError> {
            if let Some(e) = self.refuse {
                return Err(e);
            }
            self.states[idx] = VcpuPowerState::OnPending;
            self.started.push((idx, entry, context));
            Ok(())
        }
        fn entry_is_valid(&self, entry: u64) -> bool {
            (0x4000_0000..0x8000_0000).contains(&entry)
        }
    }

    fn x0(a: Action) -> u64 {
        match a {
            Action::ResumeWith { regs } => regs[0].expect("x0 set"),
            other => panic!("not a register result: {other:?}"),
        }
    }

    fn ret_code(r: i32) -> u64 {
        i64::from(r) as u64
    }

    fn call(args: [u64; 8], d: &mut FakeDomain) -> Action {
        handle(decode(&args), d)
    }

    fn a(fid: u32, a1: u64, a2: u64, a3: u64) -> [u64; 8] {
        [u64::from(fid), a1, a2, a3, 0, 0, 0, 0]
    }

    #[test]
    fn version_and_smccc() {
        let mut d = FakeDomain::new(2);
        assert_eq!(x0(call(a(abi::PSCI_VERSION, 0, 0, 0), &mut d)), 0x1_0001);
        assert_eq!(x0(call(a(abi::SMCCC_VERSION, 0, 0, 0), &mut d)), 0x1_0001);
        let feat = |fid: u32, d: &mut FakeDomain| {
            x0(call(a(abi::SMCCC_ARCH_FEATURES, fid.into(), 0, 0), d))
        };
        assert_eq!(feat(0x8000_8000, &mut d), ret_code(ret::NOT_SUPPORTED)); // WORKAROUND_1
        assert_eq!(feat(0x8000_7FFF, &mut d), ret_code(ret::NOT_SUPPORTED)); // WORKAROUND_2
        assert_eq!(feat(abi::SMCCC_VERSION, &mut d), 0);
        assert_eq!(feat(abi::SMCCC_ARCH_FEATURES, &mut d), 0);
    }

    #[test]
    fn features() {
        let mut d = FakeDomain::new(1);
        for fid in [
            abi::PSCI_VERSION,
            abi::PSCI_CPU_SUSPEND_64,
            abi::PSCI_CPU_ON_64,
            abi::PSCI_CPU_OFF,
            abi::PSCI_AFFINITY_INFO_64,
            abi::PSCI_SYSTEM_OFF,
            abi::PSCI_SYSTEM_RESET,
            abi::PSCI_FEATURES,
            abi::PSCI_MIGRATE_INFO_TYPE,
            abi::SMCCC_VERSION,
        ] {
            assert_eq!(
                x0(call(a(abi::PSCI_FEATURES, fid.into(), 0, 0), &mut d)),
                0,
                "{fid:#x}"
            );
        }
        for fid in [
            0x8400_000E_u32, /* SYSTEM_SUSPEND */
            0,
            u32::MAX,
            0xC400_0012,
        ] {
            assert_eq!(
                x0(call(a(abi::PSCI_FEATURES, fid.into(), 0, 0), &mut d)),
                ret_code(ret::NOT_SUPPORTED)
            );
        }
    }

    #[test]
    fn cpu_on_paths() {
        let mut d = FakeDomain::new(3);
        // Good call, with junk in the non-affinity MPIDR bits.
        let r = call(a(abi::PSCI_CPU_ON_64, 0x8000_0001, 0x4008_0000, 77), &mut d);
        assert_eq!(x0(r), 0);
        assert_eq!(d.started, vec![(1, 0x4008_0000, 77)]);
        // Again while pending, then once on.
        let r = call(a(abi::PSCI_CPU_ON_64, 1, 0x4008_0000, 0), &mut d);
        assert_eq!(x0(r), ret_code(ret::ON_PENDING));
        d.states[1] = VcpuPowerState::On;
        let r = call(a(abi::PSCI_CPU_ON_64, 1, 0x4008_0000, 0), &mut d);
        assert_eq!(x0(r), ret_code(ret::ALREADY_ON));
        // Bad MPIDR, bad entry.
        let r = call(a(abi::PSCI_CPU_ON_64, 7, 0x4008_0000, 0), &mut d);
        assert_eq!(x0(r), ret_code(ret::INVALID_PARAMETERS));
        let r = call(a(abi::PSCI_CPU_ON_64, 2, 0x10, 0), &mut d);
        assert_eq!(x0(r), ret_code(ret::INVALID_ADDRESS));
        // A refusal from the environment maps to its code.
        d.refuse = Some(PowerOnError::InvalidAddress);
        let r = call(a(abi::PSCI_CPU_ON_64, 2, 0x4000_0000, 0), &mut d);
        assert_eq!(x0(r), ret_code(ret::INVALID_ADDRESS));
        assert_eq!(d.started.len(), 1);
    }

    #[test]
    fn smc32_forms_truncate_arguments() {
        let mut d = FakeDomain::new(2);
        let hi = 0xFFFF_FFFF_0000_0000;
        let r = call(
            a(abi::PSCI_CPU_ON_32, hi | 1, hi | 0x4000_1000, hi | 5),
            &mut d,
        );
        assert_eq!(x0(r), 0);
        assert_eq!(d.started, vec![(1, 0x4000_1000, 5)]);
        // The 64-bit form keeps the high bits: that entry is invalid.
        let mut d = FakeDomain::new(2);
        let r = call(a(abi::PSCI_CPU_ON_64, 1, hi | 0x4000_1000, 0), &mut d);
        assert_eq!(x0(r), ret_code(ret::INVALID_ADDRESS));
        // Function id comes from the low 32 bits only.
        let args = [hi | u64::from(abi::PSCI_VERSION), 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(&args), PsciCall::Version);
    }

    #[test]
    fn affinity_info() {
        let mut d = FakeDomain::new(3);
        d.states[2] = VcpuPowerState::OnPending;
        let info = |m: u64, lvl: u64, d: &mut FakeDomain| {
            x0(call(a(abi::PSCI_AFFINITY_INFO_64, m, lvl, 0), d))
        };
        assert_eq!(info(0, 0, &mut d), abi::affinity::ON);
        assert_eq!(info(1, 0, &mut d), abi::affinity::OFF);
        assert_eq!(info(2, 0, &mut d), abi::affinity::ON_PENDING);
        assert_eq!(info(3, 0, &mut d), ret_code(ret::INVALID_PARAMETERS));
        assert_eq!(info(0, 1, &mut d), ret_code(ret::INVALID_PARAMETERS));
    }

    #[test]
    fn power_and_misc() {
        let mut d = FakeDomain::new(1);
        assert_eq!(call(a(abi::PSCI_CPU_OFF, 0, 0, 0), &mut d), Action::VcpuOff);
        assert_eq!(
            call(a(abi::PSCI_SYSTEM_OFF, 0, 0, 0), &mut d),
            Action::ShutdownDomain(ShutdownReason::PowerOff)
        );
        assert_eq!(
            call(a(abi::PSCI_SYSTEM_RESET, 0, 0, 0), &mut d),
            Action::ShutdownDomain(ShutdownReason::Reboot)
        );
        assert_eq!(
            call(a(abi::PSCI_CPU_SUSPEND_64, 0x1_0000, 0, 0), &mut d),
            Action::Block
        );
        assert_eq!(
            decode(&a(abi::PSCI_CPU_SUSPEND_32, 5, 0x1_2345_6789, 3)),
            PsciCall::CpuSuspend {
                power_state: 5,
                entry: 0x2345_6789,
                context: 3
            }
        );
        assert_eq!(x0(call(a(abi::PSCI_MIGRATE_INFO_TYPE, 0, 0, 0), &mut d)), 2);
    }

    #[test]
    fn unknown_calls_are_not_supported() {
        let mut d = FakeDomain::new(1);
        for fid in [
            0u32,
            0x8400_0005, /* MIGRATE */
            0x8400_000E,
            0xC200_0000,
            u32::MAX,
        ] {
            assert_eq!(decode(&a(fid, 0, 0, 0)), PsciCall::Unknown(fid));
            assert_eq!(
                x0(call(a(fid, 1, 2, 3), &mut d)),
                ret_code(ret::NOT_SUPPORTED)
            );
        }
    }
}
