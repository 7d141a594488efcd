//! Hypercall round trip in guest TSC ticks (run under `-icount shift=0,sleep=off`, where the
//! TSC counts executed instructions, so the numbers are deterministic): XENVER_version through
//! the hypercall page, and CPUID leaf 0 (an exit on a hypervisor, none on bare QEMU). Prints
//! `abibench: <name> median <ticks> ticks over <n>` per measurement, then shuts down.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod guest {
    use mica_guest_abi::xen::version::XENVER_VERSION;
    use mica_guest_abi::xen::Hypercall;
    use x86_guest_rt::{cpu, println, xen};

    x86_guest_rt::entry!(main);

    /// Round trips timed one by one; the median is reported.
    const SAMPLES: usize = 201;
    /// Untimed round trips first (warm caches and QEMU's translation blocks).
    const WARMUP: usize = 20;

    fn median_ticks(mut one: impl FnMut()) -> u64 {
        for _ in 0..WARMUP {
            one();
        }
        let mut ticks = [0u64; SAMPLES];
        for slot in ticks.iter_mut() {
            let start = cpu::rdtsc();
            one();
            *slot = cpu::rdtsc().wrapping_sub(start);
        }
        ticks.sort_unstable();
        ticks[SAMPLES / 2]
    }

    fn main() {
        let empty = median_ticks(|| {});
        println!("abibench: empty median {empty} ticks over {SAMPLES}");
        let cpuid = median_ticks(|| {
            core::hint::black_box(cpu::cpuid(0));
        });
        println!("abibench: cpuid median {cpuid} ticks over {SAMPLES}");
        if xen::present() {
            let hypercall = median_ticks(|| {
                core::hint::black_box(xen::hypercall(
                    Hypercall::XenVersion,
                    [XENVER_VERSION, 0, 0, 0, 0],
                ));
            });
            println!("abibench: hypercall median {hypercall} ticks over {SAMPLES}");
        } else {
            println!("abibench: hypercall absent (no Xen interface)");
        }
        println!("abibench: done");
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
