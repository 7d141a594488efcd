//! `cargo xtask`: builds Mica's images, prepares guests and device trees, boots scenarios in
//! QEMU, runs the test suite and the benchmarks. Run `cargo xtask help`.

// Tests unwrap freely: a panic there is a test failure with a message.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod abi_bench;
mod bench;
mod boot_tests;
mod config;
mod cpio;
mod defmt_log;
mod elf_image;
mod host;
mod images;
mod initrd;
mod initrd_modules;
mod pvtest_suite;
mod qemu;
mod rt;
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
         [--timeout S] [--hypervisor mica|xen] [--defmt]
      Boot Mica in QEMU with the terminal on the serial console. Without --config: an
      initial domain with a busybox shell plus two dom0less domUs (the scenario of
      examples/three-domains.toml). With --config: the domains FILE.toml describes
      (docs/config.md), checked first; errors name the field and its line. --uboot boots
      through Debian's U-Boot (as -bios) from a virtio disk holding the `image` directory,
      instead of QEMU's loader. --timeout S: stop QEMU and fail if the machine has not
      powered off after S seconds (it powers off when the initial domain does; without one,
      when QEMU exits by itself). --defmt: boot Mica's defmt build (compact logging, built
      under target/defmt/) and decode its log lines on the way to the terminal.
      Fetches guests and installs host tools as needed. --gic applies without --config
      ([machine] gic otherwise).
  image  [--platform P] --config FILE.toml [--out DIR] [--release]
      Write a boot directory for U-Boot (default target/images/<FILE stem>/): mica.bin,
      mica.dtb (QEMU's device tree of the machine U-Boot runs on, with the dom0less
      /chosen), the kernels and ramdisks, boot.cmd and boot.scr (needs mkimage from
      u-boot-tools) which loads each file at its computed address and runs `booti`.
      Prints each file's load address and size. Copy the directory to a FAT partition
      U-Boot reads.
  test   [--filter NAME] [--gic 2|3] [--release] [--timeout S] [--hypervisor mica|xen]
      Host unit tests, then QEMU boot tests with serial logs in
      target/test-logs/<test>.log. --filter runs the tests whose name contains NAME.
        unit                      cargo test of mica-hv, mica-guest-abi, mica-defmt-fmt,
                                  mica-platforms, xtask
        linux-dom0less            Linux initial domain + two domUs reach init (600 s)
        linux-dom0less-other-gic  the same on the other GIC version than --gic
        trapcheck                 guest-kit trap checks: UART, PSCI, CPU_ON, timer,
                                  data abort (120 s)
        uboot-linux               linux-dom0less booted through U-Boot from a disk (600 s)
        config-minimal            `run --config examples/minimal.toml --timeout` (300 s)
        pvtest                    guest-kit's PV test guest as the initial domain, on Mica
                                  and on Xen 4.17: the same outcome per check
        pvtest-grants             pvtest as the initial domain and an enhanced domU: grants
                                  mapped across domains (read-only refused for writes,
                                  copies, unmap twice), same statuses on Mica and Xen 4.17
        abi-pingpong              guest-kit abibench: hypercalls, an event loopback and an
                                  event ping-pong between dom0 and an enhanced domU
        linux-xen-pv              Linux dom0 and an enhanced domU on console=hvc0 read `xen`
                                  from /sys/hypervisor/type; a plain domU beside them
        dom0-disk-gicN            the initial domain reads a virtio disk (N = 2, 3)
        fail-alone-gicN           a failing domU ends alone; bad domains are refused
        many-domains-gicN         the initial domain and 7 domUs reach init (1200 s)
        domu-disk-gicN            a virtio disk passed through to a domU
        defmt-log                 trapcheck on the defmt build; Mica's lines decode
        rt-null, rt-edf,          rtbench's timer lateness beside a hog under each policy;
        rt-fixed-priority         (null pools, EDF, fixed priority)
        rt-bad-params             bad RT parameters refuse that domain only
        rt-cyclictest             Debian's cyclictest in a Linux domU in a null pool: every
                                  wake-up within one period
        board-raspi4b,            Linux initial domain and the hello guest on QEMU's model
        board-zcu102,             of the board with its Debian device tree (480 s); on
        board-imx8mp              QEMU < 10.0.3 imx8mp relies on Mica's unwired-VIRQ quirk
        x86-hello, x86-pvtest     Mica x86-64 (AMD-V, QEMU TCG): the guest-kit guests; pvtest
                                  also on Xen 4.17 amd64, same outcome per check
        x86-fault                 an x86 guest writing outside its RAM is killed alone
        x86-tick                  Mica's own timer preempts a spinning x86 guest and wakes a
                                  halted one
        x86-linux                 Debian's amd64 kernel as a PVH initial domain reaches init
      --timeout overrides every test's own. Ends with the line `N passed, M failed`.
  bench  boot [--gic 2|3] [--runs N]
      Power-on to each domain's init under -icount, for bare Linux, Xen 4.17 and Mica;
      writes the `## Boot` section of docs/benchmarks.md.
  bench  abi [--gic 2|3] [--runs N] [--arch aarch64|x86_64]
      The guest-kit abibench guest on Xen 4.17 and Mica under -icount: hypercall round trip,
      event-channel send to upcall, dom0<->domU event ping-pong; writes `## Guest ABI`.
      With --arch x86_64: the same as `bench abi-x86`.
  bench  footprint [--platform P]
      Size of the release mica.bin with and without defmt logging; writes the
      `## Footprint` section of docs/benchmarks.md.
  bench  rt [--runs N] [--only CELL]
      Timer-interrupt lateness of the rtbench guest (alone, beside a hog on the other CPU,
      beside a hog on its CPU under EDF and fixed priority) under -icount on bare QEMU,
      Mica, Xen 4.17 null and credit2; writes the `## Real-time` section of docs/benchmarks.md
      (--only mica-alone, xen-null, ...: just the matching cells, printed, not written).
  bench  abi-x86 [--arch x86_64] [--runs N]
      Hypercall and CPUID round trips of an x86-64 guest under -icount, on Mica x86, Xen 4.17
      amd64 and bare QEMU; writes the `## ABI round trips (x86-64)` section of docs/benchmarks.md.
  help   This text (also --help, -h, and --help after any command).

