//! The U-Boot boot flow: an image directory (Mica, the device tree, the boot modules and a
//! U-Boot script that loads each file at a computed address and `booti`s Mica), a disk image
//! holding it (MBR + one FAT partition, which U-Boot's distro boot scans for `boot.scr`), and
//! the QEMU command line that boots Debian's U-Boot for QEMU (`qemu_arm64`) as `-bios`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::scenario::{DomainModules, Scenario};
use crate::util::{file_size, on_path, output, run, say, write_file};

const MIB: u64 = 1 << 20;
const ALIGN: u64 = 2 * MIB;
/// Distro boot loads `boot.scr` this far into RAM (qemu_arm64's `scriptaddr` is RAM + 2 MiB);
/// nothing else may go there.
const SCRIPT_OFFSET: u64 = 2 * MIB;
const SCRIPT_MAX: u64 = 2 * MIB;
/// Mica is loaded this far into RAM (qemu_arm64's `kernel_addr_r`), 2 MiB aligned as
/// `booti` wants; on every board, RAM base + 4 MiB.
const HYPERVISOR_OFFSET: u64 = 4 * MIB;
/// Room U-Boot may use after the device tree when it applies its fixups in place.
const DTB_SLACK: u64 = 64 << 10;
/// The top of RAM belongs to the relocated U-Boot (code, heap, stack): keep modules below.
const UBOOT_RESERVE: u64 = 64 * MIB;
/// U-Boot for QEMU's arm64 `virt` inside Debian's u-boot-qemu package.
const UBOOT_IN_PACKAGE: &str = "usr/lib/u-boot/qemu_arm64/u-boot.bin";
/// Sectors before the FAT partition (1 MiB, the usual alignment).
const PARTITION_START_SECTOR: u32 = 2048;

/// One file the script loads.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    /// Name inside the image directory.
    pub name: String,
    pub addr: u64,
    pub size: u64,
}

/// Where everything goes in RAM when U-Boot boots the scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub hypervisor: Load,
    pub dtb: Load,
    pub modules: Vec<Load>,
}

/// Computes the load addresses and checks, pairwise, that nothing overlaps and everything is
/// in RAM below U-Boot. `names` maps a module's source path to its name in the directory.
pub fn plan(
    scenario: &Scenario,
    layout: &[DomainModules],
    hypervisor_size: u64,
    dtb_size: u64,
    names: &BTreeMap<PathBuf, String>,
) -> Result<Plan, String> {
    let platform = &scenario.platform;
    let ram_end = platform.ram_base + scenario.mem_mib * MIB;
    let hypervisor_addr = platform.ram_base + HYPERVISOR_OFFSET;
    let hypervisor = Load {
        name: "mica.bin".into(),
        addr: hypervisor_addr,
        size: hypervisor_size,
    };
    let dtb_addr = (hypervisor_addr + hypervisor_size).next_multiple_of(ALIGN);
    let dtb = Load {
        name: "mica.dtb".into(),
        addr: dtb_addr,
        size: dtb_size,
    };
    let mut modules = Vec::new();
    for placement in layout.iter().flat_map(|m| m.all()) {
        let name = names
            .get(&placement.path)
            .ok_or_else(|| format!("no name for {}", placement.path.display()))?;
        modules.push(Load {
            name: name.clone(),
            addr: placement.addr,
            size: placement.size,
        });
    }
    let plan = Plan {
        hypervisor,
        dtb,
        modules,
    };
    // Computed above; now asserted, with U-Boot's own regions in the picture.
    let mut regions: Vec<(String, u64, u64)> = vec![
        (
            "boot.scr".into(),
            platform.ram_base + SCRIPT_OFFSET,
            SCRIPT_MAX,
        ),
        (
            "U-Boot".into(),
            ram_end.saturating_sub(UBOOT_RESERVE),
            UBOOT_RESERVE,
        ),
        (
            plan.hypervisor.name.clone(),
            plan.hypervisor.addr,
            plan.hypervisor.size,
        ),
        (
            plan.dtb.name.clone(),
            plan.dtb.addr,
            plan.dtb.size + DTB_SLACK,
        ),
    ];
    regions.extend(
        plan.modules
            .iter()
            .map(|m| (m.name.clone(), m.addr, m.size)),
    );
    check_regions(&regions, platform.ram_base, ram_end)?;
    Ok(plan)
}

