//! `--config FILE.toml`: the user's description of a machine's domains, checked field by field
//! and turned into a [`Scenario`]. Every error names the field and its line in the file.
//! The schema is documented in docs/config.md.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::images::Platform;
use crate::scenario::{Domain, DomainModules, Scenario};

/// vCPUs a domain may have at most (Mica's limit, `mica_guest_abi::layout::MAX_VCPUS`).
pub const MAX_VCPUS: u32 = 128;
/// A domU may have up to this many vCPUs per host CPU (they time-share).
pub const VCPUS_PER_HOST_CPU: u32 = 8;
/// QEMU virt's CPU limit with a GICv2 (GICv3 is bounded by [`MAX_HOST_CPUS`]).
const MAX_GICV2_CPUS: u32 = 8;
const MAX_HOST_CPUS: u32 = 128;
/// Xen's `GUEST_PHANDLE_GIC`: the guest GIC's phandle in a passthrough partial device tree.
const GUEST_GIC_PHANDLE: u32 = 65000;

/// A configuration error: where, which field, what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the error has no place in the file (e.g. it cannot be read).
    pub line: usize,
    /// Dotted field name, e.g. `domain[1].memory`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.field.is_empty()) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (line, true) => write!(f, "{}, line {line}: {}", self.file, self.message),
            (line, false) => write!(
                f,
                "{}, line {line}: {}: {}",
                self.file, self.field, self.message
            ),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    hypervisor: Option<Spanned<RawHypervisor>>,
    machine: Option<Spanned<RawMachine>>,
    #[serde(default)]
    domain: Vec<Spanned<RawDomain>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHypervisor {
    bootargs: Option<Spanned<String>>,
    console_timestamps: Option<bool>,
    /// false: every domain is a dom0less domU (no initial domain).
    initial_domain: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachine {
    cpus: Option<Spanned<i64>>,
    memory: Option<Spanned<toml::Value>>,
    gic: Option<Spanned<i64>>,
    cpu: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    name: Spanned<String>,
    kernel: Spanned<String>,
    initrd: Option<Spanned<String>>,
    cmdline: Option<Spanned<String>>,
    memory: Spanned<toml::Value>,
    vcpus: Option<Spanned<i64>>,
    console: Option<Spanned<String>>,
    sched: Option<Spanned<RawSched>>,
    passthrough: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSched {
    policy: Spanned<String>,
    period_us: Option<Spanned<i64>>,
    budget_us: Option<Spanned<i64>>,
}

/// A scheduling request, validated; emitted as `mica,sched-*` properties.
#[derive(Clone, Debug, PartialEq)]
pub enum Sched {
    RoundRobin,
    Edf { period_us: u32, budget_us: u32 },
}

/// Where a checked value came from, for errors found later (files, RAM, board DT).
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub line: usize,
    pub field: String,
}

/// One domain as the file describes it, checked.
#[derive(Clone, Debug)]
pub struct DomainConfig {
    pub name: String,
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub memory_bytes: u64,
    pub vcpus: u32,
    pub vpl011: bool,
    pub sched: Sched,
    pub passthrough: Vec<(String, Origin)>,
    pub initial: bool,
    /// Origins of fields checked again later.
    pub kernel_at: Origin,
    pub initrd_at: Option<Origin>,
    pub memory_at: Origin,
}

/// A whole configuration file, checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: String,
    pub domains: Vec<DomainConfig>,
    pub hypervisor_bootargs: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub gic: u8,
    pub cpu: String,
}

/// Line (1-based) of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key written on the line holding `offset` (`vcpus = "2"` gives `vcpus`), if any.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

/// Parses a size: an integer is bytes; a string is a number with an optional binary suffix
/// `K`, `M`, `G`, `T` (or `KiB`, `MiB`, …; either case). `"512M"`, `"1G"`, `"65536"`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

/// Sizes for messages: `512 MiB`, `1.5 GiB`, `4096 bytes`.
fn show_size(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

struct Checker<'a> {
    text: &'a str,
    file: String,
}