Options:
  --platform P     board to build for and boot (default qemu-virt; known: qemu-virt,
                   raspi4b, zcu102, imx8mp: QEMU's models of those boards, docs/boards.md)
  --config FILE    a TOML description of the domains (docs/config.md; examples/*.toml)
  --gic 2|3        GIC version of the QEMU machine (default 3)
  --release        build Mica with the release profile
  --hypervisor H   boot Xen 4.17 instead of Mica (to compare behaviour; default mica)
  --timeout S      seconds (run: until power-off; test: per boot test)

Host needs: qemu-system-aarch64 and qemu-system-x86_64, dtc, mkimage, mkfs.vfat and mcopy,
lz4, and apt with the arm64 architecture for the guest files
(`sudo bash .ci/install-host-deps.sh` sets all of it up).
Guests (Debian's arm64 and amd64 kernels, busybox, U-Boot, Xen 4.17 for arm64 and amd64,
rt-tests) are fetched once into target/guests/.
";

/// What `cargo xtask bench` accepts.
const BENCH_USAGE: &str =
    "usage: cargo xtask bench boot|abi|rt|abi-x86 [--gic 2|3] [--runs N] [--arch aarch64|x86_64] | cargo xtask bench footprint";

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
            let defmt = args.flag("--defmt");
            args.finish()?;
            if defmt && hv != Hypervisor::Mica {
                return Err(
                    "--defmt is a build of Mica: it does not go with --hypervisor xen".into(),
                );
            }
            let run = RunOptions {
                release,
                timeout,
                hv,
                defmt,
            };
            match config {
                Some(config) => run_config(platform, &config, uboot, &run),
                None if uboot => Err("--uboot needs --config FILE.toml".into()),
                None => run_default(platform, gic, &run),
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
                "abi" if args.value("--arch")?.is_none_or(|arch| arch == "aarch64") => {
                    let options = abi_bench::AbiOptions {
                        platform: args.platform()?,
                        gic: args.gic()?,
                        runs: args.number::<usize>("--runs")?.unwrap_or(3),
                    };
                    args.finish()?;
                    abi_bench::bench(&options)?;
                }
                "footprint" => {
                    let platform = args.platform()?;
                    args.finish()?;
                    defmt_log::footprint(&platform)?;
                }
                "rt" => {
                    let platform = args.platform()?;
                    let runs = args.number::<usize>("--runs")?.unwrap_or(3);
                    let only = args.value("--only")?;
                    args.finish()?;
                    rt::bench(platform, runs, only.as_deref())?;
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

/// How `run` boots, whatever the scenario.
struct RunOptions {
    release: bool,
    timeout: Option<Duration>,
    hv: Hypervisor,
    /// Mica's defmt build, its log decoded on the way to the terminal.
    defmt: bool,
}

impl RunOptions {
    /// The image to boot, and the ELF whose table decodes its log (defmt build only).
    fn image(&self, platform: &images::Platform) -> Result<(PathBuf, Option<PathBuf>), String> {
        if self.defmt {
            let built = defmt_log::build(platform, self.release)?;
            Ok((built.image, Some(built.elf)))
        } else {
            Ok((self.hv.image(platform, self.release)?, None))
        }
    }

    fn boot(&self, qemu_args: &[String], defmt_elf: Option<&Path>) -> Result<bool, String> {
        let status = match defmt_elf {
            Some(elf) => defmt_log::run_interactive(qemu_args, elf, self.timeout)?,
            None => qemu::run_interactive(qemu_args, self.timeout)?,
        };
        Ok(status.success())
    }
}

fn run_default(platform: images::Platform, gic: u8, options: &RunOptions) -> Result<bool, String> {
    host::ensure_host_tools()?;
    let (image, defmt_elf) = options.image(&platform)?;
    let files = host::ensure_linux_guest()?;
    let scenario = suites::linux_dom0less(options.hv, platform, gic, &files, Dom0Mode::Shell, "");
    let prepared = scenario.prepare(&image, &util::target_dir().join("scenarios").join("run"))?;
    println!(
        "Console: Ctrl-a three times switches between the domains' consoles; \
         QEMU's escape is Ctrl-] (Ctrl-] x quits, Ctrl-] c the QEMU monitor)."
    );
    options.boot(&prepared.qemu_args, defmt_elf.as_deref())
}

/// `run --config`: boots the scenario a TOML file describes, directly or through U-Boot.
fn run_config(
    platform: images::Platform,
    config: &Path,
    uboot: bool,
    options: &RunOptions,
) -> Result<bool, String> {
    host::ensure_host_tools()?;
    let (image, defmt_elf) = options.image(&platform)?;
    let (args, has_initial) = config_qemu_args(platform, config, uboot, &image)?;
    if !has_initial {
        util::say("no initial domain: the run ends when QEMU exits by itself");
    }
    println!("Console: QEMU's escape is Ctrl-] (Ctrl-] x quits, Ctrl-] c the QEMU monitor).");
    options.boot(&args, defmt_elf.as_deref())
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
    let firmware = if uboot {
        Some(uboot::ensure_uboot()?)
    } else {
        None
    };
    let (config, scenario) = config::load_scenario(
        config,
        platform,
        util::file_size(hypervisor)?,
        &work,
        firmware,
    )?;
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
    let (_, scenario) = config::load_scenario(
        config_path,
        platform,
        util::file_size(&hypervisor)?,
        &work,
        Some(uboot::ensure_uboot()?),
    )?;
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
            "boot.scr was not made (no mkimage; install u-boot-tools): \
             U-Boot can run boot.cmd's lines typed at its prompt"
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
