//! Grant tables, version 1. The table frames are hypervisor pages the guest places in its
//! physmap (XENMAPSPACE_grant_table); Mica reads entries through the granting domain's
//! guest-physical memory at those frames. While a grant is mapped or being copied, its
//! GTF_reading/GTF_writing flags are set (with compare-and-exchange, because the granter
//! may be revoking it concurrently), so it cannot be revoked.

use super::env::XenEnv;
use super::hypercall::HypercallCtx;
use super::mem::{element_addr, frame_addr, read_virt_obj, write_virt_obj, GuestMemory};
use super::Xen;
use crate::addr::GuestPhysAddr;
use alloc::vec::Vec;
use mica_guest_abi::xen::errno::*;
use mica_guest_abi::xen::gnttab::*;
use mica_guest_abi::xen::{DomId, GrantRef, Wire, DOMID_SELF, XEN_PAGE_SIZE};

/// Most grant mappings one domain may hold at once.
pub const MAX_MAPTRACK: usize = 1024;
/// Most ops in one grant_table_op call.
pub const MAX_GNTTAB_OPS: u64 = 512;
/// Attempts at updating a grant entry's flags before giving up (the guest keeps changing it).
const FLAG_RETRIES: usize = 8;

/// Use counts of one of this domain's grants by others.
#[derive(Clone, Copy, Debug, Default)]
struct Active {
    /// Mappings and copies in progress (each sets GTF_reading).
    readers: u32,
    /// Writable ones among them (each sets GTF_writing).
    writers: u32,
}

/// One grant mapping this domain made of another domain's grant.
#[derive(Clone, Copy, Debug)]
struct MapTrack {
    granter: DomId,
    gref: GrantRef,
    /// Where it is mapped in this domain.
    gfn: u64,
    readonly: bool,
}

/// A domain's grant-table state.
#[derive(Debug)]
pub(crate) struct GrantTable {
    max_frames: u32,
    /// Where the guest placed each table frame.
    frames: Vec<Option<u64>>,
    /// This domain's grants in use by others, sorted by reference (a sorted vector rather than
    /// a BTreeMap: the map's code cost several KB of image for a handful of entries).
    active: Vec<(GrantRef, Active)>,
    /// This domain's mappings of others' grants; the handle is the index.
    maps: Vec<Option<MapTrack>>,
}

impl GrantTable {
    pub(crate) fn new(max_frames: u32) -> Self {
        Self {
            max_frames,
            frames: alloc::vec![None; max_frames as usize],
            active: Vec::new(),
            maps: Vec::new(),
        }
    }
    pub(crate) fn max_frames(&self) -> u32 {
        self.max_frames
    }
    /// Frames in use: one past the highest frame the guest has placed.
    pub(crate) fn nr_frames(&self) -> u32 {
        self.frames
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i as u32 + 1)
    }
    pub(crate) fn frame_gfn(&self, n: u32) -> Option<u64> {
        self.frames.get(n as usize).copied().flatten()
    }
    pub(crate) fn set_frame_gfn(&mut self, n: u32, gfn: Option<u64>) {
        if let Some(slot) = self.frames.get_mut(n as usize) {
            *slot = gfn;
        }
    }
    /// Whether this domain has another domain's grant mapped at `gfn`.
    pub(crate) fn maps_at(&self, gfn: u64) -> bool {
        self.maps.iter().flatten().any(|t| t.gfn == gfn)
    }
    pub(crate) fn frame_at(&self, gfn: u64) -> Option<u32> {
        self.frames
            .iter()
            .position(|f| *f == Some(gfn))
            .map(|i| i as u32)
    }
    /// Guest-physical address of entry `gref`, if its frame is placed.
    fn entry_gpa(&self, gref: GrantRef) -> Option<GuestPhysAddr> {
        let frame = self.frame_gfn(gref / GRANT_ENTRIES_V1_PER_FRAME)?;
        let size = GrantEntryV1::SIZE as u64;
        frame_addr(frame, u64::from(gref % GRANT_ENTRIES_V1_PER_FRAME) * size)
    }
}

