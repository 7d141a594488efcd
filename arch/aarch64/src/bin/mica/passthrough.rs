//! Physical interrupts of devices a domain owns. A passed-through SPI arrives at Mica, which
//! drops its running priority but leaves it active, and makes it pending in the owner's
//! virtual GIC. The vGIC lists it with the hardware bit: when the guest deactivates the
//! virtual interrupt, the GIC deactivates the physical one, so the device cannot interrupt
//! again before its guest is done with it, wherever that guest's vCPU runs.

use crate::world;
use crate::{gic, run};
use core::sync::atomic::{AtomicU16, Ordering};

/// INTIDs Mica tracks (the GIC architecture's SPI range ends below 1020).
const INTIDS: usize = 1024;
const NO_OWNER: u16 = u16::MAX;

/// Each SPI's owner, stored complemented (`stored`) so that "no owner" is zero and the table
/// sits in .bss instead of taking 2 KiB of the image.
static OWNER: [AtomicU16; INTIDS] = [const { AtomicU16::new(stored(NO_OWNER)) }; INTIDS];

/// The value OWNER holds for `domain` (and, being its own inverse, the domain a value names).
const fn stored(domain: u16) -> u16 {
    !domain
}

/// Gives SPI `intid` to `domain`. Fails if another domain owns it.
pub fn assign(intid: u32, domain: u16) -> Result<(), u16> {
    let slot = OWNER.get(intid as usize).ok_or(NO_OWNER)?;
    let (free, mine) = (stored(NO_OWNER), stored(domain));
    match slot.compare_exchange(free, mine, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(()),
        Err(owner) if owner == mine => Ok(()),
        Err(owner) => Err(stored(owner)),
    }
}

/// The SPIs `domain` owns.
pub fn owned(domain: u16) -> impl Iterator<Item = u32> {
    OWNER
        .iter()
        .enumerate()
        .filter(move |(_, o)| o.load(Ordering::Acquire) == stored(domain))
        .map(|(intid, _)| intid as u32)
}

/// Releases every SPI of `domain` (it is gone): masked, and deactivated in case its guest
/// died inside the handler.
pub fn release(domain: u16) {
    for (intid, slot) in OWNER.iter().enumerate() {
        if slot.load(Ordering::Acquire) == stored(domain) {
            let intid = intid as u32;
            gic::set_spi_enabled(intid, false);
            gic::clear_spi_active(intid);
            slot.store(stored(NO_OWNER), Ordering::Release);
        }
    }
}

/// A physical interrupt arrived (acknowledged, not yet ended). Returns false if it is not a
/// passed-through one; otherwise it has been handed to its guest and only its priority must
/// be dropped.
pub fn on_physical(intid: u32) -> bool {
    let Some(owner) = OWNER
        .get(intid as usize)
        .map(|o| stored(o.load(Ordering::Acquire)))
    else {
        return false;
    };
    if owner == NO_OWNER {
        return false;
    }
    match world::domain(owner) {
        Some(dom) => run::kick(&dom, dom.vgic.inject(0, intid)),
        // Its domain is going away: end it here and keep it quiet.
        None => {
            gic::set_spi_enabled(intid, false);
            gic::clear_spi_active(intid);
        }
    }
    true
}
