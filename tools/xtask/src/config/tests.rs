use super::*;
use crate::images::PLATFORMS;
use crate::scenario::Placement;

const MINIMAL: &str = r#"[[domain]]
name = "dom0"            # the first domain is the initial (hardware) domain
kernel = "target/guests/Image"
initrd = "target/guests/initrd.gz"
cmdline = "console=ttyAMA0"
memory = "512M"
vcpus = 2
"#;

fn base() -> PathBuf {
    PathBuf::from("/repo")
}

fn parse_ok(text: &str) -> Config {
    parse(text, "t.toml", &base()).unwrap()
}

fn parse_err(text: &str) -> ConfigError {
    parse(text, "t.toml", &base()).unwrap_err()
}

/// The error is at `line`, names `field`, and its message contains `words`.
fn assert_error(e: &ConfigError, line: usize, field: &str, words: &str) {
    let shown = e.to_string();
    assert_eq!(e.line, line, "{shown}");
    assert!(shown.contains(field), "`{shown}` does not name `{field}`");
    assert!(shown.contains(words), "`{shown}` does not say `{words}`");
    assert!(
        shown.starts_with(&format!("t.toml, line {line}: ")),
        "{shown}"
    );
}

fn domu(name: &str, memory: &str, vcpus: u32) -> String {
    format!(
        "\n[[domain]]\nname = \"{name}\"\nkernel = \"k\"\nmemory = \"{memory}\"\nvcpus = {vcpus}\n"
    )
}

#[test]
fn minimal_file_gives_an_initial_domain() {
    let c = parse_ok(MINIMAL);
    let d = &c.domains[0];
    assert!(d.initial && c.has_initial());
    assert_eq!(d.kernel, PathBuf::from("/repo/target/guests/Image"));
    assert_eq!(
        d.initrd,
        Some(PathBuf::from("/repo/target/guests/initrd.gz"))
    );
    assert_eq!((d.memory_bytes, d.vcpus, d.vpl011), (512 << 20, 2, true));
    assert_eq!(
        c.hypervisor_bootargs,
        "console=dtuart dtuart=/pl011@9000000 dom0_mem=512M dom0_max_vcpus=2"
    );
    let s = c.scenario(PLATFORMS[0]);
    s.validate().unwrap();
    assert_eq!((s.smp, s.mem_mib, s.gic), (2, 2048, 3));
    assert!(s.domains[0].initial);
    assert_eq!(s.domains[0].bootargs, "console=ttyAMA0");
}

#[test]
fn sizes_parse_with_binary_suffixes() {
    assert_eq!(parse_size("512M"), Some(512 << 20));
    assert_eq!(parse_size("1G"), Some(1 << 30));
    assert_eq!(parse_size("1 GiB"), Some(1 << 30));
    assert_eq!(parse_size("64k"), Some(64 << 10));
    assert_eq!(parse_size("4096"), Some(4096));
    for bad in ["", "M", "12Q", "1.5G", "-1M", "99999999999T", "0x1000"] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
    let c = parse_ok(&MINIMAL.replace("\"512M\"", "536870912"));
    assert_eq!(c.domains[0].memory_bytes, 512 << 20);
}

#[test]
fn unknown_field_names_field_and_line() {
    let e = parse_err(&MINIMAL.replace("vcpus = 2", "vcpus = 2\ncolour = \"blue\""));
    assert_error(&e, 8, "colour", "unknown field");
    let e = parse_err(&format!("[hypervisor]\nbootarg = \"x\"\n{MINIMAL}"));
    assert_error(&e, 2, "bootarg", "unknown field");
    let e = parse_err(&format!("[machine]\ncpus = 2\nram = \"1G\"\n{MINIMAL}"));
    assert_error(&e, 3, "ram", "unknown field");
}

#[test]
fn missing_and_mistyped_fields() {
    let e = parse_err(&MINIMAL.replace("kernel = \"target/guests/Image\"\n", ""));
    assert!(e.to_string().contains("missing field `kernel`"), "{e}");
    assert_eq!(e.line, 1);
    let e = parse_err(&MINIMAL.replace("vcpus = 2", "vcpus = \"two\""));
    assert_error(&e, 7, "vcpus", "invalid type");
    let e = parse_err("[hypervisor]\n");
    assert_error(&e, 1, "domain", "no [[domain]]");
    let e = parse_err("[[domain]\n");
    assert_eq!(e.line, 1, "{e}");
}

