//! Bring-up after the console works: hardware from the device tree, memory, the other
//! CPUs, then the domains.

use crate::world::{DOMAINS, FRAMES, MAX_CPUS, PCPUS};
use crate::{consoles, domain, firmware, gic, halt, heap, info, mmu, run, timer};
use aarch64_cpu::registers::{MPIDR_EL1, VBAR_EL2};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use mica_guest_abi::layout::{HYP_TIMER_PPI, VIRT_TIMER_PPI};
use mica_hv::addr::{HostPhysAddr, HostRange};
use mica_hv::bootcfg::{self, DomainKind, HostInfo};
use mica_hv::cpupool::{self, Policy, SchedPlan};
use mica_hv::frame_alloc::FrameAllocator;
use mica_hv::sched::{PcpuScheduler, RoundRobin, SchedParams, Scheduler};
use spin::Once;
use tock_registers::interfaces::{Readable, Writeable};

const MIB2: u64 = 2 << 20;
/// Guest frame of the PV console ring of a Xen-aware domU (Xen's `GUEST_MAGIC_BASE`).
const XEN_CONSOLE_GFN: u64 = 0x39000;
/// Heap Mica takes from RAM once it knows the memory map.
const HEAP_GROWTH: u64 = 8 << 20;
/// Round-robin time slice (the policy of a host with no CPU pools).
const SLICE_US: u64 = 10_000;

static HOST: Once<HostInfo> = Once::new();

unsafe extern "C" {
    static el2_vectors: u8;
    fn secondary_entry();
    fn spin_table_entry();
    /// The logical index the next spin-table CPU takes (boot.S).
    static mut spin_table_cpu: u64;
}

/// Bytes the boot CPU cleans around a spin-table word (one cache line covers it).
const SPIN_WORD_BYTES: usize = 8;

/// Our MPIDR with only the affinity fields.
fn my_mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// RAM ranges shrunk to 2 MiB boundaries: the hypervisor maps RAM with 2 MiB blocks.
fn usable_ram(info: &HostInfo) -> Vec<HostRange> {
    info.memory
        .iter()
        .filter_map(|r| {
            let start = r.start.checked_align_up(MIB2)?;
            let end = r.end().align_down(MIB2);
            HostRange::new(start, end.raw().checked_sub(start.raw())?)
        })
        .filter(|r| r.size > 0)
        .collect()
}

/// Everything a CPU sets up for itself.
fn init_this_cpu(cpu: usize, ppis: &[u32]) {
    VBAR_EL2.set(&raw const el2_vectors as u64);
    run::init_cpu(cpu);
    if let Err(e) = gic::init_cpu(cpu, my_mpidr(), ppis) {
        panic!("CPU {cpu}: {e}");
    }
    PCPUS[cpu]
        .mpidr
        .store(my_mpidr() as usize, Ordering::Relaxed);
    // Round robin until the boot CPU installs the CPU pools' policies (before any domain).
    *PCPUS[cpu].sched.lock() = Some(PcpuScheduler::RoundRobin(RoundRobin::new(
        timer::us_to_ticks(SLICE_US),
    )));
    PCPUS[cpu].online.store(true, Ordering::Release);
}

fn cpu_ppis() -> [u32; 3] {
    [HYP_TIMER_PPI, VIRT_TIMER_PPI, gic::maintenance_intid()]
}

/// The device tree blob at `dtb`, sized by its header (0 bytes if the header is not one).
///
/// # Safety
/// `dtb` must point at readable memory of at least the size its header claims.
pub unsafe fn device_tree_bytes(dtb: u64) -> &'static [u8] {
    const FDT_MAGIC: u32 = 0xd00d_feed;
    // SAFETY: a device tree header is at least 8 bytes; the caller vouches for the address.
    let head = unsafe { core::slice::from_raw_parts(dtb as *const u8, 8) };
    let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if dtb == 0 || word(0) != FDT_MAGIC {
        return &[];
    }
    let size = (word(4) as usize).min(2 << 20);
    // SAFETY: as above, with the size the header declares (capped at 2 MiB).
    unsafe { core::slice::from_raw_parts(dtb as *const u8, size) }
}

