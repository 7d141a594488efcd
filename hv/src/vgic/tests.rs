//! Tests of the virtual GICv3.

use super::*;
use crate::exit::AccessSize;
use alloc::vec;
use proptest::prelude::*;

const DIST: u64 = 0x0800_0000;
const REDIST: u64 = 0x080A_0000;
const SGI: u64 = 0x1_0000;

/// vCPUs 0..n: the first four in cluster 0 (Aff0 0..3), the rest in cluster 1.
fn mpidrs(n: usize) -> Vec<u64> {
    (0..n as u64)
        .map(|i| if i < 4 { i } else { 0x100 | (i - 4) })
        .collect()
}

fn vgic(n: usize, nr_spis: u32) -> Vgic {
    Vgic::new(VgicConfig {
        dist_base: GuestPhysAddr::new(DIST),
        redist_base: GuestPhysAddr::new(REDIST),
        vcpu_mpidrs: mpidrs(n),
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

fn rd(g: &Vgic, addr: u64, size: AccessSize) -> u64 {
    access(g, 0, addr, size, None)
        .expect("read ok")
        .read
        .expect("a value")
}

fn rd32(g: &Vgic, addr: u64) -> u64 {
    rd(g, addr, AccessSize::Word)
}

fn wr(g: &Vgic, addr: u64, size: AccessSize, v: u64) -> VcpuSet {
    let out = access(g, 0, addr, size, Some(v)).expect("write ok");
    assert_eq!(out.read, None);
    out.kick
}

fn wr32(g: &Vgic, addr: u64, v: u64) -> VcpuSet {
    wr(g, addr, AccessSize::Word, v)
}

fn rdist(vcpu: usize) -> u64 {
    REDIST + vcpu as u64 * REDIST_FRAME_SIZE
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

/// What a guest may do with its listed interrupts between two exits, two bits of `ack` per
/// list register: complete it (invalid), acknowledge it (active), `third` (the test's choice
/// of a pending state), or leave it. Invalid list registers stay invalid.
pub(super) fn guest_acts(lrs: &mut [ListReg], ack: u8, third: LrState) {
    for (k, lr) in lrs.iter_mut().enumerate() {
        if lr.state != LrState::Invalid {
            lr.state = match (ack >> (2 * (k % 4))) & 3 {
                0 => LrState::Invalid,
                1 => LrState::Active,
                2 => third,
                _ => lr.state,
            };
        }
    }
}

fn listed(lrs: &[ListReg]) -> Vec<(u32, LrState)> {
    lrs.iter()
        .filter(|l| l.state != LrState::Invalid)
        .map(|l| (l.intid, l.state))
        .collect()
}

/// What Linux's GICv3 driver does at boot, condensed; leaves both groups enabled, SPIs
/// group 1 at priority 0xa0 routed to vCPU 0, PPI 27 and SGIs 0..15 enabled on every vCPU.
fn linux_init(g: &Vgic) {
    // Distributor: disable, wait for RWP, probe.
    wr32(g, DIST, 0);
    assert_eq!(rd32(g, DIST) & (1 << 31), 0, "RWP clear");
    assert_eq!(rd32(g, DIST + 0xFFE8) & 0xF0, 0x30, "GICv3 architecture");
    let typer = rd32(g, DIST + 0x4);
    let lines = ((typer & 0x1F) + 1) * 32;
    for i in (32..lines).step_by(32) {
        wr32(g, DIST + 0x80 + i / 8, 0xFFFF_FFFF); // IGROUPR: group 1
        wr32(g, DIST + 0x180 + i / 8, 0xFFFF_FFFF); // ICENABLER
        wr32(g, DIST + 0x380 + i / 8, 0xFFFF_FFFF); // ICACTIVER
    }
    for i in (32..lines).step_by(16) {
        wr32(g, DIST + 0xC00 + i / 4, 0); // ICFGR: level
    }
    for i in (32..lines).step_by(4) {
        wr32(g, DIST + 0x400 + i, 0xA0A0_A0A0);
    }
    // ARE_NS | EnableGrp1A | EnableGrp1.
    wr32(g, DIST, 0x13);
    assert_eq!(rd32(g, DIST) & 0x13, 0x13);
    for i in 32..lines {
        wr(g, DIST + 0x6000 + 8 * i, AccessSize::Double, 0);
    }
    // Each vCPU finds its redistributor, wakes it, and sets up its SGIs/PPIs.
    for v in 0..g.vcpu_count() {
        let mut frame = 0;
        loop {
            let base = rdist(frame);
            assert_eq!(rd32(g, base + 0xFFE8) & 0xF0, 0x30);
            let typer = rd(g, base + 0x8, AccessSize::Double);
            let m = mpidrs(g.vcpu_count())[v];
            if typer >> 32 == m {
                assert_eq!((typer >> 8) & 0xFFFF, frame as u64);
                break;
            }
            assert_eq!(typer & (1 << 4), 0, "not the last yet");
            frame += 1;
        }
        let base = rdist(frame);
        assert_ne!(rd32(g, base + 0x14) & 0b110, 0, "asleep at reset");
        wr32(g, base + 0x14, 0);
        assert_eq!(rd32(g, base + 0x14) & 0b100, 0, "ChildrenAsleep follows");
        wr32(g, base + SGI + 0x80, 0xFFFF_FFFF);
        wr32(g, base + SGI + 0x380, 0xFFFF_FFFF);
        wr32(g, base + SGI + 0x180, 0xFFFF_0000);
        wr32(g, base + SGI + 0x100, 0x0000_FFFF);
        for i in (0..32).step_by(4) {
            wr32(g, base + SGI + 0x400 + i, 0xA0A0_A0A0);
        }
        wr32(g, base + SGI + 0x100, 1 << 27);
    }
}

#[test]
fn config_validation() {
    let good = VgicConfig {
        dist_base: GuestPhysAddr::new(DIST),
        redist_base: GuestPhysAddr::new(REDIST),
        vcpu_mpidrs: vec![0, 1],
        nr_spis: 64,
    };
    assert!(Vgic::new(good.clone()).is_ok());
    let mut c = good.clone();
    c.vcpu_mpidrs = vec![];
    assert_eq!(Vgic::new(c).err(), Some(VgicError::BadVcpuCount));
    let mut c = good.clone();
    c.vcpu_mpidrs = (0..129).collect();
    assert_eq!(Vgic::new(c).err(), Some(VgicError::BadVcpuCount));
    let mut c = good.clone();
    c.vcpu_mpidrs = vec![1, 0x8000_0001];
    assert_eq!(Vgic::new(c).err(), Some(VgicError::DuplicateMpidr));
    for bad in [33, 992, 1024, u32::MAX] {
        let mut c = good.clone();
        c.nr_spis = bad;
        assert_eq!(Vgic::new(c).err(), Some(VgicError::BadSpiCount), "{bad}");
    }
    let mut c = good.clone();
    c.nr_spis = 988;
    assert!(Vgic::new(c).is_ok());
    let mut c = good.clone();
    c.dist_base = GuestPhysAddr::new(DIST + 0x1000);
    assert!(
        Vgic::new(c).is_ok(),
        "Xen's domU map has a 4 KiB-aligned distributor"
    );
    let mut c = good.clone();
    c.dist_base = GuestPhysAddr::new(DIST + 0x800);
    assert_eq!(Vgic::new(c).err(), Some(VgicError::Misaligned));
    let mut c = good.clone();
    c.redist_base = GuestPhysAddr::new(!0xFFFF);
    assert_eq!(Vgic::new(c).err(), Some(VgicError::AddressOverflow));
    let mut c = good;
    c.redist_base = GuestPhysAddr::new(DIST - 0x1_0000);
    assert_eq!(Vgic::new(c).err(), Some(VgicError::Overlap));
}

#[test]
fn id_and_type_registers() {
    let g = vgic(6, 96);
    let typer = rd32(&g, DIST + 0x4);
    assert_eq!(typer & 0x1F, 3, "ITLinesNumber: 128 INTIDs");
    assert_eq!((typer >> 19) & 0x1F, 9, "IDbits");
    assert_eq!(typer & (1 << 17), 0, "no LPIs");
    assert_eq!(typer & (1 << 16), 0, "no MBIS");
    assert_eq!((typer >> 5) & 7, 5, "CPUNumber");
    assert_eq!(rd32(&g, DIST + 0x8), 0x4D00_043B);
    assert_eq!(rd32(&g, DIST + 0xC), 0, "TYPER2");
    assert_eq!(rd32(&g, DIST + 0xFFE8), 0x3B);
    assert_eq!(rd32(&g, DIST + 0xFFF0), 0x0D);
    // GICR_TYPER of vCPU 5 (MPIDR 0x101): affinity, processor number, Last.
    let t = rd(&g, rdist(5) + 0x8, AccessSize::Double);
    assert_eq!(t >> 32, 0x101);
    assert_eq!((t >> 8) & 0xFFFF, 5);
    assert_ne!(t & (1 << 4), 0);
    assert_eq!(t & 0b11, 0, "no PLPIS/VLPIS");
    assert_eq!(t & (1 << 5), 0, "no DirectLPI");
    assert_eq!(rd32(&g, rdist(5) + 0x8), t & 0xFFFF_FFFF);
    assert_eq!(rd32(&g, rdist(5) + 0xC), t >> 32);
    assert_eq!(rd(&g, rdist(4) + 0x8, AccessSize::Double) & (1 << 4), 0);
    assert_eq!(rd32(&g, rdist(0) + 0x4), 0x4D00_043B);
    // Aff3 lands in bits 63:56.
    let g3 = Vgic::new(VgicConfig {
        dist_base: GuestPhysAddr::new(DIST),
        redist_base: GuestPhysAddr::new(REDIST),
        vcpu_mpidrs: vec![0x02_0003_0405],
        nr_spis: 32,
    })
    .expect("ok");
    assert_eq!(rd(&g3, REDIST + 0x8, AccessSize::Double) >> 32, 0x0203_0405);
    assert_ne!(rd32(&g3, DIST + 0x4) & (1 << 24), 0, "A3V");
}

#[test]
fn linux_like_init_then_timer_ppi() {
    let g = vgic(2, 64);
    linux_init(&g);
    assert_eq!(rd32(&g, rdist(1) + SGI + 0x100), 0x0800_FFFF);
    assert_eq!(rd32(&g, rdist(1) + SGI + 0x80), 0xFFFF_FFFF);
    assert_eq!(rd32(&g, DIST + 0x80 + 4), 0xFFFF_FFFF);
    // PPI 27 on vCPU 1 only.
    assert_eq!(g.inject(1, 27), set(&[1]));
    assert!(g.has_deliverable(1));
    assert!(!g.has_deliverable(0));
    let mut l = lrs(4);
    assert_eq!(
        g.fill_lrs(0, &mut l).listed,
        0,
        "vCPU 0 has nothing to list"
    );
    assert!(l.iter().all(|lr| lr.state == LrState::Invalid));
    let fill = g.fill_lrs(1, &mut l);
    assert_eq!((fill.overflow, fill.listed), (false, 1));
    assert_eq!(listed(&l), [(27, LrState::Pending)]);
    assert_eq!(l[0].priority, 0xA0);
    assert!(l[0].group1);
    // An SGI from vCPU 0 to vCPU 1.
    assert_eq!(g.write_sgi1r(0, (3 << 24) | 0b10), set(&[1]));
}

#[test]
fn change_count_tells_when_list_registers_need_choosing_again() {
    let g = vgic(2, 64);
    let mut l = lrs(4);
    let fill = g.fill_lrs(0, &mut l);
    assert_eq!(fill.listed, 0);
    assert!(g.unchanged_since(&fill));
    // Looking does not count as a change; choosing again finds the same.
    assert!(!g.has_deliverable(0));
    let _ = g.spi_in_service(40);
    assert!(g.unchanged_since(&fill));
    let again = g.fill_lrs(0, &mut l);
    assert_eq!(again, fill);
    // Every kind of change counts: an injection (even for the other vCPU), a line, a
    // distributor access, an SGI write, a reset.
    let changes: [&dyn Fn(&Vgic); 5] = [
        &|g| {
            g.inject(1, 27);
        },
        &|g| {
            g.set_level(40, true);
        },
        &|g| {
            let _ = rd32(g, DIST + 0x100);
        },
        &|g| {
            g.write_sgi1r(0, (3 << 24) | 0b10);
        },
        &|g| g.reset_vcpu(1),
    ];
    for change in changes {
        let before = g.fill_lrs(0, &mut l);
        change(&g);
        assert!(!g.unchanged_since(&before));
        let after = g.fill_lrs(0, &mut l);
        assert!(g.unchanged_since(&after));
    }
}

#[test]
fn edge_inject_fill_sync_cycle() {
    let g = vgic(2, 64);
    linux_init(&g);
    // SPI 40, edge, enabled.
    wr32(&g, DIST + 0xC00 + (40 / 16) * 4, 2 << (2 * (40 % 16)));
    wr32(&g, DIST + 0x100 + 4, 1 << 8);
    assert_eq!(
        g.inject(1, 40),
        set(&[0]),
        "routed to vCPU 0 whatever the caller says"
    );
    let mut l = lrs(4);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(40, LrState::Pending)]);
    assert!(!l[0].eoi_notify);
    assert_ne!(
        rd32(&g, DIST + 0x200 + 4) & (1 << 8),
        0,
        "reads as pending while listed"
    );
    // The guest acknowledges it.
    l[0].state = LrState::Active;
    g.sync_from_lrs(0, &l);
    assert!(!g.has_deliverable(0));
    assert_ne!(rd32(&g, DIST + 0x300 + 4) & (1 << 8), 0, "active");
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(40, LrState::Active)], "active stays listed");
    // A new edge while it is active (and listed): the owner is kicked.
    assert_eq!(g.inject(0, 40), set(&[0]));
    g.sync_from_lrs(0, &l);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(40, LrState::PendingActive)]);
    // The guest deactivates: the hardware turns it Pending; then ack + EOI.
    l[0].state = LrState::Pending;
    g.sync_from_lrs(0, &l);
    assert!(g.has_deliverable(0));
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(40, LrState::Pending)]);
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    assert!(!g.has_deliverable(0));
    g.fill_lrs(0, &mut l);
    assert!(listed(&l).is_empty());
    assert_eq!(rd32(&g, DIST + 0x200 + 4), 0);
    assert_eq!(rd32(&g, DIST + 0x300 + 4), 0);
}

