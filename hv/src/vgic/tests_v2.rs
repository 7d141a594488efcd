//! Tests of the virtual GICv2.

use super::*;
use crate::exit::AccessSize;
use alloc::vec;
use proptest::prelude::*;

const DIST: u64 = 0x0800_0000;
/// Where a guest would find its GICC (the hardware GICV frame, not emulated here).
const CPU_IF: u64 = 0x0801_0000;

const CTLR: u64 = DIST;
const TYPER: u64 = DIST + 0x4;
const IGROUPR: u64 = DIST + 0x80;
const ISENABLER: u64 = DIST + 0x100;
const ICENABLER: u64 = DIST + 0x180;
const ISPENDR: u64 = DIST + 0x200;
const ICPENDR: u64 = DIST + 0x280;
const ISACTIVER: u64 = DIST + 0x300;
const ICACTIVER: u64 = DIST + 0x380;
const IPRIORITYR: u64 = DIST + 0x400;
const ITARGETSR: u64 = DIST + 0x800;
const ICFGR: u64 = DIST + 0xC00;
const SGIR: u64 = DIST + 0xF00;
const CPENDSGIR: u64 = DIST + 0xF10;
const SPENDSGIR: u64 = DIST + 0xF20;

fn vgic(n: usize, nr_spis: u32) -> Vgic {
    Vgic::new_v2(VgicV2Config {
        dist_base: GuestPhysAddr::new(DIST),
        vcpu_count: n,
        nr_spis,
    })
    .expect("valid config")
}

fn access(
    g: &Vgic,
    vcpu: usize,
    addr: u64,
    size: AccessSize,
    write: Option<u64>,
) -> Result<MmioOutcome, VgicFault> {
    g.mmio(
        vcpu,
        MmioAccess {
            addr: GuestPhysAddr::new(addr),
            size,
            write,
        },
    )
    .expect("address belongs to the vGIC")
}

fn rd_on(g: &Vgic, vcpu: usize, addr: u64, size: AccessSize) -> u64 {
    access(g, vcpu, addr, size, None)
        .expect("read ok")
        .read
        .expect("a value")
}

fn rd32_on(g: &Vgic, vcpu: usize, addr: u64) -> u64 {
    rd_on(g, vcpu, addr, AccessSize::Word)
}

fn rd32(g: &Vgic, addr: u64) -> u64 {
    rd32_on(g, 0, addr)
}

fn wr_on(g: &Vgic, vcpu: usize, addr: u64, size: AccessSize, v: u64) -> VcpuSet {
    let out = access(g, vcpu, addr, size, Some(v)).expect("write ok");
    assert_eq!(out.read, None);
    out.kick
}

fn wr32_on(g: &Vgic, vcpu: usize, addr: u64, v: u64) -> VcpuSet {
    wr_on(g, vcpu, addr, AccessSize::Word, v)
}

fn wr32(g: &Vgic, addr: u64, v: u64) -> VcpuSet {
    wr32_on(g, 0, addr, v)
}

fn set(ids: &[usize]) -> VcpuSet {
    let mut s = VcpuSet::EMPTY;
    for &i in ids {
        s.insert(i);
    }
    s
}

fn lrs(n: usize) -> Vec<ListReg> {
    vec![ListReg::INVALID; n]
}

/// (INTID, state, source) of the valid entries.
fn listed(lrs: &[ListReg]) -> Vec<(u32, LrState, u8)> {
    lrs.iter()
        .filter(|l| l.state != LrState::Invalid)
        .map(|l| (l.intid, l.state, l.source))
        .collect()
}

