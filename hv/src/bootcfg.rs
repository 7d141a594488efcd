//! The host device tree, read once at boot: RAM, CPUs, PSCI, GIC, timer, console UART, and
//! the domains to start, described with Xen's dom0less bindings
//! (`docs/misc/arm/device-tree/booting.txt`).
//!
//! The DTB comes from firmware or the boot loader. A DTB that is not usable at all (bad
//! structure, no RAM, no GIC, no CPUs, no timer) is a [`BootCfgError`]. A bad *domain*
//! description only turns that domain into an `Err` entry of [`HostInfo::domains`] whose
//! `Display` is one line naming the domain and the problem; the other domains still boot.
//!
//! The `fdt` crate (0.1.5) panics on malformed blobs, so [`parse`] first checks the whole
//! structure itself ([`validate`]) and only then lets `fdt` walk it; NOP tags, which that crate
//! mishandles, are stripped into a private copy first. Property values are decoded here, with
//! bounds checks, never through the crate's panicking helpers.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use fdt::node::FdtNode;
use fdt::Fdt;

use crate::addr::{HostPhysAddr, HostRange, PAGE_SIZE};
use crate::cmdline::{self, HvCmdline};
use mica_guest_abi::layout::MAX_VCPUS;

/// dom0's RAM when the command line has no (valid) `dom0_mem=`.
pub const DEFAULT_DOM0_MEM: u64 = 512 << 20;

/// Deepest node nesting accepted (the `fdt` crate keeps a 64-entry parent stack).
const MAX_DEPTH: usize = 32;
/// Most nodes accepted; real boards have a few hundred.
const MAX_NODES: usize = 8192;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
const HEADER_SIZE: usize = 40;

/// Why the host device tree cannot be used at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootCfgError {
    /// The blob is not a well-formed flattened device tree; the text says where.
    BadDtb(&'static str),
    /// No `/memory` node with a usable `reg`.
    NoMemory,
    /// No CPU nodes with a usable `reg` under `/cpus`.
    NoCpus,
    /// No GICv2/GICv3 interrupt controller node.
    NoGic,
    /// The GIC node is unusable; the text says why.
    BadGic(&'static str),
    /// No `arm,armv8-timer` node.
    NoTimer,
    /// The timer node is unusable; the text says why.
    BadTimer(&'static str),
}

impl fmt::Display for BootCfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadDtb(why) => write!(f, "host device tree is malformed: {why}"),
            Self::NoMemory => f.write_str("host device tree has no usable /memory node"),
            Self::NoCpus => f.write_str("host device tree has no usable cpu nodes under /cpus"),
            Self::NoGic => f.write_str("host device tree has no GICv2/GICv3 interrupt controller"),
            Self::BadGic(why) => write!(f, "host GIC node is unusable: {why}"),
            Self::NoTimer => f.write_str("host device tree has no arm,armv8-timer node"),
            Self::BadTimer(why) => write!(f, "host timer node is unusable: {why}"),
        }
    }
}

/// One physical CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// Its MPIDR affinity value (the `reg` of its cpu node).
    pub mpidr: u64,
    /// Where to write its entry point if it waits in a spin table (`enable-method =
    /// "spin-table"`, `cpu-release-addr`: the Raspberry Pi 4); `None`: started with PSCI.
    pub release_addr: Option<u64>,
}

/// How to call PSCI firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    /// `HVC #0` (firmware in a hypervisor above us: unusual at EL2).
    Hvc,
    /// `SMC #0`.
    Smc,
}

/// GIC architecture version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 (`arm,gic-400`, `arm,cortex-a15-gic`, ...).
    V2,
    /// GICv3 (`arm,gic-v3`).
    V3,
}

/// The host's root interrupt controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GicInfo {
    /// Architecture version.
    pub version: GicVersion,
    /// Distributor.
    pub dist: HostRange,
    /// GICv3 redistributor regions (empty for v2).
    pub redist: Vec<HostRange>,
    /// `redistributor-stride`, if given.
    pub redist_stride: Option<u64>,
    /// CPU interface (v2 `reg[1]`; v3 optional legacy GICC).
    pub cpu_if: Option<HostRange>,
    /// Virtual interface control (GICH).
    pub hyp_if: Option<HostRange>,
    /// Virtual CPU interface (GICV).
    pub vcpu_if: Option<HostRange>,
    /// INTID of the maintenance interrupt.
    pub maintenance_intid: Option<u32>,
    /// Its `phandle`, if any.
    pub phandle: Option<u32>,
    /// Full node path, e.g. `/intc@8000000`.
    pub node_path: String,
}

/// The architected timer's interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerInfo {
    /// Secure EL1 physical timer INTID.
    pub secure_phys_intid: u32,
    /// Non-secure EL1 physical timer INTID.
    pub phys_intid: u32,
    /// EL1 virtual timer INTID.
    pub virt_intid: u32,
    /// EL2 (hypervisor) physical timer INTID.
    pub hyp_intid: u32,
    /// The raw third (flags) cell of each of the four, in that order, for guest DTs.
    pub flags: [u32; 4],
}

/// The console UART.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UartInfo {
    /// Node path, e.g. `/pl011@9000000`.
    pub path: String,
    /// Its first `reg` region.
    pub base: HostRange,
    /// Its interrupt, if it has a decodable one.
    pub intid: Option<u32>,
    /// Its `compatible` strings.
    pub compatible: Vec<String>,
}

/// Which kind of domain a [`DomainSpec`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainKind {
    /// The initial domain (dom0): modules directly under `/chosen`, direct-mapped RAM.
    Initial,
    /// A dom0less domU: a `xen,domain` node under `/chosen`.
    DomU,
}

/// A domain to build, as the device tree describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    /// Node name (`domU1`), or `dom0` for the initial domain.
    pub name: String,
    /// Initial domain or domU.
    pub kind: DomainKind,
    /// RAM in bytes (a whole number of pages).
    pub memory_bytes: u64,
    /// Number of vCPUs (1..=MAX_VCPUS).
    pub vcpus: u32,
    /// Whether it gets the emulated SBSA UART.
    pub vpl011: bool,
    /// Whether it gets Xen PV interfaces (`xen,enhanced` present and not `"disabled"`).
    pub enhanced: bool,
    /// The kernel image in host memory.
    pub kernel: HostRange,
    /// The initial ramdisk, if any.
    pub ramdisk: Option<HostRange>,
    /// A partial device tree module (`multiboot,device-tree`), recorded but not used yet.
    pub device_tree: Option<HostRange>,
    /// Kernel command line.
    pub bootargs: Option<String>,
    /// Host memory the domain must use (Xen's `xen,static-mem`, one bank), direct-mapped
    /// (guest address = host address, Xen's `direct-map`) so devices passed through without
    /// an IOMMU can DMA to it.
    pub static_mem: Option<HostRange>,
}

/// What a boot module is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModuleKind {
    /// `multiboot,kernel`.
    Kernel,
    /// `multiboot,ramdisk`.
    Ramdisk,
    /// `multiboot,device-tree`.
    DeviceTree,
}

impl fmt::Display for ModuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kernel => "kernel",
            Self::Ramdisk => "ramdisk",
            Self::DeviceTree => "device-tree",
        })
    }
}

/// What is wrong with one domain's description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainProblem {
    /// No `multiboot,kernel` module.
    MissingKernel,
    /// Two modules of the same kind.
    DuplicateModule(String, ModuleKind),
    /// No `cpus` property (domUs).
    MissingCpus,
    /// `cpus` is zero or above [`MAX_VCPUS`].
    BadCpus(u32),
    /// No `memory` property (domUs).
    MissingMemory,
    /// The memory size is unusable; the text says why.
    BadMemory(String),
    /// `#address-cells`/`#size-cells` missing or not 1 or 2.
    BadCells,
    /// A module's `reg` is not exactly one entry of the domain's cell sizes.
    BadModuleReg(String),
    /// A module child with a missing or unknown `compatible`.
    BadModuleCompatible(String),
    /// A module of size 0.
    EmptyModule(String, ModuleKind),
    /// A module that starts outside RAM.
    ModuleOutsideRam(String, ModuleKind),
    /// A module that starts in RAM but runs past the end of its bank (truncated).
    ModulePastRamEnd(String, ModuleKind),
    /// A module over Mica's image, the DTB, or host-reserved memory.
    ModuleOverlapsReserved(String, ModuleKind, HostRange),
    /// A module over another module (`other` names it: `domU1/module@50000000`).
    ModuleOverlapsModule(String, ModuleKind, String),
    /// `xen,static-mem` / `direct-map` unusable; the text says why.
    BadStaticMem(String),
}

impl fmt::Display for DomainProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingKernel => f.write_str("no multiboot,kernel module"),
            Self::DuplicateModule(m, k) => write!(f, "{m}: second {k} module"),
            Self::MissingCpus => f.write_str("no cpus property"),
            Self::BadCpus(n) => write!(f, "cpus = {n}, must be 1 to {MAX_VCPUS}"),
            Self::MissingMemory => f.write_str("no memory property"),
            Self::BadMemory(why) => write!(f, "memory {why}"),
            Self::BadStaticMem(why) => write!(f, "xen,static-mem {why}"),
            Self::BadCells => f.write_str("#address-cells/#size-cells missing or not 1 or 2"),
            Self::BadModuleReg(m) => {
                write!(
                    f,
                    "{m}: reg is not one <address size> pair of the domain's cell sizes"
                )
            }
            Self::BadModuleCompatible(m) => write!(
                f,
                "{m}: compatible missing or not multiboot,kernel/ramdisk/device-tree"
            ),
            Self::EmptyModule(m, k) => write!(f, "{m} ({k}) is empty"),
            Self::ModuleOutsideRam(m, k) => write!(f, "{m} ({k}) lies outside RAM"),
            Self::ModulePastRamEnd(m, k) => write!(f, "{m} ({k}) runs past the end of RAM"),
            Self::ModuleOverlapsReserved(m, k, r) => write!(
                f,
                "{m} ({k}) overlaps reserved memory {:#x}..{:#x} (Mica, DTB or firmware)",
                r.start.raw(),
                r.end().raw()
            ),
            Self::ModuleOverlapsModule(m, k, other) => write!(f, "{m} ({k}) overlaps {other}"),
        }
    }
}

/// One domain that cannot be built. `Display` is one line: `domain domU2: <problem>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainError {
    /// The domain's name (`dom0` for the initial domain).
    pub domain: String,
    /// What is wrong.
    pub problem: DomainProblem,
}

impl fmt::Display for DomainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "domain {}: {}", self.domain, self.problem)
    }
}

/// Everything Mica needs from the host device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// RAM banks (every `/memory` node's `reg` entries).
    pub memory: Vec<HostRange>,
    /// `/memreserve/` entries and `/reserved-memory` children.
    pub reserved: Vec<HostRange>,
    /// Physical CPUs, in device-tree order.
    pub cpus: Vec<CpuInfo>,
    /// PSCI conduit, if a PSCI node exists with a known `method`.
    pub psci: Option<PsciConduit>,
    /// The root interrupt controller.
    pub gic: GicInfo,
    /// The architected timer.
    pub timer: TimerInfo,
    /// The console UART, if one could be found.
    pub uart: Option<UartInfo>,
    /// The root node's `compatible` strings.
    pub root_compatible: Vec<String>,
    /// `/chosen/xen,xen-bootargs`.
    pub bootargs: Option<String>,
    /// `bootargs` parsed.
    pub cmdline: HvCmdline,
    /// Domains to build: the initial domain first, if described.
    pub domains: Vec<Result<DomainSpec, DomainError>>,
    /// Non-fatal oddities worth printing (skipped nodes, capped values).
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Structural validation.

fn be32(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be64(data: &[u8], off: usize) -> Option<u64> {
    Some((u64::from(be32(data, off)?) << 32) | u64::from(be32(data, off.checked_add(4)?)?))
}

fn align4(x: usize) -> Option<usize> {
    Some(x.checked_add(3)? & !3)
}

/// A NUL-terminated UTF-8 string starting at `off`; returns it and its length without NUL.
fn cstr_at(data: &[u8], off: usize) -> Option<&str> {
    let tail = data.get(off..)?;
    let len = tail.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&tail[..len]).ok()
}

