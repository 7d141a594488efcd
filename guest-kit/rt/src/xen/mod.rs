//! Running on Xen (or a hypervisor speaking Xen's guest ABI, such as Mica): detection from the
//! device tree, the shared_info page, vcpu_info, event channels, grant tables and the PV
//! console.
//!
//! Typical use: [`detect`] (the runtime already did it if the console is Xen's),
//! [`map_shared_info`], then [`evtchn::init`], [`grant::init`].

mod abi;
pub mod console;
pub mod evtchn;
pub mod grant;
pub mod hypercall;

pub use abi::{DomId, DOMID_SELF};
pub use hypercall::{ShutdownReason, XenError};

use crate::devtree;
use abi::{SharedInfo, VcpuInfo};
use core::cell::UnsafeCell;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use fdt::Fdt;

/// Xen's guest pages are 4 KiB whatever the guest's own page size.
pub const PAGE_SIZE: usize = 4096;

/// What the device tree's `/hypervisor` node says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypervisorNode {
    /// The ABI version after "xen,xen-" in the first compatible string (for example "4.17"),
    /// empty if absent.
    pub version: &'static str,
    /// Region 0: guest-physical space for grant-table frames (base, size).
    pub grant_region: Option<(usize, usize)>,
    /// Region 1, the first extended region: guest-physical space with nothing behind it,
    /// where the guest may map foreign pages (grant mappings) (base, size). Xen 4.17 lists
    /// such regions after the grant region when it finds room for them.
    pub extended_region: Option<(usize, usize)>,
    /// INTID of the event-channel upcall (a PPI).
    pub upcall_intid: Option<u32>,
}

/// Finds the `/hypervisor` node compatible with "xen,xen".
pub fn find_node(fdt: &Fdt<'static>) -> Option<HypervisorNode> {
    let node = fdt.find_node("/hypervisor")?;
    let compatible = node.compatible()?;
    if !compatible.all().any(|c| c == "xen,xen") {
        return None;
    }
    let version = compatible.first().strip_prefix("xen,xen-").unwrap_or("");
    let grant_region = devtree::reg(node, 0).filter(|&(_, size)| size != 0);
    let extended_region = devtree::reg(node, 1).filter(|&(_, size)| size != 0);
    let upcall_intid = node
        .property("interrupts")
        .and_then(|p| ppi_from_cells(p.value));
    Some(HypervisorNode {
        version,
        grant_region,
        extended_region,
        upcall_intid,
    })
}

/// Decodes a 3-cell GIC interrupt specifier (type, number, flags) naming a PPI.
fn ppi_from_cells(bytes: &[u8]) -> Option<u32> {
    let cell = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(
            bytes.get(i * 4..i * 4 + 4)?.try_into().ok()?,
        ))
    };
    if bytes.len() != 12 || cell(0)? != 1 {
        return None;
    }
    let number = cell(1)?;
    (number < 16).then_some(number + 16)
}

static NODE: spin::Once<HypervisorNode> = spin::Once::new();
static FEATURES: AtomicU32 = AtomicU32::new(0);

/// Looks for the hypervisor node and, if found, reads the feature submap 0. Returns the node;
/// later calls return the first result.
pub fn detect() -> Option<HypervisorNode> {
    if let Some(node) = NODE.get() {
        return Some(*node);
    }
    let fdt = devtree::get()?;
    let node = find_node(&fdt)?;
    if let Ok(features) = hypercall::get_features(0) {
        FEATURES.store(features, Ordering::Release);
    }
    Some(*NODE.call_once(|| node))
}

/// Feature submap 0 as read by [`detect`] (0 if not detected).
pub fn features() -> u32 {
    FEATURES.load(Ordering::Acquire)
}

/// Whether feature bit `bit` of submap 0 is set.
pub fn has_feature(bit: u32) -> bool {
    bit < 32 && features() & (1 << bit) != 0
}

/// Whether this is the initial (hardware) domain: XENFEAT_dom0.
pub fn is_initial_domain() -> bool {
    has_feature(abi::XENFEAT_DOM0)
}

/// Whether guest-physical equals host-physical (XENFEAT_direct_mapped).
pub fn is_direct_mapped() -> bool {
    has_feature(abi::XENFEAT_DIRECT_MAPPED)
}

/// Whether XENFEAT_auto_translated_physmap is set (required on Arm).
pub fn is_auto_translated() -> bool {
    has_feature(abi::XENFEAT_AUTO_TRANSLATED_PHYSMAP)
}

/// Pointer to the `F` at `offset` bytes into `*base`; computing it accesses nothing.
pub(crate) fn field_ptr<T, F>(base: *mut T, offset: usize) -> *mut F {
    base.cast::<u8>().wrapping_add(offset).cast::<F>()
}

/// Volatile read of a u32 field of shared_info.
fn read_shared_u32(shared: *mut SharedInfo, offset: usize) -> u32 {
    let field = field_ptr::<SharedInfo, u32>(shared, offset);
    // SAFETY: callers pass offsets of u32 fields inside the mapped shared_info page.
    unsafe { field.read_volatile() }
}

