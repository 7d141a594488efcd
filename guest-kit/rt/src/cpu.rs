//! Identity of the running CPU and starting other CPUs with PSCI CPU_ON.

use crate::boot::MAX_SECONDARIES;
use crate::psci::{self, PsciError};
use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering};

/// MPIDR_EL1 with only the affinity fields (Aff3 in 39:32, Aff2..Aff0 in 23:0).
pub fn mpidr() -> u64 {
    let mpidr: u64;
    // SAFETY: reads a system register.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
    mpidr & 0xff_00ff_ffff
}

/// Code a started CPU runs, with the argument given to [`start_cpu`]. It runs on its own stack
/// with the MMU, FP and vectors set up like the boot CPU. It should end with
/// [`psci::cpu_off`].
pub type SecondaryMain = fn(usize) -> !;

/// One start request: which code, which argument. Indexed by the CPU_ON context id, which also
/// selects the started CPU's stack.
struct StartSlot {
    main: AtomicUsize,
    arg: AtomicUsize,
}

static SLOTS: [StartSlot; MAX_SECONDARIES] = [const {
    StartSlot {
        main: AtomicUsize::new(0),
        arg: AtomicUsize::new(0),
    }
}; MAX_SECONDARIES];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// Why a CPU could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// Every start slot (and stack) has been used.
    NoStack,
    /// CPU_ON failed.
    Psci(PsciError),
}

extern "C" {
    fn mica_rt_secondary_entry();
}

/// Starts the CPU with affinity `target_mpidr` running `main(arg)`. Each call uses up one of
/// [`MAX_SECONDARIES`] stacks.
pub fn start_cpu(target_mpidr: u64, main: SecondaryMain, arg: usize) -> Result<(), StartError> {
    let slot = NEXT_SLOT.fetch_add(1, Ordering::AcqRel);
    let Some(start) = SLOTS.get(slot) else {
        return Err(StartError::NoStack);
    };
    start
        .main
        .store(main as *const () as usize, Ordering::Relaxed);
    start.arg.store(arg, Ordering::Release);
    // The new CPU reads the slot only after turning its MMU and caches on, so a cacheable write
    // is enough; the entry point is an identity-mapped physical address.
    let entry = mica_rt_secondary_entry as *const () as usize as u64;
    psci::cpu_on(target_mpidr, entry, slot as u64).map_err(StartError::Psci)
}

/// Rust entry of a CPU started by [`start_cpu`] (called from the boot code).
pub(crate) extern "C" fn secondary_main(slot: usize) -> ! {
    let Some(start) = SLOTS.get(slot) else {
        psci::cpu_off();
        crate::halt()
    };
    let arg = start.arg.load(Ordering::Acquire);
    match start.main.load(Ordering::Relaxed) {
        0 => {
            psci::cpu_off();
            crate::halt()
        }
        raw => {
            // SAFETY: start_cpu stored a `SecondaryMain` pointer in this slot before CPU_ON.
            let main = unsafe { core::mem::transmute::<usize, SecondaryMain>(raw) };
            main(arg)
        }
    }
}
