//! Calls to the platform firmware's PSCI (the conduit comes from the device tree).

use mica_guest_abi::psci;
use mica_hv::bootcfg::PsciConduit;
use spin::Once;

static CONDUIT: Once<PsciConduit> = Once::new();

/// Records the conduit named by the device tree's psci node.
pub fn init(conduit: PsciConduit) {
    CONDUIT.call_once(|| conduit);
}

fn call(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(function);
    match CONDUIT.get() {
        // SAFETY: an SMCCC call to firmware; per SMCCC it clobbers at most x0-x17, which
        // we declare, and it does not touch our memory.
        Some(PsciConduit::Smc) => unsafe {
            core::arch::asm!("smc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                options(nostack))
        },
        // SAFETY: as above, through HVC (firmware at EL2 is not possible while Mica runs
        // there, so this is only reached on platforms whose DT says so at EL3-less boots).
        Some(PsciConduit::Hvc) => unsafe {
            core::arch::asm!("hvc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _,
                inout("x3") a3 => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
                out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
                out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
                options(nostack))
        },
        None => return i64::from(psci::ret::NOT_SUPPORTED),
    }
    x0 as i64
}

/// Starts the physical CPU `mpidr` at `entry` (a physical address) with `x0 = context`.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), i64> {
    match call(psci::PSCI_CPU_ON_64, mpidr, entry, context) {
        0 => Ok(()),
        e => Err(e),
    }
}

/// Powers the machine off. Returns only if firmware refused.
pub fn system_off() {
    call(psci::PSCI_SYSTEM_OFF, 0, 0, 0);
}

/// Resets the machine. Returns only if firmware refused.
pub fn system_reset() {
    call(psci::PSCI_SYSTEM_RESET, 0, 0, 0);
}
