//! Boot scenarios: which domains to start with which kernels, turned into a device tree with
//! Xen's dom0less bindings (/chosen) and the QEMU command line that loads everything.
//!
//! The layout follows the Xen reference script: QEMU's own DTB for the machine, its /chosen
//! replaced by ours; boot modules loaded raw with `-device loader` at 2 MiB-aligned addresses
//! packed upwards from `Platform::module_base`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::images::Platform;
use crate::util::{file_size, output, read_file, run, write_file};

const MODULE_ALIGN: u64 = 2 << 20;

/// One domain to boot.
#[derive(Clone, Debug)]
pub struct Domain {
    /// Node name under /chosen for a domU (e.g. `domU1`); a label for the initial domain.
    pub name: String,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub bootargs: String,
    /// Memory of a domU. The initial domain's memory is set by `dom0_mem=` in the
    /// hypervisor's bootargs instead (Xen's binding has no property for it).
    pub memory_kib: u64,
    pub cpus: u32,
    /// Give the domain an emulated PL011 (`vpl011;`).
    pub vpl011: bool,
    /// The initial (hardware) domain, whose modules sit directly under /chosen.
    pub initial: bool,
    /// Extra property lines for a domU's node (e.g. `mica,sched-period-us = <10000>;`).
    pub extra_properties: Vec<String>,
    /// A partial device tree for the domain (`multiboot,device-tree`: passthrough devices).
    pub device_tree: Option<PathBuf>,
}

/// A whole machine: hypervisor options, QEMU machine shape and the domains.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub platform: Platform,
    pub domains: Vec<Domain>,
    /// `xen,xen-bootargs`.
    pub hypervisor_bootargs: String,
    pub gic: u8,
    pub cpu: String,
    pub smp: u32,
    pub mem_mib: u64,
    /// Extra property lines for /chosen.
    pub chosen_properties: Vec<String>,
    /// Device-tree source appended after the root node, e.g. `&{/pl061@9030000} { ... };`.
    pub dts_appendix: String,
    /// Boot firmware QEMU runs first (`-bios`, e.g. U-Boot). It is part of the machine shape:
    /// with firmware, QEMU `virt` turns ACPI on and puts the ACPI event device where the
    /// PL061 GPIO was, so the board tree must be dumped with the same firmware.
    pub firmware: Option<PathBuf>,
}

/// One guest image twice, each side on a pCPU of its own: as the initial domain (1 vCPU,
/// 128 MiB, direct-mapped) and as domU1, `xen,enhanced`, 1 vCPU, 64 MiB, with a vPL011 for
/// its own lines. Both get `bootargs`.
pub fn initial_and_enhanced_domu(
    platform: Platform,
    gic: u8,
    image: PathBuf,
    bootargs: &str,
) -> Scenario {
    let mut scenario = Scenario::new(
        platform,
        gic,
        &format!(
            "console=dtuart dtuart={} dom0_mem=128M dom0_max_vcpus=1",
            platform.uart_path
        ),
    );
    let domain = |name: &str, initial: bool, memory_kib: u64, extra: Vec<String>| Domain {
        name: name.into(),
        kernel: image.clone(),
        initrd: None,
        bootargs: bootargs.into(),
        memory_kib,
        cpus: 1,
        vpl011: !initial,
        initial,
        extra_properties: extra,
        device_tree: None,
    };
    scenario.domains = vec![
        domain("dom0", true, 128 * 1024, Vec::new()),
        domain(
            "domU1",
            false,
            64 * 1024,
            vec!["xen,enhanced = \"enabled\";".into()],
        ),
    ];
    scenario
}

/// Where one boot module is loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub path: PathBuf,
    pub addr: u64,
    pub size: u64,
}

/// The placed modules of one domain (same order as `Scenario::domains`).
#[derive(Clone, Debug, PartialEq)]
pub struct DomainModules {
    pub kernel: Placement,
    pub initrd: Option<Placement>,
    pub device_tree: Option<Placement>,
}

impl DomainModules {
    /// Kernel, ramdisk, device tree: the order they are placed in.
    pub fn all(&self) -> impl Iterator<Item = &Placement> {
        std::iter::once(&self.kernel)
            .chain(&self.initrd)
            .chain(&self.device_tree)
    }
}

/// Everything needed to start QEMU for a scenario.
#[derive(Clone, Debug)]
pub struct PreparedBoot {
    pub dtb: PathBuf,
    pub qemu_args: Vec<String>,
}