/// Every region inside RAM, no two overlapping.
fn check_regions(
    regions: &[(String, u64, u64)],
    ram_base: u64,
    ram_end: u64,
) -> Result<(), String> {
    for (name, addr, size) in regions {
        let end = addr
            .checked_add(*size)
            .ok_or_else(|| format!("{name}: size overflows"))?;
        if *addr < ram_base || end > ram_end {
            return Err(format!(
                "{name} ({addr:#x}..{end:#x}) is outside RAM ({ram_base:#x}..{ram_end:#x})"
            ));
        }
    }
    for (i, (a, a_addr, a_size)) in regions.iter().enumerate() {
        for (b, b_addr, b_size) in &regions[i + 1..] {
            if a_addr < &(b_addr + b_size) && b_addr < &(a_addr + a_size) {
                return Err(format!(
                    "{a} ({a_addr:#x}, {a_size} bytes) overlaps {b} ({b_addr:#x}, {b_size} bytes)"
                ));
            }
        }
    }
    Ok(())
}

/// Names for the modules inside the image directory: the file's own name, prefixed by a
/// number when two different files share one. A file used twice is stored once.
pub fn module_names(layout: &[DomainModules]) -> BTreeMap<PathBuf, String> {
    let mut names: BTreeMap<PathBuf, String> = BTreeMap::new();
    for placement in layout.iter().flat_map(|m| m.all()) {
        if names.contains_key(&placement.path) {
            continue;
        }
        let base = placement
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "module".into());
        let mut name = base.clone();
        let mut n = 1;
        while names.values().any(|v| *v == name)
            || ["mica.bin", "mica.dtb", "boot.scr", "boot.cmd"].contains(&name.as_str())
        {
            n += 1;
            name = format!("{n}-{base}");
        }
        names.insert(placement.path.clone(), name);
    }
    names
}

/// The U-Boot script. Loads from the device distro boot found it on (`devtype`, `devnum`,
/// `distro_bootpart`), or virtio 0:1 when run by hand.
pub fn boot_script(plan: &Plan) -> String {
    let mut s = String::from(
        "# Generated by `cargo xtask image`: loads Mica, its device tree and the boot modules,\n\
         # then starts Mica with booti. Addresses were computed and checked for overlaps.\n\
         if test -z \"${devtype}\"; then setenv devtype virtio; setenv devnum 0; setenv distro_bootpart 1; fi\n\
         # Keep the device tree where it is loaded, and let U-Boot add no bootargs of its own.\n\
         setenv fdt_high 0xffffffffffffffff\n\
         setenv bootargs\n\
         echo Mica: loading from ${devtype} ${devnum}:${distro_bootpart}\n",
    );
    for load in std::iter::once(&plan.hypervisor)
        .chain(std::iter::once(&plan.dtb))
        .chain(&plan.modules)
    {
        s.push_str(&format!(
            "load ${{devtype}} ${{devnum}}:${{distro_bootpart}} {:#x} {}\n",
            load.addr, load.name
        ));
    }
    s.push_str(&format!(
        "echo Mica: starting\nbooti {:#x} - {:#x}\n",
        plan.hypervisor.addr, plan.dtb.addr
    ));
    s
}

/// What `write_image_dir` produced.
pub struct ImageDir {
    pub dir: PathBuf,
    /// `boot.scr` when mkimage was available.
    pub script: Option<PathBuf>,
    pub plan: Plan,
}