/// Linux's GICv2 driver at boot (gic_dist_init, then gic_cpu_init on each CPU), condensed.
/// Leaves the distributor enabled, SPIs level at priority 0xa0 targeted at the boot CPU,
/// SGIs enabled on every vCPU. Returns the CPU mask each vCPU discovered.
fn linux_init(g: &Vgic) -> Vec<u8> {
    // The boot CPU: disable, probe, discover its own CPU mask from the banked ITARGETSR.
    wr32(g, CTLR, 0);
    let typer = rd32(g, TYPER);
    let lines = ((typer & 0x1F) + 1) * 32;
    let cpu_mask = |vcpu: usize| -> u8 {
        let mut mask = 0;
        for i in (0..32).step_by(4) {
            mask = rd32_on(g, vcpu, ITARGETSR + i);
            mask |= mask >> 16;
            mask |= mask >> 8;
            if mask != 0 {
                break;
            }
        }
        mask as u8
    };
    let boot_mask = u64::from(cpu_mask(0));
    let targets = boot_mask * 0x0101_0101;
    for i in (32..lines).step_by(4) {
        wr32(g, ITARGETSR + i, targets);
    }
    for i in (32..lines).step_by(16) {
        wr32(g, ICFGR + i / 4, 0);
    }
    for i in (32..lines).step_by(4) {
        wr32(g, IPRIORITYR + i, 0xA0A0_A0A0);
    }
    for i in (32..lines).step_by(32) {
        wr32(g, ICACTIVER + i / 8, 0xFFFF_FFFF);
        wr32(g, ICENABLER + i / 8, 0xFFFF_FFFF);
    }
    wr32(g, CTLR, 1);
    // Every CPU: its banked SGIs and PPIs.
    let mut masks = Vec::new();
    for v in 0..g.vcpu_count() {
        masks.push(cpu_mask(v));
        wr32_on(g, v, ICACTIVER, 0xFFFF_0000);
        wr32_on(g, v, ICENABLER, 0xFFFF_0000);
        wr32_on(g, v, ISENABLER, 0x0000_FFFF);
        for i in (0..32).step_by(4) {
            wr32_on(g, v, IPRIORITYR + i, 0xA0A0_A0A0);
        }
    }
    masks
}

#[test]
fn config_validation() {
    let good = VgicV2Config {
        dist_base: GuestPhysAddr::new(DIST),
        vcpu_count: 2,
        nr_spis: 64,
    };
    let g = Vgic::new_v2(good.clone()).expect("ok");
    assert_eq!(g.version(), GicVersion::V2);
    assert_eq!(g.vcpu_count(), 2);
    assert_eq!(g.nr_spis(), 64);
    assert_eq!(g.dist_range().start.raw(), DIST);
    assert_eq!(g.dist_range().size, 0x1000);
    assert_eq!(g.redist_range().size, 0);
    for bad in [0, 9, 128] {
        let mut c = good.clone();
        c.vcpu_count = bad;
        assert_eq!(Vgic::new_v2(c).err(), Some(VgicError::BadVcpuCount));
    }
    let mut c = good.clone();
    c.vcpu_count = MAX_VCPUS_V2;
    assert!(Vgic::new_v2(c).is_ok());
    for bad in [33, 992, u32::MAX] {
        let mut c = good.clone();
        c.nr_spis = bad;
        assert_eq!(Vgic::new_v2(c).err(), Some(VgicError::BadSpiCount));
    }
    let mut c = good.clone();
    c.nr_spis = 988;
    assert!(Vgic::new_v2(c).is_ok());
    let mut c = good.clone();
    c.dist_base = GuestPhysAddr::new(DIST + 0x800);
    assert_eq!(Vgic::new_v2(c).err(), Some(VgicError::Misaligned));
    let mut c = good;
    c.dist_base = GuestPhysAddr::new(!0xFFF);
    assert_eq!(Vgic::new_v2(c).err(), Some(VgicError::AddressOverflow));
}

#[test]
fn id_and_type_registers() {
    let g = vgic(4, 96);
    let typer = rd32(&g, TYPER);
    assert_eq!(typer & 0x1F, 3, "ITLinesNumber: 128 INTIDs");
    assert_eq!((typer >> 5) & 7, 3, "CPUNumber");
    assert_eq!(typer & (1 << 10), 0, "no Security Extensions");
    assert_eq!(typer >> 11, 0, "no LSPIs");
    assert_eq!(rd32(&g, DIST + 0x8), 0x4D00_043B);
    assert_eq!(rd32(&g, DIST + 0xFE8), 0x2B, "architecture revision 2");
    assert_eq!(rd32(&g, DIST + 0xFE8) >> 4, 2);
    let cidr: Vec<u64> = (0..4).map(|i| rd32(&g, DIST + 0xFF0 + 4 * i)).collect();
    assert_eq!(cidr, [0x0D, 0xF0, 0x05, 0xB1]);
    assert_eq!(rd32(&vgic(1, 988), TYPER) & 0x1F, 31);
    assert_eq!((rd32(&vgic(8, 0), TYPER) >> 5) & 7, 7);
}