impl Scenario {
    /// A scenario on `platform` with the default machine shape: cortex-a57, 2 CPUs, 2 GiB.
    /// A board model keeps its own GIC, cores, CPU count and RAM size.
    pub fn new(platform: Platform, gic: u8, hypervisor_bootargs: &str) -> Self {
        Scenario {
            platform,
            domains: Vec::new(),
            hypervisor_bootargs: hypervisor_bootargs.to_string(),
            gic: platform.fixed_gic.unwrap_or(gic),
            cpu: platform.cpu.unwrap_or_default().into(),
            smp: platform.smp.unwrap_or(2),
            mem_mib: platform.mem_mib.unwrap_or(2048),
            chosen_properties: Vec::new(),
            dts_appendix: String::new(),
            firmware: None,
        }
    }

    /// Checks what the device tree and the hypervisor will rely on.
    pub fn validate(&self) -> Result<(), String> {
        if self.domains.is_empty() {
            return Err("scenario has no domains".into());
        }
        if !matches!(self.gic, 2 | 3) {
            return Err(format!("GIC version must be 2 or 3, not {}", self.gic));
        }
        if self.domains.iter().filter(|d| d.initial).count() > 1 {
            return Err("a scenario has at most one initial domain".into());
        }
        for (i, domain) in self.domains.iter().enumerate() {
            let name_ok = !domain.name.is_empty()
                && domain.name.len() <= 31
                && domain
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ",._+-".contains(c));
            if !name_ok {
                return Err(format!(
                    "domain name `{}` is not a valid device-tree node name",
                    domain.name
                ));
            }
            if self.domains[..i]
                .iter()
                .any(|other| other.name == domain.name)
            {
                return Err(format!("two domains are named `{}`", domain.name));
            }
            if domain.cpus == 0 || domain.cpus > 128 {
                return Err(format!("domain `{}`: cpus must be 1..=128", domain.name));
            }
            if !domain.initial && domain.memory_kib == 0 {
                return Err(format!("domain `{}` has no memory", domain.name));
            }
            if domain.bootargs.contains('"') || domain.bootargs.contains('\\') {
                return Err(format!(
                    "domain `{}`: bootargs must not contain quotes or backslashes",
                    domain.name
                ));
            }
        }
        if self.hypervisor_bootargs.contains('"') || self.hypervisor_bootargs.contains('\\') {
            return Err("hypervisor bootargs must not contain quotes or backslashes".into());
        }
        Ok(())
    }

    /// `-M` value for QEMU.
    pub fn machine(&self) -> String {
        let mut machine = self.platform.qemu_machine.to_string();
        if !self.platform.machine_props.is_empty() {
            machine = format!("{machine},{}", self.platform.machine_props);
        }
        if self.platform.fixed_gic.is_none() {
            machine = format!("{machine},gic-version={}", self.gic);
        }
        machine
    }

    /// The machine-shape arguments shared by every QEMU invocation of this scenario.
    pub fn machine_args(&self) -> Vec<String> {
        let mut args = vec!["-M".into(), self.machine()];
        if !self.cpu.is_empty() {
            args.extend(["-cpu".into(), self.cpu.clone()]);
        }
        args.extend([
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            format!("{}M", self.mem_mib),
        ]);
        if let Some(firmware) = &self.firmware {
            args.push("-bios".into());
            args.push(firmware.display().to_string());
        }
        args
    }

    /// Places every module: initial domain first, then the domUs in order; kernel then
    /// ramdisk; each 2 MiB aligned, none overlapping, all inside RAM. `size_of` gives file sizes
    /// (a parameter so the arithmetic is testable without files).
    pub fn layout(
        &self,
        hypervisor_size: u64,
        size_of: impl Fn(&Path) -> Result<u64, String>,
    ) -> Result<Vec<DomainModules>, String> {
        self.validate()?;
        let platform = &self.platform;
        // QEMU puts an arm64 Image at RAM base + up to 2 MiB of text offset.
        let hypervisor_end = platform.ram_base + MODULE_ALIGN + hypervisor_size;
        if hypervisor_end > platform.module_base {
            return Err(format!(
                "hypervisor image ({hypervisor_size} bytes) would overlap the boot modules at {:#x}",
                platform.module_base
            ));
        }
        let ram_end = platform.ram_base + self.mem_mib * (1 << 20);
        let mut next = platform.module_base;
        let mut place = |path: &Path| -> Result<Placement, String> {
            let size = size_of(path)?;
            if size == 0 {
                return Err(format!("{} is empty", path.display()));
            }
            let addr = next;
            let end = addr.checked_add(size).ok_or("module size overflows")?;
            if end > ram_end {
                return Err(format!(
                    "{} ({size} bytes at {addr:#x}) does not fit in {} MiB of RAM",
                    path.display(),
                    self.mem_mib
                ));
            }
            next = end.next_multiple_of(MODULE_ALIGN);
            Ok(Placement {
                path: path.to_path_buf(),
                addr,
                size,
            })
        };
        let mut order: Vec<usize> = (0..self.domains.len()).collect();
        order.sort_by_key(|&i| !self.domains[i].initial);
        let mut placed: Vec<Option<DomainModules>> = vec![None; self.domains.len()];
        for i in order {
            let domain = &self.domains[i];
            let kernel = place(&domain.kernel)?;
            let initrd = domain.initrd.as_deref().map(&mut place).transpose()?;
            let device_tree = domain.device_tree.as_deref().map(&mut place).transpose()?;
            placed[i] = Some(DomainModules {
                kernel,
                initrd,
                device_tree,
            });
        }
        Ok(placed.into_iter().flatten().collect())
    }

    /// The /chosen node with Xen's dom0less bindings.
    pub fn chosen_node(&self, layout: &[DomainModules]) -> String {
        let mut dts = String::new();
        dts.push_str("\tchosen {\n\t\t#address-cells = <0x2>;\n\t\t#size-cells = <0x2>;\n");
        dts.push_str(&format!(
            "\t\tstdout-path = \"{}\";\n",
            self.platform.uart_path
        ));
        dts.push_str(&format!(
            "\t\txen,xen-bootargs = \"{}\";\n",
            self.hypervisor_bootargs
        ));
        for line in &self.chosen_properties {
            dts.push_str(&format!("\t\t{line}\n"));
        }
        for (domain, modules) in self.domains.iter().zip(layout).filter(|(d, _)| d.initial) {
            push_modules(&mut dts, "\t\t", domain, modules, 2);
        }
        for (domain, modules) in self.domains.iter().zip(layout).filter(|(d, _)| !d.initial) {
            dts.push_str(&format!("\n\t\t{} {{\n", domain.name));
            dts.push_str("\t\t\tcompatible = \"xen,domain\";\n");
            dts.push_str("\t\t\t#address-cells = <0x1>;\n\t\t\t#size-cells = <0x1>;\n");
            dts.push_str(&format!(
                "\t\t\tmemory = <{}>;\n",
                cells(domain.memory_kib, 2)
            ));
            dts.push_str(&format!("\t\t\tcpus = <{}>;\n", domain.cpus));
            if domain.vpl011 {
                dts.push_str("\t\t\tvpl011;\n");
            }
            for line in &domain.extra_properties {
                dts.push_str(&format!("\t\t\t{line}\n"));
            }
            push_modules(&mut dts, "\t\t\t", domain, modules, 1);
            dts.push_str("\t\t};\n");
        }
        dts.push_str("\t};\n");
        dts
    }

    /// Generates the device tree under `work_dir` and returns the QEMU arguments that boot
    /// `hypervisor` with it (without console options, which depend on how QEMU is run).
    pub fn prepare(&self, hypervisor: &Path, work_dir: &Path) -> Result<PreparedBoot, String> {
        let layout = self.layout(file_size(hypervisor)?, file_size)?;
        let dtb = self.write_dtb(&layout, work_dir)?;
        let mut args = self.machine_args();
        args.extend(["-nographic", "-no-reboot"].map(String::from));
        args.extend(self.platform.extra_args.iter().map(|a| a.to_string()));
        args.push("-dtb".into());
        args.push(dtb.display().to_string());
        args.push("-kernel".into());
        args.push(hypervisor.display().to_string());
        for modules in &layout {
            for m in modules.all() {
                args.push("-device".into());
                args.push(format!(
                    "loader,file={},addr={:#x},force-raw=on",
                    qemu_escape(&m.path),
                    m.addr
                ));
            }
        }
        Ok(PreparedBoot {
            dtb,
            qemu_args: args,
        })
    }

    /// QEMU's own device tree for this machine shape, firmware included, as a blob
    /// (`work_dir/base.dtb`).
    pub fn board_dtb(&self, work_dir: &Path) -> Result<Vec<u8>, String> {
        std::fs::create_dir_all(work_dir)
            .map_err(|e| format!("creating {}: {e}", work_dir.display()))?;
        let base_dtb = work_dir.join("base.dtb");
        if self.platform.board_dtb.is_some() {
            // A board model boots the board's own device tree, as the real board would.
            let bytes = read_file(&crate::boot_tests::boards::board_dtb(&self.platform)?)?;
            write_file(&base_dtb, &bytes)?;
            return Ok(bytes);
        }
        let mut dump = Command::new("qemu-system-aarch64");
        dump.arg("-M")
            .arg(format!(
                "{},dumpdtb={}",
                self.machine(),
                qemu_escape(&base_dtb)
            ))
            .args(&self.machine_args()[2..])
            .arg("-nographic")
            .stdin(Stdio::null());
        output(&mut dump).map_err(|e| {
            format!(
                "QEMU could not make the board device tree of `-M {}` ({e}); fix: QEMU 7.2 or \
                 newer (qemu-system-arm, Debian: bookworm-backports)",
                self.machine()
            )
        })?;
        read_file(&base_dtb)
    }

    /// Writes `work_dir/scenario.dtb`: QEMU's device tree with our /chosen for `layout`.
    pub fn write_dtb(&self, layout: &[DomainModules], work_dir: &Path) -> Result<PathBuf, String> {
        // domU modules use one address cell and one size cell.
        for (domain, modules) in self.domains.iter().zip(layout).filter(|(d, _)| !d.initial) {
            for m in modules.all() {
                if m.addr + m.size > u32::MAX as u64 {
                    return Err(format!(
                        "domain `{}`: module above 4 GiB cannot be described",
                        domain.name
                    ));
                }
            }
        }
        self.board_dtb(work_dir)?;
        let base_dts = output(
            Command::new("dtc")
                .args(["-q", "-I", "dtb", "-O", "dts"])
                .arg(work_dir.join("base.dtb")),
        )?;
        let mut dts = replace_chosen(&base_dts, &self.chosen_node(layout))?;
        dts.push_str(&self.dts_appendix);
        let dts_path = work_dir.join("scenario.dts");
        let dtb = work_dir.join("scenario.dtb");
        write_file(&dts_path, dts.as_bytes())?;
        run(Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&dtb)
            .arg(&dts_path))?;
        // Sanity: the blob must be readable back.
        if read_file(&dtb)?.len() < 64 {
            return Err(format!("dtc produced a truncated {}", dtb.display()));
        }
        Ok(dtb)
    }
}

