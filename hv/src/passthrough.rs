//! Devices passed through to dom0less domUs, described with Xen's bindings
//! (`docs/misc/arm/device-tree/booting.txt`, "Device Assignment"; `docs/misc/arm/passthrough.txt`).
//!
//! A domU's `multiboot,device-tree` module is a partial device tree. Its `/passthrough` node
//! (a `simple-bus` with `ranges` and 2/2 cells) holds the device nodes to copy into the
//! guest's tree. A device node that takes a host device carries:
//! * `xen,path = "/host/node"`: the host node, which must have `xen,passthrough`;
//! * `xen,reg = <host-addr size guest-addr ...>` in the cells of the partial tree's root:
//!   MMIO to map (page-aligned, inside the host node's `reg` rounded out to pages);
//! * `interrupts` (3-cell GIC SPIs, mapped 1:1) that must be the host node's, with
//!   `interrupt-parent` absent or [`GUEST_PHANDLE_GIC`].
//!
//! Everything in the blob is untrusted (it came with the boot modules): [`parse_partial_dt`]
//! validates it against the host tree and never panics; errors name the domain and node.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use fdt::Fdt;
use mica_guest_abi::layout;

use crate::addr::{GuestPhysAddr, GuestRange, HostPhysAddr, HostRange, PAGE_SIZE};
use crate::bootcfg::{self, Tree};

pub use crate::guest_fdt::GUEST_PHANDLE_GIC;

/// Most device nodes (at any depth) accepted under `/passthrough`.
const MAX_NODES: usize = 64;

/// One node to write into the guest tree under `/passthrough`, `xen,*` properties removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassthroughNode {
    /// Node name with unit address, e.g. `virtio_mmio@a003e00`.
    pub name: String,
    /// Properties in their original order, values verbatim.
    pub props: Vec<(String, Vec<u8>)>,
    /// Child nodes, copied the same way.
    pub children: Vec<PassthroughNode>,
}

/// One MMIO region to map into the domU (device memory), page-aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioMapping {
    /// Where the guest sees it.
    pub guest: GuestRange,
    /// The host region (same size).
    pub host: HostRange,
}

/// What a domU's partial device tree asks for, validated against the host tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomuPassthrough {
    /// Nodes to copy under the guest's `/passthrough` bus.
    pub nodes: Vec<PassthroughNode>,
    /// MMIO to map in stage 2.
    pub mmio: Vec<MmioMapping>,
    /// SPIs (INTIDs, guest INTID == host INTID) to route to the domU, each with whether it is
    /// edge-triggered (from the host node's flags).
    pub spis: Vec<(u32, bool)>,
    /// Host node paths the domU takes (hidden from dom0).
    pub host_paths: Vec<String>,
}

/// What is wrong with a partial device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassthroughProblem {
    /// The blob is not a usable device tree (text says why).
    BadBlob(String),
    /// No `/passthrough` node.
    NoPassthroughNode,
    /// `/passthrough` lacks `simple-bus`, empty `ranges` or 2/2 cells.
    BadBusNode,
    /// The root's `#address-cells`/`#size-cells` are missing or not 1 or 2.
    BadRootCells,
    /// More device nodes than Mica accepts.
    TooManyNodes,
    /// A node's `xen,path` is not a string.
    BadPath(String),
    /// `xen,path` names no host node.
    NoSuchHostNode(String, String),
    /// The host node has no `xen,passthrough` property.
    NotForPassthrough(String, String),
    /// Two nodes (of this or another domain) take the same host node.
    ClaimedTwice(String, String),
    /// `xen,reg`/`interrupts` on a node without `xen,path`.
    NoPathForResources(String),
    /// `xen,reg` is malformed (not whole `<host size guest>` triples).
    BadXenReg(String),
    /// A `xen,reg` entry is not page-aligned or empty.
    Unaligned(String, u64, u64),
    /// A `xen,reg` host range is not inside the host node's `reg`.
    OutsideHostReg(String, u64, u64),
    /// A `xen,reg` guest range hits guest RAM, the GIC, the vPL011 or another mapping.
    GuestClash(String, u64, u64),
    /// Two domains map the same host MMIO.
    HostMmioShared(String, u64),
    /// `interrupts` malformed, not SPIs, or with a foreign `interrupt-parent`.
    BadInterrupts(String),
    /// An SPI the host node does not have.
    ForeignSpi(String, u32),
    /// An SPI two domains (or the vPL011) want.
    SpiClash(String, u32),
    /// A node's `phandle` is Mica's GIC phandle.
    ReservedPhandle(String),
}

