//! The Xen PV interface checks of guest-kit's pvtest, on x86-64 (PVH-style guest): `detect`
//! (the CPUID leaves, XENVER_version = 4.17 and equal to CPUID's), `features` (submap 0 has
//! auto_translated_physmap, submap 1 is -EINVAL), `shared-info` (XENMEM_add_to_physmap of
//! shared_info at a free frame reads back, VCPUOP_register_vcpu_info), `evtchn-loopback`
//! (HVM_PARAM_CALLBACK_IRQ set to a vector and read back, alloc_unbound + bind_interdomain
//! to itself, send, the upcall on that vector, masking and EVTCHNOP_unmask re-raising), `pv-timer` (system time
//! from vcpu_info's pvclock record, VIRQ_TIMER at once for a past
//! VCPUOP_set_singleshot_timer deadline, after a future one, or at most 100 us before it as
//! Xen's timer slop allows), `grant-copy` (grant frame
//! 0 mapped, a read-only grant of our own page, GNTTABOP_copy from it, read-only enforced,
//! revoke) and `console` (CONSOLEIO_write as the initial domain).
//!
//! Prints `pvtest: ok <check>` / `pvtest: FAIL <check>: <why>`, then `pvtest: done <P>
//! passed, <F> failed`, and shuts down: poweroff if all passed, crash otherwise.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
#[path = "pvtest/guest.rs"]
mod guest;

#[cfg(not(target_os = "none"))]
fn main() {}