impl Checker<'_> {
    fn error(&self, span: Range<usize>, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: line_of(self.text, span.start),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn origin(&self, span: Range<usize>, field: &str) -> Origin {
        Origin {
            line: line_of(self.text, span.start),
            field: field.to_string(),
        }
    }

    fn size(&self, value: &Spanned<toml::Value>, field: &str) -> Result<u64, ConfigError> {
        let bytes = match value.get_ref() {
            toml::Value::Integer(n) => u64::try_from(*n).ok(),
            toml::Value::String(s) => parse_size(s),
            _ => None,
        };
        let bad = || {
            self.error(
                value.span(),
                field,
                format!(
                    "{} is not a size: give bytes or a number with K, M, G or T (\"512M\")",
                    match value.get_ref() {
                        toml::Value::String(s) => format!("\"{s}\""),
                        toml::Value::Integer(n) => n.to_string(),
                        other => format!("a {}", other.type_str()),
                    }
                ),
            )
        };
        let bytes = bytes.ok_or_else(bad)?;
        if bytes == 0 || !bytes.is_multiple_of(4096) {
            return Err(self.error(
                value.span(),
                field,
                format!("{bytes} bytes: must be a non-zero multiple of 4 KiB"),
            ));
        }
        Ok(bytes)
    }

    fn text_value(&self, value: &Spanned<String>, field: &str) -> Result<String, ConfigError> {
        let text = value.get_ref();
        if text.contains('"') || text.contains('\\') || text.contains('\n') {
            return Err(self.error(
                value.span(),
                field,
                "must not contain quotes, backslashes or newlines (it becomes a device-tree string)",
            ));
        }
        Ok(text.clone())
    }
}

