//! The ACPI tables a PVH guest finds through `hvm_start_info.rsdp_paddr`: an RSDP (revision
//! 2), an XSDT and a MADT naming one local APIC per vCPU and the legacy 8259 pair (PCAT_COMPAT),
//! which is what a Linux guest needs to run its local APIC in virtual-wire mode. No FADT or
//! DSDT: Linux then reports the ACPI interpreter unusable and goes on without it.

use alloc::vec::Vec;

/// Where the tables sit relative to the RSDP (all within one 256-byte block).
const XSDT_OFFSET: usize = 0x40;
const MADT_OFFSET: usize = 0x80;
/// Bytes the tables take at most (32 vCPUs).
pub const MAX_SIZE: usize = MADT_OFFSET + MADT_HEADER + 32 * LAPIC_ENTRY;
const HEADER: usize = 36;
const RSDP_SIZE: usize = 36;
/// MADT: header, local APIC address, flags.
const MADT_HEADER: usize = HEADER + 8;
/// MADT entry type 0 (processor local APIC), 8 bytes.
const LAPIC_ENTRY: usize = 8;
const MADT_TYPE_LAPIC: u8 = 0;
const MADT_LAPIC_ENABLED: u32 = 1;
/// MADT flags: the system also has dual 8259s.
const MADT_PCAT_COMPAT: u32 = 1;
const OEM_ID: &[u8; 6] = b"MICA  ";
const OEM_TABLE_ID: &[u8; 8] = b"MICAX86 ";

/// Makes the sum of `bytes` zero by setting the byte at `at`.
fn checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    bytes[at] = sum.wrapping_neg();
}

fn header(signature: &[u8; 4], length: usize, revision: u8) -> Vec<u8> {
    let mut h = Vec::with_capacity(length);
    h.extend_from_slice(signature);
    h.extend_from_slice(&(length as u32).to_le_bytes());
    h.push(revision);
    h.push(0); // checksum, set last
    h.extend_from_slice(OEM_ID);
    h.extend_from_slice(OEM_TABLE_ID);
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(b"MICA");
    h.extend_from_slice(&1u32.to_le_bytes());
    h
}

/// The tables for `vcpus` vCPUs (APIC ids 0..vcpus) with the APIC page at `apic_base`,
/// laid out to be copied to guest-physical `at` (the RSDP's address). `None` for zero or
/// more than 32 vCPUs.
pub fn build(at: u64, vcpus: u32, apic_base: u32) -> Option<Vec<u8>> {
    if vcpus == 0 || vcpus > 32 {
        return None;
    }
    let madt_len = MADT_HEADER + vcpus as usize * LAPIC_ENTRY;
    let mut madt = header(b"APIC", madt_len, 4);
    madt.extend_from_slice(&apic_base.to_le_bytes());
    madt.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    for id in 0..vcpus as u8 {
        madt.extend_from_slice(&[MADT_TYPE_LAPIC, LAPIC_ENTRY as u8, id, id]);
        madt.extend_from_slice(&MADT_LAPIC_ENABLED.to_le_bytes());
    }
    checksum(&mut madt, 9);

    let mut xsdt = header(b"XSDT", HEADER + 8, 1);
    xsdt.extend_from_slice(&(at + MADT_OFFSET as u64).to_le_bytes());
    checksum(&mut xsdt, 9);

    let mut rsdp = Vec::with_capacity(RSDP_SIZE);
    rsdp.extend_from_slice(b"RSD PTR ");
    rsdp.push(0); // checksum over the first 20 bytes
    rsdp.extend_from_slice(OEM_ID);
    rsdp.push(2); // revision: ACPI 2.0+, XSDT
    rsdp.extend_from_slice(&0u32.to_le_bytes()); // no RSDT
    rsdp.extend_from_slice(&(RSDP_SIZE as u32).to_le_bytes());
    rsdp.extend_from_slice(&(at + XSDT_OFFSET as u64).to_le_bytes());
    rsdp.extend_from_slice(&[0; 4]); // extended checksum, reserved
    checksum(&mut rsdp[..20], 8);
    checksum(&mut rsdp, 32);

    let mut out = alloc::vec![0u8; MADT_OFFSET + madt_len];
    out[..RSDP_SIZE].copy_from_slice(&rsdp);
    out[XSDT_OFFSET..XSDT_OFFSET + xsdt.len()].copy_from_slice(&xsdt);
    out[MADT_OFFSET..].copy_from_slice(&madt);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, x| s.wrapping_add(*x))
    }

    #[test]
    fn tables_check_out_and_point_at_each_other() {
        let at = 0x6400;
        let t = build(at, 2, 0xfee0_0000).unwrap();
        assert!(t.len() <= MAX_SIZE);
        assert_eq!(&t[..8], b"RSD PTR ");
        assert_eq!(sum(&t[..20]), 0);
        assert_eq!(sum(&t[..36]), 0);
        assert_eq!(t[15], 2);
        let xsdt_at = u64::from_le_bytes(t[24..32].try_into().unwrap());
        assert_eq!(xsdt_at, at + 0x40);
        let x = &t[0x40..0x40 + 44];
        assert_eq!(&x[..4], b"XSDT");
        assert_eq!(sum(x), 0);
        let madt_at = u64::from_le_bytes(x[36..44].try_into().unwrap());
        let m = &t[(madt_at - at) as usize..];
        assert_eq!(&m[..4], b"APIC");
        let len = u32::from_le_bytes(m[4..8].try_into().unwrap()) as usize;
        assert_eq!(len, 44 + 16);
        assert_eq!(sum(&m[..len]), 0);
        assert_eq!(
            u32::from_le_bytes(m[36..40].try_into().unwrap()),
            0xfee0_0000
        );
        assert_eq!(&m[44..52], &[0, 8, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&m[52..60], &[0, 8, 1, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn vcpu_counts_out_of_range_are_refused() {
        assert!(build(0, 0, 0).is_none());
        assert!(build(0, 33, 0).is_none());
        assert!(build(0, 32, 0).unwrap().len() <= MAX_SIZE);
    }
}
