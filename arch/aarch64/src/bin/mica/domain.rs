//! Building domains from their boot descriptions: memory, stage 2, kernel, initrd, device
//! tree, virtual devices and vCPUs.

use crate::stage2;
use crate::world::{Domain, FrameTables, Power, Vcpu, VirtualUart, FRAMES, PCPUS};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use mica_aarch64::pagetable::{stage2_device, stage2_ram, PageTable, INPUT_BITS};
use mica_guest_abi::layout;
use mica_hv::addr::{GuestPhysAddr, GuestRange, HostPhysAddr, HostRange};
use mica_hv::bootcfg::GicVersion;
use mica_hv::bootcfg::{self, DomainKind, DomainSpec, HostDevice, HostInfo};
use mica_hv::guest_fdt::{self, Dom0Fdt, DomuFdt, GuestGic, HypervisorNode};
use mica_hv::ratelimit::RateLimiter;
use mica_hv::vgic::{Vgic, VgicConfig, VgicV2Config, DIST_V2_SIZE, MAX_VCPUS_V2};
use mica_hv::vpl011::Vpl011;
use spin::Mutex;

const MIB2: u64 = 2 << 20;
/// Largest device tree Mica builds for a guest (Linux maps it within one 2 MiB block).
const MAX_GUEST_DTB: u64 = 2 << 20;
/// SPIs a domU's virtual GIC offers (the vPL011 is the first).
const DOMU_SPIS: u32 = 32;
/// Each vCPU's redistributor frame (RD_base + SGI_base).
const REDIST_FRAME: u64 = 0x2_0000;
/// SPIs the initial domain's virtual GIC offers (it mirrors the host's devices).
const HOST_SPIS: u32 = 256;
/// The part of GICv2's virtual CPU interface a guest uses (GICC_DIR sits at 0x1000).
const GICV_SIZE: u64 = 0x2000;

/// Why a domain could not be built. Shown as one line naming the domain.
pub type BuildError = String;

/// The fields of the arm64 `Image` header Mica needs.
struct ImageHeader {
    text_offset: u64,
    image_size: u64,
}

fn read_image_header(kernel: &[u8]) -> Result<ImageHeader, String> {
    const MAGIC: &[u8; 4] = b"ARM\x64";
    if kernel.len() < 64 {
        return Err("kernel module is too small to be an arm64 Image".into());
    }
    if &kernel[0x38..0x3c] != MAGIC {
        if kernel.starts_with(&[0x1f, 0x8b]) {
            return Err(
                "kernel module is gzip-compressed; give Mica the uncompressed Image".into(),
            );
        }
        return Err("kernel module is not an arm64 Image (no ARM\\x64 magic)".into());
    }
    let word = |off: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&kernel[off..off + 8]);
        u64::from_le_bytes(b)
    };
    let image_size = word(16);
    // An image_size of 0 means an old kernel that expects text_offset 0x80000.
    let text_offset = if image_size == 0 { 0x8_0000 } else { word(8) };
    Ok(ImageHeader {
        text_offset,
        image_size,
    })
}

/// Host memory of a boot module, as a byte slice.
///
/// # Safety
/// `module` must be RAM that holds the module and stays untouched while the slice lives
/// (boot modules are reserved from the frame allocator).
pub unsafe fn module_bytes(module: HostRange) -> &'static [u8] {
    // SAFETY: per the contract; identity-mapped normal memory.
    unsafe { core::slice::from_raw_parts(module.start.raw() as *const u8, module.size as usize) }
}