impl fmt::Display for PassthroughProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadBlob(why) => write!(f, "not a device tree: {why}"),
            Self::NoPassthroughNode => f.write_str("no /passthrough node"),
            Self::BadBusNode => f.write_str(
                "/passthrough must be a simple-bus with an empty ranges and #address-cells/#size-cells 2/2",
            ),
            Self::BadRootCells => f.write_str("root #address-cells/#size-cells missing or not 1 or 2"),
            Self::TooManyNodes => write!(f, "more than {MAX_NODES} nodes under /passthrough"),
            Self::BadPath(n) => write!(f, "{n}: xen,path is not a string"),
            Self::NoSuchHostNode(n, p) => write!(f, "{n}: xen,path {p} is not in the host device tree"),
            Self::NotForPassthrough(n, p) => write!(f, "{n}: host node {p} has no xen,passthrough property"),
            Self::ClaimedTwice(n, p) => write!(f, "{n}: host node {p} is already assigned"),
            Self::NoPathForResources(n) => write!(f, "{n}: xen,reg or interrupts without xen,path"),
            Self::BadXenReg(n) => write!(f, "{n}: xen,reg is not whole <host-address size guest-address> entries"),
            Self::Unaligned(n, h, s) => write!(f, "{n}: xen,reg {h:#x}+{s:#x} is empty or not page-aligned"),
            Self::OutsideHostReg(n, h, s) => write!(f, "{n}: xen,reg {h:#x}+{s:#x} is outside the host node's reg"),
            Self::GuestClash(n, g, s) => write!(f, "{n}: guest range {g:#x}+{s:#x} overlaps guest RAM, the GIC, the UART or another mapping"),
            Self::HostMmioShared(n, h) => write!(f, "{n}: host MMIO at {h:#x} is already assigned"),
            Self::BadInterrupts(n) => write!(f, "{n}: interrupts must be 3-cell GIC SPIs with interrupt-parent <{GUEST_PHANDLE_GIC}>"),
            Self::ForeignSpi(n, i) => write!(f, "{n}: interrupt {i} does not belong to the host node"),
            Self::SpiClash(n, i) => write!(f, "{n}: interrupt {i} is already assigned"),
            Self::ReservedPhandle(n) => write!(f, "{n}: phandle {GUEST_PHANDLE_GIC} is reserved for the GIC"),
        }
    }
}

/// A refused partial device tree. `Display` is one line:
/// `domain domU1: partial device tree: <problem>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassthroughError {
    /// The domain whose partial device tree it is.
    pub domain: String,
    /// What is wrong.
    pub problem: PassthroughProblem,
}

impl fmt::Display for PassthroughError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "domain {}: partial device tree: {}",
            self.domain, self.problem
        )
    }
}

type Problem = PassthroughProblem;

