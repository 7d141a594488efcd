//! The initial domain: built from the first multiboot module, run with VMRUN until it shuts
//! down or faults. A guest's fault ends that domain, never Mica.

use crate::svm::{self as hw, Vmcb};
use crate::{clock, consoles, mica_println, port, xen};
use alloc::vec::Vec;
use mica_hv::addr::{HostPhysAddr, HostRange};
use mica_hv::frame_alloc::FrameAllocator;
use mica_hv::xen::{DomainConfig, GuestArch, Xen};
use mica_x86::decode::{self, Mode};
use mica_x86::elf;
use mica_x86::handler::{self, Action, ExitEnv, Fault};
use mica_x86::lapic::{self, Lapic};
use mica_x86::legacy::{Pic, Pit, PIT_IRQ};
use mica_x86::multiboot::{self, Info, Module};
use mica_x86::npt::{Npt, Perm, TableMemory};
use mica_x86::svm::{self, attr, control, misc1, misc2, save};
use mica_x86::xen_x86;
use spin::Mutex;

/// Page size.
pub const PAGE: u64 = 4096;
/// Guest RAM of the initial domain, from guest-physical 0, unless `dom0_mem=` says otherwise.
const DEFAULT_GUEST_RAM: u64 = 32 << 20;
/// Bounds for `dom0_mem=` (the top stays below the 4 GiB Mica identity-maps).
const MIN_GUEST_RAM: u64 = 4 << 20;
const MAX_GUEST_RAM: u64 = 3 << 30;
/// Where the kernel image is loaded and entered (PVH-style, 32-bit protected mode).
const GUEST_LOAD: u64 = 0x10_0000;
/// Where the start-info block, its command line and memory map go.
const GUEST_START_INFO: u64 = 0x6000;
const GUEST_CMDLINE: u64 = 0x6100;
const GUEST_CMDLINE_MAX: usize = 0x100;
const GUEST_MEMMAP: u64 = 0x6200;
/// The module list (one entry: the initrd), after the one-entry memory map.
const GUEST_MODLIST: u64 = 0x6280;
/// Bytes of one `hvm_modlist_entry` (paddr, size, cmdline_paddr, reserved).
const MODLIST_ENTRY_SIZE: usize = 32;
/// The ACPI tables (RSDP first), after the module list, in the same page.
const GUEST_ACPI: u64 = 0x6400;
/// The page holding start info, command line, maps and ACPI tables: reserved for ACPI in the
/// memory map (Linux maps ACPI tables it must not take for RAM).
const GUEST_INFO_PAGE: u64 = 0x6000;
/// Memory-map entry type of ACPI tables.
const MEMMAP_ACPI: u32 = 3;
/// The MSRPM's first range (MSRs 0-0x1fff, 2 bits each: read, write).
const MSRPM_BITS_PER_MSR: u32 = 2;
/// `hvm_start_info.magic` ("xEn3" with the top bit flipped).
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Memory-map entry type of RAM.
const MEMMAP_RAM: u32 = 1;
/// The vector event-channel upcalls arrive on (HVM_PARAM_CALLBACK_IRQ type 2, a vector).
pub const UPCALL_VECTOR: u8 = 0xf3;
/// HVM_PARAM_CALLBACK_IRQ's type field (bits 56-63): a vector.
const CALLBACK_TYPE_VECTOR: u64 = 2 << 56;
/// I/O permission map: 12 KiB, one bit per port (all set: every port traps).
const IOPM_SIZE: u64 = 3 * PAGE;
/// MSR permission map: 8 KiB; MSRs outside its three ranges always trap.
const MSRPM_SIZE: u64 = 2 * PAGE;
/// The MSRPM's third range (0xC001_0000..0xC001_1FFF: SVM and other AMD MSRs) trapped.
const MSRPM_RANGE3: core::ops::Range<usize> = 0x1000..0x1800;
/// The guest's address-space id (nonzero; one guest).
const GUEST_ASID: u32 = 1;
/// RFLAGS reserved bit 1, and IF.
const RFLAGS_FIXED: u64 = 1 << 1;
const RFLAGS_IF: u64 = 1 << 9;
/// CR0 at entry: protection on, paging off (PE | ET | NE).
const GUEST_CR0: u64 = 0x31;
/// Architectural reset values.
const DR6_RESET: u64 = 0xffff_0ff0;
const DR7_RESET: u64 = 0x400;
const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// The guest's COM1 (its output joins the console multiplexer).
const GUEST_COM1: u16 = 0x3f8;
/// 16550 line status register offset, and "transmitter empty" for reads.
const UART_LSR: u16 = 5;
const UART_LSR_IDLE: u32 = 0x60;

