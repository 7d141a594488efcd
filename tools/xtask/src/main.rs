//! `cargo xtask`: builds Mica's images, prepares guests and device trees, boots scenarios in
//! QEMU, runs the test suite and the benchmarks. Run `cargo xtask help`.

// Tests unwrap freely: a panic there is a test failure with a message.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod bench;
mod boot_tests;
mod cpio;
mod elf_image;
mod host;
mod images;
mod initrd;
mod initrd_modules;
mod qemu;
mod scenario;
mod suites;
mod util;

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
  run    [--platform P] [--gic 2|3] [--release] [--timeout S] [--hypervisor mica|xen]
      Boot an initial domain with a busybox shell plus two dom0less domUs in QEMU, with
      the terminal on the serial console. Fetches guests and installs host tools as needed.
  test   [--filter NAME] [--gic 2|3] [--release] [--timeout S] [--hypervisor mica|xen]
      Host unit tests (unit: mica-hv, mica-guest-abi, xtask), then QEMU boot tests
      (linux-dom0less: 600 s, trapcheck: 120 s; --timeout overrides) with serial logs in
      target/test-logs/<test>.log. Ends with the line `N passed, M failed`.
  bench  boot [--gic 2|3] [--runs N]
      Power-on to each domain's init under -icount, for bare Linux, Xen 4.17 and Mica;
      writes the `## Boot` section of docs/benchmarks.md.
  help   This text.

Options:
  --platform P     board to build for (default qemu-virt; known: qemu-virt)
  --gic 2|3        GIC version of the QEMU machine (default 3)
  --release        build Mica with the release profile
  --hypervisor H   boot Xen 4.17 instead of Mica (to compare behaviour; default mica)
";

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
            args.finish()?;
            run(platform, gic, release, timeout, hv)
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
            if args.rest.first().map(String::as_str) != Some("boot") {
                return Err("usage: cargo xtask bench boot [--gic 2|3] [--runs N]".into());
            }
            args.rest.remove(0);
            let options = bench::BenchOptions {
                platform: args.platform()?,
                gic: args.gic()?,
                runs: args.number::<usize>("--runs")?.unwrap_or(3),
            };
            args.finish()?;
            bench::boot(&options)?;
            Ok(true)
        }
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(true)
        }
        other => Err(format!(
            "unknown command `{other}`; commands: build, run, test, bench, help"
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