/// Boot CPU: from a working console to running domains. `clean` is the device tree with
/// NOP tags removed; `dtb`/`dtb_size` locate the original to keep it reserved.
pub fn start(dtb: u64, dtb_size: usize, clean: &[u8]) -> ! {
    let (image, image_size) = crate::image_range();
    let reserved = [
        HostRange::new(HostPhysAddr::new(image), image_size).unwrap_or(HostRange {
            start: HostPhysAddr::new(image),
            size: 0,
        }),
        HostRange::new(HostPhysAddr::new(dtb), dtb_size as u64).unwrap_or(HostRange {
            start: HostPhysAddr::new(dtb),
            size: 0,
        }),
    ];
    let dtb_bytes = clean;
    let info = match bootcfg::parse(dtb_bytes, &reserved) {
        Ok(i) => i,
        Err(e) => {
            info!("cannot use this device tree: {e}. Halting.");
            halt();
        }
    };
    let info = HOST.call_once(|| info);

    // Memory: RAM minus the image, the device tree, reservations and boot modules.
    let ram = usable_ram(info);
    let mut frames = FrameAllocator::new();
    for &r in &ram {
        frames.add_region(r);
    }
    for &r in reserved.iter().chain(&info.reserved) {
        frames.reserve(r);
    }
    let board = mica_platforms::boards::find(info.root_compatible.iter().map(|s| s.as_str()));
    for r in board.map(|b| b.firmware_reserved).unwrap_or_default() {
        if let Some(range) = HostRange::new(HostPhysAddr::new(r.start), r.size) {
            frames.reserve(range);
        }
    }
    for spec in info.domains.iter().flatten() {
        for m in [Some(spec.kernel), spec.ramdisk, spec.device_tree]
            .into_iter()
            .flatten()
        {
            frames.reserve(m);
        }
    }
    // SAFETY: boot CPU, secondaries not started; `ram` covers the image, stack and DTB.
    if let Err(e) = unsafe { mmu::install_final(&ram) } {
        info!("cannot map memory: {e}. Halting.");
        halt();
    }
    if let Some(extra) = frames.alloc(HEAP_GROWTH, MIB2) {
        // SAFETY: freshly allocated RAM, mapped normal, owned by the heap from now on.
        unsafe { heap::grow(extra.raw() as usize, HEAP_GROWTH as usize) };
    }
    *FRAMES.lock() = Some(frames);

    // Interrupts, timers, this CPU.
    if let Err(e) = gic::init(&info.gic, my_mpidr()) {
        info!("cannot use the interrupt controller: {e}. Halting.");
        halt();
    }
    gic::unwired_virq::enable(board.is_some_and(|b| b.virq_line_unwired));
    let boot_host_index = info
        .cpus
        .iter()
        .position(|c| c.mpidr == my_mpidr())
        .unwrap_or(0);
    PCPUS[0]
        .host_index
        .store(boot_host_index, Ordering::Relaxed);
    init_this_cpu(0, &cpu_ppis());
    let uart_intid = info.uart.as_ref().and_then(|u| u.intid);
    consoles::init(info.cmdline.console_timestamps, uart_intid);
    report_boot_notes(info);

    crate::xen::init();
    start_secondaries(info);
    let ids = domain_ids(info);
    let sched = plan_scheduling(info, dtb_bytes, boot_host_index, &ids);
    create_domains(info, dtb_bytes, &ids, &sched);
    release_boot_modules(info);

    if let Some(intid) = uart_intid {
        gic::enable_spi(intid, my_mpidr(), true);
        if let Some(uart) = crate::console::UART.lock().as_mut() {
            uart.set_rx_interrupt(true);
        }
    }
    let (used, total) = heap::usage();
    let free = FRAMES.lock().as_ref().map(|f| f.free_bytes()).unwrap_or(0);
    info!(
        "footprint: image {} KiB ({} KiB in memory with stacks), heap {} KiB used of {} KiB; {} MiB RAM free",
        crate::image_file_size() / 1024,
        image_size / 1024,
        used / 1024,
        total / 1024,
        free >> 20
    );
    if DOMAINS.read().iter().all(|d| d.is_none()) {
        info!("no domain could be started: powering off");
        firmware::system_off();
        halt();
    }
    run::run(0)
}