#[test]
fn distributor_control_and_groups() {
    let g = vgic(1, 32);
    assert_eq!(rd32(&g, CTLR), 0);
    wr32(&g, CTLR, 0xFFFF_FFFF);
    assert_eq!(rd32(&g, CTLR), 0b11, "only the two enables, no ARE/DS");
    wr32(&g, CTLR, 0);
    // Interrupts reset to Group 0: EnableGrp1 alone does not deliver them.
    assert_eq!(rd32(&g, IGROUPR + 4), 0);
    wr32(&g, ISENABLER + 4, 1);
    g.inject(0, 32);
    wr32(&g, CTLR, 0b10);
    assert!(!g.has_deliverable(0));
    assert_eq!(wr32(&g, CTLR, 0b01), set(&[0]));
    let mut l = lrs(2);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(32, LrState::Pending, 0)]);
    assert!(!l[0].group1);
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    // IGROUPR is writable (banked for 0..31).
    wr32(&g, IGROUPR + 4, 1);
    assert_eq!(rd32(&g, IGROUPR + 4), 1);
    wr32(&g, IGROUPR, 0xFFFF_FFFF);
    assert_eq!(rd32(&g, IGROUPR), 0xFFFF_FFFF);
    g.inject(0, 32);
    assert!(!g.has_deliverable(0), "now Group 1, which is disabled");
}

#[test]
fn linux_like_init_then_sgi_and_timer() {
    let g = vgic(4, 64);
    let masks = linux_init(&g);
    assert_eq!(masks, [1, 2, 4, 8], "each vCPU finds its own bit");
    assert_eq!(rd32_on(&g, 2, ITARGETSR + 28), 0x0404_0404);
    for i in (32..96).step_by(4) {
        assert_eq!(rd32(&g, ITARGETSR + i), 0x0101_0101);
    }
    assert_eq!(rd32_on(&g, 3, ISENABLER), 0xFFFF);
    assert_eq!(rd32(&g, ICFGR), 0xAAAA_AAAA, "SGIs are edge");
    // An IPI from vCPU 0 to vCPU 2 (gic_ipi_send_mask).
    assert_eq!(wr32(&g, SGIR, (0b100 << 16) | 1), set(&[2]));
    assert!(g.has_deliverable(2));
    let mut l = lrs(4);
    g.fill_lrs(2, &mut l);
    assert_eq!(listed(&l), [(1, LrState::Pending, 0)]);
    assert_eq!(l[0].priority, 0xA0);
    assert!(!l[0].group1);
    assert!(!l[0].eoi_notify);
    // The guest acknowledges and EOIs it.
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(2, &l);
    assert!(!g.has_deliverable(2));
    // The timer PPI, once enabled.
    wr32_on(&g, 3, ISENABLER, 1 << 27);
    assert_eq!(g.set_private_level(3, 27, true), set(&[3]));
    g.fill_lrs(3, &mut l);
    assert_eq!(listed(&l), [(27, LrState::Pending, 0)]);
    assert!(l[0].eoi_notify, "level-sensitive");
    // An SPI goes to the boot CPU.
    wr32(&g, ISENABLER + 4, 1 << 8);
    assert_eq!(g.set_level(40, true), set(&[0]));
}

#[test]
fn sgir_target_filters() {
    let g = vgic(4, 32);
    linux_init(&g);
    let sgir = |from: usize, filter: u64, list: u64, intid: u64| {
        wr32_on(&g, from, SGIR, (filter << 24) | (list << 16) | intid)
    };
    assert_eq!(sgir(0, 0, 0b1010, 2), set(&[1, 3]));
    assert_eq!(sgir(0, 0, 0xF0, 2), VcpuSet::EMPTY, "no such CPUs");
    assert_eq!(sgir(0, 0, 0, 2), VcpuSet::EMPTY, "empty list");
    assert_eq!(sgir(2, 1, 0xFF, 4), set(&[0, 1, 3]), "all but self");
    assert_eq!(sgir(3, 2, 0b0001, 5), set(&[3]), "self only");
    assert_eq!(sgir(1, 3, 0xFF, 6), VcpuSet::EMPTY, "reserved filter");
    // NSATT and reserved bits do not change anything.
    assert_eq!(
        wr32(&g, SGIR, (1 << 15) | (0xFF << 4) | (0b10 << 16) | 7),
        set(&[1])
    );
    // Write-only: reads as zero.
    assert_eq!(rd32(&g, SGIR), 0);
    // Pending per (SGI, source), as SPENDSGIR shows it: SGI 2 from vCPU 0 on vCPUs 1, 3;
    // SGI 4 from vCPU 2 on vCPUs 0, 1, 3; SGI 5 from 3 on 3; SGI 7 from 0 on 1.
    let spend = |vcpu: usize, sgi: u64| {
        rd_on(&g, vcpu, SPENDSGIR + (sgi & !3), AccessSize::Word) >> (8 * (sgi % 4)) & 0xFF
    };
    assert_eq!(spend(1, 2), 0b0001);
    assert_eq!(spend(3, 2), 0b0001);
    assert_eq!(spend(2, 2), 0);
    assert_eq!(spend(0, 4), 0b0100);
    assert_eq!(spend(2, 4), 0);
    assert_eq!(spend(3, 5), 0b1000);
    assert_eq!(spend(1, 7), 0b0001);
    assert_eq!(rd32_on(&g, 3, ISPENDR), (1 << 2) | (1 << 4) | (1 << 5));
    assert_eq!(rd32_on(&g, 2, ISPENDR), 0);
    // write_sgi1r belongs to GICv3 guests.
    assert_eq!(g.write_sgi1r(0, (3 << 24) | 0xF), VcpuSet::EMPTY);
}

