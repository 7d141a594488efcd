//! System registers that `aarch64-cpu` does not provide, with the same tock-registers
//! interfaces so call sites look alike.

/// Defines a 64-bit system register accessor named `$ty` for assembler name `$asm`.
macro_rules! system_register {
    ($(#[$meta:meta])* $ty:ident, $asm:literal, rw) => {
        system_register!($(#[$meta])* $ty, $asm, r);
        impl tock_registers::interfaces::Writeable for $ty {
            type T = u64;
            type R = ();
            #[inline]
            fn set(&self, value: u64) {
                // SAFETY: writing this register at EL2 has no memory-safety effect; callers
                // follow the architecture's rules for when it may be written.
                unsafe {
                    core::arch::asm!(concat!("msr ", $asm, ", {}"), in(reg) value, options(nomem, nostack))
                }
            }
        }
    };
    ($(#[$meta:meta])* $ty:ident, $asm:literal, r) => {
        $(#[$meta])*
        pub struct $ty;
        impl tock_registers::interfaces::Readable for $ty {
            type T = u64;
            type R = ();
            #[inline]
            fn get(&self) -> u64 {
                let value;
                // SAFETY: reading this register at EL2 has no side effect on memory.
                unsafe {
                    core::arch::asm!(concat!("mrs {}, ", $asm), out(reg) value, options(nomem, nostack))
                }
                value
            }
        }
    };
    ($(#[$meta:meta])* $ty:ident, $asm:literal, w) => {
        $(#[$meta])*
        pub struct $ty;
        impl tock_registers::interfaces::Writeable for $ty {
            type T = u64;
            type R = ();
            #[inline]
            fn set(&self, value: u64) {
                // SAFETY: as for the read-write form above.
                unsafe {
                    core::arch::asm!(concat!("msr ", $asm, ", {}"), in(reg) value, options(nomem, nostack))
                }
            }
        }
    };
}

system_register!(
    /// Interrupt acknowledge, group 1 (the INTID of the highest pending interrupt).
    IccIar1El1, "icc_iar1_el1", r
);
system_register!(
    /// End of interrupt, group 1.
    IccEoir1El1, "icc_eoir1_el1", w
);
system_register!(
    /// Priority mask.
    IccPmrEl1, "icc_pmr_el1", rw
);
system_register!(
    /// Group 1 interrupt enable.
    IccIgrpen1El1, "icc_igrpen1_el1", rw
);
system_register!(
    /// Binary point, group 1.
    IccBpr1El1, "icc_bpr1_el1", rw
);
system_register!(
    /// Software-generated interrupt, group 1.
    IccSgi1rEl1, "icc_sgi1r_el1", w
);
system_register!(
    /// EL2 physical timer compare value.
    CnthpCvalEl2, "cnthp_cval_el2", rw
);
system_register!(
    /// CPU interface control (bit 1: EOImode, split priority drop and deactivation).
    IccCtlrEl1, "icc_ctlr_el1", rw
);
system_register!(
    /// Deactivate interrupt (with EOImode set).
    IccDirEl1, "icc_dir_el1", w
);
system_register!(
    /// Performance monitors control (read for its counter count, N in bits 15:11).
    PmcrEl0, "pmcr_el0", r
);
