//! `shared_info`, `vcpu_info` and the runstate area (`xen.h`, `vcpu.h`; Arm layout, where
//! `arch_vcpu_info` and `arch_shared_info` are empty and `xen_ulong_t` is 64-bit).

use super::wire::wire_struct;
use core::mem::offset_of;

/// vcpu_info slots inside shared_info on Arm (`XEN_LEGACY_MAX_VCPUS`). Every vCPU,
/// including vCPU 0, should register its own vcpu_info with VCPUOP_register_vcpu_info.
pub const XEN_LEGACY_MAX_VCPUS: usize = 1;
/// Bits in one `xen_ulong_t` word of the 2-level event bitmaps.
pub const BITS_PER_EVTCHN_WORD: u32 = 64;
/// Ports of the 2-level event-channel ABI with a 64-bit `xen_ulong_t` (64 words of 64 bits).
pub const EVTCHN_2L_NR_CHANNELS: u32 = 4096;

wire_struct! {
    /// Per-vCPU time record. Xen on Arm never updates it (guests use the generic timer).
    pub struct VcpuTimeInfo: 32 {
        /// Seqlock: odd while an update is in progress.
        pub version: u32 = 0,
        /// Padding.
        pub pad0: u32 = 4,
        /// TSC at the last update (x86).
        pub tsc_timestamp: u64 = 8,
        /// Nanoseconds since boot at the last update.
        pub system_time: u64 = 16,
        /// TSC to ns multiplier (x86).
        pub tsc_to_system_mul: u32 = 24,
        /// TSC shift (x86).
        pub tsc_shift: i8 = 28,
        /// XEN_PVCLOCK_* flags.
        pub flags: u8 = 29,
        /// Padding.
        pub pad1: [u8; 2] = 30,
    }
}

wire_struct! {
    /// Per-vCPU event state, 48 bytes on Arm.
    pub struct VcpuInfo: 48 {
        /// Set by the hypervisor when an event is pending for this vCPU; cleared by the guest.
        pub evtchn_upcall_pending: u8 = 0,
        /// Unused on Arm (masking is done in the GIC); called `pad0` in Xen's Arm headers.
        pub evtchn_upcall_mask: u8 = 1,
        /// 2-level selector: bit i set means word i of `evtchn_pending` may have work.
        pub evtchn_pending_sel: u64 = 8,
        /// Time record (not maintained on Arm).
        pub time: VcpuTimeInfo = 16,
    }
}

/// Offset of `evtchn_upcall_pending` in a vcpu_info.
pub const VCPU_INFO_UPCALL_PENDING: usize = offset_of!(VcpuInfo, evtchn_upcall_pending);
/// Offset of `evtchn_pending_sel` in a vcpu_info.
pub const VCPU_INFO_PENDING_SEL: usize = offset_of!(VcpuInfo, evtchn_pending_sel);

wire_struct! {
    /// The shared-info page contents (1088 bytes at offset 0 of a 4 KiB page).
    pub struct SharedInfo: 1088 {
        /// Legacy vcpu_info slot for vCPU 0, used until the guest registers its own.
        pub vcpu_info: [VcpuInfo; 1] = 0,
        /// 2-level pending bitmap: port p is bit p%64 of word p/64.
        pub evtchn_pending: [u64; 64] = 48,
        /// 2-level mask bitmap, written by the guest.
        pub evtchn_mask: [u64; 64] = 560,
        /// Wallclock seqlock (odd while updating).
        pub wc_version: u32 = 1072,
        /// Wallclock seconds at system time 0 (low 32 bits).
        pub wc_sec: u32 = 1076,
        /// Wallclock nanoseconds.
        pub wc_nsec: u32 = 1080,
        /// Wallclock seconds, high 32 bits.
        pub wc_sec_hi: u32 = 1084,
    }
}

/// Offset of `vcpu_info[0]` in shared_info.
pub const SHARED_INFO_VCPU_INFO: usize = offset_of!(SharedInfo, vcpu_info);
/// Offset of the pending bitmap in shared_info.
pub const SHARED_INFO_EVTCHN_PENDING: usize = offset_of!(SharedInfo, evtchn_pending);
/// Offset of the mask bitmap in shared_info.
pub const SHARED_INFO_EVTCHN_MASK: usize = offset_of!(SharedInfo, evtchn_mask);
/// Offset of `wc_version` in shared_info.
pub const SHARED_INFO_WC_VERSION: usize = offset_of!(SharedInfo, wc_version);

/// vCPU is running.
pub const RUNSTATE_RUNNING: i32 = 0;
/// vCPU is runnable but not running.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// vCPU is blocked.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// vCPU is offline.
pub const RUNSTATE_OFFLINE: i32 = 3;
/// Set in `state_entry_time` while the hypervisor updates the area (with the vm_assist).
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

wire_struct! {
    /// Per-vCPU run-state accounting (48 bytes).
    pub struct VcpuRunstateInfo: 48 {
        /// One of `RUNSTATE_*`.
        pub state: i32 = 0,
        /// System time at which `state` was entered.
        pub state_entry_time: u64 = 8,
        /// Nanoseconds spent in each state.
        pub time: [u64; 4] = 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::wire::Wire;

    #[test]
    fn layouts() {
        assert_eq!(core::mem::size_of::<SharedInfo>(), 1088);
        assert_eq!(SHARED_INFO_EVTCHN_PENDING, 48);
        assert_eq!(SHARED_INFO_EVTCHN_MASK, 560);
        assert_eq!(SHARED_INFO_WC_VERSION, 1072);
        assert_eq!(VCPU_INFO_PENDING_SEL, 8);
        assert_eq!(core::mem::size_of::<VcpuInfo>(), 48);
        assert_eq!(core::mem::size_of::<VcpuRunstateInfo>(), 48);
        assert_eq!(EVTCHN_2L_NR_CHANNELS, 64 * BITS_PER_EVTCHN_WORD);
    }

    #[test]
    fn shared_info_codec_places_fields() {
        let mut s = SharedInfo::default();
        s.vcpu_info[0].evtchn_upcall_pending = 1;
        s.vcpu_info[0].evtchn_pending_sel = 0x8000_0000_0000_0001;
        s.evtchn_pending[1] = 0xAA;
        s.evtchn_mask[63] = u64::MAX;
        s.wc_sec_hi = 7;
        let mut page = [0xFFu8; 4096];
        s.encode(&mut page).unwrap();
        assert_eq!(page[0], 1);
        assert_eq!(page[1..8], [0; 7]); // padding zeroed
        assert_eq!(page[8], 1);
        assert_eq!(page[15], 0x80);
        assert_eq!(page[48 + 8], 0xAA);
        assert_eq!(page[560 + 63 * 8..1072], [0xFF; 8]);
        assert_eq!(page[1084], 7);
        assert_eq!(page[1088], 0xFF); // past the struct: untouched
        assert_eq!(SharedInfo::decode(&page), Some(s));
    }
}
