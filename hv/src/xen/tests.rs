//! Host tests for the Xen layer: a fake arch layer, one test group per hypercall, and a
//! property-based fuzz of the dispatcher with hostile arguments.

use super::hypercall::POLL_MAX_PORTS;
use super::mem::fake::FakeMemory;
use super::mem::{read_obj, read_u64, write_obj, GuestMemError, PageWords};
use super::*;
use crate::addr::GuestPhysAddr;
use mica_guest_abi::xen::console::*;
use mica_guest_abi::xen::errno::*;
use mica_guest_abi::xen::evtchn::*;
use mica_guest_abi::xen::gnttab::*;
use mica_guest_abi::xen::hvm::*;
use mica_guest_abi::xen::memory::*;
use mica_guest_abi::xen::misc::*;
use mica_guest_abi::xen::sched::*;
use mica_guest_abi::xen::shared::*;
use mica_guest_abi::xen::vcpu::*;
use mica_guest_abi::xen::version::*;
use mica_guest_abi::xen::{Hypercall, Wire, DOMID_SELF};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// One domain's memory, shared between the env (physical) and the vCPU view (virtual).
#[derive(Clone, Default)]
struct SharedMem(Rc<RefCell<FakeMemory>>);

impl GuestMemory for SharedMem {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
        self.0.borrow().read(gpa, buf)
    }
    fn write(&mut self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        self.0.borrow_mut().write(gpa, data)
    }
    fn words(&self, gfn: u64) -> Option<&PageWords> {
        self.0.borrow().page(gfn)
    }
}

impl GuestVirtMemory for SharedMem {
    fn read_virt(&self, gva: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
        self.0.borrow().read_virt(gva, buf)
    }
    fn write_virt(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestMemError> {
        self.0.borrow_mut().write_virt(gva, data)
    }
}

#[derive(Default)]
struct FakeEnv {
    mems: BTreeMap<DomId, SharedMem>,
    special: Vec<(DomId, SpecialPage, u64)>,
    foreign: Vec<(DomId, u64, DomId, u64, bool)>,
    upcalls: Vec<(DomId, u32)>,
    console: Vec<u8>,
    kicks: Vec<(DomId, Backend)>,
    woken: Vec<(DomId, u32)>,
    refuse_foreign: bool,
    now: u64,
}

impl XenEnv for FakeEnv {
    fn memory(&mut self, dom: DomId) -> Option<&mut dyn GuestMemory> {
        self.mems.get_mut(&dom).map(|m| m as &mut dyn GuestMemory)
    }
    fn map_special_page(&mut self, dom: DomId, page: SpecialPage, gfn: u64) -> Result<(), i32> {
        let mem = self.mems.get(&dom).ok_or(ESRCH)?;
        if gfn > 0xF_FFFF_FFFF {
            return Err(EINVAL);
        }
        mem.0.borrow_mut().add(gfn, 1);
        self.special.push((dom, page, gfn));
        Ok(())
    }
    fn unmap_special_page(&mut self, dom: DomId, page: SpecialPage, gfn: u64) {
        self.special.retain(|s| *s != (dom, page, gfn));
    }
    fn map_foreign(
        &mut self,
        grantee: DomId,
        gfn: u64,
        granter: DomId,
        granter_gfn: u64,
        readonly: bool,
    ) -> Result<(), i32> {
        if self.refuse_foreign {
            return Err(EINVAL);
        }
        self.foreign
            .push((grantee, gfn, granter, granter_gfn, readonly));
        Ok(())
    }
    fn unmap_foreign(&mut self, grantee: DomId, gfn: u64) {
        self.foreign.retain(|f| !(f.0 == grantee && f.1 == gfn));
    }
    fn raise_upcall(&mut self, dom: DomId, vcpu: u32) {
        self.upcalls.push((dom, vcpu));
    }
    fn wake_vcpu(&mut self, dom: DomId, vcpu: u32) {
        self.woken.push((dom, vcpu));
    }
    fn console_write(&mut self, _dom: DomId, bytes: &[u8]) {
        self.console.extend_from_slice(bytes);
    }
    fn backend_notify(&mut self, dom: DomId, backend: Backend) {
        self.kicks.push((dom, backend));
    }
    fn wallclock(&self) -> (u64, u32) {
        (0x1_2345_6789, 500)
    }
    fn now_ns(&self) -> u64 {
        self.now
    }
}

/// RAM of each test domain: frames 0x40000..0x40020.
const RAM: u64 = 0x40000;
/// Scratch buffer for hypercall arguments (VA == PA in the fake).
const ARG: u64 = 0x4000_0000;
const ARG2: u64 = 0x4000_1000;
const SHARED_GFN: u64 = 0x40010;
const GNT_GFN: u64 = 0x38000;
const CONSOLE_GFN: u64 = 0x39000;

struct World {
    xen: Xen,
    env: FakeEnv,
}

/// The domain id of [`World::x86`]'s domain.
const X86_DOM: DomId = 5;

impl World {
    /// dom0 (privileged, console_io, 2 vCPUs) and dom1 (domU with a PV console, 2 vCPUs).
    fn new() -> Self {
        let mut env = FakeEnv::default();
        for d in [0u16, 1] {
            let m = SharedMem::default();
            m.0.borrow_mut().add(RAM, 0x20);
            env.mems.insert(d, m);
        }
        let mut xen = Xen::new();
        let mut dom0 = DomainConfig::domu(0, 2);
        dom0.privileged = true;
        dom0.console_io = true;
        xen.create_domain(&dom0, &mut env).unwrap();
        let mut dom1 = DomainConfig::domu(1, 2);
        dom1.pv_console_gfn = Some(CONSOLE_GFN);
        xen.create_domain(&dom1, &mut env).unwrap();
        Self { xen, env }
    }

    /// An x86 domU, domain 5 with 2 vCPUs, and the system time at `now` ns.
    fn x86(now: u64) -> Self {
        let mut env = FakeEnv::default();
        let m = SharedMem::default();
        m.0.borrow_mut().add(RAM, 0x20);
        env.mems.insert(X86_DOM, m);
        env.now = now;
        let mut xen = Xen::new();
        let mut cfg = DomainConfig::domu(X86_DOM, 2);
        cfg.arch = GuestArch::X86_64;
        xen.create_domain(&cfg, &mut env).unwrap();
        Self { xen, env }
    }

    /// XENVER_get_features submap 0 of `dom` (the call must succeed).
    fn features(&mut self, dom: DomId) -> u32 {
        self.put(dom, ARG, &FeatureInfo::default());
        let r = self.call(dom, 0, Hypercall::XenVersion, &[XENVER_GET_FEATURES, ARG]);
        assert_eq!(r.ret, 0, "XENVER_get_features of domain {dom}");
        self.get::<FeatureInfo>(dom, ARG).submap
    }

    fn call(&mut self, dom: DomId, vcpu: u32, nr: Hypercall, args: &[u64]) -> Outcome {
        self.call_raw(dom, vcpu, nr.nr(), args)
    }

    fn call_raw(&mut self, dom: DomId, vcpu: u32, nr: u64, args: &[u64]) -> Outcome {
        let mut a = [0u64; 5];
        a[..args.len()].copy_from_slice(args);
        let mut vmem = self.env.mems.get(&dom).cloned().unwrap_or_default();
        let mut ctx = HypercallCtx {
            xen: &mut self.xen,
            caller: dom,
            vcpu,
            vmem: &mut vmem,
            env: &mut self.env,
        };
        dispatch(&mut ctx, nr, a)
    }

    fn mem(&self, dom: DomId) -> SharedMem {
        self.env.mems[&dom].clone()
    }
    fn put<T: Wire>(&self, dom: DomId, at: u64, v: &T) {
        write_obj(&mut self.mem(dom), GuestPhysAddr::new(at), v).unwrap();
    }
    fn get<T: Wire>(&self, dom: DomId, at: u64) -> T {
        read_obj(&self.mem(dom), GuestPhysAddr::new(at)).unwrap()
    }

    fn map_shared_info(&mut self, dom: DomId) {
        let op = AddToPhysmap {
            domid: DOMID_SELF,
            space: XENMAPSPACE_SHARED_INFO,
            gpfn: SHARED_GFN,
            ..Default::default()
        };
        self.put(dom, ARG, &op);
        let r = self.call(dom, 0, Hypercall::MemoryOp, &[XENMEM_ADD_TO_PHYSMAP, ARG]);
        assert_eq!(r, Outcome::ret(0));
    }

    fn shared(&self, dom: DomId) -> SharedInfo {
        self.get(dom, SHARED_GFN << 12)
    }

    /// Allocates an unbound port in `owner` for `remote`.
    fn alloc_unbound(&mut self, owner: DomId, remote: DomId) -> u32 {
        self.put(
            owner,
            ARG,
            &EvtchnAllocUnbound {
                dom: DOMID_SELF,
                remote_dom: remote,
                port: 0,
            },
        );
        let r = self.call(
            owner,
            0,
            Hypercall::EventChannelOp,
            &[EVTCHNOP_ALLOC_UNBOUND, ARG],
        );
        assert_eq!(r.ret, 0);
        self.get::<EvtchnAllocUnbound>(owner, ARG).port
    }

    fn bind_interdomain(&mut self, dom: DomId, remote: DomId, port: u32) -> Outcome {
        self.put(
            dom,
            ARG,
            &EvtchnBindInterdomain {
                remote_dom: remote,
                remote_port: port,
                local_port: 0,
            },
        );
        self.call(
            dom,
            0,
            Hypercall::EventChannelOp,
            &[EVTCHNOP_BIND_INTERDOMAIN, ARG],
        )
    }

    fn evtchn_port_op(&mut self, dom: DomId, cmd: u64, port: u32) -> i64 {
        self.put(dom, ARG2, &EvtchnPortArg { port });
        self.call(dom, 0, Hypercall::EventChannelOp, &[cmd, ARG2])
            .ret
    }
}

fn neg(e: i32) -> i64 {
    -i64::from(e)
}

#[test]
fn unknown_and_toolstack_hypercalls_are_enosys() {
    let mut w = World::new();
    assert_eq!(w.call_raw(1, 0, 0, &[]).ret, neg(ENOSYS));
    assert_eq!(w.call_raw(1, 0, 6, &[]).ret, neg(ENOSYS));
    assert_eq!(w.call_raw(1, 0, u64::MAX, &[]).ret, neg(ENOSYS));
    assert_eq!(w.call(0, 0, Hypercall::Domctl, &[ARG]).ret, neg(ENOSYS));
    // A caller that is not a Xen-aware domain gets no hypercalls, as on a bare machine.
    assert_eq!(w.call(9, 0, Hypercall::XenVersion, &[0]).ret, neg(ENOSYS));
}

#[test]
fn xen_version() {
    let mut w = World::new();
    assert_eq!(
        w.call(1, 0, Hypercall::XenVersion, &[XENVER_VERSION]).ret,
        0x4_0011
    );
    assert_eq!(
        w.call(1, 0, Hypercall::XenVersion, &[XENVER_PAGESIZE]).ret,
        4096
    );
    w.put(1, ARG, &FeatureInfo::default());
    assert_eq!(
        w.call(1, 0, Hypercall::XenVersion, &[XENVER_GET_FEATURES, ARG])
            .ret,
        0
    );
    let domu = w.get::<FeatureInfo>(1, ARG).submap;
    assert_eq!(domu, 0x1_4005);
    assert_eq!(w.features(0), 0x1_4805);
    w.put(
        1,
        ARG,
        &FeatureInfo {
            submap_idx: 1,
            submap: 0,
        },
    );
    let r = w.call(1, 0, Hypercall::XenVersion, &[XENVER_GET_FEATURES, ARG]);
    assert_eq!(r.ret, neg(EINVAL));
    let r = w.call(1, 0, Hypercall::XenVersion, &[XENVER_CAPABILITIES, ARG]);
    assert_eq!(r.ret, 0);
    let caps: [u8; 16] = w.get(1, ARG);
    assert_eq!(&caps, b"xen-3.0-aarch64 ");
    // Buffers that are not mapped fault; unknown sub-ops are ENOSYS.
    let r = w.call(1, 0, Hypercall::XenVersion, &[XENVER_CAPABILITIES, 0x1000]);
    assert_eq!(r.ret, neg(EFAULT));
    assert_eq!(w.call(1, 0, Hypercall::XenVersion, &[99]).ret, neg(ENOSYS));
    assert_eq!(
        w.call(1, 0, Hypercall::XenVersion, &[XENVER_COMMANDLINE, ARG])
            .ret,
        neg(EPERM)
    );
}

#[test]
fn shared_info_mapping() {
    let mut w = World::new();
    let bad = AddToPhysmap {
        domid: DOMID_SELF,
        space: XENMAPSPACE_SHARED_INFO,
        idx: 1,
        gpfn: SHARED_GFN,
        ..Default::default()
    };
    w.put(1, ARG, &bad);
    assert_eq!(
        w.call(1, 0, Hypercall::MemoryOp, &[XENMEM_ADD_TO_PHYSMAP, ARG])
            .ret,
        neg(EINVAL)
    );
    w.map_shared_info(1);
    assert!(w
        .env
        .special
        .contains(&(1, SpecialPage::SharedInfo, SHARED_GFN)));
    let si = w.shared(1);
    assert_eq!(si.wc_version % 2, 0);
    assert_eq!((si.wc_sec, si.wc_sec_hi, si.wc_nsec), (0x2345_6789, 1, 500));
    // Mapping it elsewhere while mapped: EBUSY.
    let again = AddToPhysmap {
        gpfn: SHARED_GFN + 1,
        idx: 0,
        ..bad
    };
    w.put(1, ARG, &again);
    assert_eq!(
        w.call(1, 0, Hypercall::MemoryOp, &[XENMEM_ADD_TO_PHYSMAP, ARG])
            .ret,
        neg(EBUSY)
    );
    // Another domain's physmap is not the caller's to change.
    let other = AddToPhysmap { domid: 0, ..again };
    w.put(1, ARG, &other);
    assert_eq!(
        w.call(1, 0, Hypercall::MemoryOp, &[XENMEM_ADD_TO_PHYSMAP, ARG])
            .ret,
        neg(EPERM)
    );
    // Ballooning and continuation bits are refused.
    assert_eq!(
        w.call(1, 0, Hypercall::MemoryOp, &[XENMEM_POPULATE_PHYSMAP, ARG])
            .ret,
        neg(ENOSYS)
    );
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::MemoryOp,
            &[XENMEM_ADD_TO_PHYSMAP | 1 << 6, ARG]
        )
        .ret,
        neg(EINVAL)
    );
}