#[test]
fn sgi_from_several_sources_is_listed_one_source_at_a_time() {
    let g = vgic(4, 32);
    linux_init(&g);
    for from in [3, 0, 2] {
        assert_eq!(wr32_on(&g, from, SGIR, (0b10 << 16) | 3), set(&[1]));
    }
    let mut l = lrs(4);
    g.fill_lrs(1, &mut l);
    assert_eq!(
        listed(&l),
        [(3, LrState::Pending, 0)],
        "lowest source first"
    );
    assert!(l[0].eoi_notify, "others wait: ask to be told at EOI");
    assert_eq!(
        rd_on(&g, 1, SPENDSGIR, AccessSize::Byte) >> 24,
        0,
        "byte 0 is SGI 0"
    );
    assert_eq!(
        rd_on(&g, 1, SPENDSGIR + 3, AccessSize::Byte),
        0b1101,
        "listed source still reads as pending"
    );
    // The guest acknowledges it (source 0 active); the others are still pending.
    l[0].state = LrState::Active;
    g.sync_from_lrs(1, &l);
    assert!(!g.has_deliverable(1), "active, so not deliverable");
    g.fill_lrs(1, &mut l);
    assert_eq!(listed(&l), [(3, LrState::Active, 0)]);
    assert!(l[0].eoi_notify);
    // Deactivated: the next source is listed.
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(1, &l);
    assert!(g.has_deliverable(1));
    g.fill_lrs(1, &mut l);
    assert_eq!(listed(&l), [(3, LrState::Pending, 2)]);
    assert!(l[0].eoi_notify);
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(1, &l);
    g.fill_lrs(1, &mut l);
    assert_eq!(listed(&l), [(3, LrState::Pending, 3)]);
    assert!(!l[0].eoi_notify, "the last one");
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(1, &l);
    g.fill_lrs(1, &mut l);
    assert!(listed(&l).is_empty());
    assert_eq!(rd32_on(&g, 1, SPENDSGIR), 0);
    assert!(!g.has_deliverable(1));
}

#[test]
fn active_sgi_is_pending_again_only_for_its_own_source() {
    let g = vgic(4, 32);
    linux_init(&g);
    wr32_on(&g, 2, SGIR, (0b10 << 16) | 5);
    let mut l = lrs(4);
    g.fill_lrs(1, &mut l);
    l[0].state = LrState::Active;
    g.sync_from_lrs(1, &l);
    // The same source sends it again while it is active.
    assert_eq!(wr32_on(&g, 2, SGIR, (0b10 << 16) | 5), set(&[1]));
    g.fill_lrs(1, &mut l);
    assert_eq!(listed(&l), [(5, LrState::PendingActive, 2)]);
    assert!(!l[0].eoi_notify);
    // Another source sends it while listed pending-and-active: kicks the holder.
    assert_eq!(wr32_on(&g, 0, SGIR, (0b10 << 16) | 5), set(&[1]));
    // The guest deactivates the first; the hardware turns the LR into Pending.
    l[0].state = LrState::Pending;
    g.sync_from_lrs(1, &l);
    g.fill_lrs(1, &mut l);
    assert_eq!(
        listed(&l),
        [(5, LrState::Pending, 0)],
        "lowest source first"
    );
    assert!(l[0].eoi_notify);
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(1, &l);
    g.fill_lrs(1, &mut l);
    assert_eq!(listed(&l), [(5, LrState::Pending, 2)]);
    assert!(!l[0].eoi_notify);
    // The listed source survives a fill without sync.
    g.fill_lrs(1, &mut l);
    assert_eq!(listed(&l), [(5, LrState::Pending, 2)]);
    // A guest that rewrites the CPUID field cannot move the pending state to another
    // source.
    l[0].source = 7;
    g.sync_from_lrs(1, &l);
    assert_eq!(rd_on(&g, 1, SPENDSGIR + 5, AccessSize::Byte), 0b0100);
}

