//! Known boards, keyed by the root node's `compatible`. A board that is not listed runs
//! with no quirks: everything Mica needs is in its device tree.
//!
//! What stays in the device tree and is therefore not repeated here: the UART (matched by
//! [`crate::uart::UartKind`]), the GIC and its frames, memory banks and holes, how each CPU is
//! started (`enable-method`: PSCI, or a spin table with its `cpu-release-addr`), and the
//! firmware reservations the tree does declare (`/memreserve/`, `/reserved-memory`).

/// How a board's boot firmware starts the secondary CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuStart {
    /// PSCI `CPU_ON` through SMC (Trusted Firmware-A, or QEMU's built-in PSCI).
    Psci,
    /// The CPUs wait in a loop polling `cpu-release-addr` (Raspberry Pi firmware, and
    /// QEMU's `raspi4b` direct kernel boot).
    SpinTable,
}

/// A physical memory range the board's firmware owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FirmwareRegion {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// What lives there, for the log.
    pub what: &'static str,
}

/// What Mica knows about a board beyond its device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// A name for the log.
    pub name: &'static str,
    /// Root `compatible` strings that select this board.
    pub compatible: &'static [&'static str],
    /// How the other CPUs are started; Mica follows the device tree and notes a mismatch.
    pub cpu_start: CpuStart,
    /// RAM the firmware uses that a device tree for this board may fail to reserve (one
    /// loaded by U-Boot from a distribution, say). Mica never hands it out.
    pub firmware_reserved: &'static [FirmwareRegion],
    /// The GIC's virtual IRQ/FIQ outputs do not reach the cores, so a guest would never
    /// take an interrupt from its list registers: Mica raises the virtual interrupt itself
    /// (HCR_EL2.VI), at the cost of one extra exit per batch of interrupts.
    pub virq_line_unwired: bool,
}

/// Boards with an entry. Order does not matter: compatibles are disjoint.
pub const BOARDS: &[Board] = &[
    Board {
        name: "QEMU virt",
        compatible: &["linux,dummy-virt"],
        cpu_start: CpuStart::Psci,
        firmware_reserved: &[],
        virq_line_unwired: false,
    },
    Board {
        name: "Raspberry Pi 4 Model B",
        compatible: &["raspberrypi,4-model-b", "brcm,bcm2711"],
        cpu_start: CpuStart::SpinTable,
        // The Pi firmware's armstub (and QEMU's replacement for it) keeps its code and the
        // spin table (cpu-release-addr 0xd8..0xf0) in the first page of RAM.
        firmware_reserved: &[FirmwareRegion {
            start: 0,
            size: 0x1000,
            what: "armstub and spin table",
        }],
        virq_line_unwired: false,
    },
    Board {
        name: "Xilinx ZCU102",
        compatible: &[
            "xlnx,zynqmp-zcu102-rev1.0",
            "xlnx,zynqmp-zcu102",
            "xlnx,zynqmp",
        ],
        cpu_start: CpuStart::Psci,
        // TF-A runs from on-chip memory (OCM, 0xfffc0000), outside DRAM.
        firmware_reserved: &[],
        virq_line_unwired: false,
    },
    Board {
        name: "NXP i.MX 8M Plus EVK",
        compatible: &["fsl,imx8mp-evk", "fsl,imx8mp"],
        cpu_start: CpuStart::Psci,
        // TF-A runs from OCRAM (0x970000), outside DRAM; OP-TEE, when present, is declared
        // in /reserved-memory by U-Boot.
        firmware_reserved: &[],
        // QEMU's model before 10.0.3 leaves them unconnected (fixed by QEMU commit
        // 930180f3b9a2 "hw/arm/fsl-imx8mp: Wire VIRQ and VFIQ"). The device tree is the
        // real board's, so the quirk cannot tell the model from the chip; on the chip it is
        // redundant but harmless (the core ORs VI with the GIC's signal).
        virq_line_unwired: true,
    },
];

/// The board whose compatible matches one of `root_compatibles`, if any. The most specific
/// (first listed) root compatible wins.
pub fn find<'a>(mut root_compatibles: impl Iterator<Item = &'a str>) -> Option<&'static Board> {
    root_compatibles.find_map(|c| BOARDS.iter().find(|b| b.compatible.contains(&c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(compatibles: &[&str]) -> Option<&'static str> {
        find(compatibles.iter().copied()).map(|b| b.name)
    }

    #[test]
    fn boards_are_found_by_their_root_compatible() {
        assert_eq!(name(&["linux,dummy-virt"]), Some("QEMU virt"));
        assert_eq!(
            name(&["raspberrypi,4-model-b", "brcm,bcm2711"]),
            Some("Raspberry Pi 4 Model B")
        );
        assert_eq!(
            name(&[
                "xlnx,zynqmp-zcu102-rev1.0",
                "xlnx,zynqmp-zcu102",
                "xlnx,zynqmp"
            ]),
            Some("Xilinx ZCU102")
        );
        assert_eq!(
            name(&["fsl,imx8mp-evk", "fsl,imx8mp"]),
            Some("NXP i.MX 8M Plus EVK")
        );
        assert_eq!(name(&["acme,unknown"]), None);
        assert_eq!(name(&[]), None);
    }

    #[test]
    fn only_the_imx8mp_raises_virtual_interrupts_itself() {
        let quirky = BOARDS
            .iter()
            .filter(|b| b.virq_line_unwired)
            .map(|b| b.name);
        assert!(quirky.eq(["NXP i.MX 8M Plus EVK"]));
        assert!(
            find(["fsl,imx8mp-evk", "fsl,imx8mp"].into_iter()).is_some_and(|b| b.virq_line_unwired)
        );
        assert!(find(["linux,dummy-virt"].into_iter()).is_some_and(|b| !b.virq_line_unwired));
    }

    #[test]
    fn compatibles_are_disjoint_and_regions_sane() {
        for (i, a) in BOARDS.iter().enumerate() {
            for b in &BOARDS[i + 1..] {
                assert!(
                    a.compatible.iter().all(|c| !b.compatible.contains(c)),
                    "{} and {} share a compatible",
                    a.name,
                    b.name
                );
            }
            for r in a.firmware_reserved {
                assert!(r.size > 0 && r.start.checked_add(r.size).is_some());
            }
        }
    }
}