#[test]
fn add_to_physmap_batch_reports_per_entry_errors() {
    let mut w = World::new();
    let idxs = ARG2;
    let gpfns = ARG2 + 0x100;
    let errs = ARG2 + 0x200;
    w.put(1, idxs, &[0u64, 5000, 1]);
    w.put(1, gpfns, &[GNT_GFN, GNT_GFN + 1, GNT_GFN + 1]);
    let op = AddToPhysmapBatch {
        domid: DOMID_SELF,
        space: XENMAPSPACE_GRANT_TABLE as u16,
        size: 3,
        idxs,
        gpfns,
        errs,
        ..Default::default()
    };
    w.put(1, ARG, &op);
    let r = w.call(
        1,
        0,
        Hypercall::MemoryOp,
        &[XENMEM_ADD_TO_PHYSMAP_BATCH, ARG],
    );
    assert_eq!(r.ret, 0);
    assert_eq!(w.get::<[i32; 3]>(1, errs), [0, -EINVAL, 0]);
    let t = &w.xen.domain(1).unwrap().gnttab;
    assert_eq!(
        (t.frame_gfn(0), t.frame_gfn(1)),
        (Some(GNT_GFN), Some(GNT_GFN + 1))
    );
    assert_eq!(t.nr_frames(), 2);
}

#[test]
fn vcpu_info_registration() {
    let mut w = World::new();
    w.map_shared_info(1);
    // vCPU 0 has something pending in the legacy slot: it must be carried over.
    let mut mem = w.mem(1);
    write_u8(&mut mem, SHARED_GFN << 12, 1);
    let reg = VcpuRegisterVcpuInfo {
        mfn: RAM + 2,
        offset: 0xfe0, // straddles into the next frame: accepted
        rsvd: 0,
    };
    w.put(1, ARG, &reg);
    let r = w.call(
        1,
        0,
        Hypercall::VcpuOp,
        &[VCPUOP_REGISTER_VCPU_INFO, 0, ARG],
    );
    assert_eq!(r.ret, 0);
    let vi: VcpuInfo = w.get(1, ((RAM + 2) << 12) + 0xfe0);
    assert_eq!(vi.evtchn_upcall_pending, 1);
    assert_eq!(vi.evtchn_pending_sel, u64::MAX);
    assert_eq!(w.env.upcalls, vec![(1, 0)]);
    // Once only.
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::VcpuOp,
            &[VCPUOP_REGISTER_VCPU_INFO, 0, ARG]
        )
        .ret,
        neg(EINVAL)
    );
    // Bad vCPU, misaligned, frame overflow.
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::VcpuOp,
            &[VCPUOP_REGISTER_VCPU_INFO, 2, ARG]
        )
        .ret,
        neg(ENOENT)
    );
    w.put(1, ARG, &VcpuRegisterVcpuInfo { offset: 4, ..reg });
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::VcpuOp,
            &[VCPUOP_REGISTER_VCPU_INFO, 1, ARG]
        )
        .ret,
        neg(ENXIO)
    );
    w.put(
        1,
        ARG,
        &VcpuRegisterVcpuInfo {
            mfn: u64::MAX,
            ..reg
        },
    );
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::VcpuOp,
            &[VCPUOP_REGISTER_VCPU_INFO, 1, ARG]
        )
        .ret,
        neg(EINVAL)
    );
    w.put(
        1,
        ARG,
        &VcpuRegisterVcpuInfo {
            offset: 0x1000,
            ..reg
        },
    );
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::VcpuOp,
            &[VCPUOP_REGISTER_VCPU_INFO, 1, ARG]
        )
        .ret,
        neg(EINVAL)
    );
    // Runstate areas: recorded; other sub-ops refused as on Xen/Arm.
    w.put(
        1,
        ARG,
        &VcpuRegisterRunstateMemoryArea {
            addr: 0xffff_8000_0000_0000,
        },
    );
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::VcpuOp,
            &[VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 1, ARG]
        )
        .ret,
        0
    );
    assert_eq!(
        w.call(1, 0, Hypercall::VcpuOp, &[VCPUOP_IS_UP, 1, 0]).ret,
        neg(EINVAL)
    );
}

/// An event reaches a vcpu_info whose upcall flag and selector lie in two frames (Linux
/// 6.1 may place it across a page boundary), and one in a frame the guest cannot write
/// gets nothing.
#[test]
fn events_reach_a_vcpu_info_across_a_page_boundary() {
    let mut w = World::new();
    w.map_shared_info(1);
    let at = ((RAM + 4) << 12) + 0xff8;
    w.put(
        1,
        ARG,
        &VcpuRegisterVcpuInfo {
            mfn: RAM + 4,
            offset: 0xff8,
            rsvd: 0,
        },
    );
    let r = w.call(
        1,
        1,
        Hypercall::VcpuOp,
        &[VCPUOP_REGISTER_VCPU_INFO, 1, ARG],
    );
    assert_eq!(r.ret, 0);
    // Start clean: nothing selected, no upcall pending.
    w.put(1, at, &0u64);
    w.put(1, at + 8, &0u64);
    w.env.upcalls.clear();
    let a = w.alloc_unbound(1, 1);
    assert_eq!(w.bind_interdomain(1, 1, a).ret, 0);
    let b = w.get::<EvtchnBindInterdomain>(1, ARG).local_port;
    w.put(1, ARG, &EvtchnBindVcpu { port: a, vcpu: 1 });
    let r = w.call(1, 0, Hypercall::EventChannelOp, &[EVTCHNOP_BIND_VCPU, ARG]);
    assert_eq!(r.ret, 0);
    // Both ends started pending; clear them so the send is a 0 -> 1 change.
    let pending = (SHARED_GFN << 12) + SHARED_INFO_EVTCHN_PENDING as u64;
    w.put(1, pending, &0u64);
    w.env.upcalls.clear();
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, b), 0);
    assert_eq!(w.get::<u8>(1, at), 1, "upcall flag, first frame");
    assert_eq!(
        w.get::<u64>(1, at + 8),
        1 << (a / 64),
        "selector, second frame"
    );
    assert_eq!(w.env.upcalls, vec![(1, 1)]);
    // The same vcpu_info in a frame the guest cannot write: the port is pending but
    // nothing reaches the vcpu_info and no upcall is raised.
    w.put(1, at + 8, &0u64);
    w.put(1, at, &0u64);
    w.put(1, pending, &0u64);
    w.env.upcalls.clear();
    w.mem(1).0.borrow_mut().read_only.insert(RAM + 5);
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, b), 0);
    assert_eq!(w.get::<u64>(1, pending) & 1 << a, 1 << a);
    assert_eq!((w.get::<u8>(1, at), w.get::<u64>(1, at + 8)), (0, 0));
    assert!(w.env.upcalls.is_empty());
}

fn write_u8(mem: &mut SharedMem, at: u64, v: u8) {
    mem.write(GuestPhysAddr::new(at), &[v]).unwrap();
}

#[test]
fn hvm_params() {
    let mut w = World::new();
    let get = |w: &mut World, dom: DomId, domid: DomId, index: u32| {
        w.put(
            dom,
            ARG,
            &HvmParam {
                domid,
                pad: 0,
                index,
                value: 0,
            },
        );
        let r = w.call(dom, 0, Hypercall::HvmOp, &[HVMOP_GET_PARAM, ARG]);
        (r.ret, w.get::<HvmParam>(dom, ARG).value)
    };
    assert_eq!(
        get(&mut w, 1, DOMID_SELF, HVM_PARAM_CONSOLE_PFN),
        (0, CONSOLE_GFN)
    );
    let (rc, port) = get(&mut w, 1, DOMID_SELF, HVM_PARAM_CONSOLE_EVTCHN);
    assert_eq!(
        (rc, port),
        (
            0,
            u64::from(w.xen.domain(1).unwrap().console_port().unwrap())
        )
    );
    assert_eq!(
        get(&mut w, 1, 1, HVM_PARAM_CALLBACK_IRQ),
        (0, callback_irq_ppi(31))
    );
    assert_eq!(get(&mut w, 1, DOMID_SELF, HVM_PARAM_STORE_PFN), (0, 0));
    assert!(w.xen.set_hvm_param(1, HVM_PARAM_STORE_PFN, 0x39001));
    assert_eq!(
        get(&mut w, 1, DOMID_SELF, HVM_PARAM_STORE_PFN),
        (0, 0x39001)
    );
    assert_eq!(get(&mut w, 1, DOMID_SELF, 5).0, neg(EINVAL));
    assert_eq!(get(&mut w, 1, DOMID_SELF, 1000).0, neg(EINVAL));
    assert_eq!(get(&mut w, 1, 0, HVM_PARAM_STORE_PFN).0, neg(EPERM));
    assert_eq!(get(&mut w, 0, 7, HVM_PARAM_STORE_PFN).0, neg(ESRCH));
    w.put(
        1,
        ARG,
        &HvmParam {
            domid: DOMID_SELF,
            pad: 0,
            index: HVM_PARAM_STORE_PFN,
            value: 1,
        },
    );
    assert_eq!(
        w.call(1, 0, Hypercall::HvmOp, &[HVMOP_SET_PARAM, ARG]).ret,
        neg(EPERM)
    );
    assert_eq!(w.call(1, 0, Hypercall::HvmOp, &[7, ARG]).ret, neg(ENOSYS));
}

#[test]
fn interdomain_event_delivery_mask_unmask_close() {
    let mut w = World::new();
    w.map_shared_info(0);
    w.map_shared_info(1);
    w.env.upcalls.clear();
    // dom1 offers a port to dom0 (a frontend), dom0 binds it (a backend).
    let p1 = w.alloc_unbound(1, 0);
    assert_eq!(w.bind_interdomain(0, 1, p1 + 100).ret, neg(EINVAL));
    assert_eq!(w.bind_interdomain(0, 7, p1).ret, neg(ESRCH));
    assert_eq!(w.bind_interdomain(0, 1, p1).ret, 0);
    let p0 = w.get::<EvtchnBindInterdomain>(0, ARG).local_port;
    // Binding marks the new local port pending.
    assert_ne!(w.shared(0).evtchn_pending[0] & (1 << p0), 0);
    assert_eq!(w.env.upcalls, vec![(0, 0)]);
    // Only the named remote may bind: a second bind fails.
    assert_eq!(w.bind_interdomain(0, 1, p1).ret, neg(EINVAL));

    // dom0 -> dom1, unmasked: pending, selector, upcall.
    assert_eq!(w.evtchn_port_op(0, EVTCHNOP_SEND, p0), 0);
    let si = w.shared(1);
    assert_ne!(si.evtchn_pending[0] & (1 << p1), 0);
    assert_eq!(si.vcpu_info[0].evtchn_pending_sel, 1);
    assert_eq!(si.vcpu_info[0].evtchn_upcall_pending, 1);
    assert_eq!(w.env.upcalls.last(), Some(&(1, 0)));

    // Guest consumes, then masks the port: a send sets pending but raises nothing.
    let base = SHARED_GFN << 12;
    w.put(1, base, &VcpuInfo::default());
    w.put(1, base + SHARED_INFO_EVTCHN_PENDING as u64, &0u64);
    w.put(1, base + SHARED_INFO_EVTCHN_MASK as u64, &(1u64 << p1));
    let n = w.env.upcalls.len();
    w.evtchn_port_op(0, EVTCHNOP_SEND, p0);
    assert_eq!(w.env.upcalls.len(), n);
    assert_eq!(w.shared(1).vcpu_info[0].evtchn_pending_sel, 0);
    // Unmask re-delivers the pending event.
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_UNMASK, p1), 0);
    assert_eq!(w.shared(1).evtchn_mask[0], 0);
    assert_eq!(w.env.upcalls.len(), n + 1);
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_UNMASK, 0), neg(EINVAL));
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_UNMASK, 5000), neg(EINVAL));

    // Status from both sides.
    w.put(
        1,
        ARG,
        &EvtchnStatus {
            dom: DOMID_SELF,
            port: p1,
            ..Default::default()
        },
    );
    assert_eq!(
        w.call(1, 0, Hypercall::EventChannelOp, &[EVTCHNOP_STATUS, ARG])
            .ret,
        0
    );
    let st: EvtchnStatus = w.get(1, ARG);
    assert_eq!((st.status, st.u), (EVTCHNSTAT_INTERDOMAIN, [0, p0]));

    // dom0 closes: dom1's port goes back to unbound (for dom0); sends are dropped.
    assert_eq!(w.evtchn_port_op(0, EVTCHNOP_CLOSE, p0), 0);
    assert_eq!(w.evtchn_port_op(0, EVTCHNOP_SEND, p0), neg(EINVAL));
    w.put(
        1,
        ARG,
        &EvtchnStatus {
            dom: DOMID_SELF,
            port: p1,
            ..Default::default()
        },
    );
    w.call(1, 0, Hypercall::EventChannelOp, &[EVTCHNOP_STATUS, ARG]);
    let st: EvtchnStatus = w.get(1, ARG);
    assert_eq!((st.status, st.u[0]), (EVTCHNSTAT_UNBOUND, 0));
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, p1), 0);
    // A domU may not query dom0's ports.
    w.put(
        1,
        ARG,
        &EvtchnStatus {
            dom: 0,
            port: 1,
            ..Default::default()
        },
    );
    assert_eq!(
        w.call(1, 0, Hypercall::EventChannelOp, &[EVTCHNOP_STATUS, ARG])
            .ret,
        neg(EPERM)
    );
}