#[test]
fn set_and_clear_sgi_pending_by_source() {
    let g = vgic(3, 32);
    linux_init(&g);
    // vCPU 1 makes its SGI 6 pending from sources 0 and 2, and source 7 (no such CPU).
    assert_eq!(
        wr_on(&g, 1, SPENDSGIR + 6, AccessSize::Byte, 0b1000_0101),
        set(&[1])
    );
    assert_eq!(rd32_on(&g, 1, SPENDSGIR + 4), 0b101 << 16);
    assert_eq!(rd32_on(&g, 0, SPENDSGIR + 4), 0, "banked");
    assert_eq!(rd32_on(&g, 1, ISPENDR), 1 << 6);
    // Word write: SGI 8 from 1, SGI 11 from 0 and 1.
    wr32_on(&g, 1, SPENDSGIR + 8, 0x0300_0002);
    assert_eq!(rd32_on(&g, 1, SPENDSGIR + 8), 0x0300_0002);
    // CPENDSGIR reads the same state.
    assert_eq!(rd32_on(&g, 1, CPENDSGIR + 8), 0x0300_0002);
    wr_on(&g, 1, CPENDSGIR + 11, AccessSize::Byte, 0b01);
    assert_eq!(rd32_on(&g, 1, SPENDSGIR + 8), 0x0200_0002);
    wr32_on(&g, 1, CPENDSGIR + 8, 0xFFFF_FFFF);
    assert_eq!(rd32_on(&g, 1, SPENDSGIR + 8), 0);
    // ISPENDR/ICPENDR ignore SGI bits (pending state is per source) but handle PPIs.
    wr32_on(&g, 1, ICPENDR, 0xFFFF);
    assert_eq!(rd32_on(&g, 1, SPENDSGIR + 4), 0b101 << 16);
    wr32_on(&g, 1, ISPENDR, 0xFFFF);
    assert_eq!(rd32_on(&g, 1, ISPENDR), 1 << 6);
    wr32_on(&g, 1, ISPENDR, 1 << 20);
    assert_eq!(rd32_on(&g, 1, ISPENDR), (1 << 6) | (1 << 20));
    wr32_on(&g, 1, ICPENDR, 1 << 20);
    assert_eq!(rd32_on(&g, 1, ISPENDR), 1 << 6);
    // Clearing the listed source while the vCPU runs withdraws it at the next entry.
    let mut l = lrs(2);
    g.fill_lrs(1, &mut l);
    assert_eq!(listed(&l), [(6, LrState::Pending, 0)]);
    assert_eq!(
        wr_on(&g, 2, CPENDSGIR + 6, AccessSize::Byte, 0b1),
        VcpuSet::EMPTY,
        "vCPU 2's own bank"
    );
    assert_eq!(
        wr_on(&g, 1, CPENDSGIR + 6, AccessSize::Byte, 0b1),
        set(&[1])
    );
    assert_eq!(rd_on(&g, 1, SPENDSGIR + 6, AccessSize::Byte), 0b100);
    g.sync_from_lrs(1, &l); // the LR still said Pending
    g.fill_lrs(1, &mut l);
    assert_eq!(listed(&l), [(6, LrState::Pending, 2)]);
    // SGIs made active by ISACTIVER are active from the writer itself; ICACTIVER clears.
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(1, &l);
    wr32_on(&g, 1, ISACTIVER, 1 << 9);
    assert_eq!(rd32_on(&g, 1, ISACTIVER), 1 << 9);
    g.fill_lrs(1, &mut l);
    assert_eq!(listed(&l), [(9, LrState::Active, 1)]);
    wr32_on(&g, 1, ICACTIVER, 1 << 9);
    g.sync_from_lrs(1, &l);
    assert_eq!(rd32_on(&g, 1, ISACTIVER), 0);
    // A hypervisor-injected SGI comes from the target itself.
    g.inject(2, 4);
    assert_eq!(rd_on(&g, 2, SPENDSGIR + 4, AccessSize::Byte), 0b100);
}

