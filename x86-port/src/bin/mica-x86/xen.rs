//! The Xen layer's services on x86 (`mica_hv::xen::XenEnv`, guest memory through the nested
//! tables, guest-virtual buffers through the guest's page tables) and the hypercall entry.

use crate::consoles;
use crate::run::{alloc_zeroed, Domain, HostTables, Machine, PAGE};
use alloc::vec::Vec;
use mica_guest_abi::xen::{errno, DomId, Hypercall};
use mica_hv::addr::GuestPhysAddr;
use mica_hv::xen::mem::{for_each_piece, PageWords};
use mica_hv::xen::{
    dispatch, Backend, GuestMemError, GuestMemory, GuestVirtMemory, HypercallCtx, Outcome,
    SpecialPage, XenEnv,
};
use mica_x86::guest_walk::{self, Paging, PhysRead};
use mica_x86::npt::{Npt, Perm};

/// One domain's guest-physical memory, through its nested tables (RAM and mapped pages).
#[derive(Clone, Copy)]
pub struct NptMemory {
    root: u64,
}

impl NptMemory {
    fn of(d: &Domain) -> Self {
        Self { root: d.npt.root() }
    }
    /// Host address of `gpa` and the bytes left in its page.
    fn host(&self, gpa: u64, write: bool) -> Result<(u64, usize), GuestMemError> {
        let (hpa, perm) = Npt::from_root(self.root)
            .translate(&mut HostTables, gpa)
            .ok_or(GuestMemError::Unmapped)?;
        if write && perm == Perm::ReadOnly {
            return Err(GuestMemError::ReadOnly);
        }
        Ok((hpa, (PAGE - gpa % PAGE) as usize))
    }
}

impl GuestMemory for NptMemory {
    fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
        let locate = |at| self.host(at, false);
        for_each_piece(gpa.raw(), buf.len(), locate, |hpa, done, n| {
            // SAFETY: the nested tables map the address to this host page, which is guest RAM
            // or a page Mica gave the guest, identity-mapped; `n` stays inside the page.
            unsafe {
                core::ptr::copy_nonoverlapping(hpa as *const u8, buf[done..].as_mut_ptr(), n)
            };
            Ok(())
        })
    }

    fn write(&mut self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        let locate = |at| self.host(at, true);
        for_each_piece(gpa.raw(), data.len(), locate, |hpa, done, n| {
            // SAFETY: as for `read`, and the page is mapped writable for the guest.
            unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), hpa as *mut u8, n) };
            Ok(())
        })
    }

    fn barrier(&self) {
        // x86 keeps stores in order; only the compiler must not reorder.
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    }

    fn words(&self, gfn: u64) -> Option<&PageWords> {
        let gpa = gfn.checked_mul(PAGE)?;
        let (hpa, _) = self.host(gpa, true).ok()?;
        // SAFETY: the nested tables map the frame, writable, to this page-aligned host page
        // (guest RAM or a page Mica gave the guest), identity-mapped; it stays so while
        // the Xen layer works on the domain. The guest updates these words atomically too.
        Some(unsafe { &*(hpa as *const PageWords) })
    }
}

impl PhysRead for NptMemory {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut raw = [0u8; 8];
        self.read(GuestPhysAddr::new(gpa), &mut raw).ok()?;
        Some(u64::from_le_bytes(raw))
    }
}

/// The calling vCPU's linear address space.
struct VirtMemory {
    mem: NptMemory,
    paging: Paging,
}

impl VirtMemory {
    fn gpa(&self, gva: u64, write: bool) -> Result<u64, GuestMemError> {
        guest_walk::translate(&self.mem, self.paging, gva, write).map_err(|e| match e {
            guest_walk::WalkError::ReadOnly => GuestMemError::ReadOnly,
            _ => GuestMemError::Unmapped,
        })
    }
}