#[test]
fn virq_ipi_bind_vcpu_and_fifo_refusal() {
    let mut w = World::new();
    w.map_shared_info(0);
    // Register vCPU 1's vcpu_info so it can receive.
    w.put(
        0,
        ARG,
        &VcpuRegisterVcpuInfo {
            mfn: RAM + 3,
            offset: 0,
            rsvd: 0,
        },
    );
    assert_eq!(
        w.call(
            0,
            1,
            Hypercall::VcpuOp,
            &[VCPUOP_REGISTER_VCPU_INFO, 1, ARG]
        )
        .ret,
        0
    );
    w.put(0, (RAM + 3) << 12, &VcpuInfo::default());
    w.env.upcalls.clear();

    let bind_virq = |w: &mut World, virq: u32, vcpu: u32| {
        w.put(
            0,
            ARG,
            &EvtchnBindVirq {
                virq,
                vcpu,
                port: 0,
            },
        );
        let r = w.call(0, 0, Hypercall::EventChannelOp, &[EVTCHNOP_BIND_VIRQ, ARG]);
        (r.ret, w.get::<EvtchnBindVirq>(0, ARG).port)
    };
    let (rc, console) = bind_virq(&mut w, VIRQ_CONSOLE, 0);
    assert_eq!(rc, 0);
    assert_eq!(bind_virq(&mut w, VIRQ_CONSOLE, 0).0, neg(EEXIST));
    assert_eq!(bind_virq(&mut w, VIRQ_DOM_EXC, 1).0, neg(EINVAL));
    assert_eq!(bind_virq(&mut w, NR_VIRQS, 0).0, neg(EINVAL));
    assert_eq!(bind_virq(&mut w, VIRQ_TIMER, 2).0, neg(ENOENT));
    assert_eq!(bind_virq(&mut w, VIRQ_TIMER, 1).0, 0);
    // A VIRQ port cannot be sent on.
    assert_eq!(w.evtchn_port_op(0, EVTCHNOP_SEND, console), neg(EINVAL));
    w.xen.hwdom_console_input(b"hi", &mut w.env);
    assert_eq!(w.env.upcalls, vec![(0, 0)]);

    // IPI to vCPU 1.
    w.put(0, ARG, &EvtchnBindIpi { vcpu: 1, port: 0 });
    assert_eq!(
        w.call(0, 0, Hypercall::EventChannelOp, &[EVTCHNOP_BIND_IPI, ARG])
            .ret,
        0
    );
    let ipi = w.get::<EvtchnBindIpi>(0, ARG).port;
    w.evtchn_port_op(0, EVTCHNOP_SEND, ipi);
    assert_eq!(w.env.upcalls.last(), Some(&(0, 1)));
    let vi1: VcpuInfo = w.get(0, (RAM + 3) << 12);
    assert_eq!(vi1.evtchn_upcall_pending, 1);

    // bind_vcpu: IPIs stay; global VIRQs move; bad vCPU refused.
    let bind_vcpu = |w: &mut World, port: u32, vcpu: u32| {
        w.put(0, ARG, &EvtchnBindVcpu { port, vcpu });
        w.call(0, 0, Hypercall::EventChannelOp, &[EVTCHNOP_BIND_VCPU, ARG])
            .ret
    };
    assert_eq!(bind_vcpu(&mut w, ipi, 0), neg(EINVAL));
    assert_eq!(bind_vcpu(&mut w, console, 5), neg(ENOENT));
    assert_eq!(bind_vcpu(&mut w, console, 1), 0);
    assert_eq!(
        w.xen.domain(0).unwrap().evtchn.virq_port(VIRQ_CONSOLE, 1),
        Some(console)
    );

    // FIFO is refused so Linux uses 2-level.
    w.put(0, ARG, &EvtchnInitControl::default());
    assert_eq!(
        w.call(
            0,
            0,
            Hypercall::EventChannelOp,
            &[EVTCHNOP_INIT_CONTROL, ARG]
        )
        .ret,
        neg(ENOSYS)
    );
    // Reset closes everything.
    w.put(0, ARG, &EvtchnReset { dom: DOMID_SELF });
    assert_eq!(
        w.call(0, 0, Hypercall::EventChannelOp, &[EVTCHNOP_RESET, ARG])
            .ret,
        0
    );
    assert_eq!(w.evtchn_port_op(0, EVTCHNOP_SEND, ipi), neg(EINVAL));
}

#[test]
fn ports_are_bounded() {
    let mut w = World::new();
    let mut last = 0;
    for _ in 1..1024 {
        last = w.alloc_unbound(0, 1);
    }
    assert_eq!(last, 1023);
    w.put(
        0,
        ARG,
        &EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: 1,
            port: 0,
        },
    );
    assert_eq!(
        w.call(
            0,
            0,
            Hypercall::EventChannelOp,
            &[EVTCHNOP_ALLOC_UNBOUND, ARG]
        )
        .ret,
        neg(ENOSPC)
    );
    // Freed ports are reused, lowest first.
    assert_eq!(w.evtchn_port_op(0, EVTCHNOP_CLOSE, 17), 0);
    assert_eq!(w.alloc_unbound(0, 1), 17);
}

#[test]
fn events_before_shared_info_are_replayed() {
    let mut w = World::new();
    let port = w.xen.domain(1).unwrap().console_port().unwrap();
    w.xen.console_push_input(1, b"x", &mut w.env);
    assert!(w.env.upcalls.is_empty());
    w.map_shared_info(1);
    assert_ne!(w.shared(1).evtchn_pending[0] & (1 << port), 0);
    assert_eq!(w.env.upcalls, vec![(1, 0)]);
}

/// dom1 places grant frame 0 and grants `frame` to dom0 at `gref`.
fn grant(w: &mut World, gref: u32, frame: u32, readonly: bool) {
    if w.xen.domain(1).unwrap().gnttab.frame_gfn(0).is_none() {
        let op = AddToPhysmap {
            domid: DOMID_SELF,
            space: XENMAPSPACE_GRANT_TABLE,
            idx: 0,
            gpfn: GNT_GFN,
            ..Default::default()
        };
        w.put(1, ARG, &op);
        assert_eq!(
            w.call(1, 0, Hypercall::MemoryOp, &[XENMEM_ADD_TO_PHYSMAP, ARG])
                .ret,
            0
        );
    }
    let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
    w.put(
        1,
        (GNT_GFN << 12) + u64::from(gref) * 8,
        &GrantEntryV1 {
            flags,
            domid: 0,
            frame,
        },
    );
}

fn entry_flags(w: &World, gref: u32) -> u16 {
    w.get::<GrantEntryV1>(1, (GNT_GFN << 12) + u64::from(gref) * 8)
        .flags
}

fn map(w: &mut World, gref: u32, flags: u32, host_addr: u64) -> GnttabMapGrantRef {
    let op = GnttabMapGrantRef {
        host_addr,
        flags,
        ref_: gref,
        dom: 1,
        ..Default::default()
    };
    w.put(0, ARG, &op);
    assert_eq!(
        w.call(
            0,
            0,
            Hypercall::GrantTableOp,
            &[GNTTABOP_MAP_GRANT_REF, ARG, 1]
        )
        .ret,
        0
    );
    w.get(0, ARG)
}

/// GNTTABOP_unmap_grant_ref by domain 0 of `handle` at `host_addr` (0: any): its status.
fn unmap(w: &mut World, handle: u32, host_addr: u64) -> i16 {
    let op = GnttabUnmapGrantRef {
        host_addr,
        handle,
        ..Default::default()
    };
    w.put(0, ARG, &op);
    assert_eq!(
        w.call(
            0,
            0,
            Hypercall::GrantTableOp,
            &[GNTTABOP_UNMAP_GRANT_REF, ARG, 1]
        )
        .ret,
        0
    );
    w.get::<GnttabUnmapGrantRef>(0, ARG).status
}

#[test]
fn grant_map_pins_entry_until_unmap() {
    let mut w = World::new();
    grant(&mut w, 8, (RAM + 5) as u32, false);
    let m = map(&mut w, 8, GNTMAP_HOST_MAP, 0x8000_0000);
    assert_eq!(m.status, GNTST_OKAY);
    assert_eq!(w.env.foreign, vec![(0, 0x80000, 1, RAM + 5, false)]);
    assert_eq!(
        entry_flags(&w, 8),
        GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
    );
    // The granter's revoke (cmpxchg from the flags it wrote) now fails.
    let mut mem = w.mem(1);
    let at = GuestPhysAddr::new((GNT_GFN << 12) + 64);
    assert_ne!(
        mem.cmpxchg_u16(at, GTF_PERMIT_ACCESS, 0).unwrap(),
        GTF_PERMIT_ACCESS
    );
    // A second, read-only mapping keeps it pinned until both are gone.
    let m2 = map(&mut w, 8, GNTMAP_HOST_MAP | GNTMAP_READONLY, 0x8000_1000);
    assert_eq!(m2.status, GNTST_OKAY);
    assert_ne!(m.handle, m2.handle);

    assert_eq!(unmap(&mut w, m.handle, 0x1234_0000), GNTST_BAD_VIRT_ADDR);
    assert_eq!(unmap(&mut w, m.handle, 0x8000_0000), GNTST_OKAY);
    assert_eq!(entry_flags(&w, 8), GTF_PERMIT_ACCESS | GTF_READING);
    assert_eq!(unmap(&mut w, m.handle, 0), GNTST_BAD_HANDLE);
    assert_eq!(unmap(&mut w, 999, 0), GNTST_BAD_HANDLE);
    assert_eq!(unmap(&mut w, m2.handle, 0), GNTST_OKAY);
    assert_eq!(entry_flags(&w, 8), GTF_PERMIT_ACCESS);
    assert!(w.env.foreign.is_empty());
}

#[test]
fn grant_map_refusals() {
    let mut w = World::new();
    grant(&mut w, 8, (RAM + 5) as u32, true);
    // A read-only grant mapped writable: GNTST_general_error, as Xen 4.17 answers.
    assert_eq!(
        map(&mut w, 8, GNTMAP_HOST_MAP, 0x8000_0000).status,
        GNTST_GENERAL_ERROR
    );
    assert_eq!(entry_flags(&w, 8), GTF_PERMIT_ACCESS | GTF_READONLY);
    assert_eq!(
        map(&mut w, 8, GNTMAP_HOST_MAP | GNTMAP_READONLY, 0x8000_0800).status,
        GNTST_BAD_VIRT_ADDR
    );
    assert_eq!(
        map(&mut w, 8, GNTMAP_DEVICE_MAP, 0x8000_0000).status,
        GNTST_GENERAL_ERROR
    );
    assert_eq!(
        map(&mut w, 9, GNTMAP_HOST_MAP | GNTMAP_READONLY, 0x8000_0000).status,
        GNTST_GENERAL_ERROR
    );
    assert_eq!(
        map(&mut w, 600, GNTMAP_HOST_MAP | GNTMAP_READONLY, 0x8000_0000).status,
        GNTST_BAD_GNTREF
    );
    let op = GnttabMapGrantRef {
        flags: GNTMAP_HOST_MAP,
        ref_: 8,
        dom: 55,
        ..Default::default()
    };
    w.put(0, ARG, &op);
    w.call(
        0,
        0,
        Hypercall::GrantTableOp,
        &[GNTTABOP_MAP_GRANT_REF, ARG, 1],
    );
    assert_eq!(w.get::<GnttabMapGrantRef>(0, ARG).status, GNTST_BAD_DOMAIN);
    // The arch layer refusing the mapping leaves the entry unpinned.
    w.env.refuse_foreign = true;
    assert_eq!(
        map(&mut w, 8, GNTMAP_HOST_MAP | GNTMAP_READONLY, 0x8000_0000).status,
        GNTST_GENERAL_ERROR
    );
    assert_eq!(entry_flags(&w, 8), GTF_PERMIT_ACCESS | GTF_READONLY);
    // Granted to dom0 only: dom1 mapping its own grant is refused.
    let op = GnttabMapGrantRef {
        flags: GNTMAP_HOST_MAP,
        ref_: 8,
        dom: DOMID_SELF,
        ..Default::default()
    };
    w.put(1, ARG, &op);
    w.call(
        1,
        0,
        Hypercall::GrantTableOp,
        &[GNTTABOP_MAP_GRANT_REF, ARG, 1],
    );
    assert_eq!(w.get::<GnttabMapGrantRef>(1, ARG).status, GNTST_BAD_DOMAIN);
    // Too many ops in one call.
    assert_eq!(
        w.call(
            0,
            0,
            Hypercall::GrantTableOp,
            &[GNTTABOP_MAP_GRANT_REF, ARG, 100_000]
        )
        .ret,
        neg(EINVAL)
    );
}