fn report_boot_notes(info: &HostInfo) {
    let board = mica_platforms::boards::find(info.root_compatible.iter().map(|s| s.as_str()));
    info!(
        "{} CPUs, {} MiB RAM, GICv{}, board: {}",
        info.cpus.len(),
        info.memory.iter().map(|r| r.size).sum::<u64>() >> 20,
        match info.gic.version {
            bootcfg::GicVersion::V2 => 2u64,
            bootcfg::GicVersion::V3 => 3,
        },
        board
            .map(|b| b.name)
            .unwrap_or("generic (device tree only)")
    );
    if gic::unwired_virq::enabled() {
        info!("note: this board's GIC does not signal virtual interrupts to the cores; Mica raises them itself (HCR_EL2.VI)");
    }
    if let Some(b) = board {
        let spin_table = info.cpus.iter().any(|c| c.release_addr.is_some());
        let expected = b.cpu_start == mica_platforms::boards::CpuStart::SpinTable;
        if info.cpus.len() > 1 && spin_table != expected {
            info!(
                "note: {} normally starts its CPUs {}, but this device tree says otherwise",
                b.name,
                if expected {
                    "from a spin table"
                } else {
                    "with PSCI"
                }
            );
        }
    }
    for u in &info.cmdline.unknown {
        info!("note: unknown option '{u}' on Mica's command line ignored");
    }
    for e in &info.cmdline.errors {
        info!("note: {e}");
    }
    for w in &info.warnings {
        info!("note: {w}");
    }
}

/// Releases the CPU waiting in a spin table at `release_addr` (ARM's booting protocol:
/// write the entry point there, clean it to memory, wake the waiters with SEV). Its logical
/// index `index` is published first, since the loop passes the CPU no argument.
fn release_from_spin_table(release_addr: u64, index: usize) {
    let published = &raw mut spin_table_cpu;
    // SAFETY: boot.S reserves this word; only the boot CPU writes it, one release at a time
    // (the previous CPU read it before marking itself online).
    unsafe { published.write_volatile(index as u64) };
    crate::cache::clean_to_poc(published as usize, SPIN_WORD_BYTES);
    let entry = spin_table_entry as *const () as u64;
    let slot = release_addr as *mut u64;
    // SAFETY: `release_addr` comes from the host device tree's cpu-release-addr, a word of
    // RAM kept out of the frame allocator (the firmware's /memreserve/ covers it) and
    // identity-mapped by Mica; writing it is how the waiting CPU is meant to be released.
    unsafe { slot.write_volatile(entry) };
    crate::cache::clean_to_poc(release_addr as usize, SPIN_WORD_BYTES);
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
    aarch64_cpu::asm::sev();
}

fn start_secondaries(info: &HostInfo) {
    let spin_table = info.cpus.iter().any(|c| c.release_addr.is_some());
    match info.psci {
        Some(conduit) => firmware::init(conduit),
        None if spin_table => {}
        None => {
            info!("no PSCI and no spin table in the device tree: running on the boot CPU only");
            return;
        }
    }
    let (tables, len) = mmu::tables_range();
    crate::cache::clean_to_poc(tables, len);
    let me = my_mpidr();
    let mut next = 1;
    for (host_index, cpu) in info.cpus.iter().enumerate() {
        if cpu.mpidr == me {
            continue;
        }
        if next >= MAX_CPUS {
            info!("more than {MAX_CPUS} CPUs: the rest stay off");
            break;
        }
        PCPUS[next].host_index.store(host_index, Ordering::Relaxed);
        let entry = secondary_entry as *const () as u64;
        if let Some(release_addr) = cpu.release_addr {
            release_from_spin_table(release_addr, next);
        } else if let Err(e) = firmware::cpu_on(cpu.mpidr, entry, next as u64) {
            info!(
                "CPU with MPIDR {:#x} did not start (PSCI error {})",
                cpu.mpidr,
                Signed(e)
            );
            continue;
        }
        let deadline = timer::now() + timer::us_to_ticks(1_000_000);
        while !PCPUS[next].online.load(Ordering::Acquire) && timer::now() < deadline {
            core::hint::spin_loop();
        }
        if !PCPUS[next].online.load(Ordering::Acquire) {
            info!("CPU {next} (MPIDR {:#x}) did not come up", cpu.mpidr);
            continue;
        }
        next += 1;
    }
}

/// A secondary CPU, MMU on.
pub fn secondary(cpu: usize) -> ! {
    init_this_cpu(cpu, &cpu_ppis());
    run::run(cpu)
}

