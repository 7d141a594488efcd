//! The x86 side of Xen's guest ABI that is not a hypercall: the CPUID leaves at 0x40000000
//! (`xen/include/public/arch-x86/cpuid.h`) and the hypercall page a guest asks for by writing
//! the MSR those leaves name.

use mica_guest_abi::xen::{XEN_VERSION_MAJOR, XEN_VERSION_MINOR};

/// First Xen CPUID leaf.
pub const CPUID_BASE: u32 = 0x4000_0000;
/// Last Xen leaf Mica answers (base + 4: the HVM features leaf).
pub const CPUID_LAST: u32 = CPUID_BASE + 4;
/// End of the range reserved for hypervisor leaves at this base.
const CPUID_RANGE_END: u32 = CPUID_BASE + 0xff;
/// "XenVMMXenVMM" in EBX, ECX, EDX.
pub const SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];
/// The MSR a guest writes with the address of its hypercall page (leaf 2, EBX).
pub const HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;
/// Hypercall pages offered (leaf 2, EAX).
pub const HYPERCALL_PAGES: u32 = 1;
/// HVM leaf: EBX holds the vCPU id.
pub const HVM_VCPU_ID_PRESENT: u32 = 1 << 3;
/// HVM leaf: ECX holds the domain id.
pub const HVM_DOMID_PRESENT: u32 = 1 << 4;
/// Bytes per hypercall stub in the page.
pub const STUB_SIZE: usize = 32;
/// Bytes of a hypercall page.
pub const PAGE_SIZE: usize = 4096;

/// The answer to CPUID `leaf` if it is one of Xen's (zeros for reserved leaves in the range
/// beyond [`CPUID_LAST`]), `None` for other leaves.
pub fn cpuid(leaf: u32, vcpu: u32, domid: u16) -> Option<[u32; 4]> {
    if !(CPUID_BASE..=CPUID_RANGE_END).contains(&leaf) {
        return None;
    }
    Some(match leaf - CPUID_BASE {
        0 => [CPUID_LAST, SIGNATURE[0], SIGNATURE[1], SIGNATURE[2]],
        1 => [XEN_VERSION_MAJOR << 16 | XEN_VERSION_MINOR, 0, 0, 0],
        2 => [HYPERCALL_PAGES, HYPERCALL_PAGE_MSR, 0, 0],
        4 => [
            HVM_VCPU_ID_PRESENT | HVM_DOMID_PRESENT,
            vcpu,
            u32::from(domid),
            0,
        ],
        // Leaf 3 (TSC) and anything past the last leaf: nothing offered.
        _ => [0; 4],
    })
}

/// Opcode bytes of one stub: `mov eax, imm32`, then `vmmcall`, then `ret`.
const MOV_EAX_IMM32: u8 = 0xb8;
const VMMCALL: [u8; 3] = [0x0f, 0x01, 0xd9];
const RET: u8 = 0xc3;
/// Filler between stubs (INT3), so a jump into the middle of a stub traps.
const FILL: u8 = 0xcc;

/// Writes the hypercall page: stub `i` at `i * 32` loads hypercall number `i` into EAX and
/// executes VMMCALL, as Xen's page for an AMD HVM guest does.
pub fn fill_hypercall_page(page: &mut [u8; PAGE_SIZE]) {
    page.fill(FILL);
    for (i, stub) in page.chunks_exact_mut(STUB_SIZE).enumerate() {
        stub[0] = MOV_EAX_IMM32;
        stub[1..5].copy_from_slice(&(i as u32).to_le_bytes());
        stub[5..8].copy_from_slice(&VMMCALL);
        stub[8] = RET;
    }
}

/// The page address a hypercall-page MSR write names, or `None` if it names a page index
/// other than 0 (only one page is offered).
pub fn hypercall_page_gpa(msr_value: u64) -> Option<u64> {
    let index = msr_value & 0xfff;
    (index < u64::from(HYPERCALL_PAGES)).then_some(msr_value & !0xfff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_identify_xen_4_17() {
        let base = cpuid(CPUID_BASE, 0, 1).unwrap();
        let mut sig = [0u8; 12];
        for (i, w) in base[1..].iter().enumerate() {
            sig[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(base[0], CPUID_LAST);
        assert_eq!(cpuid(CPUID_BASE + 1, 0, 1).unwrap()[0], 4 << 16 | 17);
        assert_eq!(
            cpuid(CPUID_BASE + 2, 0, 1).unwrap()[..2],
            [1, HYPERCALL_PAGE_MSR]
        );
        assert_eq!(cpuid(CPUID_BASE + 4, 3, 7).unwrap()[1..3], [3, 7]);
        assert_eq!(cpuid(CPUID_BASE + 0x80, 0, 1), Some([0; 4]));
        assert_eq!(cpuid(1, 0, 1), None);
        assert_eq!(cpuid(CPUID_BASE + 0x100, 0, 1), None);
    }

    #[test]
    fn hypercall_page_layout() {
        let mut page = [0u8; PAGE_SIZE];
        fill_hypercall_page(&mut page);
        // Stub 17 (sched_op_compat... any number): mov eax, 17; vmmcall; ret; int3 fill.
        let stub = &page[17 * 32..18 * 32];
        assert_eq!(&stub[..9], &[0xb8, 17, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]);
        assert!(stub[9..].iter().all(|&b| b == 0xcc));
        let last = &page[127 * 32..];
        assert_eq!(last[1], 127);
    }

    #[test]
    fn msr_values_name_page_zero_only() {
        assert_eq!(hypercall_page_gpa(0x12_3000), Some(0x12_3000));
        assert_eq!(hypercall_page_gpa(0x12_3001), None);
        assert_eq!(hypercall_page_gpa(u64::MAX), None);
    }
}