#[test]
fn grant_copy() {
    let mut w = World::new();
    grant(&mut w, 10, (RAM + 6) as u32, false);
    w.put(1, ((RAM + 6) << 12) + 0x10, b"granted!");
    let op = GnttabCopy {
        source: GnttabCopyPtr {
            u: 10,
            domid: 1,
            offset: 0x10,
        },
        dest: GnttabCopyPtr {
            u: RAM + 7,
            domid: DOMID_SELF,
            offset: 0xff8,
        },
        len: 8,
        flags: GNTCOPY_SOURCE_GREF,
        status: 0,
    };
    w.put(0, ARG, &op);
    assert_eq!(
        w.call(0, 0, Hypercall::GrantTableOp, &[GNTTABOP_COPY, ARG, 1])
            .ret,
        0
    );
    assert_eq!(w.get::<GnttabCopy>(0, ARG).status, GNTST_OKAY);
    assert_eq!(&w.get::<[u8; 8]>(0, ((RAM + 7) << 12) + 0xff8), b"granted!");
    assert_eq!(entry_flags(&w, 10), GTF_PERMIT_ACCESS);
    // Crossing the page end, copying from another domain without a grant.
    let bad = GnttabCopy { len: 9, ..op };
    w.put(0, ARG, &bad);
    w.call(0, 0, Hypercall::GrantTableOp, &[GNTTABOP_COPY, ARG, 1]);
    assert_eq!(w.get::<GnttabCopy>(0, ARG).status, GNTST_BAD_COPY_ARG);
    let steal = GnttabCopy {
        flags: 0,
        source: GnttabCopyPtr {
            u: RAM,
            domid: 1,
            offset: 0,
        },
        ..op
    };
    w.put(0, ARG, &steal);
    w.call(0, 0, Hypercall::GrantTableOp, &[GNTTABOP_COPY, ARG, 1]);
    assert_eq!(w.get::<GnttabCopy>(0, ARG).status, GNTST_PERMISSION_DENIED);
    // Writing through a read-only grant is refused, and releases the source grant.
    grant(&mut w, 11, (RAM + 6) as u32, true);
    let ro = GnttabCopy {
        source: GnttabCopyPtr {
            u: 10,
            domid: 1,
            offset: 0,
        },
        dest: GnttabCopyPtr {
            u: 11,
            domid: 1,
            offset: 0,
        },
        len: 4,
        flags: GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF,
        status: 0,
    };
    w.put(0, ARG, &ro);
    w.call(0, 0, Hypercall::GrantTableOp, &[GNTTABOP_COPY, ARG, 1]);
    // GNTST_general_error, as Xen 4.17's _set_status_v1 answers a write use of it.
    assert_eq!(w.get::<GnttabCopy>(0, ARG).status, GNTST_GENERAL_ERROR);
    assert_eq!(entry_flags(&w, 10), GTF_PERMIT_ACCESS);
    assert_eq!(entry_flags(&w, 11), GTF_PERMIT_ACCESS | GTF_READONLY);
}

/// A copy with one end at a frame where the caller has a grant mapped, named as its own frame:
/// refused with GNTST_bad_page at either end, read-only or writable mapping (the page is the
/// granter's, as Xen 4.17 answers: the `pvtest-grants` boot test compares the two); the entry
/// keeps only the mapping's use, and the caller's RAM copies as before.
#[test]
fn grant_copy_refuses_own_frames_that_are_grant_mappings() {
    let mut w = World::new();
    grant(&mut w, 8, (RAM + 5) as u32, true);
    grant(&mut w, 9, (RAM + 6) as u32, false);
    // Mapped over the grantee's own RAM, so only the new check can refuse the copies.
    let mapped = RAM + 20;
    let own = RAM + 21;
    let copy = |w: &mut World, from: u64, to: u64| {
        let end = |u| GnttabCopyPtr {
            u,
            domid: DOMID_SELF,
            offset: 0,
        };
        let op = GnttabCopy {
            source: end(from),
            dest: end(to),
            len: 16,
            flags: 0,
            status: 0,
        };
        w.put(0, ARG, &op);
        assert_eq!(
            w.call(0, 0, Hypercall::GrantTableOp, &[GNTTABOP_COPY, ARG, 1])
                .ret,
            0
        );
        w.get::<GnttabCopy>(0, ARG).status
    };
    assert_eq!(copy(&mut w, mapped, own), GNTST_OKAY);
    for (gref, flags, pinned) in [
        (8, GNTMAP_HOST_MAP | GNTMAP_READONLY, GTF_READING),
        (9, GNTMAP_HOST_MAP, GTF_READING | GTF_WRITING),
    ] {
        let m = map(&mut w, gref, flags, mapped << 12);
        assert_eq!(m.status, GNTST_OKAY);
        let before = entry_flags(&w, gref);
        assert_eq!(before & (GTF_READING | GTF_WRITING), pinned);
        assert_eq!(copy(&mut w, mapped, own), GNTST_BAD_PAGE);
        assert_eq!(copy(&mut w, own, mapped), GNTST_BAD_PAGE);
        assert_eq!(entry_flags(&w, gref), before);
        assert_eq!(copy(&mut w, own, own + 1), GNTST_OKAY);
        assert_eq!(unmap(&mut w, m.handle, mapped << 12), GNTST_OKAY);
    }
    // Unmapped, the frame is the caller's again.
    assert_eq!(copy(&mut w, mapped, own), GNTST_OKAY);
}

#[test]
fn vcpu_info_refuses_a_page_held_through_a_grant() {
    let mut w = World::new();
    w.map_shared_info(0);
    grant(&mut w, 9, (RAM + 6) as u32, false);
    let mapped = RAM + 20;
    let register = |w: &mut World, mfn: u64, offset: u32| {
        let reg = VcpuRegisterVcpuInfo {
            mfn,
            offset,
            rsvd: 0,
        };
        w.put(0, ARG, &reg);
        w.call(
            0,
            0,
            Hypercall::VcpuOp,
            &[VCPUOP_REGISTER_VCPU_INFO, 0, ARG],
        )
        .ret
    };
    let m = map(&mut w, 9, GNTMAP_HOST_MAP, mapped << 12);
    assert_eq!(m.status, GNTST_OKAY);
    // On the mapped page, or straddling into it: the page is the granter's.
    assert_eq!(register(&mut w, mapped, 0), neg(EINVAL));
    assert_eq!(register(&mut w, mapped - 1, 0xfe0), neg(EINVAL));
    assert!(w.env.upcalls.is_empty());
    assert_eq!(unmap(&mut w, m.handle, mapped << 12), GNTST_OKAY);
    // Unmapped, the frame is the domain's own again.
    assert_eq!(register(&mut w, mapped, 0), 0);
}

#[test]
fn grant_size_and_version() {
    let mut w = World::new();
    w.put(
        1,
        ARG,
        &GnttabQuerySize {
            dom: DOMID_SELF,
            ..Default::default()
        },
    );
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::GrantTableOp,
            &[GNTTABOP_QUERY_SIZE, ARG, 1]
        )
        .ret,
        0
    );
    let q: GnttabQuerySize = w.get(1, ARG);
    assert_eq!(
        (q.nr_frames, q.max_nr_frames, q.status),
        (1, 64, GNTST_OKAY)
    );
    w.put(
        1,
        ARG,
        &GnttabQuerySize {
            dom: 0,
            ..Default::default()
        },
    );
    w.call(
        1,
        0,
        Hypercall::GrantTableOp,
        &[GNTTABOP_QUERY_SIZE, ARG, 1],
    );
    assert_eq!(
        w.get::<GnttabQuerySize>(1, ARG).status,
        GNTST_PERMISSION_DENIED
    );
    w.put(1, ARG, &GnttabSetVersion { version: 2 });
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::GrantTableOp,
            &[GNTTABOP_SET_VERSION, ARG, 1]
        )
        .ret,
        neg(EOPNOTSUPP)
    );
    assert_eq!(w.get::<GnttabSetVersion>(1, ARG).version, 1);
    w.put(1, ARG, &GnttabSetVersion { version: 1 });
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::GrantTableOp,
            &[GNTTABOP_SET_VERSION, ARG, 1]
        )
        .ret,
        0
    );
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::GrantTableOp,
            &[GNTTABOP_CACHE_FLUSH, ARG, 1]
        )
        .ret,
        neg(ENOSYS)
    );
    // Status frames (v2) cannot be placed.
    let op = AddToPhysmap {
        domid: DOMID_SELF,
        space: XENMAPSPACE_GRANT_TABLE,
        idx: XENMAPIDX_GRANT_TABLE_STATUS,
        gpfn: GNT_GFN,
        ..Default::default()
    };
    w.put(1, ARG, &op);
    assert_eq!(
        w.call(1, 0, Hypercall::MemoryOp, &[XENMEM_ADD_TO_PHYSMAP, ARG])
            .ret,
        neg(EINVAL)
    );
}

#[test]
fn destroying_domains_tears_down_grants_and_channels() {
    let mut w = World::new();
    w.map_shared_info(0);
    grant(&mut w, 8, (RAM + 5) as u32, false);
    assert_eq!(
        map(&mut w, 8, GNTMAP_HOST_MAP, 0x8000_0000).status,
        GNTST_OKAY
    );
    let p1 = w.alloc_unbound(1, 0);
    w.bind_interdomain(0, 1, p1);
    let p0 = w.get::<EvtchnBindInterdomain>(0, ARG).local_port;
    w.put(
        0,
        ARG,
        &EvtchnBindVirq {
            virq: VIRQ_DOM_EXC,
            vcpu: 0,
            port: 0,
        },
    );
    w.call(0, 0, Hypercall::EventChannelOp, &[EVTCHNOP_BIND_VIRQ, ARG]);
    let dom_exc = w.get::<EvtchnBindVirq>(0, ARG).port;

    // The granter dies: the grantee's mapping is removed, the hwdom hears about it.
    w.xen.destroy_domain(1, &mut w.env);
    assert!(w.env.foreign.is_empty());
    assert!(w.xen.domain(1).is_none());
    let si = w.shared(0);
    assert_ne!(si.evtchn_pending[0] & (1 << dom_exc), 0);
    assert_ne!(si.evtchn_pending[0] & (1 << p0), 0);
    w.put(
        0,
        ARG,
        &EvtchnStatus {
            dom: DOMID_SELF,
            port: p0,
            ..Default::default()
        },
    );
    w.call(0, 0, Hypercall::EventChannelOp, &[EVTCHNOP_STATUS, ARG]);
    assert_eq!(w.get::<EvtchnStatus>(0, ARG).status, EVTCHNSTAT_UNBOUND);
    // Sending to the dead peer is harmless.
    assert_eq!(w.evtchn_port_op(0, EVTCHNOP_SEND, p0), 0);
    w.xen.destroy_domain(1, &mut w.env);
    w.xen.destroy_domain(0, &mut w.env);
    assert!(w.xen.domain(0).is_none());
}

#[test]
fn grantee_death_unpins_granter_entries() {
    let mut w = World::new();
    grant(&mut w, 8, (RAM + 5) as u32, false);
    map(&mut w, 8, GNTMAP_HOST_MAP, 0x8000_0000);
    w.xen.destroy_domain(0, &mut w.env);
    assert_eq!(entry_flags(&w, 8), GTF_PERMIT_ACCESS);
    assert!(w.env.foreign.is_empty());
}

#[test]
fn sched_ops() {
    let mut w = World::new();
    assert_eq!(
        w.call(1, 0, Hypercall::SchedOp, &[SCHEDOP_YIELD, 0]).after,
        After::Yield
    );
    assert_eq!(
        w.call(1, 0, Hypercall::SchedOp, &[SCHEDOP_BLOCK, 0]).after,
        After::Block
    );
    let shutdown = |w: &mut World, reason: u32| {
        w.put(1, ARG, &SchedShutdown { reason });
        w.call(1, 0, Hypercall::SchedOp, &[SCHEDOP_SHUTDOWN, ARG])
    };
    assert_eq!(
        shutdown(&mut w, SHUTDOWN_POWEROFF).after,
        After::Shutdown(ShutdownReason::PowerOff)
    );
    assert_eq!(
        shutdown(&mut w, SHUTDOWN_REBOOT).after,
        After::Shutdown(ShutdownReason::Reboot)
    );
    assert_eq!(
        shutdown(&mut w, SHUTDOWN_CRASH).after,
        After::Shutdown(ShutdownReason::Crash)
    );
    assert_eq!(shutdown(&mut w, SHUTDOWN_SUSPEND), Outcome::err(EOPNOTSUPP));
    assert_eq!(shutdown(&mut w, 77), Outcome::err(EINVAL));
    assert_eq!(
        w.call(1, 0, Hypercall::SchedOp, &[SCHEDOP_SHUTDOWN, 0x10]),
        Outcome::err(EFAULT)
    );
    w.put(
        1,
        ARG,
        &SchedShutdown {
            reason: SHUTDOWN_REBOOT,
        },
    );
    assert_eq!(
        w.call(1, 0, Hypercall::SchedOp, &[SCHEDOP_SHUTDOWN_CODE, ARG]),
        Outcome::ret(0)
    );
    assert_eq!(
        w.xen.domain(1).unwrap().shutdown_code(),
        Some(SHUTDOWN_REBOOT)
    );
    assert_eq!(
        w.call(1, 0, Hypercall::SchedOp, &[SCHEDOP_REMOTE_SHUTDOWN, ARG]),
        Outcome::err(EPERM)
    );

    // Poll: nothing pending blocks; a pending port returns at once; bad ports are refused
    // (more in the `poll_*` tests).
    w.map_shared_info(1);
    let port = w.xen.domain(1).unwrap().console_port().unwrap();
    w.put(1, ARG2, &port);
    w.put(
        1,
        ARG,
        &SchedPoll {
            ports: ARG2,
            nr_ports: 1,
            timeout: 0,
        },
    );
    assert_eq!(
        w.call(1, 0, Hypercall::SchedOp, &[SCHEDOP_POLL, ARG]),
        Outcome {
            ret: 0,
            after: After::BlockPoll { deadline_ns: None }
        }
    );
    w.xen.notify(1, port, &mut w.env);
    assert_eq!(
        w.call(1, 0, Hypercall::SchedOp, &[SCHEDOP_POLL, ARG]),
        Outcome::ret(0)
    );
    w.put(1, ARG2, &999u32);
    assert_eq!(
        w.call(1, 0, Hypercall::SchedOp, &[SCHEDOP_POLL, ARG]),
        Outcome::err(EINVAL)
    );
    w.put(
        1,
        ARG,
        &SchedPoll {
            ports: ARG2,
            nr_ports: 100_000,
            timeout: 0,
        },
    );
    assert_eq!(
        w.call(1, 0, Hypercall::SchedOp, &[SCHEDOP_POLL, ARG]),
        Outcome::err(EINVAL)
    );
}