#[test]
fn edge_arriving_while_listed_pending_is_not_lost() {
    let g = vgic(1, 32);
    linux_init(&g);
    wr32(&g, rdist(0) + SGI + 0x100, 1 << 5);
    g.inject(0, 5);
    let mut l = lrs(2);
    g.fill_lrs(0, &mut l);
    // Guest acks and EOIs it; meanwhile a new edge arrived.
    g.inject(0, 5);
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(5, LrState::Pending)]);
}

#[test]
fn level_triggered_repend_and_drop() {
    let g = vgic(1, 32);
    linux_init(&g);
    let spi = 33;
    wr32(&g, DIST + 0x100 + 4, 1 << 1);
    assert_eq!(g.set_level(spi, true), set(&[0]));
    assert_eq!(g.set_level(spi, true), VcpuSet::EMPTY, "no change, no kick");
    let mut l = lrs(4);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(spi, LrState::Pending)]);
    assert!(l[0].eoi_notify);
    // Ack + EOI with the line still high: pending again.
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    assert!(g.has_deliverable(0));
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(spi, LrState::Pending)]);
    // Ack only: active; the line is high but it is not listed as pending too.
    l[0].state = LrState::Active;
    g.sync_from_lrs(0, &l);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(spi, LrState::Active)]);
    // Line drops while listed: owner kicked; after EOI nothing is left.
    assert_eq!(g.set_level(spi, false), set(&[0]));
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    g.fill_lrs(0, &mut l);
    assert!(listed(&l).is_empty());
    // Line drops while listed pending and not yet taken: withdrawn at the next entry.
    g.set_level(spi, true);
    g.fill_lrs(0, &mut l);
    g.set_level(spi, false);
    g.sync_from_lrs(0, &l);
    g.fill_lrs(0, &mut l);
    assert!(listed(&l).is_empty());
    assert!(!g.has_deliverable(0));
}