#[test]
fn itargetsr_routing() {
    let g = vgic(4, 64);
    linux_init(&g);
    wr32(&g, ISENABLER + 4, 0xFFFF_FFFF);
    // Banked bytes are read-only.
    wr32_on(&g, 1, ITARGETSR, 0xFFFF_FFFF);
    assert_eq!(rd32_on(&g, 1, ITARGETSR), 0x0202_0202);
    assert_eq!(rd_on(&g, 3, ITARGETSR + 17, AccessSize::Byte), 0x08);
    // Byte write: SPI 41 to vCPU 2.
    assert_eq!(
        wr_on(&g, 0, ITARGETSR + 41, AccessSize::Byte, 0b0100),
        VcpuSet::EMPTY
    );
    assert_eq!(rd32(&g, ITARGETSR + 40), 0x0101_0401);
    assert_eq!(g.inject(0, 41), set(&[2]));
    // Several CPUs: the lowest-numbered online one.
    wr_on(&g, 0, ITARGETSR + 42, AccessSize::Byte, 0b1100);
    assert_eq!(g.inject(0, 42), set(&[2]));
    let mut l = lrs(4);
    g.fill_lrs(2, &mut l);
    assert_eq!(
        listed(&l),
        [(41, LrState::Pending, 0), (42, LrState::Pending, 0)]
    );
    for lr in l.iter_mut() {
        lr.state = LrState::Invalid;
    }
    g.sync_from_lrs(2, &l);
    g.set_vcpu_online(2, false);
    assert_eq!(g.inject(0, 42), set(&[3]));
    g.set_vcpu_online(2, true);
    // Bits of CPUs that do not exist are not kept; a mask of zero delivers nowhere.
    wr_on(&g, 0, ITARGETSR + 43, AccessSize::Byte, 0xF0);
    assert_eq!(rd_on(&g, 0, ITARGETSR + 43, AccessSize::Byte), 0);
    assert_eq!(g.inject(0, 43), VcpuSet::EMPTY);
    assert_ne!(rd32(&g, ISPENDR + 4) & (1 << 11), 0, "pending nonetheless");
    assert_eq!(
        wr_on(&g, 0, ITARGETSR + 43, AccessSize::Byte, 0b10),
        set(&[1])
    );
    // Retargeted while listed: stays with the holder until synced, then moves.
    let mut l1 = lrs(4);
    g.fill_lrs(1, &mut l1);
    assert_eq!(listed(&l1), [(43, LrState::Pending, 0)]);
    assert_eq!(
        wr_on(&g, 0, ITARGETSR + 43, AccessSize::Byte, 0b1000),
        set(&[1])
    );
    let mut l3 = lrs(4);
    g.fill_lrs(3, &mut l3);
    assert!(listed(&l3).is_empty());
    assert_eq!(g.sync_from_lrs(1, &l1), set(&[3]));
    g.fill_lrs(3, &mut l3);
    assert_eq!(listed(&l3), [(43, LrState::Pending, 0)]);
    // Past the last SPI: RAZ/WI.
    wr32(&g, ITARGETSR + 96, 0x0101_0101);
    assert_eq!(rd32(&g, ITARGETSR + 96), 0);
}

#[test]
fn reset_vcpu_clears_banked_state() {
    let g = vgic(2, 32);
    linux_init(&g);
    wr32_on(&g, 0, SGIR, (0b10 << 16) | 1);
    let mut l = lrs(2);
    g.fill_lrs(1, &mut l);
    g.reset_vcpu(1);
    assert_eq!(rd32_on(&g, 1, ISENABLER), 0);
    assert_eq!(rd32_on(&g, 1, SPENDSGIR), 0);
    assert_eq!(rd32_on(&g, 1, IGROUPR), 0, "Group 0 again");
    assert_eq!(rd32_on(&g, 0, ISENABLER), 0xFFFF, "others untouched");
    assert_eq!(g.sync_from_lrs(1, &l), VcpuSet::EMPTY);
    g.fill_lrs(1, &mut l);
    assert!(listed(&l).is_empty());
}