/// Where a test puts a SCHEDOP_poll port list.
const POLL_PORTS: u64 = ARG2 + 0x100;

impl World {
    /// SCHEDOP_poll from `vcpu` of `dom` on `ports` (written at [`POLL_PORTS`]).
    fn poll(&mut self, dom: DomId, vcpu: u32, ports: &[u32], timeout: u64) -> Outcome {
        for (i, p) in ports.iter().enumerate() {
            self.put(dom, POLL_PORTS + 4 * i as u64, p);
        }
        self.poll_raw(dom, vcpu, POLL_PORTS, ports.len() as u32, timeout)
    }

    fn poll_raw(&mut self, dom: DomId, vcpu: u32, at: u64, nr_ports: u32, timeout: u64) -> Outcome {
        self.put(
            dom,
            ARG,
            &SchedPoll {
                ports: at,
                nr_ports,
                timeout,
            },
        );
        self.call(dom, vcpu, Hypercall::SchedOp, &[SCHEDOP_POLL, ARG])
    }

    /// Sets `port`'s mask bit in `dom`'s shared_info.
    fn mask(&self, dom: DomId, port: u32) {
        let at = (SHARED_GFN << 12) + SHARED_INFO_EVTCHN_MASK as u64 + u64::from(port / 64) * 8;
        let word: u64 = self.get(dom, at);
        self.put(dom, at, &(word | 1 << (port % 64)));
    }

    /// A loopback channel in `dom`: (unbound end, bound end), both masked and not pending.
    fn masked_loopback(&mut self, dom: DomId) -> (u32, u32) {
        let a = self.alloc_unbound(dom, dom);
        assert_eq!(self.bind_interdomain(dom, dom, a).ret, 0);
        let b = self.get::<EvtchnBindInterdomain>(dom, ARG).local_port;
        let pending = (SHARED_GFN << 12) + SHARED_INFO_EVTCHN_PENDING as u64;
        for p in [a, b] {
            self.mask(dom, p);
            let at = pending + u64::from(p / 64) * 8;
            let word: u64 = self.get(dom, at);
            self.put(dom, at, &(word & !(1 << (p % 64))));
        }
        // The bound end started pending before it was masked: forget its upcall.
        let vcpu0 = (SHARED_GFN << 12) + SHARED_INFO_VCPU_INFO as u64;
        self.put(dom, vcpu0 + VCPU_INFO_UPCALL_PENDING as u64, &0u8);
        self.put(dom, vcpu0 + VCPU_INFO_PENDING_SEL as u64, &0u64);
        self.env.woken.clear();
        self.env.upcalls.clear();
        (a, b)
    }
}

fn blocks(deadline_ns: Option<u64>) -> Outcome {
    Outcome {
        ret: 0,
        after: After::BlockPoll { deadline_ns },
    }
}

#[test]
fn poll_blocks_until_a_masked_polled_port_is_pending() {
    let mut w = World::new();
    w.map_shared_info(1);
    let (a, b) = w.masked_loopback(1);
    let (c, _) = w.masked_loopback(1);
    assert_eq!(w.poll(1, 1, &[a], 0), blocks(None));
    assert!(w.xen.is_polling(1, 1));
    assert!(!w.xen.is_polling(1, 0));
    // An event on another port does not end it.
    w.xen.notify(1, c, &mut w.env);
    assert!(w.env.woken.is_empty());
    assert!(w.xen.is_polling(1, 1));
    // b -> a: a becomes pending (masked: no upcall) and the poller is woken, once.
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, b), 0);
    assert_eq!(w.env.woken, [(1, 1)]);
    assert!(w.env.upcalls.is_empty(), "a masked port raises no upcall");
    assert!(!w.xen.is_polling(1, 1));
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, b), 0);
    assert_eq!(w.env.woken, [(1, 1)], "a poll ends once");
    // Polling again returns at once: the pending bit stays set (poll does not clear it).
    assert_eq!(w.poll(1, 1, &[a], 0), Outcome::ret(0));
    assert!(!w.xen.is_polling(1, 1));
}

#[test]
fn poll_wakes_on_any_listed_port_and_every_poller() {
    let mut w = World::new();
    w.map_shared_info(1);
    let (a, b) = w.masked_loopback(1);
    let (c, d) = w.masked_loopback(1);
    // Duplicates are harmless; vCPU 0 polls a and c, vCPU 1 polls c only.
    assert_eq!(w.poll(1, 0, &[a, c, a, c], 0), blocks(None));
    assert_eq!(w.poll(1, 1, &[c], 0), blocks(None));
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, d), 0);
    w.env.woken.sort();
    assert_eq!(w.env.woken, [(1, 0), (1, 1)]);
    // The other listed port of a poll that ended wakes nobody.
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, b), 0);
    assert_eq!(w.env.woken.len(), 2);
    // An unmasked port wakes the poller and raises the upcall as usual.
    let (e, f) = w.masked_loopback(1);
    assert_eq!(w.poll(1, 0, &[e], 0), blocks(None));
    let mask = (SHARED_GFN << 12) + SHARED_INFO_EVTCHN_MASK as u64 + u64::from(e / 64) * 8;
    let word: u64 = w.get(1, mask);
    w.put(1, mask, &(word & !(1 << (e % 64))));
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, f), 0);
    assert_eq!(w.env.woken, [(1, 0)]);
    assert_eq!(w.env.upcalls, [(1, 0)]);
}

#[test]
fn poll_wakes_on_virq_ipi_and_backend_events() {
    let mut w = World::new();
    w.map_shared_info(1);
    // The PV console port: its far end is Mica's backend.
    let console = w.xen.domain(1).unwrap().console_port().unwrap();
    w.mask(1, console);
    assert_eq!(w.poll(1, 0, &[console], 0), blocks(None));
    w.xen.notify(1, console, &mut w.env);
    assert_eq!(w.env.woken, [(1, 0)]);
    // An IPI port to vCPU 1, sent from vCPU 0.
    w.put(1, ARG, &EvtchnBindIpi { vcpu: 1, port: 0 });
    let r = w.call(1, 0, Hypercall::EventChannelOp, &[EVTCHNOP_BIND_IPI, ARG]);
    assert_eq!(r.ret, 0);
    let ipi = w.get::<EvtchnBindIpi>(1, ARG).port;
    w.mask(1, ipi);
    assert_eq!(w.poll(1, 1, &[ipi], 0), blocks(None));
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, ipi), 0);
    assert_eq!(w.env.woken, [(1, 0), (1, 1)]);
    // VIRQ_CONSOLE of the hardware domain.
    w.map_shared_info(0);
    w.put(
        0,
        ARG,
        &EvtchnBindVirq {
            virq: VIRQ_CONSOLE,
            vcpu: 0,
            port: 0,
        },
    );
    let r = w.call(0, 0, Hypercall::EventChannelOp, &[EVTCHNOP_BIND_VIRQ, ARG]);
    assert_eq!(r.ret, 0);
    let virq = w.get::<EvtchnBindVirq>(0, ARG).port;
    w.mask(0, virq);
    assert_eq!(w.poll(0, 0, &[virq], 0), blocks(None));
    w.xen.hwdom_console_input(b"x", &mut w.env);
    assert_eq!(w.env.woken, [(1, 0), (1, 1), (0, 0)]);
}

#[test]
fn poll_of_another_domain_is_not_woken_by_the_same_port_number() {
    let mut w = World::new();
    w.map_shared_info(0);
    w.map_shared_info(1);
    // dom1's port 1 is its console: give dom0 one too, so the loopbacks get equal numbers.
    w.alloc_unbound(0, 0);
    let (a0, _) = w.masked_loopback(0);
    let (a1, b1) = w.masked_loopback(1);
    assert_eq!(a0, a1, "both domains' first free port");
    assert_eq!(w.poll(0, 0, &[a0], 0), blocks(None));
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, b1), 0);
    assert!(w.env.woken.is_empty());
    assert!(w.xen.is_polling(0, 0));
    // An inter-domain channel: dom1's send wakes dom0's poller on its own end.
    let p0 = w.alloc_unbound(0, 1);
    assert_eq!(w.bind_interdomain(1, 0, p0).ret, 0);
    let p1 = w.get::<EvtchnBindInterdomain>(1, ARG).local_port;
    w.mask(0, p0);
    assert_eq!(w.poll(0, 0, &[p0], 0), blocks(None));
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, p1), 0);
    assert_eq!(w.env.woken, [(0, 0)]);
}

#[test]
fn poll_timeouts_follow_xen() {
    let mut w = World::new();
    w.map_shared_info(1);
    let (a, _) = w.masked_loopback(1);
    w.env.now = 1_000_000;
    // Already past (or now): returns 0 at once, no -ETIMEDOUT (Xen's timer fires at once).
    assert_eq!(w.poll(1, 0, &[a], 1), Outcome::ret(0));
    assert_eq!(w.poll(1, 0, &[a], 1_000_000), Outcome::ret(0));
    assert!(!w.xen.is_polling(1, 0));
    // Past 2^63: a negative s_time_t to Xen, so in the past.
    assert_eq!(w.poll(1, 0, &[a], u64::MAX), Outcome::ret(0));
    assert_eq!(w.poll(1, 0, &[a], 1 << 63), Outcome::ret(0));
    assert_eq!(w.poll(1, 0, &[a], 1_000_001), blocks(Some(1_000_001)));
    assert!(w.xen.is_polling(1, 0));
    // The arch layer's timeout ends it; a later event wakes nobody.
    assert!(w.xen.end_poll(1, 0));
    assert!(!w.xen.end_poll(1, 0));
    assert_eq!(
        w.poll(1, 0, &[a], i64::MAX as u64),
        blocks(Some(i64::MAX as u64))
    );
    // No ports and no timeout: blocks until an interrupt, as on Xen.
    assert_eq!(w.poll(1, 1, &[], 0), blocks(None));
    assert!(w.xen.end_poll(1, 1));
    assert!(w.xen.end_poll(1, 0));
}

#[test]
fn poll_in_a_multicall_ends_the_batch_and_blocks() {
    let mut w = World::new();
    w.map_shared_info(1);
    let (a, _) = w.masked_loopback(1);
    w.put(1, POLL_PORTS, &a);
    w.put(
        1,
        ARG2,
        &SchedPoll {
            ports: POLL_PORTS,
            nr_ports: 1,
            timeout: 0,
        },
    );
    let entries = [
        MulticallEntry {
            op: Hypercall::SchedOp.nr(),
            result: 1,
            args: [SCHEDOP_POLL, ARG2, 0, 0, 0, 0],
        },
        MulticallEntry {
            op: Hypercall::XenVersion.nr(),
            result: 1,
            args: [XENVER_VERSION, 0, 0, 0, 0, 0],
        },
    ];
    w.put(1, ARG, &entries);
    assert_eq!(w.call(1, 0, Hypercall::Multicall, &[ARG, 2]), blocks(None));
    let back: [MulticallEntry; 2] = w.get(1, ARG);
    assert_eq!((back[0].result, back[1].result), (0, 1));
    assert!(w.xen.is_polling(1, 0));
}

#[test]
fn poll_ends_when_the_vcpu_runs_again() {
    let mut w = World::new();
    w.map_shared_info(1);
    let (a, b) = w.masked_loopback(1);
    assert_eq!(w.poll(1, 0, &[a], 0), blocks(None));
    let mut vmem = w.mem(1);
    w.xen
        .runstate_change(1, 0, Runstate::Blocked, 10, &mut vmem, &mut w.env);
    assert!(w.xen.is_polling(1, 0));
    // Woken by something else (an interrupt): running again ends the poll.
    w.xen
        .runstate_change(1, 0, Runstate::Running, 20, &mut vmem, &mut w.env);
    assert!(!w.xen.is_polling(1, 0));
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, b), 0);
    assert!(w.env.woken.is_empty());
}