/// The virtual timer is level-sensitive to Linux. When it fires again while the guest is
/// still in its handler (listed active), the new injection must survive the guest's EOI of
/// the old one: losing it leaves the hypervisor-masked timer silent forever.
#[test]
fn level_injection_while_active_survives_the_eoi() {
    let g = vgic(1, 32);
    linux_init(&g);
    assert!(!g.inject(0, 27).is_empty());
    let mut l = lrs(4);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(27, LrState::Pending)]);
    // The guest acknowledges it and is in its handler when the timer fires again.
    l[0].state = LrState::Active;
    g.sync_from_lrs(0, &l);
    g.inject(0, 27);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(27, LrState::Active)]);
    // The guest deactivates the first one.
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    assert!(g.has_deliverable(0), "the second timer interrupt was lost");
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(27, LrState::Pending)]);
    // Acknowledging and ending that one consumes it.
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    assert!(!g.has_deliverable(0));
}

/// A passed-through SPI is listed with the hardware bit (its physical twin stays active until
/// the guest deactivates it), never with an EOI maintenance request.
#[test]
fn hardware_backed_spi_is_listed_with_the_hw_bit() {
    let g = vgic(1, 64);
    linux_init(&g);
    wr32(&g, DIST + 0x100 + 4, 1 << 15); // enable INTID 47
    g.set_hw_backed(47, true);
    assert!(!g.inject(0, 47).is_empty());
    let mut l = lrs(2);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(47, LrState::Pending)]);
    assert!(l[0].hw && !l[0].eoi_notify);
    // The guest acknowledges and deactivates it: the model forgets it.
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    assert!(!g.has_deliverable(0));
    assert!(!g.spi_in_service(47));
    // Private interrupts cannot be hardware-backed.
    g.set_hw_backed(27, true);
    g.inject(0, 27);
    g.fill_lrs(0, &mut l);
    assert!(l.iter().all(|lr| !lr.hw));
}