#[test]
fn faults_and_foreign_addresses() {
    let g = vgic(2, 32);
    let a = |addr: u64, size, write| access(&g, 0, addr, size, write);
    assert_eq!(
        a(DIST + 2, AccessSize::Word, None),
        Err(VgicFault::Unaligned)
    );
    assert_eq!(
        a(ITARGETSR + 33, AccessSize::Word, None),
        Err(VgicFault::Unaligned)
    );
    assert_eq!(a(CTLR, AccessSize::Byte, None), Err(VgicFault::BadSize));
    assert_eq!(
        a(CTLR, AccessSize::Double, Some(1)),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(ISENABLER, AccessSize::Half, None),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(ISENABLER, AccessSize::Byte, None),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(IPRIORITYR, AccessSize::Half, None),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(IPRIORITYR, AccessSize::Double, None),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(ITARGETSR, AccessSize::Half, None),
        Err(VgicFault::BadSize)
    );
    assert_eq!(a(SGIR, AccessSize::Byte, Some(1)), Err(VgicFault::BadSize));
    assert_eq!(
        a(SPENDSGIR, AccessSize::Half, Some(1)),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(DIST + 0xFE8, AccessSize::Byte, None),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(DIST + 0xE00, AccessSize::Byte, None),
        Err(VgicFault::BadSize)
    );
    // NSACR and the status registers: RAZ/WI.
    for off in [0xD00, 0xD04, 0xE00, 0xEFC] {
        assert_eq!(
            a(DIST + off, AccessSize::Word, Some(u64::MAX)).map(|o| o.read),
            Ok(None)
        );
        assert_eq!(rd32(&g, DIST + off), 0);
    }
    // Reserved space: RAZ/WI at any aligned size.
    assert_eq!(
        a(DIST + 0xF40, AccessSize::Byte, Some(7)).map(|o| o.read),
        Ok(None)
    );
    assert_eq!(
        a(DIST + 0x10, AccessSize::Double, None).map(|o| o.read),
        Ok(Some(0))
    );
    assert_eq!(
        access(&g, 2, CTLR, AccessSize::Word, None),
        Err(VgicFault::BadVcpu)
    );
    let foreign = |addr: u64| {
        g.mmio(
            0,
            MmioAccess {
                addr: GuestPhysAddr::new(addr),
                size: AccessSize::Word,
                write: None,
            },
        )
    };
    assert!(foreign(DIST - 4).is_none());
    assert!(
        foreign(DIST + 0x1000).is_none(),
        "past the 4 KiB distributor"
    );
    assert!(foreign(CPU_IF).is_none(), "the GICC is the hardware's GICV");
    assert!(foreign(DIST + 0x1_0000).is_none());
    assert!(foreign(0).is_none());
    assert!(foreign(u64::MAX - 3).is_none());
    assert!(foreign(DIST + 0xFFC).is_some());
    assert_eq!(g.vcpu_by_affinity(0), None);
    assert_eq!(g.inject(2, 3), VcpuSet::EMPTY);
    assert_eq!(g.inject(0, 5000), VcpuSet::EMPTY);
    assert!(!g.has_deliverable(99));
    let mut l = lrs(2);
    assert!(!g.fill_lrs(99, &mut l).overflow);
    assert_eq!(g.sync_from_lrs(99, &l), VcpuSet::EMPTY);
    g.reset_vcpu(99);
    assert_eq!(g.set_vcpu_online(99, false), VcpuSet::EMPTY);
}

#[test]
fn gicv3_lists_no_source() {
    let g = Vgic::new(VgicConfig {
        dist_base: GuestPhysAddr::new(DIST),
        redist_base: GuestPhysAddr::new(0x080A_0000),
        vcpu_mpidrs: vec![0, 1],
        nr_spis: 32,
    })
    .expect("ok");
    assert_eq!(g.version(), GicVersion::V3);
    // SGI 3 from vCPU 0 to vCPU 1 and again from vCPU 1: one pending bit, no source.
    wr32(&g, CTLR, 0x13);
    wr32_on(&g, 0, 0x080A_0000 + 0x2_0000 + 0x1_0100, 0xFFFF);
    g.write_sgi1r(0, (3 << 24) | 0b10);
    g.write_sgi1r(1, (3 << 24) | 0b10);
    let mut l = lrs(4);
    g.fill_lrs(1, &mut l);
    assert_eq!(listed(&l), [(3, LrState::Pending, 0)]);
    assert!(!l[0].eoi_notify);
    assert_eq!(ListReg::default(), ListReg::INVALID);
}