fn be32s(v: &[u8]) -> Option<Vec<u32>> {
    if !v.len().is_multiple_of(4) {
        return None;
    }
    Some(
        v.chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn cell_count(t: &Tree<'_, '_>, i: usize, name: &str) -> Option<u32> {
    match be32s(t.prop(i, name)?)?.as_slice() {
        [v] => Some(*v),
        _ => None,
    }
}

fn take(cells: &mut core::slice::Iter<'_, u32>, n: u32) -> Option<u64> {
    let mut v = 0u64;
    for _ in 0..n {
        v = (v << 32) | u64::from(*cells.next()?);
    }
    Some(v)
}

/// Guest-physical ranges Mica itself uses in every domU (RAM banks, GIC, vPL011).
fn guest_reserved() -> [(u64, u64); 5] {
    [
        (layout::GUEST_GICD_BASE, layout::GUEST_GICD_SIZE),
        (layout::GUEST_GICC_BASE, layout::GUEST_GICC_SIZE),
        (layout::GUEST_GICR_BASE, layout::GUEST_GICR_SIZE),
        (layout::GUEST_PL011_BASE, layout::GUEST_PL011_SIZE),
        (layout::GUEST_RAM0_BASE, layout::GUEST_RAM0_SIZE),
    ]
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

/// The host node's SPIs: INTID and edge flag. `None` if its interrupts are not GIC SPIs.
fn host_spis(t: &Tree<'_, '_>, i: usize) -> Option<Vec<(u32, bool)>> {
    let Some(v) = t.prop(i, "interrupts") else {
        return Some(Vec::new());
    };
    let cells = be32s(v)?;
    if !cells.len().is_multiple_of(3) {
        return None;
    }
    cells
        .chunks_exact(3)
        .map(|c| (c[0] == 0 && c[1] < 988).then_some((c[1] + 32, c[2] & 3 != 0)))
        .collect()
}

struct Walk<'h, 'hb, 'ha> {
    host: &'h Tree<'hb, 'ha>,
    root_cells: (u32, u32),
    out: DomuPassthrough,
    count: usize,
}

impl Walk<'_, '_, '_> {
    fn node(&mut self, t: &Tree<'_, '_>, i: usize) -> Result<PassthroughNode, Problem> {
        self.count += 1;
        if self.count > MAX_NODES {
            return Err(Problem::TooManyNodes);
        }
        let name = t.name(i).to_string();
        if t.phandle(i) == Some(GUEST_PHANDLE_GIC) {
            return Err(Problem::ReservedPhandle(name));
        }
        let path = match t.prop(i, "xen,path") {
            None => None,
            Some(v) => Some(
                bootcfg::string(v)
                    .filter(|p| p.starts_with('/'))
                    .ok_or_else(|| Problem::BadPath(name.clone()))?,
            ),
        };
        let has_resources = t.has(i, "xen,reg") || t.has(i, "interrupts");
        if let Some(path) = path {
            self.claim(t, i, &name, path)?;
        } else if has_resources {
            return Err(Problem::NoPathForResources(name));
        }
        let props = t.nodes[i]
            .node
            .properties()
            .filter(|p| !p.name.starts_with("xen,"))
            .map(|p| (p.name.to_string(), p.value.to_vec()))
            .collect();
        let mut children = Vec::new();
        for c in t.children(i).collect::<Vec<_>>() {
            children.push(self.node(t, c)?);
        }
        Ok(PassthroughNode {
            name,
            props,
            children,
        })
    }

    fn claim(&mut self, t: &Tree<'_, '_>, i: usize, name: &str, path: &str) -> Result<(), Problem> {
        let h = self.host;
        let hi = h
            .find(path)
            .filter(|&hi| h.nodes[hi].path == path)
            .ok_or_else(|| Problem::NoSuchHostNode(name.to_string(), path.to_string()))?;
        if !h.has(hi, "xen,passthrough") {
            return Err(Problem::NotForPassthrough(
                name.to_string(),
                path.to_string(),
            ));
        }
        if self.out.host_paths.iter().any(|p| p == path) {
            return Err(Problem::ClaimedTwice(name.to_string(), path.to_string()));
        }
        self.out.host_paths.push(path.to_string());

        // MMIO.
        let host_regs = h.reg(hi).unwrap_or_default();
        if let Some(v) = t.prop(i, "xen,reg") {
            let (ac, sc) = self.root_cells;
            let cells = be32s(v).ok_or_else(|| Problem::BadXenReg(name.to_string()))?;
            let entry = (2 * ac + sc) as usize;
            if cells.is_empty() || !cells.len().is_multiple_of(entry) {
                return Err(Problem::BadXenReg(name.to_string()));
            }
            let mut it = cells.iter();
            while it.len() > 0 {
                let bad = || Problem::BadXenReg(name.to_string());
                let host = take(&mut it, ac).ok_or_else(bad)?;
                let size = take(&mut it, sc).ok_or_else(bad)?;
                let guest = take(&mut it, ac).ok_or_else(bad)?;
                let aligned = [host, size, guest].iter().all(|v| v % PAGE_SIZE == 0);
                let (Some(hr), Some(gr)) = (
                    HostRange::new(HostPhysAddr::new(host), size),
                    GuestRange::new(GuestPhysAddr::new(guest), size),
                ) else {
                    return Err(Problem::Unaligned(name.to_string(), host, size));
                };
                if !aligned || size == 0 {
                    return Err(Problem::Unaligned(name.to_string(), host, size));
                }
                // Small devices (QEMU's 512-byte virtio-mmio transports) share pages: the
                // host node's registers count rounded out to whole pages.
                let inside = host_regs.iter().any(|&(a, s)| {
                    let start = a & !(PAGE_SIZE - 1);
                    let end = a
                        .checked_add(s)
                        .and_then(|e| e.checked_add(PAGE_SIZE - 1))
                        .map(|e| e & !(PAGE_SIZE - 1));
                    end.is_some_and(|end| start <= host && hr.end().raw() <= end)
                });
                if !inside {
                    return Err(Problem::OutsideHostReg(name.to_string(), host, size));
                }
                let clash = guest_reserved().iter().any(|&r| overlaps(r, (guest, size)))
                    || guest >= layout::GUEST_RAM1_BASE
                    || self
                        .out
                        .mmio
                        .iter()
                        .any(|m| overlaps((m.guest.start.raw(), m.guest.size), (guest, size)));
                if clash {
                    return Err(Problem::GuestClash(name.to_string(), guest, size));
                }
                if self.out.mmio.iter().any(|m| m.host.overlaps(&hr)) {
                    return Err(Problem::HostMmioShared(name.to_string(), host));
                }
                self.out.mmio.push(MmioMapping {
                    guest: gr,
                    host: hr,
                });
            }
        }

        // Interrupts.
        if let Some(v) = t.prop(i, "interrupts") {
            let bad = || Problem::BadInterrupts(name.to_string());
            let parent_ok = match t.prop(i, "interrupt-parent") {
                None => true,
                Some(p) => be32s(p).as_deref() == Some(&[GUEST_PHANDLE_GIC]),
            };
            let cells = be32s(v).ok_or_else(bad)?;
            if !parent_ok || t.has(i, "interrupts-extended") || !cells.len().is_multiple_of(3) {
                return Err(bad());
            }
            let host_spis = host_spis(h, hi).unwrap_or_default();
            for c in cells.chunks_exact(3) {
                if c[0] != 0 || c[1] >= 988 {
                    return Err(bad());
                }
                let intid = c[1] + 32;
                let Some(&(_, edge)) = host_spis.iter().find(|(s, _)| *s == intid) else {
                    return Err(Problem::ForeignSpi(name.to_string(), intid));
                };
                if intid == layout::GUEST_VPL011_SPI
                    || self.out.spis.iter().any(|(s, _)| *s == intid)
                {
                    return Err(Problem::SpiClash(name.to_string(), intid));
                }
                self.out.spis.push((intid, edge));
            }
        }
        Ok(())
    }
}

fn read_tree<'a>(blob: &'a [u8]) -> Result<alloc::borrow::Cow<'a, [u8]>, Problem> {
    bootcfg::validate(blob).map_err(|e| Problem::BadBlob(e.to_string()))
}

