//! PSCI calls (Arm DEN0022) over the conduit the device tree names.

use core::arch::asm;
use core::sync::atomic::{AtomicU8, Ordering};
use mica_guest_abi::psci as abi;

/// How PSCI calls reach the firmware or hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc #0` (a hypervisor implements PSCI: Mica, Xen, KVM).
    Hvc,
    /// `smc #0` (EL3 firmware).
    Smc,
}

const CONDUIT_NONE: u8 = 0;
const CONDUIT_HVC: u8 = 1;
const CONDUIT_SMC: u8 = 2;
static CONDUIT: AtomicU8 = AtomicU8::new(CONDUIT_NONE);

/// Selects the conduit (done by the runtime from the device tree).
pub fn set_conduit(conduit: Conduit) {
    let raw = match conduit {
        Conduit::Hvc => CONDUIT_HVC,
        Conduit::Smc => CONDUIT_SMC,
    };
    CONDUIT.store(raw, Ordering::Release);
}

/// The conduit in use, if the device tree named one.
pub fn conduit() -> Option<Conduit> {
    match CONDUIT.load(Ordering::Acquire) {
        CONDUIT_HVC => Some(Conduit::Hvc),
        CONDUIT_SMC => Some(Conduit::Smc),
        _ => None,
    }
}

/// A PSCI error return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciError(pub i32);

/// Makes an SMCCC call with up to three arguments and returns x0. Without a conduit it returns
/// NOT_SUPPORTED.
pub fn call(function: u32, arg1: u64, arg2: u64, arg3: u64) -> u64 {
    let mut x0 = u64::from(function);
    match conduit() {
        // SAFETY: an SMCCC call; x0-x17 may be clobbered by SMCCC 1.0 callees and are declared
        // so. It touches no memory of ours.
        Some(Conduit::Hvc) => unsafe {
            asm!("hvc #0", inout("x0") x0, inout("x1") arg1 => _, inout("x2") arg2 => _,
                 inout("x3") arg3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                 out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                 out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                 options(nostack))
        },
        // SAFETY: as above.
        Some(Conduit::Smc) => unsafe {
            asm!("smc #0", inout("x0") x0, inout("x1") arg1 => _, inout("x2") arg2 => _,
                 inout("x3") arg3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                 out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                 out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                 options(nostack))
        },
        None => x0 = abi::ret::NOT_SUPPORTED as i64 as u64,
    }
    x0
}

fn result(x0: u64) -> Result<u64, PsciError> {
    let signed = x0 as i64;
    if signed < 0 {
        Err(PsciError(signed as i32))
    } else {
        Ok(x0)
    }
}

/// PSCI_VERSION: (major, minor).
pub fn version() -> Result<(u16, u16), PsciError> {
    let raw = result(call(abi::PSCI_VERSION, 0, 0, 0))?;
    Ok(((raw >> 16) as u16, raw as u16))
}

/// CPU_ON (SMC64): starts the CPU with affinity `target_mpidr` at physical address `entry`
/// with the MMU off and `context` in x0.
pub fn cpu_on(target_mpidr: u64, entry: u64, context: u64) -> Result<(), PsciError> {
    result(call(abi::PSCI_CPU_ON_64, target_mpidr, entry, context)).map(|_| ())
}

/// CPU_OFF: powers the calling CPU down. Returns only on failure.
pub fn cpu_off() -> PsciError {
    let x0 = call(abi::PSCI_CPU_OFF, 0, 0, 0);
    PsciError(x0 as i64 as i32)
}

/// AFFINITY_INFO (SMC64) at affinity level 0: ON (0), OFF (1) or ON_PENDING (2).
pub fn affinity_info(target_mpidr: u64) -> Result<u64, PsciError> {
    result(call(abi::PSCI_AFFINITY_INFO_64, target_mpidr, 0, 0))
}

/// SYSTEM_OFF. If the call returns (no conduit, or it failed), the CPU waits forever.
pub fn system_off() -> ! {
    call(abi::PSCI_SYSTEM_OFF, 0, 0, 0);
    loop {
        // SAFETY: masking interrupts and waiting has no memory effects.
        unsafe { asm!("msr daifset, #0xf", "wfi", options(nomem, nostack)) };
    }
}
