//! Device trees for guests.
//!
//! * [`build_domu_fdt`] writes, from scratch, the tree Xen gives a dom0less domU (Xen's
//!   `dom0less-build.c` / libxl layout): `xen,xenvm` root, memory, vCPUs with PSCI, a GIC at
//!   the guest addresses of `arch-arm.h`, the architected timer, optionally the vPL011 UART.
//! * [`rewrite_dom0_fdt`] copies the host tree for the direct-mapped initial domain, node by
//!   node with properties verbatim (phandles stay valid), replacing what dom0 must see
//!   differently: memory, CPUs, PSCI conduit, `/chosen`, and hiding every device it does not own.
//!
//! Inputs are checked and every failure is an [`FdtBuildError`]; nothing here panics.

use alloc::format;
use alloc::vec::Vec;
use core::fmt;

use crate::fdt_writer::{self, FdtWriter};
use fdt::Fdt;
use mica_guest_abi::layout;

use crate::addr::{GuestRange, HostRange};
use crate::bootcfg::{self, BootCfgError, Tree};
use crate::extended_regions;
use crate::passthrough::{DomuPassthrough, PassthroughNode};

/// Phandle of the GIC in a domU tree (Xen's `GUEST_PHANDLE_GIC`).
pub const GUEST_PHANDLE_GIC: u32 = 65000;

/// Why a guest device tree could not be produced.
#[derive(Debug, PartialEq, Eq)]
pub enum FdtBuildError {
    /// The request itself is inconsistent; the text says how.
    BadInput(&'static str),
    /// The host DTB could not be read.
    HostDtb(BootCfgError),
    /// The writer refused something (e.g. a host node name it considers invalid).
    Writer(fdt_writer::Error),
}

impl fmt::Display for FdtBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadInput(why) => write!(f, "cannot build guest device tree: {why}"),
            Self::HostDtb(e) => write!(f, "cannot build dom0 device tree: {e}"),
            Self::Writer(e) => write!(f, "device tree writer failed: {e}"),
        }
    }
}

impl From<fdt_writer::Error> for FdtBuildError {
    fn from(e: fdt_writer::Error) -> Self {
        Self::Writer(e)
    }
}

type Result<T> = core::result::Result<T, FdtBuildError>;

/// The interrupt controller a domU sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestGic {
    /// GICv3: distributor and redistributor region.
    V3 {
        /// Distributor.
        dist: GuestRange,
        /// Redistributors (one 128 KiB frame per vCPU).
        redist: GuestRange,
    },
    /// GICv2: distributor and CPU interface.
    V2 {
        /// Distributor.
        dist: GuestRange,
        /// CPU interface.
        cpu: GuestRange,
    },
}

/// What to put in a domU's device tree.
#[derive(Clone, Debug)]
pub struct DomuFdt<'a> {
    /// RAM banks, in guest-physical addresses.
    pub ram: Vec<GuestRange>,
    /// MPIDR of each vCPU, in vCPU order.
    pub vcpu_mpidrs: Vec<u64>,
    /// The virtual GIC.
    pub gic: GuestGic,
    /// Raw third cells of the timer's four interrupts (secure phys, phys, virt, hyp).
    pub timer_flags: [u32; 4],
    /// The vPL011: its MMIO range and INTID (an SPI).
    pub vpl011: Option<(GuestRange, u32)>,
    /// Kernel command line.
    pub bootargs: Option<&'a str>,
    /// Where the initrd was loaded.
    pub initrd: Option<GuestRange>,
    /// Xen's `hypervisor` node, for guests that use the Xen interface.
    pub hypervisor: Option<HypervisorNode>,
}

fn reg_cells(ranges: impl Iterator<Item = (u64, u64)>) -> Vec<u64> {
    ranges.flat_map(|(a, s)| [a, s]).collect()
}

/// Writes `interrupts = <type number flags>` for an INTID.
fn interrupt_cells(intid: u32, flags: u32) -> Result<[u32; 3]> {
    match intid {
        16..=31 => Ok([1, intid - 16, flags]),
        32..=1019 => Ok([0, intid - 32, flags]),
        _ => Err(FdtBuildError::BadInput("interrupt is not a PPI or SPI")),
    }
}

fn write_psci(w: &mut FdtWriter) -> Result<()> {
    let n = w.begin_node("psci")?;
    w.property_string_list("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])?;
    w.property_string("method", "hvc")?;
    w.end_node(n)?;
    Ok(())
}

fn write_chosen(
    w: &mut FdtWriter,
    bootargs: Option<&str>,
    initrd: Option<(u64, u64)>,
    stdout: Option<&str>,
) -> Result<()> {
    let n = w.begin_node("chosen")?;
    if let Some(b) = bootargs {
        w.property_string("bootargs", b)?;
    }
    if let Some((start, end)) = initrd {
        w.property_u64("linux,initrd-start", start)?;
        w.property_u64("linux,initrd-end", end)?;
    }
    if let Some(s) = stdout {
        w.property_string("stdout-path", s)?;
    }
    w.end_node(n)?;
    Ok(())
}

/// Xen's `hypervisor` node: how a guest finds the Xen interface (see
/// `docs/misc/arm/device-tree/guest.txt`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypervisorNode {
    /// Guest-physical space for grant-table frames (outside RAM).
    pub grant_region: GuestRange,
    /// INTID of the event-channel upcall (a PPI).
    pub upcall_intid: u32,
    /// End of the guest-physical space the domain's stage 2 translates: extended regions
    /// are offered below it. 0 offers none (as Xen does for 32-bit guests).
    pub address_space_end: u64,
}

/// Writes `/hypervisor` (named exactly so: Linux matches the name without a unit address):
/// `reg` is the grant region, then the extended regions, in the root's `cells`
/// (address, size). An extended region is cut to what the cells can hold.
fn write_hypervisor(
    w: &mut FdtWriter,
    h: &HypervisorNode,
    gic_phandle: u32,
    extended: &[GuestRange],
    cells: (u32, u32),
) -> Result<()> {
    if !(16..32).contains(&h.upcall_intid) || h.grant_region.size == 0 {
        return Err(FdtBuildError::BadInput("bad hypervisor node"));
    }
    let n = w.begin_node("hypervisor")?;
    w.property_string_list("compatible", &["xen,xen-4.17", "xen,xen"])?;
    let (ac, sc) = cells;
    let mut reg = Vec::new();
    push_cells(&mut reg, h.grant_region.start.raw(), ac)?;
    push_cells(&mut reg, h.grant_region.size, sc)?;
    let limit = |cells: u32| if cells == 1 { 1 << 32 } else { u64::MAX };
    for r in extended {
        let start = r.start.raw();
        let end = r.end().raw().min(limit(ac));
        let size = end
            .saturating_sub(start)
            .min(limit(sc) - extended_regions::ALIGN);
        let size = size - size % extended_regions::ALIGN;
        if size >= extended_regions::MIN_SIZE {
            push_cells(&mut reg, start, ac)?;
            push_cells(&mut reg, size, sc)?;
        }
    }
    w.property("reg", &reg)?;
    // Level, active low (0xf08), as Xen writes it.
    w.property_array_u32("interrupts", &interrupt_cells(h.upcall_intid, 0xf08)?)?;
    w.property_u32("interrupt-parent", gic_phandle)?;
    w.end_node(n)?;
    Ok(())
}

/// Builds a dom0less domU's device tree.
pub fn build_domu_fdt(spec: &DomuFdt<'_>) -> Result<Vec<u8>> {
    build_domu_fdt_with_passthrough(spec, None)
}