/// Reads domain `domain`'s partial device tree `blob` and checks it against the host tree.
pub fn parse_partial_dt(
    domain: &str,
    blob: &[u8],
    host_dtb: &[u8],
) -> Result<DomuPassthrough, PassthroughError> {
    parse_inner(blob, host_dtb).map_err(|problem| PassthroughError {
        domain: domain.to_string(),
        problem,
    })
}

fn parse_inner(blob: &[u8], host_dtb: &[u8]) -> Result<DomuPassthrough, Problem> {
    let host_blob = read_tree(host_dtb)
        .map_err(|_| Problem::BadBlob("the host device tree is malformed".to_string()))?;
    let host_fdt = Fdt::new(&host_blob)
        .map_err(|_| Problem::BadBlob("the host device tree is malformed".to_string()))?;
    let host = Tree::build(&host_fdt).map_err(|e| Problem::BadBlob(e.to_string()))?;

    let clean = read_tree(blob)?;
    let fdt = Fdt::new(&clean).map_err(|_| Problem::BadBlob("rejected by the reader".into()))?;
    let t = Tree::build(&fdt).map_err(|e| Problem::BadBlob(e.to_string()))?;
    let root_cells = match (
        cell_count(&t, 0, "#address-cells"),
        cell_count(&t, 0, "#size-cells"),
    ) {
        (Some(a @ 1..=2), Some(s @ 1..=2)) => (a, s),
        _ => return Err(Problem::BadRootCells),
    };
    let bus = t
        .children(0)
        .find(|&c| t.name(c) == "passthrough")
        .ok_or(Problem::NoPassthroughNode)?;
    let bus_ok = t.is_compatible(bus, "simple-bus")
        && t.prop(bus, "ranges").is_some_and(|r| r.is_empty())
        && cell_count(&t, bus, "#address-cells") == Some(2)
        && cell_count(&t, bus, "#size-cells") == Some(2);
    if !bus_ok {
        return Err(Problem::BadBusNode);
    }
    let mut walk = Walk {
        host: &host,
        root_cells,
        out: DomuPassthrough::default(),
        count: 0,
    };
    for c in t.children(bus).collect::<Vec<_>>() {
        let node = walk.node(&t, c)?;
        walk.out.nodes.push(node);
    }
    Ok(walk.out)
}