/// Checks the text of a configuration file. `file` names it in errors; relative paths are
/// resolved against `base` (the repository root). Files are not touched here: see
/// [`Config::check_files`] and [`Config::check_memory`].
pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
    let check = Checker {
        text,
        file: file.to_string(),
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start);
        let message = e.message().trim().to_string();
        // toml names unknown and missing fields itself; for type errors name the key.
        let field = if message.contains("field") {
            String::new()
        } else {
            key_on_line(text, start).unwrap_or_default()
        };
        ConfigError {
            file: file.to_string(),
            line: if e.span().is_some() {
                line_of(text, start)
            } else {
                0
            },
            field,
            message,
        }
    })?;

    // [machine]
    let (mut cpus, mut memory_mib, mut gic, mut cpu) = (2u32, 2048u64, 3u8, "cortex-a57".into());
    if let Some(machine) = &raw.machine {
        let m = machine.get_ref();
        if let Some(g) = &m.gic {
            gic = match *g.get_ref() {
                2 => 2,
                3 => 3,
                other => {
                    return Err(check.error(
                        g.span(),
                        "machine.gic",
                        format!("{other}: must be 2 or 3"),
                    ))
                }
            };
        }
        if let Some(c) = &m.cpus {
            let limit = if gic == 2 {
                MAX_GICV2_CPUS
            } else {
                MAX_HOST_CPUS
            };
            cpus = match u32::try_from(*c.get_ref()) {
                Ok(n @ 1..) if n <= limit => n,
                _ => {
                    return Err(check.error(
                        c.span(),
                        "machine.cpus",
                        format!("{}: must be 1 to {limit} (with a GICv{gic})", c.get_ref()),
                    ))
                }
            };
        }
        if let Some(size) = &m.memory {
            let bytes = check.size(size, "machine.memory")?;
            if !bytes.is_multiple_of(1 << 20) || bytes < 256 << 20 {
                return Err(check.error(
                    size.span(),
                    "machine.memory",
                    "must be a whole number of MiB, at least 256 MiB",
                ));
            }
            memory_mib = bytes >> 20;
        }
        if let Some(c) = &m.cpu {
            cpu = check.text_value(c, "machine.cpu")?;
        }
    }

    // [hypervisor]
    let hv = raw.hypervisor.as_ref().map(|h| h.get_ref());
    let has_initial = hv.and_then(|h| h.initial_domain).unwrap_or(true);
    let mut bootargs = String::new();
    if let Some(args) = hv.and_then(|h| h.bootargs.as_ref()) {
        bootargs = check.text_value(args, "hypervisor.bootargs")?;
        for option in bootargs.split_whitespace() {
            let name = option.split('=').next().unwrap_or(option).replace('-', "_");
            if name == "dom0_mem" || name == "dom0_max_vcpus" {
                return Err(check.error(
                    args.span(),
                    "hypervisor.bootargs",
                    format!(
                        "`{option}`: set the initial domain's `memory` and `vcpus` instead \
                         (xtask writes {name}= from them)"
                    ),
                ));
            }
        }
    }
    if bootargs.is_empty() {
        bootargs = "console=dtuart dtuart=/pl011@9000000".into();
    }
    if hv.and_then(|h| h.console_timestamps).unwrap_or(false) {
        bootargs.push_str(" console_timestamps=boot");
    }

    // [[domain]]
    if raw.domain.is_empty() {
        return Err(ConfigError {
            file: file.to_string(),
            line: 1,
            field: "domain".into(),
            message: "no [[domain]] table: describe at least one domain".into(),
        });
    }
    let mut domains: Vec<DomainConfig> = Vec::new();
    for (index, spanned) in raw.domain.iter().enumerate() {
        let d = spanned.get_ref();
        let field = |name: &str| format!("domain[{index}].{name}");
        let initial = has_initial && index == 0;

        let name = d.name.get_ref().clone();
        let name_ok = !name.is_empty()
            && name.len() <= 31
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ",._+-".contains(c));
        if !name_ok {
            return Err(check.error(
                d.name.span(),
                &field("name"),
                format!(
                    "`{name}`: use 1 to 31 letters, digits or , . _ + - (it names a device-tree node)"
                ),
            ));
        }
        if let Some(first) = raw.domain[..index]
            .iter()
            .find(|other| other.get_ref().name.get_ref() == &name)
        {
            let first_line = line_of(text, first.get_ref().name.span().start);
            return Err(check.error(
                d.name.span(),
                &field("name"),
                format!("`{name}` is already the name of the domain at line {first_line}"),
            ));
        }

        let resolve = |p: &str| {
            let path = PathBuf::from(p);
            if path.is_absolute() {
                path
            } else {
                base.join(path)
            }
        };
        let kernel = resolve(d.kernel.get_ref());
        let initrd = d.initrd.as_ref().map(|i| resolve(i.get_ref()));

        let cmdline = match &d.cmdline {
            Some(c) => check.text_value(c, &field("cmdline"))?,
            None => String::new(),
        };
        let memory_bytes = check.size(&d.memory, &field("memory"))?;
        if memory_bytes > memory_mib << 20 {
            return Err(check.error(
                d.memory.span(),
                &field("memory"),
                format!(
                    "{} is more than the machine's RAM ({} MiB; see [machine] memory)",
                    show_size(memory_bytes),
                    memory_mib
                ),
            ));
        }

        let vcpus = match &d.vcpus {
            None => 1,
            Some(v) => {
                let limit = if initial {
                    cpus
                } else {
                    (cpus * VCPUS_PER_HOST_CPU).min(MAX_VCPUS)
                };
                let why = if initial {
                    format!("the initial domain may have 1 to {cpus} (one per host CPU)")
                } else {
                    format!(
                        "a domain may have 1 to {limit} ({VCPUS_PER_HOST_CPU} per host CPU, \
                         at most {MAX_VCPUS})"
                    )
                };
                match u32::try_from(*v.get_ref()) {
                    Ok(n @ 1..) if n <= limit => n,
                    _ => {
                        return Err(check.error(
                            v.span(),
                            &field("vcpus"),
                            format!("{}: {why}", v.get_ref()),
                        ))
                    }
                }
            }
        };

        let vpl011 = match d.console.as_ref().map(|c| (c, c.get_ref().as_str())) {
            None | Some((_, "vpl011")) => true,
            Some((c, "none")) if initial => {
                return Err(check.error(
                    c.span(),
                    &field("console"),
                    "the initial domain always has the console (an emulated PL011)",
                ))
            }
            Some((_, "none")) => false,
            Some((c, other)) => {
                return Err(check.error(
                    c.span(),
                    &field("console"),
                    format!("`{other}`: must be \"vpl011\" or \"none\""),
                ))
            }
        };

        let sched = match &d.sched {
            None => Sched::RoundRobin,
            Some(s) => check_sched(&check, s, &field("sched"))?,
        };

        let mut passthrough = Vec::new();
        for (i, path) in d.passthrough.iter().flatten().enumerate() {
            let f = format!("{}[{i}]", field("passthrough"));
            if initial {
                return Err(check.error(
                    path.span(),
                    &f,
                    "the initial domain already owns every device not given to another domain",
                ));
            }
            let p = path.get_ref();
            if !p.starts_with('/') || p.len() < 2 || p.contains(['"', '\\', ' ']) {
                return Err(check.error(
                    path.span(),
                    &f,
                    format!("`{p}`: give the device's full device-tree path, e.g. /pl061@9030000"),
                ));
            }
            if passthrough.iter().any(|(q, _)| q == p)
                || domains
                    .iter()
                    .any(|o| o.passthrough.iter().any(|(q, _)| q == p))
            {
                return Err(check.error(
                    path.span(),
                    &f,
                    format!("`{p}` is given to a domain twice"),
                ));
            }
            passthrough.push((p.clone(), check.origin(path.span(), &f)));
        }

        domains.push(DomainConfig {
            name,
            kernel,
            initrd,
            cmdline,
            memory_bytes,
            vcpus,
            vpl011,
            sched,
            passthrough,
            initial,
            kernel_at: check.origin(d.kernel.span(), &field("kernel")),
            initrd_at: d
                .initrd
                .as_ref()
                .map(|i| check.origin(i.span(), &field("initrd"))),
            memory_at: check.origin(d.memory.span(), &field("memory")),
        });
    }

    if let Some(dom0) = domains.iter().find(|d| d.initial) {
        let mem = dom0.memory_bytes;
        let mem_arg = if mem.is_multiple_of(1 << 20) {
            format!("{}M", mem >> 20)
        } else {
            format!("{}K", mem >> 10)
        };
        bootargs = format!(
            "{bootargs} dom0_mem={mem_arg} dom0_max_vcpus={}",
            dom0.vcpus
        );
    }

    Ok(Config {
        file: file.to_string(),
        domains,
        hypervisor_bootargs: bootargs,
        cpus,
        memory_mib,
        gic,
        cpu,
    })
}