fn read_entry(mem: &dyn GuestMemory, at: GuestPhysAddr) -> Option<GrantEntryV1> {
    let mut raw = [0u8; 8];
    mem.read(at, &mut raw).ok()?;
    GrantEntryV1::decode(&raw)
}

/// Takes a use of `granter`'s grant `gref` for `grantee`: checks the entry and sets
/// GTF_reading (and GTF_writing unless `readonly`). Returns the granted frame.
fn acquire(
    xen: &mut Xen,
    granter: DomId,
    gref: GrantRef,
    grantee: DomId,
    readonly: bool,
    env: &mut dyn XenEnv,
) -> Result<u64, i16> {
    let dom = xen.domains.get(&granter).ok_or(GNTST_BAD_DOMAIN)?;
    let at = dom.gnttab.entry_gpa(gref).ok_or(GNTST_BAD_GNTREF)?;
    let mem = env.memory(granter).ok_or(GNTST_BAD_DOMAIN)?;
    let mut frame = None;
    for _ in 0..FLAG_RETRIES {
        let e = read_entry(mem, at).ok_or(GNTST_GENERAL_ERROR)?;
        if e.flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS || e.domid != grantee {
            return Err(GNTST_GENERAL_ERROR);
        }
        // Xen's _set_status_v1 answers a write use of a read-only grant (a writable map, a
        // copy into it) with GNTST_general_error, as it does a wrong type or domain.
        if !readonly && e.flags & GTF_READONLY != 0 {
            return Err(GNTST_GENERAL_ERROR);
        }
        let mut new = e.flags | GTF_READING;
        if !readonly {
            new |= GTF_WRITING;
        }
        if new == e.flags {
            frame = Some(u64::from(e.frame));
            break;
        }
        match mem.cmpxchg_u16(at, e.flags, new) {
            Ok(found) if found == e.flags => {
                frame = Some(u64::from(e.frame));
                break;
            }
            Ok(_) => continue,
            Err(_) => return Err(GNTST_GENERAL_ERROR),
        }
    }
    // The guest kept changing the entry under us.
    let frame = frame.ok_or(GNTST_EAGAIN)?;
    let dom = xen.domains.get_mut(&granter).ok_or(GNTST_BAD_DOMAIN)?;
    let active = &mut dom.gnttab.active;
    let at = match active.binary_search_by_key(&gref, |&(r, _)| r) {
        Ok(at) => at,
        Err(at) => {
            active.insert(at, (gref, Active::default()));
            at
        }
    };
    let a = &mut active[at].1;
    a.readers = a.readers.saturating_add(1);
    if !readonly {
        a.writers = a.writers.saturating_add(1);
    }
    Ok(frame)
}

/// Drops a use taken by [`acquire`], clearing the flags when the last one goes.
fn release(xen: &mut Xen, granter: DomId, gref: GrantRef, readonly: bool, env: &mut dyn XenEnv) {
    let Some(dom) = xen.domains.get_mut(&granter) else {
        return;
    };
    let active = &mut dom.gnttab.active;
    let Ok(index) = active.binary_search_by_key(&gref, |&(r, _)| r) else {
        return;
    };
    let a = &mut active[index].1;
    a.readers = a.readers.saturating_sub(1);
    if !readonly {
        a.writers = a.writers.saturating_sub(1);
    }
    let mut clear = 0;
    if a.writers == 0 {
        clear |= GTF_WRITING;
    }
    if a.readers == 0 {
        clear |= GTF_READING;
        active.remove(index);
    }
    let Some(at) = dom.gnttab.entry_gpa(gref) else {
        return;
    };
    let Some(mem) = env.memory(granter) else {
        return;
    };
    for _ in 0..FLAG_RETRIES {
        let Some(e) = read_entry(mem, at) else { return };
        if e.flags & clear == 0 {
            return;
        }
        match mem.cmpxchg_u16(at, e.flags, e.flags & !clear) {
            Ok(found) if found == e.flags => return,
            Ok(_) => continue,
            Err(_) => return,
        }
    }
}

fn resolve(caller: DomId, dom: DomId) -> DomId {
    if dom == DOMID_SELF {
        caller
    } else {
        dom
    }
}