#[test]
fn bad_size_names_field_and_line() {
    let e = parse_err(&MINIMAL.replace("\"512M\"", "\"512Q\""));
    assert_error(&e, 6, "domain[0].memory", "\"512Q\" is not a size");
    let e = parse_err(&MINIMAL.replace("\"512M\"", "\"0\""));
    assert_error(&e, 6, "domain[0].memory", "non-zero multiple of 4 KiB");
    let e = parse_err(&MINIMAL.replace("\"512M\"", "1000"));
    assert_error(&e, 6, "domain[0].memory", "multiple of 4 KiB");
    let e = parse_err(&MINIMAL.replace("\"512M\"", "true"));
    assert_error(&e, 6, "domain[0].memory", "a boolean is not a size");
    let e = parse_err(&format!("[machine]\nmemory = \"lots\"\n{MINIMAL}"));
    assert_error(&e, 2, "machine.memory", "not a size");
}

#[test]
fn zero_and_too_many_vcpus() {
    let e = parse_err(&MINIMAL.replace("vcpus = 2", "vcpus = 0"));
    assert_error(&e, 7, "domain[0].vcpus", "1 to 2");
    // The initial domain gets at most one vCPU per host CPU.
    let e = parse_err(&MINIMAL.replace("vcpus = 2", "vcpus = 3"));
    assert_error(&e, 7, "domain[0].vcpus", "one per host CPU");
    // A domU: 8 per host CPU (2 CPUs: 16).
    parse_ok(&format!("{MINIMAL}{}", domu("a", "64M", 16)));
    let e = parse_err(&format!("{MINIMAL}{}", domu("a", "64M", 17)));
    assert_error(&e, 13, "domain[1].vcpus", "1 to 16");
    // ... and never more than 128.
    let big = format!("[machine]\ncpus = 64\n{MINIMAL}{}", domu("a", "64M", 129));
    let e = parse_err(&big);
    assert_error(&e, 15, "domain[1].vcpus", "at most 128");
    let e = parse_err(&MINIMAL.replace("vcpus = 2", "vcpus = -1"));
    assert_error(&e, 7, "domain[0].vcpus", "-1");
    let e = parse_err(&format!("[machine]\ngic = 2\ncpus = 9\n{MINIMAL}"));
    assert_error(&e, 3, "machine.cpus", "1 to 8 (with a GICv2)");
}

#[test]
fn duplicate_names_point_at_both_lines() {
    let text = format!(
        "{MINIMAL}{}{}",
        domu("domU1", "64M", 1),
        domu("domU1", "64M", 1)
    );
    let e = parse_err(&text);
    assert_error(
        &e,
        16,
        "domain[2].name",
        "`domU1` is already the name of the domain at line 10",
    );
    let e = parse_err(&format!("{MINIMAL}{}", domu("dom 0", "64M", 1)));
    assert_error(&e, 10, "domain[1].name", "letters, digits");
}

#[test]
fn memory_larger_than_ram_or_overlapping_the_boot_area() {
    let e = parse_err(&MINIMAL.replace("\"512M\"", "\"3G\""));
    assert_error(
        &e,
        6,
        "domain[0].memory",
        "more than the machine's RAM (2048 MiB",
    );

    // Each fits alone, together they run into the boot modules.
    let text = format!("{MINIMAL}{}{}", domu("a", "1G", 1), domu("b", "512M", 1));
    let c = parse_ok(&text);
    let s = c.scenario(PLATFORMS[0]);
    let layout = s
        .layout(1 << 20, |p| {
            Ok(if p.ends_with("Image") || p.ends_with("k") {
                27 << 20
            } else {
                1 << 20
            })
        })
        .unwrap();
    let e = c.check_memory(&layout, &PLATFORMS[0]).unwrap_err();
    assert_eq!(e.line, 18, "{e}");
    assert_eq!(e.field, "domain[2].memory");
    assert!(e.to_string().contains("would overlap the boot area"), "{e}");
    assert!(e.to_string().contains("need 2 GiB"), "{e}");
    // Without the last domain it fits.
    let fits = parse_ok(&format!("{MINIMAL}{}", domu("a", "1G", 1)));
    let layout = fits
        .scenario(PLATFORMS[0])
        .layout(1 << 20, |_| Ok(27 << 20))
        .unwrap();
    fits.check_memory(&layout, &PLATFORMS[0]).unwrap();
    // A hand-made layout whose modules end near the top of RAM leaves nothing.
    let top = vec![DomainModules {
        kernel: Placement {
            path: "k".into(),
            addr: 0xb000_0000,
            size: 1 << 20,
        },
        initrd: None,
        device_tree: None,
    }];
    let e = fits.check_memory(&top, &PLATFORMS[0]).unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (6, "domain[0].memory"));
}