/// Host frames: the RAM above Mica and its modules.
pub static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

extern "C" {
    static __bss_end: u8;
}

/// Nested tables in identity-mapped host RAM; new tables come from [`FRAMES`].
pub struct HostTables;

impl TableMemory for HostTables {
    fn alloc_table(&mut self) -> Option<u64> {
        alloc_zeroed(PAGE, PAGE)
    }
    fn read_entry(&self, table: u64, index: usize) -> u64 {
        // SAFETY: `table` is a table page Mica allocated (or read from an entry Mica wrote),
        // identity-mapped; index < 512 keeps the access inside it.
        unsafe { ((table as usize + (index % 512) * 8) as *const u64).read_volatile() }
    }
    fn write_entry(&mut self, table: u64, index: usize, value: u64) {
        // SAFETY: as for `read_entry`; table pages are Mica's own.
        unsafe { ((table as usize + (index % 512) * 8) as *mut u64).write_volatile(value) }
    }
}

/// Allocates zeroed host memory.
pub fn alloc_zeroed(size: u64, align: u64) -> Option<u64> {
    let pa = FRAMES.lock().as_mut()?.alloc(size, align)?.raw();
    // SAFETY: a fresh allocation from the frame allocator: identity-mapped RAM nobody uses.
    unsafe { core::ptr::write_bytes(pa as *mut u8, 0, size as usize) };
    Some(pa)
}

/// One domain with one vCPU.
pub struct Domain {
    /// Domain id.
    pub id: u16,
    /// Nested page tables.
    pub npt: Npt,
    /// Hypervisor pages it maps (shared_info, grant frames): kind, host page, guest frame.
    pub specials: Vec<(mica_hv::xen::SpecialPage, u64, Option<u64>)>,
    /// The vCPU's VMCB.
    pub vmcb: Vmcb,
    /// The vCPU's other general-purpose registers.
    pub gprs: [u64; 16],
    /// An event-channel upcall waits for delivery.
    pub upcall_pending: bool,
    /// The nested tables changed: flush the guest's TLB before the next VMRUN.
    pub flush_tlb: bool,
    /// The emulated 8259A pair and PIT channel 0 (the tick of a guest without an APIC).
    pub pic: Pic,
    /// See `pic`.
    pub pit: Pit,
    /// The vCPU's local APIC (x2APIC registers only).
    pub lapic: Lapic,
}

/// Everything guests can reach, behind one lock (one CPU today).
pub struct Machine {
    /// Xen state of every domain.
    pub xen: Xen,
    /// The domains.
    pub domains: Vec<Domain>,
    nrip_save: bool,
}

/// Sets up memory and SVM, builds the initial domain and runs it.
pub fn start(info: &Info, modules: &[Module], cmdline: &str) {
    let options = mica_hv::cmdline::parse(cmdline);
    let ram_size = options
        .dom0_mem
        .map_or(DEFAULT_GUEST_RAM, |m| m.clamp(MIN_GUEST_RAM, MAX_GUEST_RAM))
        .next_multiple_of(2 << 20);
    if !init_frames(info, modules) {
        mica_println!("no usable RAM above the modules");
        return;
    }
    let Some(hsave) = alloc_zeroed(PAGE, PAGE) else {
        return;
    };
    let features = match hw::enable(hsave) {
        Ok(f) => f,
        Err(why) => {
            mica_println!("AMD-V unavailable: {why:?} (QEMU: -cpu max or -cpu EPYC,+svm,+npt)");
            return;
        }
    };
    mica_println!(
        "AMD-V with nested paging on; next-RIP save: {}",
        if features.nrip_save {
            "yes"
        } else {
            "no (decoding instruction lengths)"
        }
    );
    let Some(kernel) = modules.first() else {
        mica_println!("no initial-domain kernel module given");
        return;
    };
    let apic = crate::apic::init();
    match clock::calibrate() {
        Some(hz) if apic && crate::apic::available() => {
            mica_println!("TSC at {} kHz; local APIC timer preempts guests", hz / 1000)
        }
        Some(hz) => mica_println!(
            "TSC at {} kHz; no local APIC timer: guests are preempted only when they PAUSE",
            hz / 1000
        ),
        None => {
            mica_println!("no PIT to calibrate the TSC against");
            return;
        }
    }
    let cmdline = module_cmdline(kernel);
    let mut machine = Machine {
        xen: Xen::new(),
        domains: Vec::new(),
        nrip_save: features.nrip_save,
    };
    match build_domain(&mut machine, 0, kernel, modules.get(1), cmdline, ram_size) {
        Ok(()) => mica_println!(
            "DOM0: {} KiB kernel, {} MiB RAM, command line `{}`",
            kernel.len() / 1024,
            ram_size >> 20,
            cmdline
        ),
        Err(why) => {
            mica_println!("DOM0 not built: {why}");
            return;
        }
    }
    run_all(&mut machine);
}