/// Copies `bytes` into the domain's memory at `gpa`, and cleans the data cache over it so
/// a guest starting with caches off sees it.
fn copy_to_guest(dom: &Domain, gpa: GuestPhysAddr, bytes: &[u8]) -> Result<(), String> {
    let mut done = 0usize;
    while done < bytes.len() {
        let at = gpa
            .checked_add(done as u64)
            .ok_or_else(|| String::from("guest address overflow"))?;
        let (host, avail) = dom
            .ram_to_host(at)
            .ok_or_else(|| format!("{at} is outside the domain's RAM"))?;
        let n = (avail as usize).min(bytes.len() - done);
        // SAFETY: `host..host+n` is RAM owned by this domain (from `ram_to_host`), which is
        // being built and not yet running; source and destination cannot overlap because
        // boot modules are reserved from the frame allocator.
        unsafe { core::ptr::copy_nonoverlapping(bytes[done..].as_ptr(), host.raw() as *mut u8, n) };
        crate::cache::clean_to_poc(host.raw() as usize, n);
        done += n;
    }
    Ok(())
}

fn mpidr_of(index: usize) -> u64 {
    // Aff0 holds up to 16 CPUs (the GICv3 SGI target list), Aff1 counts groups of 16.
    ((index as u64 / 16) << 8) | (index as u64 % 16)
}

/// Guest RAM layout: where each host chunk appears to the guest.
fn guest_ram_layout(
    chunks: &[HostRange],
    direct: bool,
) -> Result<Vec<(GuestPhysAddr, HostRange)>, String> {
    if direct {
        return Ok(chunks
            .iter()
            .map(|c| (GuestPhysAddr::new(c.start.raw()), *c))
            .collect());
    }
    let mut out = Vec::new();
    let banks = [
        (layout::GUEST_RAM0_BASE, layout::GUEST_RAM0_SIZE),
        (layout::GUEST_RAM1_BASE, layout::GUEST_RAM1_SIZE),
    ];
    let (mut bank, mut used) = (0usize, 0u64);
    for c in chunks {
        let mut chunk = *c;
        while chunk.size > 0 {
            let (base, size) = *banks
                .get(bank)
                .ok_or("memory does not fit Xen's guest RAM banks")?;
            let room = size - used;
            if room == 0 {
                bank += 1;
                used = 0;
                continue;
            }
            let n = room.min(chunk.size);
            let piece = HostRange::new(chunk.start, n).ok_or("bad chunk")?;
            out.push((GuestPhysAddr::new(base + used), piece));
            used += n;
            chunk = HostRange::new(HostPhysAddr::new(chunk.start.raw() + n), chunk.size - n)
                .ok_or("bad chunk")?;
        }
    }
    Ok(out)
}

/// Guest RAM as contiguous guest ranges (for the device tree).
fn guest_banks(ram: &[(GuestPhysAddr, HostRange)]) -> Vec<GuestRange> {
    let mut banks: Vec<GuestRange> = Vec::new();
    for &(g, h) in ram {
        match banks.last_mut() {
            Some(last) if last.end() == g => last.size += h.size,
            _ => banks.extend(GuestRange::new(g, h.size)),
        }
    }
    banks
}

fn allocate_ram(spec: &DomainSpec) -> Result<Vec<HostRange>, String> {
    let mut frames = FRAMES.lock();
    let frames = frames.as_mut().ok_or("no frame allocator")?;
    let size = spec.memory_bytes;
    if let Some(fixed) = spec.static_mem {
        // Reserved at boot for this domain alone (xen,static-mem).
        return Ok(vec![fixed]);
    }
    if spec.kind == DomainKind::Initial {
        // Direct-mapped: one contiguous bank keeps IPA == PA simple for Linux.
        let base = frames.alloc(size, MIB2).ok_or_else(|| {
            format!(
                "needs {} MiB of contiguous memory, the largest free block is {} MiB",
                size >> 20,
                frames.largest_free() >> 20
            )
        })?;
        Ok(vec![HostRange::new(base, size).ok_or("bad size")?])
    } else {
        frames.alloc_chunks(size, MIB2).ok_or_else(|| {
            format!(
                "needs {} MiB of memory, only {} MiB are free",
                size >> 20,
                frames.free_bytes() >> 20
            )
        })
    }
}

fn free_ram(chunks: &[HostRange]) {
    if let Some(frames) = FRAMES.lock().as_mut() {
        for &c in chunks {
            let _ = frames.free(c);
        }
    }
}