#[test]
fn software_pending_on_level_interrupt_is_consumed_by_ack() {
    let g = vgic(1, 32);
    linux_init(&g);
    wr32(&g, DIST + 0x100 + 4, 1 << 2);
    wr32(&g, DIST + 0x200 + 4, 1 << 2); // ISPENDR
    assert_eq!(rd32(&g, DIST + 0x200 + 4), 1 << 2);
    let mut l = lrs(1);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(34, LrState::Pending)]);
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    assert_eq!(rd32(&g, DIST + 0x200 + 4), 0);
}

#[test]
fn icpendr_while_listed_drops_the_listed_pending() {
    let g = vgic(2, 32);
    linux_init(&g);
    wr32(&g, DIST + 0xC00 + 8, 0xAAAA_AAAA); // SPIs 32..47 edge
    wr32(&g, DIST + 0x100 + 4, 1);
    g.inject(0, 32);
    let mut l = lrs(1);
    g.fill_lrs(0, &mut l);
    // vCPU 1 clears it while vCPU 0 still runs with it in an LR.
    assert_eq!(
        access(&g, 1, DIST + 0x280 + 4, AccessSize::Word, Some(1))
            .expect("ok")
            .kick,
        set(&[0])
    );
    assert_eq!(rd32(&g, DIST + 0x200 + 4), 0);
    g.sync_from_lrs(0, &l); // the LR still said Pending
    g.fill_lrs(0, &mut l);
    assert!(listed(&l).is_empty());
}

#[test]
fn disabled_or_group_disabled_is_not_delivered() {
    let g = vgic(1, 32);
    linux_init(&g);
    assert_eq!(g.inject(0, 40), VcpuSet::EMPTY, "disabled: no kick");
    assert!(!g.has_deliverable(0));
    let mut l = lrs(4);
    g.fill_lrs(0, &mut l);
    assert!(listed(&l).is_empty());
    assert_eq!(
        wr32(&g, DIST + 0x100 + 4, 1 << 8),
        set(&[0]),
        "enabling a pending one kicks"
    );
    assert!(g.has_deliverable(0));
    // Group 1 off in GICD_CTLR.
    wr32(&g, DIST, 0x10);
    assert!(!g.has_deliverable(0));
    g.fill_lrs(0, &mut l);
    assert!(listed(&l).is_empty());
    assert_eq!(wr32(&g, DIST, 0x12), set(&[0]));
    // Group 0 interrupt needs EnableGrp0.
    wr32(&g, DIST + 0x80 + 4, 0);
    assert!(!g.has_deliverable(0));
    wr32(&g, DIST, 0x13);
    assert!(g.has_deliverable(0));
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(40, LrState::Pending)]);
    assert!(!l[0].group1);
}

#[test]
fn priority_ordering_and_overflow() {
    let g = vgic(1, 64);
    linux_init(&g);
    wr32(&g, DIST + 0x100 + 4, 0xFFFF_FFFF);
    // SPIs 32..37 with priorities 0x50, 0x40, 0x30, 0x20, 0x10, 0x10.
    for (i, p) in [0x50u64, 0x40, 0x30, 0x20, 0x10, 0x10].iter().enumerate() {
        wr(&g, DIST + 0x400 + 32 + i as u64, AccessSize::Byte, *p);
        g.inject(0, 32 + i as u32);
    }
    assert_eq!(
        rd32(&g, DIST + 0x400 + 32),
        0x2030_4050,
        "byte writes seen by word reads"
    );
    let mut l = lrs(4);
    assert!(g.fill_lrs(0, &mut l).overflow);
    assert_eq!(
        listed(&l),
        [
            (36, LrState::Pending),
            (37, LrState::Pending),
            (35, LrState::Pending),
            (34, LrState::Pending)
        ]
    );
    // The guest takes 36 and 37 (active), finishes 35, leaves 34 pending.
    l[0].state = LrState::Active;
    l[1].state = LrState::Active;
    l[2].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    assert!(g.fill_lrs(0, &mut l).overflow, "five want four LRs");
    // Active ones first, then by priority.
    assert_eq!(
        listed(&l),
        [
            (36, LrState::Active),
            (37, LrState::Active),
            (34, LrState::Pending),
            (33, LrState::Pending)
        ]
    );
    for lr in l.iter_mut() {
        lr.state = LrState::Invalid;
    }
    g.sync_from_lrs(0, &l);
    assert!(!g.fill_lrs(0, &mut l).overflow);
    assert_eq!(listed(&l), [(32, LrState::Pending)]);
    // Zero list registers: nothing listed, everything overflows.
    g.inject(0, 33);
    g.sync_from_lrs(0, &l);
    assert!(g.fill_lrs(0, &mut []).overflow);
}