fn module_cmdline(m: &Module) -> &'static str {
    if m.string == 0 {
        return "";
    }
    // SAFETY: the loader's module string in low RAM, read up to a NUL within 256 bytes.
    let bytes = unsafe { crate::hv::phys_bytes(u64::from(m.string), 256) };
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let s = core::str::from_utf8(&bytes[..len]).unwrap_or("");
    multiboot::split_module_string(s).1
}

fn init_frames(info: &Info, modules: &[Module]) -> bool {
    const MIB: u64 = 1 << 20;
    let Some(upper_kib) = info.mem_upper_kib else {
        return false;
    };
    // Usable RAM: 1 MiB up to the top the loader reported, below the 4 GiB Mica maps.
    let top = (MIB + u64::from(upper_kib) * 1024).min(1 << 32);
    // Only the linker symbol's address is taken, never its contents.
    let image_end = core::ptr::addr_of!(__bss_end) as u64;
    // QEMU puts the info block and module strings after the modules; leave a margin.
    let used = modules.iter().map(|m| m.end).fold(image_end, u64::max) + MIB;
    let start = used.next_multiple_of(2 * MIB);
    let Some(range) = HostRange::new(HostPhysAddr::new(start), top.saturating_sub(start)) else {
        return false;
    };
    if top <= start {
        return false;
    }
    let mut frames = FrameAllocator::new();
    frames.add_region(range);
    *FRAMES.lock() = Some(frames);
    true
}

fn build_domain(
    m: &mut Machine,
    id: u16,
    kernel: &Module,
    initrd: Option<&Module>,
    cmdline: &str,
    ram_size: u64,
) -> Result<(), &'static str> {
    let ram = alloc_zeroed(ram_size, 2 << 20).ok_or("no memory for guest RAM")?;
    let mut npt = Npt::new(&mut HostTables).map_err(|_| "no memory for nested tables")?;
    npt.map_range(&mut HostTables, 0, ram, ram_size, Perm::ReadWrite)
        .map_err(|_| "nested mapping failed")?;
    let (entry, kernel_end) = load_kernel(ram, ram_size, kernel)?;
    let initrd_at = match initrd {
        Some(m) => Some(load_initrd(ram, ram_size, kernel_end, m)?),
        None => None,
    };
    write_start_info(ram, ram_size, cmdline, initrd_at);

    let vmcb_pa = alloc_zeroed(PAGE, PAGE).ok_or("no memory for the VMCB")?;
    let iopm = alloc_zeroed(IOPM_SIZE, PAGE).ok_or("no memory for the I/O map")?;
    let msrpm = alloc_zeroed(MSRPM_SIZE, PAGE).ok_or("no memory for the MSR map")?;
    // SAFETY: a fresh allocation of IOPM_SIZE bytes.
    unsafe { core::ptr::write_bytes(iopm as *mut u8, 0xff, IOPM_SIZE as usize) };
    let range3 = (msrpm as usize + MSRPM_RANGE3.start) as *mut u8;
    // SAFETY: MSRPM_RANGE3 lies inside the fresh MSRPM_SIZE-byte allocation.
    unsafe { core::ptr::write_bytes(range3, 0xff, MSRPM_RANGE3.len()) };
    // The APIC's MSRs trap too (they are in the first range, MSR n at bits 2n and 2n+1).
    for msr in core::iter::once(lapic::MSR_APIC_BASE)
        .chain(lapic::MSR_X2APIC_FIRST..=lapic::MSR_X2APIC_LAST)
    {
        let bit = msr * MSRPM_BITS_PER_MSR;
        let byte = (msrpm + u64::from(bit / 8)) as *mut u8;
        // SAFETY: MSR <= 0x8ff gives a byte offset below 0x240, inside the allocation.
        let old = unsafe { byte.read_volatile() };
        // SAFETY: as above.
        unsafe { byte.write_volatile(old | 0b11 << (bit % 8)) };
    }
    let mut vmcb = Vmcb::new(vmcb_pa);
    init_vmcb(&mut vmcb, iopm, msrpm, npt.root(), entry);
    if crate::apic::available() {
        // Mica's own tick preempts a spinning guest; PAUSE need not exit.
        let intercepts: u32 = vmcb.read(control::INTERCEPT_MISC1);
        vmcb.write(control::INTERCEPT_MISC1, intercepts & !misc1::PAUSE);
    }

    let mut cfg = DomainConfig::domu(id, 1);
    cfg.privileged = id == 0;
    cfg.console_io = id == 0;
    cfg.arch = GuestArch::X86_64;
    // Mica serves a PV console ring too (HVM_PARAM_CONSOLE_PFN/EVTCHN), in the first frame
    // above RAM: a kernel built without Xen dom0 support (Debian's cloud kernels) finds its
    // hvc0 only there, whatever domain it is.
    cfg.pv_console_gfn = Some(ram_size / PAGE);
    m.domains.push(Domain {
        id,
        npt,
        specials: Vec::new(),
        vmcb,
        gprs: [0; 16],
        upcall_pending: false,
        flush_tlb: true,
        pic: Pic::new(),
        pit: Pit::default(),
        lapic: Lapic::new(0),
    });
    if let Some(d) = m.domains.last_mut() {
        d.gprs[handler::reg::RBX] = GUEST_START_INFO;
    }
    let (xen_state, domains) = (&mut m.xen, &mut m.domains);
    xen_state
        .create_domain(&cfg, &mut xen::ArchEnv::new(domains))
        .map_err(|_| "Xen layer refused the domain")?;
    xen_state.set_hvm_param(
        id,
        mica_guest_abi::xen::hvm::HVM_PARAM_CALLBACK_IRQ,
        CALLBACK_TYPE_VECTOR | u64::from(UPCALL_VECTOR),
    );
    consoles::add_domain(id, "");
    Ok(())
}

