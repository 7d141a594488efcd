//! Xen's per-vCPU time record (`vcpu_time_info`, the "pvclock"): the hypervisor publishes a
//! (counter, nanoseconds) pair and a scale so the guest turns its own counter reads (the TSC
//! on x86) into system time without a trap. The record is the last 32 bytes of a vcpu_info on
//! both architectures; only x86 guests use it today.

use super::{GuestArch, Xen, XenEnv};
use crate::addr::GuestPhysAddr;
use mica_guest_abi::xen::DomId;

/// Bytes of `vcpu_time_info`: version, pad, tsc_timestamp, system_time, tsc_to_system_mul,
/// tsc_shift, flags, pad.
pub const VCPU_TIME_SIZE: usize = 32;
/// `flags`: the counter is synchronized across vCPUs and never goes backwards.
pub const PVCLOCK_TSC_STABLE: u8 = 1 << 0;
const NS_PER_SEC: u64 = 1_000_000_000;

/// One snapshot of the clock for a vCPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VcpuTime {
    /// Counter value at `system_time_ns`.
    pub tsc_timestamp: u64,
    /// System time (nanoseconds since the hypervisor started) at `tsc_timestamp`.
    pub system_time_ns: u64,
    /// `ns = ((delta << shift) * mul) >> 32` (a right shift when `shift` is negative).
    pub mul: u32,
    /// See `mul`.
    pub shift: i8,
    /// `PVCLOCK_*` flags.
    pub flags: u8,
}

impl VcpuTime {
    /// The record as the guest reads it, with `version` (even: not being updated).
    pub fn encode(&self, version: u32) -> [u8; VCPU_TIME_SIZE] {
        let mut b = [0u8; VCPU_TIME_SIZE];
        b[0..4].copy_from_slice(&version.to_le_bytes());
        b[8..16].copy_from_slice(&self.tsc_timestamp.to_le_bytes());
        b[16..24].copy_from_slice(&self.system_time_ns.to_le_bytes());
        b[24..28].copy_from_slice(&self.mul.to_le_bytes());
        b[28] = self.shift as u8;
        b[29] = self.flags;
        b
    }
}

/// The (mul, shift) pair that converts ticks of a `counter_hz` counter to nanoseconds, the
/// way Xen's `vcpu_time_info` wants it: `mul` is a 32.32 fraction below 1, `shift` moves the
/// tick delta first. `None` for a zero or absurd (above 2^62 Hz) frequency.
pub fn scale(counter_hz: u64) -> Option<(u32, i8)> {
    if counter_hz == 0 || counter_hz >= 1 << 62 {
        return None;
    }
    // Find shift so that NS_PER_SEC / (hz scaled by 2^shift) lies in [1/2, 1): then mul is a
    // 32-bit fraction with full precision (a 1 GHz counter needs shift 1, mul 2^31).
    let mut shift: i8 = 0;
    let mut hz = u128::from(counter_hz);
    let ns = u128::from(NS_PER_SEC);
    while hz <= ns {
        hz <<= 1;
        shift += 1;
    }
    while hz > 2 * ns {
        hz >>= 1;
        shift -= 1;
    }
    let mul = (ns << 32) / hz;
    Some((u32::try_from(mul).ok()?, shift))
}

/// Nanoseconds for `ticks` counter ticks with a (mul, shift) pair (what the guest computes).
pub fn ticks_to_ns(ticks: u64, mul: u32, shift: i8) -> u64 {
    let shifted = if shift >= 0 {
        u128::from(ticks) << shift
    } else {
        u128::from(ticks) >> shift.unsigned_abs()
    };
    ((shifted * u128::from(mul)) >> 32) as u64
}