#[test]
fn poll_refuses_hostile_port_lists() {
    let mut w = World::new();
    w.map_shared_info(0);
    w.map_shared_info(1);
    let (a, b) = w.masked_loopback(1);
    // Ports dom0 has and dom1 has not.
    let mut dom0_ports = Vec::new();
    for _ in 0..6 {
        dom0_ports.push(w.alloc_unbound(0, 0));
    }
    let foreign = *dom0_ports.last().unwrap();
    assert!(w.xen.domain(1).unwrap().evtchn.state(foreign).is_none());
    let cases: &[(&[u32], i64)] = &[
        (&[foreign], neg(EINVAL)),
        (&[0], neg(EINVAL)),
        (&[MAX_EVTCHN_PORTS], neg(EINVAL)),
        (&[u32::MAX], neg(EINVAL)),
        (&[a, foreign], neg(EINVAL)),
    ];
    for (ports, want) in cases {
        assert_eq!(w.poll(1, 0, ports, 0), Outcome::ret(*want), "{ports:?}");
        assert!(!w.xen.is_polling(1, 0));
    }
    // A closed port.
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_CLOSE, b), 0);
    assert_eq!(w.poll(1, 0, &[b], 0), Outcome::err(EINVAL));
    // Like Xen, the first pending port answers before later entries are looked at.
    let (c, d) = w.masked_loopback(1);
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, d), 0);
    assert_eq!(w.poll(1, 0, &[c, foreign], 0), Outcome::ret(0));
    assert_eq!(w.poll(1, 0, &[foreign, c], 0), Outcome::err(EINVAL));
    // Too many ports, whatever the pointer.
    for nr in [POLL_MAX_PORTS + 1, 100_000, u32::MAX] {
        assert_eq!(w.poll_raw(1, 0, 0, nr, 0), Outcome::err(EINVAL));
    }
    // The most ports, all readable: 128 copies of a port blocks.
    let many = [a; POLL_MAX_PORTS as usize];
    assert_eq!(w.poll(1, 0, &many, 0), blocks(None));
    assert!(w.xen.end_poll(1, 0));
    // Unreadable lists: unmapped, running off the end of RAM, wrapping around.
    let ram_end = (RAM + 0x20) << 12;
    for (at, nr) in [
        (0x10, 1),
        (ram_end - 4, 2),
        (u64::MAX - 3, 2),
        (u64::MAX, 1),
    ] {
        w.put(1, ram_end - 4, &a);
        assert_eq!(w.poll_raw(1, 0, at, nr, 0), Outcome::err(EFAULT), "{at:#x}");
        assert!(!w.xen.is_polling(1, 0));
    }
    // An unreadable sched_poll struct, a vCPU that does not exist.
    assert_eq!(
        w.call(1, 0, Hypercall::SchedOp, &[SCHEDOP_POLL, 0x10]),
        Outcome::err(EFAULT)
    );
    assert_eq!(w.poll(1, 7, &[a], 0), Outcome::err(ESRCH));
}

#[test]
fn poll_before_shared_info_and_across_domain_death() {
    let mut w = World::new();
    // No shared_info yet: pending bits live in Mica until the guest maps it.
    let console = w.xen.domain(1).unwrap().console_port().unwrap();
    assert_eq!(w.poll(1, 0, &[console], 0), blocks(None));
    w.xen.notify(1, console, &mut w.env);
    assert_eq!(w.env.woken, [(1, 0)]);
    assert_eq!(w.poll(1, 0, &[console], 0), Outcome::ret(0));
    // A domain that dies while polling: nothing left to wake, nothing panics.
    w.map_shared_info(0);
    let p0 = w.alloc_unbound(0, 1);
    assert_eq!(w.bind_interdomain(1, 0, p0).ret, 0);
    let p1 = w.get::<EvtchnBindInterdomain>(1, ARG).local_port;
    w.map_shared_info(1);
    w.mask(1, p1);
    let pending = (SHARED_GFN << 12) + SHARED_INFO_EVTCHN_PENDING as u64;
    w.put(1, pending, &0u64);
    w.env.woken.clear();
    assert_eq!(w.poll(1, 1, &[p1], 0), blocks(None));
    w.xen.destroy_domain(1, &mut w.env);
    assert!(!w.xen.is_polling(1, 1));
    assert!(!w.xen.end_poll(1, 1));
    assert_eq!(w.evtchn_port_op(0, EVTCHNOP_SEND, p0), 0);
    assert!(w.env.woken.is_empty());
}

#[test]
fn console_io_is_for_the_hardware_domain() {
    let mut w = World::new();
    w.put(0, ARG, b"hello");
    assert_eq!(
        w.call(0, 0, Hypercall::ConsoleIo, &[CONSOLEIO_WRITE, 5, ARG])
            .ret,
        0
    );
    assert_eq!(w.env.console, b"hello");
    assert_eq!(
        w.call(1, 0, Hypercall::ConsoleIo, &[CONSOLEIO_WRITE, 5, ARG])
            .ret,
        neg(EPERM)
    );
    assert_eq!(
        w.call(0, 0, Hypercall::ConsoleIo, &[CONSOLEIO_WRITE, 1 << 20, ARG])
            .ret,
        neg(E2BIG)
    );
    assert_eq!(
        w.call(0, 0, Hypercall::ConsoleIo, &[CONSOLEIO_WRITE, 5, 0x10])
            .ret,
        neg(EFAULT)
    );
    // Reads return what was queued, at most `count`.
    assert_eq!(
        w.call(0, 0, Hypercall::ConsoleIo, &[CONSOLEIO_READ, 16, ARG2])
            .ret,
        0
    );
    w.xen.hwdom_console_input(b"abc", &mut w.env);
    assert_eq!(
        w.call(0, 0, Hypercall::ConsoleIo, &[CONSOLEIO_READ, 2, ARG2])
            .ret,
        2
    );
    assert_eq!(&w.get::<[u8; 2]>(0, ARG2), b"ab");
    assert_eq!(
        w.call(0, 0, Hypercall::ConsoleIo, &[CONSOLEIO_READ, 16, ARG2])
            .ret,
        1
    );
    let big = vec![b'x'; 10_000];
    assert_eq!(
        w.xen.hwdom_console_input(&big, &mut w.env),
        HWDOM_CONSOLE_INPUT_MAX
    );
}

#[test]
fn pv_console_ring() {
    let mut w = World::new();
    let ring = CONSOLE_GFN << 12;
    let port = w.xen.domain(1).unwrap().console_port().unwrap();
    // The guest writes "hi" and notifies.
    w.put(1, ring + XENCONS_OUT as u64, b"hi");
    w.put(1, ring + XENCONS_OUT_PROD as u64, &2u32);
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_SEND, port), 0);
    assert_eq!(w.env.kicks, vec![(1, Backend::Console)]);
    // The guest cannot close Mica's end.
    assert_eq!(w.evtchn_port_op(1, EVTCHNOP_CLOSE, port), neg(EINVAL));
    let mut out = [0u8; 64];
    assert_eq!(w.xen.console_poll_output(1, &mut out, &mut w.env), 2);
    assert_eq!(&out[..2], b"hi");
    assert_eq!(w.get::<u32>(1, ring + XENCONS_OUT_CONS as u64), 2);
    assert_eq!(w.xen.console_poll_output(1, &mut out, &mut w.env), 0);
    // Wrap-around: producer at 2048 + 3 with bytes at the ring's end and start.
    w.put(1, ring + XENCONS_OUT as u64 + 2046, b"ab");
    w.put(1, ring + XENCONS_OUT as u64, b"c");
    w.put(1, ring + XENCONS_OUT_PROD as u64, &2049u32);
    let mut w2 = [0u8; 4];
    // The consumer is at 2: 2047 bytes available, only 4 fit.
    assert_eq!(w.xen.console_poll_output(1, &mut w2, &mut w.env), 4);
    // A hostile producer far ahead is skipped, not dumped.
    w.put(1, ring + XENCONS_OUT_PROD as u64, &0x8000_0000u32);
    assert_eq!(w.xen.console_poll_output(1, &mut out, &mut w.env), 0);
    assert_eq!(w.get::<u32>(1, ring + XENCONS_OUT_CONS as u64), 0x8000_0000);
    // The guest scribbling on out_cons does not matter: Mica keeps its own.
    w.put(1, ring + XENCONS_OUT_CONS as u64, &7u32);
    assert_eq!(w.xen.console_poll_output(1, &mut out, &mut w.env), 0);

    // Input: fills at most the ring; a nonsense consumer means "full".
    assert_eq!(w.xen.console_push_input(1, b"ls\n", &mut w.env), 3);
    assert_eq!(&w.get::<[u8; 3]>(1, ring + XENCONS_IN as u64), b"ls\n");
    assert_eq!(w.get::<u32>(1, ring + XENCONS_IN_PROD as u64), 3);
    let big = vec![b'y'; 5000];
    assert_eq!(w.xen.console_push_input(1, &big, &mut w.env), 1021);
    assert_eq!(w.xen.console_push_input(1, b"z", &mut w.env), 0);
    w.put(1, ring + XENCONS_IN_CONS as u64, &0xdead_beefu32);
    assert_eq!(w.xen.console_push_input(1, b"z", &mut w.env), 0);
    // Domains without a Mica console.
    assert_eq!(w.xen.console_poll_output(0, &mut out, &mut w.env), 0);
    assert_eq!(w.xen.console_push_input(9, b"z", &mut w.env), 0);
}

#[test]
fn multicall_runs_entries_and_bounds_them() {
    let mut w = World::new();
    let entries = [
        MulticallEntry {
            op: Hypercall::XenVersion.nr(),
            result: 0,
            args: [XENVER_VERSION, 0, 0, 0, 0, 0],
        },
        MulticallEntry {
            op: 9999,
            result: 0,
            args: [0; 6],
        },
        MulticallEntry {
            op: Hypercall::Multicall.nr(),
            result: 0,
            args: [ARG, 1, 0, 0, 0, 0],
        },
        MulticallEntry {
            op: Hypercall::SchedOp.nr(),
            result: 0,
            args: [SCHEDOP_YIELD, 0, 0, 0, 0, 0],
        },
        MulticallEntry {
            op: Hypercall::XenVersion.nr(),
            result: 0,
            args: [XENVER_PAGESIZE, 0, 0, 0, 0, 0],
        },
    ];
    w.put(1, ARG, &entries);
    let r = w.call(1, 0, Hypercall::Multicall, &[ARG, 5]);
    assert_eq!(
        r,
        Outcome {
            ret: 0,
            after: After::Yield
        }
    );
    let back: [MulticallEntry; 5] = w.get(1, ARG);
    assert_eq!(back[0].result, 0x4_0011);
    assert_eq!(back[1].result as i64, neg(ENOSYS));
    assert_eq!(back[2].result as i64, neg(EINVAL));
    assert_eq!(back[3].result, 0);
    assert_eq!(back[4].result, 0, "entries after a yield are not run");
    assert_eq!(
        w.call(1, 0, Hypercall::Multicall, &[ARG, 65]).ret,
        neg(EINVAL)
    );
    assert_eq!(
        w.call(1, 0, Hypercall::Multicall, &[0x10, 1]).ret,
        neg(EFAULT)
    );
    assert_eq!(
        w.call(1, 0, Hypercall::Multicall, &[u64::MAX - 8, 2]).ret,
        neg(EFAULT)
    );
}

#[test]
fn vm_assist_physdev_platform() {
    let mut w = World::new();
    assert_eq!(
        w.call(1, 0, Hypercall::VmAssist, &[VMASST_CMD_ENABLE, 5])
            .ret,
        0
    );
    assert_eq!(
        w.call(1, 0, Hypercall::VmAssist, &[VMASST_CMD_ENABLE, 2])
            .ret,
        neg(EINVAL)
    );
    assert_eq!(w.call(1, 0, Hypercall::VmAssist, &[7, 5]).ret, neg(ENOSYS));
    assert_eq!(
        w.call(0, 0, Hypercall::PhysdevOp, &[PHYSDEVOP_PCI_DEVICE_ADD, ARG])
            .ret,
        0
    );
    assert_eq!(
        w.call(1, 0, Hypercall::PhysdevOp, &[PHYSDEVOP_PCI_DEVICE_ADD, ARG])
            .ret,
        neg(EPERM)
    );
    assert_eq!(
        w.call(0, 0, Hypercall::PhysdevOp, &[PHYSDEVOP_MANAGE_PCI_ADD, ARG])
            .ret,
        neg(ENOSYS)
    );
    // settime64 from dom0 updates every mapped shared_info.
    w.map_shared_info(1);
    w.put(0, ARG, &[XENPF_SETTIME64, XENPF_INTERFACE_VERSION]);
    w.put(0, ARG + 8, &[1_700_000_000u64, 250, 2_000_000_000]);
    assert_eq!(w.call(0, 0, Hypercall::PlatformOp, &[ARG]).ret, 0);
    let si = w.shared(1);
    assert_eq!((si.wc_sec, si.wc_nsec), (1_699_999_998, 250));
    assert_eq!(w.call(1, 0, Hypercall::PlatformOp, &[ARG]).ret, neg(EPERM));
    w.put(0, ARG, &[XENPF_SETTIME64, 1]);
    assert_eq!(w.call(0, 0, Hypercall::PlatformOp, &[ARG]).ret, neg(EACCES));
}