/// Copies the kernel into guest RAM: a PVH ELF (segments at their physical addresses,
/// entered at its `XEN_ELFNOTE_PHYS32_ENTRY`), or else a flat image at [`GUEST_LOAD`] entered
/// at its first byte. Returns the entry point and the end of the image in guest memory.
fn load_kernel(ram: u64, ram_size: u64, kernel: &Module) -> Result<(u64, u64), &'static str> {
    let len = usize::try_from(kernel.len()).map_err(|_| "kernel too large")?;
    // SAFETY: the loader placed the module there, in low RAM below Mica's free frames, and
    // nothing writes it while Mica reads.
    let file = unsafe { crate::hv::phys_bytes(kernel.start, len) };
    if !elf::is_elf(file) {
        if len == 0 || GUEST_LOAD + kernel.len() > ram_size {
            return Err("kernel empty or larger than guest RAM");
        }
        copy_to_guest(ram, ram_size, GUEST_LOAD, file);
        return Ok((GUEST_LOAD, GUEST_LOAD + kernel.len()));
    }
    let image = elf::parse_pvh(file).map_err(|e| match e {
        elf::ElfError::NoPvhEntry => "ELF kernel without a XEN_ELFNOTE_PHYS32_ENTRY note",
        elf::ElfError::WrongKind => "ELF kernel is not x86-64",
        _ => "malformed ELF kernel",
    })?;
    let (_, high) = image.span().ok_or("ELF kernel without loadable segments")?;
    if high > ram_size {
        return Err("ELF kernel does not fit in guest RAM");
    }
    for seg in &image.segments {
        // parse_pvh checked offset + filesz against the file.
        copy_to_guest(
            ram,
            ram_size,
            seg.paddr,
            &file[seg.offset..seg.offset + seg.filesz],
        );
    }
    Ok((u64::from(image.entry32), high))
}

/// Copies the initrd module to the top of guest RAM (page-aligned, above the kernel);
/// returns its guest-physical address and size.
fn load_initrd(
    ram: u64,
    ram_size: u64,
    kernel_end: u64,
    m: &Module,
) -> Result<(u64, u64), &'static str> {
    let len = usize::try_from(m.len()).map_err(|_| "initrd too large")?;
    let at = ram_size
        .checked_sub(m.len())
        .map(|a| a & !(PAGE - 1))
        .filter(|&a| a >= kernel_end.next_multiple_of(PAGE))
        .ok_or("initrd does not fit in guest RAM above the kernel")?;
    // SAFETY: the loader placed the module there, below Mica's free frames; read-only here.
    let file = unsafe { crate::hv::phys_bytes(m.start, len) };
    copy_to_guest(ram, ram_size, at, file);
    Ok((at, m.len()))
}