/// Picks the least loaded online physical CPU.
fn place_vcpu() -> usize {
    let loads: Vec<usize> = PCPUS
        .iter()
        .map(|p| {
            if p.online.load(Ordering::Acquire) {
                p.load.load(Ordering::Relaxed)
            } else {
                usize::MAX
            }
        })
        .collect();
    let cpu = mica_hv::sched::place(&loads);
    PCPUS[cpu].load.fetch_add(1, Ordering::Relaxed);
    cpu
}

/// Where a domain's vCPUs run.
pub struct Placement {
    /// `pins[i]` is the physical CPU of vCPU `i` (its CPU pool's choice); `None`: the least
    /// loaded online CPU.
    pub pins: Option<Vec<usize>>,
    /// The vCPUs wait in WFI natively (see [`Vcpu::wfi_native`]).
    pub wfi_native: bool,
}

/// Builds domain `id` from `spec` and starts its first vCPU.
pub fn build(
    id: u16,
    spec: &DomainSpec,
    host: &HostInfo,
    host_dtb: &[u8],
    placement: &Placement,
) -> Result<Arc<Domain>, BuildError> {
    let fail = |what: String| format!("domain {}: {what}", spec.name);
    let initial = spec.kind == DomainKind::Initial;
    // SAFETY: boot modules are reserved in the frame allocator and never written.
    let kernel = unsafe { module_bytes(spec.kernel) };
    let header = read_image_header(kernel).map_err(fail)?;

    let chunks = allocate_ram(spec).map_err(fail)?;
    let direct = initial || spec.static_mem.is_some();
    let ram = match guest_ram_layout(&chunks, direct) {
        Ok(r) => r,
        Err(e) => {
            free_ram(&chunks);
            return Err(fail(e));
        }
    };
    let vcpu_count = spec.vcpus as usize;
    let mpidrs: Vec<u64> = (0..vcpu_count).map(mpidr_of).collect();

    // Stage 2: guest RAM only. Devices trap and are emulated.
    let mut table = {
        let mut frames = FRAMES.lock();
        let frames = frames
            .as_mut()
            .ok_or_else(|| fail("no frame allocator".into()))?;
        let mut tables = FrameTables(frames);
        let mut table = PageTable::new(&mut tables).map_err(|e| fail(format!("stage 2: {e:?}")))?;
        for &(g, h) in &ram {
            if let Err(e) = table.map(&mut tables, g.raw(), h.start.raw(), h.size, stage2_ram()) {
                table.destroy(&mut tables);
                for &c in &chunks {
                    let _ = tables.0.free(c);
                }
                return Err(fail(format!("stage 2 mapping failed: {e:?}")));
            }
        }
        Some(table)
    };
    let root = table.as_ref().map(|t| t.root()).unwrap_or(0);

    // The initial domain owns every host device Mica does not use itself.
    let devices = if initial {
        match passthrough_devices(id, host, host_dtb, table.as_mut()) {
            Ok(d) => d,
            Err(e) => {
                if let (Some(t), Some(frames)) = (table.take(), FRAMES.lock().as_mut()) {
                    t.destroy(&mut FrameTables(frames));
                }
                free_ram(&chunks);
                crate::passthrough::release(id);
                return Err(fail(e));
            }
        }
    } else {
        Vec::new()
    };
    let domu_passthrough = match spec.device_tree.filter(|_| !initial) {
        Some(module) => match domu_passthrough(id, spec, module, host_dtb, table.as_mut()) {
            Ok(p) => Some(p),
            Err(e) => {
                if let (Some(t), Some(frames)) = (table.take(), FRAMES.lock().as_mut()) {
                    t.destroy(&mut FrameTables(frames));
                }
                if spec.static_mem.is_none() {
                    free_ram(&chunks);
                }
                crate::passthrough::release(id);
                return Err(fail(e));
            }
        },
        None => None,
    };

    let uart = if initial {
        let uart = host
            .uart
            .as_ref()
            .ok_or_else(|| fail("the host has no console UART to mirror".into()))?;
        VirtualUart {
            model: Mutex::new(Vpl011::new()),
            range: GuestRange::new(GuestPhysAddr::new(uart.base.start.raw()), uart.base.size)
                .ok_or_else(|| fail("bad UART range".into()))?,
            intid: uart.intid.unwrap_or(layout::GUEST_VPL011_SPI),
        }
    } else {
        VirtualUart {
            model: Mutex::new(Vpl011::new()),
            range: GuestRange::new(
                GuestPhysAddr::new(layout::GUEST_PL011_BASE),
                layout::GUEST_PL011_SIZE,
            )
            .ok_or_else(|| fail("bad UART range".into()))?,
            intid: layout::GUEST_VPL011_SPI,
        }
    };
    let spis_needed = domu_passthrough
        .as_ref()
        .and_then(|p| p.spis.iter().map(|&(intid, _)| intid).max())
        .map_or(DOMU_SPIS, |max| (max - 31).div_ceil(32) * 32)
        .max(DOMU_SPIS);
    let (vgic, guest_gic) = match virtual_gic(initial, host, &mpidrs, spis_needed, table.as_mut()) {
        Ok(v) => v,
        Err(e) => {
            if let (Some(t), Some(frames)) = (table.take(), FRAMES.lock().as_mut()) {
                t.destroy(&mut FrameTables(frames));
            }
            free_ram(&chunks);
            crate::passthrough::release(id);
            return Err(fail(e));
        }
    };
    if initial || spec.enhanced {
        // Injected once per 0→1 change of evtchn_upcall_pending, like Xen: an edge.
        vgic.fix_edge_triggered(layout::EVTCHN_PPI);
    }

    // Passed-through SPIs are listed with the hardware bit.
    for intid in crate::passthrough::owned(id) {
        vgic.set_hw_backed(intid, true);
    }
    let vcpus = (0..vcpu_count)
        .map(|index| {
            let pcpu = match placement.pins.as_ref().and_then(|p| p.get(index)) {
                Some(&cpu) => {
                    PCPUS[cpu].load.fetch_add(1, Ordering::Relaxed);
                    cpu
                }
                None => place_vcpu(),
            };
            Vcpu::new(pcpu, mpidrs[index], placement.wfi_native)
        })
        .collect();
    let dom = Domain {
        id,
        name: spec.name.clone(),
        initial,
        vttbr: stage2::vttbr(root, id + 1),
        ram,
        static_ram: spec.static_mem.is_some(),
        stage2: Mutex::new(table.take()),
        vgic,
        uart,
        vcpus,
        dying: AtomicBool::new(false),
        log_limit: Mutex::new(RateLimiter::new(10, 2)),
        overlays: Mutex::new(Vec::new()),
        lent: Default::default(),
    };
    // From here on, dropping `dom` frees its memory and tables.

    let ram_base = dom.ram[0].0;
    let ram_size: u64 = dom.ram.iter().map(|(_, h)| h.size).sum();
    let ram_end = ram_base.raw() + ram_size;
    let kernel_at = ram_base
        .checked_add(header.text_offset)
        .ok_or_else(|| fail("bad text_offset".into()))?;
    let kernel_end = kernel_at.raw() + header.image_size.max(kernel.len() as u64);
    let mut next = align_up(kernel_end, MIB2);
    copy_to_guest(&dom, kernel_at, kernel).map_err(|e| fail(format!("loading the kernel: {e}")))?;

    let initrd = match spec.ramdisk {
        Some(module) => {
            // SAFETY: as for the kernel.
            let bytes = unsafe { module_bytes(module) };
            let at = GuestPhysAddr::new(next);
            copy_to_guest(&dom, at, bytes).map_err(|e| fail(format!("loading the initrd: {e}")))?;
            next = align_up(next + bytes.len() as u64, MIB2);
            GuestRange::new(at, bytes.len() as u64)
        }
        None => None,
    };

    let bootargs = spec.bootargs.as_deref();
    let dtb = if initial {
        let banks: Vec<HostRange> = dom.ram.iter().map(|&(_, h)| h).collect();
        let initrd_host =
            initrd.and_then(|r| HostRange::new(HostPhysAddr::new(r.start.raw()), r.size));
        let keep: Vec<&str> = devices.iter().map(|d| d.path.as_str()).collect();
        guest_fdt::rewrite_dom0_fdt(
            host_dtb,
            &Dom0Fdt {
                ram: banks,
                vcpu_mpidrs: mpidrs.clone(),
                bootargs,
                initrd: initrd_host,
                uart_path: host.uart.as_ref().map(|u| u.path.as_str()),
                keep_devices: &keep,
                hypervisor: Some(HypervisorNode {
                    grant_region: dom0_grant_region(host),
                    upcall_intid: layout::EVTCHN_PPI,
                    address_space_end: STAGE2_END,
                }),
            },
        )
    } else {
        guest_fdt::build_domu_fdt_with_passthrough(
            &DomuFdt {
                ram: guest_banks(&dom.ram),
                vcpu_mpidrs: mpidrs.clone(),
                gic: guest_gic,
                timer_flags: host.timer.flags,
                vpl011: Some((dom.uart.range, dom.uart.intid)),
                bootargs,
                initrd,
                hypervisor: spec.enhanced.then(|| HypervisorNode {
                    grant_region: GuestRange {
                        start: GuestPhysAddr::new(XEN_GRANT_BASE),
                        size: XEN_GRANT_SIZE,
                    },
                    upcall_intid: layout::EVTCHN_PPI,
                    address_space_end: STAGE2_END,
                }),
            },
            domu_passthrough.as_ref(),
        )
    }
    .map_err(|e| fail(format!("building its device tree: {e}")))?;
    if dtb.len() as u64 > MAX_GUEST_DTB {
        return Err(fail("device tree too large".into()));
    }
    let dtb_at = GuestPhysAddr::new(next);
    if next + MAX_GUEST_DTB > ram_end {
        return Err(fail(format!(
            "{} MiB of memory is too small for its kernel, initrd and device tree",
            ram_size >> 20
        )));
    }
    copy_to_guest(&dom, dtb_at, &dtb).map_err(|e| fail(format!("loading its device tree: {e}")))?;
    crate::cache::invalidate_icache();

    *dom.vcpus[0].power.lock() = Power::OnPending {
        entry: kernel_at.raw(),
        context: dtb_at.raw(),
    };
    Ok(Arc::new(dom))
}