/// Checks that `dtb` is a well-formed flattened device tree that the `fdt` crate can walk
/// without panicking, and returns it (or a copy with NOP tags removed).
pub fn validate(dtb: &[u8]) -> Result<Cow<'_, [u8]>, BootCfgError> {
    let bad = BootCfgError::BadDtb;
    if dtb.len() < HEADER_SIZE {
        return Err(bad("shorter than a header"));
    }
    let h = |i: usize| be32(dtb, i * 4).map(|v| v as usize).ok_or(bad("header"));
    if h(0)? as u32 != FDT_MAGIC {
        return Err(bad("bad magic"));
    }
    let total = h(1)?;
    let (off_struct, off_strings, off_rsv) = (h(2)?, h(3)?, h(4)?);
    let (version, size_strings, size_struct) = (h(5)?, h(8)?, h(9)?);
    if total > dtb.len() || total < HEADER_SIZE {
        return Err(bad("totalsize does not match the buffer"));
    }
    if version < 17 || size_struct == 0 {
        return Err(bad("unsupported version (need 17)"));
    }
    let data = &dtb[..total];
    let struct_end = off_struct
        .checked_add(size_struct)
        .ok_or(bad("struct block"))?;
    let strings_end = off_strings
        .checked_add(size_strings)
        .ok_or(bad("strings block"))?;
    if struct_end > total || off_struct < HEADER_SIZE || off_struct % 4 != 0 {
        return Err(bad("struct block out of bounds"));
    }
    if strings_end > total || off_strings < HEADER_SIZE {
        return Err(bad("strings block out of bounds"));
    }
    // Memory reservation block: 16-byte entries up to an all-zero one.
    let mut off = off_rsv;
    if off < HEADER_SIZE || off % 8 != 0 {
        return Err(bad("memory reservation block misplaced"));
    }
    loop {
        let addr = be64(data, off).ok_or(bad("unterminated memory reservation block"))?;
        let size = be64(data, off + 8).ok_or(bad("unterminated memory reservation block"))?;
        if addr == 0 && size == 0 {
            break;
        }
        off += 16;
    }
    let structs = &data[off_struct..struct_end];
    let strings = &data[off_strings..strings_end];
    // Walk the struct block.
    let mut off = 0usize;
    let mut depth = 0usize;
    let mut nodes = 0usize;
    let mut seen_root = false;
    let mut has_nop = false;
    // Whether the current node already has a child (properties must come first).
    let mut had_child = [false; MAX_DEPTH + 1];
    loop {
        let tag = be32(structs, off).ok_or(bad("struct block ends without FDT_END"))?;
        off += 4;
        match tag {
            FDT_BEGIN_NODE => {
                if depth == 0 && seen_root {
                    return Err(bad("more than one root node"));
                }
                if depth >= MAX_DEPTH {
                    return Err(bad("nodes nested too deeply"));
                }
                nodes += 1;
                if nodes > MAX_NODES {
                    return Err(bad("too many nodes"));
                }
                let name = cstr_at(structs, off).ok_or(bad("bad node name"))?;
                off = align4(off + name.len() + 1).ok_or(bad("bad node name"))?;
                had_child[depth] = true;
                depth += 1;
                had_child[depth] = false;
                seen_root = true;
            }
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(bad("unbalanced end of node"));
                }
                depth -= 1;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(bad("property outside a node"));
                }
                if had_child[depth] {
                    return Err(bad("property after a child node"));
                }
                let len = be32(structs, off).ok_or(bad("truncated property"))? as usize;
                let name_off = be32(structs, off + 4).ok_or(bad("truncated property"))? as usize;
                off += 8;
                let end = off.checked_add(len).ok_or(bad("truncated property"))?;
                if end > structs.len() {
                    return Err(bad("property value past the struct block"));
                }
                let name = cstr_at(strings, name_off).ok_or(bad("bad property name"))?;
                if (name == "#address-cells" || name == "#size-cells") && len < 4 {
                    return Err(bad("short #address-cells/#size-cells"));
                }
                off = align4(end).ok_or(bad("truncated property"))?;
            }
            FDT_NOP => has_nop = true,
            FDT_END => {
                if depth != 0 || !seen_root {
                    return Err(bad("FDT_END inside a node or before the root"));
                }
                break;
            }
            _ => return Err(bad("unknown structure tag")),
        }
    }
    if !has_nop {
        return Ok(Cow::Borrowed(data));
    }
    // Rebuild with the NOPs left out: header, reservations, struct, strings, in that order.
    let mut rsv_end = off_rsv;
    while be64(data, rsv_end) != Some(0) || be64(data, rsv_end + 8) != Some(0) {
        rsv_end += 16;
    }
    rsv_end += 16;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&data[..HEADER_SIZE]);
    let new_rsv = out.len();
    out.extend_from_slice(&data[off_rsv..rsv_end]);
    let new_struct = out.len();
    let mut p = 0usize;
    loop {
        let tag = be32(structs, p).ok_or(bad("struct block"))?;
        let start = p;
        p += 4;
        match tag {
            FDT_BEGIN_NODE => {
                let name = cstr_at(structs, p).ok_or(bad("struct block"))?;
                p = align4(p + name.len() + 1).ok_or(bad("struct block"))?;
            }
            FDT_PROP => {
                let len = be32(structs, p).ok_or(bad("struct block"))? as usize;
                p = align4(p + 8 + len).ok_or(bad("struct block"))?;
            }
            _ => {}
        }
        if tag != FDT_NOP {
            out.extend_from_slice(structs.get(start..p).ok_or(bad("struct block"))?);
        }
        if tag == FDT_END {
            break;
        }
    }
    let new_struct_size = out.len() - new_struct;
    let new_strings = out.len();
    out.extend_from_slice(strings);
    let fields = [
        (1, out.len()),
        (2, new_struct),
        (3, new_strings),
        (4, new_rsv),
        (9, new_struct_size),
    ];
    for (i, v) in fields {
        let v = u32::try_from(v).map_err(|_| bad("too large"))?;
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    Ok(Cow::Owned(out))
}

// ---------------------------------------------------------------------------------------------
// A small index over the validated tree.

pub(crate) struct Node<'b, 'a> {
    pub(crate) node: FdtNode<'b, 'a>,
    pub(crate) path: String,
    pub(crate) parent: Option<usize>,
}

/// Every node of a validated tree, in breadth-first order (index 0 is the root).
pub(crate) struct Tree<'b, 'a> {
    pub(crate) nodes: Vec<Node<'b, 'a>>,
}

/// Splits a string-list property into its strings.
pub(crate) fn strings(v: &[u8]) -> Vec<&str> {
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    if v.is_empty() {
        return Vec::new();
    }
    v.split(|&b| b == 0)
        .filter_map(|s| core::str::from_utf8(s).ok())
        .collect()
}

/// A single-string property.
pub(crate) fn string(v: &[u8]) -> Option<&str> {
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    if v.contains(&0) {
        return None;
    }
    core::str::from_utf8(v).ok()
}

fn u32_cells(v: &[u8]) -> impl Iterator<Item = u32> + '_ {
    v.chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

fn single_u32(v: &[u8]) -> Option<u32> {
    if v.len() == 4 {
        u32_cells(v).next()
    } else {
        None
    }
}

/// Reads `cells` cells (1 or 2) as one number.
fn read_cells(it: &mut dyn Iterator<Item = u32>, cells: u32) -> Option<u64> {
    let mut v = 0u64;
    for _ in 0..cells {
        v = (v << 32) | u64::from(it.next()?);
    }
    Some(v)
}

/// Decodes a `reg` value into (address, size) pairs.
fn decode_reg(v: &[u8], ac: u32, sc: u32) -> Option<Vec<(u64, u64)>> {
    if !(1..=2).contains(&ac) || sc > 2 {
        return None;
    }
    let entry = 4 * (ac + sc) as usize;
    if v.is_empty() || !v.len().is_multiple_of(entry) {
        return None;
    }
    let mut it = u32_cells(v);
    let mut out = Vec::new();
    while let Some(a) = read_cells(&mut it, ac) {
        out.push((a, read_cells(&mut it, sc)?));
    }
    Some(out)
}

/// `addr..addr+size` of a child bus mapped through one `ranges` property.
fn map_through_ranges(
    ranges: &[u8],
    child_ac: u32,
    parent_ac: u32,
    sc: u32,
    addr: u64,
    size: u64,
) -> Option<u64> {
    if !(1..=2).contains(&child_ac) || !(1..=2).contains(&parent_ac) || !(1..=2).contains(&sc) {
        return None;
    }
    let entry = 4 * (child_ac + parent_ac + sc) as usize;
    if !ranges.len().is_multiple_of(entry) {
        return None;
    }
    let end = addr.checked_add(size)?;
    let mut it = u32_cells(ranges);
    while let Some(child) = read_cells(&mut it, child_ac) {
        let parent = read_cells(&mut it, parent_ac)?;
        let len = read_cells(&mut it, sc)?;
        if addr >= child && end <= child.checked_add(len)? {
            return parent.checked_add(addr - child);
        }
    }
    None
}

/// Decodes one GIC interrupt specifier (type, number, flags) into an INTID.
fn gic_intid(kind: u32, num: u32) -> Option<u32> {
    match kind {
        0 if num < 988 => Some(num + 32),
        1 if num < 16 => Some(num + 16),
        _ => None,
    }
}