impl GuestVirtMemory for VirtMemory {
    fn read_virt(&self, gva: u64, buf: &mut [u8]) -> Result<(), GuestMemError> {
        let locate = |at| Ok((self.gpa(at, false)?, (PAGE - at % PAGE) as usize));
        for_each_piece(gva, buf.len(), locate, |gpa, done, n| {
            self.mem
                .read(GuestPhysAddr::new(gpa), &mut buf[done..done + n])
        })
    }

    fn write_virt(&mut self, gva: u64, data: &[u8]) -> Result<(), GuestMemError> {
        // Not `for_each_piece`: translating reads the guest's tables through `self.mem`
        // while the copy writes through it.
        let mut done = 0;
        while done < data.len() {
            let at = gva
                .checked_add(done as u64)
                .ok_or(GuestMemError::OutOfRange)?;
            let n = ((PAGE - at % PAGE) as usize).min(data.len() - done);
            let gpa = self.gpa(at, true)?;
            self.mem
                .write(GuestPhysAddr::new(gpa), &data[done..done + n])?;
            done += n;
        }
        Ok(())
    }
}

/// Reads code bytes at a linear address of `d`'s vCPU; returns how many were readable.
pub fn fetch_virt(d: &Domain, linear: u64, buf: &mut [u8]) -> usize {
    let vm = VirtMemory {
        mem: NptMemory::of(d),
        paging: d.vmcb.paging(),
    };
    // One translation per page: the bytes up to the page end, then the rest (an instruction
    // at the end of the readable range still decodes from what could be read).
    let first = ((PAGE - linear % PAGE) as usize).min(buf.len());
    if vm.read_virt(linear, &mut buf[..first]).is_err() {
        return 0;
    }
    let Some(next) = linear.checked_add(first as u64) else {
        return first;
    };
    if first < buf.len() && vm.read_virt(next, &mut buf[first..]).is_ok() {
        return buf.len();
    }
    first
}

/// Writes guest-physical memory of `d`; false if any byte is not writable guest memory.
pub fn write_guest(d: &mut Domain, gpa: u64, data: &[u8]) -> bool {
    NptMemory::of(d)
        .write(GuestPhysAddr::new(gpa), data)
        .is_ok()
}

/// The arch services for one Xen operation.
pub struct ArchEnv<'a> {
    domains: &'a mut Vec<Domain>,
    mems: Vec<(DomId, NptMemory)>,
    console_dirty: bool,
}

impl<'a> ArchEnv<'a> {
    /// Services over these domains.
    pub fn new(domains: &'a mut Vec<Domain>) -> Self {
        Self {
            domains,
            mems: Vec::new(),
            console_dirty: false,
        }
    }
    fn domain(&mut self, id: DomId) -> Option<&mut Domain> {
        self.domains.iter_mut().find(|d| d.id == id)
    }
}

fn set_page(d: &mut Domain, gfn: u64, target: Option<(u64, Perm)>) -> Result<(), i32> {
    let gpa = gfn.checked_mul(PAGE).ok_or(errno::EINVAL)?;
    let result = match target {
        Some((hpa, perm)) => d.npt.map_page(&mut HostTables, gpa, hpa, perm),
        None => d.npt.unmap_page(&mut HostTables, gpa),
    };
    d.flush_tlb = true;
    result.map_err(|_| errno::EINVAL)
}