impl Xen {
    /// Publishes `time` into `vcpu`'s time record: in its registered vcpu_info and, for the
    /// vCPUs that have one, in shared_info's legacy slot (x86 Linux reads the TSC frequency
    /// from vCPU 0's legacy slot even after it moved its vcpu_info). Does nothing before the
    /// guest mapped shared_info or for Arm domains (Arm guests use the generic timer).
    /// Returns whether a record was written.
    pub fn publish_vcpu_time(
        &mut self,
        domid: DomId,
        vcpu: u32,
        time: &VcpuTime,
        env: &mut dyn XenEnv,
    ) -> bool {
        let Some(dom) = self.domains.get(&domid) else {
            return false;
        };
        if dom.arch != GuestArch::X86_64 || vcpu >= dom.nr_vcpus() {
            return false;
        }
        let time_at = dom.layout.vcpu_info_size - VCPU_TIME_SIZE as u64;
        let legacy = (vcpu < dom.layout.legacy_vcpus)
            .then(|| dom.shared_info_gpa())
            .flatten()
            .and_then(|si| {
                si.checked_add(
                    super::SHARED_INFO_VCPU_INFO as u64
                        + u64::from(vcpu) * dom.layout.vcpu_info_size,
                )
            });
        let registered = dom.vcpus.get(vcpu as usize).and_then(|v| v.vcpu_info);
        let Some(mem) = env.memory(domid) else {
            return false;
        };
        let mut written = false;
        for base in [legacy, registered].into_iter().flatten() {
            let Some(at) = base.checked_add(time_at) else {
                continue;
            };
            written |= write_record(mem, at, time);
        }
        written
    }
}

/// Writes one record with a version above the one there (the guest retries a read that saw
/// the version change, so bumping it is what tells it the record moved on).
fn write_record(mem: &mut dyn super::GuestMemory, at: GuestPhysAddr, time: &VcpuTime) -> bool {
    let mut old = [0u8; 4];
    if mem.read(at, &mut old).is_err() {
        return false;
    }
    let version = (u32::from_le_bytes(old) | 1).wrapping_add(1);
    // Odd while the fields change, even once they are consistent.
    let ok = mem.write(at, &(version - 1).to_le_bytes()).is_ok();
    mem.barrier();
    let ok = ok && mem.write(at, &time.encode(version)[..]).is_ok();
    mem.barrier();
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_converts_common_frequencies_exactly_enough() {
        for hz in [
            1_000_000_000u64,
            2_994_000_123,
            100_000_000,
            1_193_182,
            3,
            1 << 40,
        ] {
            let (mul, shift) = scale(hz).unwrap();
            // One second of ticks is one second, within a nanosecond per 2^32 of error.
            let ns = ticks_to_ns(hz, mul, shift);
            assert!(ns.abs_diff(NS_PER_SEC) <= 2, "{hz} Hz: {ns} ns");
            // What Linux's pvclock_tsc_khz computes back from the pair.
            let mut khz = (1_000_000u64 << 32) / u64::from(mul);
            if shift < 0 {
                khz <<= shift.unsigned_abs();
            } else {
                khz >>= shift;
            }
            assert!(
                khz.abs_diff(hz / 1000) <= 1 + hz / 1000 / 1_000_000,
                "{hz}: {khz}"
            );
        }
    }

    #[test]
    fn scale_refuses_zero_and_absurd_frequencies() {
        assert_eq!(scale(0), None);
        assert_eq!(scale(u64::MAX), None);
        assert!(scale((1 << 62) - 1).is_some());
    }

    #[test]
    fn record_layout_is_xens() {
        let t = VcpuTime {
            tsc_timestamp: 0x1122_3344_5566_7788,
            system_time_ns: 0x99,
            mul: 0xabcd_ef01,
            shift: -2,
            flags: PVCLOCK_TSC_STABLE,
        };
        let b = t.encode(6);
        assert_eq!(&b[0..4], &6u32.to_le_bytes());
        assert_eq!(&b[8..16], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(b[16], 0x99);
        assert_eq!(&b[24..28], &0xabcd_ef01u32.to_le_bytes());
        assert_eq!(b[28], 0xfe);
        assert_eq!(b[29], 1);
    }
}