/// A domU's devices from its partial device tree (`multiboot,device-tree`): MMIO mapped
/// where the tree says, SPIs claimed and routed to Mica for forwarding.
fn domu_passthrough(
    id: u16,
    spec: &DomainSpec,
    module: HostRange,
    host_dtb: &[u8],
    table: Option<&mut PageTable>,
) -> Result<mica_hv::passthrough::DomuPassthrough, String> {
    // SAFETY: boot modules are reserved in the frame allocator and never written.
    let blob = unsafe { module_bytes(module) };
    let pt = mica_hv::passthrough::parse_partial_dt(&spec.name, blob, host_dtb)
        .map_err(|e| format!("partial device tree: {}", e.problem))?;
    if spec.static_mem.is_none() && !pt.mmio.is_empty() {
        // Without an IOMMU a device DMAs to host addresses: its domain must be direct-mapped.
        crate::info!(
            "DOM{id}: note: {} has passed-through devices but is not direct-mapped (xen,static-mem + direct-map); their DMA will not reach its memory",
            spec.name
        );
    }
    let table = table.ok_or("no stage-2 table")?;
    {
        let mut frames = FRAMES.lock();
        let frames = frames.as_mut().ok_or("no frame allocator")?;
        let mut tables = FrameTables(frames);
        for m in &pt.mmio {
            table
                .map(
                    &mut tables,
                    m.guest.start.raw(),
                    m.host.start.raw(),
                    m.host.size,
                    stage2_device(),
                )
                .map_err(|e| format!("mapping {:?}: {e:?}", m.host))?;
        }
    }
    for &(intid, edge) in &pt.spis {
        if let Err(owner) = crate::passthrough::assign(intid, id) {
            return Err(format!("interrupt {intid} is already owned by DOM{owner}"));
        }
        let boot_cpu = crate::world::PCPUS[0]
            .mpidr
            .load(core::sync::atomic::Ordering::Relaxed) as u64;
        crate::gic::enable_spi(intid, boot_cpu, !edge);
    }
    Ok(pt)
}