#[test]
fn sgi_targeting() {
    let g = vgic(6, 32); // cluster 0: vCPUs 0..3 (Aff0 0..3), cluster 1: vCPUs 4, 5
    linux_init(&g);
    // To vCPUs 1 and 3 in cluster 0, SGI 2.
    assert_eq!(g.write_sgi1r(0, (2 << 24) | 0b1010), set(&[1, 3]));
    // To vCPU 5 (Aff1 = 1, Aff0 = 1); plus a missing Aff0 = 7.
    assert_eq!(
        g.write_sgi1r(0, (1 << 24) | (1 << 16) | 0b1000_0010),
        set(&[5])
    );
    // IRM: everyone but the sender.
    assert_eq!(
        g.write_sgi1r(2, (1 << 40) | (4 << 24)),
        set(&[0, 1, 3, 4, 5])
    );
    // Non-existent cluster, range selector or Aff2/Aff3: nobody.
    assert_eq!(g.write_sgi1r(0, (5 << 16) | 1), VcpuSet::EMPTY);
    assert_eq!(g.write_sgi1r(0, (1 << 44) | 1), VcpuSet::EMPTY);
    assert_eq!(g.write_sgi1r(0, (1 << 32) | 1), VcpuSet::EMPTY);
    assert_eq!(g.write_sgi1r(0, (1 << 48) | 1), VcpuSet::EMPTY);
    // A sender may target itself.
    assert_eq!(g.write_sgi1r(0, 1), set(&[0]));
    // Pending bits land in the right banks.
    assert_eq!(rd32(&g, rdist(3) + SGI + 0x200), 1 << 2 | 1 << 4);
    assert_eq!(rd32(&g, rdist(2) + SGI + 0x200), 0);
    assert_eq!(rd32(&g, rdist(5) + SGI + 0x200), 1 << 1 | 1 << 4);
    let mut l = lrs(4);
    g.fill_lrs(3, &mut l);
    assert_eq!(listed(&l), [(2, LrState::Pending), (4, LrState::Pending)]);
    // Garbage values never panic.
    for v in [u64::MAX, 0, 0xFFFF_0000_0000_0000, 0x0000_FFFF_FFFF_FFFF] {
        let _ = g.write_sgi1r(0, v);
        let _ = g.write_sgi1r(usize::MAX, v);
    }
}

#[test]
fn spi_routing() {
    let g = vgic(6, 32);
    linux_init(&g);
    let irouter = |i: u64| DIST + 0x6000 + 8 * i;
    wr32(&g, DIST + 0x100 + 4, 0xF);
    // Route SPI 33 to vCPU 5 (0.0.1.1) with two 32-bit halves.
    wr32(&g, irouter(33), 0x101);
    wr32(&g, irouter(33) + 4, 0);
    assert_eq!(rd(&g, irouter(33), AccessSize::Double), 0x101);
    assert_eq!(g.inject(0, 33), set(&[5]));
    // Junk bits are not stored; Aff3 is.
    wr(&g, irouter(34), AccessSize::Double, u64::MAX);
    assert_eq!(rd(&g, irouter(34), AccessSize::Double), 0xFF_80FF_FFFF);
    assert_eq!(rd32(&g, irouter(34) + 4), 0xFF);
    // IRM = 1 goes to the first online vCPU.
    assert_eq!(g.inject(0, 34), set(&[0]));
    let mut l = lrs(4);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(34, LrState::Pending)]);
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    g.set_vcpu_online(0, false);
    assert_eq!(g.inject(0, 34), set(&[1]));
    // An affinity no vCPU has: pending, delivered nowhere.
    wr(&g, irouter(35), AccessSize::Double, 0x0700);
    assert_eq!(g.inject(0, 35), VcpuSet::EMPTY);
    assert_ne!(rd32(&g, DIST + 0x200 + 4) & (1 << 3), 0);
    // Retargeting it delivers it.
    assert_eq!(wr(&g, irouter(35), AccessSize::Double, 0x2), set(&[2]));
    g.fill_lrs(2, &mut l);
    assert_eq!(listed(&l), [(35, LrState::Pending)]);
    // Retargeted while listed on 2: it stays with 2 until synced, then moves to 3.
    assert_eq!(wr(&g, irouter(35), AccessSize::Double, 0x3), set(&[2]));
    let mut l3 = lrs(4);
    g.fill_lrs(3, &mut l3);
    assert!(listed(&l3).is_empty());
    assert_eq!(g.sync_from_lrs(2, &l), set(&[3]));
    g.fill_lrs(3, &mut l3);
    assert_eq!(listed(&l3), [(35, LrState::Pending)]);
    // IROUTER for INTIDs < 32 and beyond the SPIs: RAZ/WI.
    wr(&g, irouter(5), AccessSize::Double, 0x3);
    assert_eq!(rd(&g, irouter(5), AccessSize::Double), 0);
    wr(&g, irouter(100), AccessSize::Double, 0x3);
    assert_eq!(rd(&g, irouter(100), AccessSize::Double), 0);
}