/// QEMU arguments that boot `kernel` directly, with no hypervisor, on the scenario's machine.
pub fn bare_linux_args(
    scenario: &Scenario,
    kernel: &Path,
    initrd: &Path,
    append: &str,
) -> Vec<String> {
    let mut args = scenario.machine_args();
    args.extend(["-nographic", "-no-reboot", "-kernel"].map(String::from));
    args.push(kernel.display().to_string());
    args.push("-initrd".into());
    args.push(initrd.display().to_string());
    args.push("-append".into());
    args.push(append.into());
    args
}

fn push_modules(
    dts: &mut String,
    indent: &str,
    domain: &Domain,
    modules: &DomainModules,
    cells_per_value: usize,
) {
    let kernel = &modules.kernel;
    if let Some(tree) = &modules.device_tree {
        dts.push_str(&format!("\n{indent}module@{:x} {{\n", tree.addr));
        dts.push_str(&format!(
            "{indent}\tcompatible = \"multiboot,device-tree\", \"multiboot,module\";\n"
        ));
        dts.push_str(&format!(
            "{indent}\treg = <{} {}>;\n{indent}}};\n",
            cells(tree.addr, cells_per_value),
            cells(tree.size, cells_per_value)
        ));
    }
    dts.push_str(&format!("\n{indent}module@{:x} {{\n", kernel.addr));
    dts.push_str(&format!(
        "{indent}\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n"
    ));
    dts.push_str(&format!(
        "{indent}\treg = <{} {}>;\n",
        cells(kernel.addr, cells_per_value),
        cells(kernel.size, cells_per_value)
    ));
    dts.push_str(&format!(
        "{indent}\tbootargs = \"{}\";\n{indent}}};\n",
        domain.bootargs
    ));
    if let Some(initrd) = &modules.initrd {
        dts.push_str(&format!("\n{indent}module@{:x} {{\n", initrd.addr));
        dts.push_str(&format!(
            "{indent}\tcompatible = \"multiboot,ramdisk\", \"multiboot,module\";\n"
        ));
        dts.push_str(&format!(
            "{indent}\treg = <{} {}>;\n{indent}}};\n",
            cells(initrd.addr, cells_per_value),
            cells(initrd.size, cells_per_value)
        ));
    }
}

