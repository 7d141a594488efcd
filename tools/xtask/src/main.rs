//! `cargo xtask`: builds Mica's images, prepares guests and device trees, boots scenarios in
//! QEMU, runs the test suite and the benchmarks. Run `cargo xtask help`.

// Tests unwrap freely: a panic there is a test failure with a message.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod bench;
mod boot_tests;
mod config;
mod cpio;
mod elf_image;
mod host;
mod images;
mod initrd;
mod initrd_modules;
mod pvtest_suite;
mod qemu;
mod scenario;
mod suites;
mod uboot;
mod util;
mod x86;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use images::platform;
use suites::{Dom0Mode, Hypervisor};

const HELP: &str = "\
cargo xtask <command> [options]

Commands:
  build  [--platform P] [--release]
      Build Mica and convert it to a flat image; prints its path last:
      target/aarch64-unknown-none-softfloat/<debug|release>/mica.bin
  run    [--platform P] [--config FILE.toml [--uboot]] [--gic 2|3] [--release]
         [--timeout S] [--hypervisor mica|xen]
      Boot Mica in QEMU with the terminal on the serial console. Without --config: an
      initial domain with a busybox shell plus two dom0less domUs (examples/three-domains.toml).
      With --config: the domains FILE.toml describes (docs/config.md), checked first; errors
      name the field and its line. --uboot boots through U-Boot from a virtio disk instead of
      QEMU's loader (the `image` directory on a FAT partition). --timeout S: stop QEMU and fail
      if the machine has not powered off after S seconds (it powers off when the initial
      domain does; without one, when QEMU exits by itself). Fetches guests and installs host
      tools as needed. --gic applies without --config ([machine] gic otherwise).
  image  [--platform P] --config FILE.toml [--out DIR] [--release]
      Write a boot directory for U-Boot (default target/images/<FILE stem>/): mica.bin,
      mica.dtb (QEMU's board tree with the dom0less /chosen), the kernels and ramdisks,
      boot.cmd and boot.scr (needs mkimage from u-boot-tools) which loads each file at its
      computed address and runs `booti`. Copy the directory to a FAT partition U-Boot reads.
  test   [--filter NAME] [--gic 2|3] [--release] [--timeout S] [--hypervisor mica|xen]
      Host unit tests (unit: mica-hv, mica-guest-abi, xtask), then QEMU boot tests with
      serial logs in target/test-logs/<test>.log: linux-dom0less (600 s), trapcheck (120 s),
      uboot-linux (the linux-dom0less scenario booted through U-Boot, 600 s), config-minimal
      (`run --config examples/minimal.toml`, 300 s); --timeout overrides.
      Ends with the line `N passed, M failed`.
  bench  boot [--gic 2|3] [--runs N]
      Power-on to each domain's init under -icount, for bare Linux, Xen 4.17 and Mica;
      writes the `## Boot` section of docs/benchmarks.md.
  bench  abi-x86 [--arch x86_64] [--runs N]   (also: abi --arch x86_64)
      Hypercall and CPUID round trips of an x86-64 guest under -icount, on Mica x86, Xen 4.17
      amd64 and bare QEMU; writes the `## ABI round trips (x86-64)` section of docs/benchmarks.md.
  help   This text (also --help, -h).

Options:
  --platform P     board to build for (default qemu-virt; known: qemu-virt)
  --config FILE    a TOML description of the domains (docs/config.md; examples/*.toml)
  --gic 2|3        GIC version of the QEMU machine (default 3)
  --release        build Mica with the release profile
  --hypervisor H   boot Xen 4.17 instead of Mica (to compare behaviour; default mica)
";

/// What `cargo xtask bench` accepts.
const BENCH_USAGE: &str =
    "usage: cargo xtask bench boot [--gic 2|3] [--runs N] | abi-x86 [--arch x86_64] [--runs N]";

/// Hand-rolled option parsing: `--name value`, `--name=value` and `--flag`.
struct Args {
    rest: Vec<String>,
}

impl Args {
    fn flag(&mut self, name: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|a| a != name);
        self.rest.len() != before
    }

    fn value(&mut self, name: &str) -> Result<Option<String>, String> {
        let prefix = format!("{name}=");
        if let Some(i) = self.rest.iter().position(|a| a.starts_with(&prefix)) {
            return Ok(Some(self.rest.remove(i)[prefix.len()..].to_string()));
        }
        match self.rest.iter().position(|a| a == name) {
            None => Ok(None),
            Some(i) if i + 1 < self.rest.len() => {
                let value = self.rest.remove(i + 1);
                self.rest.remove(i);
                Ok(Some(value))
            }
            Some(_) => Err(format!("{name} needs a value")),
        }
    }

    fn number<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>, String> {
        self.value(name)?
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("{name}: `{v}` is not a number"))
            })
            .transpose()
    }

    fn gic(&mut self) -> Result<u8, String> {
        match self.number::<u8>("--gic")?.unwrap_or(3) {
            gic @ (2 | 3) => Ok(gic),
            other => Err(format!("--gic must be 2 or 3, not {other}")),
        }
    }

    fn hypervisor(&mut self) -> Result<Hypervisor, String> {
        Hypervisor::parse(&self.value("--hypervisor")?.unwrap_or_else(|| "mica".into()))
    }

    fn platform(&mut self) -> Result<images::Platform, String> {
        platform(
            &self
                .value("--platform")?
                .unwrap_or_else(|| "qemu-virt".into()),
        )
    }

    /// Fails on anything not consumed.
    fn finish(self) -> Result<(), String> {
        match self.rest.first() {
            None => Ok(()),
            Some(arg) => Err(format!(
                "unexpected argument `{arg}` (see `cargo xtask help`)"
            )),
        }
    }
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let command = argv.next().unwrap_or_else(|| "help".into());
    let args = Args {
        rest: argv.collect(),
    };
    // `cargo xtask run --help` and the like show the help too.
    let command = if args.rest.iter().any(|a| a == "--help" || a == "-h") {
        "help".to_string()
    } else {
        command
    };
    match dispatch(&command, args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: &str, mut args: Args) -> Result<bool, String> {
    match command {
        "build" => {
            let platform = args.platform()?;
            let release = args.flag("--release");
            args.finish()?;
            let image = images::build_mica(&platform, release)?;
            println!("{}", image.display());
            Ok(true)
        }
        "run" => {
            let platform = args.platform()?;
            let gic = args.gic()?;
            let release = args.flag("--release");
            let timeout = args.number::<u64>("--timeout")?.map(Duration::from_secs);
            let hv = args.hypervisor()?;
            let config = args.value("--config")?.map(PathBuf::from);
            let uboot = args.flag("--uboot");
            args.finish()?;
            match config {
                Some(config) => run_config(platform, &config, uboot, release, timeout, hv),
                None if uboot => Err("--uboot needs --config FILE.toml".into()),
                None => run(platform, gic, release, timeout, hv),
            }
        }
        "image" => {
            let platform = args.platform()?;
            let release = args.flag("--release");
            let config = args
                .value("--config")?
                .map(PathBuf::from)
                .ok_or("image needs --config FILE.toml")?;
            let out = args.value("--out")?.map(PathBuf::from);
            args.finish()?;
            image(platform, &config, out, release)
        }
        "test" => {
            let options = boot_tests::TestOptions {
                platform: args.platform()?,
                gic: args.gic()?,
                release: args.flag("--release"),
                filter: args.value("--filter")?,
                hypervisor: args.hypervisor()?,
                timeout: args.number::<u64>("--timeout")?.map(Duration::from_secs),
            };
            args.finish()?;
            boot_tests::run_all(&options)
        }
        "bench" => {
            let Some(which) = (!args.rest.is_empty()).then(|| args.rest.remove(0)) else {
                return Err(BENCH_USAGE.into());
            };
            match which.as_str() {
                "boot" => {
                    let options = bench::BenchOptions {
                        platform: args.platform()?,
                        gic: args.gic()?,
                        runs: args.number::<usize>("--runs")?.unwrap_or(3),
                    };
                    args.finish()?;
                    bench::boot(&options)?;
                }
                "abi-x86" | "abi" => {
                    let arch = args.value("--arch")?.unwrap_or_else(|| "x86_64".into());
                    if arch != "x86_64" {
                        return Err(format!(
                            "the abi benchmark exists for --arch x86_64 only, not {arch}"
                        ));
                    }
                    let runs = args.number::<usize>("--runs")?.unwrap_or(3);
                    args.finish()?;
                    x86::bench_abi(runs)?;
                }
                other => return Err(format!("unknown benchmark `{other}`; {BENCH_USAGE}")),
            }
            Ok(true)
        }
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(true)
        }
        other => Err(format!(
            "unknown command `{other}`; commands: build, run, image, test, bench, help"
        )),
    }
}

fn run(
    platform: images::Platform,
    gic: u8,
    release: bool,
    timeout: Option<Duration>,
    hv: Hypervisor,
) -> Result<bool, String> {
    host::ensure_host_tools()?;
    let image = hv.image(&platform, release)?;
    let files = host::ensure_linux_guest()?;
    let scenario = suites::linux_dom0less(hv, platform, gic, &files, Dom0Mode::Shell, "");
    let prepared = scenario.prepare(&image, &util::target_dir().join("scenarios").join("run"))?;
    println!(
        "Console: Ctrl-a three times switches between the domains' consoles; \
         QEMU's escape is Ctrl-] (Ctrl-] x quits, Ctrl-] c the QEMU monitor)."
    );
    let status = qemu::run_interactive(&prepared.qemu_args, timeout)?;
    Ok(status.success())
}

/// `run --config`: boots the scenario a TOML file describes, directly or through U-Boot.
fn run_config(
    platform: images::Platform,
    config: &Path,
    uboot: bool,
    release: bool,
    timeout: Option<Duration>,
    hv: Hypervisor,
) -> Result<bool, String> {
    host::ensure_host_tools()?;
    let image = hv.image(&platform, release)?;
    let (args, has_initial) = config_qemu_args(platform, config, uboot, &image)?;
    if !has_initial {
        util::say("no initial domain: the run ends when QEMU exits by itself");
    }
    println!("Console: QEMU's escape is Ctrl-] (Ctrl-] x quits, Ctrl-] c the QEMU monitor).");
    let status = qemu::run_interactive(&args, timeout)?;
    Ok(status.success())
}

/// QEMU arguments for a configuration file, and whether it has an initial domain.
pub fn config_qemu_args(
    platform: images::Platform,
    config: &Path,
    uboot: bool,
    hypervisor: &Path,
) -> Result<(Vec<String>, bool), String> {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let work = util::target_dir()
        .join("scenarios")
        .join(format!("config-{stem}"));
    let (config, scenario) =
        config::load_scenario(config, platform, util::file_size(hypervisor)?, &work)?;
    let args = if uboot {
        uboot::prepare(&scenario, hypervisor, &work)?
    } else {
        scenario.prepare(hypervisor, &work)?.qemu_args
    };
    Ok((args, config.has_initial()))
}

/// `image`: the U-Boot boot directory for a configuration file.
fn image(
    platform: images::Platform,
    config_path: &Path,
    out: Option<PathBuf>,
    release: bool,
) -> Result<bool, String> {
    host::ensure_host_tools()?;
    let hypervisor = images::build_mica(&platform, release)?;
    let stem = config_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".into());
    let out = out.unwrap_or_else(|| util::target_dir().join("images").join(&stem));
    let work = util::target_dir()
        .join("scenarios")
        .join(format!("image-{stem}"));
    let (_, scenario) =
        config::load_scenario(config_path, platform, util::file_size(&hypervisor)?, &work)?;
    let written = uboot::write_image_dir(&scenario, &hypervisor, &out, &work)?;
    let plan = &written.plan;
    for load in std::iter::once(&plan.hypervisor)
        .chain(std::iter::once(&plan.dtb))
        .chain(&plan.modules)
    {
        println!("  {:#012x}  {:>10}  {}", load.addr, load.size, load.name);
    }
    if written.script.is_none() {
        println!(
            "boot.scr was not made (no mkimage; install u-boot-tools):              U-Boot can run boot.cmd's lines typed at its prompt"
        );
    }
    println!("{}", written.dir.display());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args {
            rest: list.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn parses_values_flags_and_rejects_leftovers() {
        let mut a = args(&["--gic", "2", "--release", "--filter=trap"]);
        assert_eq!(a.gic().unwrap(), 2);
        assert!(a.flag("--release"));
        assert_eq!(a.value("--filter").unwrap().as_deref(), Some("trap"));
        assert!(a.finish().is_ok());
        assert!(args(&["--bogus"]).finish().is_err());
        assert!(args(&["--gic"]).value("--gic").is_err());
        assert!(args(&["--gic", "4"]).gic().is_err());
        assert!(args(&["--runs", "x"]).number::<usize>("--runs").is_err());
        assert!(args(&["--platform", "pc"])
            .platform()
            .unwrap_err()
            .contains("known platforms: qemu-virt"));
        assert_eq!(args(&[]).gic().unwrap(), 3);
    }
}
