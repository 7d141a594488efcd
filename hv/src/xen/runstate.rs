//! vCPU runstate accounting: how long each vCPU has been running, runnable (waiting for a
//! CPU: the "steal time" Linux reports), blocked and offline, published in the area the guest
//! registered (`VCPUOP_register_runstate_memory_area` by virtual address, or
//! `VCPUOP_register_runstate_phys_area`) each time the state changes.
//!
//! With the `runstate_update_flag` assist on, `XEN_RUNSTATE_UPDATE` (bit 63 of
//! `state_entry_time`) is set while the area is being rewritten, so a reader on another CPU
//! can retry instead of seeing a torn update.

use super::mem::{write_obj, write_virt_obj, GuestVirtMemory};
use super::{DomId, Xen, XenEnv};
use mica_guest_abi::xen::misc::VMASST_TYPE_RUNSTATE_UPDATE_FLAG;
use mica_guest_abi::xen::shared::{
    VcpuRunstateInfo, RUNSTATE_BLOCKED, RUNSTATE_OFFLINE, RUNSTATE_RUNNABLE, RUNSTATE_RUNNING,
};

/// `XEN_RUNSTATE_UPDATE`: the area is being updated.
const RUNSTATE_UPDATE: u64 = 1 << 63;

/// A vCPU's scheduling state, as the runstate area names it (the discriminants are the
/// ABI's `RUNSTATE_*` codes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Runstate {
    Running = RUNSTATE_RUNNING as u8,
    Runnable = RUNSTATE_RUNNABLE as u8,
    Blocked = RUNSTATE_BLOCKED as u8,
    Offline = RUNSTATE_OFFLINE as u8,
}

impl Runstate {
    fn abi(self) -> i32 {
        match self {
            Runstate::Running => RUNSTATE_RUNNING,
            Runstate::Runnable => RUNSTATE_RUNNABLE,
            Runstate::Blocked => RUNSTATE_BLOCKED,
            Runstate::Offline => RUNSTATE_OFFLINE,
        }
    }
}

/// Time spent in each state, in nanoseconds of system time.
#[derive(Clone, Debug)]
pub(crate) struct RunstateClock {
    state: Runstate,
    entered_ns: u64,
    time_ns: [u64; 4],
}

impl Default for RunstateClock {
    fn default() -> Self {
        Self {
            state: Runstate::Offline,
            entered_ns: 0,
            time_ns: [0; 4],
        }
    }
}

impl RunstateClock {
    /// Moves to `state` at `now_ns`, charging the time since the last change to the old
    /// state. A clock that goes backwards charges nothing.
    pub fn enter(&mut self, state: Runstate, now_ns: u64) {
        let spent = now_ns.saturating_sub(self.entered_ns);
        let slot = &mut self.time_ns[self.state.abi() as usize];
        *slot = slot.saturating_add(spent);
        self.state = state;
        self.entered_ns = self.entered_ns.max(now_ns);
    }

    pub fn info(&self) -> VcpuRunstateInfo {
        VcpuRunstateInfo {
            state: self.state.abi(),
            state_entry_time: self.entered_ns,
            time: self.time_ns,
        }
    }
}

impl Xen {
    /// Records that `vcpu` of `domid` entered `state` at `now_ns` and publishes the new
    /// runstate in its registered area. `vmem` must be that vCPU's own translation regime
    /// (the area may be registered by guest virtual address). An area the guest unmapped or
    /// made unwritable is left alone: the guest only loses its own statistics.
    pub fn runstate_change(
        &mut self,
        domid: DomId,
        vcpu: u32,
        state: Runstate,
        now_ns: u64,
        vmem: &mut dyn GuestVirtMemory,
        env: &mut dyn XenEnv,
    ) {
        let Some(dom) = self.domains.get_mut(&domid) else {
            return;
        };
        let flagged = dom.vm_assist & (1 << VMASST_TYPE_RUNSTATE_UPDATE_FLAG) != 0;
        // Running again ends a SCHEDOP_poll, whatever woke the vCPU (Xen: vcpu_unblock).
        if state == Runstate::Running {
            dom.end_poll(vcpu);
        }
        let Some(v) = dom.vcpus.get_mut(vcpu as usize) else {
            return;
        };
        v.runstate.enter(state, now_ns);
        let info = v.runstate.info();
        let (va, gpa) = (v.runstate_va, v.runstate_gpa);
        let publish = |write: &mut dyn FnMut(&VcpuRunstateInfo) -> bool| {
            if flagged {
                let mut updating = info;
                updating.state_entry_time |= RUNSTATE_UPDATE;
                if !write(&updating) {
                    return;
                }
            }
            write(&info);
        };
        if let Some(va) = va {
            publish(&mut |i| write_virt_obj(vmem, va, i).is_ok());
        }
        if let Some(gpa) = gpa {
            if let Some(mem) = env.memory(domid) {
                publish(&mut |i| write_obj(mem, gpa, i).is_ok());
                mem.barrier();
            }
        }
    }

    /// The runstate `vcpu` of `domid` last entered, if the domain and vCPU exist.
    pub fn runstate(&self, domid: DomId, vcpu: u32) -> Option<VcpuRunstateInfo> {
        let dom = self.domains.get(&domid)?;
        Some(dom.vcpus.get(vcpu as usize)?.runstate.info())
    }
}