/// Writes the `passthrough` bus the way Xen does for a partial device tree: a `simple-bus`
/// with an identity `ranges` and 2/2 cells, holding the partial tree's device nodes.
fn write_passthrough(w: &mut FdtWriter, pt: &DomuPassthrough) -> Result<()> {
    fn node(w: &mut FdtWriter, n: &PassthroughNode) -> Result<()> {
        let id = w.begin_node(&n.name)?;
        for (name, value) in &n.props {
            w.property(name, value)?;
        }
        for c in &n.children {
            node(w, c)?;
        }
        w.end_node(id)?;
        Ok(())
    }
    let bus = w.begin_node("passthrough")?;
    w.property_string("compatible", "simple-bus")?;
    w.property_null("ranges")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    for n in &pt.nodes {
        node(w, n)?;
    }
    w.end_node(bus)?;
    Ok(())
}

/// Builds a dom0less domU's device tree, with the devices of its partial device tree (from
/// [`crate::passthrough::parse_partial_dt`]) under `/passthrough`.
pub fn build_domu_fdt_with_passthrough(
    spec: &DomuFdt<'_>,
    passthrough: Option<&DomuPassthrough>,
) -> Result<Vec<u8>> {
    let bad = FdtBuildError::BadInput;
    if spec.ram.is_empty() || spec.ram.iter().any(|r| r.size == 0) {
        return Err(bad("no RAM, or an empty RAM bank"));
    }
    if spec.vcpu_mpidrs.is_empty() || spec.vcpu_mpidrs.len() > layout::MAX_VCPUS as usize {
        return Err(bad("vCPU count out of range"));
    }
    let uart_path = spec
        .vpl011
        .map(|(r, _)| format!("/sbsa-uart@{:x}", r.start.raw()));

    let mut w = FdtWriter::new()?;
    let root = w.begin_node("")?;
    w.property_string_list("compatible", &["xen,xenvm-4.17", "xen,xenvm"])?;
    w.property_u32("interrupt-parent", GUEST_PHANDLE_GIC)?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;

    let initrd = spec.initrd.map(|r| (r.start.raw(), r.end().raw()));
    write_chosen(&mut w, spec.bootargs, initrd, uart_path.as_deref())?;
    if let Some(path) = &uart_path {
        let n = w.begin_node("aliases")?;
        w.property_string("serial0", path)?;
        w.end_node(n)?;
    }

    let n = w.begin_node("cpus")?;
    let wide = spec.vcpu_mpidrs.iter().any(|&m| m > u64::from(u32::MAX));
    w.property_u32("#address-cells", if wide { 2 } else { 1 })?;
    w.property_u32("#size-cells", 0)?;
    for &mpidr in &spec.vcpu_mpidrs {
        let c = w.begin_node(&format!("cpu@{mpidr:x}"))?;
        w.property_string("device_type", "cpu")?;
        w.property_string("compatible", "arm,armv8")?;
        w.property_string("enable-method", "psci")?;
        if wide {
            w.property_u64("reg", mpidr)?;
        } else {
            w.property_u32("reg", mpidr as u32)?;
        }
        w.end_node(c)?;
    }
    w.end_node(n)?;

    write_psci(&mut w)?;

    let n = w.begin_node(&format!("memory@{:x}", spec.ram[0].start.raw()))?;
    w.property_string("device_type", "memory")?;
    w.property_array_u64(
        "reg",
        &reg_cells(spec.ram.iter().map(|r| (r.start.raw(), r.size))),
    )?;
    w.end_node(n)?;

    let (dist, second, compatible) = match spec.gic {
        GuestGic::V3 { dist, redist } => (dist, redist, "arm,gic-v3"),
        GuestGic::V2 { dist, cpu } => (dist, cpu, "arm,cortex-a15-gic"),
    };
    let n = w.begin_node(&format!("interrupt-controller@{:x}", dist.start.raw()))?;
    w.property_string("compatible", compatible)?;
    w.property_u32("#interrupt-cells", 3)?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_null("ranges")?;
    w.property_null("interrupt-controller")?;
    if matches!(spec.gic, GuestGic::V3 { .. }) {
        w.property_u32("#redistributor-regions", 1)?;
    }
    w.property_array_u64(
        "reg",
        &[dist.start.raw(), dist.size, second.start.raw(), second.size],
    )?;
    w.property_u32("phandle", GUEST_PHANDLE_GIC)?;
    w.end_node(n)?;

    let n = w.begin_node("timer")?;
    w.property_string("compatible", "arm,armv8-timer")?;
    let mut cells = Vec::with_capacity(12);
    let intids = [
        layout::PHYS_SECURE_TIMER_PPI,
        layout::PHYS_TIMER_PPI,
        layout::VIRT_TIMER_PPI,
        layout::HYP_TIMER_PPI,
    ];
    for (intid, flags) in intids.into_iter().zip(spec.timer_flags) {
        cells.extend(interrupt_cells(intid, flags)?);
    }
    w.property_array_u32("interrupts", &cells)?;
    w.end_node(n)?;

    if let Some(h) = &spec.hypervisor {
        let extended = domu_extended_regions(spec, h, passthrough);
        write_hypervisor(&mut w, h, GUEST_PHANDLE_GIC, &extended, (2, 2))?;
    }

    if let (Some((r, intid)), Some(path)) = (spec.vpl011, &uart_path) {
        if !(32..=1019).contains(&intid) {
            return Err(bad("the vPL011 interrupt must be an SPI"));
        }
        let n = w.begin_node(path.trim_start_matches('/'))?;
        w.property_string("compatible", "arm,sbsa-uart")?;
        w.property_array_u64("reg", &[r.start.raw(), r.size])?;
        // Level-high (4), as Xen's make_vpl011_uart_node.
        w.property_array_u32("interrupts", &interrupt_cells(intid, 4)?)?;
        w.property_u32("interrupt-parent", GUEST_PHANDLE_GIC)?;
        w.property_u32("current-speed", 115_200)?;
        w.end_node(n)?;
    }

    if let Some(pt) = passthrough {
        write_passthrough(&mut w, pt)?;
    }

    w.end_node(root)?;
    Ok(w.finish()?)
}

/// What dom0's device tree must say.
#[derive(Clone, Debug)]
pub struct Dom0Fdt<'a> {
    /// dom0's RAM banks (direct-mapped: guest address == host address).
    pub ram: Vec<HostRange>,
    /// MPIDR of each vCPU.
    pub vcpu_mpidrs: Vec<u64>,
    /// Kernel command line.
    pub bootargs: Option<&'a str>,
    /// Where the initrd is.
    pub initrd: Option<HostRange>,
    /// Host path of the UART dom0 sees (its virtual twin); kept enabled.
    pub uart_path: Option<&'a str>,
    /// Paths of host devices passed through to dom0 (left enabled).
    pub keep_devices: &'a [&'a str],
    /// Xen's `hypervisor` node (dom0 always uses the Xen interface on Xen).
    pub hypervisor: Option<HypervisorNode>,
}

/// Copies one host property. Linux's trees use a few names longer than the 31 characters
/// the devicetree specification allows (ZynqMP's and i.MX 8M Plus's DWC3 USB
/// `snps,...-quirk` flags), which the writer refuses: those are left out of dom0's tree
/// rather than failing dom0 (they tune USB controllers, which dom0 then runs without).
fn write_host_property(w: &mut FdtWriter, name: &str, value: &[u8]) -> Result<()> {
    match w.property(name, value) {
        Err(fdt_writer::Error::InvalidPropertyName) if name.len() > DT_PROPERTY_NAME_MAX => Ok(()),
        other => Ok(other?),
    }
}

/// The devicetree specification's longest property name.
const DT_PROPERTY_NAME_MAX: usize = 31;