/// Maps `r` 1:1 as device memory, page-rounded. Pages already mapped 1:1 (small devices
/// sharing a page, like QEMU's 512-byte virtio-mmio transports) are left as they are.
fn map_identity_shared(
    table: &mut PageTable,
    tables: &mut FrameTables<'_>,
    r: &HostRange,
) -> Result<(), mica_aarch64::pagetable::MapError> {
    const PAGE: u64 = 4096;
    let start = r.start.align_down(PAGE).raw();
    let end = r
        .end()
        .checked_align_up(PAGE)
        .map(|e| e.raw())
        .ok_or(mica_aarch64::pagetable::MapError::OutOfRange)?;
    let mut page = start;
    while page < end {
        if table.translate(tables, page) == Some(page) {
            page += PAGE;
            continue;
        }
        let run_start = page;
        while page < end && table.translate(tables, page).is_none() {
            page += PAGE;
        }
        if page == run_start {
            // Mapped, but elsewhere: a conflict.
            return Err(mica_aarch64::pagetable::MapError::AlreadyMapped);
        }
        table.map(
            tables,
            run_start,
            run_start,
            page - run_start,
            stage2_device(),
        )?;
    }
    Ok(())
}

/// Maps every passable host device 1:1 into the initial domain and claims its SPIs.
fn passthrough_devices(
    id: u16,
    host: &HostInfo,
    host_dtb: &[u8],
    table: Option<&mut PageTable>,
) -> Result<Vec<HostDevice>, String> {
    let table = table.ok_or("no stage-2 table")?;
    let mica_uart: Vec<&str> = host.uart.iter().map(|u| u.path.as_str()).collect();
    let (devices, refused) = bootcfg::host_devices(host_dtb, &mica_uart, 1 << INPUT_BITS)
        .map_err(|e| format!("reading host devices: {e}"))?;
    for (path, why) in &refused {
        crate::info!("DOM{id}: {path} not passed through: {why}");
    }
    let mut frames = FRAMES.lock();
    let frames = frames.as_mut().ok_or("no frame allocator")?;
    let mut tables = FrameTables(frames);
    let mut given = Vec::new();
    for dev in devices {
        let mut ok = true;
        for r in &dev.regs {
            if let Err(e) = map_identity_shared(table, &mut tables, r) {
                crate::info!(
                    "DOM{id}: {} not passed through: mapping {r:?}: {e:?}",
                    dev.path
                );
                ok = false;
                break;
            }
        }
        if !ok {
            continue;
        }
        for &(intid, edge) in &dev.spis {
            if let Err(owner) = crate::passthrough::assign(intid, id) {
                return Err(format!(
                    "{}: interrupt {intid} is already owned by DOM{owner}",
                    dev.path
                ));
            }
            crate::gic::enable_spi(
                intid,
                crate::world::PCPUS[0]
                    .mpidr
                    .load(core::sync::atomic::Ordering::Relaxed) as u64,
                !edge,
            );
        }
        given.push(dev);
    }
    Ok(given)
}