/// Copies `bytes` to guest-physical `gpa` of fresh guest RAM at host `ram`.
fn copy_to_guest(ram: u64, ram_size: u64, gpa: u64, bytes: &[u8]) {
    // Callers check gpa + len against the size of the allocation at `ram`.
    debug_assert!(gpa + bytes.len() as u64 <= ram_size);
    // SAFETY: the destination lies inside the domain's RAM allocation (checked by the
    // callers), identity-mapped, not yet running; the source is a separate module.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), (ram + gpa) as *mut u8, bytes.len()) };
}

/// PVH's `hvm_start_info` (version 1) with the command line, a one-entry memory map and the
/// initrd (guest address, size) as its one module.
fn write_start_info(ram: u64, ram_size: u64, cmdline: &str, initrd: Option<(u64, u64)>) {
    let mut info = [0u8; 56];
    info[0..4].copy_from_slice(&START_INFO_MAGIC.to_le_bytes());
    info[4..8].copy_from_slice(&1u32.to_le_bytes());
    info[32..40].copy_from_slice(&GUEST_ACPI.to_le_bytes());
    let mut modlist = [0u8; MODLIST_ENTRY_SIZE];
    if let Some((at, size)) = initrd {
        info[12..16].copy_from_slice(&1u32.to_le_bytes());
        info[16..24].copy_from_slice(&GUEST_MODLIST.to_le_bytes());
        modlist[0..8].copy_from_slice(&at.to_le_bytes());
        modlist[8..16].copy_from_slice(&size.to_le_bytes());
    }
    info[24..32].copy_from_slice(&GUEST_CMDLINE.to_le_bytes());
    info[40..48].copy_from_slice(&GUEST_MEMMAP.to_le_bytes());
    // RAM, the start-info/ACPI page, RAM.
    let regions = [
        (0, GUEST_INFO_PAGE, MEMMAP_RAM),
        (GUEST_INFO_PAGE, PAGE, MEMMAP_ACPI),
        (
            GUEST_INFO_PAGE + PAGE,
            ram_size - GUEST_INFO_PAGE - PAGE,
            MEMMAP_RAM,
        ),
    ];
    info[48..52].copy_from_slice(&(regions.len() as u32).to_le_bytes());
    let mut map = [0u8; 24 * 3];
    for (entry, (addr, size, kind)) in map.chunks_exact_mut(24).zip(regions) {
        entry[0..8].copy_from_slice(&addr.to_le_bytes());
        entry[8..16].copy_from_slice(&size.to_le_bytes());
        entry[16..20].copy_from_slice(&kind.to_le_bytes());
    }
    let acpi =
        mica_x86::acpi::build(GUEST_ACPI, 1, lapic::APIC_DEFAULT_BASE as u32).unwrap_or_default();
    let cmd = cmdline.as_bytes();
    let cmd = &cmd[..cmd.len().min(GUEST_CMDLINE_MAX - 1)];
    for (at, bytes) in [
        (GUEST_START_INFO, &info[..]),
        (GUEST_MEMMAP, &map[..]),
        (GUEST_MODLIST, &modlist[..]),
        (GUEST_ACPI, &acpi[..]),
        (GUEST_CMDLINE, cmd),
    ] {
        // SAFETY: each target is in the guest's page 0x6000 (the ACPI tables end below
        // 0x6400 + acpi::MAX_SIZE < 0x7000) of its fresh RAM, which is larger; the sources
        // are local buffers.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), (ram + at) as *mut u8, bytes.len())
        };
    }
}

