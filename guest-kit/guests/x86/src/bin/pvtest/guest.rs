use core::sync::atomic::{AtomicU32, Ordering};
use mica_guest_abi::xen::evtchn::*;
use mica_guest_abi::xen::features::XENFEAT_AUTO_TRANSLATED_PHYSMAP;
use mica_guest_abi::xen::gnttab::*;
use mica_guest_abi::xen::hvm::{
    HvmParam, HVMOP_GET_PARAM, HVMOP_SET_PARAM, HVM_PARAM_CALLBACK_IRQ,
    HVM_PARAM_CALLBACK_TYPE_SHIFT, HVM_PARAM_CALLBACK_TYPE_VECTOR,
};
use mica_guest_abi::xen::memory::*;
use mica_guest_abi::xen::sched::{SchedPoll, SCHEDOP_POLL};
use mica_guest_abi::xen::vcpu::{
    VcpuRegisterVcpuInfo, VcpuSetSingleshotTimer, VCPUOP_REGISTER_VCPU_INFO,
    VCPUOP_SET_SINGLESHOT_TIMER, VCPU_SSHOTTMR_FUTURE,
};
use mica_guest_abi::xen::version::{FeatureInfo, XENVER_GET_FEATURES, XENVER_VERSION};
use mica_guest_abi::xen::{Hypercall, DOMID_SELF};
use x86_guest_rt::{cpu, irq, println, xen};

x86_guest_rt::entry!(main);

/// Guest frames outside RAM for the pages Xen provides (Mica's guest RAM is 32 MiB).
const SHARED_INFO_GFN: u64 = 0x3_0000;
const GRANT_FRAME_GFN: u64 = 0x3_0001;
/// x86 shared_info: vcpu_info[32] of 64 bytes, then the pending and mask bitmaps.
const SI_EVTCHN_PENDING: usize = 2048;
const SI_EVTCHN_MASK: usize = 2560;
const SI_WC_VERSION: usize = 3072;
/// vcpu_info fields.
const VI_UPCALL_PENDING: usize = 0;
const VI_PENDING_SEL: usize = 8;
/// Our upcall vector (Linux's HYPERVISOR_CALLBACK_VECTOR) and its CALLBACK_IRQ encoding.
const UPCALL_VECTOR: u8 = 0xf3;
const CALLBACK_TYPE_VECTOR: u64 = HVM_PARAM_CALLBACK_TYPE_VECTOR << HVM_PARAM_CALLBACK_TYPE_SHIFT;
/// Spins for any wait (the upcall arrives right after the hypercall that raised it).
const WAIT_SPINS: u32 = 2_000_000;
const QUIET_SPINS: u32 = 50_000;
/// A free vcpu_info area inside a page of ours (offset 0x800 of VCPU_PAGE).
const VCPU_INFO_OFFSET: usize = 0x800;

type Result = core::result::Result<(), &'static str>;

#[repr(C, align(4096))]
struct Page([u8; 4096]);
static mut VCPU_PAGE: Page = Page([0; 4096]);
static mut SOURCE: Page = Page([0; 4096]);
static mut DEST: Page = Page([0; 4096]);

static UPCALLS: AtomicU32 = AtomicU32::new(0);
static FIRED: [AtomicU32; 64] = [const { AtomicU32::new(0) }; 64];
static VCPU_INFO_AT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// A word of shared_info (identity-mapped at its guest frame).
fn si_word(offset: usize) -> *mut u64 {
    (SHARED_INFO_GFN as usize * 4096 + offset) as *mut u64
}

/// Writes a byte of our own pages, shared_info or vcpu_info.
fn poke(p: *mut u8, value: u8) {
    // SAFETY: callers pass addresses inside our static pages or the mapped Xen pages.
    unsafe { p.write_volatile(value) }
}

/// Reads a byte of our own pages.
fn peek(p: *mut u8) -> u8 {
    // SAFETY: as for `poke`.
    unsafe { p.read_volatile() }
}