/// Encodes `value` in `cells` 32-bit cells (1 or 2).
fn push_cells(out: &mut Vec<u8>, value: u64, cells: u32) -> Result<()> {
    match cells {
        1 => {
            let v = u32::try_from(value)
                .map_err(|_| FdtBuildError::BadInput("value does not fit the host's cell size"))?;
            out.extend_from_slice(&v.to_be_bytes());
        }
        2 => out.extend_from_slice(&value.to_be_bytes()),
        _ => return Err(FdtBuildError::BadInput("host cell size is not 1 or 2")),
    }
    Ok(())
}

const GIC_COMPATIBLES: &[&str] = &[
    "arm,gic-v3",
    "arm,gic-400",
    "arm,cortex-a15-gic",
    "arm,cortex-a9-gic",
    "arm,cortex-a7-gic",
];

struct Dom0Writer<'s, 'b, 'a> {
    t: &'s Tree<'b, 'a>,
    spec: &'s Dom0Fdt<'s>,
    w: FdtWriter,
    /// The host's first cpu node, whose `compatible` the vCPUs copy.
    first_cpu: Option<usize>,
    /// Host cpu nodes in order, so vCPU n keeps host cpu n's phandle.
    host_cpus: Vec<usize>,
    memory_written: bool,
    stdout_path: Option<&'a str>,
    /// Extended regions for the hypervisor node.
    extended: Vec<GuestRange>,
}

impl Dom0Writer<'_, '_, '_> {
    fn is_memory(&self, i: usize) -> bool {
        let t = self.t;
        t.nodes[i].parent == Some(0)
            && match t.prop(i, "device_type").and_then(bootcfg::string) {
                Some(d) => d == "memory",
                None => t.base_name(i) == "memory",
            }
    }

    fn is_gic(&self, i: usize) -> bool {
        self.t.has(i, "interrupt-controller")
            && GIC_COMPATIBLES.iter().any(|c| self.t.is_compatible(i, c))
    }

    fn copy_props(&mut self, i: usize, skip: &[&str]) -> Result<()> {
        for p in self.t.nodes[i].node.properties() {
            if !skip.contains(&p.name) {
                write_host_property(&mut self.w, p.name, p.value)?;
            }
        }
        Ok(())
    }

    fn copy_only(&mut self, i: usize, keep: &[&str]) -> Result<()> {
        for p in self.t.nodes[i].node.properties() {
            if keep.contains(&p.name) {
                write_host_property(&mut self.w, p.name, p.value)?;
            }
        }
        Ok(())
    }

    fn write_memory(&mut self) -> Result<()> {
        if self.memory_written {
            return Ok(());
        }
        self.memory_written = true;
        let first = self
            .spec
            .ram
            .first()
            .ok_or(FdtBuildError::BadInput("dom0 has no RAM"))?;
        let (ac, sc) = self.t.cells_of(0);
        let mut reg = Vec::new();
        for r in &self.spec.ram {
            push_cells(&mut reg, r.start.raw(), ac)?;
            push_cells(&mut reg, r.size, sc)?;
        }
        let n = self
            .w
            .begin_node(&format!("memory@{:x}", first.start.raw()))?;
        self.w.property_string("device_type", "memory")?;
        self.w.property("reg", &reg)?;
        self.w.end_node(n)?;
        Ok(())
    }

    fn write_cpus(&mut self, i: usize) -> Result<()> {
        let n = self.w.begin_node(self.t.name(i))?;
        self.copy_props(i, &[])?;
        let (ac, _) = self.t.cells_of(i);
        let compatible = self.first_cpu.and_then(|c| self.t.prop(c, "compatible"));
        for (k, &mpidr) in self.spec.vcpu_mpidrs.iter().enumerate() {
            let c = self.w.begin_node(&format!("cpu@{mpidr:x}"))?;
            self.w.property_string("device_type", "cpu")?;
            match compatible {
                Some(v) => self.w.property("compatible", v)?,
                None => self.w.property_string("compatible", "arm,armv8")?,
            }
            let mut reg = Vec::new();
            push_cells(&mut reg, mpidr, ac)?;
            self.w.property("reg", &reg)?;
            self.w.property_string("enable-method", "psci")?;
            if let Some(ph) = self.host_cpus.get(k).and_then(|&h| self.t.phandle(h)) {
                self.w.property_u32("phandle", ph)?;
            }
            self.w.end_node(c)?;
        }
        self.w.end_node(n)?;
        Ok(())
    }

    fn copy(&mut self, i: usize) -> Result<()> {
        let t = self.t;
        let path = t.nodes[i].path.as_str();
        let at_root = t.nodes[i].parent == Some(0);
        if self.is_memory(i) {
            return self.write_memory();
        }
        if at_root && (t.base_name(i) == "hypervisor") {
            return Ok(());
        }
        if at_root && t.name(i) == "cpus" {
            return self.write_cpus(i);
        }
        if at_root && t.name(i) == "chosen" {
            let initrd = self.spec.initrd.map(|r| (r.start.raw(), r.end().raw()));
            let stdout = self.stdout_path.or(self.spec.uart_path);
            return write_chosen(&mut self.w, self.spec.bootargs, initrd, stdout);
        }
        let is_msi_frame =
            t.is_compatible(i, "arm,gic-v3-its") || t.is_compatible(i, "arm,gic-v2m-frame");
        if is_msi_frame && t.nodes[i].parent.is_some_and(|p| self.is_gic(p)) {
            return Ok(());
        }

        let n = self.w.begin_node(if i == 0 { "" } else { t.name(i) })?;
        let is_psci = t.compatible(i).iter().any(|c| c.starts_with("arm,psci"));
        let is_uart = self.spec.uart_path == Some(path);
        let under_special = {
            // Nodes below these keep their `reg` meaning to the parent, not to a bus.
            let mut p = t.nodes[i].parent;
            let mut special = false;
            while let Some(q) = p {
                if q != 0 && (t.name(q) == "reserved-memory" || self.is_gic(q)) {
                    special = true;
                }
                p = t.nodes[q].parent;
            }
            special
        };
        // Nodes marked for a domU are hidden even if asked to be kept (as Xen does).
        let for_domu = t.has(i, "xen,passthrough");
        // A bus with registers of its own stays: hiding it would hide every device on it.
        let is_bus = t.is_compatible(i, "simple-bus") && t.children(i).next().is_some();
        let is_device = i != 0
            && t.has(i, "reg")
            && !is_bus
            && !self.is_gic(i)
            && !under_special
            && (for_domu || !self.spec.keep_devices.contains(&path));
        if is_psci {
            self.copy_props(i, &["method"])?;
            self.w.property_string("method", "hvc")?;
        } else if is_uart && !for_domu {
            // Mica emulates an SBSA UART (a PL011 subset) at the host UART's address,
            // whatever the board's own UART is (Cadence, i.MX, or a PL011 whose clocks come
            // from firmware dom0 cannot reach): keep only where it is and how it interrupts.
            self.copy_only(i, &["reg", "interrupts", "interrupt-parent", "phandle"])?;
            self.w.property_string("compatible", "arm,sbsa-uart")?;
            self.w.property_u32("current-speed", 115_200)?;
            self.w.property_string("status", "okay")?;
            // Children (a Bluetooth chip on the Pi's UART) belong to the physical line.
            self.w.end_node(n)?;
            return Ok(());
        } else if is_device {
            self.copy_props(i, &["status"])?;
            self.w.property_string("status", "disabled")?;
        } else {
            self.copy_props(i, &[])?;
        }
        let children: Vec<usize> = t.children(i).collect();
        for c in children {
            self.copy(c)?;
        }
        if i == 0 {
            if let Some(h) = &self.spec.hypervisor {
                let gic = (0..t.nodes.len())
                    .find(|&g| self.is_gic(g))
                    .and_then(|g| t.phandle(g))
                    .ok_or(FdtBuildError::BadInput("the host GIC has no phandle"))?;
                let cells = t.cells_of(0);
                write_hypervisor(&mut self.w, h, gic, &self.extended, cells)?;
            }
            // A host tree without memory or /chosen nodes still gets dom0's.
            self.write_memory()?;
            // dom0's vCPUs start through Mica's PSCI even where the host uses a spin table
            // (Raspberry Pi 4) and so has no psci node.
            let has_psci = (1..t.nodes.len())
                .any(|k| t.compatible(k).iter().any(|c| c.starts_with("arm,psci")));
            if !has_psci {
                write_psci(&mut self.w)?;
            }
            if t.find("/chosen").is_none() {
                let initrd = self.spec.initrd.map(|r| (r.start.raw(), r.end().raw()));
                write_chosen(&mut self.w, self.spec.bootargs, initrd, self.spec.uart_path)?;
            }
        }
        self.w.end_node(n)?;
        Ok(())
    }
}