/// Names of domUs whose partial device trees claim something an earlier domU claimed.
fn passthrough_conflicts(info: &HostInfo, dtb: &[u8]) -> Vec<String> {
    let mut claims: Vec<(String, mica_hv::passthrough::DomuPassthrough)> = Vec::new();
    for spec in info.domains.iter().flatten() {
        let Some(module) = spec.device_tree else {
            continue;
        };
        // SAFETY: boot modules are reserved in the frame allocator and never written.
        let blob = unsafe { domain::module_bytes(module) };
        // A tree that does not parse fails its own domain when it is built.
        if let Ok(pt) = mica_hv::passthrough::parse_partial_dt(&spec.name, blob, dtb) {
            claims.push((spec.name.clone(), pt));
        }
    }
    let mut refused = Vec::new();
    loop {
        let view: Vec<(&str, &mica_hv::passthrough::DomuPassthrough)> = claims
            .iter()
            .filter(|(n, _)| !refused.contains(n))
            .map(|(n, p)| (n.as_str(), p))
            .collect();
        match mica_hv::passthrough::check_disjoint(&view) {
            Ok(()) => return refused,
            Err(e) => {
                info!("{e}; not created");
                refused.push(e.domain.clone());
            }
        }
    }
}

/// The id each domain gets (`None` for a description that failed): the initial domain 0,
/// domUs 1, 2, ... in device-tree order, failed ones included, so ids do not depend on
/// which domains could be built.
fn domain_ids(info: &HostInfo) -> Vec<Option<u16>> {
    let mut next_domu = 1u16;
    info.domains
        .iter()
        .map(|spec| match spec {
            Ok(s) if s.kind == DomainKind::Initial => Some(0),
            Ok(_) => {
                next_domu += 1;
                Some(next_domu - 1)
            }
            Err(e) => {
                if !e.domain.starts_with("dom0") {
                    next_domu += 1;
                }
                None
            }
        })
        .collect()
}

/// How the CPUs are scheduled: the validated CPU pool plan, if the device tree could be read.
struct SchedSetup {
    plan: Option<SchedPlan>,
    /// The device tree has `xen,cpupool` nodes. Without any, every CPU keeps the original
    /// round robin and vCPUs go to the least loaded CPU, as before pools existed.
    pools: bool,
    /// `vwfi=native` on Mica's command line.
    vwfi_native: bool,
}

/// Reads and validates the CPU pools and the domains' scheduling parameters, reports what
/// is refused, and gives each online CPU its pool's scheduler.
fn plan_scheduling(
    info: &HostInfo,
    dtb: &[u8],
    boot_host_index: usize,
    ids: &[Option<u16>],
) -> SchedSetup {
    let vwfi_native = info.cmdline.vwfi_native;
    let domains: Vec<(&str, u32)> = info
        .domains
        .iter()
        .flatten()
        .map(|d| (d.name.as_str(), d.vcpus))
        .collect();
    let input = match cpupool::parse(dtb, &info.cpus, &domains) {
        Ok(i) => i,
        Err(e) => {
            info!("cpupools: cannot read the device tree ({e}): round robin on every CPU");
            return SchedSetup {
                plan: None,
                pools: false,
                vwfi_native,
            };
        }
    };
    let plan = cpupool::plan(info.cpus.len(), boot_host_index, &input);
    let pools = !input.pools.is_empty();
    for e in &plan.pool_errors {
        info!("{e}; its CPUs join the unassigned ones");
    }
    if pools {
        let id_of = |name: &str| {
            info.domains
                .iter()
                .zip(ids)
                .find_map(|(d, id)| d.as_ref().ok().filter(|d| d.name == name).and(*id))
        };
        let epoch = timer::now();
        let freq = timer::frequency();
        for p in PCPUS.iter().filter(|p| p.online.load(Ordering::Acquire)) {
            let host = p.host_index.load(Ordering::Relaxed);
            if let Some(s) = plan.scheduler_for(host, freq, epoch, id_of) {
                // No vCPU has been inserted yet: replacing the run queue loses nothing.
                *p.sched.lock() = Some(s);
            }
        }
        // Mica's own periodic work goes to a CPU no real-time pool owns, if there is one.
        let housekeeping = PCPUS.iter().position(|p| {
            p.online.load(Ordering::Acquire)
                && plan
                    .cpu_pool
                    .get(p.host_index.load(Ordering::Relaxed))
                    .and_then(|&i| plan.pools.get(i))
                    .is_some_and(|pool| pool.policy == Policy::Fair)
        });
        if let Some(cpu) = housekeeping {
            run::set_housekeeping_cpu(cpu);
            if cpu != 0 {
                info!("housekeeping (console flushing) on CPU {cpu}, outside the real-time pools");
            }
        }
        for pool in &plan.pools {
            info!(
                "cpupool {}: {} on CPU{} {}{}",
                pool.name,
                policy_name(pool.policy),
                if pool.cpus.len() == 1 { "" } else { "s" },
                CpuList(&pool.cpus),
                if pool.policy == Policy::Null && vwfi_native {
                    ", WFI not trapped"
                } else {
                    ""
                }
            );
        }
    }
    SchedSetup {
        plan: Some(plan),
        pools,
        vwfi_native,
    }
}