#[test]
fn banked_distributor_registers_are_raz_wi() {
    let g = vgic(1, 32);
    wr32(&g, DIST + 0x100, 0xFFFF_FFFF);
    assert_eq!(rd32(&g, DIST + 0x100), 0);
    assert_eq!(rd32(&g, rdist(0) + SGI + 0x100), 0);
    wr32(&g, DIST + 0x400, 0xFFFF_FFFF);
    assert_eq!(rd32(&g, DIST + 0x400), 0);
    wr32(&g, DIST + 0xC04, 0xFFFF_FFFF);
    assert_eq!(rd32(&g, DIST + 0xC04), 0);
    // Registers past the last SPI.
    wr32(&g, DIST + 0x100 + 8, 0xFFFF_FFFF);
    assert_eq!(rd32(&g, DIST + 0x100 + 8), 0);
    // SGI config is fixed edge; PPI config is writable; IGRPMODR/NSACR are RAZ/WI.
    wr32(&g, rdist(0) + SGI + 0xC00, 0);
    assert_eq!(rd32(&g, rdist(0) + SGI + 0xC00), 0xAAAA_AAAA);
    assert_eq!(rd32(&g, rdist(0) + SGI + 0xC04), 0);
    wr32(&g, rdist(0) + SGI + 0xC04, 0xFFFF_FFFF);
    assert_eq!(rd32(&g, rdist(0) + SGI + 0xC04), 0xAAAA_AAAA);
    for off in [
        DIST + 0xD04,
        DIST + 0xE08,
        rdist(0) + SGI + 0xD00,
        rdist(0) + SGI + 0xE00,
    ] {
        wr32(&g, off, 0xFFFF_FFFF);
        assert_eq!(rd32(&g, off), 0);
    }
    // GICD_CTLR keeps ARE and DS set.
    wr32(&g, DIST, 0);
    assert_eq!(rd32(&g, DIST), 0x50);
    // LPI registers.
    wr(&g, rdist(0) + 0x70, AccessSize::Double, u64::MAX);
    assert_eq!(rd(&g, rdist(0) + 0x70, AccessSize::Double), 0);
    wr32(&g, rdist(0), 1);
    assert_eq!(rd32(&g, rdist(0)), 0, "EnableLPIs RAZ/WI, RWP 0");
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
        a(DIST + 0x6104, AccessSize::Double, None),
        Err(VgicFault::Unaligned)
    );
    assert_eq!(a(DIST, AccessSize::Byte, None), Err(VgicFault::BadSize));
    assert_eq!(
        a(DIST, AccessSize::Double, Some(1)),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(DIST + 0x100, AccessSize::Half, None),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(DIST + 0x400, AccessSize::Half, None),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(DIST + 0x6100, AccessSize::Byte, None),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(rdist(1) + 0x10, AccessSize::Double, None),
        Err(VgicFault::BadSize)
    );
    assert_eq!(
        a(rdist(1) + 0xC, AccessSize::Double, None),
        Err(VgicFault::Unaligned)
    );
    // Reserved space: RAZ/WI at any aligned size.
    assert_eq!(
        a(DIST + 0x5000, AccessSize::Byte, Some(7)).map(|o| o.read),
        Ok(None)
    );
    assert_eq!(
        a(DIST + 0x5000, AccessSize::Double, None).map(|o| o.read),
        Ok(Some(0))
    );
    // Bad vCPU index.
    assert_eq!(
        access(&g, 2, DIST, AccessSize::Word, None),
        Err(VgicFault::BadVcpu)
    );
    // Not ours.
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
    assert!(foreign(DIST + DIST_SIZE).is_none());
    assert!(foreign(REDIST - 4).is_none());
    assert!(foreign(REDIST + 2 * REDIST_FRAME_SIZE).is_none());
    assert!(foreign(0).is_none());
    assert!(foreign(u64::MAX - 3).is_none());
    assert!(foreign(REDIST + 2 * REDIST_FRAME_SIZE - 4).is_some());
    // Bad vCPU indices elsewhere are ignored.
    assert_eq!(g.inject(7, 3), VcpuSet::EMPTY);
    assert_eq!(g.inject(0, 5000), VcpuSet::EMPTY);
    assert_eq!(g.set_level(3, true), VcpuSet::EMPTY);
    assert_eq!(g.set_level(2000, true), VcpuSet::EMPTY);
    assert_eq!(g.set_private_level(9, 27, true), VcpuSet::EMPTY);
    assert_eq!(g.set_private_level(0, 3, true), VcpuSet::EMPTY);
    assert!(!g.has_deliverable(99));
    let mut l = lrs(2);
    assert!(!g.fill_lrs(99, &mut l).overflow);
    assert_eq!(g.sync_from_lrs(99, &l), VcpuSet::EMPTY);
    g.reset_vcpu(99);
    assert_eq!(g.set_vcpu_online(99, false), VcpuSet::EMPTY);
}

#[test]
fn private_level_interrupt_and_reset() {
    let g = vgic(2, 32);
    linux_init(&g);
    assert_eq!(g.set_private_level(1, 27, true), set(&[1]));
    assert!(g.has_deliverable(1));
    let mut l = lrs(2);
    g.fill_lrs(1, &mut l);
    assert_eq!(listed(&l), [(27, LrState::Pending)]);
    g.reset_vcpu(1);
    assert!(!g.has_deliverable(1), "disabled after reset");
    assert_ne!(rd32(&g, rdist(1) + 0x14) & 0b10, 0, "asleep after reset");
    assert_eq!(rd32(&g, rdist(1) + SGI + 0x100), 0);
    assert_ne!(rd32(&g, rdist(0) + SGI + 0x100), 0, "other vCPUs untouched");
    // Syncing stale LRs after a reset is harmless.
    assert_eq!(g.sync_from_lrs(1, &l), VcpuSet::EMPTY);
    g.fill_lrs(1, &mut l);
    assert!(listed(&l).is_empty());
}

#[test]
fn fill_without_sync_keeps_state() {
    let g = vgic(1, 32);
    linux_init(&g);
    g.inject(0, 27);
    let mut l = lrs(2);
    g.fill_lrs(0, &mut l);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(27, LrState::Pending)]);
}