/// Checks that no two domains take the same host node, host MMIO page or SPI. Returns the
/// first conflict, naming the later domain of the pair.
pub fn check_disjoint(claims: &[(&str, &DomuPassthrough)]) -> Result<(), PassthroughError> {
    for (k, (domain, later)) in claims.iter().enumerate() {
        let err = |problem| PassthroughError {
            domain: domain.to_string(),
            problem,
        };
        for (_, earlier) in &claims[..k] {
            if let Some(p) = later
                .host_paths
                .iter()
                .find(|p| earlier.host_paths.contains(p))
            {
                return Err(err(Problem::ClaimedTwice(p.clone(), p.clone())));
            }
            if let Some(m) = later
                .mmio
                .iter()
                .find(|m| earlier.mmio.iter().any(|e| e.host.overlaps(&m.host)))
            {
                return Err(err(Problem::HostMmioShared(
                    format!("{:#x}", m.host.start.raw()),
                    m.host.start.raw(),
                )));
            }
            if let Some((s, _)) = later
                .spis
                .iter()
                .find(|(s, _)| earlier.spis.iter().any(|(e, _)| e == s))
            {
                return Err(err(Problem::SpiClash(format!("interrupt {s}"), *s)));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloc::vec;
    use vm_fdt::FdtWriter;

    /// A host tree: a virtio transport marked for passthrough, one not marked, a GIC.
    fn host() -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let r = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        for (addr, spi, marked) in [
            (0xa00_3e00u64, 47u32, true),
            (0xa00_3c00, 46, false),
            (0xa00_2e00, 45, true),
        ] {
            let n = w.begin_node(&format!("virtio_mmio@{addr:x}")).unwrap();
            w.property_string("compatible", "virtio,mmio").unwrap();
            w.property_array_u64("reg", &[addr, 0x200]).unwrap();
            w.property_array_u32("interrupts", &[0, spi - 32, 1])
                .unwrap();
            if marked {
                w.property_null("xen,passthrough").unwrap();
            }
            w.end_node(n).unwrap();
        }
        w.end_node(r).unwrap();
        w.finish().unwrap()
    }

    type Props<'a> = &'a [(&'a str, &'a [u32])];

    /// A partial tree with one device node under /passthrough.
    fn partial(
        root_cells: (u32, u32),
        node: &str,
        props: Props<'_>,
        path: Option<&str>,
    ) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let r = w.begin_node("").unwrap();
        w.property_u32("#address-cells", root_cells.0).unwrap();
        w.property_u32("#size-cells", root_cells.1).unwrap();
        let b = w.begin_node("passthrough").unwrap();
        w.property_string("compatible", "simple-bus").unwrap();
        w.property_null("ranges").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let n = w.begin_node(node).unwrap();
        w.property_string("compatible", "virtio,mmio").unwrap();
        for (name, cells) in props {
            w.property_array_u32(name, cells).unwrap();
        }
        if let Some(p) = path {
            w.property_string("xen,path", p).unwrap();
        }
        let c = w.begin_node("child").unwrap();
        w.property_u32("x", 1).unwrap();
        w.end_node(c).unwrap();
        w.end_node(n).unwrap();
        w.end_node(b).unwrap();
        w.end_node(r).unwrap();
        w.finish().unwrap()
    }

    const GOOD_REG: &[u32] = &[0, 0xa00_3000, 0, 0x1000, 0, 0xa00_3000];
    const GOOD: Props<'static> = &[
        ("reg", &[0, 0xa00_3e00, 0, 0x200]),
        ("interrupts", &[0, 15, 1]),
        ("interrupt-parent", &[GUEST_PHANDLE_GIC]),
        ("xen,reg", GOOD_REG),
    ];

    fn good() -> Vec<u8> {
        partial(
            (2, 2),
            "virtio_mmio@a003e00",
            GOOD,
            Some("/virtio_mmio@a003e00"),
        )
    }

    #[test]
    fn parses_a_virtio_transport() {
        let pt = parse_partial_dt("domU1", &good(), &host()).unwrap();
        assert_eq!(pt.host_paths, ["/virtio_mmio@a003e00"]);
        assert_eq!(pt.spis, [(47, true)]);
        assert_eq!(
            pt.mmio,
            [MmioMapping {
                guest: GuestRange::new(GuestPhysAddr::new(0xa00_3000), 0x1000).unwrap(),
                host: HostRange::new(HostPhysAddr::new(0xa00_3000), 0x1000).unwrap(),
            }]
        );
        assert_eq!(pt.nodes.len(), 1);
        let n = &pt.nodes[0];
        assert_eq!(n.name, "virtio_mmio@a003e00");
        let names: Vec<&str> = n.props.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["compatible", "reg", "interrupts", "interrupt-parent"]
        );
        assert_eq!(n.children.len(), 1);
        assert_eq!(n.children[0].name, "child");
    }

    #[test]
    fn one_cell_root_and_guest_address_elsewhere() {
        let dtb = partial(
            (1, 1),
            "dev@10000000",
            &[("xen,reg", &[0xa00_3000, 0x1000, 0x1000_0000])],
            Some("/virtio_mmio@a003e00"),
        );
        let pt = parse_partial_dt("domU1", &dtb, &host()).unwrap();
        assert_eq!(pt.mmio[0].guest.start.raw(), 0x1000_0000);
        assert_eq!(pt.mmio[0].host.start.raw(), 0xa00_3000);
        assert!(pt.spis.is_empty());
    }

    fn problem(dtb: &[u8]) -> String {
        let e = parse_partial_dt("domU3", dtb, &host()).unwrap_err();
        let line = e.to_string();
        assert!(!line.contains('\n'));
        assert!(
            line.starts_with("domain domU3: partial device tree: "),
            "{line}"
        );
        line
    }

    #[test]
    fn bad_inputs_are_refused_with_one_line() {
        let n = "virtio_mmio@a003e00";
        let p = Some("/virtio_mmio@a003e00");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"garbage".to_vec(), "not a device tree"),
            (vec![0u8; 100], "not a device tree"),
            (good()[..60].to_vec(), "not a device tree"),
            (
                partial((2, 2), n, GOOD, Some("/nope@1")),
                "xen,path /nope@1 is not in the host device tree",
            ),
            (
                partial((2, 2), n, GOOD, Some("/virtio_mmio")),
                "is not in the host device tree",
            ),
            (
                partial(
                    (2, 2),
                    n,
                    &[("xen,reg", &[0, 0xa00_3000, 0, 0x1000, 0, 0x1000_0000])],
                    Some("/virtio_mmio@a003c00"),
                ),
                "has no xen,passthrough property",
            ),
            (
                partial(
                    (2, 2),
                    n,
                    &[("xen,reg", &[0, 0xa00_2000, 0, 0x1000, 0, 0x1000_0000])],
                    p,
                ),
                "is outside the host node's reg",
            ),
            (
                partial(
                    (2, 2),
                    n,
                    &[("xen,reg", &[0, 0xa00_3000, 0, 0x2000, 0, 0x1000_0000])],
                    p,
                ),
                "is outside the host node's reg",
            ),
            (
                partial(
                    (2, 2),
                    n,
                    &[("xen,reg", &[0, 0xa00_3e00, 0, 0x200, 0, 0x1000_0000])],
                    p,
                ),
                "not page-aligned",
            ),
            (
                partial(
                    (2, 2),
                    n,
                    &[("xen,reg", &[0, 0xa00_3000, 0, 0x1000, 0, 0x1000_0800])],
                    p,
                ),
                "not page-aligned",
            ),
            (
                partial((2, 2), n, &[("xen,reg", &[0, 0xa00_3000, 0, 0x1000])], p),
                "xen,reg is not whole",
            ),
            (
                partial(
                    (2, 2),
                    n,
                    &[("xen,reg", &[0, 0xa00_3000, 0, 0x1000, 0, 0x4000_0000])],
                    p,
                ),
                "overlaps guest RAM",
            ),
            (
                partial(
                    (2, 2),
                    n,
                    &[("xen,reg", &[0, 0xa00_3000, 0, 0x1000, 0, 0x0300_1000])],
                    p,
                ),
                "overlaps guest RAM",
            ),
            (
                partial((2, 2), n, &[("interrupts", &[0, 14, 1])], p),
                "interrupt 46 does not belong to the host node",
            ),
            (
                partial((2, 2), n, &[("interrupts", &[1, 15, 1])], p),
                "3-cell GIC SPIs",
            ),
            (
                partial((2, 2), n, &[("interrupts", &[0, 15])], p),
                "3-cell GIC SPIs",
            ),
            (
                partial(
                    (2, 2),
                    n,
                    &[("interrupts", &[0, 15, 1]), ("interrupt-parent", &[7])],
                    p,
                ),
                "3-cell GIC SPIs",
            ),
            (
                partial((2, 2), n, &[("interrupts", &[0, 15, 1, 0, 15, 1])], p),
                "interrupt 47 is already assigned",
            ),
            (
                partial((2, 2), n, &[("xen,reg", GOOD_REG)], None),
                "xen,reg or interrupts without xen,path",
            ),
            (
                partial((2, 2), n, &[("phandle", &[GUEST_PHANDLE_GIC])], None),
                "reserved for the GIC",
            ),
            (partial((3, 2), n, GOOD, p), "root #address-cells"),
        ];
        for (dtb, want) in cases {
            let line = problem(&dtb);
            assert!(line.contains(want), "{line:?} should contain {want:?}");
        }
        // xen,path not a string.
        let mut w = FdtWriter::new().unwrap();
        let r = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let b = w.begin_node("passthrough").unwrap();
        w.end_node(b).unwrap();
        w.end_node(r).unwrap();
        assert!(problem(&w.finish().unwrap()).contains("/passthrough must be a simple-bus"));
        let mut w = FdtWriter::new().unwrap();
        let r = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.end_node(r).unwrap();
        assert!(problem(&w.finish().unwrap()).contains("no /passthrough node"));
        // A garbage host tree is an error too, not a panic.
        assert!(parse_partial_dt("d", &good(), b"junk").is_err());
    }

    #[test]
    fn the_same_host_node_twice_in_one_tree() {
        let mut w = FdtWriter::new().unwrap();
        let r = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let b = w.begin_node("passthrough").unwrap();
        w.property_string("compatible", "simple-bus").unwrap();
        w.property_null("ranges").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        for name in ["a@1", "b@2"] {
            let n = w.begin_node(name).unwrap();
            w.property_string("xen,path", "/virtio_mmio@a003e00")
                .unwrap();
            w.end_node(n).unwrap();
        }
        w.end_node(b).unwrap();
        w.end_node(r).unwrap();
        let line = problem(&w.finish().unwrap());
        assert!(
            line.contains("b@2: host node /virtio_mmio@a003e00 is already assigned"),
            "{line}"
        );
    }

    #[test]
    fn claims_across_domains_must_be_disjoint() {
        let a = parse_partial_dt("domU1", &good(), &host()).unwrap();
        let b = parse_partial_dt("domU2", &good(), &host()).unwrap();
        let e = check_disjoint(&[("domU1", &a), ("domU2", &b)]).unwrap_err();
        assert_eq!(e.domain, "domU2");
        assert!(e.to_string().contains("already assigned"));
        let other = partial(
            (2, 2),
            "virtio_mmio@a002e00",
            &[
                ("interrupts", &[0, 13, 1]),
                ("xen,reg", &[0, 0xa00_2000, 0, 0x1000, 0, 0xa00_2000]),
            ],
            Some("/virtio_mmio@a002e00"),
        );
        let c = parse_partial_dt("domU2", &other, &host()).unwrap();
        assert_eq!(c.spis, [(45, true)]);
        check_disjoint(&[("domU1", &a), ("domU2", &c)]).unwrap();
        // Same MMIO page, different node: still a clash.
        let mut d = c.clone();
        d.mmio = a.mmio.clone();
        assert!(check_disjoint(&[("domU1", &a), ("domU2", &d)]).is_err());
        let mut s = c.clone();
        s.spis = vec![(47, true)];
        assert!(check_disjoint(&[("domU1", &a), ("domU2", &s)]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn mutated_partial_trees_never_panic(edits in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 1..6)) {
            let mut dtb = good();
            for (at, b) in edits {
                if at < dtb.len() {
                    dtb[at] = b;
                }
            }
            let _ = parse_partial_dt("domU1", &dtb, &host());
        }
    }
}