/// Builds dom0's device tree from the host's. See the module documentation for the rules.
pub fn rewrite_dom0_fdt(host_dtb: &[u8], spec: &Dom0Fdt<'_>) -> Result<Vec<u8>> {
    if spec.ram.is_empty() {
        return Err(FdtBuildError::BadInput("dom0 has no RAM"));
    }
    if spec.vcpu_mpidrs.is_empty() || spec.vcpu_mpidrs.len() > layout::MAX_VCPUS as usize {
        return Err(FdtBuildError::BadInput("vCPU count out of range"));
    }
    let blob = bootcfg::validate(host_dtb).map_err(FdtBuildError::HostDtb)?;
    let fdt = Fdt::new(&blob)
        .map_err(|_| FdtBuildError::HostDtb(BootCfgError::BadDtb("rejected by the fdt reader")))?;
    let t = Tree::build(&fdt).map_err(FdtBuildError::HostDtb)?;

    let reservations: Vec<(u64, u64)> = fdt
        .memory_reservations()
        .filter(|r| r.size() > 0)
        .map(|r| (r.address() as u64, r.size() as u64))
        .collect();
    let cpus_node = t.find("/cpus");
    let host_cpus: Vec<usize> = cpus_node
        .map(|c| {
            t.children(c)
                .filter(
                    |&k| match t.prop(k, "device_type").and_then(bootcfg::string) {
                        Some(d) => d == "cpu",
                        None => t.base_name(k) == "cpu",
                    },
                )
                .collect()
        })
        .unwrap_or_default();
    let stdout_path = t
        .find("/chosen")
        .and_then(|c| t.prop(c, "stdout-path"))
        .and_then(bootcfg::string);
    let extended = match &spec.hypervisor {
        Some(h) => dom0_extended_regions(&t, spec, h, &reservations),
        None => Vec::new(),
    };
    let mut dw = Dom0Writer {
        t: &t,
        spec,
        w: FdtWriter::new_with_mem_reserv(&reservations)?,
        first_cpu: host_cpus.first().copied(),
        host_cpus,
        memory_written: false,
        stdout_path,
        extended,
    };
    dw.copy(0)?;
    Ok(dw.w.finish()?)
}

/// A domU's extended regions, as Xen finds them for a dom0less domU: what its RAM does not
/// use of the two guest RAM windows of `arch-arm.h`, below the end of its address space. Its
/// devices, the grant region and passthrough MMIO are kept out too, wherever they are.
fn domu_extended_regions(
    spec: &DomuFdt<'_>,
    h: &HypervisorNode,
    pt: Option<&DomuPassthrough>,
) -> Vec<GuestRange> {
    let mut windows = Vec::new();
    for (base, size) in [
        (layout::GUEST_RAM0_BASE, layout::GUEST_RAM0_SIZE),
        (layout::GUEST_RAM1_BASE, layout::GUEST_RAM1_SIZE),
    ] {
        if base < h.address_space_end {
            windows.push((base, size.min(h.address_space_end - base)));
        }
    }
    let (gic_a, gic_b) = match spec.gic {
        GuestGic::V3 { dist, redist } => (dist, redist),
        GuestGic::V2 { dist, cpu } => (dist, cpu),
    };
    let mut used = Vec::new();
    let mut add = |r: &GuestRange| used.push((r.start.raw(), r.size));
    spec.ram.iter().for_each(&mut add);
    [h.grant_region, gic_a, gic_b].iter().for_each(&mut add);
    if let Some((uart, _)) = &spec.vpl011 {
        add(uart);
    }
    for m in pt.map_or(&[][..], |p| &p.mmio) {
        add(&m.guest);
    }
    extended_regions::find(&windows, &used)
}

