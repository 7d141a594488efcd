//! Boot tests for device ownership and failure isolation (a child of `boot_tests`, so it
//! shares its context and helpers):
//! * `dom0-disk-gicN`: the initial domain reads a virtio disk whose md5 the host knows;
//! * `many-domains`: the initial domain and 7 domUs (14 vCPUs on 2 pCPUs) all reach init;
//! * `fail-alone-gicN`: a domU whose kernel panics ends alone, bad domain descriptions are
//!   refused one line each, and the others boot;
//! * `domu-disk-gicN` (opt-in: run with `--filter domu-disk`): a virtio disk passed through
//!   to a domU with Xen's partial device tree binding, invisible to the initial domain.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{failure, require_clean_exit, Context};
use crate::qemu::{run_captured, Captured};
use crate::scenario::{Domain, Scenario};
use crate::suites::{self, hello, parse_line, Dom0Mode, Hypervisor};
use crate::util::{output, run, say, target_dir, write_file};

/// Tests run by default.
pub const TESTS: &[&str] = &[
    "dom0-disk-gic3",
    "dom0-disk-gic2",
    "fail-alone-gic3",
    "fail-alone-gic2",
    "many-domains-gic3",
    "many-domains-gic2",
    "domu-disk-gic3",
    "domu-disk-gic2",
];

/// Tests run only when the filter names them (none at the moment).
pub const OPT_IN: &[&str] = &[];

const DISK_SIZE: usize = 4 << 20;
const LINUX_TIMEOUT: Duration = Duration::from_secs(600);
const MANY_TIMEOUT: Duration = Duration::from_secs(1200);

/// Where unused RAM of the 2 GiB machine is, for modules of domains that are refused anyway
/// and for partial device trees (the packed modules stay far below).
const SPARE_MODULES: u64 = 0xbe00_0000;

fn gic_of(name: &str, default: u8) -> u8 {
    if name.ends_with("-gic2") {
        2
    } else if name.ends_with("-gic3") {
        3
    } else {
        default
    }
}

