//! `XENVER_get_features` bits (`public/features.h`), submap 0.

/// Number of 32-bit feature submaps Xen defines; only submap 0 is valid.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// Page tables are writable (set for translated guests).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// Descriptor tables are writable (x86).
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// The guest's physmap is translated by the hypervisor (mandatory for Linux on Arm).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// Kernel runs in ring 0 (x86).
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// PAE page directory above 4 GiB (x86).
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// MMU updates preserve A/D bits (x86).
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// Highmem assist (x86).
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// Grant map leaves available PTE bits alone (x86).
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// HVM callback vector (x86).
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// Safe pvclock (x86 HVM).
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// PIRQs for HVM (x86).
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// The domain is the initial (hardware) domain.
pub const XENFEAT_DOM0: u32 = 11;
/// Grant mappings are identity (1:1) mappings.
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
/// memory_op supports vNUMA queries.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// SMCCC is available (HVC #0 firmware calls).
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// Linux may use any RSDP (x86).
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// The domain's RAM is not mapped 1:1 to host memory.
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// The domain's RAM is mapped 1:1 to host memory.
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// VCPUOP_register_runstate_phys_area exists.
pub const XENFEAT_RUNSTATE_PHYS_AREA: u32 = 18;
/// VCPUOP_register_vcpu_time_phys_area exists.
pub const XENFEAT_VCPU_TIME_PHYS_AREA: u32 = 19;

/// The bit for feature number `f` in submap 0.
pub const fn bit(f: u32) -> u32 {
    1 << f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_arm_domu_feature_word() {
        // What Xen on Arm reports to a non-1:1 domU (see the reference notes): 0x56005.
        let domu = bit(XENFEAT_WRITABLE_PAGE_TABLES)
            | bit(XENFEAT_AUTO_TRANSLATED_PHYSMAP)
            | bit(XENFEAT_MEMORY_OP_VNODE_SUPPORTED)
            | bit(XENFEAT_ARM_SMCCC_SUPPORTED)
            | bit(XENFEAT_NOT_DIRECT_MAPPED)
            | bit(XENFEAT_RUNSTATE_PHYS_AREA);
        assert_eq!(domu, 0x0005_6005);
    }
}
