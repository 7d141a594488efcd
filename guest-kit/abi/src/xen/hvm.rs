//! `hvm_op` sub-operations and HVM parameters (`hvm/hvm_op.h`, `hvm/params.h`).

use super::wire::wire_struct;
use super::DomId;

/// Set an HVM parameter (toolstack only on Arm).
pub const HVMOP_SET_PARAM: u64 = 0;
/// Read an HVM parameter.
pub const HVMOP_GET_PARAM: u64 = 1;
/// Guest request for a VM event (monitor).
pub const HVMOP_GUEST_REQUEST_VM_EVENT: u64 = 24;

/// How events are delivered. On Arm: `TYPE_PPI << 56 | flags << 8 | intid`.
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// Guest frame of the xenstore ring page (`u64::MAX` = "late init", wait for an event).
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// Event channel of the xenstore ring.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
/// Guest frame of the PV console ring page.
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// Event channel of the PV console.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// Monitor ring frame.
pub const HVM_PARAM_MONITOR_RING_PFN: u32 = 28;
/// Number of HVM parameters Xen defines (indices are below this).
pub const HVM_NR_PARAMS: u32 = 39;

/// CALLBACK_IRQ type field (bits 63:56): the upcall is a PPI.
pub const HVM_PARAM_CALLBACK_TYPE_PPI: u64 = 2;
/// CALLBACK_IRQ type field on x86: the upcall is an interrupt vector (low 8 bits).
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u64 = 2;
/// Shift of the CALLBACK_IRQ type field.
pub const HVM_PARAM_CALLBACK_TYPE_SHIFT: u32 = 56;
/// CALLBACK_IRQ flag: edge-triggered (else level).
pub const HVM_PARAM_CALLBACK_PPI_EDGE: u64 = 1 << 8;
/// CALLBACK_IRQ flag: active-low (else active-high).
pub const HVM_PARAM_CALLBACK_PPI_ACTIVE_LOW: u64 = 1 << 9;

/// The CALLBACK_IRQ value Xen stores for a level, active-low upcall PPI `intid`.
pub const fn callback_irq_ppi(intid: u32) -> u64 {
    (HVM_PARAM_CALLBACK_TYPE_PPI << HVM_PARAM_CALLBACK_TYPE_SHIFT)
        | HVM_PARAM_CALLBACK_PPI_ACTIVE_LOW
        | (intid as u64 & 0xff)
}

wire_struct! {
    /// HVMOP_{get,set}_param argument (16 bytes).
    pub struct HvmParam: 16 {
        /// Domain (DOMID_SELF).
        pub domid: DomId = 0,
        /// Padding.
        pub pad: u16 = 2,
        /// One of `HVM_PARAM_*`.
        pub index: u32 = 4,
        /// Value (IN for set, OUT for get).
        pub value: u64 = 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_irq_encoding() {
        let v = callback_irq_ppi(31);
        assert_eq!(v >> 56, 2);
        assert_eq!(v & 0xff, 31);
        assert_eq!(v & HVM_PARAM_CALLBACK_PPI_EDGE, 0);
        assert_ne!(v & HVM_PARAM_CALLBACK_PPI_ACTIVE_LOW, 0);
    }
}