/// `grant_table_op(cmd, uop, count)`: `count` ops of one kind at `uop`; per-op results go
/// in each op's status, the return value covers the call.
// Out of line: see `dispatch_inner`.
#[inline(never)]
pub(crate) fn grant_table_op(
    ctx: &mut HypercallCtx<'_>,
    cmd: u64,
    uop: u64,
    count: u64,
) -> Result<i64, i32> {
    if count > MAX_GNTTAB_OPS {
        return Err(EINVAL);
    }
    match cmd {
        GNTTABOP_MAP_GRANT_REF => for_each::<GnttabMapGrantRef>(ctx, uop, count, map_grant_ref),
        GNTTABOP_UNMAP_GRANT_REF => {
            for_each::<GnttabUnmapGrantRef>(ctx, uop, count, unmap_grant_ref)
        }
        GNTTABOP_COPY => for_each::<GnttabCopy>(ctx, uop, count, copy),
        GNTTABOP_QUERY_SIZE => for_each::<GnttabQuerySize>(ctx, uop, count, query_size),
        GNTTABOP_SETUP_TABLE => for_each::<GnttabSetupTable>(ctx, uop, count, setup_table),
        GNTTABOP_SET_VERSION => {
            if count != 1 {
                return Err(EINVAL);
            }
            let mut op: GnttabSetVersion = read_virt_obj(ctx.vmem, uop).map_err(|_| EFAULT)?;
            let wanted = op.version;
            op.version = 1;
            write_virt_obj(ctx.vmem, uop, &op).map_err(|_| EFAULT)?;
            match wanted {
                1 => Ok(0),
                2 => Err(EOPNOTSUPP),
                _ => Err(EINVAL),
            }
        }
        GNTTABOP_GET_VERSION => {
            if count != 1 {
                return Err(EINVAL);
            }
            let mut op: GnttabGetVersion = read_virt_obj(ctx.vmem, uop).map_err(|_| EFAULT)?;
            ctx.xen.target(ctx.caller, op.dom)?;
            op.version = 1;
            write_virt_obj(ctx.vmem, uop, &op).map_err(|_| EFAULT)?;
            Ok(0)
        }
        // Transfer and unmap_and_replace are x86 PV; v2 status frames, swap, dump and cache
        // flush are not offered.
        _ => Err(ENOSYS),
    }
}