/// CPU numbers as `[0, 2, 3]`, the text `{:?}` gives a `Vec<usize>`, without pulling the
/// `Debug` machinery for vectors into the image.
struct CpuList<'a>(&'a [usize]);

impl core::fmt::Display for CpuList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("[")?;
        for (i, cpu) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{cpu}")?;
        }
        f.write_str("]")
    }
}

/// A signed number printed as `{}` prints it, through the unsigned formatter: the PSCI error
/// is the image's only signed number, not worth a formatter of its own.
struct Signed(i64);

impl core::fmt::Display for Signed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 < 0 {
            f.write_str("-")?;
        }
        write!(f, "{}", self.0.unsigned_abs())
    }
}

fn policy_name(policy: Policy) -> &'static str {
    match policy {
        Policy::Null => "null",
        Policy::Edf => "rtds (EDF)",
        Policy::FixedPriority => "fixed-priority",
        Policy::Arinc653 => "arinc653",
        Policy::Fair => "credit2 (fair share)",
    }
}

/// The running CPU whose host device-tree index is `host_index`.
fn logical_cpu(host_index: usize) -> Option<usize> {
    PCPUS.iter().position(|p| {
        p.online.load(Ordering::Acquire) && p.host_index.load(Ordering::Relaxed) == host_index
    })
}

/// Where domain `name`'s vCPUs run and with which parameters, or the line that refuses it.
fn placement_for(
    sched: &SchedSetup,
    name: &str,
) -> Result<(domain::Placement, SchedParams), String> {
    let default = domain::Placement {
        pins: None,
        wfi_native: false,
    };
    let Some(plan) = &sched.plan else {
        return Ok((default, SchedParams::default()));
    };
    let placed = match plan.domain(name) {
        Some(Ok(d)) => d,
        Some(Err(e)) => return Err(e.to_string()),
        None => return Ok((default, SchedParams::default())),
    };
    if !sched.pools {
        // Parameters were checked, but round robin has no use for them.
        return Ok((default, SchedParams::default()));
    }
    let pool = plan
        .pools
        .get(placed.pool)
        .ok_or_else(|| format!("domain {name}: its cpupool vanished (hypervisor bug)"))?;
    let pins = placed
        .vcpu_cpus
        .iter()
        .map(|&host| {
            logical_cpu(host).ok_or_else(|| {
                format!(
                    "domain {name}: CPU {host} of its cpupool {} is not running",
                    pool.name
                )
            })
        })
        .collect::<Result<Vec<usize>, String>>()?;
    Ok((
        domain::Placement {
            pins: Some(pins),
            wfi_native: sched.vwfi_native && pool.policy == Policy::Null,
        },
        placed.params.to_ticks(timer::frequency()),
    ))
}

/// Puts every vCPU of `dom` on its CPU's run queue (vCPU 0 runnable, the others off until
/// PSCI CPU_ON), or takes them all back out and says why not.
fn admit(dom: &crate::world::Domain, params: SchedParams) -> Result<(), String> {
    for (index, vcpu) in dom.vcpus.iter().enumerate() {
        let vref = dom.vcpu_ref(index);
        let mut sched = PCPUS[vcpu.pcpu].sched.lock();
        let Some(s) = sched.as_mut() else {
            continue;
        };
        if let Err(e) = s.insert_with(vref, params) {
            drop(sched);
            for (i, v) in dom.vcpus.iter().enumerate().take(index) {
                if let Some(s) = PCPUS[v.pcpu].sched.lock().as_mut() {
                    s.remove(dom.vcpu_ref(i));
                }
            }
            return Err(format!(
                "domain {}: vCPU {index} on CPU {}: {e}",
                dom.name, vcpu.pcpu
            ));
        }
        if index != 0 {
            s.block(vref);
        }
    }
    Ok(())
}

