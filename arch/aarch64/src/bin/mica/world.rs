//! The hypervisor's shared state: physical CPUs, domains and their vCPUs, free memory.

use crate::vcpu::VcpuContext;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use mica_aarch64::pagetable::{PageTable, TableMemory, ENTRIES};
use mica_hv::addr::{GuestPhysAddr, GuestRange, HostPhysAddr, HostRange, PAGE_SIZE};
use mica_hv::frame_alloc::FrameAllocator;
use mica_hv::ratelimit::RateLimiter;
use mica_hv::sched::{PcpuScheduler, VcpuRef};
use mica_hv::vgic::Vgic;
use mica_hv::vpl011::Vpl011;
use spin::{Mutex, RwLock};

/// Physical CPUs Mica supports.
pub const MAX_CPUS: usize = 8;

/// Free host memory.
pub static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

/// Shared per-physical-CPU state.
pub struct Pcpu {
    /// MPIDR of this CPU (valid once `online`).
    pub mpidr: AtomicUsize,
    /// The CPU is running Mica's scheduler.
    pub online: AtomicBool,
    /// Index of this CPU in the host device tree's CPU list (what CPU pools name).
    pub host_index: AtomicUsize,
    /// Its run queue, under its CPU pool's policy.
    pub sched: Mutex<Option<PcpuScheduler>>,
    /// vCPUs placed on it, for balancing.
    pub load: AtomicUsize,
}

/// All physical CPUs.
pub static PCPUS: [Pcpu; MAX_CPUS] = [const {
    Pcpu {
        mpidr: AtomicUsize::new(0),
        online: AtomicBool::new(false),
        host_index: AtomicUsize::new(usize::MAX),
        sched: Mutex::new(None),
        load: AtomicUsize::new(0),
    }
}; MAX_CPUS];

/// Power state of a vCPU, as PSCI sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Power {
    /// Not started, or stopped with CPU_OFF.
    Off,
    /// CPU_ON accepted; starts at `entry` with `x0 = context` when next scheduled.
    OnPending {
        /// Entry point (guest-physical).
        entry: u64,
        /// Value for x0.
        context: u64,
    },
    /// Running guest code (or blocked in WFI).
    On,
}

/// One virtual CPU.
pub struct Vcpu {
    /// The physical CPU it is pinned to.
    pub pcpu: usize,
    /// Its virtual MPIDR.
    pub mpidr: u64,
    /// PSCI power state.
    pub power: Mutex<Power>,
    /// The Xen runstate last published for it (`crate::xen::RUNSTATE_*` codes).
    pub runstate: core::sync::atomic::AtomicU8,
    /// A port it polls (SCHEDOP_poll) became pending: set by the waker under the Xen lock
    /// before it wakes the vCPU, so a wake-up that comes before the vCPU sleeps is not lost
    /// (see `run::block_poll`); cleared with the poll's Xen state.
    pub poll_woken: core::sync::atomic::AtomicBool,
    /// WFI runs natively (HCR_EL2.TWI clear): the vCPU owns its CPU (`null` pool with
    /// `vwfi=native`), so there is nothing to switch to while it waits.
    pub wfi_native: bool,
    /// Registers; only the owning physical CPU touches them (see `context`).
    ctx: UnsafeCell<VcpuContext>,
}

// SAFETY: `ctx` is only accessed by the physical CPU the vCPU is pinned to (`pcpu`), through
// `context`, whose contract says so; everything else is behind locks or atomics.
unsafe impl Sync for Vcpu {}

impl Vcpu {
    /// A powered-off vCPU pinned to physical CPU `pcpu`.
    pub fn new(pcpu: usize, mpidr: u64, wfi_native: bool) -> Self {
        Self {
            pcpu,
            mpidr,
            power: Mutex::new(Power::Off),
            runstate: core::sync::atomic::AtomicU8::new(crate::xen::RUNSTATE_UNKNOWN),
            poll_woken: core::sync::atomic::AtomicBool::new(false),
            wfi_native,
            ctx: UnsafeCell::new(VcpuContext::default()),
        }
    }

    /// The vCPU's saved registers.
    ///
    /// # Safety
    /// Only the physical CPU `self.pcpu` may call this, and it must not hold two results at
    /// once.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn context(&self) -> &mut VcpuContext {
        // SAFETY: exclusive by the caller's contract.
        unsafe { &mut *self.ctx.get() }
    }
}

/// The emulated UART of a domain.
pub struct VirtualUart {
    /// Register state.
    pub model: Mutex<Vpl011>,
    /// Where the guest sees it.
    pub range: GuestRange,
    /// Its interrupt.
    pub intid: u32,
}

