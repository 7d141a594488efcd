//! What the runtime needs from the device tree the loader passed in x0.

use core::sync::atomic::{AtomicUsize, Ordering};
use fdt::node::FdtNode;
use fdt::Fdt;

static DTB: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn set_address(dtb: usize) {
    DTB.store(dtb, Ordering::Release);
}

/// Address of the device tree blob the loader passed.
pub fn address() -> usize {
    DTB.load(Ordering::Acquire)
}

/// The device tree, if the loader passed a valid one.
pub fn get() -> Option<Fdt<'static>> {
    let dtb = address();
    if dtb == 0 || !dtb.is_multiple_of(8) {
        return None;
    }
    // SAFETY: the boot protocol puts a DTB at x0, and the boot code mapped its 1 GiB block as
    // Normal memory. The header magic is checked before its size is trusted; the blob is never
    // written, so a 'static shared borrow is sound.
    let header = unsafe { core::slice::from_raw_parts(dtb as *const u8, 8) };
    if header[..4] != [0xd0, 0x0d, 0xfe, 0xed] {
        return None;
    }
    let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    // SAFETY: as above; the header states the blob's size.
    let blob = unsafe { core::slice::from_raw_parts(dtb as *const u8, size) };
    Fdt::new(blob).ok()
}

/// The kernel command line the loader passed: `/chosen/bootargs`, without its NUL. `None`
/// without a device tree, a `/chosen` node or the property (unlike the fdt crate's
/// `chosen().bootargs()`, which panics on a tree without `/chosen` or with an empty property).
pub fn bootargs() -> Option<&'static str> {
    get()?.find_node("/chosen")?.property("bootargs")?.as_str()
}

/// Whether the command line has `word` as one of its space-separated words.
pub fn bootargs_has(word: &str) -> bool {
    bootargs().is_some_and(|args| args.split_ascii_whitespace().any(|w| w == word))
}

/// Reads a big-endian cell value of 1 or 2 cells.
fn cells(bytes: &[u8]) -> Option<u64> {
    match bytes.len() {
        4 => Some(u64::from(u32::from_be_bytes(bytes.try_into().ok()?))),
        8 => Some(u64::from_be_bytes(bytes.try_into().ok()?)),
        _ => None,
    }
}

/// The `index`th `reg` entry of a node: (address, size).
pub fn reg(node: FdtNode<'_, '_>, index: usize) -> Option<(usize, usize)> {
    let region = node.reg()?.nth(index)?;
    Some((region.starting_address as usize, region.size.unwrap_or(0)))
}

fn is_compatible(node: FdtNode<'_, '_>, with: &[&str]) -> bool {
    node.compatible()
        .is_some_and(|c| c.all().any(|name| with.contains(&name)))
}

const UART_COMPATIBLE: [&str; 2] = ["arm,sbsa-uart", "arm,pl011"];

/// Base address of the console UART: the `/chosen/stdout-path` node if it is a PL011 or SBSA
/// UART, else the first such node.
pub fn console_uart(fdt: &Fdt<'_>) -> Option<usize> {
    let from_chosen = fdt
        .find_node("/chosen")
        .and_then(|chosen| chosen.property("stdout-path"))
        .and_then(|path| path.as_str())
        .map(|path| path.split(':').next().unwrap_or(path))
        .and_then(|path| {
            if path.starts_with('/') {
                fdt.find_node(path)
            } else {
                fdt.aliases()?.resolve_node(path)
            }
        })
        .filter(|node| is_compatible(*node, &UART_COMPATIBLE));
    let node = from_chosen.or_else(|| fdt.find_compatible(&UART_COMPATIBLE))?;
    reg(node, 0).map(|(base, _)| base)
}

/// The PSCI conduit named by the `method` of the PSCI node.
pub fn psci_conduit(fdt: &Fdt<'_>) -> Option<crate::psci::Conduit> {
    let node = fdt.find_compatible(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])?;
    match node.property("method")?.as_str()? {
        "hvc" => Some(crate::psci::Conduit::Hvc),
        "smc" => Some(crate::psci::Conduit::Smc),
        _ => None,
    }
}

/// GICv3 distributor base and redistributor region (base, size).
pub fn gicv3(fdt: &Fdt<'_>) -> Option<(usize, (usize, usize))> {
    let node = fdt.find_compatible(&["arm,gic-v3"])?;
    Some((reg(node, 0)?.0, reg(node, 1)?))
}

/// Compatible strings of GICv2-style GICs with a memory-mapped CPU interface (the Linux
/// binding `arm,gic`): `reg` is the distributor, then the CPU interface.
const GICV2_COMPATIBLE: [&str; 8] = [
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
    "arm,cortex-a5-gic",
    "arm,pl390",
    "arm,arm11mp-gic",
    "arm,gic-v2",
];

/// The interrupt controller the device tree names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gic {
    /// GICv3: distributor (base, size), redistributor region (base, size).
    V3 {
        distributor: (usize, usize),
        redistributors: (usize, usize),
    },
    /// GICv2: distributor (base, size), CPU interface (base, size).
    V2 {
        distributor: (usize, usize),
        cpu_interface: (usize, usize),
    },
}

/// The GICv3 or, failing that, GICv2 node of the device tree.
pub fn gic(fdt: &Fdt<'_>) -> Option<Gic> {
    if let Some(node) = fdt.find_compatible(&["arm,gic-v3"]) {
        return Some(Gic::V3 {
            distributor: reg(node, 0)?,
            redistributors: reg(node, 1)?,
        });
    }
    let node = fdt.find_compatible(&GICV2_COMPATIBLE)?;
    Some(Gic::V2 {
        distributor: reg(node, 0)?,
        cpu_interface: reg(node, 1)?,
    })
}

/// MPIDR affinity values of the CPUs under `/cpus`, in device-tree order.
pub fn cpu_mpidrs<'a>(fdt: &'a Fdt<'a>) -> impl Iterator<Item = u64> + 'a {
    fdt.find_node("/cpus")
        .into_iter()
        .flat_map(|cpus| cpus.children())
        .filter(|node| node.name.split('@').next() == Some("cpu"))
        .filter_map(|node| cells(node.property("reg")?.value))
}