/// Writes the image directory `out`: mica.bin, mica.dtb, the modules, boot.cmd and (with
/// mkimage) boot.scr.
/// Work files (QEMU's board tree, the generated source) go to `work`.
/// The device tree is QEMU's for the machine U-Boot boots (`with_uboot`).
pub fn write_image_dir(
    scenario: &Scenario,
    hypervisor: &Path,
    out: &Path,
    work: &Path,
) -> Result<ImageDir, String> {
    let scenario = &with_uboot(scenario)?;
    let hypervisor_size = file_size(hypervisor)?;
    let layout = scenario.layout(hypervisor_size, file_size)?;
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let dtb = scenario.write_dtb(&layout, work)?;
    let names = module_names(&layout);
    let plan = plan(scenario, &layout, hypervisor_size, file_size(&dtb)?, &names)?;
    say(format!(
        "writing the boot directory {} ({} files)",
        out.display(),
        names.len() + 4
    ));
    copy(hypervisor, &out.join("mica.bin"))?;
    copy(&dtb, &out.join("mica.dtb"))?;
    for (source, name) in &names {
        copy(source, &out.join(name))?;
    }
    let cmd = out.join("boot.cmd");
    write_file(&cmd, boot_script(&plan).as_bytes())?;
    let script = if on_path("mkimage") {
        let scr = out.join("boot.scr");
        output(
            Command::new("mkimage")
                .args(["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none"])
                .args(["-n", "Mica boot script", "-d"])
                .arg(&cmd)
                .arg(&scr),
        )?;
        Some(scr)
    } else {
        say(
            "mkimage not found (Debian package u-boot-tools): wrote only boot.cmd; \
             make boot.scr with `mkimage -A arm64 -T script -C none -d boot.cmd boot.scr`, \
             or type boot.cmd's lines at the U-Boot prompt",
        );
        None
    };
    Ok(ImageDir {
        dir: out.to_path_buf(),
        script,
        plan,
    })
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

/// A master boot record with one bootable FAT32 (LBA) partition of `sectors` sectors
/// starting at [`PARTITION_START_SECTOR`].
pub fn mbr(sectors: u32) -> [u8; 512] {
    let mut sector = [0u8; 512];
    let entry = &mut sector[446..462];
    entry[0] = 0x80; // bootable: distro boot scans bootable partitions first
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS unused: LBA only
    entry[4] = 0x0c; // FAT32, LBA
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&PARTITION_START_SECTOR.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

/// Makes `disk` from the files of `dir`: an MBR, then a FAT32 partition (mkfs.vfat, mcopy).
pub fn write_disk(dir: &Path, disk: &Path) -> Result<(), String> {
    for tool in ["mkfs.vfat", "mcopy"] {
        if !on_path(tool) && !Path::new("/usr/sbin").join(tool).exists() {
            return Err(format!(
                "{tool} not found: install dosfstools and mtools (bash .ci/install-host-deps.sh)"
            ));
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut total = 0;
    for f in &files {
        total += file_size(f)?;
    }
    let part_mib = ((total + total / 8) / MIB + 40).max(64);
    say(format!(
        "making the disk image {} ({part_mib} MiB FAT partition, {} files)",
        disk.display(),
        files.len()
    ));
    let part = disk.with_extension("fat");
    let _ = std::fs::remove_file(&part);
    let mkfs = if on_path("mkfs.vfat") {
        PathBuf::from("mkfs.vfat")
    } else {
        PathBuf::from("/usr/sbin/mkfs.vfat")
    };
    output(
        Command::new(mkfs)
            .args(["-F", "32", "-n", "MICA", "-C"])
            .arg(&part)
            .arg((part_mib * 1024).to_string()),
    )?;
    for (i, f) in files.iter().enumerate() {
        say(format!(
            "  [{}/{}] {} ({} KiB)",
            i + 1,
            files.len(),
            f.file_name().unwrap_or_default().to_string_lossy(),
            file_size(f)? >> 10
        ));
        run(Command::new("mcopy")
            .args(["-o", "-i"])
            .arg(&part)
            .arg(f)
            .arg("::"))?;
    }
    let part_bytes = crate::util::read_file(&part)?;
    let sectors = u32::try_from(part_bytes.len() / 512).map_err(|_| "disk image too big")?;
    let mut image = Vec::with_capacity(part_bytes.len() + PARTITION_START_SECTOR as usize * 512);
    image.extend_from_slice(&mbr(sectors));
    image.resize(PARTITION_START_SECTOR as usize * 512, 0);
    image.extend_from_slice(&part_bytes);
    write_file(disk, &image)?;
    let _ = std::fs::remove_file(&part);
    Ok(())
}

/// Debian's U-Boot for QEMU's arm64 virt machine (package u-boot-qemu, arch all), fetched once
/// into `target/guests/u-boot-qemu_arm64.bin`.
pub fn ensure_uboot() -> Result<PathBuf, String> {
    let bin = crate::host::guests_dir().join("u-boot-qemu_arm64.bin");
    if !bin.exists() {
        let unpacked = crate::host::fetch_deb("u-boot-qemu", "U-Boot for QEMU, the firmware")?;
        let found = unpacked.join(UBOOT_IN_PACKAGE);
        let bytes = crate::util::read_file(&found).map_err(|e| {
            format!(
                "the u-boot-qemu package has no {UBOOT_IN_PACKAGE} ({e}); fix: put a U-Boot \
                 built for qemu_arm64 at {}",
                bin.display()
            )
        })?;
        write_file(&bin, &bytes)?;
    }
    Ok(bin)
}

/// `scenario` on the machine U-Boot boots: QEMU `virt` with U-Boot as its firmware. That
/// machine differs from a `-kernel` boot (ACPI on, so no PL061 GPIO), and the device tree
/// given to Mica must describe it: a tree dumped without the firmware lists a PL061 the
/// initial domain then probes into an external abort.
pub fn with_uboot(scenario: &Scenario) -> Result<Scenario, String> {
    let mut scenario = scenario.clone();
    if scenario.firmware.is_none() {
        scenario.firmware = Some(ensure_uboot()?);
    }
    Ok(scenario)
}

/// QEMU arguments that boot `disk` on the scenario's machine, its firmware (U-Boot) included.
pub fn qemu_args(scenario: &Scenario, disk: &Path) -> Vec<String> {
    let mut args = scenario.machine_args();
    args.extend(["-nographic", "-no-reboot"].map(String::from));
    args.push("-drive".into());
    args.push(format!(
        "if=none,format=raw,id=boot,file={}",
        disk.display().to_string().replace(',', ",,")
    ));
    args.extend(["-device", "virtio-blk-device,drive=boot"].map(String::from));
    // No network: distro boot would otherwise fall back to DHCP/PXE when the disk fails.
    args.extend(["-nic", "none"].map(String::from));
    args
}

/// Everything for a U-Boot boot of `scenario` under `work`: image directory, disk, QEMU args.
pub fn prepare(scenario: &Scenario, hypervisor: &Path, work: &Path) -> Result<Vec<String>, String> {
    let scenario = &with_uboot(scenario)?;
    let image = write_image_dir(scenario, hypervisor, &work.join("image"), work)?;
    if image.script.is_none() {
        return Err("mkimage (u-boot-tools) is needed to make boot.scr for the disk".into());
    }
    let disk = work.join("disk.img");
    write_disk(&image.dir, &disk)?;
    Ok(qemu_args(scenario, &disk))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::PLATFORMS;
    use crate::scenario::{Domain, Placement};

    fn placement(path: &str, addr: u64, size: u64) -> Placement {
        Placement {
            path: path.into(),
            addr,
            size,
        }
    }

    fn layout() -> Vec<DomainModules> {
        vec![
            DomainModules {
                kernel: placement("/g/Image", 0x4900_0000, 27 << 20),
                initrd: Some(placement("/g/initrd.gz", 0x4ac0_0000, 1 << 20)),
                device_tree: None,
            },
            DomainModules {
                kernel: placement("/g/Image", 0x4ae0_0000, 27 << 20),
                initrd: Some(placement("/other/initrd.gz", 0x4ca0_0000, 1 << 20)),
                device_tree: None,
            },
        ]
    }

    fn scenario() -> Scenario {
        let mut s = Scenario::new(PLATFORMS[0], 3, "console=dtuart");
        s.domains.push(Domain {
            name: "dom0".into(),
            kernel: "/g/Image".into(),
            initrd: None,
            bootargs: String::new(),
            memory_kib: 1024,
            cpus: 1,
            vpl011: false,
            initial: true,
            extra_properties: Vec::new(),
            device_tree: None,
        });
        s
    }

    #[test]
    fn a_board_with_ram_at_zero_gets_mica_at_4_mib() {
        let zcu102 = crate::images::platform("zcu102").unwrap();
        let mut s = scenario();
        s.platform = zcu102;
        let layout = vec![DomainModules {
            kernel: placement("/g/Image", zcu102.module_base, 30 << 20),
            initrd: None,
            device_tree: None,
        }];
        let names = module_names(&layout);
        let plan = plan(&s, &layout, 3 << 20, 0x2000, &names).unwrap();
        assert_eq!(plan.hypervisor.addr, 0x40_0000);
        assert_eq!(plan.dtb.addr, 0x80_0000);
        assert!(boot_script(&plan).ends_with("booti 0x400000 - 0x800000\n"));
    }

    #[test]
    fn names_files_once_and_disambiguates() {
        let names = module_names(&layout());
        assert_eq!(names.len(), 3);
        assert_eq!(names[Path::new("/g/Image")], "Image");
        assert_eq!(names[Path::new("/g/initrd.gz")], "initrd.gz");
        assert_eq!(names[Path::new("/other/initrd.gz")], "2-initrd.gz");
    }

    #[test]
    fn plans_script_hypervisor_dtb_and_modules_apart() {
        let layout = layout();
        let names = module_names(&layout);
        let plan = plan(&scenario(), &layout, 3 << 20, 0x2000, &names).unwrap();
        assert_eq!(plan.hypervisor.addr, 0x4040_0000);
        assert_eq!(plan.dtb.addr, 0x4080_0000);
        assert_eq!(plan.modules.len(), 4);
        assert_eq!(plan.modules[2].name, "Image");
        assert_eq!(plan.modules[2].addr, 0x4ae0_0000);
        let script = boot_script(&plan);
        assert!(
            script.contains("load ${devtype} ${devnum}:${distro_bootpart} 0x40400000 mica.bin\n")
        );
        assert!(script.contains(" 0x40800000 mica.dtb\n"));
        assert!(script.contains(" 0x4ca00000 2-initrd.gz\n"));
        assert!(script.ends_with("booti 0x40400000 - 0x40800000\n"));
    }

    #[test]
    fn refuses_overlaps_and_regions_outside_ram() {
        let layout = layout();
        let names = module_names(&layout);
        // A hypervisor so big its device tree would run into the first module.
        let err = plan(&scenario(), &layout, 140 << 20, 0x2000, &names).unwrap_err();
        assert!(err.contains("overlaps"), "{err}");
        // Modules in U-Boot's area at the top of a 256 MiB machine.
        let mut small = scenario();
        small.mem_mib = 256;
        let err = plan(&small, &layout, 1 << 20, 0x2000, &names).unwrap_err();
        assert!(err.contains("U-Boot") && err.contains("overlaps"), "{err}");
        assert!(
            check_regions(&[("x".into(), 0x3000_0000, 1)], 0x4000_0000, 0x8000_0000)
                .unwrap_err()
                .contains("outside RAM")
        );
    }

    #[test]
    fn firmware_is_part_of_the_machine_shape() {
        // The board tree is dumped with `machine_args`, so it sees the same -bios as the run.
        let mut s = scenario();
        assert!(!s.machine_args().contains(&"-bios".to_string()));
        s.firmware = Some("/g/u-boot.bin".into());
        let args = qemu_args(&s, Path::new("/d/disk.img"));
        let bios = args.iter().position(|a| a == "-bios").unwrap();
        assert_eq!(args[bios + 1], "/g/u-boot.bin");
        assert_eq!(args.iter().filter(|a| *a == "-bios").count(), 1);
        assert!(s
            .machine_args()
            .ends_with(&["-bios".into(), "/g/u-boot.bin".into()]));
    }

    #[test]
    fn mbr_has_one_bootable_fat32_partition() {
        let m = mbr(0x0002_0000);
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(m[446], 0x80);
        assert_eq!(m[450], 0x0c);
        assert_eq!(&m[454..458], &2048u32.to_le_bytes());
        assert_eq!(&m[458..462], &0x0002_0000u32.to_le_bytes());
        assert!(m[462..510].iter().all(|&b| b == 0), "one entry only");
    }
}
