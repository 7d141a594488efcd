//! What the Xen layer needs from the architecture layer: memory of any domain, stage-2
//! changes, interrupt injection and console output.
//!
//! Locking: the whole Xen state ([`super::Xen`]) sits behind one lock owned by the arch
//! layer. Calls into [`XenEnv`] happen while that lock is held, so an implementation may
//! take its own locks (stage 2, vGIC, console) but must never call back into [`super::Xen`]
//! and must never be entered with those locks already held by the same CPU. Order:
//! Xen lock, then stage-2 / vGIC / console locks.

use super::mem::GuestMemory;
use mica_guest_abi::xen::DomId;

/// Hypervisor-owned pages a domain can place in its physmap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SpecialPage {
    /// The shared_info page (XENMAPSPACE_shared_info).
    SharedInfo,
    /// Grant-table frame `n` (XENMAPSPACE_grant_table).
    GrantFrame(u32),
    /// The PV console ring page served by Mica (set up at domain creation).
    ConsoleRing,
}

/// A backend that lives in Mica and owns the far end of an event channel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backend {
    /// The PV console server ([`super::Xen::console_poll_output`]).
    Console,
}

/// Services of the architecture layer. Errors are positive Xen errno values.
pub trait XenEnv {
    /// Guest-physical memory of domain `dom`, `None` if it does not exist.
    fn memory(&mut self, dom: DomId) -> Option<&mut dyn GuestMemory>;

    /// Makes guest frame `gfn` of `dom` show the hypervisor page `page`, replacing whatever
    /// was mapped there. The page is allocated zeroed on first use and kept, with its
    /// contents, until the domain is destroyed (so moving it keeps the contents). After
    /// `Ok`, [`XenEnv::memory`] must reach the page at `gfn`.
    fn map_special_page(&mut self, dom: DomId, page: SpecialPage, gfn: u64) -> Result<(), i32>;

    /// Removes the mapping of `page` at `gfn` (the frame becomes a hole).
    fn unmap_special_page(&mut self, dom: DomId, page: SpecialPage, gfn: u64);

    /// Maps frame `granter_gfn` of `granter` into `grantee`'s physmap at `gfn` (a grant
    /// mapping), read-only if asked. The frame must stay allocated while it is mapped.
    fn map_foreign(
        &mut self,
        grantee: DomId,
        gfn: u64,
        granter: DomId,
        granter_gfn: u64,
        readonly: bool,
    ) -> Result<(), i32>;

    /// Undoes [`XenEnv::map_foreign`] at `gfn` of `grantee`.
    fn unmap_foreign(&mut self, grantee: DomId, gfn: u64);

    /// Makes the event-channel upcall PPI pending on `vcpu` of `dom` (and kicks the
    /// physical CPU running it).
    fn raise_upcall(&mut self, dom: DomId, vcpu: u32);

    /// Wakes `vcpu` of `dom` from SCHEDOP_poll ([`super::After::BlockPoll`]): a port it polls
    /// became pending. The port may be masked, so no interrupt comes with it; the vCPU
    /// may not have gone to sleep yet, and then must not.
    fn wake_vcpu(&mut self, dom: DomId, vcpu: u32) {
        let _ = (dom, vcpu);
    }

    /// Output of CONSOLEIO_write.
    fn console_write(&mut self, dom: DomId, bytes: &[u8]);

    /// A guest sent an event to a port whose far end is a Mica backend.
    fn backend_notify(&mut self, dom: DomId, backend: Backend) {
        let _ = (dom, backend);
    }

    /// Wall-clock time at system time zero, (seconds, nanoseconds), for shared_info.
    fn wallclock(&self) -> (u64, u32) {
        (0, 0)
    }

    /// System time now, in nanoseconds (the clock of the guests' vcpu_time_info and of
    /// their PV timers).
    fn now_ns(&self) -> u64 {
        0
    }
}