#[test]
fn domain_creation_is_validated() {
    let mut env = FakeEnv::default();
    let mut xen = Xen::new();
    assert_eq!(
        xen.create_domain(&DomainConfig::domu(0x7FF0, 1), &mut env),
        Err(XenError::BadDomid)
    );
    assert_eq!(
        xen.create_domain(&DomainConfig::domu(1, 0), &mut env),
        Err(XenError::BadConfig)
    );
    let mut c = DomainConfig::domu(1, 1);
    c.max_grant_frames = 5000;
    assert_eq!(xen.create_domain(&c, &mut env), Err(XenError::BadConfig));
    c.max_grant_frames = 1;
    c.pv_console_gfn = Some(0x39000);
    // No memory for domain 1 in the env: the console page cannot be mapped.
    assert_eq!(
        xen.create_domain(&c, &mut env),
        Err(XenError::MapFailed(ESRCH))
    );
    c.pv_console_gfn = None;
    assert_eq!(xen.create_domain(&c, &mut env), Ok(()));
    assert_eq!(xen.create_domain(&c, &mut env), Err(XenError::BadDomid));
    let mut p = DomainConfig::domu(2, 1);
    p.privileged = true;
    assert_eq!(xen.create_domain(&p, &mut env), Ok(()));
    p.domid = 3;
    assert_eq!(xen.create_domain(&p, &mut env), Err(XenError::BadConfig));
}

#[test]
fn domains_are_found_by_id_with_gaps_and_after_removal() {
    let mut env = FakeEnv::default();
    let mut xen = Xen::new();
    for id in [3, 0, 7] {
        assert_eq!(
            xen.create_domain(&DomainConfig::domu(id, 1), &mut env),
            Ok(())
        );
    }
    assert_eq!(xen.domains.keys().collect::<Vec<_>>(), [0, 3, 7]);
    for id in [1, 2, 4, 8, 0x7FF0, DOMID_SELF] {
        assert!(xen.domain(id).is_none(), "no domain {id:#x}");
    }
    assert_eq!(xen.domain(3).map(XenDomain::id), Some(3));
    xen.destroy_domain(7, &mut env);
    assert!(xen.domain(7).is_none());
    assert_eq!(xen.domains.keys().collect::<Vec<_>>(), [0, 3]);
    xen.destroy_domain(0, &mut env);
    let ids: Vec<DomId> = xen
        .domains
        .iter_mut()
        .map(|(id, d)| {
            assert_eq!(d.id(), id);
            id
        })
        .collect();
    assert_eq!(ids, [3]);
    // A destroyed id can be used again.
    assert_eq!(
        xen.create_domain(&DomainConfig::domu(7, 1), &mut env),
        Ok(())
    );
    assert_eq!(xen.domain(7).map(XenDomain::id), Some(7));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    /// An argument: mostly pointers into the scratch page (so handlers get past the
    /// first read), sometimes arbitrary numbers.
    fn arg() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => (0u64..0x1000).prop_map(|o| ARG + o),
            2 => 0u64..4096,
            1 => any::<u64>(),
            1 => Just(u64::MAX),
            1 => (RAM..RAM + 0x20).prop_map(|f| f << 12),
        ]
    }

    fn nr() -> impl Strategy<Value = u64> {
        prop_oneof![
            8 => proptest::sample::select(Hypercall::ALL.to_vec()).prop_map(Hypercall::nr),
            1 => any::<u64>(),
        ]
    }

    #[derive(Debug, Clone)]
    struct Call {
        dom: DomId,
        vcpu: u32,
        nr: u64,
        args: [u64; 5],
        scratch: Vec<u8>,
    }

    fn call() -> impl Strategy<Value = Call> {
        (
            0u16..3,
            0u32..3,
            nr(),
            prop_oneof![0u64..16, any::<u64>()],
            [arg(), arg(), arg(), arg()],
            proptest::collection::vec(any::<u8>(), 0..256),
        )
            .prop_map(|(dom, vcpu, nr, cmd, a, scratch)| Call {
                dom,
                vcpu,
                nr,
                args: [cmd, a[0], a[1], a[2], a[3]],
                scratch,
            })
    }

    /// Small values that make structs in the scratch page look plausible (ports, refs,
    /// domids, frame numbers), so deep paths get exercised.
    fn plausible_words() -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::vec(
            prop_oneof![
                0u64..16,
                Just(u64::from(DOMID_SELF)),
                Just(GNT_GFN),
                Just(SHARED_GFN),
                RAM..RAM + 0x20,
                any::<u64>()
            ],
            0..32,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn dispatch_never_panics(calls in proptest::collection::vec((call(), plausible_words()), 1..24)) {
            let mut w = World::new();
            for (c, words) in calls {
                if let Some(m) = w.env.mems.get(&c.dom).cloned() {
                    let mut m = m;
                    let _ = m.write(GuestPhysAddr::new(ARG), &c.scratch);
                    for (i, v) in words.iter().enumerate() {
                        let _ = m.write(GuestPhysAddr::new(ARG + 0x100 + 8 * i as u64), &v.to_le_bytes());
                    }
                }
                let out = w.call_raw(c.dom, c.vcpu, c.nr, &c.args);
                // Results are a success value or a Xen errno, never garbage.
                prop_assert!(out.ret >= 0 || out.ret >= -111, "ret {}", out.ret);
                if c.dom == 2 {
                    prop_assert_eq!(out.ret, neg(ENOSYS));
                }
            }
            // Mica's own entry points keep working on whatever state is left.
            let mut buf = [0u8; 64];
            w.xen.console_poll_output(1, &mut buf, &mut w.env);
            w.xen.console_push_input(1, b"input", &mut w.env);
            w.xen.hwdom_console_input(b"x", &mut w.env);
            w.xen.destroy_domain(1, &mut w.env);
            w.xen.destroy_domain(0, &mut w.env);
            prop_assert!(w.env.foreign.is_empty());
        }

        #[test]
        fn event_channel_ops_with_hostile_ports(ops in proptest::collection::vec((0u64..15, any::<u32>(), 0u16..2, prop_oneof![0u32..8, any::<u32>()]), 1..64)) {
            let mut w = World::new();
            w.map_shared_info(0);
            w.map_shared_info(1);
            for (cmd, port, dom, extra) in ops {
                let port = if port % 2 == 0 { port % 8 } else { port };
                // Every evtchn struct starts with a u16/u32 we control, then `extra`.
                w.put(dom, ARG, &[port, extra, extra, 0, 0, 0]);
                let r = w.call(dom, 0, Hypercall::EventChannelOp, &[cmd, ARG]);
                prop_assert!(r.ret <= 0);
                prop_assert!(r.ret >= -111);
            }
            // Channels stay consistent: every interdomain port's peer points back.
            for d in [0u16, 1] {
                let dom = w.xen.domain(d).unwrap();
                for (p, s) in dom.evtchn.allocated() {
                    if let evtchn::PortState::Interdomain { remote, remote_port } = s {
                        let back = w.xen.domain(remote).and_then(|r| r.evtchn.state(remote_port));
                        prop_assert_eq!(back, Some(evtchn::PortState::Interdomain { remote: d, remote_port: p }));
                    }
                }
            }
        }

        #[test]
        fn send_event_does_what_dispatching_evtchnop_send_does(
            ops in proptest::collection::vec((prop_oneof![Just(EVTCHNOP_SEND), 0u64..15], any::<u32>(), 0u16..3, prop_oneof![0u32..8, any::<u32>()]), 1..64),
        ) {
            // Two identical worlds: sends reach one through the dispatcher, the other
            // through `Xen::send_event` (the arch fast path's entry); all else alike.
            let mut worlds = [World::new(), World::new()];
            for w in &mut worlds {
                w.map_shared_info(0);
                w.map_shared_info(1);
            }
            for (cmd, port, dom, extra) in ops {
                let port = if port % 2 == 0 { port % 8 } else { port };
                let mut rets = [0i64; 2];
                for (direct, w) in worlds.iter_mut().enumerate() {
                    rets[direct] = if cmd == EVTCHNOP_SEND && direct == 1 {
                        match w.xen.send_event(dom, port, &mut w.env) {
                            Ok(()) => 0,
                            Err(e) => neg(e),
                        }
                    } else {
                        if dom < 2 {
                            w.put(dom, ARG, &[port, extra, extra, 0, 0, 0]);
                        }
                        w.call(dom, 0, Hypercall::EventChannelOp, &[cmd, ARG]).ret
                    };
                }
                let [a, b] = &worlds;
                prop_assert_eq!(rets[0], rets[1]);
                prop_assert_eq!(&a.env.upcalls, &b.env.upcalls);
                prop_assert_eq!(&a.env.woken, &b.env.woken);
                prop_assert_eq!(&a.env.kicks, &b.env.kicks);
                for d in [0u16, 1] {
                    let page = |w: &World| {
                        let mut buf = [0u8; 4096];
                        w.mem(d).read(GuestPhysAddr::new(SHARED_GFN << 12), &mut buf).unwrap();
                        buf
                    };
                    prop_assert_eq!(page(a), page(b));
                }
            }
        }

        #[test]
        fn the_poller_count_follows_the_pollers(
            ops in proptest::collection::vec((0u8..5, 0u32..3, 0usize..3), 1..64),
        ) {
            let mut w = World::new();
            w.map_shared_info(1);
            let (a, b) = w.masked_loopback(1);
            let (c, d) = w.masked_loopback(1);
            let ports = [a, c, 99];
            for (op, vcpu, which) in ops {
                match op {
                    0 => {
                        w.poll(1, vcpu, &[ports[which]], 0);
                    }
                    1 => {
                        w.poll(1, vcpu, &[ports[which], a], 0);
                    }
                    2 => {
                        w.evtchn_port_op(1, EVTCHNOP_SEND, [b, d, 99][which]);
                    }
                    3 => {
                        w.xen.end_poll(1, vcpu);
                    }
                    _ => {
                        let mut vmem = w.mem(1);
                        w.xen.runstate_change(1, vcpu, Runstate::Running, 0, &mut vmem, &mut w.env);
                    }
                }
                // Clear what a send made pending, so the next poll may block again.
                let pending = (SHARED_GFN << 12) + SHARED_INFO_EVTCHN_PENDING as u64;
                w.put(1, pending, &0u64);
                let dom = w.xen.domain(1).unwrap();
                let polling = dom.vcpus.iter().filter(|v| v.poll.is_some()).count();
                prop_assert_eq!(dom.polling, polling);
                for v in 0..3 {
                    prop_assert_eq!(w.xen.is_polling(1, v), dom.vcpus.get(v as usize).is_some_and(|x| x.poll.is_some()));
                }
            }
        }

        #[test]
        fn grant_ops_with_hostile_entries(
            entries in proptest::collection::vec((0u32..16, any::<u16>(), 0u16..3, any::<u32>()), 0..16),
            ops in proptest::collection::vec((0u64..13, proptest::collection::vec(any::<u8>(), 40..80), 0u64..4), 1..32),
        ) {
            let mut w = World::new();
            grant(&mut w, 8, (RAM + 5) as u32, false);
            for (gref, flags, domid, frame) in entries {
                w.put(1, (GNT_GFN << 12) + u64::from(gref) * 8, &GrantEntryV1 { flags: flags & !(GTF_READING | GTF_WRITING), domid, frame });
            }
            for (cmd, bytes, count) in ops {
                let mut m = w.mem(0);
                let _ = m.write(GuestPhysAddr::new(ARG), &bytes);
                let r = w.call(0, 0, Hypercall::GrantTableOp, &[cmd, ARG, count]);
                prop_assert!(r.ret <= 0 && r.ret >= -111);
            }
            // Tearing down the grantee leaves no mapping and no pinned entry behind.
            w.xen.destroy_domain(0, &mut w.env);
            prop_assert!(w.env.foreign.is_empty());
            for gref in 0..16u32 {
                prop_assert_eq!(entry_flags(&w, gref) & (GTF_READING | GTF_WRITING), 0);
            }
            let _ = read_u64(&w.mem(1), GuestPhysAddr::new(GNT_GFN << 12));
        }
    }
}

#[test]
fn runstate_area_accounts_each_state_and_marks_updates() {
    let mut w = World::new();
    let area = RAM * 4096 + 0x800;
    w.put(1, ARG, &VcpuRegisterRunstateMemoryArea { addr: area });
    let registered = w.call(
        1,
        0,
        Hypercall::VcpuOp,
        &[VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 0, ARG],
    );
    assert_eq!(registered.ret, 0);
    assert_eq!(
        w.call(
            1,
            0,
            Hypercall::VmAssist,
            &[VMASST_CMD_ENABLE, VMASST_TYPE_RUNSTATE_UPDATE_FLAG]
        )
        .ret,
        0
    );
    let mut vmem = w.mem(1);
    for (state, at) in [
        (Runstate::Running, 1_000),
        (Runstate::Runnable, 4_000),
        (Runstate::Running, 10_000),
        (Runstate::Blocked, 12_000),
        // A clock that goes backwards charges nothing.
        (Runstate::Running, 11_000),
    ] {
        w.xen
            .runstate_change(1, 0, state, at, &mut vmem, &mut w.env);
    }
    let info: VcpuRunstateInfo = w.get(1, area);
    assert_eq!(info.state, RUNSTATE_RUNNING);
    assert_eq!(info.state_entry_time, 12_000, "no update flag left behind");
    assert_eq!(info.time, [3_000 + 2_000, 6_000, 0, 1_000]);
    assert_eq!(w.xen.runstate(1, 0), Some(info));
    // Unknown domains and vCPUs, and an area that is not mapped, are ignored.
    w.xen
        .runstate_change(7, 0, Runstate::Running, 1, &mut vmem, &mut w.env);
    w.xen
        .runstate_change(1, 9, Runstate::Running, 1, &mut vmem, &mut w.env);
    w.put(
        1,
        ARG,
        &VcpuRegisterRunstateMemoryArea {
            addr: 0xdead_0000_0000,
        },
    );
    assert_eq!(
        w.call(
            1,
            1,
            Hypercall::VcpuOp,
            &[VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 1, ARG]
        )
        .ret,
        neg(EFAULT),
        "the caller's own area must be writable"
    );
    w.call(
        1,
        0,
        Hypercall::VcpuOp,
        &[VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA, 1, ARG],
    );
    w.xen
        .runstate_change(1, 1, Runstate::Running, 50, &mut vmem, &mut w.env);
    assert_eq!(
        w.xen.runstate(1, 1).map(|i| i.state),
        Some(RUNSTATE_RUNNING)
    );
}

