//! Small helpers shared by the commands: paths, files, child processes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (this crate lives in `tools/xtask`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// The repository's normal `target/` directory, whatever CARGO_TARGET_DIR xtask itself was
/// built with, so images always land at the documented paths.
pub fn target_dir() -> PathBuf {
    repo_root().join("target")
}

/// Prints a progress line.
pub fn say(message: impl std::fmt::Display) {
    eprintln!("xtask: {message}");
}

/// Writes `bytes` to `path` through a temporary file and a rename, so an interrupted run never
/// leaves a half-written file that a later run would take as cached.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("renaming to {}: {e}", path.display()))
}

pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

pub fn file_size(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs `command` to completion, failing on a non-zero exit.
pub fn run(command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| start_error(command, &e))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(command)))
    }
}

/// Runs `command` and returns its standard output, failing on a non-zero exit.
pub fn output(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| start_error(command, &e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{}` failed ({}): {}",
            describe(command),
            out.status,
            stderr.trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Why `command` did not start, in one line; for a missing host tool, with the fix.
pub fn start_error(command: &Command, error: &std::io::Error) -> String {
    let program = command.get_program().to_string_lossy();
    if error.kind() == std::io::ErrorKind::NotFound {
        if let Some(fix) = missing_tool_fix(&program) {
            return format!("{program} not found: {fix}");
        }
    }
    format!("cannot start {}: {error}", describe(command))
}

/// The fix for a host tool xtask needs, by program name.
pub fn missing_tool_fix(program: &str) -> Option<String> {
    let name = Path::new(program).file_name()?.to_str()?;
    let package = match name {
        "qemu-system-aarch64" => "qemu-system-arm (QEMU 7.2 or newer; Debian: bookworm-backports)",
        "dtc" => "device-tree-compiler",
        "mkimage" => "u-boot-tools",
        "mkfs.vfat" => "dosfstools",
        "mcopy" => "mtools",
        "apt-get" | "dpkg" | "apt-cache" => {
            return Some(
                "xtask fetches the guest files with apt, so it needs a Debian or Ubuntu host"
                    .into(),
            )
        }
        _ => return None,
    };
    Some(format!(
        "install {package}, or run `sudo bash .ci/install-host-deps.sh` for every host tool"
    ))
}

/// The command line of `command`, for messages.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Whether `program` is found on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// Whether we run as root (then xtask may install host packages itself).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The cargo that runs us (so nested builds use the pinned toolchain).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_gets_one_line_with_its_package() {
        let mut qemu = Command::new("/nonexistent/qemu-system-aarch64");
        let error = run(qemu.arg("-version")).unwrap_err();
        assert!(
            error
                .starts_with("/nonexistent/qemu-system-aarch64 not found: install qemu-system-arm"),
            "{error}"
        );
        assert!(!error.contains('\n'));
        let error = output(&mut Command::new("/nonexistent/mkimage")).unwrap_err();
        assert!(error.contains("install u-boot-tools"), "{error}");
        // Unknown programs keep the plain message.
        let error = run(&mut Command::new("/nonexistent/frobnicate")).unwrap_err();
        assert!(
            error.starts_with("cannot start /nonexistent/frobnicate"),
            "{error}"
        );
        assert!(missing_tool_fix("apt-get").unwrap().contains("Debian"));
    }
}