fn check_sched(
    check: &Checker<'_>,
    sched: &Spanned<RawSched>,
    field: &str,
) -> Result<Sched, ConfigError> {
    let s = sched.get_ref();
    let micros = |value: &Option<Spanned<i64>>, name: &str| -> Result<Option<u32>, ConfigError> {
        value
            .as_ref()
            .map(|v| match u32::try_from(*v.get_ref()) {
                Ok(n @ 100..=10_000_000) => Ok(n),
                _ => Err(check.error(
                    v.span(),
                    &format!("{field}.{name}"),
                    format!("{}: must be 100 to 10000000 microseconds", v.get_ref()),
                )),
            })
            .transpose()
    };
    let period = micros(&s.period_us, "period_us")?;
    let budget = micros(&s.budget_us, "budget_us")?;
    match s.policy.get_ref().as_str() {
        "round-robin" => {
            if period.is_some() || budget.is_some() {
                return Err(check.error(
                    sched.span(),
                    field,
                    "round-robin takes no period_us or budget_us",
                ));
            }
            Ok(Sched::RoundRobin)
        }
        "edf" => {
            let (Some(period_us), Some(budget_us)) = (period, budget) else {
                return Err(check.error(sched.span(), field, "edf needs period_us and budget_us"));
            };
            if budget_us > period_us {
                return Err(check.error(
                    s.budget_us.as_ref().map_or(sched.span(), |b| b.span()),
                    &format!("{field}.budget_us"),
                    format!("{budget_us} is more than period_us ({period_us})"),
                ));
            }
            Ok(Sched::Edf {
                period_us,
                budget_us,
            })
        }
        other => Err(check.error(
            s.policy.span(),
            &format!("{field}.policy"),
            format!("`{other}`: must be \"round-robin\" or \"edf\""),
        )),
    }
}

impl Config {
    /// Reads and checks `path`; relative paths in it are resolved against `base`.
    pub fn load(path: &Path, base: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        parse(&text, &path.display().to_string(), base).map_err(|e| e.to_string())
    }