fn read(p: *mut u64) -> u64 {
    // SAFETY: `p` points into shared_info or our own pages, mapped for the whole run.
    unsafe { p.read_volatile() }
}

fn atomic(p: *mut u64) -> &'static core::sync::atomic::AtomicU64 {
    // SAFETY: an aligned word in shared_info or vcpu_info, which Xen updates atomically too.
    unsafe { core::sync::atomic::AtomicU64::from_ptr(p) }
}

/// The event-channel upcall: Xen's 2-level scan.
fn upcall() {
    UPCALLS.fetch_add(1, Ordering::AcqRel);
    let vi = VCPU_INFO_AT.load(Ordering::Acquire) as usize as *mut u8;
    poke(vi.wrapping_add(VI_UPCALL_PENDING), 0);
    let sel = atomic(vi.wrapping_add(VI_PENDING_SEL).cast()).swap(0, Ordering::AcqRel);
    for word in 0..64usize {
        if sel & (1 << word) == 0 {
            continue;
        }
        let pending = si_word(SI_EVTCHN_PENDING + word * 8);
        let mask = read(si_word(SI_EVTCHN_MASK + word * 8));
        let ready = read(pending) & !mask;
        for bit in 0..64usize {
            if ready & (1 << bit) != 0 {
                atomic(pending).fetch_and(!(1 << bit), Ordering::AcqRel);
                let port = word * 64 + bit;
                if let Some(counter) = FIRED.get(port) {
                    counter.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
    }
}

fn wait(spins: u32, done: impl Fn() -> bool) -> bool {
    for _ in 0..spins {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

fn main() {
    type Check = fn() -> Result;
    let checks: [(&str, Check); 8] = [
        ("detect", check_detect),
        ("features", check_features),
        ("shared-info", check_shared_info),
        ("evtchn-loopback", check_evtchn),
        ("pv-timer", check_pv_timer),
        ("poll", check_poll),
        ("grant-copy", check_grant_copy),
        ("console", check_console),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        match check() {
            Ok(()) => {
                println!("pvtest: ok {name}");
                passed += 1;
            }
            Err(why) => {
                println!("pvtest: FAIL {name}: {why}");
                failed += 1;
            }
        }
    }
    println!("pvtest: done {passed} passed, {failed} failed");
    if failed != 0 {
        xen::shutdown(mica_guest_abi::xen::sched::SHUTDOWN_CRASH);
    }
}

fn check_detect() -> Result {
    if !xen::present() {
        return Err("no XenVMMXenVMM CPUID leaves (or no hypercall page)");
    }
    let version = xen::hypercall(Hypercall::XenVersion, [XENVER_VERSION, 0, 0, 0, 0]);
    println!(
        "pvtest: note xen {}.{} (CPUID says {:#x}), vCPU {} of domain {}",
        version >> 16,
        version & 0xffff,
        xen::cpuid_version(),
        cpu::cpuid(xen::CPUID_BASE + 4)[1],
        cpu::cpuid(xen::CPUID_BASE + 4)[2]
    );
    if version != 4 << 16 | 17 {
        return Err("XENVER_version is not 4.17");
    }
    if xen::cpuid_version() as i64 != version {
        return Err("CPUID leaf 1 and XENVER_version disagree");
    }
    Ok(())
}

fn check_features() -> Result {
    let mut info = FeatureInfo {
        submap_idx: 0,
        submap: 0,
    };
    if xen::op(Hypercall::XenVersion, XENVER_GET_FEATURES, &mut info) != 0 {
        return Err("XENVER_get_features(0) failed");
    }
    println!("pvtest: note features[0] = {:#x}", info.submap);
    if info.submap & 1 << XENFEAT_AUTO_TRANSLATED_PHYSMAP == 0 {
        return Err("auto_translated_physmap is clear");
    }
    let mut beyond = FeatureInfo {
        submap_idx: 1,
        submap: 0,
    };
    if xen::op(Hypercall::XenVersion, XENVER_GET_FEATURES, &mut beyond) != -22 {
        return Err("XENVER_get_features(1) is not -EINVAL");
    }
    Ok(())
}

fn add_to_physmap(space: u32, idx: u64, gfn: u64) -> i64 {
    let mut op = AddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn: gfn,
    };
    xen::op(Hypercall::MemoryOp, XENMEM_ADD_TO_PHYSMAP, &mut op)
}

fn check_shared_info() -> Result {
    if add_to_physmap(XENMAPSPACE_SHARED_INFO, 0, SHARED_INFO_GFN) != 0 {
        return Err("XENMEM_add_to_physmap(shared_info) failed");
    }
    let wc = read(si_word(SI_WC_VERSION));
    println!(
        "pvtest: note shared_info at {:#x}, wc_version {}",
        SHARED_INFO_GFN * 4096,
        wc as u32
    );
    // The last mask word (ports 4032..4095) is unused: it must read back what we write.
    let probe = si_word(SI_EVTCHN_MASK + 63 * 8);
    // SAFETY: inside the mapped shared_info page.
    unsafe { probe.write_volatile(0x5a5a_a5a5_0f0f_f0f0) };
    let back = read(probe);
    // SAFETY: as above.
    unsafe { probe.write_volatile(0) };
    if back != 0x5a5a_a5a5_0f0f_f0f0 {
        return Err("shared_info does not read back");
    }
    VCPU_INFO_AT.store(SHARED_INFO_GFN * 4096, Ordering::Release);
    let page = core::ptr::addr_of!(VCPU_PAGE) as u64;
    let mut reg = VcpuRegisterVcpuInfo {
        mfn: page / 4096,
        offset: VCPU_INFO_OFFSET as u32,
        rsvd: 0,
    };
    let buf = &mut reg;
    let mut raw = [0u8; 16];
    mica_guest_abi::xen::Wire::encode(buf, &mut raw);
    let ret = xen::hypercall(
        Hypercall::VcpuOp,
        [VCPUOP_REGISTER_VCPU_INFO, 0, raw.as_ptr() as u64, 0, 0],
    );
    if ret != 0 {
        return Err("VCPUOP_register_vcpu_info failed");
    }
    VCPU_INFO_AT.store(page + VCPU_INFO_OFFSET as u64, Ordering::Release);
    Ok(())
}

/// vcpu_info's time record (x86: the last 32 bytes of the 64).
const VI_TIME: usize = 32;
/// How far ahead the single shot is set, and how long past it the check waits at most.
const TIMER_AHEAD_NS: u64 = 2_000_000;
const TIMER_GRACE_NS: u64 = 500_000_000;
/// Xen may fire a timer this much early (its timer slop; Linux allows 100 us, `TIMER_SLOP`).
const TIMER_SLOP_NS: u64 = 100_000;

/// System time from our vcpu_info's time record (Xen's pvclock), `None` if the record is
/// empty.
fn system_time_ns() -> Option<u64> {
    let t = (VCPU_INFO_AT.load(Ordering::Acquire) as usize + VI_TIME) as *mut u8;
    loop {
        // SAFETY: the time record lies inside our registered vcpu_info.
        let word = |off: usize| unsafe { t.wrapping_add(off).cast::<u64>().read_volatile() };
        let version = word(0) as u32;
        let (stamp, system, scale) = (word(8), word(16), word(24));
        let (mul, shift) = (scale as u32, (scale >> 32) as u8 as i8);
        let tsc = cpu::rdtsc();
        if version % 2 == 1 || word(0) as u32 != version {
            continue;
        }
        if mul == 0 {
            return None;
        }
        let delta = u128::from(tsc.wrapping_sub(stamp));
        let delta = if shift >= 0 {
            delta << shift
        } else {
            delta >> shift.unsigned_abs()
        };
        return Some(system + ((delta * u128::from(mul)) >> 32) as u64);
    }
}

/// VCPUOP_set_singleshot_timer on vCPU 0 with the "future" flag.
fn singleshot(at: u64) -> i64 {
    let mut raw = [0u8; 16];
    let arg = VcpuSetSingleshotTimer {
        timeout_abs_ns: at,
        flags: VCPU_SSHOTTMR_FUTURE,
    };
    mica_guest_abi::xen::Wire::encode(&arg, &mut raw);
    xen::hypercall(
        Hypercall::VcpuOp,
        [VCPUOP_SET_SINGLESHOT_TIMER, 0, raw.as_ptr() as u64, 0, 0],
    )
}

/// Waits until `port` fired more than `before` times; the system time then, or `None` once
/// the time passes `give_up`.
fn wait_for_timer(port: u32, before: u32, give_up: u64) -> Option<u64> {
    loop {
        let t = system_time_ns()?;
        if fired(port) != before {
            return Some(t);
        }
        if t > give_up {
            return None;
        }
        core::hint::spin_loop();
    }
}

/// Binds VIRQ_TIMER to vCPU 0; returns its port.
fn bind_virq_timer() -> core::result::Result<u32, &'static str> {
    let mut bind = EvtchnBindVirq {
        virq: VIRQ_TIMER,
        vcpu: 0,
        port: 0,
    };
    if xen::op(Hypercall::EventChannelOp, EVTCHNOP_BIND_VIRQ, &mut bind) != 0 {
        return Err("EVTCHNOP_bind_virq(VIRQ_TIMER) failed");
    }
    Ok(bind.port)
}

/// Xen's PV clock and timer: system time from vcpu_info, VIRQ_TIMER bound on vCPU 0 fires
/// at once for a past single-shot deadline and after (not before) a future one. The port is
/// closed whatever the outcome, so a failure here does not fail the checks after it.
fn check_pv_timer() -> Result {
    let Some(start) = system_time_ns() else {
        return Err("vcpu_info carries no time record");
    };
    let port = bind_virq_timer()?;
    let timed = pv_timer_fires(port, start);
    let closed = evtchn(EVTCHNOP_CLOSE, port) == 0;
    let (at, deadline) = timed?;
    if !closed {
        return Err("EVTCHNOP_close(VIRQ_TIMER) failed");
    }
    println!(
        "pvtest: note system time {} ms at the first read, timer {} us off",
        start / 1_000_000,
        (at as i64 - deadline as i64) / 1000
    );
    Ok(())
}

/// The single-shot timer on VIRQ_TIMER `port`: a past deadline fires at once, a future one
/// not early. Returns when it fired and the deadline.
fn pv_timer_fires(port: u32, start: u64) -> core::result::Result<(u64, u64), &'static str> {
    if port as usize >= FIRED.len() {
        return Err("VIRQ_TIMER port beyond the first word");
    }
    // Xen 4.17 ignores VCPU_SSHOTTMR_future: a past deadline is accepted and fires at once.
    let before = fired(port);
    if singleshot(start.saturating_sub(1)) != 0 {
        return Err("a past deadline is refused");
    }
    if wait_for_timer(port, before, start + TIMER_GRACE_NS).is_none() {
        return Err("a past deadline did not fire");
    }
    let before = fired(port);
    let Some(now) = system_time_ns() else {
        return Err("time record vanished");
    };
    let deadline = now + TIMER_AHEAD_NS;
    if singleshot(deadline) != 0 {
        return Err("VCPUOP_set_singleshot_timer failed");
    }
    let Some(at) = wait_for_timer(port, before, deadline + TIMER_GRACE_NS) else {
        return Err("VIRQ_TIMER did not fire");
    };
    if at + TIMER_SLOP_NS < deadline {
        return Err("VIRQ_TIMER fired more than 100 us before the deadline");
    }
    Ok((at, deadline))
}

/// SCHEDOP_poll on `ports` (at most 4) with an absolute `timeout` (0: none).
fn poll(ports: &[u32], timeout: u64) -> i64 {
    let mut list = [0u32; 4];
    let n = ports.len().min(list.len());
    list[..n].copy_from_slice(&ports[..n]);
    poll_at(list.as_ptr() as u64, n as u32, timeout)
}

/// SCHEDOP_poll on `nr_ports` ports at guest address `at` (valid or not: Xen only reads it).
fn poll_at(at: u64, nr_ports: u32, timeout: u64) -> i64 {
    let mut arg = SchedPoll {
        ports: at,
        nr_ports,
        timeout,
    };
    xen::op(Hypercall::SchedOp, SCHEDOP_POLL, &mut arg)
}

/// SCHEDOP_poll on the masked VIRQ_TIMER port: sleeps to its timeout; ends when the
/// single-shot timer makes the port pending (no upcall: it is masked); returns at once when
/// it is already pending; refuses bad lists.
fn check_poll() -> Result {
    let port = bind_virq_timer()?;
    let bit = 1u64 << (port % 64);
    let word = (port as usize / 64) * 8;
    atomic(si_word(SI_EVTCHN_MASK + word)).fetch_or(bit, Ordering::AcqRel);
    atomic(si_word(SI_EVTCHN_PENDING + word)).fetch_and(!bit, Ordering::AcqRel);
    let now = || system_time_ns().unwrap_or(0);

    // Nothing pending: sleeps until the timeout.
    let timeout = now() + TIMER_AHEAD_NS;
    if poll(&[port], timeout) != 0 {
        return Err("poll with a timeout failed");
    }
    let woke = now();
    if woke + TIMER_SLOP_NS < timeout {
        return Err("poll returned before its timeout");
    }
    // The single shot makes the masked port pending: that ends the poll, long before the
    // backstop timeout.
    let deadline = now() + TIMER_AHEAD_NS;
    if singleshot(deadline) != 0 {
        return Err("VCPUOP_set_singleshot_timer failed");
    }
    if poll(&[port], deadline + TIMER_GRACE_NS) != 0 {
        return Err("poll on VIRQ_TIMER failed");
    }
    let ended = now();
    if ended + TIMER_SLOP_NS < deadline {
        return Err("poll on VIRQ_TIMER returned before the timer");
    }
    if ended >= deadline + TIMER_GRACE_NS / 2 {
        return Err("the timer's event did not end the poll (it ran to its timeout)");
    }
    if !is_pending(port) {
        return Err("VIRQ_TIMER is not pending after the poll");
    }
    // Pending: at once, with no timeout.
    if poll(&[port], 0) != 0 {
        return Err("poll on the pending port failed");
    }
    // Bad lists: a port we do not have (also after a quiet one), too many ports, a list
    // that is not mapped.
    atomic(si_word(SI_EVTCHN_PENDING + word)).fetch_and(!bit, Ordering::AcqRel);
    let refusals = [
        (poll(&[4095], 0), -22),
        (poll(&[port, 4095], 0), -22),
        (poll_at(0x10, 129, 0), -22),
        (poll_at(0xffff_0000_0000, 1, 0), -14),
    ];
    if refusals.iter().any(|(got, want)| got != want) {
        return Err("a bad port list was not refused with EINVAL/EFAULT");
    }
    if evtchn(EVTCHNOP_CLOSE, port) != 0 {
        return Err("EVTCHNOP_close(VIRQ_TIMER) failed");
    }
    println!(
        "pvtest: note poll slept to {} us past its timeout, woke {} us past the timer",
        woke.saturating_sub(timeout) / 1000,
        ended.saturating_sub(deadline) / 1000
    );
    Ok(())
}

fn evtchn(cmd: u64, port: u32) -> i64 {
    let mut arg = EvtchnPortArg { port };
    xen::op(Hypercall::EventChannelOp, cmd, &mut arg)
}

fn fired(port: u32) -> u32 {
    FIRED
        .get(port as usize)
        .map_or(0, |c| c.load(Ordering::Acquire))
}

fn is_pending(port: u32) -> bool {
    read(si_word(SI_EVTCHN_PENDING + (port as usize / 64) * 8)) & 1 << (port % 64) != 0
}

fn check_evtchn() -> Result {
    // Name our upcall vector the way Linux does (type 2 = vector), then read it back.
    let mut param = HvmParam {
        domid: DOMID_SELF,
        pad: 0,
        index: HVM_PARAM_CALLBACK_IRQ,
        value: CALLBACK_TYPE_VECTOR | u64::from(UPCALL_VECTOR),
    };
    if xen::op(Hypercall::HvmOp, HVMOP_SET_PARAM, &mut param) != 0 {
        return Err("HVMOP_set_param(CALLBACK_IRQ, vector) failed");
    }
    param.value = 0;
    if xen::op(Hypercall::HvmOp, HVMOP_GET_PARAM, &mut param) != 0 {
        return Err("HVMOP_get_param(CALLBACK_IRQ) failed");
    }
    if param.value != CALLBACK_TYPE_VECTOR | u64::from(UPCALL_VECTOR) {
        return Err("HVM_PARAM_CALLBACK_IRQ does not read back");
    }
    let vector = param.value as u8;
    irq::install(vector, upcall);
    irq::enable();
    let mut unbound = EvtchnAllocUnbound {
        dom: DOMID_SELF,
        remote_dom: DOMID_SELF,
        port: 0,
    };
    if xen::op(
        Hypercall::EventChannelOp,
        EVTCHNOP_ALLOC_UNBOUND,
        &mut unbound,
    ) != 0
    {
        return Err("EVTCHNOP_alloc_unbound failed");
    }
    let a = unbound.port;
    let mut bind = EvtchnBindInterdomain {
        remote_dom: DOMID_SELF,
        remote_port: a,
        local_port: 0,
    };
    if xen::op(
        Hypercall::EventChannelOp,
        EVTCHNOP_BIND_INTERDOMAIN,
        &mut bind,
    ) != 0
    {
        return Err("EVTCHNOP_bind_interdomain failed");
    }
    let b = bind.local_port;
    println!("pvtest: note upcall vector {vector:#x}, ports {a} <-> {b}");
    if a as usize >= FIRED.len() || b as usize >= FIRED.len() {
        return Err("ports beyond the first word");
    }
    for port in [a, b] {
        if evtchn(EVTCHNOP_UNMASK, port) != 0 {
            return Err("EVTCHNOP_unmask failed");
        }
    }
    let before = fired(a);
    if evtchn(EVTCHNOP_SEND, b) != 0 {
        return Err("EVTCHNOP_send failed");
    }
    if !wait(WAIT_SPINS, || fired(a) > before) {
        return Err("no upcall after send");
    }
    // Masked: pending, no upcall, until unmask.
    atomic(si_word(SI_EVTCHN_MASK + (a as usize / 64) * 8))
        .fetch_or(1 << (a % 64), Ordering::AcqRel);
    let before = fired(a);
    if evtchn(EVTCHNOP_SEND, b) != 0 {
        return Err("EVTCHNOP_send while masked failed");
    }
    if wait(QUIET_SPINS, || fired(a) != before) {
        return Err("masked port raised an upcall");
    }
    if !is_pending(a) {
        return Err("masked port did not become pending");
    }
    if evtchn(EVTCHNOP_UNMASK, a) != 0 {
        return Err("EVTCHNOP_unmask while pending failed");
    }
    if !wait(WAIT_SPINS, || fired(a) > before) {
        return Err("unmask of a pending port raised no upcall");
    }
    let before = fired(b);
    evtchn(EVTCHNOP_SEND, a);
    if !wait(WAIT_SPINS, || fired(b) > before) {
        return Err("no upcall in the other direction");
    }
    println!(
        "pvtest: note {} upcalls, port {a} fired {}, port {b} fired {}",
        UPCALLS.load(Ordering::Acquire),
        fired(a),
        fired(b)
    );
    for port in [b, a] {
        if evtchn(EVTCHNOP_CLOSE, port) != 0 {
            return Err("EVTCHNOP_close failed");
        }
    }
    if evtchn(EVTCHNOP_SEND, a) == 0 {
        return Err("send on a closed port succeeded");
    }
    Ok(())
}

fn page_ptr(page: *mut Page) -> *mut u8 {
    page.cast()
}

fn copy(
    source: GnttabCopyPtr,
    dest: GnttabCopyPtr,
    len: u16,
    flags: u16,
) -> core::result::Result<i16, &'static str> {
    let mut op = GnttabCopy {
        source,
        dest,
        len,
        flags,
        status: 0,
    };
    if xen::op_count(Hypercall::GrantTableOp, GNTTABOP_COPY, &mut op) != 0 {
        return Err("GNTTABOP_copy failed");
    }
    Ok(op.status)
}

fn check_grant_copy() -> Result {
    let mut size = GnttabQuerySize {
        dom: DOMID_SELF,
        nr_frames: 0,
        max_nr_frames: 0,
        status: 0,
    };
    if xen::op_count(Hypercall::GrantTableOp, GNTTABOP_QUERY_SIZE, &mut size) != 0
        || size.status != 0
    {
        return Err("GNTTABOP_query_size failed");
    }
    if add_to_physmap(XENMAPSPACE_GRANT_TABLE, 0, GRANT_FRAME_GFN) != 0 {
        return Err("XENMEM_add_to_physmap(grant_table 0) failed");
    }
    println!(
        "pvtest: note grant table {}/{} frames",
        size.nr_frames, size.max_nr_frames
    );
    let src = page_ptr(core::ptr::addr_of_mut!(SOURCE));
    let dst = page_ptr(core::ptr::addr_of_mut!(DEST));
    for i in 0..4096 {
        poke(
            src.wrapping_add(i),
            (i as u8).wrapping_mul(31).wrapping_add(7),
        );
        poke(dst.wrapping_add(i), 0);
    }
    let own = cpu::cpuid(xen::CPUID_BASE + 4)[2] as u16;
    let gref = 8u32;
    let entry = (GRANT_FRAME_GFN * 4096) as usize as *mut u64;
    let value = u64::from(GTF_PERMIT_ACCESS | GTF_READONLY)
        | u64::from(own) << 16
        | (src as u64 / 4096) << 32;
    // SAFETY: entry 8 of grant frame 0, mapped above.
    unsafe { entry.wrapping_add(gref as usize).write_volatile(value) };
    let from_grant = GnttabCopyPtr {
        u: u64::from(gref),
        domid: DOMID_SELF,
        offset: 0,
    };
    let to_dest = GnttabCopyPtr {
        u: dst as u64 / 4096,
        domid: DOMID_SELF,
        offset: 0,
    };
    if copy(from_grant, to_dest, 4096, GNTCOPY_SOURCE_GREF)? != GNTST_OKAY {
        return Err("GNTTABOP_copy from the grant did not succeed");
    }
    for i in 0..4096 {
        if peek(src.wrapping_add(i)) != peek(dst.wrapping_add(i)) {
            return Err("copied bytes differ");
        }
    }
    // Read-only grant: copying into it fails and leaves the page alone.
    if copy(to_dest, from_grant, 64, GNTCOPY_DEST_GREF)? == GNTST_OKAY {
        return Err("copy into a read-only grant succeeded");
    }
    // Revoked: a copy from it fails.
    // SAFETY: as above.
    unsafe { entry.wrapping_add(gref as usize).write_volatile(0) };
    if copy(from_grant, to_dest, 16, GNTCOPY_SOURCE_GREF)? == GNTST_OKAY {
        return Err("copy through a revoked grant succeeded");
    }
    Ok(())
}

fn check_console() -> Result {
    let line = b"pvtest: console line through CONSOLEIO_write\n";
    let ret = xen::hypercall(
        Hypercall::ConsoleIo,
        [
            mica_guest_abi::xen::console::CONSOLEIO_WRITE,
            line.len() as u64,
            line.as_ptr() as u64,
            0,
            0,
        ],
    );
    if ret < 0 {
        return Err("CONSOLEIO_write failed");
    }
    Ok(())
}