/// Reads each op, runs `f` on it, writes it back (with its status).
fn for_each<T: Wire>(
    ctx: &mut HypercallCtx<'_>,
    uop: u64,
    count: u64,
    f: fn(&mut HypercallCtx<'_>, &mut T) -> Result<(), i32>,
) -> Result<i64, i32> {
    for i in 0..count {
        let at = element_addr(uop, i, T::SIZE as u64).map_err(|_| EFAULT)?;
        let mut op: T = read_virt_obj(ctx.vmem, at).map_err(|_| EFAULT)?;
        f(ctx, &mut op)?;
        write_virt_obj(ctx.vmem, at, &op).map_err(|_| EFAULT)?;
    }
    Ok(0)
}

fn map_grant_ref(ctx: &mut HypercallCtx<'_>, op: &mut GnttabMapGrantRef) -> Result<(), i32> {
    op.handle = u32::MAX;
    op.dev_bus_addr = 0;
    op.status = map_one(ctx, op).map_or_else(
        |s| s,
        |h| {
            op.handle = h;
            GNTST_OKAY
        },
    );
    Ok(())
}

fn map_one(ctx: &mut HypercallCtx<'_>, op: &GnttabMapGrantRef) -> Result<u32, i16> {
    let caller = ctx.caller;
    if op.flags & GNTMAP_HOST_MAP == 0
        || op.flags & (GNTMAP_CONTAINS_PTE | GNTMAP_APPLICATION_MAP) != 0
    {
        return Err(GNTST_GENERAL_ERROR);
    }
    let gpa = GuestPhysAddr::new(op.host_addr);
    if !gpa.is_aligned(XEN_PAGE_SIZE) {
        return Err(GNTST_BAD_VIRT_ADDR);
    }
    let granter = resolve(caller, op.dom);
    if granter == caller {
        return Err(GNTST_BAD_DOMAIN);
    }
    let readonly = op.flags & GNTMAP_READONLY != 0;
    let dom = ctx.xen.domains.get(&caller).ok_or(GNTST_GENERAL_ERROR)?;
    let slot = match dom.gnttab.maps.iter().position(Option::is_none) {
        Some(i) => i,
        None if dom.gnttab.maps.len() < MAX_MAPTRACK => dom.gnttab.maps.len(),
        None => return Err(GNTST_NO_DEVICE_SPACE),
    };
    let frame = acquire(ctx.xen, granter, op.ref_, caller, readonly, ctx.env)?;
    if ctx
        .env
        .map_foreign(caller, gpa.pfn(), granter, frame, readonly)
        .is_err()
    {
        release(ctx.xen, granter, op.ref_, readonly, ctx.env);
        return Err(GNTST_GENERAL_ERROR);
    }
    let track = MapTrack {
        granter,
        gref: op.ref_,
        gfn: gpa.pfn(),
        readonly,
    };
    let dom = ctx
        .xen
        .domains
        .get_mut(&caller)
        .ok_or(GNTST_GENERAL_ERROR)?;
    if slot == dom.gnttab.maps.len() {
        dom.gnttab.maps.push(Some(track));
    } else {
        dom.gnttab.maps[slot] = Some(track);
    }
    Ok(slot as u32)
}

fn unmap_grant_ref(ctx: &mut HypercallCtx<'_>, op: &mut GnttabUnmapGrantRef) -> Result<(), i32> {
    let caller = ctx.caller;
    let dom = ctx.xen.domains.get_mut(&caller).ok_or(ESRCH)?;
    let Some(track) = dom.gnttab.maps.get(op.handle as usize).copied().flatten() else {
        op.status = GNTST_BAD_HANDLE;
        return Ok(());
    };
    if op.host_addr != 0 && GuestPhysAddr::new(op.host_addr).pfn() != track.gfn {
        op.status = GNTST_BAD_VIRT_ADDR;
        return Ok(());
    }
    dom.gnttab.maps[op.handle as usize] = None;
    ctx.env.unmap_foreign(caller, track.gfn);
    release(ctx.xen, track.granter, track.gref, track.readonly, ctx.env);
    op.status = GNTST_OKAY;
    Ok(())
}

/// One end of a copy, resolved.
struct CopyEnd {
    dom: DomId,
    frame: u64,
    /// The grant taken, to release afterwards.
    grant: Option<GrantRef>,
}

fn copy_end(
    ctx: &mut HypercallCtx<'_>,
    ptr: &GnttabCopyPtr,
    is_gref: bool,
    readonly: bool,
) -> Result<CopyEnd, i16> {
    let dom = resolve(ctx.caller, ptr.domid);
    if is_gref {
        let gref = ptr.u as u32;
        let frame = acquire(ctx.xen, dom, gref, ctx.caller, readonly, ctx.env)?;
        Ok(CopyEnd {
            dom,
            frame,
            grant: Some(gref),
        })
    } else if dom == ctx.caller {
        // A frame where the caller has a grant mapped is the granter's page, not the caller's:
        // Xen copies only pages the caller owns (get_page with the caller as owner) and
        // answers GNTST_bad_page for a mapping, read-only or writable, at either end.
        let mapped = ctx
            .xen
            .domains
            .get(&dom)
            .is_some_and(|d| d.gnttab.maps_at(ptr.u));
        if mapped {
            return Err(GNTST_BAD_PAGE);
        }
        Ok(CopyEnd {
            dom,
            frame: ptr.u,
            grant: None,
        })
    } else {
        // Copying from another domain's frame without a grant: never.
        Err(GNTST_PERMISSION_DENIED)
    }
}

fn copy(ctx: &mut HypercallCtx<'_>, op: &mut GnttabCopy) -> Result<(), i32> {
    op.status = copy_one(ctx, op).map_or_else(|s| s, |()| GNTST_OKAY);
    Ok(())
}

fn copy_one(ctx: &mut HypercallCtx<'_>, op: &GnttabCopy) -> Result<(), i16> {
    let len = u64::from(op.len);
    if u64::from(op.source.offset) + len > XEN_PAGE_SIZE
        || u64::from(op.dest.offset) + len > XEN_PAGE_SIZE
    {
        return Err(GNTST_BAD_COPY_ARG);
    }
    let src = copy_end(ctx, &op.source, op.flags & GNTCOPY_SOURCE_GREF != 0, true)?;
    let dst = match copy_end(ctx, &op.dest, op.flags & GNTCOPY_DEST_GREF != 0, false) {
        Ok(d) => d,
        Err(s) => {
            if let Some(g) = src.grant {
                release(ctx.xen, src.dom, g, true, ctx.env);
            }
            return Err(s);
        }
    };
    let result = (|| {
        let from = frame_addr(src.frame, u64::from(op.source.offset)).ok_or(GNTST_BAD_PAGE)?;
        let to = frame_addr(dst.frame, u64::from(op.dest.offset)).ok_or(GNTST_BAD_PAGE)?;
        let mut buf = alloc::vec![0u8; op.len as usize];
        ctx.env
            .memory(src.dom)
            .ok_or(GNTST_BAD_DOMAIN)?
            .read(from, &mut buf)
            .map_err(|_| GNTST_BAD_PAGE)?;
        ctx.env
            .memory(dst.dom)
            .ok_or(GNTST_BAD_DOMAIN)?
            .write(to, &buf)
            .map_err(|_| GNTST_BAD_PAGE)
    })();
    if let Some(g) = src.grant {
        release(ctx.xen, src.dom, g, true, ctx.env);
    }
    if let Some(g) = dst.grant {
        release(ctx.xen, dst.dom, g, false, ctx.env);
    }
    result
}

fn query_size(ctx: &mut HypercallCtx<'_>, op: &mut GnttabQuerySize) -> Result<(), i32> {
    match ctx.xen.target(ctx.caller, op.dom) {
        Ok(d) => {
            let t = &ctx.xen.domains.get(&d).ok_or(ESRCH)?.gnttab;
            op.nr_frames = t.nr_frames().max(1);
            op.max_nr_frames = t.max_frames;
            op.status = GNTST_OKAY;
        }
        Err(EPERM) => op.status = GNTST_PERMISSION_DENIED,
        Err(_) => op.status = GNTST_BAD_DOMAIN,
    }
    Ok(())
}

/// For non-translated guests; on Arm it only reports where the frames are placed
/// (`u64::MAX` for a frame not placed yet).
fn setup_table(ctx: &mut HypercallCtx<'_>, op: &mut GnttabSetupTable) -> Result<(), i32> {
    let d = match ctx.xen.target(ctx.caller, op.dom) {
        Ok(d) => d,
        Err(_) => {
            op.status = GNTST_BAD_DOMAIN;
            return Ok(());
        }
    };
    let t = &ctx.xen.domains.get(&d).ok_or(ESRCH)?.gnttab;
    if op.nr_frames > t.max_frames {
        op.status = GNTST_GENERAL_ERROR;
        return Ok(());
    }
    let gfns: Vec<u64> = (0..op.nr_frames)
        .map(|n| t.frame_gfn(n).unwrap_or(u64::MAX))
        .collect();
    for (i, gfn) in gfns.iter().enumerate() {
        let at = element_addr(op.frame_list, i as u64, 8).map_err(|_| EFAULT)?;
        write_virt_obj(ctx.vmem, at, gfn).map_err(|_| EFAULT)?;
    }
    op.status = GNTST_OKAY;
    Ok(())
}

/// Removes every grant mapping `domid` made, and every mapping others made of its grants.
pub(crate) fn teardown(xen: &mut Xen, domid: DomId, env: &mut dyn XenEnv) {
    let own: Vec<MapTrack> = match xen.domains.get_mut(&domid) {
        Some(d) => core::mem::take(&mut d.gnttab.maps)
            .into_iter()
            .flatten()
            .collect(),
        None => return,
    };
    for t in own {
        env.unmap_foreign(domid, t.gfn);
        release(xen, t.granter, t.gref, t.readonly, env);
    }
    for (other, dom) in xen.domains.iter_mut() {
        if other == domid {
            continue;
        }
        for slot in dom.gnttab.maps.iter_mut() {
            if let Some(t) = slot {
                if t.granter == domid {
                    env.unmap_foreign(other, t.gfn);
                    *slot = None;
                }
            }
        }
    }
}