/// The PVH entry state: 32-bit flat protected mode, paging off, EBX = start info.
fn init_vmcb(v: &mut Vmcb, iopm: u64, msrpm: u64, npt_root: u64, entry: u64) {
    v.write(
        control::INTERCEPT_MISC1,
        misc1::INTR
            | misc1::NMI
            | misc1::CPUID
            | misc1::PAUSE
            | misc1::HLT
            | misc1::IOIO_PROT
            | misc1::MSR_PROT
            | misc1::SHUTDOWN,
    );
    v.write(
        control::INTERCEPT_MISC2,
        misc2::VMRUN | misc2::VMMCALL | misc2::OTHER_SVM,
    );
    v.write(control::IOPM_BASE_PA, iopm);
    v.write(control::MSRPM_BASE_PA, msrpm);
    v.write(control::GUEST_ASID, GUEST_ASID);
    v.write(control::VINTR, svm::VINTR_MASKING);
    v.write(control::NP_ENABLE, 1u64);
    v.write(control::N_CR3, npt_root);
    v.write(control::CLEAN_BITS, 0u32);
    let code = attr::CODE_ER | attr::S | attr::P | attr::DB | attr::G;
    let data = attr::DATA_RW | attr::S | attr::P | attr::DB | attr::G;
    v.set_segment(save::CS, 0x08, code, u32::MAX, 0);
    for seg in [save::DS, save::ES, save::SS, save::FS, save::GS] {
        v.set_segment(seg, 0x10, data, u32::MAX, 0);
    }
    v.set_segment(save::TR, 0, attr::TSS_BUSY | attr::P, 0x67, 0);
    v.set_segment(save::LDTR, 0, attr::LDT | attr::P, 0xffff, 0);
    v.set_segment(save::GDTR, 0, 0, 0xffff, 0);
    v.set_segment(save::IDTR, 0, 0, 0xffff, 0);
    v.write(save::CPL, 0u8);
    v.write(save::EFER, svm::EFER_SVME);
    v.write(save::CR0, GUEST_CR0);
    v.write(save::CR3, 0u64);
    v.write(save::CR4, 0u64);
    v.write(save::DR6, DR6_RESET);
    v.write(save::DR7, DR7_RESET);
    v.write(save::RFLAGS, RFLAGS_FIXED);
    v.write(save::RIP, entry);
    v.write(save::RSP, 0u64);
    v.write(save::RAX, 0u64);
    v.write(save::G_PAT, PAT_RESET);
}

/// The exit handler's view of one vCPU.
struct VcpuExit<'a> {
    machine: &'a mut Machine,
    index: usize,
}

impl VcpuExit<'_> {
    fn dom(&self) -> &Domain {
        &self.machine.domains[self.index]
    }
    fn dom_mut(&mut self) -> &mut Domain {
        &mut self.machine.domains[self.index]
    }
}

impl ExitEnv for VcpuExit<'_> {
    fn gprs(&mut self) -> &mut [u64; 16] {
        &mut self.dom_mut().gprs
    }
    fn rip(&self) -> u64 {
        self.dom().vmcb.read(save::RIP)
    }
    fn set_rip(&mut self, rip: u64) {
        self.dom_mut().vmcb.write(save::RIP, rip);
    }
    fn code_mode(&self) -> Mode {
        let v = &self.dom().vmcb;
        svm::code_mode(v.read(save::EFER), v.read(save::CS + 2))
    }
    fn fetch_code(&self, buf: &mut [u8; decode::MAX_LEN]) -> usize {
        let d = self.dom();
        let cs_base: u64 = d.vmcb.read(save::CS + 8);
        let linear = cs_base.wrapping_add(d.vmcb.read(save::RIP));
        xen::fetch_virt(d, linear, buf)
    }
    fn hardware_next_rip(&self) -> Option<u64> {
        let next: u64 = self.dom().vmcb.read(control::NEXT_RIP);
        (self.machine.nrip_save && next != 0).then_some(next)
    }
    fn interrupts_enabled(&self) -> bool {
        self.dom().vmcb.read::<u64>(save::RFLAGS) & RFLAGS_IF != 0
    }
    fn host_cpuid(&self, leaf: u32, subleaf: u32) -> [u32; 4] {
        port::cpuid(leaf, subleaf)
    }
    fn ids(&self) -> (u32, u16) {
        (0, self.dom().id)
    }
    fn hypercall(&mut self, nr: u64, args: [u64; 5]) -> (i64, mica_hv::xen::After) {
        let out = xen::hypercall(self.machine, self.index, nr, args);
        (out.ret, out.after)
    }
    fn install_hypercall_page(&mut self, gpa: u64) -> bool {
        let mut page = [0u8; xen_x86::PAGE_SIZE];
        xen_x86::fill_hypercall_page(&mut page);
        xen::write_guest(self.dom_mut(), gpa, &page)
    }
    fn port_out(&mut self, port: u16, _size: u8, value: u32) {
        if port == GUEST_COM1 {
            consoles::guest_byte(self.dom().id, value as u8);
        } else if Pic::claims(port) {
            self.dom_mut().pic.port_out(port, value as u8);
        } else if Pit::claims(port) {
            self.dom_mut()
                .pit
                .port_out(port, value as u8, clock::now_ns());
        }
    }
    fn offers_local_apic(&self) -> bool {
        true
    }
    fn emulated_msr(&mut self, index: u32, write: Option<u64>) -> Option<u64> {
        if !Lapic::claims(index) {
            return None;
        }
        let apic = &mut self.dom_mut().lapic;
        match write {
            Some(value) => apic.write(index, value).ok().map(|()| 0),
            None => apic.read(index).ok(),
        }
    }
    fn port_in(&mut self, port: u16, _size: u8) -> u32 {
        if port == GUEST_COM1 + UART_LSR {
            UART_LSR_IDLE
        } else if Pic::claims(port) {
            u32::from(self.dom().pic.port_in(port))
        } else if Pit::claims(port) {
            u32::from(self.dom_mut().pit.port_in(port, clock::now_ns()))
        } else {
            u32::MAX
        }
    }
}