/// `value` as `count` 32-bit cells, most significant first.
fn cells(value: u64, count: usize) -> String {
    match count {
        1 => format!("{:#x}", value as u32),
        _ => format!("{:#x} {:#x}", (value >> 32) as u32, value as u32),
    }
}

/// Replaces the /chosen node of a decompiled device tree (if any) with `chosen`.
pub fn replace_chosen(base_dts: &str, chosen: &str) -> Result<String, String> {
    let lines: Vec<&str> = base_dts.lines().collect();
    let mut out: Vec<&str> = Vec::with_capacity(lines.len());
    let mut depth = 0i32;
    let mut skipping_from: Option<i32> = None;
    for line in &lines {
        let trimmed = line.trim();
        let opens = trimmed.matches('{').count() as i32;
        let closes = trimmed.matches("};").count() as i32;
        if skipping_from.is_none() && depth == 1 && trimmed.starts_with("chosen {") {
            skipping_from = Some(depth);
        }
        depth += opens - closes;
        match skipping_from {
            Some(start) => {
                if depth == start {
                    skipping_from = None;
                }
            }
            None => out.push(line),
        }
    }
    if depth != 0 || skipping_from.is_some() {
        return Err("cannot parse the decompiled device tree (unbalanced braces)".into());
    }
    let root_end = out
        .iter()
        .rposition(|line| line.trim() == "};")
        .ok_or("decompiled device tree has no root node")?;
    let mut text = out[..root_end].join("\n");
    text.push('\n');
    text.push_str(chosen);
    text.push_str("};\n");
    Ok(text)
}