impl XenEnv for ArchEnv<'_> {
    fn memory(&mut self, dom: DomId) -> Option<&mut dyn GuestMemory> {
        let pos = match self.mems.iter().position(|(id, _)| *id == dom) {
            Some(p) => p,
            None => {
                let mem = NptMemory::of(self.domain(dom)?);
                self.mems.push((dom, mem));
                self.mems.len() - 1
            }
        };
        Some(&mut self.mems[pos].1)
    }

    fn map_special_page(&mut self, dom: DomId, page: SpecialPage, gfn: u64) -> Result<(), i32> {
        let d = self.domain(dom).ok_or(errno::ESRCH)?;
        let existing = d.specials.iter().position(|(k, _, _)| *k == page);
        let hpa = match existing {
            Some(i) => {
                let (_, hpa, old) = d.specials[i];
                if let Some(old) = old {
                    set_page(d, old, None)?;
                }
                hpa
            }
            None => {
                let hpa = alloc_zeroed(PAGE, PAGE).ok_or(errno::ENOMEM)?;
                d.specials.push((page, hpa, None));
                hpa
            }
        };
        set_page(d, gfn, Some((hpa, Perm::ReadWrite)))?;
        for s in d.specials.iter_mut() {
            if s.0 == page {
                s.2 = Some(gfn);
            } else if s.2 == Some(gfn) {
                s.2 = None;
            }
        }
        Ok(())
    }

    fn unmap_special_page(&mut self, dom: DomId, page: SpecialPage, gfn: u64) {
        if let Some(d) = self.domain(dom) {
            let _ = set_page(d, gfn, None);
            for s in d
                .specials
                .iter_mut()
                .filter(|s| s.0 == page && s.2 == Some(gfn))
            {
                s.2 = None;
            }
        }
    }

    fn map_foreign(
        &mut self,
        grantee: DomId,
        gfn: u64,
        granter: DomId,
        granter_gfn: u64,
        readonly: bool,
    ) -> Result<(), i32> {
        let src = NptMemory::of(self.domain(granter).ok_or(errno::ESRCH)?);
        let src_gpa = granter_gfn.checked_mul(PAGE).ok_or(errno::EINVAL)?;
        let (hpa, _) = src.host(src_gpa, false).map_err(|_| errno::EINVAL)?;
        let perm = if readonly {
            Perm::ReadOnly
        } else {
            Perm::ReadWrite
        };
        let d = self.domain(grantee).ok_or(errno::ESRCH)?;
        set_page(d, gfn, Some((hpa, perm)))
    }

    fn unmap_foreign(&mut self, grantee: DomId, gfn: u64) {
        if let Some(d) = self.domain(grantee) {
            let _ = set_page(d, gfn, None);
        }
    }

    fn raise_upcall(&mut self, dom: DomId, _vcpu: u32) {
        if let Some(d) = self.domain(dom) {
            d.upcall_pending = true;
        }
    }

    fn console_write(&mut self, dom: DomId, bytes: &[u8]) {
        for &b in bytes {
            consoles::guest_byte(dom, b);
        }
    }

    fn now_ns(&self) -> u64 {
        crate::clock::now_ns()
    }

    fn backend_notify(&mut self, _dom: DomId, backend: Backend) {
        if backend == Backend::Console {
            self.console_dirty = true;
        }
    }
}

/// A hypercall from vCPU 0 of domain `index`.
pub fn hypercall(m: &mut Machine, index: usize, nr: u64, args: [u64; 5]) -> Outcome {
    let d = &m.domains[index];
    let caller = d.id;
    let mut vmem = VirtMemory {
        mem: NptMemory::of(d),
        paging: d.vmcb.paging(),
    };
    let (xen_state, domains) = (&mut m.xen, &mut m.domains);
    let mut env = ArchEnv::new(domains);
    let outcome = dispatch(
        &mut HypercallCtx {
            xen: xen_state,
            caller,
            vcpu: 0,
            vmem: &mut vmem,
            env: &mut env,
        },
        nr,
        args,
    );
    // A memory_op may have mapped shared_info, a vcpu_op moved the vcpu_info: write the time
    // record where the guest now reads it (its contents never change: one fixed scale).
    if nr == Hypercall::MemoryOp as u64 || nr == Hypercall::VcpuOp as u64 {
        xen_state.publish_vcpu_time(caller, 0, &crate::clock::vcpu_time(), &mut env);
    }
    if env.console_dirty {
        let mut buf = [0u8; 256];
        loop {
            let n = xen_state.console_poll_output(caller, &mut buf, &mut env);
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                consoles::guest_byte(caller, b);
            }
        }
    }
    outcome
}