/// Gives back what building `dom` took besides its memory (freed when it is dropped).
fn unbuild(dom: &crate::world::Domain) {
    crate::passthrough::release(dom.id);
    for vcpu in &dom.vcpus {
        PCPUS[vcpu.pcpu].load.fetch_sub(1, Ordering::Relaxed);
    }
}

fn create_domains(info: &HostInfo, dtb: &[u8], ids: &[Option<u16>], sched: &SchedSetup) {
    let conflicts = passthrough_conflicts(info, dtb);
    let mut built = Vec::new();
    let mut pending_xen = Vec::new();
    for (spec, id) in info.domains.iter().zip(ids) {
        let (spec, id) = match (spec, id) {
            (Ok(s), Some(id)) => (s, *id),
            (Err(e), _) => {
                info!("{e}; not created");
                continue;
            }
            (Ok(_), None) => continue,
        };
        if conflicts.contains(&spec.name) {
            continue;
        }
        let (placement, params) = match placement_for(sched, &spec.name) {
            Ok(p) => p,
            Err(line) => {
                info!("{line}; not created");
                continue;
            }
        };
        match domain::build(id, spec, info, dtb, &placement) {
            Ok(dom) => {
                if dom.initial || spec.enhanced {
                    let mut cfg = mica_hv::xen::DomainConfig::domu(id, spec.vcpus);
                    cfg.privileged = dom.initial;
                    cfg.console_io = dom.initial;
                    cfg.direct_mapped = dom.initial;
                    if !dom.initial {
                        // Mica serves the PV console itself: no toolstack needed.
                        cfg.pv_console_gfn = Some(XEN_CONSOLE_GFN);
                    }
                    pending_xen.push(cfg);
                }
                built.push((dom, params, spec.memory_bytes));
            }
            Err(e) => info!("{e}; not created"),
        }
    }
    let mut table = DOMAINS.write();
    let mut refused = Vec::new();
    for (dom, params, memory_bytes) in built {
        // Under the table lock: a CPU that picks a vCPU finds its domain listed.
        if let Err(e) = admit(&dom, params) {
            info!("{e}; not created");
            unbuild(&dom);
            refused.push(dom);
            continue;
        }
        let id = usize::from(dom.id);
        if table.len() <= id {
            table.resize(id + 1, None);
        }
        consoles::add_domain(dom.id, &dom.name);
        let vcpus = dom.vcpus.len();
        let pins: Vec<usize> = dom.vcpus.iter().map(|v| v.pcpu).collect();
        info!(
            "DOM{}: {} created: {} MiB, {} vCPU{} on CPU{} {}{}",
            dom.id,
            dom.name,
            memory_bytes >> 20,
            vcpus,
            if vcpus == 1 { "" } else { "s" },
            if vcpus == 1 { "" } else { "s" },
            CpuList(&pins),
            if dom.initial { ", direct-mapped" } else { "" }
        );
        table[id] = Some(Arc::clone(&dom));
    }
    drop(table);
    // Their memory is scrubbed and freed here, outside the table lock.
    let refused_ids: Vec<u16> = refused.iter().map(|d| d.id).collect();
    drop(refused);
    // The Xen layer reaches domains through the table, so register them now.
    for cfg in pending_xen
        .into_iter()
        .filter(|c| !refused_ids.contains(&c.domid))
    {
        if let Err(e) = crate::xen::create_domain(&cfg) {
            info!("DOM{}: Xen interface not available: {e:?}", cfg.domid);
        }
    }
    // Wake every CPU that got work.
    for (cpu, p) in PCPUS.iter().enumerate() {
        if cpu != 0 && p.online.load(Ordering::Acquire) {
            gic::send_sgi(p.mpidr.load(Ordering::Relaxed) as u64, gic::SGI_KICK);
        }
    }
}

/// Boot modules were copied into their domains: give their memory back.
fn release_boot_modules(info: &HostInfo) {
    let mut frames = FRAMES.lock();
    let Some(frames) = frames.as_mut() else {
        return;
    };
    for spec in info.domains.iter().flatten() {
        for m in [Some(spec.kernel), spec.ramdisk, spec.device_tree]
            .into_iter()
            .flatten()
        {
            if let (Some(start), end) = (m.start.checked_align_up(4096), m.end().align_down(4096)) {
                if let Some(r) = end
                    .raw()
                    .checked_sub(start.raw())
                    .and_then(|n| HostRange::new(start, n))
                {
                    if r.size > 0 {
                        let _ = frames.free(r);
                    }
                }
            }
        }
    }
}
