//! Misbehaves on purpose: prints a line, then writes to guest-physical memory outside its
//! RAM (2 GiB). The hypervisor must end this domain and carry on.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod guest {
    use x86_guest_rt::println;

    x86_guest_rt::entry!(main);

    /// Outside any guest RAM Mica gives, inside the guest's own identity map.
    const OUTSIDE_RAM: usize = 0x8000_0000;

    fn main() {
        println!("fault: writing to {OUTSIDE_RAM:#x}, outside my RAM");
        // SAFETY: deliberately not sound for the guest: the write has no backing memory and
        // must be stopped by the hypervisor (the point of this guest).
        unsafe { (OUTSIDE_RAM as *mut u64).write_volatile(0x6d69_6361) };
        println!("fault: FAIL the write went through");
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