#[test]
fn vcpu_set() {
    let mut s = VcpuSet::EMPTY;
    assert!(s.is_empty());
    s.insert(0);
    s.insert(127);
    s.insert(128);
    assert!(s.contains(127) && s.contains(0) && !s.contains(128) && !s.contains(5000));
    assert_eq!(s.iter().collect::<Vec<_>>(), [0, 127]);
    assert_eq!(s.union(set(&[3])).bits(), 1 | 1 << 3 | 1 << 127);
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
    Inject(usize, u32),
    Level(u32, bool),
    Sgi(usize, u64),
    Run {
        vcpu: usize,
        n: usize,
        ack: u8,
    },
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..4, 0u64..DIST_SIZE, any_size(), any::<Option<u64>>()).prop_map(
            |(vcpu, o, size, write)| Op::Mmio {
                vcpu,
                addr: DIST + (o & !3),
                size,
                write
            }
        ),
        (
            0usize..4,
            0u64..3 * REDIST_FRAME_SIZE,
            any_size(),
            any::<Option<u64>>()
        )
            .prop_map(|(vcpu, o, size, write)| Op::Mmio {
                vcpu,
                addr: REDIST + o,
                size,
                write
            }),
        (0usize..4, 0u32..200).prop_map(|(v, i)| Op::Inject(v, i)),
        (0u32..200, any::<bool>()).prop_map(|(i, h)| Op::Level(i, h)),
        (0usize..4, any::<u64>()).prop_map(|(v, x)| Op::Sgi(v, x)),
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
                    if let Some(Ok(out)) = g.mmio(vcpu, MmioAccess { addr: GuestPhysAddr::new(addr), size, write }) {
                        if let Some(v) = out.read {
                            prop_assert_eq!(v & !size.mask(), 0);
                        }
                        prop_assert!(out.kick.bits() >> 3 == 0);
                    }
                }
                Op::Inject(v, i) => { g.inject(v, i); }
                Op::Level(i, h) => { g.set_level(i, h); }
                Op::Sgi(v, x) => { g.write_sgi1r(v, x); }
                Op::Run { vcpu, n, ack } => {
                    let v = vcpu % 3;
                    // Pretend the guest changed the states, then do an exit/entry.
                    guest_acts(&mut held[v], ack, LrState::Pending);
                    g.sync_from_lrs(v, &held[v]);
                    let mut fresh = lrs(n);
                    g.fill_lrs(v, &mut fresh);
                    let ids: Vec<u32> = fresh.iter().filter(|l| l.state != LrState::Invalid).map(|l| l.intid).collect();
                    for (i, id) in ids.iter().enumerate() {
                        prop_assert!(*id < 96);
                        prop_assert!(!ids[..i].contains(id), "listed twice");
                    }
                    held[v] = fresh;
                }
            }
        }
        // No SPI is listed on two vCPUs at once.
        let mut spis = Vec::new();
        for h in &held {
            for l in h.iter().filter(|l| l.state != LrState::Invalid && l.intid >= 32) {
                prop_assert!(!spis.contains(&l.intid));
                spis.push(l.intid);
            }
        }
    }
}

/// Ops for the resync equivalence check: mostly the upcall PPI (31, fixed edge) and its
/// enable bit, with some other traffic so the short cut's conditions fail at times.
fn resync_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..2).prop_map(|v| Op::Inject(v, 31)),
        1 => (0usize..2, 16u32..64).prop_map(|(v, i)| Op::Inject(v, i)),
        1 => (16u32..64, any::<bool>()).prop_map(|(i, h)| Op::Level(i, h)),
        // ISENABLER0 / ICENABLER0 / ISPENDR0 / ICPENDR0 / ISACTIVER0 / ICACTIVER0 of
        // vCPU 0 or 1, for PPI 31 or 27, and GICD_CTLR.
        1 => (0usize..2, 0u64..6, prop_oneof![Just(1u64 << 31), Just(1u64 << 27)])
            .prop_map(|(vcpu, r, bit)| Op::Mmio {
                vcpu,
                addr: REDIST + vcpu as u64 * REDIST_FRAME_SIZE + SGI + 0x100 + r * 0x80,
                size: AccessSize::Word,
                write: Some(bit),
            }),
        1 => (0u64..4).prop_map(|ctlr| Op::Mmio {
            vcpu: 0,
            addr: DIST,
            size: AccessSize::Word,
            write: Some(ctlr | 1 << 4),
        }),
        // n = 1: the vCPU raised the upcall for itself just before (the fast path's fused
        // injection).
        6 => (0usize..2, 0usize..2, any::<u8>()).prop_map(|(vcpu, n, ack)| Op::Run { vcpu, n, ack }),
    ]
}

/// Everything a guest can read about the private interrupts of `vcpu`.
fn private_view(g: &Vgic, vcpu: usize) -> Vec<u64> {
    (0..6)
        .map(|r| rd32(g, rdist(vcpu) + SGI + 0x100 + r * 0x80))
        .collect()
}

proptest! {
    #[test]
    fn resync_chooses_what_sync_then_fill_chooses(
        ops in proptest::collection::vec(resync_op(), 1..200),
        lr_count in 1usize..4,
    ) {
        // Two identical vGICs: one driven the run loop's way (sync, then fill), the other
        // the fast path's way (resync; for the upcall, `relist_upcall` first when the last
        // fill listed one interrupt and nothing overflowed).
        let slow = vgic(2, 64);
        let fast = vgic(2, 64);
        for g in [&slow, &fast] {
            linux_init(g);
            g.fix_edge_triggered(31);
            wr32(g, rdist(0) + SGI + 0x100, 1 << 31);
            wr32(g, rdist(1) + SGI + 0x100, 1 << 31);
        }
        let mut held = [lrs(lr_count), lrs(lr_count)];
        let mut listed = [0usize; 2];
        let mut overflow = [false; 2];
        for op in ops {
            match op {
                Op::Mmio { vcpu, addr, size, write } => {
                    let a = MmioAccess { addr: GuestPhysAddr::new(addr), size, write };
                    prop_assert_eq!(slow.mmio(vcpu, a), fast.mmio(vcpu, a));
                }
                Op::Inject(v, i) => prop_assert_eq!(slow.inject(v, i), fast.inject(v, i)),
                Op::Level(i, h) => prop_assert_eq!(slow.set_level(i, h), fast.set_level(i, h)),
                Op::Sgi(..) => {}
                Op::Run { vcpu, n, ack } => {
                    // The guest acknowledges, completes or leaves what is listed.
                    guest_acts(&mut held[vcpu], ack, LrState::PendingActive);
                    let inject = (n == 1).then_some(31);
                    if let Some(intid) = inject {
                        slow.inject(vcpu, intid);
                    }
                    let moved = slow.sync_from_lrs(vcpu, &held[vcpu][..listed[vcpu]]);
                    let mut chosen = lrs(lr_count);
                    let out = slow.fill_lrs(vcpu, &mut chosen);
                    let mut again = held[vcpu].clone();
                    let brief = (inject.is_some() && listed[vcpu] == 1 && !overflow[vcpu])
                        .then(|| fast.relist_upcall(vcpu, &mut again[0], 31))
                        .flatten();
                    let (out2, moved2) = match brief {
                        Some(out2) => (out2, VcpuSet::EMPTY),
                        None => fast.resync_lrs(vcpu, &mut again, listed[vcpu], inject),
                    };
                    prop_assert_eq!(&chosen, &again);
                    prop_assert_eq!((out.listed, out.overflow), (out2.listed, out2.overflow));
                    prop_assert_eq!(moved, moved2);
                    held[vcpu] = chosen;
                    listed[vcpu] = out.listed;
                    overflow[vcpu] = out.overflow;
                }
            }
            for v in 0..2 {
                prop_assert_eq!(slow.has_deliverable(v), fast.has_deliverable(v));
                prop_assert_eq!(private_view(&slow, v), private_view(&fast, v));
            }
        }
    }
}

