//! Prints one line through the console and powers off (x86-64).
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod guest {
    use x86_guest_rt::{cpu, println};

    x86_guest_rt::entry!(main);

    fn main() {
        // Xen's HVM leaf (base + 4) reports the vCPU id in EBX.
        let vcpu = cpu::cpuid(x86_guest_rt::xen::CPUID_BASE + 4)[1];
        println!("hello: hello world from vCPU {vcpu}");
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