/// The vector of an HVM_PARAM_CALLBACK_IRQ value, if it names one.
fn callback_vector(value: u64) -> Option<u8> {
    (value & !0xff == CALLBACK_TYPE_VECTOR).then_some(value as u8)
}

/// Delivers at most one interrupt: the PIC's (the PIT tick)
/// before the event-channel upcall (on the vector the guest or the builder set in
/// HVM_PARAM_CALLBACK_IRQ; none: it waits). An interrupt is injected only when the guest
/// can take it; otherwise Mica asks for an exit at the guest's next interrupt window.
fn deliver_interrupts(d: &mut Domain, upcall_vector: Option<u8>) {
    d.pic.sync_cascade();
    let upcall = upcall_vector.filter(|_| d.upcall_pending);
    let vintr: u64 = d.vmcb.read(control::VINTR);
    let intercepts: u32 = d.vmcb.read(control::INTERCEPT_MISC1);
    d.vmcb.write(control::VINTR, vintr & !svm::VINTR_V_IRQ);
    d.vmcb
        .write(control::INTERCEPT_MISC1, intercepts & !misc1::VINTR);
    if d.pic.pending().is_none() && upcall.is_none() && !d.lapic.has_pending() {
        return;
    }
    let busy = d.vmcb.read::<u64>(control::EVENT_INJECT) & svm::EVENT_VALID != 0;
    let open = d.vmcb.read::<u64>(save::RFLAGS) & RFLAGS_IF != 0
        && d.vmcb.read::<u64>(control::INTERRUPT_SHADOW) & 1 == 0;
    if busy || !open {
        // Exit as soon as the guest can take an interrupt (the V_IRQ is only a request).
        d.vmcb.write(
            control::VINTR,
            vintr | svm::VINTR_V_IRQ | svm::VINTR_IGN_TPR | svm::VINTR_PRIO_HIGHEST,
        );
        d.vmcb
            .write(control::INTERCEPT_MISC1, intercepts | misc1::VINTR);
        return;
    }
    let vector = match d.pic.acknowledge().or_else(|| d.lapic.take_pending()) {
        Some(v) => v,
        None => {
            d.upcall_pending = false;
            match upcall {
                Some(v) => v,
                None => return,
            }
        }
    };
    d.vmcb.write(
        control::EVENT_INJECT,
        u64::from(vector) | svm::EVENT_TYPE_INTR | svm::EVENT_VALID,
    );
}