/// A domain: a guest with its memory, devices and vCPUs.
pub struct Domain {
    /// Domain id (0 is the initial domain, if any).
    pub id: u16,
    /// Name from the device tree.
    pub name: String,
    /// Whether this is the initial (hardware) domain.
    pub initial: bool,
    /// VTTBR_EL2 value: stage-2 root and VMID.
    pub vttbr: u64,
    /// Guest RAM: (guest address, host range) pairs.
    pub ram: Vec<(GuestPhysAddr, HostRange)>,
    /// The RAM is the domain's `xen,static-mem`, reserved at boot rather than allocated.
    pub static_ram: bool,
    /// Stage-2 tables, taken by `Drop`.
    pub stage2: Mutex<Option<PageTable>>,
    /// The virtual GIC.
    pub vgic: Vgic,
    /// The emulated UART.
    pub uart: VirtualUart,
    /// vCPUs.
    pub vcpus: Vec<Vcpu>,
    /// Set once the domain is being destroyed.
    pub dying: AtomicBool,
    /// Limits the log lines this guest can cause.
    pub log_limit: Mutex<RateLimiter>,
    /// Pages of its physmap that are not its RAM (Xen shared_info, grant frames, grants).
    pub overlays: Mutex<Vec<crate::xen::Overlay>>,
    /// Pages of it the Xen layer found before (the event path's shared_info and
    /// vcpu_info), kept until its physmap changes.
    pub lent: crate::xen::LentPages,
}

impl Domain {
    /// Host address of guest address `gpa`, if it is guest RAM, with the bytes left in
    /// that chunk.
    pub fn ram_to_host(&self, gpa: GuestPhysAddr) -> Option<(HostPhysAddr, u64)> {
        self.ram.iter().find_map(|&(g, h)| {
            let off = gpa.offset_from(g)?;
            (off < h.size).then(|| (HostPhysAddr::new(h.start.raw() + off), h.size - off))
        })
    }

    /// Whether `[gpa, gpa + len)` is guest RAM.
    pub fn is_ram(&self, gpa: GuestPhysAddr, len: u64) -> bool {
        let mut cur = gpa;
        let mut left = len;
        while left > 0 {
            match self.ram_to_host(cur) {
                Some((_, avail)) => {
                    let step = avail.min(left);
                    left -= step;
                    match cur.checked_add(step) {
                        Some(n) => cur = n,
                        None => return false,
                    }
                }
                None => return false,
            }
        }
        true
    }

    /// A reference to vCPU `index` for the scheduler.
    pub fn vcpu_ref(&self, index: usize) -> VcpuRef {
        VcpuRef {
            domain: self.id,
            vcpu: index as u16,
        }
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        // The last reference is gone: no CPU runs this domain any more.
        let mut frames = FRAMES.lock();
        if let Some(frames) = frames.as_mut() {
            if let Some(table) = self.stage2.lock().take() {
                crate::stage2::flush_vmid(self.vttbr);
                table.destroy(&mut FrameTables(frames));
            }
            for page in crate::xen::special_pages(&self.overlays.lock()) {
                let _ = frames.free(page);
            }
            for &(_, host) in &self.ram {
                // Scrubbed first, so the next owner never sees this guest's data.
                let scrub = |r: HostRange| {
                    // SAFETY: the range is RAM this domain owned exclusively, identity-mapped
                    // as normal memory, and no CPU runs the domain any more.
                    unsafe { core::ptr::write_bytes(r.start.raw() as *mut u8, 0, r.size as usize) };
                };
                if self.static_ram {
                    // Static memory (xen,static-mem) stays set aside for its description.
                    scrub(host);
                } else if frames.free_scrubbed(host, scrub).is_err() {
                    panic!("domain {} memory {:?} was not allocated", self.id, host);
                }
            }
        }
    }
}

/// All domains, indexed by id.
pub static DOMAINS: RwLock<Vec<Option<Arc<Domain>>>> = RwLock::new(Vec::new());

/// The domain with `id`, if it exists and is not dying.
pub fn domain(id: u16) -> Option<Arc<Domain>> {
    DOMAINS
        .read()
        .get(usize::from(id))
        .and_then(|d| d.clone())
        .filter(|d| !d.dying.load(Ordering::Acquire))
}

/// Translation tables taken from the frame allocator.
pub struct FrameTables<'a>(pub &'a mut FrameAllocator);

impl TableMemory for FrameTables<'_> {
    fn alloc_table(&mut self) -> Option<u64> {
        let pa = self.0.alloc(PAGE_SIZE, PAGE_SIZE)?;
        // SAFETY: a fresh page of identity-mapped RAM that nobody else uses.
        unsafe { core::ptr::write_bytes(pa.raw() as *mut u8, 0, PAGE_SIZE as usize) };
        Some(pa.raw())
    }
    fn free_table(&mut self, pa: u64) {
        if let Some(r) = HostRange::new(HostPhysAddr::new(pa), PAGE_SIZE) {
            let _ = self.0.free(r);
        }
    }
    unsafe fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES] {
        // SAFETY: per the trait contract, `pa` is a live table page, identity-mapped.
        unsafe { &mut *(pa as *mut [u64; ENTRIES]) }
    }
}