/// Doubles commas, QEMU's escape inside option values.
fn qemu_escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::PLATFORMS;

    fn domain(name: &str, initial: bool, initrd: bool) -> Domain {
        Domain {
            name: name.into(),
            kernel: PathBuf::from("Image"),
            initrd: initrd.then(|| PathBuf::from("initrd.gz")),
            bootargs: format!("console=ttyAMA0 who={name}"),
            memory_kib: 256 * 1024,
            cpus: 1,
            vpl011: true,
            initial,
            extra_properties: Vec::new(),
            device_tree: None,
        }
    }

    fn sizes(path: &Path) -> Result<u64, String> {
        Ok(if path == Path::new("Image") {
            27_302_400
        } else {
            987_884
        })
    }

    fn reference() -> Scenario {
        let mut s = Scenario::new(
            PLATFORMS[0],
            3,
            "console=dtuart dtuart=/pl011@9000000 dom0_mem=512M",
        );
        s.domains = vec![
            domain("domU1", false, true),
            domain("dom0", true, true),
            domain("domU2", false, true),
        ];
        s.domains[2].cpus = 2;
        s.domains[2].memory_kib = 192 * 1024;
        s
    }

    #[test]
    fn packs_initial_domain_first_then_domus_aligned() {
        let layout = reference().layout(1 << 20, sizes).unwrap();
        // Order of the result follows the scenario: domU1, dom0, domU2.
        assert_eq!(
            layout[1].kernel.addr, 0x4900_0000,
            "initial domain's kernel comes first"
        );
        assert_eq!(layout[1].initrd.as_ref().unwrap().addr, 0x4ac0_0000);
        assert_eq!(layout[0].kernel.addr, 0x4ae0_0000);
        let mut all: Vec<&Placement> = layout.iter().flat_map(|d| d.all()).collect();
        all.sort_by_key(|p| p.addr);
        for pair in all.windows(2) {
            assert_eq!(pair[0].addr % MODULE_ALIGN, 0);
            assert!(pair[0].addr + pair[0].size <= pair[1].addr, "overlap");
        }
    }

    #[test]
    fn rejects_modules_beyond_ram_and_big_hypervisors() {
        let mut s = reference();
        s.mem_mib = 200;
        assert!(s
            .layout(1 << 20, sizes)
            .unwrap_err()
            .contains("does not fit"));
        assert!(reference()
            .layout(200 << 20, sizes)
            .unwrap_err()
            .contains("overlap"));
        assert!(reference().layout(0, |_| Ok(u64::MAX - 10)).is_err());
    }

    #[test]
    fn rejects_bad_scenarios() {
        let mut two_initial = reference();
        two_initial.domains[0].initial = true;
        assert!(two_initial.validate().is_err());
        let mut bad_name = reference();
        bad_name.domains[0].name = "dom U".into();
        assert!(bad_name.validate().is_err());
        let mut dup = reference();
        dup.domains[2].name = "domU1".into();
        assert!(dup.validate().is_err());
        let mut quote = reference();
        quote.domains[0].bootargs = "a\"b".into();
        assert!(quote.validate().is_err());
        let mut no_cpus = reference();
        no_cpus.domains[0].cpus = 0;
        assert!(no_cpus.validate().is_err());
        let mut gic4 = reference();
        gic4.gic = 4;
        assert!(gic4.validate().is_err());
        let mut empty = reference();
        empty.domains.clear();
        assert!(empty.validate().is_err());
    }

    #[test]
    fn chosen_matches_xen_dom0less_bindings() {
        let s = reference();
        let layout = s.layout(1 << 20, sizes).unwrap();
        let dts = s.chosen_node(&layout);
        assert!(dts.contains(
            "xen,xen-bootargs = \"console=dtuart dtuart=/pl011@9000000 dom0_mem=512M\";"
        ));
        assert!(dts.contains("stdout-path = \"/pl011@9000000\";"));
        // Initial domain: two cells per value, directly under /chosen.
        assert!(dts.contains("\t\tmodule@49000000 {\n\t\t\tcompatible = \"multiboot,kernel\", \"multiboot,module\";\n\t\t\treg = <0x0 0x49000000 0x0 0x1a09a00>;\n\t\t\tbootargs = \"console=ttyAMA0 who=dom0\";"));
        assert!(dts.contains("reg = <0x0 0x4ac00000 0x0 0xf12ec>;"));
        // domUs: one cell per value, memory in KiB as a 64-bit value.
        assert!(dts.contains("domU2 {\n\t\t\tcompatible = \"xen,domain\";\n\t\t\t#address-cells = <0x1>;\n\t\t\t#size-cells = <0x1>;\n\t\t\tmemory = <0x0 0x30000>;\n\t\t\tcpus = <2>;\n\t\t\tvpl011;"));
        assert!(dts.contains("reg = <0x4ae00000 0x1a09a00>;"));
        assert_eq!(dts.matches("multiboot,ramdisk").count(), 3);
    }

    #[test]
    fn scenario_without_initial_domain_or_initrd() {
        let mut s = Scenario::new(PLATFORMS[0], 2, "console=dtuart");
        let mut only = domain("trapcheck", false, false);
        only.vpl011 = false;
        s.domains = vec![only];
        let layout = s.layout(1 << 20, |_| Ok(4096)).unwrap();
        assert_eq!(layout[0].kernel.addr, 0x4900_0000);
        let dts = s.chosen_node(&layout);
        assert!(!dts.contains("ramdisk"));
        assert!(!dts.contains("vpl011"));
        assert!(dts.contains("trapcheck {"));
    }

    #[test]
    fn replaces_only_the_root_chosen_node() {
        let base = "/dts-v1/;\n\n/ {\n\tmodel = \"x\";\n\n\tchosen {\n\t\tbootargs = \"a\";\n\t\trng-seed = <0x1>;\n\t};\n\n\tnode {\n\t\tsub {\n\t\t};\n\t};\n};\n";
        let out = replace_chosen(base, "\tchosen {\n\t};\n").unwrap();
        assert!(!out.contains("rng-seed"));
        assert!(out.contains("node {\n\t\tsub {\n\t\t};\n\t};"));
        assert!(out.ends_with("\tchosen {\n\t};\n};\n"));
        assert_eq!(out.matches('{').count(), out.matches("};").count());
        assert!(replace_chosen("/ {\n\tchosen {\n", "").is_err());
        assert!(replace_chosen("", "").is_err());
    }

    #[test]
    fn escapes_commas_for_qemu() {
        assert_eq!(qemu_escape(Path::new("/a,b/c")), "/a,,b/c");
    }
}