/// A deterministic pseudo-random disk image (xorshift64*), and its md5 from the host's md5sum.
fn make_disk(path: &Path, seed: u64) -> Result<String, String> {
    // Odd and distinct for every seed below 2^63.
    let mut state = (seed << 1) | 1;
    let mut bytes = Vec::with_capacity(DISK_SIZE);
    while bytes.len() < DISK_SIZE {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        bytes.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    write_file(path, &bytes)?;
    let sum = output(Command::new("md5sum").arg(path))?;
    let md5 = sum
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    if md5.len() != 32 {
        return Err(format!("md5sum printed `{sum}`"));
    }
    Ok(md5)
}

/// QEMU arguments attaching `image` as virtio-blk drive `id` (on `bus` if given).
fn disk_args(image: &Path, id: &str, bus: Option<&str>) -> Vec<String> {
    let bus = bus.map(|b| format!(",bus={b}")).unwrap_or_default();
    vec![
        "-drive".into(),
        format!("if=none,file={},format=raw,id={id}", image.display()),
        "-device".into(),
        format!("virtio-blk-device,drive={id}{bus}"),
    ]
}

fn loader_args(file: &Path, addr: u64) -> Vec<String> {
    vec![
        "-device".into(),
        format!("loader,file={},addr={addr:#x},force-raw=on", file.display()),
    ]
}

/// Inserts `nodes` (device tree source) at the end of /chosen, which `Scenario` writes last.
fn append_to_chosen(dts: &str, nodes: &str) -> Result<String, String> {
    let cut = dts
        .rfind("\t};\n};")
        .ok_or("the scenario's device tree does not end with /chosen")?;
    Ok(format!("{}{nodes}{}", &dts[..cut], &dts[cut..]))
}

/// Adds `prop;` to the host node `node` (e.g. `virtio_mmio@a003e00`) at the root.
fn add_host_property(dts: &str, node: &str, prop: &str) -> Result<String, String> {
    let open = format!("\n\t{node} {{\n");
    let at = dts
        .find(&open)
        .ok_or_else(|| format!("host device tree has no /{node}"))?;
    let insert = at + open.len();
    Ok(format!("{}\t\t{prop};\n{}", &dts[..insert], &dts[insert..]))
}

/// Whether some log line's message (after tag/time/DOMn prefixes) contains `text`.
fn has_message(log: &str, tag: Option<&str>, domain: Option<u32>, text: &str) -> bool {
    log.lines().map(parse_line).any(|l| {
        (tag.is_none() || l.tag == tag)
            && (domain.is_none() || l.domain == domain)
            && l.message.contains(text)
    })
}

/// One expected line: hypervisor tag (or none), domain number (or any), text it contains.
type Expect = (Option<&'static str>, Option<u32>, String);

fn missing(log: &str, expected: &[Expect]) -> Vec<String> {
    expected
        .iter()
        .filter(|(tag, dom, text)| !has_message(log, *tag, *dom, text))
        .map(|(_, dom, text)| match dom {
            Some(d) => format!("`DOM{d}: {text}`"),
            None => format!("`{text}`"),
        })
        .collect()
}

impl Context<'_> {
    /// Runs one of this module's tests.
    pub(super) fn issue3_test(&mut self, name: &str) -> Result<(), String> {
        if self.options.hypervisor != Hypervisor::Mica {
            return Err("these tests assert Mica's own messages; run them with Mica".into());
        }
        let gic = gic_of(name, self.options.gic);
        match name.trim_end_matches("-gic2").trim_end_matches("-gic3") {
            "dom0-disk" => self.dom0_disk(name, gic),
            "domu-disk" => self.domu_disk(name, gic),
            "many-domains" => self.many_domains(name, gic),
            "fail-alone" => self.fail_alone(name, gic),
            other => Err(format!("unknown test {other}")),
        }
    }

    /// Kernel and the module-carrying initramfs.
    fn module_guest(&mut self) -> Result<(PathBuf, PathBuf), String> {
        let files = self.linux_files()?;
        let guests = files
            .initrd
            .parent()
            .ok_or("guest files have no directory")?
            .to_path_buf();
        let initrd = crate::initrd_modules::ensure(&guests)?;
        Ok((files.kernel, initrd))
    }

    /// The reference scenario with the module initramfs everywhere and `dom0` holding.
    fn base_scenario(&mut self, gic: u8, hold: u32) -> Result<Scenario, String> {
        let (kernel, initrd) = self.module_guest()?;
        let files = self.linux_files()?;
        let mut s = suites::linux_dom0less(
            Hypervisor::Mica,
            self.options.platform,
            gic,
            &files,
            Dom0Mode::Hold(hold),
            "",
        );
        for d in &mut s.domains {
            d.kernel = kernel.clone();
            d.initrd = Some(initrd.clone());
        }
        Ok(s)
    }

    /// Prepares `scenario`, lets `patch` edit its device tree source, adds `extra` QEMU
    /// arguments, and runs it until `done(log)` or the timeout.
    fn boot_patched(
        &mut self,
        name: &str,
        scenario: &Scenario,
        patch: &dyn Fn(String) -> Result<String, String>,
        extra: Vec<String>,
        timeout: Duration,
        done: &dyn Fn(&str) -> bool,
    ) -> Result<Captured, String> {
        let image = self.hypervisor()?;
        let work = target_dir().join("scenarios").join(name);
        let prepared = scenario.prepare(&image, &work)?;
        let dts_path = work.join("scenario.dts");
        let dts = std::fs::read_to_string(&dts_path)
            .map_err(|e| format!("reading {}: {e}", dts_path.display()))?;
        write_file(&dts_path, patch(dts)?.as_bytes())?;
        run(Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&prepared.dtb)
            .arg(&dts_path))?;
        let mut args = prepared.qemu_args;
        args.extend(extra);
        let log = target_dir().join("test-logs").join(format!("{name}.log"));
        let timeout = self.options.timeout.unwrap_or(timeout);
        say(format!(
            "booting {name} (timeout {} s, log {})",
            timeout.as_secs(),
            log.display()
        ));
        let captured = run_captured(&args, &log, timeout, done)?;
        say(format!(
            "{name}: QEMU ran {:.1} s",
            captured.elapsed.as_secs_f64()
        ));
        Ok(captured)
    }

    fn dom0_disk(&mut self, name: &str, gic: u8) -> Result<(), String> {
        let mut s = self.base_scenario(gic, 300)?;
        s.domains.retain(|d| d.name != "domU2");
        s.domains[0].bootargs.push_str(" disk=1");
        let disk = target_dir().join("scenarios").join(format!("{name}.img"));
        std::fs::create_dir_all(disk.parent().ok_or("no dir")?)
            .map_err(|e| format!("creating the scenario directory: {e}"))?;
        let md5 = make_disk(&disk, 0x6d69_6361_0001)?;
        let expected: Vec<Expect> = vec![
            (Some("(MICA)"), Some(0), hello("dom0", s.smp)),
            (Some("(MICA)"), Some(0), format!("DISK md5={md5}")),
            (Some("(MICA)"), Some(1), hello("domU1", 1)),
        ];
        let done = |log: &str| missing(log, &expected).is_empty();
        let captured = self.boot_patched(
            name,
            &s,
            &|dts| Ok(dts),
            disk_args(&disk, "d0", None),
            LINUX_TIMEOUT,
            &done,
        )?;
        let gone = missing(&captured.log, &expected);
        if !gone.is_empty() {
            return Err(failure(&captured, &format!("missing {}", gone.join(", "))));
        }
        Ok(())
    }

    fn domu_disk(&mut self, name: &str, gic: u8) -> Result<(), String> {
        let mut s = self.base_scenario(gic, 90)?;
        s.domains.retain(|d| d.name != "domU2");
        s.domains[0].bootargs.push_str(" disk=1");
        s.domains[1].bootargs.push_str(" disk=1");
        s.domains[1].memory_kib = 256 * 1024;
        let dir = target_dir().join("scenarios").join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let dom0_disk = dir.join("dom0.img");
        let domu_disk = dir.join("domU1.img");
        let dom0_md5 = make_disk(&dom0_disk, 0x6d69_6361_0002)?;
        let domu_md5 = make_disk(&domu_disk, 0x6d69_6361_0003)?;
        // virtio-mmio-bus.N is the transport at 0xa000000 + 0x200 * N (SPI 16 + N): bus 31
        // (0xa003e00, SPI 47) goes to domU1, bus 0 (0xa000000) to the initial domain.
        let partial_dts = r#"/dts-v1/;
/ {
	#address-cells = <2>;
	#size-cells = <2>;
	passthrough {
		compatible = "simple-bus";
		ranges;
		#address-cells = <2>;
		#size-cells = <2>;
		virtio_mmio@a003e00 {
			compatible = "virtio,mmio";
			reg = <0x0 0xa003e00 0x0 0x200>;
			interrupts = <0x0 0x2f 0x1>;
			interrupt-parent = <65000>;
			dma-coherent;
			xen,path = "/virtio_mmio@a003e00";
			xen,reg = <0x0 0xa003000 0x0 0x1000 0x0 0xa003000>;
			xen,force-assign-without-iommu;
		};
	};
};
"#;
        let partial_src = dir.join("domU1-partial.dts");
        let partial = dir.join("domU1-partial.dtb");
        write_file(&partial_src, partial_dts.as_bytes())?;
        run(Command::new("dtc")
            .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&partial)
            .arg(&partial_src))?;
        let partial_size = std::fs::metadata(&partial)
            .map_err(|e| format!("{}: {e}", partial.display()))?
            .len();
        let partial_module = format!(
            "\t\t\tmodule@{SPARE_MODULES:x} {{\n\t\t\t\tcompatible = \"multiboot,device-tree\", \"multiboot,module\";\n\t\t\t\treg = <{SPARE_MODULES:#x} {partial_size:#x}>;\n\t\t\t}};\n"
        );
        // The device does DMA to what it is told are physical addresses: without an IOMMU the
        // domU must be direct-mapped (Xen: xen,static-mem + direct-map).
        let direct_map = "\t\t\t#xen,static-mem-address-cells = <0x1>;\n\t\t\t#xen,static-mem-size-cells = <0x1>;\n\t\t\txen,static-mem = <0x90000000 0x10000000>;\n\t\t\tdirect-map;\n";
        let patch = |dts: String| -> Result<String, String> {
            let dts = add_host_property(&dts, "virtio_mmio@a003e00", "xen,passthrough")?;
            let open = "\t\tdomU1 {\n";
            let at = dts.find(open).ok_or("no domU1 node")? + open.len();
            // Properties first, the module node last (before the domain's closing brace).
            let close = at + dts[at..].find("\n\t\t};").ok_or("domU1 node not closed")? + 1;
            Ok(format!(
                "{}{direct_map}{}{partial_module}{}",
                &dts[..at],
                &dts[at..close],
                &dts[close..]
            ))
        };
        let mut extra = disk_args(&domu_disk, "d1", Some("virtio-mmio-bus.31"));
        extra.extend(disk_args(&dom0_disk, "d0", Some("virtio-mmio-bus.0")));
        extra.extend(loader_args(&partial, SPARE_MODULES));
        let expected: Vec<Expect> = vec![
            (Some("(MICA)"), Some(0), format!("DISK md5={dom0_md5}")),
            (Some("(MICA)"), Some(0), "DISKS n=1".into()),
            (Some("(MICA)"), Some(1), hello("domU1", 1)),
            (Some("(MICA)"), Some(1), format!("DISK md5={domu_md5}")),
        ];
        let done = |log: &str| missing(log, &expected).is_empty();
        let captured = self.boot_patched(name, &s, &patch, extra, LINUX_TIMEOUT, &done)?;
        let gone = missing(&captured.log, &expected);
        if !gone.is_empty() {
            return Err(failure(&captured, &format!("missing {}", gone.join(", "))));
        }
        if has_message(
            &captured.log,
            None,
            Some(0),
            &format!("DISK md5={domu_md5}"),
        ) {
            return Err(failure(&captured, "the initial domain read domU1's disk"));
        }
        Ok(())
    }

    fn many_domains(&mut self, name: &str, gic: u8) -> Result<(), String> {
        let mut s = self.base_scenario(gic, 900)?;
        s.hypervisor_bootargs = s
            .hypervisor_bootargs
            .replace("dom0_mem=512M", "dom0_mem=256M");
        let template: Domain = s.domains[1].clone();
        s.domains.truncate(1);
        let cpus = [1u32, 2, 1, 2, 1, 2, 1];
        for (k, &n) in cpus.iter().enumerate() {
            let who = format!("domU{}", k + 1);
            let mut d = template.clone();
            d.bootargs = format!("console=ttyAMA0 quiet panic=-1 who={who}");
            d.name = who;
            d.cpus = n;
            d.memory_kib = 128 * 1024;
            s.domains.push(d);
        }
        let total: u32 = s.smp + cpus.iter().sum::<u32>();
        let mut expected: Vec<Expect> = vec![(Some("(MICA)"), Some(0), hello("dom0", s.smp))];
        for (k, &n) in cpus.iter().enumerate() {
            let id = k as u32 + 1;
            expected.push((Some("(MICA)"), Some(id), hello(&format!("domU{id}"), n)));
        }
        say(format!(
            "{name}: 8 domains, {total} vCPUs on {} CPUs",
            s.smp
        ));
        let done = |log: &str| missing(log, &expected).is_empty();
        let captured =
            self.boot_patched(name, &s, &|dts| Ok(dts), Vec::new(), MANY_TIMEOUT, &done)?;
        let gone = missing(&captured.log, &expected);
        if !gone.is_empty() {
            return Err(failure(&captured, &format!("missing {}", gone.join(", "))));
        }
        Ok(())
    }

    fn fail_alone(&mut self, name: &str, gic: u8) -> Result<(), String> {
        let mut s = self.base_scenario(gic, 60)?;
        s.domains[2].bootargs.push_str(" crash=1");
        let m = |k: u64| SPARE_MODULES + (k << 20);
        let kernel = |addr: u64, compat: &str, size: u64| {
            format!(
                "\t\t\tmodule@{addr:x} {{\n\t\t\t\tcompatible = \"{compat}\", \"multiboot,module\";\n\t\t\t\treg = <{addr:#x} {size:#x}>;\n\t\t\t}};\n"
            )
        };
        let domain = |name: &str, memory_kib: u64, cpus: u32, modules: String| {
            format!(
                "\n\t\t{name} {{\n\t\t\tcompatible = \"xen,domain\";\n\t\t\t#address-cells = <0x1>;\n\t\t\t#size-cells = <0x1>;\n\t\t\tmemory = <{:#x} {:#x}>;\n\t\t\tcpus = <{cpus}>;\n{modules}\t\t}};\n",
                memory_kib >> 32,
                memory_kib & 0xffff_ffff
            )
        };
        let k = "multiboot,kernel";
        let bad = [
            domain("bigmem", 64 << 20, 1, kernel(m(0), k, 0x1000)),
            domain("nocpus", 64 << 10, 0, kernel(m(1), k, 0x1000)),
            domain("nokernel", 64 << 10, 1, String::new()),
            domain(
                "overlap",
                64 << 10,
                1,
                kernel(m(2), k, 0x2000) + &kernel(m(2) + 0x1000, "multiboot,ramdisk", 0x1000),
            ),
            domain(
                "badcompat",
                64 << 10,
                1,
                kernel(m(3), "multiboot,frob", 0x1000),
            ),
        ]
        .concat();
        let expected: Vec<Expect> = vec![
            (Some("(MICA)"), Some(0), hello("dom0", s.smp)),
            (Some("(MICA)"), Some(1), hello("domU1", 1)),
            (Some("(MICA)"), Some(2), hello("domU2", 2)),
            (Some("(MICA)"), Some(2), "CRASHING domU2".into()),
            (Some("(MICA)"), None, "DOM2 (domU2) ".into()),
            (Some("(MICA)"), None, "domain bigmem: memory 65536 MiB is more than the host's 2048 MiB of RAM; not created".into()),
            (Some("(MICA)"), None, "domain nocpus: cpus = 0, must be 1 to 128; not created".into()),
            (Some("(MICA)"), None, "domain nokernel: no multiboot,kernel module; not created".into()),
            (Some("(MICA)"), None, format!("domain overlap: module@{:x} (kernel) overlaps overlap/module@{:x}; not created", m(2), m(2) + 0x1000)),
            (Some("(MICA)"), None, format!("domain badcompat: module@{:x}: compatible missing or not multiboot,kernel/ramdisk/device-tree; not created", m(3))),
            (Some("(MICA)"), None, "DOM0 (dom0) powered off; domain destroyed".into()),
        ];
        let patch = |dts: String| append_to_chosen(&dts, &bad);
        let captured =
            self.boot_patched(name, &s, &patch, Vec::new(), LINUX_TIMEOUT, &|_| false)?;
        let gone = missing(&captured.log, &expected);
        if !gone.is_empty() {
            return Err(failure(&captured, &format!("missing {}", gone.join(", "))));
        }
        let ended = captured.log.lines().any(|l| {
            l.contains("DOM2 (domU2) ")
                && (l.contains("asked for a reset; domain destroyed")
                    || l.contains("crashed; domain destroyed"))
        });
        if !ended {
            return Err(failure(
                &captured,
                "no line saying domU2 ended after its panic",
            ));
        }
        require_clean_exit(&captured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_gic_from_the_name() {
        assert_eq!(gic_of("dom0-disk-gic2", 3), 2);
        assert_eq!(gic_of("dom0-disk-gic3", 2), 3);
        assert_eq!(gic_of("many-domains", 2), 2);
    }

    #[test]
    fn disk_is_deterministic_and_md5_matches() {
        let dir = std::env::temp_dir().join(format!("mica-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = make_disk(&dir.join("a.img"), 7).unwrap();
        let b = make_disk(&dir.join("b.img"), 7).unwrap();
        let c = make_disk(&dir.join("c.img"), 6).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            std::fs::metadata(dir.join("a.img")).unwrap().len(),
            DISK_SIZE as u64
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn edits_the_device_tree_source() {
        let dts =
            "/ {\n\tvirtio_mmio@a003e00 {\n\t\treg = <0x1>;\n\t};\n\tchosen {\n\t\tx;\n\t};\n};\n";
        let out = add_host_property(dts, "virtio_mmio@a003e00", "xen,passthrough").unwrap();
        assert!(out.contains("virtio_mmio@a003e00 {\n\t\txen,passthrough;\n\t\treg"));
        assert!(add_host_property(dts, "nope", "x").is_err());
        let out = append_to_chosen(dts, "\t\tdomX {\n\t\t};\n").unwrap();
        assert!(out.ends_with("\t\tx;\n\t\tdomX {\n\t\t};\n\t};\n};\n"));
        assert!(append_to_chosen("", "x").is_err());
    }

    #[test]
    fn finds_expected_lines() {
        let log = "(MICA) DOM1: HELLO from domU1 cpus=1\n(MICA) domain nocpus: cpus = 0, must be 1 to 128; not created\n";
        let e: Vec<Expect> = vec![
            (Some("(MICA)"), Some(1), hello("domU1", 1)),
            (Some("(MICA)"), None, "domain nocpus: cpus = 0".into()),
        ];
        assert!(missing(log, &e).is_empty());
        let e: Vec<Expect> = vec![(Some("(MICA)"), Some(2), hello("domU1", 1))];
        assert_eq!(missing(log, &e), ["`DOM2: HELLO from domU1 cpus=1`"]);
    }
}