    fn error(&self, origin: &Origin, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: origin.line,
            field: origin.field.clone(),
            message: message.into(),
        }
    }

    /// Every kernel and initrd must be a readable, non-empty file.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        for d in &self.domains {
            let files = std::iter::once((&d.kernel, &d.kernel_at))
                .chain(d.initrd.as_ref().zip(d.initrd_at.as_ref()));
            for (path, origin) in files {
                match std::fs::metadata(path) {
                    Ok(m) if m.is_file() && m.len() > 0 => {}
                    Ok(_) => {
                        return Err(self.error(
                            origin,
                            format!("{} is not a non-empty file", path.display()),
                        ))
                    }
                    Err(e) => return Err(self.error(origin, format!("{}: {e}", path.display()))),
                }
            }
        }
        Ok(())
    }

    /// The scenario this configuration describes (no file is read).
    pub fn scenario(&self, platform: Platform) -> Scenario {
        let mut s = Scenario::new(platform, self.gic, &self.hypervisor_bootargs);
        s.smp = self.cpus;
        s.mem_mib = self.memory_mib;
        s.cpu = self.cpu.clone();
        for d in &self.domains {
            let sched_properties = match d.sched {
                Sched::RoundRobin => vec!["mica,sched-policy = \"round-robin\";".to_string()],
                Sched::Edf {
                    period_us,
                    budget_us,
                } => vec![
                    "mica,sched-policy = \"edf\";".to_string(),
                    format!("mica,sched-period-us = <{period_us}>;"),
                    format!("mica,sched-budget-us = <{budget_us}>;"),
                ],
            };
            let explicit = !matches!(d.sched, Sched::RoundRobin);
            if d.initial && explicit {
                s.chosen_properties.extend(
                    sched_properties
                        .iter()
                        .map(|p| p.replacen("mica,", "mica,dom0-", 1)),
                );
            }
            for (path, _) in &d.passthrough {
                s.dts_appendix
                    .push_str(&format!("\n&{{{path}}} {{\n\txen,passthrough;\n}};\n"));
            }
            s.domains.push(Domain {
                name: d.name.clone(),
                kernel: d.kernel.clone(),
                initrd: d.initrd.clone(),
                bootargs: d.cmdline.clone(),
                memory_kib: d.memory_bytes >> 10,
                cpus: d.vcpus,
                vpl011: d.vpl011 && !d.initial,
                initial: d.initial,
                extra_properties: if explicit && !d.initial {
                    sched_properties
                } else {
                    Vec::new()
                },
                device_tree: None,
            });
        }
        s
    }

    /// Domains' memory must fit in the RAM the boot area leaves: RAM base up to the end of
    /// the last boot module holds the hypervisor, the device tree and the modules.
    pub fn check_memory(
        &self,
        layout: &[DomainModules],
        platform: &Platform,
    ) -> Result<(), ConfigError> {
        let boot_end = layout
            .iter()
            .flat_map(|m| m.all())
            .map(|p| p.addr + p.size)
            .max()
            .unwrap_or(platform.module_base);
        let ram = self.memory_mib << 20;
        let free = (platform.ram_base + ram).saturating_sub(boot_end);
        let mut used = 0u64;
        for d in &self.domains {
            used += d.memory_bytes;
            if used > free {
                return Err(self.error(
                    &d.memory_at,
                    format!(
                        "{} would overlap the boot area or run past RAM: the domains up to `{}` \
                         need {} but only {} of the machine's {} MiB are free above the boot \
                         modules (which end at {boot_end:#x})",
                        show_size(d.memory_bytes),
                        d.name,
                        show_size(used),
                        show_size(free),
                        self.memory_mib
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every passthrough path must name a node of the board's device tree `board_dtb`.
    pub fn check_passthrough(&self, board_dtb: &[u8]) -> Result<(), ConfigError> {
        let paths: Vec<&(String, Origin)> =
            self.domains.iter().flat_map(|d| &d.passthrough).collect();
        if paths.is_empty() {
            return Ok(());
        }
        let tree = fdt::Fdt::new(board_dtb).map_err(|e| ConfigError {
            file: self.file.clone(),
            line: 0,
            field: String::new(),
            message: format!("the board device tree cannot be read: {e:?}"),
        })?;
        for (path, origin) in paths {
            if tree.find_node(path).is_none() {
                return Err(self.error(
                    origin,
                    format!("`{path}` is not a node of the board's device tree"),
                ));
            }
            if path.matches('/').count() != 1 {
                return Err(self.error(
                    origin,
                    format!("`{path}`: only devices directly under / can be passed through"),
                ));
            }
        }
        Ok(())
    }

    /// Writes each domU's passthrough partial device tree (Xen's binding: a `/passthrough`
    /// node with copies of the devices, `xen,path` and `xen,reg` mapping guest = host
    /// addresses) into `work_dir` and attaches it to the scenario's domain.
    pub fn write_partial_trees(
        &self,
        board_dtb: &[u8],
        scenario: &mut Scenario,
        work_dir: &Path,
    ) -> Result<(), String> {
        let tree = fdt::Fdt::new(board_dtb).map_err(|e| format!("board device tree: {e:?}"))?;
        for (d, domain) in self.domains.iter().zip(scenario.domains.iter_mut()) {
            if d.passthrough.is_empty() {
                continue;
            }
            let mut dts = String::from(
                "/dts-v1/;\n\n/ {\n\t#address-cells = <0x2>;\n\t#size-cells = <0x2>;\n\n\tpassthrough {\n\t\tcompatible = \"simple-bus\";\n\t\tranges;\n\t\t#address-cells = <0x2>;\n\t\t#size-cells = <0x2>;\n",
            );
            for (path, _) in &d.passthrough {
                let node = tree
                    .find_node(path)
                    .ok_or_else(|| format!("`{path}` is not in the board device tree"))?;
                let name = path.trim_start_matches('/');
                dts.push_str(&format!("\n\t\t{name} {{\n"));
                for prop in node.properties() {
                    match prop.name {
                        "compatible" => {
                            let names: Vec<String> = prop
                                .value
                                .split(|&b| b == 0)
                                .filter(|s| !s.is_empty())
                                .map(|s| format!("\"{}\"", String::from_utf8_lossy(s)))
                                .collect();
                            dts.push_str(&format!("\t\t\tcompatible = {};\n", names.join(", ")));
                        }
                        "reg" => {
                            let words = be_words(prop.value);
                            dts.push_str(&format!("\t\t\treg = <{}>;\n", words.join(" ")));
                            // xen,reg: <host address, size, guest address> per region (2+2+2 cells).
                            let mut xen_reg = Vec::new();
                            for region in words.chunks(4) {
                                if let [a0, a1, s0, s1] = region {
                                    xen_reg.extend([a0, a1, s0, s1, a0, a1].map(String::clone));
                                }
                            }
                            dts.push_str(&format!("\t\t\txen,reg = <{}>;\n", xen_reg.join(" ")));
                        }
                        "interrupts" => {
                            dts.push_str(&format!(
                                "\t\t\tinterrupts = <{}>;\n\t\t\tinterrupt-parent = <{GUEST_GIC_PHANDLE:#x}>;\n",
                                be_words(prop.value).join(" ")
                            ));
                        }
                        _ => {}
                    }
                }
                dts.push_str(&format!(
                    "\t\t\txen,path = \"{path}\";\n\t\t\txen,force-assign-without-iommu;\n\t\t}};\n"
                ));
            }
            dts.push_str("\t};\n};\n");
            let source = work_dir.join(format!("{}-passthrough.dts", d.name));
            let blob = work_dir.join(format!("{}-passthrough.dtb", d.name));
            crate::util::write_file(&source, dts.as_bytes())?;
            crate::util::run(
                std::process::Command::new("dtc")
                    .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
                    .arg(&blob)
                    .arg(&source),
            )?;
            domain.device_tree = Some(blob);
        }
        Ok(())
    }

    /// Whether the configuration has an initial domain (whose power-off ends the machine).
    pub fn has_initial(&self) -> bool {
        self.domains.iter().any(|d| d.initial)
    }
}

/// Reads `path` and checks it completely (syntax, values, files, board device tree, memory);
/// returns the configuration and the scenario to boot on `platform`. Guest files under
/// `target/guests/` are fetched first if the file names them. Work files go to `work_dir`.
/// `firmware` is what QEMU runs first (U-Boot for `--uboot` and `image`): it shapes the
/// board tree that passthrough paths are checked against.
pub fn load_scenario(
    path: &Path,
    platform: Platform,
    hypervisor_size: u64,
    work_dir: &Path,
    firmware: Option<PathBuf>,
) -> Result<(Config, Scenario), String> {
    let config = Config::load(path, &crate::util::repo_root())?;
    let guests = crate::host::guests_dir();
    let wants_guests = config
        .domains
        .iter()
        .flat_map(|d| std::iter::once(&d.kernel).chain(&d.initrd))
        .any(|p| p.starts_with(&guests) && !p.exists());
    if wants_guests {
        crate::host::ensure_host_tools()?;
        crate::host::ensure_linux_guest()?;
    }
    config.check_files().map_err(|e| e.to_string())?;
    let mut scenario = config.scenario(platform);
    scenario.firmware = firmware;
    if config.domains.iter().any(|d| !d.passthrough.is_empty()) {
        let board = scenario.board_dtb(work_dir)?;
        config
            .check_passthrough(&board)
            .map_err(|e| e.to_string())?;
        config.write_partial_trees(&board, &mut scenario, work_dir)?;
    }
    let layout = scenario.layout(hypervisor_size, crate::util::file_size)?;
    config
        .check_memory(&layout, &platform)
        .map_err(|e| e.to_string())?;
    Ok((config, scenario))
}

fn be_words(bytes: &[u8]) -> Vec<String> {
    bytes
        .chunks_exact(4)
        .map(|w| format!("{:#x}", u32::from_be_bytes([w[0], w[1], w[2], w[3]])))
        .collect()
}

#[cfg(test)]
mod tests;