impl<'b, 'a: 'b> Tree<'b, 'a> {
    pub(crate) fn build(fdt: &'b Fdt<'a>) -> Result<Self, BootCfgError> {
        let root = fdt
            .all_nodes()
            .next()
            .ok_or(BootCfgError::BadDtb("no root node"))?;
        let mut nodes = Vec::new();
        nodes.push(Node {
            node: root,
            path: String::from("/"),
            parent: None,
        });
        let mut i = 0;
        while i < nodes.len() {
            let parent_path = nodes[i].path.clone();
            for child in nodes[i].node.children() {
                let path = if parent_path == "/" {
                    format!("/{}", child.name)
                } else {
                    format!("{parent_path}/{}", child.name)
                };
                nodes.push(Node {
                    node: child,
                    path,
                    parent: Some(i),
                });
            }
            i += 1;
        }
        Ok(Self { nodes })
    }

    pub(crate) fn prop(&self, i: usize, name: &str) -> Option<&'a [u8]> {
        self.nodes[i]
            .node
            .properties()
            .find(|p| p.name == name)
            .map(|p| p.value)
    }

    pub(crate) fn has(&self, i: usize, name: &str) -> bool {
        self.prop(i, name).is_some()
    }

    pub(crate) fn name(&self, i: usize) -> &'a str {
        self.nodes[i].node.name
    }

    pub(crate) fn base_name(&self, i: usize) -> &'a str {
        let n = self.name(i);
        n.split('@').next().unwrap_or(n)
    }

    pub(crate) fn compatible(&self, i: usize) -> Vec<&'a str> {
        self.prop(i, "compatible").map(strings).unwrap_or_default()
    }

    pub(crate) fn is_compatible(&self, i: usize, with: &str) -> bool {
        self.compatible(i).contains(&with)
    }

    pub(crate) fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(move |&c| self.nodes[c].parent == Some(i))
    }

    /// `#address-cells`/`#size-cells` a node sets for its children (spec defaults 2/1).
    pub(crate) fn cells_of(&self, i: usize) -> (u32, u32) {
        let ac = self
            .prop(i, "#address-cells")
            .and_then(single_u32)
            .unwrap_or(2);
        let sc = self
            .prop(i, "#size-cells")
            .and_then(single_u32)
            .unwrap_or(1);
        (ac, sc)
    }

    /// A node's `reg`, decoded with its parent's cell sizes.
    pub(crate) fn reg(&self, i: usize) -> Option<Vec<(u64, u64)>> {
        let (ac, sc) = self.cells_of(self.nodes[i].parent?);
        decode_reg(self.prop(i, "reg")?, ac, sc)
    }

    /// A node's `reg` as CPU physical ranges: each address translated through the `ranges`
    /// of every bus above it (the Raspberry Pi 4's `/soc` maps bus address 0x7e000000 to
    /// 0xfe000000). A bus without `ranges`, or with an empty one, maps 1:1; an address no
    /// `ranges` entry covers makes the whole `reg` unusable.
    pub(crate) fn reg_ranges(&self, i: usize) -> Option<Vec<HostRange>> {
        self.reg(i)?
            .into_iter()
            .map(|(a, s)| {
                let a = self.translate(i, a, s)?;
                HostRange::new(HostPhysAddr::new(a), s)
            })
            .collect()
    }

    /// The windows a bus node's `ranges` opens, as CPU physical ranges (the parent side of
    /// each entry, translated up to the root). Empty for a bus without `ranges` or with an
    /// empty one (1:1: its children's `reg` say what is there). `None` if the property cannot
    /// be decoded. Child addresses may have three cells (PCI).
    pub(crate) fn bus_windows(&self, i: usize) -> Option<Vec<(u64, u64)>> {
        let Some(ranges) = self.prop(i, "ranges").filter(|v| !v.is_empty()) else {
            return Some(Vec::new());
        };
        let (child_ac, sc) = self.cells_of(i);
        let (parent_ac, _) = self.cells_of(self.nodes[i].parent?);
        if !(1..=3).contains(&child_ac) || !(1..=2).contains(&parent_ac) || !(1..=2).contains(&sc) {
            return None;
        }
        let entry = 4 * (child_ac + parent_ac + sc) as usize;
        if !ranges.len().is_multiple_of(entry) {
            return None;
        }
        let mut windows = Vec::new();
        for e in ranges.chunks_exact(entry) {
            let mut it = u32_cells(&e[4 * child_ac as usize..]);
            let parent = read_cells(&mut it, parent_ac)?;
            let size = read_cells(&mut it, sc)?;
            windows.push((self.translate(i, parent, size)?, size));
        }
        Some(windows)
    }

    /// Translates `addr` (with `size` bytes after it) from the address space of node `i`'s
    /// parent bus up to the root's.
    fn translate(&self, i: usize, mut addr: u64, size: u64) -> Option<u64> {
        let mut bus = self.nodes[i].parent?;
        // Bounded by the tree depth: every step moves one level up.
        while let Some(above) = self.nodes[bus].parent {
            if let Some(ranges) = self.prop(bus, "ranges").filter(|v| !v.is_empty()) {
                let (child_ac, sc) = self.cells_of(bus);
                let (parent_ac, _) = self.cells_of(above);
                addr = map_through_ranges(ranges, child_ac, parent_ac, sc, addr, size)?;
            }
            bus = above;
        }
        Some(addr)
    }

    /// A node by path; a component without a unit address matches any unit address.
    pub(crate) fn find(&self, path: &str) -> Option<usize> {
        let mut cur = 0;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            cur = self.children(cur).find(|&c| {
                let n = self.name(c);
                n == comp || (!comp.contains('@') && self.base_name(c) == comp)
            })?;
        }
        Some(cur)
    }

    /// A path or an alias name (resolved through `/aliases`), with `:options` stripped.
    pub(crate) fn resolve(&self, spec: &str) -> Option<usize> {
        let spec = spec.split(':').next().unwrap_or(spec);
        if spec.starts_with('/') {
            return self.find(spec);
        }
        let aliases = self.find("/aliases")?;
        let target = string(self.prop(aliases, spec)?)?;
        // One level only: an alias must name a path.
        target.starts_with('/').then(|| self.find(target))?
    }

    pub(crate) fn phandle(&self, i: usize) -> Option<u32> {
        self.prop(i, "phandle")
            .or_else(|| self.prop(i, "linux,phandle"))
            .and_then(single_u32)
    }

    /// The first interrupt of a node, as an INTID (3-cell GIC specifiers only).
    pub(crate) fn first_intid(&self, i: usize) -> Option<u32> {
        let v = self.prop(i, "interrupts")?;
        if v.len() < 12 || v.len() % 12 != 0 {
            return None;
        }
        let mut it = u32_cells(v);
        gic_intid(it.next()?, it.next()?)
    }
}

// ---------------------------------------------------------------------------------------------
// Devices the initial domain may be given.

/// A host device node with MMIO and interrupts, a candidate for passthrough.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostDevice {
    /// Full path in the host device tree.
    pub path: String,
    /// Its MMIO ranges.
    pub regs: Vec<HostRange>,
    /// Its shared peripheral interrupts: INTID and whether it is edge-triggered.
    pub spis: Vec<(u32, bool)>,
}

/// Why a device cannot be passed through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unassignable {
    /// A `reg` entry ends above this guest-physical limit.
    AboveLimit(u64),
    /// It has interrupts Mica cannot decode (not 3-cell GIC specifiers, or PPIs).
    Interrupts,
    /// A PCI host bridge: its windows and INTx/MSI routing are not passed through yet.
    PciHostBridge,
    /// Its registers share a page with this node, marked `xen,passthrough` for a domU.
    SharesPageWithDomuDevice(String),
    /// Its registers overlap a device Mica keeps for itself (its console UART).
    OverlapsMicaDevice(String),
}

impl fmt::Display for Unassignable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AboveLimit(end) => write!(
                f,
                "its registers end at {end:#x}, above the guest address space"
            ),
            Self::Interrupts => f.write_str("its interrupts are not GIC SPIs Mica can route"),
            Self::PciHostBridge => f.write_str("PCI host bridges are not passed through yet"),
            Self::OverlapsMicaDevice(p) => {
                write!(f, "its registers overlap {p}, which Mica keeps for itself")
            }
            Self::SharesPageWithDomuDevice(p) => {
                write!(
                    f,
                    "its registers share a page with {p}, which is marked for a domU"
                )
            }
        }
    }
}

/// Devices for the initial domain, and the ones refused with the reason.
pub type HostDevices = (Vec<HostDevice>, Vec<(String, Unassignable)>);

/// Every enabled device node with `reg` directly under a plain bus (root or `simple-bus`),
/// except the GIC, memory, CPUs, the buses themselves (their devices are looked at one by
/// one), the nodes named in `exclude` (Mica's own devices) and the nodes marked
/// `xen,passthrough` (they belong to domUs). Devices with a `reg` above `ipa_limit`,
/// undecodable interrupts, registers over an excluded node's, or registers in a page of a
/// `xen,passthrough` node come back in the second list with the reason.
pub fn host_devices(
    dtb: &[u8],
    exclude: &[&str],
    ipa_limit: u64,
) -> Result<HostDevices, BootCfgError> {
    let clean = validate(dtb)?;
    let fdt = Fdt::new(&clean).map_err(|_| BootCfgError::BadDtb("unparseable"))?;
    let t = Tree::build(&fdt)?;
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    // The page ranges `[start, end)` of the nodes `pick` selects, with their paths.
    let pages_of = |pick: &dyn Fn(usize) -> bool| -> Vec<(u64, u64, &str)> {
        (1..t.nodes.len())
            .filter(|&i| pick(i))
            .flat_map(|i| {
                let path = t.nodes[i].path.as_str();
                t.reg_ranges(i)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |r| {
                        let start = r.start.align_down(PAGE_SIZE).raw();
                        let end = r.end().checked_align_up(PAGE_SIZE)?.raw();
                        Some((start, end, path))
                    })
            })
            .collect()
    };
    // Pages of the devices set aside for domUs.
    let domu_pages = pages_of(&|i| t.has(i, "xen,passthrough"));
    // Pages of Mica's own devices: a bus window around them must not reach dom0 either.
    let mica_pages = pages_of(&|i| exclude.contains(&t.nodes[i].path.as_str()));
    for i in 1..t.nodes.len() {
        let Some(parent) = t.nodes[i].parent else {
            continue;
        };
        let on_bus = parent == 0 || t.is_compatible(parent, "simple-bus");
        // A bus with its own `reg` (the i.MX AIPS buses) spans all its devices, Mica's
        // UART among them: only the devices on it are candidates.
        if t.is_compatible(i, "simple-bus") && t.children(i).next().is_some() {
            continue;
        }
        let name = t.base_name(i);
        let path = t.nodes[i].path.as_str();
        let disabled = t
            .prop(i, "status")
            .and_then(string)
            .is_some_and(|s| s != "okay" && s != "ok");
        let is_pci = t.prop(i, "device_type").and_then(string) == Some("pci");
        if on_bus && is_pci && !disabled {
            refused.push((path.to_string(), Unassignable::PciHostBridge));
            continue;
        }
        let special = matches!(
            name,
            "memory" | "cpus" | "chosen" | "aliases" | "reserved-memory"
        ) || t.has(i, "interrupt-controller")
            || t.has(i, "xen,passthrough")
            || exclude.contains(&path);
        if !on_bus || disabled || special || !t.has(i, "reg") {
            continue;
        }
        let Some(regs) = t.reg_ranges(i) else {
            continue;
        };
        if let Some(r) = regs.iter().find(|r| r.end().raw() > ipa_limit) {
            refused.push((path.to_string(), Unassignable::AboveLimit(r.end().raw())));
            continue;
        }
        let over_mica = mica_pages.iter().find(|&&(start, end, _)| {
            regs.iter()
                .any(|r| r.start.raw() < end && start < r.end().raw())
        });
        if let Some(&(_, _, mica)) = over_mica {
            refused.push((
                path.to_string(),
                Unassignable::OverlapsMicaDevice(mica.to_string()),
            ));
            continue;
        }
        let shared = domu_pages.iter().find(|&&(start, end, _)| {
            regs.iter()
                .any(|r| r.start.raw() < end && start < r.end().raw())
        });
        if let Some(&(_, _, owner)) = shared {
            refused.push((
                path.to_string(),
                Unassignable::SharesPageWithDomuDevice(owner.to_string()),
            ));
            continue;
        }
        let mut spis = Vec::new();
        if let Some(v) = t.prop(i, "interrupts") {
            if v.len() % 12 != 0 {
                refused.push((path.to_string(), Unassignable::Interrupts));
                continue;
            }
            let cells: Vec<u32> = u32_cells(v).collect();
            let mut bad = false;
            for spec in cells.chunks(3) {
                // Flags 1 and 2 are the rising and falling edges; 4 and 8 the levels.
                let edge = spec[2] & 0x3 != 0;
                match gic_intid(spec[0], spec[1]) {
                    Some(intid) if intid >= 32 => spis.push((intid, edge)),
                    _ => bad = true,
                }
            }
            if bad {
                refused.push((path.to_string(), Unassignable::Interrupts));
                continue;
            }
        }
        ok.push(HostDevice {
            path: path.to_string(),
            regs,
            spis,
        });
    }
    Ok((ok, refused))
}

// ---------------------------------------------------------------------------------------------
// Host pieces.

const GIC_V2_COMPATIBLES: &[&str] = &[
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
];

fn parse_gic(t: &Tree<'_, '_>) -> Result<GicInfo, BootCfgError> {
    let version = |i: usize| {
        if !t.has(i, "interrupt-controller") {
            None
        } else if t.is_compatible(i, "arm,gic-v3") {
            Some(GicVersion::V3)
        } else if GIC_V2_COMPATIBLES.iter().any(|c| t.is_compatible(i, c)) {
            Some(GicVersion::V2)
        } else {
            None
        }
    };
    let candidates: Vec<usize> = (0..t.nodes.len())
        .filter(|&i| version(i).is_some())
        .collect();
    let root_parent = t.prop(0, "interrupt-parent").and_then(single_u32);
    let i = candidates
        .iter()
        .copied()
        .find(|&i| root_parent.is_some() && t.phandle(i) == root_parent)
        .or_else(|| candidates.first().copied())
        .ok_or(BootCfgError::NoGic)?;
    let version = version(i).ok_or(BootCfgError::NoGic)?;
    let regs = t
        .reg_ranges(i)
        .ok_or(BootCfgError::BadGic("reg missing or malformed"))?;
    let mut regs = regs.into_iter();
    let dist = regs
        .next()
        .ok_or(BootCfgError::BadGic("no distributor in reg"))?;
    let mut redist = Vec::new();
    if version == GicVersion::V3 {
        let count = t
            .prop(i, "#redistributor-regions")
            .and_then(single_u32)
            .unwrap_or(1);
        for _ in 0..count {
            redist.push(
                regs.next()
                    .ok_or(BootCfgError::BadGic("missing redistributor region"))?,
            );
        }
    }
    let cpu_if = regs.next();
    if version == GicVersion::V2 && cpu_if.is_none() {
        return Err(BootCfgError::BadGic("GICv2 without a CPU interface"));
    }
    let hyp_if = regs.next();
    let vcpu_if = regs.next();
    let redist_stride = t
        .prop(i, "redistributor-stride")
        .and_then(|v| match v.len() {
            4 => single_u32(v).map(u64::from),
            8 => be64(v, 0),
            _ => None,
        });
    Ok(GicInfo {
        version,
        dist,
        redist,
        redist_stride,
        cpu_if,
        hyp_if,
        vcpu_if,
        maintenance_intid: t.first_intid(i),
        phandle: t.phandle(i),
        node_path: t.nodes[i].path.clone(),
    })
}