#[test]
fn missing_file_names_field_and_line() {
    let dir = std::env::temp_dir().join(format!("mica-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Image"), b"kernel").unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    let text =
        "[[domain]]\nname = \"d\"\nkernel = \"Image\"\ninitrd = \"nope.gz\"\nmemory = \"64M\"\n";
    let c = parse(text, "t.toml", &dir).unwrap();
    let e = c.check_files().unwrap_err();
    assert_error(&e, 4, "domain[0].initrd", "nope.gz");
    let c = parse(&text.replace("nope.gz", "empty"), "t.toml", &dir).unwrap();
    assert_error(
        &c.check_files().unwrap_err(),
        4,
        "domain[0].initrd",
        "not a non-empty file",
    );
    let c = parse(&text.replace("Image", "gone"), "t.toml", &dir).unwrap();
    assert_error(&c.check_files().unwrap_err(), 3, "domain[0].kernel", "gone");
    // Absolute paths are kept as they are.
    let abs = text
        .replace("\"Image\"", &format!("\"{}\"", dir.join("Image").display()))
        .replace("initrd = \"nope.gz\"\n", "");
    parse(&abs, "t.toml", Path::new("/elsewhere"))
        .unwrap()
        .check_files()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hypervisor_table_and_no_initial_domain() {
    let text = format!(
        "[hypervisor]\nbootargs = \"console=dtuart loglvl=all\"\nconsole_timestamps = true\n{MINIMAL}"
    );
    assert_eq!(
        parse_ok(&text).hypervisor_bootargs,
        "console=dtuart loglvl=all console_timestamps=boot dom0_mem=512M dom0_max_vcpus=2"
    );
    let e = parse_err(&format!(
        "[hypervisor]\nbootargs = \"dom0_mem=1G\"\n{MINIMAL}"
    ));
    assert_error(
        &e,
        2,
        "hypervisor.bootargs",
        "set the initial domain's `memory`",
    );
    let e = parse_err(&format!("[hypervisor]\nbootargs = \"a\\\"b\"\n{MINIMAL}"));
    assert_error(&e, 2, "hypervisor.bootargs", "quotes");

    let no_dom0 = format!(
        "[hypervisor]\ninitial_domain = false\n{}",
        domu("only", "64M", 4)
    );
    let c = parse_ok(&no_dom0);
    assert!(!c.has_initial());
    assert!(!c.hypervisor_bootargs.contains("dom0_mem"));
    let s = c.scenario(PLATFORMS[0]);
    assert!(!s.domains[0].initial && s.domains[0].vpl011);
}

#[test]
fn console_and_scheduling() {
    let e = parse_err(&MINIMAL.replace("vcpus = 2", "vcpus = 2\nconsole = \"none\""));
    assert_error(&e, 8, "domain[0].console", "always has the console");
    let e = parse_err(&MINIMAL.replace("vcpus = 2", "vcpus = 2\nconsole = \"hvc\""));
    assert_error(&e, 8, "domain[0].console", "\"vpl011\" or \"none\"");

    let edf = "sched = { policy = \"edf\", period_us = 10000, budget_us = 2000 }\n";
    let text = format!("{MINIMAL}{}console = \"none\"\n{edf}", domu("rt", "64M", 1));
    let c = parse_ok(&text);
    assert_eq!(
        c.domains[1].sched,
        Sched::Edf {
            period_us: 10000,
            budget_us: 2000
        }
    );
    let s = c.scenario(PLATFORMS[0]);
    assert!(!s.domains[1].vpl011);
    assert_eq!(
        s.domains[1].extra_properties,
        [
            "mica,sched-policy = \"edf\";",
            "mica,sched-period-us = <10000>;",
            "mica,sched-budget-us = <2000>;"
        ]
    );
    // On the initial domain the properties go to /chosen with a dom0 prefix.
    let c = parse_ok(&MINIMAL.replace("vcpus = 2", &format!("vcpus = 2\n{edf}")));
    let s = c.scenario(PLATFORMS[0]);
    assert!(s
        .chosen_properties
        .contains(&"mica,dom0-sched-period-us = <10000>;".to_string()));

    let bad = |sched: &str| parse_err(&format!("{MINIMAL}{}{sched}\n", domu("rt", "64M", 1)));
    assert_error(
        &bad("sched = { policy = \"edf\", period_us = 1000, budget_us = 2000 }"),
        14,
        "domain[1].sched.budget_us",
        "more than period_us",
    );
    assert_error(
        &bad("sched = { policy = \"edf\", period_us = 1000 }"),
        14,
        "domain[1].sched",
        "needs period_us and budget_us",
    );
    assert_error(
        &bad("sched = { policy = \"lottery\" }"),
        14,
        "domain[1].sched.policy",
        "\"round-robin\" or \"edf\"",
    );
    assert_error(
        &bad("sched = { policy = \"edf\", period_us = 0, budget_us = 0 }"),
        14,
        "domain[1].sched.period_us",
        "100 to 10000000",
    );
    let e = bad("sched = { policy = \"edf\", period = 5 }");
    assert_eq!(e.line, 14, "{e}");
    assert!(e.to_string().contains("unknown field `period`"), "{e}");
}

fn board() -> Vec<u8> {
    let mut w = vm_fdt::FdtWriter::new().unwrap();
    let root = w.begin_node("").unwrap();
    w.property_u32("#address-cells", 2).unwrap();
    w.property_u32("#size-cells", 2).unwrap();
    let gpio = w.begin_node("pl061@9030000").unwrap();
    w.property_string_list(
        "compatible",
        vec!["arm,pl061".into(), "arm,primecell".into()],
    )
    .unwrap();
    w.property_array_u32("reg", &[0, 0x0903_0000, 0, 0x1000])
        .unwrap();
    w.property_array_u32("interrupts", &[0, 7, 4]).unwrap();
    let keys = w.begin_node("gpio-keys").unwrap();
    w.end_node(keys).unwrap();
    w.end_node(gpio).unwrap();
    w.end_node(root).unwrap();
    w.finish().unwrap()
}

#[test]
fn passthrough_paths_must_exist_in_the_board_tree() {
    let with = |paths: &str| format!("{MINIMAL}{}passthrough = [{paths}]\n", domu("io", "64M", 1));
    let c = parse_ok(&with("\"/pl061@9030000\""));
    c.check_passthrough(&board()).unwrap();
    let s = c.scenario(PLATFORMS[0]);
    assert!(s
        .dts_appendix
        .contains("&{/pl061@9030000} {\n\txen,passthrough;\n};"));

    let c = parse_ok(&with("\"/pl061@9030000\", \"/uart@1\""));
    let e = c.check_passthrough(&board()).unwrap_err();
    assert_error(
        &e,
        14,
        "domain[1].passthrough[1]",
        "not a node of the board",
    );
    let c = parse_ok(&with("\"/pl061@9030000/gpio-keys\""));
    assert_error(
        &c.check_passthrough(&board()).unwrap_err(),
        14,
        "domain[1].passthrough[0]",
        "directly under /",
    );
    assert_error(
        &parse_err(&with("\"pl061\"")),
        14,
        "domain[1].passthrough[0]",
        "full device-tree path",
    );
    assert_error(
        &parse_err(&with("\"/a\", \"/a\"")),
        14,
        "domain[1].passthrough[1]",
        "twice",
    );
    let e = parse_err(&MINIMAL.replace("vcpus = 2", "vcpus = 2\npassthrough = [\"/a\"]"));
    assert_error(&e, 8, "domain[0].passthrough[0]", "already owns");
}

#[test]
fn shipped_examples_parse_and_match_the_default_scenario() {
    let root = crate::util::repo_root();
    let minimal = Config::load(&root.join("examples/minimal.toml"), &root).unwrap();
    assert_eq!(minimal.domains.len(), 1);
    assert!(minimal.domains[0].cmdline.contains("who=dom0"));
    assert_eq!(minimal.domains[0].vcpus, 2);

    let three = Config::load(&root.join("examples/three-domains.toml"), &root).unwrap();
    let from_file = three.scenario(PLATFORMS[0]);
    let files = crate::host::GuestFiles {
        kernel: root.join("target/guests/Image"),
        initrd: root.join("target/guests/initrd.gz"),
    };
    let default = crate::suites::linux_dom0less(
        crate::suites::Hypervisor::Mica,
        PLATFORMS[0],
        3,
        &files,
        crate::suites::Dom0Mode::Shell,
        "",
    );
    assert_eq!(
        from_file.hypervisor_bootargs,
        format!("{} dom0_max_vcpus=2", default.hypervisor_bootargs)
    );
    assert_eq!(
        (from_file.smp, from_file.mem_mib),
        (default.smp, default.mem_mib)
    );
    for (a, b) in from_file.domains.iter().zip(&default.domains) {
        assert_eq!(
            (
                &a.name,
                &a.kernel,
                &a.initrd,
                a.memory_kib,
                a.cpus,
                a.vpl011,
                a.initial
            ),
            (
                &b.name,
                &b.kernel,
                &b.initrd,
                b.memory_kib,
                b.cpus,
                b.vpl011,
                b.initial
            )
        );
        assert_eq!(a.bootargs, b.bootargs);
    }
    assert_eq!(from_file.domains.len(), 3);
}