/// The domain's virtual GIC, of the host's version. GICv2 guests get the hardware's
/// virtual CPU interface (GICV) mapped at their GICC address; GICv3 guests use the system
/// registers. The initial domain sees the host's addresses, domUs Xen's guest map.
fn virtual_gic(
    initial: bool,
    host: &HostInfo,
    mpidrs: &[u64],
    domu_spis: u32,
    table: Option<&mut PageTable>,
) -> Result<(Vgic, GuestGic), String> {
    let gicd = |base: u64, size: u64| {
        GuestRange::new(GuestPhysAddr::new(base), size).ok_or_else(|| String::from("bad GIC range"))
    };
    match crate::gic::version() {
        GicVersion::V3 => {
            let (dist, redist) = if initial {
                let redist = host
                    .gic
                    .redist
                    .first()
                    .ok_or("host GIC has no redistributors")?;
                (host.gic.dist.start.raw(), redist.start.raw())
            } else {
                (layout::GUEST_GICD_BASE, layout::GUEST_GICR_BASE)
            };
            let vgic = Vgic::new(VgicConfig {
                dist_base: GuestPhysAddr::new(dist),
                redist_base: GuestPhysAddr::new(redist),
                vcpu_mpidrs: mpidrs.to_vec(),
                nr_spis: if initial { HOST_SPIS } else { domu_spis },
            })
            .map_err(|e| format!("virtual GIC: {e:?}"))?;
            let guest = GuestGic::V3 {
                dist: gicd(dist, layout::GUEST_GICD_SIZE)?,
                redist: gicd(redist, REDIST_FRAME * mpidrs.len() as u64)?,
            };
            Ok((vgic, guest))
        }
        GicVersion::V2 => {
            if mpidrs.len() > MAX_VCPUS_V2 {
                return Err(format!(
                    "{} vCPUs, but a GICv2 guest can have at most {MAX_VCPUS_V2}",
                    mpidrs.len()
                ));
            }
            let (dist, cpu) = if initial {
                let cpu = host.gic.cpu_if.ok_or("host GICv2 has no CPU interface")?;
                (host.gic.dist.start.raw(), cpu.start.raw())
            } else {
                (layout::GUEST_GICD_BASE, layout::GUEST_GICC_BASE)
            };
            let gicv = crate::gic::vcpu_interface().ok_or("host GICv2 has no GICV frame")?;
            let table = table.ok_or("no stage-2 table")?;
            let mut frames = FRAMES.lock();
            let frames = frames.as_mut().ok_or("no frame allocator")?;
            table
                .map(
                    &mut FrameTables(frames),
                    cpu,
                    gicv.start.raw(),
                    GICV_SIZE,
                    stage2_device(),
                )
                .map_err(|e| format!("mapping the virtual CPU interface: {e:?}"))?;
            let vgic = Vgic::new_v2(VgicV2Config {
                dist_base: GuestPhysAddr::new(dist),
                vcpu_count: mpidrs.len(),
                nr_spis: if initial { HOST_SPIS } else { domu_spis },
            })
            .map_err(|e| format!("virtual GIC: {e:?}"))?;
            let guest = GuestGic::V2 {
                dist: gicd(dist, DIST_V2_SIZE)?,
                cpu: gicd(cpu, GICV_SIZE)?,
            };
            Ok((vgic, guest))
        }
    }
}

/// A domU's grant-table space (Xen's `GUEST_GNTTAB_BASE`, 16 MiB).
pub const XEN_GRANT_BASE: u64 = 0x3800_0000;
/// Size of the grant-table space.
pub const XEN_GRANT_SIZE: u64 = 0x100_0000;

/// End of the guest-physical space every domain's stage 2 translates: extended regions are
/// offered below it.
const STAGE2_END: u64 = 1 << mica_aarch64::pagetable::INPUT_BITS;

/// The initial domain's grant-table space: direct-mapped, so it must be a hole in the host's
/// physical map. Mica takes the 16 MiB just above the end of RAM.
pub fn dom0_grant_region(host: &HostInfo) -> GuestRange {
    let ram_end = host.memory.iter().map(|r| r.end().raw()).max().unwrap_or(0);
    GuestRange {
        start: GuestPhysAddr::new(align_up(ram_end, MIB2)),
        size: XEN_GRANT_SIZE,
    }
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}
