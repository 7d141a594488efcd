//! Running QEMU: captured into a log with a timeout (tests, benchmarks) or attached to the
//! terminal (interactive runs).

use std::fs::File;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How a captured run ended.
#[derive(Debug)]
pub enum Ending {
    /// QEMU exited by itself.
    Exited(ExitStatus),
    /// The caller's stop condition matched and QEMU was killed.
    Stopped,
    /// The timeout passed and QEMU was killed.
    TimedOut,
}

#[derive(Debug)]
pub struct Captured {
    pub log: String,
    pub ending: Ending,
    pub elapsed: Duration,
}

impl Captured {
    /// The last `n` lines of the log, for failure reports.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Runs `qemu-system-aarch64 args`, writing all its output to `log_path`, until it exits,
/// `stop_when(log so far)` is true, or `timeout` passes.
pub fn run_captured(
    args: &[String],
    log_path: &Path,
    timeout: Duration,
    stop_when: &dyn Fn(&str) -> bool,
) -> Result<Captured, String> {
    capture(
        Path::new("qemu-system-aarch64"),
        args,
        log_path,
        timeout,
        stop_when,
    )
}

/// Runs `program args` (another QEMU, say) like [`run_captured`].
pub fn run_program_until(
    program: &Path,
    args: &[String],
    log_path: &Path,
    timeout: Duration,
    stop_when: &dyn Fn(&str) -> bool,
) -> Result<Captured, String> {
    capture(program, args, log_path, timeout, stop_when)
}

/// Runs `program args` (e.g. xtask itself) like [`run_captured`], with no stop condition.
pub fn run_program(
    program: &Path,
    args: &[String],
    log_path: &Path,
    timeout: Duration,
) -> Result<Captured, String> {
    capture(program, args, log_path, timeout, &|_| false)
}

/// `XTASK_QEMU_EXTRA="-d exec,nochain -D trace.log"`: extra QEMU arguments for debugging a
/// captured run (split at whitespace), added after the scenario's own.
fn debug_extra_args(program: &Path) -> Vec<String> {
    let is_qemu = program
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("qemu-system-"));
    match std::env::var("XTASK_QEMU_EXTRA") {
        Ok(extra) if is_qemu => extra.split_whitespace().map(String::from).collect(),
        _ => Vec::new(),
    }
}

fn capture(
    program: &Path,
    args: &[String],
    log_path: &Path,
    timeout: Duration,
    stop_when: &dyn Fn(&str) -> bool,
) -> Result<Captured, String> {
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let log_file =
        File::create(log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .args(debug_extra_args(program))
        .current_dir(crate::util::repo_root())
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| crate::util::start_error(&Command::new(program), &e))?;
    let read_log =
        || String::from_utf8_lossy(&std::fs::read(log_path).unwrap_or_default()).replace('\r', "");
    let ending = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("waiting for qemu: {e}"))?
        {
            break Ending::Exited(status);
        }
        if stop_when(&read_log()) {
            break Ending::Stopped;
        }
        if start.elapsed() >= timeout {
            break Ending::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    if !matches!(ending, Ending::Exited(_)) {
        // Only the QEMU process this function started is killed.
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(Captured {
        log: read_log(),
        ending,
        elapsed: start.elapsed(),
    })
}

/// Runs QEMU with the terminal attached to its serial console and monitor. QEMU's escape
/// character moves to Ctrl-] because Ctrl-a belongs to the hypervisor's console switching.
pub fn run_interactive(args: &[String], timeout: Option<Duration>) -> Result<ExitStatus, String> {
    let mut command = Command::new("qemu-system-aarch64");
    command.args(args).args(["-echr", "0x1d"]);
    let mut child = command
        .spawn()
        .map_err(|e| crate::util::start_error(&command, &e))?;
    let Some(timeout) = timeout else {
        return child.wait().map_err(|e| format!("waiting for qemu: {e}"));
    };
    let start = Instant::now();
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("waiting for qemu: {e}"))?
        {
            return Ok(status);
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the machine had not powered off after {} s (--timeout); QEMU stopped",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