#[test]
fn resync_relists_the_upcall_after_the_guest_completed_it() {
    let g = vgic(1, 64);
    linux_init(&g);
    g.fix_edge_triggered(31);
    wr32(&g, rdist(0) + SGI + 0x100, 1 << 31);
    g.inject(0, 31);
    let mut l = lrs(4);
    let out = g.fill_lrs(0, &mut l);
    assert_eq!(out.listed, 1);
    // The guest handled it (LR empty), then sent another event: pending again.
    l[0].state = LrState::Invalid;
    g.inject(0, 31);
    let (out, kick) = g.resync_lrs(0, &mut l, 1, None);
    assert_eq!((out.listed, kick), (1, VcpuSet::EMPTY));
    assert_eq!(listed(&l), [(31, LrState::Pending)]);
    // Handled again; the next event's injection comes with the refresh itself.
    l[0].state = LrState::Invalid;
    let (out, kick) = g.resync_lrs(0, &mut l, 1, Some(31));
    assert_eq!((out.listed, kick), (1, VcpuSet::EMPTY));
    assert_eq!(listed(&l), [(31, LrState::Pending)]);
    // Handled again, nothing new: nothing listed, nothing deliverable.
    l[0].state = LrState::Invalid;
    let (out, _) = g.resync_lrs(0, &mut l, 1, None);
    assert_eq!(out.listed, 0);
    assert_eq!(listed(&l), []);
    assert!(!g.has_deliverable(0));
}

#[test]
fn relist_upcall_declines_and_changes_nothing_when_more_is_pending() {
    let g = vgic(1, 64);
    linux_init(&g);
    g.fix_edge_triggered(31);
    wr32(&g, rdist(0) + SGI + 0x100, (1 << 31) | (1 << 30));
    g.inject(0, 31);
    let mut l = lrs(4);
    assert_eq!(g.fill_lrs(0, &mut l).listed, 1);
    // The guest completed the upcall; meanwhile the timer PPI became pending too.
    l[0].state = LrState::Invalid;
    g.inject(0, 30);
    let before = private_view(&g, 0);
    let lr0 = l[0];
    assert_eq!(g.relist_upcall(0, &mut l[0], 31), None);
    assert_eq!((private_view(&g, 0), l[0]), (before, lr0));
    // The general refresh lists both.
    let (out, _) = g.resync_lrs(0, &mut l, 1, Some(31));
    assert_eq!(out.listed, 2);
}

#[test]
fn shareable_between_physical_cpus() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Vgic>();
}

#[test]
fn vcpu_set_iterates_exactly_its_members_in_order() {
    let mut s = VcpuSet::EMPTY;
    assert_eq!(s.iter().count(), 0);
    for i in [127, 0, 64, 3, 63, 200] {
        s.insert(i);
    }
    assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 3, 63, 64, 127]);
    assert!(s.contains(127) && !s.contains(200));
}

#[test]
fn a_fixed_edge_ppi_needs_no_eoi_notification_and_ignores_icfgr_writes() {
    let g = vgic(2, 64);
    linux_init(&g);
    g.fix_edge_triggered(31);
    // The guest (Linux configures the PPI from its DT flags) tries to make it level.
    wr32(&g, rdist(0) + SGI + 0xC04, 0);
    assert_ne!(
        rd32(&g, rdist(0) + SGI + 0xC04) & (2 << 30),
        0,
        "still edge"
    );
    wr32(&g, rdist(0) + SGI + 0x100, 1 << 31);
    assert_eq!(g.inject(0, 31), set(&[0]));
    let mut l = lrs(4);
    g.fill_lrs(0, &mut l);
    assert_eq!(listed(&l), [(31, LrState::Pending)]);
    assert!(!l[0].eoi_notify, "no maintenance interrupt on its EOI");
    // Acknowledged and completed between two exits: the LR reads back invalid.
    l[0].state = LrState::Invalid;
    g.sync_from_lrs(0, &l);
    assert!(!g.has_deliverable(0));
    // A reset vCPU keeps the fixed configuration; other PPIs stay configurable.
    g.reset_vcpu(0);
    assert_ne!(rd32(&g, rdist(0) + SGI + 0xC04) & (2 << 30), 0);
    wr32(&g, rdist(0) + SGI + 0xC04, 2 << 22);
    assert_ne!(
        rd32(&g, rdist(0) + SGI + 0xC04) & (2 << 22),
        0,
        "PPI 27 configurable"
    );
}

#[test]
fn vcpu_sets_iterate_their_members_in_order() {
    let s = set(&[127, 0, 5, 64]);
    assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 5, 64, 127]);
    assert_eq!(VcpuSet::EMPTY.iter().count(), 0);
    let mut big = VcpuSet::EMPTY;
    big.insert(MAX_VCPUS);
    assert!(big.is_empty(), "out-of-range members are ignored");
}

#[test]
fn vcpu_set_without_drops_one_member_only() {
    assert_eq!(set(&[0, 3, 5]).without(3), set(&[0, 5]));
    assert_eq!(set(&[0, 5]).without(3), set(&[0, 5]), "absent: unchanged");
    assert_eq!(set(&[127]).without(127), VcpuSet::EMPTY);
    assert_eq!(
        set(&[1]).without(usize::MAX),
        set(&[1]),
        "out of range: unchanged"
    );
}