fn parse_timer(t: &Tree<'_, '_>) -> Result<TimerInfo, BootCfgError> {
    let i = (0..t.nodes.len())
        .find(|&i| t.is_compatible(i, "arm,armv8-timer"))
        .ok_or(BootCfgError::NoTimer)?;
    let v = t
        .prop(i, "interrupts")
        .ok_or(BootCfgError::BadTimer("no interrupts"))?;
    if v.len() % 12 != 0 || v.len() < 48 {
        return Err(BootCfgError::BadTimer(
            "interrupts is not four 3-cell specifiers",
        ));
    }
    let cells: Vec<u32> = u32_cells(v).collect();
    let mut intids = [0u32; 4];
    let mut flags = [0u32; 4];
    for k in 0..4 {
        intids[k] = gic_intid(cells[3 * k], cells[3 * k + 1]).ok_or(BootCfgError::BadTimer(
            "interrupt is not a valid SPI or PPI",
        ))?;
        flags[k] = cells[3 * k + 2];
    }
    Ok(TimerInfo {
        secure_phys_intid: intids[0],
        phys_intid: intids[1],
        virt_intid: intids[2],
        hyp_intid: intids[3],
        flags,
    })
}

fn parse_cpus(t: &Tree<'_, '_>, warnings: &mut Vec<String>) -> Result<Vec<CpuInfo>, BootCfgError> {
    let parent = t.find("/cpus").ok_or(BootCfgError::NoCpus)?;
    let (ac, _) = t.cells_of(parent);
    let mut cpus = Vec::new();
    for c in t.children(parent) {
        let device_type = t.prop(c, "device_type").and_then(string);
        let is_cpu = match device_type {
            Some(d) => d == "cpu",
            None => t.base_name(c) == "cpu",
        };
        if !is_cpu {
            continue;
        }
        let mpidr = t
            .prop(c, "reg")
            .filter(|_| (1..=2).contains(&ac))
            .filter(|v| v.len() >= 4 * ac as usize)
            .and_then(|v| read_cells(&mut u32_cells(v), ac));
        match mpidr {
            Some(mpidr) => {
                let spin_table = t.prop(c, "enable-method").and_then(string) == Some("spin-table");
                let release_addr = t
                    .prop(c, "cpu-release-addr")
                    .filter(|_| spin_table)
                    .and_then(|v| match v.len() {
                        4 => single_u32(v).map(u64::from),
                        8 => be64(v, 0),
                        _ => None,
                    });
                if spin_table && release_addr.is_none() {
                    warnings.push(format!(
                        "{}: spin-table without a usable cpu-release-addr",
                        t.nodes[c].path
                    ));
                }
                cpus.push(CpuInfo {
                    mpidr,
                    release_addr,
                })
            }
            None => warnings.push(format!("skipping {}: bad reg", t.nodes[c].path)),
        }
    }
    if cpus.is_empty() {
        return Err(BootCfgError::NoCpus);
    }
    Ok(cpus)
}