fn any_size() -> impl Strategy<Value = AccessSize> {
    prop_oneof![
        Just(AccessSize::Byte),
        Just(AccessSize::Half),
        Just(AccessSize::Word),
        Just(AccessSize::Double)
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Mmio {
        vcpu: usize,
        addr: u64,
        size: AccessSize,
        write: Option<u64>,
    },
    Sgir(usize, u64),
    Inject(usize, u32),
    Level(u32, bool),
    Online(usize, bool),
    Run {
        vcpu: usize,
        n: usize,
        ack: u8,
    },
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..5, 0u64..0x1000, any_size(), any::<Option<u64>>()).prop_map(
            |(vcpu, o, size, write)| Op::Mmio {
                vcpu,
                addr: DIST + o,
                size,
                write
            }
        ),
        // The registers with the most behaviour.
        (0usize..4, 0xF00u64..0xF30, any_size(), any::<Option<u64>>()).prop_map(
            |(vcpu, o, size, write)| Op::Mmio {
                vcpu,
                addr: DIST + (o & !3),
                size,
                write
            }
        ),
        (0usize..4, 0x800u64..0x860, any_size(), any::<Option<u64>>()).prop_map(
            |(vcpu, o, size, write)| Op::Mmio {
                vcpu,
                addr: DIST + o,
                size,
                write
            }
        ),
        (0usize..4, any::<u64>()).prop_map(|(v, x)| Op::Sgir(v, x)),
        (0usize..4, 0u32..200).prop_map(|(v, i)| Op::Inject(v, i)),
        (0u32..200, any::<bool>()).prop_map(|(i, h)| Op::Level(i, h)),
        (0usize..4, any::<bool>()).prop_map(|(v, o)| Op::Online(v, o)),
        (0usize..4, 0usize..5, any::<u8>()).prop_map(|(vcpu, n, ack)| Op::Run { vcpu, n, ack }),
    ]
}

proptest! {
    #[test]
    fn garbage_never_panics(ops in proptest::collection::vec(any_op(), 1..300)) {
        let g = vgic(3, 64);
        linux_init(&g);
        let mut held: Vec<Vec<ListReg>> = vec![lrs(4), lrs(4), lrs(4)];
        for op in ops {
            match op {
                Op::Mmio { vcpu, addr, size, write } => {
                    let out = g.mmio(vcpu, MmioAccess { addr: GuestPhysAddr::new(addr), size, write });
                    prop_assert!(out.is_some());
                    if let Some(Ok(out)) = out {
                        prop_assert!(vcpu < 3);
                        if let Some(v) = out.read {
                            prop_assert_eq!(v & !size.mask(), 0);
                        }
                        prop_assert!(out.kick.bits() >> 3 == 0);
                    }
                }
                Op::Sgir(v, x) => {
                    if let Some(Ok(out)) = g.mmio(v, MmioAccess { addr: GuestPhysAddr::new(SGIR), size: AccessSize::Word, write: Some(x & 0xFFFF_FFFF) }) {
                        prop_assert!(out.kick.bits() >> 3 == 0);
                    }
                }
                Op::Inject(v, i) => { g.inject(v, i); }
                Op::Level(i, h) => { g.set_level(i, h); }
                Op::Online(v, o) => { g.set_vcpu_online(v, o); }
                Op::Run { vcpu, n, ack } => {
                    let v = vcpu % 3;
                    super::tests::guest_acts(&mut held[v], ack, LrState::Pending);
                    g.sync_from_lrs(v, &held[v]);
                    let mut fresh = lrs(n);
                    g.fill_lrs(v, &mut fresh);
                    let valid: Vec<&ListReg> = fresh.iter().filter(|l| l.state != LrState::Invalid).collect();
                    for (i, lr) in valid.iter().enumerate() {
                        prop_assert!(lr.intid < 96);
                        prop_assert!(!valid[..i].iter().any(|o| o.intid == lr.intid), "listed twice");
                        if lr.intid < 16 {
                            prop_assert!(lr.source < 3, "source is a real vCPU");
                        } else {
                            prop_assert_eq!(lr.source, 0);
                        }
                    }
                    held[v] = fresh;
                }
            }
        }
        let mut spis = Vec::new();
        for h in &held {
            for l in h.iter().filter(|l| l.state != LrState::Invalid && l.intid >= 32) {
                prop_assert!(!spis.contains(&l.intid));
                spis.push(l.intid);
            }
        }
    }
}