/// An x86 domain's events land where x86 guests look: evtchn_pending at 2048, the mask at
/// 2560, vCPU 1's legacy vcpu_info at 64 (Arm has no legacy slot for vCPU 1).
#[test]
fn x86_shared_info_layout() {
    let mut w = World::x86(0);
    // x86 features: the callback vector, none of Arm's bits.
    let f = w.features(X86_DOM);
    use mica_guest_abi::xen::features::{XENFEAT_ARM_SMCCC_SUPPORTED, XENFEAT_HVM_CALLBACK_VECTOR};
    assert_ne!(f & 1 << XENFEAT_HVM_CALLBACK_VECTOR, 0);
    assert_eq!(f & 1 << XENFEAT_ARM_SMCCC_SUPPORTED, 0);
    // An x86 guest names its upcall vector; Arm guests and bad values are refused.
    let set = |w: &mut World, dom: DomId, value: u64| {
        let p = HvmParam {
            domid: DOMID_SELF,
            pad: 0,
            index: HVM_PARAM_CALLBACK_IRQ,
            value,
        };
        w.put(dom, ARG, &p);
        w.call(dom, 0, Hypercall::HvmOp, &[HVMOP_SET_PARAM, ARG])
            .ret
    };
    assert_eq!(set(&mut w, 5, 2 << 56 | 0xf3), 0);
    assert_eq!(
        w.xen.hvm_param(5, HVM_PARAM_CALLBACK_IRQ),
        Some(2 << 56 | 0xf3)
    );
    assert_eq!(set(&mut w, 5, 2 << 56 | 0x05), neg(EINVAL));
    assert_eq!(set(&mut w, 5, 1 << 56 | 0xf3), neg(EINVAL));
    assert_eq!(set(&mut w, 5, 2 << 56 | 0x1f3), neg(EINVAL));
    assert_eq!(
        w.xen.hvm_param(5, HVM_PARAM_CALLBACK_IRQ),
        Some(2 << 56 | 0xf3)
    );
    let mut arm = World::new();
    assert_eq!(
        set(&mut arm, 0, 2 << 56 | 0xf3),
        neg(EPERM),
        "Arm domains may not"
    );
    w.map_shared_info(5);
    w.env.upcalls.clear();
    let a = w.alloc_unbound(5, DOMID_SELF);
    assert_eq!(w.bind_interdomain(5, DOMID_SELF, a).ret, 0);
    let b = w.get::<EvtchnBindInterdomain>(5, ARG).local_port;
    let base = SHARED_GFN << 12;
    // Clear what binding set, then send b -> a.
    w.put(5, base + 2048, &0u64);
    w.put(5, base, &[0u8; 16]);
    assert_eq!(w.evtchn_port_op(5, EVTCHNOP_SEND, b), 0);
    let pending: u64 = w.get(5, base + 2048);
    assert_ne!(pending & (1 << a), 0, "pending bit at the x86 offset");
    let arm_offset: u64 = w.get(5, base + SHARED_INFO_EVTCHN_PENDING as u64);
    assert_eq!(arm_offset & (1 << a), 0, "nothing written at Arm's offset");
    let sel: u64 = w.get(5, base + 8);
    assert_eq!(sel, 1);
    // Masked at the x86 offset: a send raises no upcall.
    w.put(5, base + 2048, &0u64);
    w.put(5, base, &[0u8; 16]);
    w.put(5, base + 2560, &(1u64 << a));
    let n = w.env.upcalls.len();
    assert_eq!(w.evtchn_port_op(5, EVTCHNOP_SEND, b), 0);
    assert_eq!(w.env.upcalls.len(), n);
}

#[test]
fn x86_vcpu_time_is_published_where_guests_read_it() {
    use crate::xen::pvclock::{VcpuTime, PVCLOCK_TSC_STABLE};
    use mica_guest_abi::xen::features::XENFEAT_HVM_SAFE_PVCLOCK;
    let mut w = World::x86(0);
    let f = w.features(X86_DOM);
    assert_ne!(f & 1 << XENFEAT_HVM_SAFE_PVCLOCK, 0);
    let t = VcpuTime {
        tsc_timestamp: 1000,
        system_time_ns: 77,
        mul: 1 << 31,
        shift: 1,
        flags: PVCLOCK_TSC_STABLE,
    };
    // Nothing to write into before shared_info is mapped; no such vCPU; no such domain.
    assert!(!w.xen.publish_vcpu_time(5, 0, &t, &mut w.env));
    w.map_shared_info(5);
    assert!(!w.xen.publish_vcpu_time(5, 2, &t, &mut w.env));
    assert!(!w.xen.publish_vcpu_time(9, 0, &t, &mut w.env));
    assert!(w.xen.publish_vcpu_time(5, 1, &t, &mut w.env));
    // vCPU 1's legacy slot is the second 64-byte vcpu_info; its time record is at +32.
    let base = (SHARED_GFN << 12) + 64 + 32;
    let version: u32 = w.get(5, base);
    assert_eq!(version % 2, 0, "even: consistent");
    assert_eq!(w.get::<u64>(5, base + 8), 1000);
    assert_eq!(w.get::<u64>(5, base + 16), 77);
    assert_eq!(w.get::<u32>(5, base + 24), 1 << 31);
    assert!(w.xen.publish_vcpu_time(5, 1, &t, &mut w.env));
    assert!(
        w.get::<u32>(5, base) > version,
        "each update bumps the version"
    );
    // An Arm domain has no pvclock.
    let mut arm = World::new();
    arm.map_shared_info(0);
    assert!(!arm.xen.publish_vcpu_time(0, 0, &t, &mut arm.env));
}

#[test]
fn x86_pv_timers_raise_virq_timer_on_their_vcpu() {
    use mica_guest_abi::xen::vcpu::{
        VcpuSetPeriodicTimer, VcpuSetSingleshotTimer, VCPU_SSHOTTMR_FUTURE,
    };
    let mut w = World::x86(1_000_000);
    w.map_shared_info(5);
    // VIRQ_TIMER bound on vCPU 1.
    w.put(
        5,
        ARG,
        &EvtchnBindVirq {
            virq: VIRQ_TIMER,
            vcpu: 1,
            port: 0,
        },
    );
    assert_eq!(
        w.call(5, 1, Hypercall::EventChannelOp, &[EVTCHNOP_BIND_VIRQ, ARG])
            .ret,
        0
    );
    let port = w.get::<EvtchnBindVirq>(5, ARG).port;
    let single = |w: &mut World, vcpu: u32, target: u32, at: u64, flags: u32| {
        w.put(
            5,
            ARG,
            &VcpuSetSingleshotTimer {
                timeout_abs_ns: at,
                flags,
            },
        );
        w.call(
            5,
            vcpu,
            Hypercall::VcpuOp,
            &[VCPUOP_SET_SINGLESHOT_TIMER, u64::from(target), ARG],
        )
        .ret
    };
    // Only one's own timer may be set.
    assert_eq!(single(&mut w, 0, 1, 2_000_000, 0), neg(EINVAL));
    assert_eq!(single(&mut w, 1, 7, 2_000_000, 0), neg(ENOENT));
    assert_eq!(
        w.call(
            5,
            1,
            Hypercall::VcpuOp,
            &[VCPUOP_SET_SINGLESHOT_TIMER, 1, 0xdead_0000]
        )
        .ret,
        neg(EFAULT)
    );
    assert_eq!(w.xen.next_timer(5), None);
    assert_eq!(single(&mut w, 1, 1, 2_000_000, VCPU_SSHOTTMR_FUTURE), 0);
    assert_eq!(w.xen.next_timer(5), Some(2_000_000));
    w.env.upcalls.clear();
    assert_eq!(w.xen.expire_timers(5, 1_999_999, &mut w.env), 0);
    assert_eq!(w.xen.expire_timers(5, 2_000_000, &mut w.env), 1);
    assert_eq!(w.env.upcalls, vec![(5, 1)], "the upcall goes to vCPU 1");
    let pending: u64 = w.get(5, (SHARED_GFN << 12) + 2048);
    assert_ne!(pending & 1 << port, 0);
    assert_eq!(w.xen.next_timer(5), None, "a single shot fires once");
    assert_eq!(w.xen.expire_timers(5, u64::MAX, &mut w.env), 0);
    // A past deadline is accepted even with the "future" flag (Xen 4.17 ignores it) and
    // fires at the next check.
    assert_eq!(single(&mut w, 1, 1, 999_999, VCPU_SSHOTTMR_FUTURE), 0);
    assert_eq!(w.xen.expire_timers(5, 1_000_000, &mut w.env), 1);
    // Stopped before it fires: nothing.
    assert_eq!(single(&mut w, 1, 1, 3_000_000, 0), 0);
    assert_eq!(
        w.call(
            5,
            1,
            Hypercall::VcpuOp,
            &[VCPUOP_STOP_SINGLESHOT_TIMER, 1, 0]
        )
        .ret,
        0
    );
    assert_eq!(w.xen.next_timer(5), None);
    // Periodic: at least 1 ms, fires once per call however late, then the next period.
    let periodic = |w: &mut World, period: u64| {
        w.put(5, ARG, &VcpuSetPeriodicTimer { period_ns: period });
        w.call(
            5,
            0,
            Hypercall::VcpuOp,
            &[VCPUOP_SET_PERIODIC_TIMER, 0, ARG],
        )
        .ret
    };
    assert_eq!(periodic(&mut w, 999_999), neg(EINVAL));
    assert_eq!(periodic(&mut w, u64::MAX), neg(EINVAL));
    assert_eq!(periodic(&mut w, 4_000_000), 0);
    assert_eq!(w.xen.next_timer(5), Some(5_000_000));
    assert_eq!(w.xen.expire_timers(5, 13_500_000, &mut w.env), 1);
    assert_eq!(w.xen.next_timer(5), Some(17_000_000));
    assert_eq!(
        w.call(5, 0, Hypercall::VcpuOp, &[VCPUOP_STOP_PERIODIC_TIMER, 0, 0])
            .ret,
        0
    );
    assert_eq!(w.xen.next_timer(5), None);
    // Arm domains have no PV timers (as on Xen on Arm).
    let mut arm = World::new();
    assert_eq!(
        arm.call(0, 0, Hypercall::VcpuOp, &[VCPUOP_STOP_PERIODIC_TIMER, 0, 0])
            .ret,
        neg(EINVAL)
    );
}

#[test]
fn xen_error_debug_text_is_the_derived_one() {
    assert_eq!(format!("{:?}", XenError::BadDomid), "BadDomid");
    assert_eq!(format!("{:?}", XenError::BadConfig), "BadConfig");
    assert_eq!(format!("{:?}", XenError::MapFailed(-12)), "MapFailed(-12)");
    assert_eq!(format!("{:?}", XenError::MapFailed(3)), "MapFailed(3)");
    assert_eq!(
        format!("{:?}", XenError::MapFailed(i32::MIN)),
        "MapFailed(-2147483648)"
    );
}

/// Several grants in use at once, mapped and unmapped out of order: each keeps its own use
/// counts (the active-grant table is a sorted vector keyed by reference).
#[test]
fn grants_in_use_are_counted_per_reference() {
    let mut w = World::new();
    let refs = [9u32, 3, 6, 12];
    for (i, &gref) in refs.iter().enumerate() {
        grant(&mut w, gref, (RAM + 5 + i as u64) as u32, false);
    }
    let mut handles = Vec::new();
    for (i, &gref) in refs.iter().enumerate() {
        let m = map(
            &mut w,
            gref,
            GNTMAP_HOST_MAP,
            0x8000_0000 + (i as u64) * 0x1000,
        );
        assert_eq!(m.status, GNTST_OKAY);
        handles.push(m.handle);
    }
    let pinned = GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING;
    // Unmap 6, then 9: the others stay pinned, the unmapped ones are released.
    for (done, &k) in [2usize, 0].iter().enumerate() {
        assert_eq!(unmap(&mut w, handles[k], 0), GNTST_OKAY);
        for (i, &gref) in refs.iter().enumerate() {
            let released = [2usize, 0][..=done].contains(&i);
            let want = if released { GTF_PERMIT_ACCESS } else { pinned };
            assert_eq!(entry_flags(&w, gref), want, "gref {gref}");
        }
    }
    assert_eq!(unmap(&mut w, handles[3], 0), GNTST_OKAY);
    assert_eq!(unmap(&mut w, handles[1], 0), GNTST_OKAY);
    for &gref in &refs {
        assert_eq!(entry_flags(&w, gref), GTF_PERMIT_ACCESS);
    }
    assert!(w.env.foreign.is_empty());
}
