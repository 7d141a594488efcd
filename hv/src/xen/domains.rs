//! The Xen domains by id. Every hypercall looks up its caller (and an event its peer), so
//! this is a slot per id rather than a search tree: Mica numbers domains from 0 upwards,
//! so the table is as long as the domain list.

use super::XenDomain;
use alloc::boxed::Box;
use alloc::vec::Vec;
use mica_guest_abi::xen::DomId;

/// Xen domains indexed by their id.
#[derive(Debug, Default)]
pub(crate) struct DomainTable {
    /// Slot `id` holds domain `id`. Boxed so an unused slot costs a pointer.
    slots: Vec<Option<Box<XenDomain>>>,
}

impl DomainTable {
    pub fn get(&self, id: &DomId) -> Option<&XenDomain> {
        self.slots.get(usize::from(*id))?.as_deref()
    }

    pub fn get_mut(&mut self, id: &DomId) -> Option<&mut XenDomain> {
        self.slots.get_mut(usize::from(*id))?.as_deref_mut()
    }

    pub fn contains_key(&self, id: &DomId) -> bool {
        self.get(id).is_some()
    }

    /// Adds (or replaces) domain `id`.
    pub fn insert(&mut self, id: DomId, dom: XenDomain) {
        let index = usize::from(id);
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(Box::new(dom));
    }

    /// Removes domain `id`; the table shrinks past the highest id left.
    pub fn remove(&mut self, id: &DomId) -> Option<XenDomain> {
        let dom = self.slots.get_mut(usize::from(*id))?.take();
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        dom.map(|d| *d)
    }

    /// Every domain with its id, lowest id first.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (DomId, &mut XenDomain)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(id, slot)| Some((id as DomId, slot.as_deref_mut()?)))
    }

    /// Every domain's id, lowest first.
    pub fn keys(&self) -> impl Iterator<Item = DomId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| slot.as_ref().map(|_| id as DomId))
    }
}