/// dom0's extended regions: the address space below its end less everything the host tree
/// describes (every node's `reg`, every bus window, RAM, reservations) and the grant region.
/// dom0 is direct-mapped, so these are holes in the host's physical map, as Xen finds them
/// for a dom0 behind an IOMMU. A tree whose addresses cannot all be read gets none: a region
/// over a device dom0 cannot see would be worse than no region.
fn dom0_extended_regions(
    t: &Tree<'_, '_>,
    spec: &Dom0Fdt<'_>,
    h: &HypervisorNode,
    reservations: &[(u64, u64)],
) -> Vec<GuestRange> {
    let mut used: Vec<(u64, u64)> = reservations.to_vec();
    used.extend(spec.ram.iter().map(|r| (r.start.raw(), r.size)));
    used.push((h.grant_region.start.raw(), h.grant_region.size));
    for k in 1..t.nodes.len() {
        let Some(windows) = t.bus_windows(k) else {
            return Vec::new();
        };
        used.extend(windows);
        let Some(parent) = t.nodes[k].parent else {
            continue;
        };
        // A bus without sizes (CPUs, I2C, SPI, MDIO) does not address memory.
        if !t.has(k, "reg") || t.cells_of(parent).1 == 0 {
            continue;
        }
        match t.reg_ranges(k) {
            Some(ranges) => used.extend(ranges.iter().map(|r| (r.start.raw(), r.size))),
            None => return Vec::new(),
        }
    }
    extended_regions::find(&[(0, h.address_space_end)], &used)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::addr::{GuestPhysAddr, HostPhysAddr};
    use alloc::vec;
    use fdt::node::FdtNode;

    const FIXTURE: &[u8] = include_bytes!("testdata/qemu-virt-dom0less.dtb");

    fn gr(start: u64, size: u64) -> GuestRange {
        GuestRange::new(GuestPhysAddr::new(start), size).unwrap()
    }

    fn hr(start: u64, size: u64) -> HostRange {
        HostRange::new(HostPhysAddr::new(start), size).unwrap()
    }

    fn prop<'a>(n: &FdtNode<'_, 'a>, name: &str) -> Option<&'a [u8]> {
        n.properties().find(|p| p.name == name).map(|p| p.value)
    }

    fn u32s(v: &[u8]) -> Vec<u32> {
        v.chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn text(v: &[u8]) -> Vec<&str> {
        bootcfg::strings(v)
    }

    fn domu_spec() -> DomuFdt<'static> {
        DomuFdt {
            ram: vec![gr(layout::GUEST_RAM0_BASE, 256 << 20)],
            vcpu_mpidrs: vec![0, 1],
            gic: GuestGic::V3 {
                dist: gr(layout::GUEST_GICD_BASE, layout::GUEST_GICD_SIZE),
                redist: gr(layout::GUEST_GICR_BASE, 2 * 0x2_0000),
            },
            timer_flags: [0xf08, 0xf08, 0xf08, 0xf08],
            vpl011: Some((
                gr(layout::GUEST_PL011_BASE, layout::GUEST_PL011_SIZE),
                layout::GUEST_VPL011_SPI,
            )),
            bootargs: Some("console=ttyAMA0"),
            initrd: Some(gr(0x4800_0000, 0x1000)),
            hypervisor: None,
        }
    }

    #[test]
    fn domu_tree_matches_xen_layout() {
        let dtb = build_domu_fdt(&domu_spec()).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        let root = fdt.find_node("/").unwrap();
        assert_eq!(
            text(prop(&root, "compatible").unwrap()),
            ["xen,xenvm-4.17", "xen,xenvm"]
        );
        assert_eq!(
            u32s(prop(&root, "interrupt-parent").unwrap()),
            [GUEST_PHANDLE_GIC]
        );
        assert_eq!(u32s(prop(&root, "#address-cells").unwrap()), [2]);

        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(
            text(prop(&chosen, "bootargs").unwrap()),
            ["console=ttyAMA0"]
        );
        assert_eq!(
            prop(&chosen, "linux,initrd-start").unwrap(),
            0x4800_0000u64.to_be_bytes()
        );
        assert_eq!(
            prop(&chosen, "linux,initrd-end").unwrap(),
            0x4800_1000u64.to_be_bytes()
        );
        assert_eq!(
            text(prop(&chosen, "stdout-path").unwrap()),
            ["/sbsa-uart@22000000"]
        );
        let aliases = fdt.find_node("/aliases").unwrap();
        assert_eq!(
            text(prop(&aliases, "serial0").unwrap()),
            ["/sbsa-uart@22000000"]
        );

        let cpus: Vec<_> = fdt.find_node("/cpus").unwrap().children().collect();
        assert_eq!(cpus.len(), 2);
        assert_eq!(cpus[1].name, "cpu@1");
        assert_eq!(u32s(prop(&cpus[1], "reg").unwrap()), [1]);
        assert_eq!(text(prop(&cpus[1], "enable-method").unwrap()), ["psci"]);
        assert_eq!(text(prop(&cpus[1], "compatible").unwrap()), ["arm,armv8"]);
        assert_eq!(text(prop(&cpus[1], "device_type").unwrap()), ["cpu"]);

        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(
            text(prop(&psci, "compatible").unwrap()),
            ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]
        );
        assert_eq!(text(prop(&psci, "method").unwrap()), ["hvc"]);

        let mem = fdt.find_node("/memory@40000000").unwrap();
        assert_eq!(
            u32s(prop(&mem, "reg").unwrap()),
            [0, 0x4000_0000, 0, 0x1000_0000]
        );

        let gic = fdt.find_node("/interrupt-controller@3001000").unwrap();
        assert_eq!(text(prop(&gic, "compatible").unwrap()), ["arm,gic-v3"]);
        assert_eq!(u32s(prop(&gic, "#interrupt-cells").unwrap()), [3]);
        assert!(prop(&gic, "interrupt-controller").is_some());
        assert_eq!(prop(&gic, "ranges").unwrap().len(), 0);
        assert_eq!(
            u32s(prop(&gic, "reg").unwrap()),
            [0, 0x300_1000, 0, 0x1_0000, 0, 0x302_0000, 0, 0x4_0000]
        );
        assert_eq!(u32s(prop(&gic, "phandle").unwrap()), [GUEST_PHANDLE_GIC]);

        let timer = fdt.find_node("/timer").unwrap();
        assert_eq!(
            u32s(prop(&timer, "interrupts").unwrap()),
            [1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08]
        );

        let uart = fdt.find_node("/sbsa-uart@22000000").unwrap();
        assert_eq!(text(prop(&uart, "compatible").unwrap()), ["arm,sbsa-uart"]);
        assert_eq!(
            u32s(prop(&uart, "reg").unwrap()),
            [0, 0x2200_0000, 0, 0x1000]
        );
        assert_eq!(u32s(prop(&uart, "interrupts").unwrap()), [0, 0, 4]);
        assert_eq!(u32s(prop(&uart, "current-speed").unwrap()), [115_200]);
        assert_eq!(
            u32s(prop(&uart, "interrupt-parent").unwrap()),
            [GUEST_PHANDLE_GIC]
        );

        // The result is also acceptable to Mica's own strict reader.
        assert!(bootcfg::validate(&dtb).is_ok());
    }

    #[test]
    fn domu_minimal_and_v2() {
        let mut spec = domu_spec();
        spec.vpl011 = None;
        spec.bootargs = None;
        spec.initrd = None;
        spec.gic = GuestGic::V2 {
            dist: gr(layout::GUEST_GICD_BASE, layout::GUEST_GICD_SIZE),
            cpu: gr(layout::GUEST_GICC_BASE, layout::GUEST_GICC_SIZE),
        };
        spec.vcpu_mpidrs = vec![0x1_0000_0000];
        spec.ram.push(gr(layout::GUEST_RAM1_BASE, 1 << 30));
        let dtb = build_domu_fdt(&spec).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        assert!(fdt.find_node("/aliases").is_none());
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(chosen.properties().count(), 0);
        let gic = fdt.find_node("/interrupt-controller@3001000").unwrap();
        assert_eq!(
            text(prop(&gic, "compatible").unwrap()),
            ["arm,cortex-a15-gic"]
        );
        let cpu = fdt.find_node("/cpus/cpu@100000000").unwrap();
        assert_eq!(prop(&cpu, "reg").unwrap(), 0x1_0000_0000u64.to_be_bytes());
        let mem = fdt.find_node("/memory@40000000").unwrap();
        assert_eq!(prop(&mem, "reg").unwrap().len(), 32);
    }

    #[test]
    fn domu_bad_input() {
        let mut s = domu_spec();
        s.ram.clear();
        assert!(matches!(
            build_domu_fdt(&s),
            Err(FdtBuildError::BadInput(_))
        ));
        let mut s = domu_spec();
        s.vcpu_mpidrs.clear();
        assert!(matches!(
            build_domu_fdt(&s),
            Err(FdtBuildError::BadInput(_))
        ));
        let mut s = domu_spec();
        s.vcpu_mpidrs = (0..129).collect();
        assert!(matches!(
            build_domu_fdt(&s),
            Err(FdtBuildError::BadInput(_))
        ));
        let mut s = domu_spec();
        s.vpl011 = Some((gr(layout::GUEST_PL011_BASE, 0x1000), 27));
        assert!(matches!(
            build_domu_fdt(&s),
            Err(FdtBuildError::BadInput(_))
        ));
        let mut s = domu_spec();
        s.hypervisor = Some(HypervisorNode {
            grant_region: gr(0x3800_0000, 0x100_0000),
            upcall_intid: 40,
            address_space_end: 0,
        });
        assert!(matches!(
            build_domu_fdt(&s),
            Err(FdtBuildError::BadInput(_))
        ));
        let mut s = domu_spec();
        s.hypervisor = Some(HypervisorNode {
            grant_region: gr(0x3800_0000, 0x100_0000),
            upcall_intid: layout::EVTCHN_PPI,
            address_space_end: 0,
        });
        let dtb = build_domu_fdt(&s).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        let h = fdt.find_node("/hypervisor").unwrap();
        assert_eq!(
            h.compatible().unwrap().all().collect::<Vec<_>>(),
            ["xen,xen-4.17", "xen,xen"]
        );
        let reg = h.reg().unwrap().next().unwrap();
        assert_eq!(
            (reg.starting_address as u64, reg.size),
            (0x3800_0000, Some(0x100_0000))
        );
        assert_eq!(
            h.property("interrupts").unwrap().value,
            [0, 0, 0, 1, 0, 0, 0, 15, 0, 0, 0xf, 0x8]
        );
        let mut s = domu_spec();
        s.bootargs = Some("nul\0inside");
        assert!(matches!(build_domu_fdt(&s), Err(FdtBuildError::Writer(_))));
    }

    fn dom0_spec() -> Dom0Fdt<'static> {
        Dom0Fdt {
            ram: vec![hr(0x6000_0000, 0x2000_0000), hr(0x9000_0000, 0x1000_0000)],
            vcpu_mpidrs: vec![0, 1, 2],
            bootargs: Some("console=hvc0"),
            initrd: Some(hr(0x4c00_0000, 987884)),
            uart_path: Some("/pl011@9000000"),
            keep_devices: &["/virtio_mmio@a000000"],
            hypervisor: None,
        }
    }

    #[test]
    fn dom0_uart_is_the_emulated_sbsa_uart_whatever_the_host_has() {
        let dtb = rewrite_dom0_fdt(FIXTURE, &dom0_spec()).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        let host = Fdt::new(FIXTURE).unwrap();
        let uart = fdt.find_node("/pl011@9000000").unwrap();
        let host_uart = host.find_node("/pl011@9000000").unwrap();
        assert_eq!(text(prop(&uart, "compatible").unwrap()), ["arm,sbsa-uart"]);
        assert_eq!(prop(&uart, "reg"), prop(&host_uart, "reg"));
        assert_eq!(prop(&uart, "interrupts"), prop(&host_uart, "interrupts"));
        assert_eq!(u32s(prop(&uart, "current-speed").unwrap()), [115_200]);
        // The host's clocks (firmware-provided on a Pi) are not dom0's business.
        assert!(prop(&uart, "clocks").is_none());
        assert!(prop(&uart, "clock-names").is_none());
        assert_eq!(text(prop(&uart, "status").unwrap()), ["okay"]);
        // The fixture has a psci node: it is kept (with dom0's conduit), not doubled.
        let psci: Vec<_> = fdt
            .all_nodes()
            .filter(|n| n.name.starts_with("psci"))
            .collect();
        assert_eq!(psci.len(), 1);
        assert_eq!(text(prop(&psci[0], "method").unwrap()), ["hvc"]);
    }

    #[test]
    fn overlong_host_property_names_are_left_out_not_fatal() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        write_host_property(&mut w, "snps,gfladj-refclk-lpm-sel-quirk", &[]).unwrap();
        write_host_property(&mut w, "ok-name", &[1, 2, 3, 4]).unwrap();
        // A short name the writer refuses is still an error: that is a broken tree.
        assert!(write_host_property(&mut w, "bad name", &[]).is_err());
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let root = fdt.find_node("/").unwrap();
        assert!(prop(&root, "ok-name").is_some());
        assert_eq!(root.properties().count(), 1);
    }

    /// An i.MX 8M Plus shaped tree: the console UART on an AIPS bus that has a `reg` of its
    /// own spanning all its devices, plus a device whose registers overlap the UART's.
    fn imx_like() -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let m = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x8000_0000])
            .unwrap();
        w.end_node(m).unwrap();
        let soc = w.begin_node("soc@0").unwrap();
        w.property_string("compatible", "simple-bus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.property_array_u32("ranges", &[0, 0, 0, 0x3e00_0000])
            .unwrap();
        let bus = w.begin_node("bus@30800000").unwrap();
        w.property_string_list("compatible", &["fsl,aips-bus", "simple-bus"])
            .unwrap();
        w.property_array_u32("reg", &[0x3080_0000, 0x40_0000])
            .unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        w.property_null("ranges").unwrap();
        for (name, reg) in [
            ("spi@30820000", [0x3082_0000u32, 0x1_0000]),
            ("serial@30890000", [0x3089_0000, 0x1_0000]),
            ("odd@30898000", [0x3089_8000, 0x1000]),
        ] {
            let n = w.begin_node(name).unwrap();
            w.property_string("compatible", "acme,device").unwrap();
            w.property_array_u32("reg", &reg).unwrap();
            w.property_array_u32("interrupts", &[0, 0x1b, 4]).unwrap();
            w.end_node(n).unwrap();
        }
        w.end_node(bus).unwrap();
        w.end_node(soc).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn a_bus_with_registers_is_not_a_device() {
        const UART: &str = "/soc@0/bus@30800000/serial@30890000";
        let dtb = imx_like();
        let (ok, refused) = bootcfg::host_devices(&dtb, &[UART], 1 << 40).unwrap();
        let paths: Vec<&str> = ok.iter().map(|d| d.path.as_str()).collect();
        // Neither the bus window (which would map Mica's UART into dom0) nor the UART.
        assert_eq!(paths, ["/soc@0/bus@30800000/spi@30820000"]);
        assert_eq!(
            refused,
            [(
                "/soc@0/bus@30800000/odd@30898000".into(),
                bootcfg::Unassignable::OverlapsMicaDevice(UART.into())
            )]
        );
        // In dom0's tree the bus stays enabled, so the emulated UART on it is found.
        let spec = Dom0Fdt {
            ram: vec![hr(0x4000_0000, 0x2000_0000)],
            vcpu_mpidrs: vec![0],
            bootargs: None,
            initrd: None,
            uart_path: Some(UART),
            keep_devices: &paths,
            hypervisor: None,
        };
        let out = rewrite_dom0_fdt(&dtb, &spec).unwrap();
        let fdt = Fdt::new(&out).unwrap();
        let status = |p: &str| {
            let n = fdt.find_node(p).unwrap();
            prop(&n, "status").map(|v| text(v)[0])
        };
        assert_eq!(status("/soc@0/bus@30800000"), None);
        assert_eq!(status(UART), Some("okay"));
        assert_eq!(status("/soc@0/bus@30800000/spi@30820000"), None);
        assert_eq!(status("/soc@0/bus@30800000/odd@30898000"), Some("disabled"));
        let uart = fdt.find_node(UART).unwrap();
        assert_eq!(text(prop(&uart, "compatible").unwrap()), ["arm,sbsa-uart"]);
        // No psci node on the host: dom0 gets one for its vCPUs.
        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(text(prop(&psci, "method").unwrap()), ["hvc"]);
    }

    #[test]
    fn dom0_rewrite_rules() {
        let dtb = rewrite_dom0_fdt(FIXTURE, &dom0_spec()).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        let host = Fdt::new(FIXTURE).unwrap();
        // Root properties, phandles and ordinary nodes are copied verbatim.
        let root = fdt.find_node("/").unwrap();
        assert_eq!(
            prop(&root, "interrupt-parent"),
            prop(&host.find_node("/").unwrap(), "interrupt-parent")
        );
        let clk = fdt.find_node("/apb-pclk").unwrap();
        assert_eq!(u32s(prop(&clk, "phandle").unwrap()), [0x8000]);
        assert!(
            prop(&clk, "status").is_none(),
            "no reg: not a device to hide"
        );
        // One memory node with dom0's banks.
        let mems: Vec<_> = fdt
            .all_nodes()
            .filter(|n| n.name.starts_with("memory"))
            .collect();
        assert_eq!(mems.len(), 1);
        assert_eq!(mems[0].name, "memory@60000000");
        assert_eq!(
            u32s(prop(&mems[0], "reg").unwrap()),
            [
                0,
                0x6000_0000,
                0,
                0x2000_0000,
                0,
                0x9000_0000,
                0,
                0x1000_0000
            ]
        );
        // vCPUs, with the host cpu compatible and phandles, and no cpu-map.
        let cpus: Vec<_> = fdt.find_node("/cpus").unwrap().children().collect();
        let names: Vec<_> = cpus.iter().map(|c| c.name).collect();
        assert_eq!(names, ["cpu@0", "cpu@1", "cpu@2"]);
        assert_eq!(
            text(prop(&cpus[2], "compatible").unwrap()),
            ["arm,cortex-a57"]
        );
        assert_eq!(u32s(prop(&cpus[2], "reg").unwrap()), [2]);
        assert_eq!(text(prop(&cpus[0], "enable-method").unwrap()), ["psci"]);
        assert_eq!(u32s(prop(&cpus[0], "phandle").unwrap()), [0x8002]);
        assert!(prop(&cpus[2], "phandle").is_none());
        // PSCI through HVC, other properties kept.
        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(text(prop(&psci, "method").unwrap()), ["hvc"]);
        assert!(prop(&psci, "cpu_on").is_some());
        // GIC kept, ITS removed.
        let gic = fdt.find_node("/intc@8000000").unwrap();
        assert_eq!(
            prop(&gic, "reg"),
            prop(&host.find_node("/intc@8000000").unwrap(), "reg")
        );
        assert!(prop(&gic, "status").is_none());
        assert_eq!(gic.children().count(), 0);
        // A clean /chosen.
        let chosen = fdt.find_node("/chosen").unwrap();
        let mut props: Vec<_> = chosen.properties().map(|p| p.name).collect();
        props.sort();
        assert_eq!(
            props,
            [
                "bootargs",
                "linux,initrd-end",
                "linux,initrd-start",
                "stdout-path"
            ]
        );
        assert_eq!(chosen.children().count(), 0);
        assert_eq!(
            text(prop(&chosen, "stdout-path").unwrap()),
            ["/pl011@9000000"]
        );
        assert_eq!(
            prop(&chosen, "linux,initrd-end").unwrap(),
            (0x4c00_0000u64 + 987884).to_be_bytes()
        );
        // Devices hidden, except the UART and the kept one.
        let status = |p: &str| {
            fdt.find_node(p)
                .and_then(|n| prop(&n, "status"))
                .map(|v| text(v)[0])
        };
        assert_eq!(status("/pl011@9000000"), Some("okay"));
        assert_eq!(status("/virtio_mmio@a000000"), None);
        for p in [
            "/virtio_mmio@a000200",
            "/pcie@10000000",
            "/pl031@9010000",
            "/pl061@9030000",
            "/fw-cfg@9020000",
            "/flash@0",
        ] {
            assert_eq!(status(p), Some("disabled"), "{p}");
        }
        assert_eq!(status("/timer"), None);
        assert_eq!(status("/pmu"), None);
        // Every host node other than the ones replaced or removed is still there.
        let count = |f: &Fdt<'_>| f.all_nodes().count();
        // Gone: 2 domUs and 6 modules under /chosen, cpu-map and its 4 descendants, the ITS.
        // Added: a third cpu.
        assert_eq!(count(&fdt), count(&host) - 8 - 5 - 1 + 1);
        assert!(bootcfg::validate(&dtb).is_ok());
    }

    /// `reg` of a tree's `/hypervisor` node as (address, size) pairs of `cells`.
    fn hypervisor_reg(dtb: &[u8], cells: (usize, usize)) -> Vec<(u64, u64)> {
        let fdt = Fdt::new(dtb).unwrap();
        let h = fdt.find_node("/hypervisor").unwrap();
        let words = u32s(prop(&h, "reg").unwrap());
        let number = |w: &[u32]| w.iter().fold(0u64, |v, &c| v << 32 | u64::from(c));
        words
            .chunks(cells.0 + cells.1)
            .map(|e| (number(&e[..cells.0]), number(&e[cells.0..])))
            .collect()
    }

    #[test]
    fn domu_extended_regions_are_the_unused_ram_windows() {
        let mut s = domu_spec();
        s.hypervisor = Some(HypervisorNode {
            grant_region: gr(0x3800_0000, 0x100_0000),
            upcall_intid: layout::EVTCHN_PPI,
            address_space_end: 1 << 39,
        });
        let ram_end = layout::GUEST_RAM0_BASE + (256 << 20);
        assert_eq!(
            hypervisor_reg(&build_domu_fdt(&s).unwrap(), (2, 2)),
            [
                (0x3800_0000, 0x100_0000),
                (
                    ram_end,
                    layout::GUEST_RAM0_BASE + layout::GUEST_RAM0_SIZE - ram_end
                ),
                (layout::GUEST_RAM1_BASE, (1 << 39) - layout::GUEST_RAM1_BASE),
            ]
        );
        // Passthrough MMIO placed inside a window is kept out of it.
        let pt = DomuPassthrough {
            mmio: vec![crate::passthrough::MmioMapping {
                guest: gr(0x8000_0000, 0x1000),
                host: hr(0x0a00_0000, 0x1000),
            }],
            ..Default::default()
        };
        let regions = hypervisor_reg(
            &build_domu_fdt_with_passthrough(&s, Some(&pt)).unwrap(),
            (2, 2),
        );
        assert_eq!(regions[1], (ram_end, 0x8000_0000 - ram_end));
        assert_eq!(regions[2].0, 0x8020_0000);
        // No address space to offer: the grant region alone.
        s.hypervisor.as_mut().unwrap().address_space_end = 0;
        assert_eq!(
            hypervisor_reg(&build_domu_fdt(&s).unwrap(), (2, 2)),
            [(0x3800_0000, 0x100_0000)]
        );
    }

    #[test]
    fn dom0_extended_regions_avoid_everything_in_the_host_tree() {
        let mut spec = dom0_spec();
        let grant = gr(0xc000_0000, 0x100_0000);
        spec.hypervisor = Some(HypervisorNode {
            grant_region: grant,
            upcall_intid: layout::EVTCHN_PPI,
            address_space_end: 1 << 39,
        });
        let regions = hypervisor_reg(&rewrite_dom0_fdt(FIXTURE, &spec).unwrap(), (2, 2));
        assert_eq!(regions[0], (grant.start.raw(), grant.size));
        let extended = &regions[1..];
        assert!(!extended.is_empty());
        // Everything with an address in the host tree, and its bus windows.
        let blob = bootcfg::validate(FIXTURE).unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let t = Tree::build(&fdt).unwrap();
        let mut used: Vec<(u64, u64)> = vec![(grant.start.raw(), grant.size)];
        for k in 1..t.nodes.len() {
            used.extend(t.bus_windows(k).unwrap());
            if t.cells_of(t.nodes[k].parent.unwrap()).1 != 0 {
                if let Some(r) = t.reg_ranges(k) {
                    used.extend(r.iter().map(|r| (r.start.raw(), r.size)));
                }
            }
        }
        // The fixture is QEMU virt: 2 GiB of RAM from 1 GiB, and the PCIe MMIO window
        // (from `ranges`, which has three-cell PCI child addresses).
        assert!(used.contains(&(0x4000_0000, 0x8000_0000)));
        assert!(used.contains(&(0x1000_0000, 0x2eff_0000)));
        for &(start, size) in extended {
            assert!(start % (2 << 20) == 0 && size >= 64 << 20 && start + size <= 1 << 39);
            for &(a, s) in &used {
                assert!(
                    s == 0 || a + s <= start || a >= start + size,
                    "{start:#x}+{size:#x} meets {a:#x}+{s:#x}"
                );
            }
        }
    }

    #[test]
    fn dom0_extended_regions_fit_one_cell_sizes() {
        // The Raspberry Pi 4's root: two-cell addresses, one-cell sizes.
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        let n = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u32("reg", &[0, 0x4000_0000, 0x4000_0000])
            .unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("intc@8000000").unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_null("interrupt-controller").unwrap();
        w.property_array_u32(
            "reg",
            &[0, 0x0800_0000, 0x1_0000, 0, 0x080a_0000, 0xf6_0000],
        )
        .unwrap();
        w.property_u32("phandle", 1).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("chosen").unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        let host = w.finish().unwrap();
        let mut spec = dom0_spec();
        spec.ram = vec![hr(0x4000_0000, 0x1000_0000)];
        spec.uart_path = None;
        spec.hypervisor = Some(HypervisorNode {
            grant_region: gr(0x8000_0000, 0x100_0000),
            upcall_intid: layout::EVTCHN_PPI,
            address_space_end: 1 << 39,
        });
        // The region above the grant region runs to the 39-bit end; one size cell holds
        // just under 4 GiB of it.
        assert_eq!(
            hypervisor_reg(&rewrite_dom0_fdt(&host, &spec).unwrap(), (2, 1)),
            [
                (0x8000_0000, 0x100_0000),
                (0, 0x0800_0000),
                (0x0900_0000, 0x3700_0000),
                (0x8100_0000, 0xffe0_0000)
            ]
        );
    }

    #[test]
    fn dom0_memreserve_and_hypervisor_node() {
        let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&[vm_fdt::FdtReserveEntry::new(
            0x4800_0000,
            0x1000,
        )
        .unwrap()])
        .unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 1).unwrap();
        let n = w.begin_node("hypervisor").unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("chosen").unwrap();
        w.property_string("xen,xen-bootargs", "x").unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        let host = w.finish().unwrap();
        let mut spec = dom0_spec();
        spec.ram = vec![hr(0x6000_0000, 0x1000_0000)];
        spec.uart_path = None;
        let dtb = rewrite_dom0_fdt(&host, &spec).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        assert!(fdt.find_node("/hypervisor").is_none());
        let rsv: Vec<_> = fdt
            .memory_reservations()
            .map(|r| (r.address() as u64, r.size()))
            .collect();
        assert_eq!(rsv, [(0x4800_0000, 0x1000)]);
        let mem = fdt.find_node("/memory@60000000").unwrap();
        assert_eq!(u32s(prop(&mem, "reg").unwrap()), [0x6000_0000, 0x1000_0000]);
        let chosen = fdt.find_node("/chosen").unwrap();
        assert!(prop(&chosen, "xen,xen-bootargs").is_none());
        // One-cell addresses cannot hold RAM above 4 GiB.
        spec.ram = vec![hr(0x1_0000_0000, 0x1000)];
        assert!(matches!(
            rewrite_dom0_fdt(&host, &spec),
            Err(FdtBuildError::BadInput(_))
        ));
    }

    #[test]
    fn domu_passthrough_bus() {
        use crate::passthrough::{DomuPassthrough, PassthroughNode};
        let pt = DomuPassthrough {
            nodes: vec![PassthroughNode {
                name: "virtio_mmio@a003e00".into(),
                props: vec![
                    ("compatible".into(), b"virtio,mmio\0".to_vec()),
                    (
                        "reg".into(),
                        [0u32, 0xa00_3e00, 0, 0x200]
                            .iter()
                            .flat_map(|c| c.to_be_bytes())
                            .collect(),
                    ),
                ],
                children: vec![PassthroughNode {
                    name: "sub".into(),
                    props: vec![],
                    children: vec![],
                }],
            }],
            ..DomuPassthrough::default()
        };
        let dtb = build_domu_fdt_with_passthrough(&domu_spec(), Some(&pt)).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        let bus = fdt.find_node("/passthrough").unwrap();
        assert_eq!(text(prop(&bus, "compatible").unwrap()), ["simple-bus"]);
        assert_eq!(prop(&bus, "ranges").unwrap().len(), 0);
        assert_eq!(u32s(prop(&bus, "#address-cells").unwrap()), [2]);
        assert_eq!(u32s(prop(&bus, "#size-cells").unwrap()), [2]);
        let dev = fdt.find_node("/passthrough/virtio_mmio@a003e00").unwrap();
        assert_eq!(u32s(prop(&dev, "reg").unwrap()), [0, 0xa00_3e00, 0, 0x200]);
        assert!(fdt
            .find_node("/passthrough/virtio_mmio@a003e00/sub")
            .is_some());
        assert!(bootcfg::validate(&dtb).is_ok());
        // Without one, no bus.
        let plain = build_domu_fdt(&domu_spec()).unwrap();
        assert!(Fdt::new(&plain)
            .unwrap()
            .find_node("/passthrough")
            .is_none());
        // A node name the writer refuses is an error, not a panic.
        let mut bad = pt.clone();
        bad.nodes[0].name = "a/b".into();
        assert!(build_domu_fdt_with_passthrough(&domu_spec(), Some(&bad)).is_err());
    }

    #[test]
    fn dom0_never_sees_devices_marked_for_domus() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        for (addr, marked) in [(0xa00_3e00u64, true), (0xa00_2e00, false)] {
            let n = w.begin_node(&format!("virtio_mmio@{addr:x}")).unwrap();
            w.property_array_u64("reg", &[addr, 0x200]).unwrap();
            if marked {
                w.property_null("xen,passthrough").unwrap();
            }
            w.end_node(n).unwrap();
        }
        w.end_node(root).unwrap();
        let host = w.finish().unwrap();
        let mut spec = dom0_spec();
        spec.uart_path = Some("/virtio_mmio@a003e00");
        spec.keep_devices = &["/virtio_mmio@a003e00", "/virtio_mmio@a002e00"];
        let dtb = rewrite_dom0_fdt(&host, &spec).unwrap();
        let fdt = Fdt::new(&dtb).unwrap();
        let status = |p: &str| {
            fdt.find_node(p)
                .and_then(|n| prop(&n, "status"))
                .map(|v| text(v)[0])
        };
        assert_eq!(status("/virtio_mmio@a003e00"), Some("disabled"));
        assert_eq!(status("/virtio_mmio@a002e00"), None);
    }

    #[test]
    fn dom0_bad_input() {
        let spec = dom0_spec();
        assert!(matches!(
            rewrite_dom0_fdt(b"garbage", &spec),
            Err(FdtBuildError::HostDtb(_))
        ));
        assert!(matches!(
            rewrite_dom0_fdt(&FIXTURE[..200], &spec),
            Err(FdtBuildError::HostDtb(_))
        ));
        let mut s = dom0_spec();
        s.ram.clear();
        assert!(matches!(
            rewrite_dom0_fdt(FIXTURE, &s),
            Err(FdtBuildError::BadInput(_))
        ));
        let mut s = dom0_spec();
        s.vcpu_mpidrs.clear();
        assert!(matches!(
            rewrite_dom0_fdt(FIXTURE, &s),
            Err(FdtBuildError::BadInput(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn dom0_rewrite_of_mutated_host_never_panics(edits in proptest::collection::vec((0usize..FIXTURE.len(), proptest::prelude::any::<u8>()), 1..6)) {
            let mut dtb = FIXTURE.to_vec();
            for (at, b) in edits {
                dtb[at] = b;
            }
            let _ = rewrite_dom0_fdt(&dtb, &dom0_spec());
            // With the hypervisor node: its extended regions read every address in the tree.
            let mut spec = dom0_spec();
            spec.hypervisor = Some(HypervisorNode {
                grant_region: gr(0xc000_0000, 0x100_0000),
                upcall_intid: layout::EVTCHN_PPI,
                address_space_end: 1 << 39,
            });
            let _ = rewrite_dom0_fdt(&dtb, &spec);
        }
    }
}