/// Fires the domain's due timers (its Xen PV timers raise VIRQ_TIMER; its PIT raises line
/// 0) and returns its next timer deadline, if any.
fn run_timers(m: &mut Machine, index: usize, now: u64) -> Option<u64> {
    let id = m.domains[index].id;
    let (xen_state, domains) = (&mut m.xen, &mut m.domains);
    xen_state.expire_timers(id, now, &mut xen::ArchEnv::new(domains));
    let d = &mut m.domains[index];
    if d.pit.poll(now) {
        d.pic.raise(PIT_IRQ);
    }
    match (d.pit.deadline(), m.xen.next_timer(id)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// HLT with interrupts on: sleeps (on Mica's tick) until one of the domain's timers fires or
/// an upcall is pending. A domain with nothing that could wake it resumes at once.
fn wait_for_interrupt(m: &mut Machine, index: usize) {
    loop {
        let now = clock::now_ns();
        let deadline = run_timers(m, index, now);
        let d = &m.domains[index];
        if d.upcall_pending || d.pic.pending().is_some() || d.lapic.has_pending() {
            return;
        }
        let Some(deadline) = deadline else {
            return;
        };
        if crate::apic::available() {
            crate::apic::arm(now, deadline.saturating_sub(now));
            crate::apic::idle();
        } else {
            core::hint::spin_loop();
        }
    }
}

/// SCHEDOP_poll with nothing pending: sleeps like [`wait_for_interrupt`], and also until a
/// polled port becomes pending (the Xen layer then ends the poll: its senders here are the
/// domain's own timers and Mica's backends) or system time reaches `deadline_ns`. With
/// nothing that could wake it, it resumes at once. Then the poll is over either way.
fn wait_for_poll(m: &mut Machine, index: usize, deadline_ns: Option<u64>) {
    let id = m.domains[index].id;
    loop {
        let now = clock::now_ns();
        let timers = run_timers(m, index, now);
        let d = &m.domains[index];
        let interrupt = d.upcall_pending || d.pic.pending().is_some() || d.lapic.has_pending();
        let timed_out = deadline_ns.is_some_and(|t| now >= t);
        if interrupt || timed_out || !m.xen.is_polling(id, 0) {
            break;
        }
        let wake = match (timers, deadline_ns) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        if crate::apic::available() {
            crate::apic::arm(now, wake.saturating_sub(now));
            crate::apic::idle();
        } else {
            core::hint::spin_loop();
        }
    }
    m.xen.end_poll(id, 0);
}

fn run_all(m: &mut Machine) {
    let index = 0;
    let mut exits: u64 = 0;
    loop {
        {
            let id = m.domains[index].id;
            let vector = m
                .xen
                .hvm_param(id, mica_guest_abi::xen::hvm::HVM_PARAM_CALLBACK_IRQ)
                .and_then(callback_vector);
            let now = clock::now_ns();
            let deadline = run_timers(m, index, now);
            let d = &mut m.domains[index];
            deliver_interrupts(d, vector);
            let flush = if core::mem::take(&mut d.flush_tlb) {
                svm::TLB_FLUSH_ASID
            } else {
                0
            };
            d.vmcb.write(control::TLB_CONTROL, flush);
            // Mica's tick: at the guest's next timer deadline, or after a slice at most.
            let until = deadline.map_or(crate::apic::SLICE_NS, |t| t.saturating_sub(now));
            crate::apic::arm(now, until);
            hw::run(&mut d.vmcb, &mut d.gprs);
        }
        exits += 1;
        let d = &m.domains[index];
        let (code, info1, info2): (u64, u64, u64) = (
            d.vmcb.read(control::EXIT_CODE),
            d.vmcb.read(control::EXIT_INFO1),
            d.vmcb.read(control::EXIT_INFO2),
        );
        // A hypercall reads and writes RAX through the register array.
        let rax: u64 = d.vmcb.read(save::RAX);
        let interrupted: u64 = d.vmcb.read(control::EXIT_INT_INFO);
        let d = &mut m.domains[index];
        d.gprs[handler::reg::RAX] = rax;
        // An event whose delivery the exit interrupted is delivered again.
        if interrupted & svm::EVENT_VALID != 0 {
            d.vmcb.write(control::EVENT_INJECT, interrupted);
        }
        let exit = svm::decode_exit(code, info1, info2);
        let action = handler::handle(exit, &mut VcpuExit { machine: m, index });
        let d = &mut m.domains[index];
        let rax = d.gprs[handler::reg::RAX];
        d.vmcb.write(save::RAX, rax);
        let id = d.id;
        match action {
            Action::Resume | Action::Yield => {}
            Action::Block => wait_for_interrupt(m, index),
            Action::BlockPoll { deadline_ns } => wait_for_poll(m, index, deadline_ns),
            Action::InjectException(vector) => {
                let mut event = u64::from(vector) | svm::EVENT_TYPE_EXCEPTION | svm::EVENT_VALID;
                if vector == handler::VECTOR_GP {
                    event |= svm::EVENT_ERROR_VALID;
                }
                d.vmcb.write(control::EVENT_INJECT, event);
            }
            Action::Shutdown(reason) => {
                mica_println!("DOM{id}: shut down ({reason:?}) after {exits} exits");
                destroy(m, index);
                return;
            }
            Action::Kill(fault) => {
                let rip: u64 = d.vmcb.read(save::RIP);
                match fault {
                    Fault::NestedPageFault { gpa, error } => mica_println!(
                        "DOM{id}: killed: nested page fault at {gpa:#x} (error {error:#x}) at rip {rip:#x}"
                    ),
                    other => mica_println!(
                        "DOM{id}: killed: {other:?} at rip {rip:#x} (exit {code:#x})"
                    ),
                }
                destroy(m, index);
                return;
            }
        }
    }
}

fn destroy(m: &mut Machine, index: usize) {
    let id = m.domains[index].id;
    let (xen_state, domains) = (&mut m.xen, &mut m.domains);
    xen_state.destroy_domain(id, &mut xen::ArchEnv::new(domains));
    consoles::remove_domain(id);
    m.domains.remove(index);
}