fn parse_uart(t: &Tree<'_, '_>, cmdline: &HvCmdline) -> Option<UartInfo> {
    let chosen = t.find("/chosen");
    let stdout = chosen
        .and_then(|c| {
            t.prop(c, "stdout-path")
                .or_else(|| t.prop(c, "linux,stdout-path"))
        })
        .and_then(string);
    let candidates = [stdout, cmdline.ignored_value("dtuart"), Some("serial0")];
    candidates.into_iter().flatten().find_map(|spec| {
        let i = t.resolve(spec)?;
        let base = *t.reg_ranges(i)?.first()?;
        Some(UartInfo {
            path: t.nodes[i].path.clone(),
            base,
            intid: t.first_intid(i),
            compatible: t.compatible(i).into_iter().map(String::from).collect(),
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Domains.

struct Module {
    node: String,
    kind: ModuleKind,
    range: HostRange,
}

struct Draft {
    spec: DomainSpec,
    modules: Vec<Module>,
}

fn module_kind(compat: &[&str]) -> Option<ModuleKind> {
    compat.iter().find_map(|c| match *c {
        "multiboot,kernel" | "xen,linux-zimage" => Some(ModuleKind::Kernel),
        "multiboot,ramdisk" | "xen,linux-initrd" => Some(ModuleKind::Ramdisk),
        "multiboot,device-tree" => Some(ModuleKind::DeviceTree),
        _ => None,
    })
}

/// Reads a domain's module children. `strict`: every child named `module*` must be a known
/// module (domU nodes); for `/chosen` other children are simply not modules.
/// Modules read from a node, and for each the index of its tree node.
type Modules = (Vec<Module>, Vec<(usize, ModuleKind)>);

fn collect_modules(
    t: &Tree<'_, '_>,
    parent: usize,
    strict: bool,
) -> Result<Modules, DomainProblem> {
    let (ac, sc) = t.cells_of(parent);
    let mut modules = Vec::new();
    let mut nodes = Vec::new();
    for c in t.children(parent) {
        let compat = t.compatible(c);
        let is_module_like =
            t.base_name(c) == "module" || compat.iter().any(|s| s.starts_with("multiboot,"));
        let Some(kind) = module_kind(&compat) else {
            if strict && is_module_like {
                return Err(DomainProblem::BadModuleCompatible(t.name(c).to_string()));
            }
            continue;
        };
        let name = t.name(c).to_string();
        let reg = t
            .prop(c, "reg")
            .and_then(|v| decode_reg(v, ac, sc))
            .filter(|r| r.len() == 1 && sc > 0)
            .ok_or_else(|| DomainProblem::BadModuleReg(name.clone()))?;
        let (addr, size) = reg[0];
        let range = HostRange::new(HostPhysAddr::new(addr), size)
            .ok_or_else(|| DomainProblem::ModulePastRamEnd(name.clone(), kind))?;
        if modules.iter().any(|m: &Module| m.kind == kind) {
            return Err(DomainProblem::DuplicateModule(name, kind));
        }
        modules.push(Module {
            node: name,
            kind,
            range,
        });
        nodes.push((c, kind));
    }
    Ok((modules, nodes))
}

fn check_module_placement(
    m: &Module,
    ram: &[HostRange],
    reserved: &[HostRange],
) -> Result<(), DomainProblem> {
    if m.range.size == 0 {
        return Err(DomainProblem::EmptyModule(m.node.clone(), m.kind));
    }
    let Some(bank) = ram.iter().find(|b| b.contains(m.range.start)) else {
        return Err(DomainProblem::ModuleOutsideRam(m.node.clone(), m.kind));
    };
    if !bank.contains_range(m.range.start, m.range.size) {
        return Err(DomainProblem::ModulePastRamEnd(m.node.clone(), m.kind));
    }
    if let Some(r) = reserved.iter().find(|r| r.overlaps(&m.range)) {
        return Err(DomainProblem::ModuleOverlapsReserved(
            m.node.clone(),
            m.kind,
            *r,
        ));
    }
    Ok(())
}

fn memory_check(bytes: u64, total_ram: u64) -> Result<u64, DomainProblem> {
    if bytes == 0 {
        return Err(DomainProblem::BadMemory("is zero".to_string()));
    }
    if !bytes.is_multiple_of(PAGE_SIZE) {
        return Err(DomainProblem::BadMemory(format!(
            "{bytes:#x} bytes is not a multiple of 4 KiB"
        )));
    }
    if bytes > total_ram {
        return Err(DomainProblem::BadMemory(format!(
            "{} MiB is more than the host's {} MiB of RAM",
            bytes >> 20,
            total_ram >> 20
        )));
    }
    Ok(bytes)
}

struct DomainCtx<'c> {
    ram: &'c [HostRange],
    reserved: &'c [HostRange],
    total_ram: u64,
}

/// A domain's settings other than its modules.
struct Basics {
    name: String,
    kind: DomainKind,
    memory_bytes: u64,
    vcpus: u32,
    vpl011: bool,
    enhanced: bool,
    bootargs: Option<String>,
    static_mem: Option<HostRange>,
}

fn finish_draft(
    b: Basics,
    modules: Vec<Module>,
    ctx: &DomainCtx<'_>,
) -> Result<Draft, DomainProblem> {
    let find = |k| modules.iter().find(|m| m.kind == k).map(|m| m.range);
    let kernel = find(ModuleKind::Kernel).ok_or(DomainProblem::MissingKernel)?;
    for m in &modules {
        check_module_placement(m, ctx.ram, ctx.reserved)?;
    }
    let spec = DomainSpec {
        name: b.name,
        kind: b.kind,
        memory_bytes: b.memory_bytes,
        vcpus: b.vcpus,
        vpl011: b.vpl011,
        enhanced: b.enhanced,
        kernel,
        ramdisk: find(ModuleKind::Ramdisk),
        device_tree: find(ModuleKind::DeviceTree),
        bootargs: b.bootargs,
        static_mem: b.static_mem,
    };
    if let Some(sm) = spec.static_mem {
        if let Some(m) = modules.iter().find(|m| m.range.overlaps(&sm)) {
            return Err(DomainProblem::BadStaticMem(format!(
                "overlaps its own {} module",
                m.kind
            )));
        }
    }
    Ok(Draft { spec, modules })
}

fn parse_dom0(
    t: &Tree<'_, '_>,
    chosen: usize,
    ctx: &DomainCtx<'_>,
    cmdline: &HvCmdline,
    host_cpus: usize,
    warnings: &mut Vec<String>,
) -> Option<Result<Draft, DomainProblem>> {
    let (modules, nodes) = match collect_modules(t, chosen, false) {
        Ok(m) => m,
        Err(p) => return Some(Err(p)),
    };
    if modules.is_empty() {
        return None;
    }
    let kernel_node = nodes
        .iter()
        .find(|(_, k)| *k == ModuleKind::Kernel)
        .map(|(c, _)| *c);
    let bootargs = kernel_node
        .and_then(|c| t.prop(c, "bootargs"))
        .or_else(|| t.prop(chosen, "xen,dom0-bootargs"))
        .and_then(string)
        .map(String::from);
    let memory = match memory_check(cmdline.dom0_mem.unwrap_or(DEFAULT_DOM0_MEM), ctx.total_ram) {
        Ok(m) => m,
        Err(p) => return Some(Err(p)),
    };
    let host = u32::try_from(host_cpus).unwrap_or(u32::MAX).min(MAX_VCPUS);
    let vcpus = match cmdline.dom0_max_vcpus {
        Some((_, max)) if max > host => {
            warnings.push(format!("dom0_max_vcpus={max} capped to {host}"));
            host
        }
        Some((_, max)) => max,
        None => host,
    };
    let basics = Basics {
        name: "dom0".to_string(),
        kind: DomainKind::Initial,
        memory_bytes: memory,
        vcpus,
        vpl011: false,
        enhanced: true,
        bootargs,
        static_mem: None,
    };
    Some(finish_draft(basics, modules, ctx))
}

fn parse_domu(t: &Tree<'_, '_>, d: usize, ctx: &DomainCtx<'_>) -> Result<Draft, DomainProblem> {
    let ac = t.prop(d, "#address-cells").and_then(single_u32);
    let sc = t.prop(d, "#size-cells").and_then(single_u32);
    if !matches!((ac, sc), (Some(1..=2), Some(1..=2))) {
        return Err(DomainProblem::BadCells);
    }
    let kib = match t.prop(d, "memory") {
        None => return Err(DomainProblem::MissingMemory),
        Some(v) if v.len() == 8 => be64(v, 0),
        Some(v) => single_u32(v).map(u64::from),
    }
    .ok_or_else(|| DomainProblem::BadMemory("is not a 1- or 2-cell number".to_string()))?;
    let bytes = kib
        .checked_mul(1024)
        .ok_or_else(|| DomainProblem::BadMemory("is absurdly large".to_string()))?;
    let memory = memory_check(bytes, ctx.total_ram)?;
    let vcpus = match t.prop(d, "cpus") {
        None => return Err(DomainProblem::MissingCpus),
        Some(v) => single_u32(v).ok_or(DomainProblem::BadCpus(0))?,
    };
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(DomainProblem::BadCpus(vcpus));
    }
    let vpl011 = t.has(d, "vpl011");
    let enhanced = t
        .prop(d, "xen,enhanced")
        .is_some_and(|v| string(v) != Some("disabled"));
    let (modules, nodes) = collect_modules(t, d, true)?;
    let kernel_node = nodes
        .iter()
        .find(|(_, k)| *k == ModuleKind::Kernel)
        .map(|(c, _)| *c);
    let bootargs = kernel_node
        .and_then(|c| t.prop(c, "bootargs"))
        .or_else(|| t.prop(d, "bootargs"))
        .and_then(string)
        .map(String::from);
    let static_mem = parse_static_mem(t, d, memory, ctx)?;
    let basics = Basics {
        name: t.name(d).to_string(),
        kind: DomainKind::DomU,
        memory_bytes: memory,
        vcpus,
        vpl011,
        enhanced,
        bootargs,
        static_mem,
    };
    finish_draft(basics, modules, ctx)
}

/// Xen's `xen,static-mem` (with `direct-map`): one bank of host RAM the domain is given,
/// at the same guest address. Both properties together, or neither.
fn parse_static_mem(
    t: &Tree<'_, '_>,
    d: usize,
    memory: u64,
    ctx: &DomainCtx<'_>,
) -> Result<Option<HostRange>, DomainProblem> {
    let bad = |why: &str| DomainProblem::BadStaticMem(why.to_string());
    let direct = t.has(d, "direct-map");
    let Some(v) = t.prop(d, "xen,static-mem") else {
        return if direct {
            Err(bad("missing: direct-map needs it"))
        } else {
            Ok(None)
        };
    };
    if !direct {
        return Err(bad("without direct-map is not supported"));
    }
    let ac = t
        .prop(d, "#xen,static-mem-address-cells")
        .and_then(single_u32)
        .unwrap_or(2);
    let sc = t
        .prop(d, "#xen,static-mem-size-cells")
        .and_then(single_u32)
        .unwrap_or(2);
    if !(1..=2).contains(&ac) || !(1..=2).contains(&sc) {
        return Err(bad("cell sizes must be 1 or 2"));
    }
    let banks = decode_reg(v, ac, sc).ok_or_else(|| bad("is not a list of address/size pairs"))?;
    let [(start, size)] = banks[..] else {
        return Err(bad("must be exactly one bank"));
    };
    let range =
        HostRange::new(HostPhysAddr::new(start), size).ok_or_else(|| bad("wraps around"))?;
    if size != memory {
        return Err(bad("size differs from the memory property"));
    }
    if !range.start.is_aligned(2 << 20) || size % (2 << 20) != 0 {
        return Err(bad("must be 2 MiB aligned"));
    }
    if !ctx.ram.iter().any(|r| r.contains_range(range.start, size)) {
        return Err(bad("lies outside RAM"));
    }
    if ctx.reserved.iter().any(|r| r.overlaps(&range)) {
        return Err(bad("overlaps memory Mica or the host reserves"));
    }
    Ok(Some(range))
}

fn parse_domains(
    t: &Tree<'_, '_>,
    ctx: &DomainCtx<'_>,
    cmdline: &HvCmdline,
    host_cpus: usize,
    warnings: &mut Vec<String>,
) -> Vec<Result<DomainSpec, DomainError>> {
    let Some(chosen) = t.find("/chosen") else {
        return Vec::new();
    };
    let mut drafts: Vec<(String, Result<Draft, DomainProblem>)> = Vec::new();
    if let Some(d) = parse_dom0(t, chosen, ctx, cmdline, host_cpus, warnings) {
        drafts.push(("dom0".to_string(), d));
    }
    for d in t.children(chosen) {
        if t.is_compatible(d, "xen,domain") {
            drafts.push((t.name(d).to_string(), parse_domu(t, d, ctx)));
        }
    }
    // Modules of different (or the same) domains must not share memory.
    let mut clashes: Vec<(usize, DomainProblem)> = Vec::new();
    for (i, (_, a)) in drafts.iter().enumerate() {
        let Ok(a) = a else { continue };
        'modules: for (mi, m) in a.modules.iter().enumerate() {
            for (j, (other_name, b)) in drafts.iter().enumerate() {
                let Ok(b) = b else { continue };
                for (ni, n) in b.modules.iter().enumerate() {
                    if (i, mi) != (j, ni) && m.range.overlaps(&n.range) {
                        let other = format!("{other_name}/{}", n.node);
                        clashes.push((
                            i,
                            DomainProblem::ModuleOverlapsModule(m.node.clone(), m.kind, other),
                        ));
                        break 'modules;
                    }
                }
            }
        }
    }
    for (i, problem) in clashes {
        if drafts[i].1.is_ok() {
            drafts[i].1 = Err(problem);
        }
    }
    drafts
        .into_iter()
        .map(|(domain, d)| {
            d.map(|d| d.spec)
                .map_err(|problem| DomainError { domain, problem })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------

/// The console UART alone, found as [`parse`] finds it (`stdout-path`, then `dtuart=`,
/// then the `serial0` alias), for printing before the rest of the tree is read. `dtb` must
/// have passed [`validate`].
pub fn console_uart(dtb: &[u8]) -> Option<UartInfo> {
    let fdt = Fdt::new(dtb).ok()?;
    let t = Tree::build(&fdt).ok()?;
    let bootargs = t
        .find("/chosen")
        .and_then(|c| t.prop(c, "xen,xen-bootargs"))
        .and_then(string);
    parse_uart(&t, &cmdline::parse(bootargs.unwrap_or("")))
}

/// Parses the host device tree. `mica_reserved` lists memory no boot module may overlap:
/// Mica's own image and the DTB itself.
pub fn parse(dtb: &[u8], mica_reserved: &[HostRange]) -> Result<HostInfo, BootCfgError> {
    let blob = validate(dtb)?;
    let fdt = Fdt::new(&blob).map_err(|_| BootCfgError::BadDtb("rejected by the fdt reader"))?;
    let t = Tree::build(&fdt)?;
    let mut warnings = Vec::new();

    let mut memory = Vec::new();
    for c in t.children(0) {
        let device_type = t.prop(c, "device_type").and_then(string);
        if device_type != Some("memory") && !(device_type.is_none() && t.base_name(c) == "memory") {
            continue;
        }
        match t.reg_ranges(c) {
            Some(r) => memory.extend(r.into_iter().filter(|r| r.size > 0)),
            None => warnings.push(format!("skipping {}: bad reg", t.nodes[c].path)),
        }
    }
    if memory.is_empty() {
        return Err(BootCfgError::NoMemory);
    }

    let mut reserved: Vec<HostRange> = fdt
        .memory_reservations()
        .filter_map(|r| HostRange::new(HostPhysAddr::new(r.address() as u64), r.size() as u64))
        .filter(|r| r.size > 0)
        .collect();
    if let Some(rm) = t.find("/reserved-memory") {
        for c in t.children(rm) {
            if let Some(r) = t.reg_ranges(c) {
                reserved.extend(r.into_iter().filter(|r| r.size > 0));
            }
        }
    }

    let cpus = parse_cpus(&t, &mut warnings)?;
    let gic = parse_gic(&t)?;
    let timer = parse_timer(&t)?;
    let psci = (0..t.nodes.len())
        .find(|&i| t.compatible(i).iter().any(|c| c.starts_with("arm,psci")))
        .and_then(|i| match t.prop(i, "method").and_then(string) {
            Some("hvc") => Some(PsciConduit::Hvc),
            Some("smc") => Some(PsciConduit::Smc),
            _ => {
                warnings.push("psci node has no usable method".to_string());
                None
            }
        });

    let chosen = t.find("/chosen");
    let bootargs = chosen
        .and_then(|c| t.prop(c, "xen,xen-bootargs"))
        .and_then(string)
        .map(String::from);
    let cmdline = cmdline::parse(bootargs.as_deref().unwrap_or(""));
    let uart = parse_uart(&t, &cmdline);

    let total_ram = memory
        .iter()
        .fold(0u64, |acc, r| acc.saturating_add(r.size));
    let mut all_reserved: Vec<HostRange> = mica_reserved.to_vec();
    all_reserved.extend(reserved.iter().copied());
    let ctx = DomainCtx {
        ram: &memory,
        reserved: &all_reserved,
        total_ram,
    };
    let domains = parse_domains(&t, &ctx, &cmdline, cpus.len(), &mut warnings);

    Ok(HostInfo {
        root_compatible: t.compatible(0).into_iter().map(String::from).collect(),
        memory,
        reserved,
        cpus,
        psci,
        gic,
        timer,
        uart,
        bootargs,
        cmdline,
        domains,
        warnings,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;
    use vm_fdt::FdtWriter;

    const MIB: u64 = 1 << 20;
    const FIXTURE: &[u8] = include_bytes!("testdata/qemu-virt-dom0less.dtb");
    /// Mica's image and the DTB in the reference scenario (loaded low in RAM).
    const MICA: [HostRange; 1] = [HostRange {
        start: HostPhysAddr::new(0x4000_0000),
        size: 0x20_0000,
    }];

    fn hr(start: u64, size: u64) -> HostRange {
        HostRange::new(HostPhysAddr::new(start), size).unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// A module child: name, compatible, reg cells.
    type Module<'m> = (&'m str, &'m [&'m str], &'m [u32]);

    /// Writes a dom0less domain node with 1/1 cells.
    fn domu(w: &mut FdtWriter, name: &str, props: &[(&str, &[u32])], modules: &[Module<'_>]) {
        let n = w.begin_node(name).unwrap();
        w.property_string("compatible", "xen,domain").unwrap();
        for (p, cells) in props {
            w.property_array_u32(p, cells).unwrap();
        }
        for (m, compat, reg) in modules {
            let mn = w.begin_node(m).unwrap();
            w.property_string_list("compatible", s(compat)).unwrap();
            w.property_array_u32("reg", reg).unwrap();
            w.end_node(mn).unwrap();
        }
        w.end_node(n).unwrap();
    }

    fn std_domu(w: &mut FdtWriter, name: &str, mem_kib: u32, cpus: u32, base: u32) {
        domu(
            w,
            name,
            &[
                ("#address-cells", &[1]),
                ("#size-cells", &[1]),
                ("memory", &[0, mem_kib]),
                ("cpus", &[cpus]),
                ("vpl011", &[]),
            ],
            &[
                (
                    "module@k",
                    &["multiboot,kernel", "multiboot,module"],
                    &[base, 0x100_0000],
                ),
                (
                    "module@r",
                    &["multiboot,ramdisk", "multiboot,module"],
                    &[base + 0x100_0000, 0x10_0000],
                ),
            ],
        );
    }

    /// The QEMU virt essentials (2 GiB at 1 GiB, 2 CPUs, GICv3, PL011) plus a `/chosen` that
    /// `chosen` fills in.
    fn qemu(chosen: impl FnOnce(&mut FdtWriter)) -> Vec<u8> {
        let mut w =
            FdtWriter::new_with_mem_reserv(&[
                vm_fdt::FdtReserveEntry::new(0x4800_0000, 0x1000).unwrap()
            ])
            .unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("interrupt-parent", 0x8003).unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        w.property_string_list("compatible", s(&["linux,dummy-virt"]))
            .unwrap();
        let n = w.begin_node("psci").unwrap();
        w.property_string_list(
            "compatible",
            s(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]),
        )
        .unwrap();
        w.property_string("method", "smc").unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x8000_0000])
            .unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("pl011@9000000").unwrap();
        w.property_string_list("compatible", s(&["arm,pl011", "arm,primecell"]))
            .unwrap();
        w.property_array_u64("reg", &[0x900_0000, 0x1000]).unwrap();
        w.property_array_u32("interrupts", &[0, 1, 4]).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("intc@8000000").unwrap();
        w.property_phandle(0x8003).unwrap();
        w.property_array_u32("interrupts", &[1, 9, 4]).unwrap();
        w.property_array_u64("reg", &[0x800_0000, 0x1_0000, 0x80a_0000, 0xf6_0000])
            .unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_null("interrupt-controller").unwrap();
        w.property_u32("#interrupt-cells", 3).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        let m = w.begin_node("cpu-map").unwrap();
        w.end_node(m).unwrap();
        for i in 0..2u32 {
            let c = w.begin_node(&format!("cpu@{i}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u32("reg", i).unwrap();
            w.end_node(c).unwrap();
        }
        w.end_node(n).unwrap();
        let n = w.begin_node("timer").unwrap();
        w.property_string_list("compatible", s(&["arm,armv8-timer", "arm,armv7-timer"]))
            .unwrap();
        w.property_array_u32("interrupts", &[1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4])
            .unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("aliases").unwrap();
        w.property_string("serial0", "/pl011@9000000").unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("chosen").unwrap();
        chosen(&mut w);
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    /// Only domUs, standard layout, plus whatever `extra` adds.
    fn with_domus(extra: impl FnOnce(&mut FdtWriter)) -> Vec<u8> {
        qemu(|w| {
            w.property_u32("#address-cells", 2).unwrap();
            w.property_u32("#size-cells", 2).unwrap();
            std_domu(w, "domU1", 256 << 10, 1, 0x5000_0000);
            extra(w);
        })
    }

    fn only_err(dtb: &[u8], domain: &str) -> DomainError {
        let info = parse(dtb, &MICA).unwrap();
        let e = info
            .domains
            .iter()
            .find_map(|d| d.as_ref().err().filter(|e| e.domain == domain))
            .cloned();
        e.unwrap_or_else(|| panic!("no error for {domain}: {:?}", info.domains))
    }

    fn static_domu(name: &str, extra: &[(&str, &[u32])], mem_mib: u32) -> Vec<u8> {
        let mut props: Vec<(&str, &[u32])> = vec![
            ("#address-cells", &[1]),
            ("#size-cells", &[1]),
            ("cpus", &[1]),
        ];
        let mem = [0, mem_mib << 10];
        props.push(("memory", &mem));
        props.extend_from_slice(extra);
        qemu(|w| {
            w.property_u32("#address-cells", 2).unwrap();
            w.property_u32("#size-cells", 2).unwrap();
            domu(
                w,
                name,
                &props,
                &[(
                    "module@k",
                    &["multiboot,kernel", "multiboot,module"],
                    &[0x5000_0000, 0x100_0000],
                )],
            );
        })
    }

    #[test]
    fn static_memory_direct_mapped_domu() {
        let cells: &[(&str, &[u32])] = &[
            ("#xen,static-mem-address-cells", &[1]),
            ("#xen,static-mem-size-cells", &[1]),
            ("xen,static-mem", &[0x9000_0000, 0x1000_0000]),
            ("direct-map", &[]),
        ];
        let info = parse(&static_domu("d", cells, 256), &MICA).unwrap();
        let spec = info
            .domains
            .iter()
            .flatten()
            .find(|d| d.name == "d")
            .unwrap();
        assert_eq!(
            spec.static_mem,
            HostRange::new(HostPhysAddr::new(0x9000_0000), 0x1000_0000)
        );
        // Bad: size differs, no direct-map, unaligned, outside RAM, over a module.
        let e = only_err(&static_domu("d", cells, 128), "d");
        assert!(e.to_string().contains("differs"), "{e}");
        let e = only_err(&static_domu("d", &cells[..3], 256), "d");
        assert!(e.to_string().contains("direct-map"), "{e}");
        let e = only_err(&static_domu("d", &cells[3..], 256), "d");
        assert!(e.to_string().contains("missing"), "{e}");
        let unaligned: &[(&str, &[u32])] = &[
            ("#xen,static-mem-address-cells", &[1]),
            ("#xen,static-mem-size-cells", &[1]),
            ("xen,static-mem", &[0x9000_1000, 0x1000_0000]),
            ("direct-map", &[]),
        ];
        let e = only_err(&static_domu("d", unaligned, 256), "d");
        assert!(e.to_string().contains("aligned"), "{e}");
        let outside: &[(&str, &[u32])] = &[
            ("#xen,static-mem-address-cells", &[1]),
            ("#xen,static-mem-size-cells", &[1]),
            ("xen,static-mem", &[0x1000_0000, 0x1000_0000]),
            ("direct-map", &[]),
        ];
        let e = only_err(&static_domu("d", outside, 256), "d");
        assert!(e.to_string().contains("outside RAM"), "{e}");
        let over_module: &[(&str, &[u32])] = &[
            ("#xen,static-mem-address-cells", &[1]),
            ("#xen,static-mem-size-cells", &[1]),
            ("xen,static-mem", &[0x5000_0000, 0x1000_0000]),
            ("direct-map", &[]),
        ];
        let e = only_err(&static_domu("d", over_module, 256), "d");
        assert!(e.to_string().contains("module"), "{e}");
    }

    #[test]
    fn passthrough_candidates_on_qemu_virt() {
        let dtb = include_bytes!("testdata/qemu-virt-dom0less.dtb");
        let (devs, refused) = host_devices(dtb, &["/pl011@9000000"], 1 << 39).unwrap();
        let paths: Vec<&str> = devs.iter().map(|d| d.path.as_str()).collect();
        assert!(paths.contains(&"/virtio_mmio@a000000"), "{paths:?}");
        assert!(
            !paths.iter().any(|p| p.starts_with("/pl011")),
            "Mica's UART is excluded"
        );
        assert!(
            !paths.iter().any(|p| p.starts_with("/intc")),
            "the GIC is Mica's"
        );
        assert!(!paths.iter().any(|p| p.starts_with("/memory")));
        let virtio = devs
            .iter()
            .find(|d| d.path == "/virtio_mmio@a000000")
            .unwrap();
        assert_eq!(virtio.regs[0].start.raw(), 0xa00_0000);
        assert_eq!(virtio.spis, vec![(32 + 16, true)]);
        assert!(refused
            .iter()
            .any(|(p, r)| p.starts_with("/pcie") && *r == Unassignable::PciHostBridge));
        assert!(!paths.iter().any(|p| p.starts_with("/pcie")));
        assert!(host_devices(b"garbage", &[], 1 << 39).is_err());
    }

    #[test]
    fn devices_marked_for_domus_are_not_dom0s() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        for (addr, marked) in [
            (0xa00_3e00u64, true),
            (0xa00_3c00, false),
            (0xa00_2e00, false),
        ] {
            let n = w.begin_node(&format!("virtio_mmio@{addr:x}")).unwrap();
            w.property_array_u64("reg", &[addr, 0x200]).unwrap();
            w.property_array_u32("interrupts", &[0, 16, 1]).unwrap();
            if marked {
                w.property_null("xen,passthrough").unwrap();
            }
            w.end_node(n).unwrap();
        }
        w.end_node(root).unwrap();
        let dtb = w.finish().unwrap();
        let (devs, refused) = host_devices(&dtb, &[], 1 << 39).unwrap();
        let paths: Vec<&str> = devs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/virtio_mmio@a002e00"]);
        assert_eq!(
            refused,
            [(
                "/virtio_mmio@a003c00".to_string(),
                Unassignable::SharesPageWithDomuDevice("/virtio_mmio@a003e00".into())
            )]
        );
        assert_eq!(
            refused[0].1.to_string(),
            "its registers share a page with /virtio_mmio@a003e00, which is marked for a domU"
        );
    }

    #[test]
    fn reference_fixture() {
        let dtb_range = hr(0x4800_0000, FIXTURE.len() as u64);
        let info = parse(FIXTURE, &[MICA[0], dtb_range]).unwrap();
        assert_eq!(info.memory, vec![hr(0x4000_0000, 0x8000_0000)]);
        assert_eq!(
            info.cpus,
            vec![
                CpuInfo {
                    mpidr: 0,
                    release_addr: None
                },
                CpuInfo {
                    mpidr: 1,
                    release_addr: None
                }
            ]
        );
        assert_eq!(info.psci, Some(PsciConduit::Smc));
        assert_eq!(info.root_compatible, ["linux,dummy-virt"]);
        let g = &info.gic;
        assert_eq!(g.version, GicVersion::V3);
        assert_eq!(g.dist, hr(0x800_0000, 0x1_0000));
        assert_eq!(g.redist, vec![hr(0x80a_0000, 0xf6_0000)]);
        assert_eq!((g.cpu_if, g.hyp_if, g.vcpu_if), (None, None, None));
        assert_eq!(g.maintenance_intid, Some(25));
        assert_eq!(g.phandle, Some(0x8003));
        assert_eq!(g.node_path, "/intc@8000000");
        assert_eq!(
            info.timer,
            TimerInfo {
                secure_phys_intid: 29,
                phys_intid: 30,
                virt_intid: 27,
                hyp_intid: 26,
                flags: [4; 4]
            }
        );
        let u = info.uart.as_ref().unwrap();
        assert_eq!(u.path, "/pl011@9000000");
        assert_eq!(u.base, hr(0x900_0000, 0x1000));
        assert_eq!(u.intid, Some(33));
        assert_eq!(u.compatible, ["arm,pl011", "arm,primecell"]);
        assert_eq!(
            info.bootargs.as_deref(),
            Some("console=dtuart dtuart=/pl011@9000000 dom0_mem=512M")
        );
        assert_eq!(info.cmdline.dom0_mem, Some(512 * MIB));
        assert_eq!(info.domains.len(), 3);
        let d: Vec<&DomainSpec> = info.domains.iter().map(|d| d.as_ref().unwrap()).collect();
        assert_eq!(d[0].name, "dom0");
        assert_eq!(d[0].kind, DomainKind::Initial);
        assert_eq!(d[0].memory_bytes, 512 * MIB);
        assert_eq!(d[0].vcpus, 2);
        assert_eq!(d[0].kernel, hr(0x4900_0000, 27302400));
        assert_eq!(d[0].ramdisk, Some(hr(0x4c00_0000, 987884)));
        assert_eq!(
            d[0].bootargs.as_deref(),
            Some("console=hvc0 quiet panic=-1 who=dom0 HOLD=20")
        );
        assert_eq!((d[1].name.as_str(), d[1].kind), ("domU1", DomainKind::DomU));
        assert_eq!(
            (d[1].memory_bytes, d[1].vcpus, d[1].vpl011, d[1].enhanced),
            (256 * MIB, 1, true, false)
        );
        assert_eq!(d[1].kernel, hr(0x5000_0000, 27302400));
        assert_eq!(d[1].ramdisk, Some(hr(0x5200_0000, 987884)));
        assert_eq!(
            d[1].bootargs.as_deref(),
            Some("console=ttyAMA0 quiet panic=-1 who=domU1")
        );
        assert_eq!(
            (d[2].name.as_str(), d[2].memory_bytes, d[2].vcpus),
            ("domU2", 192 * MIB, 2)
        );
        assert_eq!(d[2].kernel, hr(0x5400_0000, 27302400));
        assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    }

    #[test]
    fn built_tree_and_memreserve() {
        let info = parse(&with_domus(|_| {}), &MICA).unwrap();
        assert_eq!(info.reserved, vec![hr(0x4800_0000, 0x1000)]);
        assert_eq!(info.domains.len(), 1);
        assert!(info.domains[0].is_ok());
        // No stdout-path and no dtuart: the serial0 alias is used.
        assert_eq!(info.uart.unwrap().path, "/pl011@9000000");
    }

    #[test]
    fn uart_via_alias_and_options() {
        let dtb = qemu(|w| {
            w.property_string("stdout-path", "serial0:115200n8")
                .unwrap()
        });
        assert_eq!(
            parse(&dtb, &[]).unwrap().uart.unwrap().path,
            "/pl011@9000000"
        );
        let dtb = qemu(|w| w.property_string("stdout-path", "/pl011:115200n8").unwrap());
        assert_eq!(
            parse(&dtb, &[]).unwrap().uart.unwrap().path,
            "/pl011@9000000"
        );
        // A stdout-path naming nothing falls back to dtuart=, then serial0.
        let dtb = qemu(|w| {
            w.property_string("stdout-path", "/nowhere").unwrap();
            w.property_string("xen,xen-bootargs", "dtuart=serial0")
                .unwrap();
        });
        assert_eq!(
            parse(&dtb, &[]).unwrap().uart.unwrap().path,
            "/pl011@9000000"
        );
    }

    #[test]
    fn dom0_defaults_and_caps() {
        let dtb = qemu(|w| {
            w.property_u32("#address-cells", 2).unwrap();
            w.property_u32("#size-cells", 2).unwrap();
            w.property_string("xen,xen-bootargs", "dom0_max_vcpus=8 frob")
                .unwrap();
            w.property_string("xen,dom0-bootargs", "console=hvc0")
                .unwrap();
            let m = w.begin_node("module@49000000").unwrap();
            w.property_string_list("compatible", s(&["multiboot,kernel", "multiboot,module"]))
                .unwrap();
            w.property_array_u64("reg", &[0x4900_0000, 0x10_0000])
                .unwrap();
            w.end_node(m).unwrap();
        });
        let info = parse(&dtb, &MICA).unwrap();
        let d0 = info.domains[0].as_ref().unwrap();
        assert_eq!(d0.memory_bytes, DEFAULT_DOM0_MEM);
        assert_eq!(d0.vcpus, 2);
        assert_eq!(d0.ramdisk, None);
        assert_eq!(d0.bootargs.as_deref(), Some("console=hvc0"));
        assert_eq!(info.cmdline.unknown, ["frob"]);
        assert_eq!(info.warnings, ["dom0_max_vcpus=8 capped to 2"]);
    }

    #[test]
    fn dom0_problems() {
        // A ramdisk without a kernel.
        let dtb = qemu(|w| {
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 1).unwrap();
            let m = w.begin_node("module@4c000000").unwrap();
            w.property_string_list("compatible", s(&["multiboot,ramdisk", "multiboot,module"]))
                .unwrap();
            w.property_array_u32("reg", &[0x4c00_0000, 0x1000]).unwrap();
            w.end_node(m).unwrap();
        });
        assert_eq!(
            only_err(&dtb, "dom0").to_string(),
            "domain dom0: no multiboot,kernel module"
        );
        // dom0_mem larger than the host.
        let dtb = qemu(|w| {
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 1).unwrap();
            w.property_string("xen,xen-bootargs", "dom0_mem=4G")
                .unwrap();
            let m = w.begin_node("module@49000000").unwrap();
            w.property_string("compatible", "multiboot,kernel").unwrap();
            w.property_array_u32("reg", &[0x4900_0000, 0x1000]).unwrap();
            w.end_node(m).unwrap();
        });
        assert_eq!(
            only_err(&dtb, "dom0").to_string(),
            "domain dom0: memory 4096 MiB is more than the host's 2048 MiB of RAM"
        );
    }

    fn domu_props(mem: &[u32], cpus: &[u32]) -> Vec<u8> {
        with_domus(|w| {
            domu(
                w,
                "domU2",
                &[
                    ("#address-cells", &[1]),
                    ("#size-cells", &[1]),
                    ("memory", mem),
                    ("cpus", cpus),
                ],
                &[(
                    "module@54000000",
                    &["multiboot,kernel", "multiboot,module"],
                    &[0x5400_0000, 0x1000],
                )],
            )
        })
    }

    #[test]
    fn domu_memory_and_cpus() {
        let ok = parse(&domu_props(&[0x4_0000], &[3]), &MICA).unwrap();
        let d = ok.domains[1].as_ref().unwrap();
        assert_eq!(
            (d.memory_bytes, d.vcpus, d.vpl011, d.bootargs.clone()),
            (256 * MIB, 3, false, None)
        );
        let cases: &[(&[u32], &[u32], &str)] = &[
            (&[0, 0], &[1], "domain domU2: memory is zero"),
            (
                &[0, 5],
                &[1],
                "domain domU2: memory 0x1400 bytes is not a multiple of 4 KiB",
            ),
            (
                &[0xffff_ffff, 0xffff_ffff],
                &[1],
                "domain domU2: memory is absurdly large",
            ),
            (
                &[1, 0],
                &[1],
                "domain domU2: memory 4194304 MiB is more than the host's 2048 MiB of RAM",
            ),
            (
                &[0, 1, 2],
                &[1],
                "domain domU2: memory is not a 1- or 2-cell number",
            ),
            (
                &[0x4_0000],
                &[0],
                "domain domU2: cpus = 0, must be 1 to 128",
            ),
            (
                &[0x4_0000],
                &[129],
                "domain domU2: cpus = 129, must be 1 to 128",
            ),
        ];
        for (mem, cpus, msg) in cases {
            assert_eq!(only_err(&domu_props(mem, cpus), "domU2").to_string(), *msg);
        }
        // The other domain is unaffected.
        assert!(parse(&domu_props(&[0, 0], &[1]), &MICA).unwrap().domains[0].is_ok());
        let dtb = with_domus(|w| {
            domu(
                w,
                "domU2",
                &[
                    ("#address-cells", &[1]),
                    ("#size-cells", &[1]),
                    ("cpus", &[1]),
                ],
                &[],
            )
        });
        assert_eq!(
            only_err(&dtb, "domU2").problem,
            DomainProblem::MissingMemory
        );
        let dtb = with_domus(|w| {
            domu(
                w,
                "domU2",
                &[
                    ("#address-cells", &[1]),
                    ("#size-cells", &[1]),
                    ("memory", &[0, 4096]),
                ],
                &[],
            )
        });
        assert_eq!(only_err(&dtb, "domU2").problem, DomainProblem::MissingCpus);
    }

    fn domu_modules(cells: (u32, u32), modules: &[Module<'_>]) -> Vec<u8> {
        with_domus(|w| {
            domu(
                w,
                "domU2",
                &[
                    ("#address-cells", &[cells.0]),
                    ("#size-cells", &[cells.1]),
                    ("memory", &[0, 4096]),
                    ("cpus", &[1]),
                ],
                modules,
            )
        })
    }

    #[test]
    fn domu_module_problems() {
        const K: &[&str] = &["multiboot,kernel", "multiboot,module"];
        const R: &[&str] = &["multiboot,ramdisk", "multiboot,module"];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (domu_modules((1, 1), &[]), "domain domU2: no multiboot,kernel module"),
            (
                domu_modules((1, 1), &[("module@54000000", R, &[0x5400_0000, 0x1000])]),
                "domain domU2: no multiboot,kernel module",
            ),
            (
                domu_modules((1, 1), &[("module@1000", K, &[0x1000, 0x1000])]),
                "domain domU2: module@1000 (kernel) lies outside RAM",
            ),
            (
                domu_modules((1, 1), &[("module@54000000", K, &[0x5400_0000, 0])]),
                "domain domU2: module@54000000 (kernel) is empty",
            ),
            (
                domu_modules((2, 2), &[("module@bfff0000", K, &[0, 0xbfff_0000, 0, 0x2_0000])]),
                "domain domU2: module@bfff0000 (kernel) runs past the end of RAM",
            ),
            (
                domu_modules((2, 2), &[("module@big", K, &[0xffff_ffff, 0xffff_f000, 0, 0x2000])]),
                "domain domU2: module@big (kernel) runs past the end of RAM",
            ),
            (
                domu_modules((1, 1), &[("module@40100000", K, &[0x4010_0000, 0x1000])]),
                "domain domU2: module@40100000 (kernel) overlaps reserved memory 0x40000000..0x40200000 (Mica, DTB or firmware)",
            ),
            (
                domu_modules((1, 1), &[("module@48000000", K, &[0x4800_0000, 0x1000])]),
                "domain domU2: module@48000000 (kernel) overlaps reserved memory 0x48000000..0x48001000 (Mica, DTB or firmware)",
            ),
            (
                domu_modules((1, 1), &[("module@50800000", K, &[0x5080_0000, 0x1000])]),
                "domain domU2: module@50800000 (kernel) overlaps domU1/module@k",
            ),
            (
                domu_modules((1, 1), &[("module@54000000", K, &[0x5400_0000, 0x2000]), ("module@54001000", R, &[0x5400_1000, 0x1000])]),
                "domain domU2: module@54000000 (kernel) overlaps domU2/module@54001000",
            ),
            (
                domu_modules((1, 1), &[("module@54000000", K, &[0x5400_0000, 0x1000]), ("module@55000000", K, &[0x5500_0000, 0x1000])]),
                "domain domU2: module@55000000: second kernel module",
            ),
            (
                domu_modules((1, 1), &[("module@54000000", &["multiboot,frob"], &[0x5400_0000, 0x1000])]),
                "domain domU2: module@54000000: compatible missing or not multiboot,kernel/ramdisk/device-tree",
            ),
            (
                domu_modules((1, 1), &[("module@54000000", K, &[0x5400_0000, 0x1000, 0x5500_0000, 0x1000])]),
                "domain domU2: module@54000000: reg is not one <address size> pair of the domain's cell sizes",
            ),
            (
                domu_modules((1, 1), &[("module@54000000", K, &[0x5400_0000, 0x1000, 0x5500_0000])]),
                "domain domU2: module@54000000: reg is not one <address size> pair of the domain's cell sizes",
            ),
            (
                domu_modules((3, 1), &[("module@54000000", K, &[0x5400_0000, 0x1000])]),
                "domain domU2: #address-cells/#size-cells missing or not 1 or 2",
            ),
        ];
        for (dtb, msg) in cases {
            let info = parse(&dtb, &MICA).unwrap();
            let e = only_err(&dtb, "domU2");
            assert_eq!(e.to_string(), msg);
            assert!(!msg.contains('\n'));
            // domU1 is healthy unless domU2's module sits on top of it, then both are refused.
            if msg.contains("domU1/") {
                assert!(info.domains[0].is_err());
            } else {
                assert!(info.domains[0].is_ok(), "{:?}", info.domains[0]);
            }
        }
        // A missing compatible on a module child.
        let dtb = with_domus(|w| {
            let n = w.begin_node("domU2").unwrap();
            w.property_string("compatible", "xen,domain").unwrap();
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 1).unwrap();
            w.property_array_u32("memory", &[0, 4096]).unwrap();
            w.property_u32("cpus", 1).unwrap();
            let m = w.begin_node("module@54000000").unwrap();
            w.property_array_u32("reg", &[0x5400_0000, 0x1000]).unwrap();
            w.end_node(m).unwrap();
            w.end_node(n).unwrap();
        });
        assert_eq!(
            only_err(&dtb, "domU2").problem,
            DomainProblem::BadModuleCompatible("module@54000000".into())
        );
    }

    #[test]
    fn domu_enhanced_and_bootargs_on_domain_node() {
        let dtb = with_domus(|w| {
            let n = w.begin_node("domU2").unwrap();
            w.property_string("compatible", "xen,domain").unwrap();
            w.property_u32("#address-cells", 1).unwrap();
            w.property_u32("#size-cells", 1).unwrap();
            w.property_u32("memory", 4096).unwrap();
            w.property_u32("cpus", 1).unwrap();
            w.property_string("xen,enhanced", "enabled").unwrap();
            w.property_string("bootargs", "console=hvc0").unwrap();
            let m = w.begin_node("module@54000000").unwrap();
            w.property_string_list("compatible", s(&["multiboot,kernel", "multiboot,module"]))
                .unwrap();
            w.property_array_u32("reg", &[0x5400_0000, 0x1000]).unwrap();
            w.end_node(m).unwrap();
            let m = w.begin_node("module@55000000").unwrap();
            w.property_string_list(
                "compatible",
                s(&["multiboot,device-tree", "multiboot,module"]),
            )
            .unwrap();
            w.property_array_u32("reg", &[0x5500_0000, 0x1000]).unwrap();
            w.end_node(m).unwrap();
            w.end_node(n).unwrap();
        });
        let info = parse(&dtb, &MICA).unwrap();
        let d = info.domains[1].as_ref().unwrap();
        assert!(d.enhanced);
        assert_eq!(d.memory_bytes, 4 * MIB);
        assert_eq!(d.bootargs.as_deref(), Some("console=hvc0"));
        assert_eq!(d.device_tree, Some(hr(0x5500_0000, 0x1000)));
    }

    /// Builds a minimal tree with `skip` left out (by root-child name) to check host errors.
    fn host_without(skip: &str) -> Vec<u8> {
        let full = qemu(|_| {});
        let fdt = Fdt::new(&full).unwrap();
        let t = Tree::build(&fdt).unwrap();
        let mut w = FdtWriter::new().unwrap();
        fn copy(t: &Tree<'_, '_>, i: usize, w: &mut FdtWriter, skip: &str) {
            if t.base_name(i) == skip {
                return;
            }
            let n = w.begin_node(if i == 0 { "" } else { t.name(i) }).unwrap();
            for p in t.nodes[i].node.properties() {
                w.property(p.name, p.value).unwrap();
            }
            for c in t.children(i).collect::<Vec<_>>() {
                copy(t, c, w, skip);
            }
            w.end_node(n).unwrap();
        }
        copy(&t, 0, &mut w, skip);
        w.finish().unwrap()
    }

    #[test]
    fn host_level_errors() {
        assert_eq!(
            parse(&host_without("memory"), &[]),
            Err(BootCfgError::NoMemory)
        );
        assert_eq!(parse(&host_without("intc"), &[]), Err(BootCfgError::NoGic));
        assert_eq!(parse(&host_without("cpus"), &[]), Err(BootCfgError::NoCpus));
        assert_eq!(
            parse(&host_without("timer"), &[]),
            Err(BootCfgError::NoTimer)
        );
        assert!(parse(&host_without("nothing"), &[]).is_ok());
        assert!(matches!(parse(b"", &[]), Err(BootCfgError::BadDtb(_))));
        assert!(matches!(
            parse(&[0u8; 64], &[]),
            Err(BootCfgError::BadDtb(_))
        ));
        assert!(matches!(
            parse(&FIXTURE[..100], &[]),
            Err(BootCfgError::BadDtb(_))
        ));
        assert_eq!(
            BootCfgError::NoGic.to_string(),
            "host device tree has no GICv2/GICv3 interrupt controller"
        );
    }

    #[test]
    fn gic_v2_and_interrupt_decoding() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.property_u32("interrupt-parent", 2).unwrap();
        let n = w.begin_node("memory").unwrap();
        w.property_array_u32("reg", &[0x8000_0000, 0x1000_0000])
            .unwrap();
        w.end_node(n).unwrap();
        // A secondary controller comes first; the root interrupt-parent selects the GIC.
        for (name, ph, compat, reg) in [
            (
                "gic@1000",
                1u32,
                "arm,cortex-a15-gic",
                [
                    0x1000u32, 0x1000, 0x2000, 0x2000, 0x4000, 0x2000, 0x6000, 0x2000,
                ],
            ),
            (
                "interrupt-controller@2c001000",
                2,
                "arm,gic-400",
                [
                    0x2c00_1000,
                    0x1000,
                    0x2c00_2000,
                    0x2000,
                    0x2c00_4000,
                    0x2000,
                    0x2c00_6000,
                    0x2000,
                ],
            ),
        ] {
            let n = w.begin_node(name).unwrap();
            w.property_string("compatible", compat).unwrap();
            w.property_null("interrupt-controller").unwrap();
            w.property_array_u32("reg", &reg).unwrap();
            w.property_array_u32("interrupts", &[1, 9, 0xf04]).unwrap();
            w.property_phandle(ph).unwrap();
            w.end_node(n).unwrap();
        }
        let n = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        let c = w.begin_node("cpu@100").unwrap();
        w.property_array_u32("reg", &[0, 0x100]).unwrap();
        w.end_node(c).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv8-timer").unwrap();
        w.property_array_u32(
            "interrupts",
            &[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08],
        )
        .unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        let info = parse(&w.finish().unwrap(), &[]).unwrap();
        assert_eq!(info.gic.version, GicVersion::V2);
        assert_eq!(info.gic.node_path, "/interrupt-controller@2c001000");
        assert_eq!(info.gic.cpu_if, Some(hr(0x2c00_2000, 0x2000)));
        assert_eq!(info.gic.hyp_if, Some(hr(0x2c00_4000, 0x2000)));
        assert_eq!(info.gic.vcpu_if, Some(hr(0x2c00_6000, 0x2000)));
        assert_eq!(info.gic.maintenance_intid, Some(25));
        assert_eq!(
            info.cpus,
            vec![CpuInfo {
                mpidr: 0x100,
                release_addr: None
            }]
        );
        assert_eq!(info.timer.flags, [0xf08; 4]);
        assert_eq!(info.psci, None);
        assert!(info.domains.is_empty());
        assert!(info.uart.is_none());
        assert_eq!(gic_intid(0, 1), Some(33));
        assert_eq!(gic_intid(1, 16), None);
        assert_eq!(gic_intid(2, 1), None);
        assert_eq!(gic_intid(0, 988), None);
    }

    #[test]
    fn nops_are_tolerated() {
        // Turn the first property of the root (the 12-byte header + 4-byte value of
        // interrupt-parent) into NOPs; the tree still parses, minus that property.
        let mut dtb = qemu(|_| {});
        let off_struct = be32(&dtb, 8).unwrap() as usize;
        let prop = off_struct + 8; // after BEGIN_NODE and the empty root name
        assert_eq!(be32(&dtb, prop), Some(FDT_PROP));
        for k in 0..4 {
            dtb[prop + 4 * k..prop + 4 * k + 4].copy_from_slice(&FDT_NOP.to_be_bytes());
        }
        let cleaned = validate(&dtb).unwrap();
        assert!(matches!(cleaned, Cow::Owned(_)));
        let info = parse(&dtb, &[]).unwrap();
        assert_eq!(info.gic.phandle, Some(0x8003));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes, &[]);
        }

        #[test]
        fn random_bytes_with_a_valid_header_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), fields in prop::collection::vec(0u32..600, 9)) {
            let mut dtb = FDT_MAGIC.to_be_bytes().to_vec();
            for f in fields {
                dtb.extend_from_slice(&f.to_be_bytes());
            }
            dtb.extend_from_slice(&body);
            let _ = parse(&dtb, &[]);
        }

        #[test]
        fn mutated_fixture_never_panics(
            edits in prop::collection::vec((0usize..FIXTURE.len(), any::<u8>()), 1..8),
            cut in prop::option::of(0usize..FIXTURE.len()),
        ) {
            let mut dtb = FIXTURE.to_vec();
            for (at, byte) in edits {
                dtb[at] = byte;
            }
            if let Some(cut) = cut {
                dtb.truncate(cut);
            }
            if let Ok(info) = parse(&dtb, &MICA) {
                for d in info.domains.iter().filter_map(|d| d.as_ref().err()) {
                    prop_assert!(!d.to_string().contains('\n'));
                }
            }
        }

        #[test]
        fn mutated_struct_words_never_panic(edits in prop::collection::vec((0usize..2200, prop::sample::select(vec![0u32, 1, 2, 3, 4, 5, 9, 0xffff_ffff, 0x1000, 12])), 1..6)) {
            // Word-aligned edits inside the struct block hit tags, lengths and name offsets.
            let mut dtb = FIXTURE.to_vec();
            let off_struct = be32(&dtb, 8).unwrap() as usize;
            for (word, value) in edits {
                let at = off_struct + 4 * word;
                if at + 4 <= dtb.len() {
                    dtb[at..at + 4].copy_from_slice(&value.to_be_bytes());
                }
            }
            let _ = parse(&dtb, &MICA);
        }
    }

    /// A Raspberry Pi 4 shaped tree: peripherals behind `/soc` with bus addresses,
    /// spin-table CPUs, a GIC-400 on the bus.
    fn rpi4_like(soc_ranges: &[u32]) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.property_u32("interrupt-parent", 1).unwrap();
        w.property_string_list("compatible", s(&["raspberrypi,4-model-b", "brcm,bcm2711"]))
            .unwrap();
        let n = w.begin_node("memory@0").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u32("reg", &[0, 0, 0x4000_0000]).unwrap();
        w.end_node(n).unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for (i, release) in [(0u32, 0xd8u32), (1, 0xe0)] {
            let c = w.begin_node(&format!("cpu@{i}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u32("reg", i).unwrap();
            w.property_string("enable-method", "spin-table").unwrap();
            w.property_array_u32("cpu-release-addr", &[0, release])
                .unwrap();
            w.end_node(c).unwrap();
        }
        // A spin-table CPU whose release address is missing is noted.
        let c = w.begin_node("cpu@2").unwrap();
        w.property_string("device_type", "cpu").unwrap();
        w.property_u32("reg", 2).unwrap();
        w.property_string("enable-method", "spin-table").unwrap();
        w.end_node(c).unwrap();
        w.end_node(cpus).unwrap();
        let t = w.begin_node("timer").unwrap();
        w.property_string("compatible", "arm,armv8-timer").unwrap();
        w.property_array_u32(
            "interrupts",
            &[1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08],
        )
        .unwrap();
        w.end_node(t).unwrap();
        let soc = w.begin_node("soc").unwrap();
        w.property_string("compatible", "simple-bus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.property_array_u32("ranges", soc_ranges).unwrap();
        let u = w.begin_node("serial@7e201000").unwrap();
        w.property_string_list("compatible", s(&["arm,pl011", "arm,primecell"]))
            .unwrap();
        w.property_array_u32("reg", &[0x7e20_1000, 0x200]).unwrap();
        w.property_array_u32("interrupts", &[0, 0x79, 4]).unwrap();
        w.end_node(u).unwrap();
        let g = w.begin_node("interrupt-controller@40041000").unwrap();
        w.property_null("interrupt-controller").unwrap();
        w.property_string("compatible", "arm,gic-400").unwrap();
        w.property_array_u32(
            "reg",
            &[
                0x4004_1000,
                0x1000,
                0x4004_2000,
                0x2000,
                0x4004_4000,
                0x2000,
                0x4004_6000,
                0x2000,
            ],
        )
        .unwrap();
        w.property_array_u32("interrupts", &[1, 9, 0xf04]).unwrap();
        w.property_u32("phandle", 1).unwrap();
        w.end_node(g).unwrap();
        w.end_node(soc).unwrap();
        let ch = w.begin_node("chosen").unwrap();
        w.property_string("stdout-path", "/soc/serial@7e201000")
            .unwrap();
        w.end_node(ch).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    const RPI4_SOC_RANGES: &[u32] = &[
        0x7e00_0000,
        0,
        0xfe00_0000,
        0x180_0000,
        0x4000_0000,
        0,
        0xff80_0000,
        0x80_0000,
    ];

    #[test]
    fn bus_addresses_are_translated_through_ranges() {
        let dtb = rpi4_like(RPI4_SOC_RANGES);
        let info = parse(&dtb, &[]).unwrap();
        let uart = info.uart.unwrap();
        assert_eq!(uart.base, hr(0xfe20_1000, 0x200));
        assert_eq!(uart.intid, Some(32 + 0x79));
        assert_eq!(info.gic.dist, hr(0xff84_1000, 0x1000));
        assert_eq!(info.gic.cpu_if, Some(hr(0xff84_2000, 0x2000)));
        assert_eq!(info.gic.vcpu_if, Some(hr(0xff84_6000, 0x2000)));
        assert_eq!(console_uart(&dtb).unwrap().base, hr(0xfe20_1000, 0x200));
        // The devices dom0 would get are at CPU addresses too.
        let (devices, _) = host_devices(&dtb, &[], 1 << 40).unwrap();
        let serial = devices.iter().find(|d| d.path == "/soc/serial@7e201000");
        assert_eq!(serial.unwrap().regs, vec![hr(0xfe20_1000, 0x200)]);
    }

    #[test]
    fn addresses_outside_every_range_are_unusable() {
        // The UART's bus address is in no window: no console, and no GIC either.
        let dtb = rpi4_like(&[0x1000_0000, 0, 0x1000_0000, 0x1000]);
        assert!(console_uart(&dtb).is_none());
        assert!(parse(&dtb, &[]).is_err());
        // A window too small for the whole register block does not count.
        let dtb = rpi4_like(&[
            0x7e20_1000,
            0,
            0xfe20_1000,
            0x100,
            0x4000_0000,
            0,
            0xff80_0000,
            0x80_0000,
        ]);
        assert!(console_uart(&dtb).is_none());
        // Malformed ranges (not a whole number of entries) are refused, not misread.
        let dtb = rpi4_like(&[0x7e00_0000, 0, 0xfe00_0000]);
        assert!(console_uart(&dtb).is_none());
    }

    #[test]
    fn spin_table_cpus_keep_their_release_address() {
        let info = parse(&rpi4_like(RPI4_SOC_RANGES), &[]).unwrap();
        let release: Vec<Option<u64>> = info.cpus.iter().map(|c| c.release_addr).collect();
        assert_eq!(release, vec![Some(0xd8), Some(0xe0), None]);
        assert!(info
            .warnings
            .iter()
            .any(|w| w.contains("cpu@2") && w.contains("cpu-release-addr")));
    }
}