/// One 4 KiB page of our own RAM, handed to Xen.
#[repr(C, align(4096))]
pub(crate) struct Page(pub(crate) UnsafeCell<[u8; PAGE_SIZE]>);

// SAFETY: the page is only accessed through raw pointers with volatile or atomic accesses; Xen
// (or the code that hands it out) defines who writes what.
unsafe impl Sync for Page {}

impl Page {
    pub(crate) const fn new() -> Self {
        Self(UnsafeCell::new([0; PAGE_SIZE]))
    }

    pub(crate) fn address(&self) -> usize {
        self.0.get() as usize
    }
}

/// The guest frame Linux would also use: a page of the guest's own RAM (in .bss), which Xen
/// replaces with the shared_info page.
static SHARED_INFO_PAGE: Page = Page::new();
static SHARED_INFO: AtomicUsize = AtomicUsize::new(0);

/// Room for this vCPU's registered vcpu_info (a whole page, so it never straddles).
static VCPU_INFO_PAGE: Page = Page::new();
static VCPU_INFO: AtomicUsize = AtomicUsize::new(0);

/// Maps shared_info (XENMEM_add_to_physmap, XENMAPSPACE_shared_info) over a page of the
/// guest's RAM and returns its address. Idempotent.
pub fn map_shared_info() -> Result<usize, XenError> {
    let existing = SHARED_INFO.load(Ordering::Acquire);
    if existing != 0 {
        return Ok(existing);
    }
    let address = SHARED_INFO_PAGE.address();
    // SAFETY: SHARED_INFO_PAGE is reserved for this and never used as RAM by Rust code.
    unsafe {
        hypercall::add_to_physmap(
            abi::XENMAPSPACE_SHARED_INFO,
            0,
            (address / PAGE_SIZE) as u64,
        )?
    };
    SHARED_INFO.store(address, Ordering::Release);
    Ok(address)
}

/// Address of the mapped shared_info page, if [`map_shared_info`] succeeded.
pub fn shared_info_address() -> Option<usize> {
    match SHARED_INFO.load(Ordering::Acquire) {
        0 => None,
        address => Some(address),
    }
}

pub(crate) fn shared_info() -> Option<*mut SharedInfo> {
    shared_info_address().map(|a| a as *mut SharedInfo)
}

/// The wall clock Xen publishes in shared_info: (seconds, nanoseconds) since the epoch, read
/// under the wc_version sequence lock.
pub fn wallclock() -> Option<(u64, u32)> {
    let shared = shared_info()?;
    for _ in 0..1000 {
        // Xen updates the fields under the wc_version sequence count.
        let v1 = read_shared_u32(shared, offset_of!(SharedInfo, wc_version));
        core::sync::atomic::fence(Ordering::Acquire);
        let sec = read_shared_u32(shared, offset_of!(SharedInfo, wc_sec));
        let nsec = read_shared_u32(shared, offset_of!(SharedInfo, wc_nsec));
        let sec_hi = read_shared_u32(shared, offset_of!(SharedInfo, wc_sec_hi));
        core::sync::atomic::fence(Ordering::Acquire);
        let v2 = read_shared_u32(shared, offset_of!(SharedInfo, wc_version));
        if v1 == v2 && v1 & 1 == 0 {
            return Some(((u64::from(sec_hi) << 32) | u64::from(sec), nsec));
        }
    }
    None
}

/// Registers vCPU 0's vcpu_info in a page of the guest's own RAM (VCPUOP_register_vcpu_info).
/// Xen copies the old contents and raises a (spurious) upcall. Without this call the
/// vcpu_info in shared_info is used.
pub fn register_vcpu_info() -> Result<(), XenError> {
    let address = VCPU_INFO_PAGE.address();
    // SAFETY: VCPU_INFO_PAGE is reserved for Xen's vcpu_info and never used otherwise.
    unsafe { hypercall::register_vcpu_info(0, (address / PAGE_SIZE) as u64, 0)? };
    VCPU_INFO.store(address, Ordering::Release);
    Ok(())
}

/// This vCPU's vcpu_info: the registered one, else the one in shared_info.
pub(crate) fn vcpu_info() -> Option<*mut VcpuInfo> {
    match VCPU_INFO.load(Ordering::Acquire) {
        0 => shared_info().map(|s| s as *mut VcpuInfo),
        address => Some(address as *mut VcpuInfo),
    }
}

/// Whether vCPU 0's vcpu_info was registered in the guest's own page.
pub fn vcpu_info_registered() -> bool {
    VCPU_INFO.load(Ordering::Acquire) != 0
}

/// Stops the domain: SCHEDOP_shutdown_code then SCHEDOP_shutdown with `reason`. If the
/// hypervisor refuses, falls back to PSCI SYSTEM_OFF.
pub fn shutdown(reason: ShutdownReason) -> ! {
    let _ = hypercall::shutdown_code(reason);
    let error = hypercall::shutdown(reason);
    crate::console::emergency_print(format_args!("xen: SCHEDOP_shutdown failed: {error}\n"));
    crate::psci::system_off()
}
