//! Physical interrupts of devices a domain owns. A passed-through SPI arrives at Mica,
//! is masked at the distributor and made pending in the owner's virtual GIC; once the
//! guest has handled it (neither pending nor active any more) it is unmasked again, so a
//! level-triggered device cannot storm while its guest is not running.

use crate::world::{self, Domain};
use crate::{gic, run};
use core::sync::atomic::{AtomicU16, AtomicU64, Ordering};

/// INTIDs Mica tracks (the GIC architecture's SPI range ends below 1020).
const INTIDS: usize = 1024;
const NO_OWNER: u16 = u16::MAX;

static OWNER: [AtomicU16; INTIDS] = [const { AtomicU16::new(NO_OWNER) }; INTIDS];
/// Masked physical SPIs waiting for their guest to finish with them.
static IN_FLIGHT: [AtomicU64; INTIDS / 64] = [const { AtomicU64::new(0) }; INTIDS / 64];

/// Gives SPI `intid` to `domain`. Fails if another domain owns it.
pub fn assign(intid: u32, domain: u16) -> Result<(), u16> {
    let slot = OWNER.get(intid as usize).ok_or(NO_OWNER)?;
    match slot.compare_exchange(NO_OWNER, domain, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(()),
        Err(owner) if owner == domain => Ok(()),
        Err(owner) => Err(owner),
    }
}

/// Releases every SPI of `domain` (it is gone) and leaves them masked.
pub fn release(domain: u16) {
    for (intid, slot) in OWNER.iter().enumerate() {
        if slot.load(Ordering::Acquire) == domain {
            gic::set_spi_enabled(intid as u32, false);
            clear_in_flight(intid as u32);
            slot.store(NO_OWNER, Ordering::Release);
        }
    }
}

/// Whether `intid` is a passed-through interrupt of `domain`.
pub fn owned_by(intid: u32, domain: u16) -> bool {
    OWNER
        .get(intid as usize)
        .is_some_and(|o| o.load(Ordering::Relaxed) == domain)
}

fn clear_in_flight(intid: u32) -> bool {
    let (word, bit) = (intid as usize / 64, 1u64 << (intid % 64));
    IN_FLIGHT[word].fetch_and(!bit, Ordering::AcqRel) & bit != 0
}

/// A physical interrupt arrived. Returns false if it is not a passed-through one.
pub fn on_physical(intid: u32) -> bool {
    let Some(owner) = OWNER.get(intid as usize).map(|o| o.load(Ordering::Acquire)) else {
        return false;
    };
    if owner == NO_OWNER {
        return false;
    }
    gic::set_spi_enabled(intid, false);
    let Some(dom) = world::domain(owner) else {
        return true;
    };
    IN_FLIGHT[intid as usize / 64].fetch_or(1 << (intid % 64), Ordering::AcqRel);
    run::kick(&dom, dom.vgic.inject(0, intid));
    true
}

/// After a vCPU of `dom` ran: unmask the SPIs its guest has finished with.
pub fn after_guest_ran(dom: &Domain) {
    for (word, bits) in IN_FLIGHT.iter().enumerate() {
        let mut pending = bits.load(Ordering::Acquire);
        while pending != 0 {
            let intid = (word * 64) as u32 + pending.trailing_zeros();
            pending &= pending - 1;
            if owned_by(intid, dom.id) && !dom.vgic.spi_in_service(intid) && clear_in_flight(intid)
            {
                gic::set_spi_enabled(intid, true);
            }
        }
    }
}
