//! Compact logging, host side: Mica's `defmt` build (feature `defmt` of mica-aarch64, built
//! under `target/defmt/` so the normal image stays as it is), and the decoder that turns its
//! UART stream back into text.
//!
//! On the wire Mica's lines are defmt frames: a zero byte, the rzCOBS-encoded frame (no zero
//! inside), and the zero that ends it (arch/aarch64/src/bin/mica/defmt_log.rs). Everything
//! else is the guests' text, which carries no NUL. [`Splitter`] separates the two; [`Decoder`]
//! reads the `.defmt` table of Mica's ELF and renders a frame as `(MICA) message`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use defmt_decoder::Table;

use crate::images::{Platform, HV_TARGET};
use crate::util::{cargo, read_file, repo_root, run, say, target_dir};

/// Starts and ends a frame on the wire.
const FRAME_DELIMITER: u8 = 0x00;
/// A frame longer than this lost its end (e.g. a NUL in guest output started a false one):
/// its bytes go back to the text.
const MAX_FRAME: usize = 4096;
/// The tag Mica's own lines carry in the plain build; decoded lines get it too.
const TAG: &str = "(MICA) ";

/// The defmt build of Mica.
pub struct DefmtImage {
    /// Flat image to boot.
    pub image: PathBuf,
    /// The ELF, whose `.defmt` section the decoder reads.
    pub elf: PathBuf,
}

/// The directory the defmt build goes to (its own, so the two builds do not overwrite each
/// other's `mica.bin`).
pub fn build_dir() -> PathBuf {
    target_dir().join("defmt")
}

/// Builds Mica with `--features defmt` into `target/defmt/`.
pub fn build(platform: &Platform, release: bool) -> Result<DefmtImage, String> {
    let profile = if release { "release" } else { "debug" };
    say(format!(
        "building mica with defmt logging for {} ({profile})",
        platform.name
    ));
    let mut command = cargo();
    command
        .args(["build", "-p", "mica-aarch64", "--bin", "mica"])
        .args(["--features", "defmt", "--target", HV_TARGET])
        .env("CARGO_TARGET_DIR", build_dir())
        .current_dir(repo_root());
    if release {
        command.arg("--release");
    }
    run(&mut command)?;
    let dir = build_dir().join(HV_TARGET).join(profile);
    let elf = dir.join("mica");
    let image = dir.join("mica.bin");
    if release {
        crate::images::check_not_outlined(&elf)?;
    }
    crate::elf_image::flatten_file(&elf, &image)?;
    Ok(DefmtImage { image, elf })
}

/// One piece of the UART stream.
#[derive(Debug, PartialEq)]
pub enum Piece {
    /// Guest (or otherwise plain) output.
    Text(Vec<u8>),
    /// An rzCOBS-encoded defmt frame, without its delimiters.
    Frame(Vec<u8>),
}

/// Separates defmt frames from text, across arbitrary chunk boundaries.
#[derive(Default)]
pub struct Splitter {
    in_frame: bool,
    frame: Vec<u8>,
}

impl Splitter {
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        for &byte in bytes {
            if !self.in_frame {
                if byte == FRAME_DELIMITER {
                    self.in_frame = true;
                } else {
                    text.push(byte);
                }
                continue;
            }
            if byte != FRAME_DELIMITER {
                self.frame.push(byte);
                if self.frame.len() > MAX_FRAME {
                    // Not a frame after all.
                    text.append(&mut self.frame);
                    self.in_frame = false;
                }
                continue;
            }
            // A zero right after the opening one (the encoder's first separator) keeps
            // the frame open; any other zero ends it.
            if !self.frame.is_empty() {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Frame(std::mem::take(&mut self.frame)));
                self.in_frame = false;
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        pieces
    }
}

/// Renders frames with the table of one ELF.
pub struct Decoder {
    table: Table,
}

impl Decoder {
    pub fn load(elf: &Path) -> Result<Self, String> {
        let bytes = read_file(elf)?;
        let table = Table::parse(&bytes)
            .map_err(|e| format!("{}: bad .defmt table: {e}", elf.display()))?
            .ok_or_else(|| {
                format!(
                    "{} has no .defmt section: is it the defmt build (`--features defmt`)?",
                    elf.display()
                )
            })?;
        Ok(Decoder { table })
    }

    /// One frame (rzCOBS-encoded, without delimiters) as a log line.
    pub fn line(&self, frame: &[u8]) -> String {
        let mut stream = self.table.new_stream_decoder();
        stream.received(frame);
        stream.received(&[FRAME_DELIMITER]);
        match stream.decode() {
            Ok(decoded) => format!("{TAG}{}", decoded.display_message()),
            Err(e) => format!(
                "{TAG}<undecodable defmt frame, {} bytes: {e:?}>",
                frame.len()
            ),
        }
    }
}

/// Turns a frame into its log line.
type Render = Box<dyn Fn(&[u8]) -> String + Send>;

/// The UART stream turned back into text: guest text as it came, each decoded line on a line
/// of its own. A line decoded while the text is mid-line waits for that line's end.
pub struct Output {
    splitter: Splitter,
    /// Renders a frame as a line (the decoder; a stand-in in unit tests).
    render: Render,
    at_line_start: bool,
    held: Vec<String>,
}

impl Output {
    pub fn new(decoder: Decoder) -> Self {
        Self::with_renderer(Box::new(move |frame| decoder.line(frame)))
    }

    fn with_renderer(render: Render) -> Self {
        Output {
            splitter: Splitter::default(),
            render,
            at_line_start: true,
            held: Vec::new(),
        }
    }

    /// Decodes `bytes`; returns the text to show. `flush` also ends a pending text line
    /// to show held lines (interactive use, when the stream paused mid-line).
    pub fn feed(&mut self, bytes: &[u8], flush: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in self.splitter.feed(bytes) {
            match piece {
                Piece::Frame(frame) => {
                    let line = (self.render)(&frame);
                    if self.at_line_start {
                        push_line(&mut out, &line);
                    } else {
                        self.held.push(line);
                    }
                }
                Piece::Text(text) => {
                    for &byte in &text {
                        out.push(byte);
                        self.at_line_start = byte == b'\n';
                        if self.at_line_start {
                            for line in self.held.drain(..) {
                                push_line(&mut out, &line);
                            }
                        }
                    }
                }
            }
        }
        if flush && !self.held.is_empty() {
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
            for line in self.held.drain(..) {
                push_line(&mut out, &line);
            }
        }
        out
    }
}

fn push_line(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Runs QEMU attached to the terminal, its output decoded on the way: `run --defmt`.
pub fn run_interactive(
    args: &[String],
    elf: &Path,
    timeout: Option<Duration>,
) -> Result<ExitStatus, String> {
    let mut output = Output::new(Decoder::load(elf)?);
    let mut command = Command::new("qemu-system-aarch64");
    command
        .args(args)
        .args(["-echr", "0x1d"])
        .stdout(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| crate::util::start_error(&command, &e))?;
    let mut stdout = child.stdout.take().ok_or("no pipe from QEMU")?;
    let start = Instant::now();
    // The reader thread ends when QEMU closes its output.
    let reader = std::thread::spawn(move || -> Result<(), String> {
        let mut buf = [0u8; 4096];
        let mut terminal = std::io::stdout();
        loop {
            let n = stdout
                .read(&mut buf)
                .map_err(|e| format!("reading QEMU's output: {e}"))?;
            if n == 0 {
                return Ok(());
            }
            // Reads are as large as what is waiting, so a short one means a pause.
            let text = output.feed(&buf[..n], n < buf.len());
            terminal
                .write_all(&text)
                .and_then(|()| terminal.flush())
                .map_err(|e| format!("writing to the terminal: {e}"))?;
        }
    });
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("waiting for qemu: {e}"))?
        {
            break status;
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the machine had not powered off after {} s (--timeout); QEMU stopped",
                timeout.map(|t| t.as_secs()).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    reader
        .join()
        .map_err(|_| "the output decoder stopped".to_string())??;
    Ok(status)
}

/// `cargo xtask bench footprint`: release `mica.bin` with and without defmt logging, written
/// as the `## Footprint` section of docs/benchmarks.md.
pub fn footprint(platform: &Platform) -> Result<(), String> {
    crate::host::ensure_host_tools()?;
    let plain = crate::images::build_mica(platform, true)?;
    let defmt = build(platform, true)?;
    let plain_size = crate::util::file_size(&plain)?;
    let defmt_size = crate::util::file_size(&defmt.image)?;
    let table_size = defmt_section_size(&read_file(&defmt.elf)?)?;
    let run = boot_trapcheck(*platform, 3, &defmt, None)?;
    if run.wire.lines == 0 {
        return Err("the trapcheck boot on the defmt build sent no frames".into());
    }
    let section = footprint_section(plain_size, defmt_size, table_size, &run.wire);
    println!("{section}");
    let docs = repo_root().join("docs/benchmarks.md");
    let existing = std::fs::read_to_string(&docs).unwrap_or_default();
    crate::util::write_file(
        &docs,
        crate::bench::replace_section(&existing, "## Footprint", &section).as_bytes(),
    )?;
    say(format!(
        "wrote the ## Footprint section of {}",
        docs.display()
    ));
    Ok(())
}

/// Size of the ELF's `.defmt` section: one byte per interned entry (its address is the index).
fn defmt_section_size(elf: &[u8]) -> Result<u64, String> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(elf).map_err(|e| format!("reading Mica's ELF: {e}"))?;
    file.section_by_name(".defmt")
        .map(|s| s.size())
        .ok_or_else(|| "the defmt build's ELF has no .defmt section".to_string())
}

fn footprint_section(plain: u64, defmt: u64, table: u64, wire: &Wire) -> String {
    let kib = |b: u64| b as f64 / 1024.0;
    let change = defmt as i64 - plain as i64;
    format!(
        "## Footprint\n\n\
         Release `mica.bin` (flat image, `opt-level = \"z\"`, LTO), with and without compact \
         logging.\n\n\
         Command: `cargo xtask bench footprint`\n\n\
         | build | `mica.bin` | difference |\n\
         |---|---|---|\n\
         | plain (default) | {plain} bytes ({:.1} KiB) | — |\n\
         | defmt (`--features defmt`) | {defmt} bytes ({:.1} KiB) | {change:+} bytes ({:+.1} %) |\n\n\
         The defmt build adds defmt's encoder, the UART frame logger and, per `info!` call \
         site, the code that sends each argument; the format strings leave the image. Their \
         text is interned in the ELF's `.defmt` table ({table} entries, kept on the host for \
         the decoder): on the wire a line is a 2-byte index plus its arguments, each still \
         formatted on the device as text (mica-defmt-fmt rewrites Rust's format syntax, \
         inline captures and specs included, into defmt's).\n\n\
         On the wire, booting the trapcheck scenario (GICv3): {wire}.\n",
        kib(plain),
        kib(defmt),
        change as f64 * 100.0 / plain as f64,
    )
}

/// The boot tests of this file (registered in boot_tests.rs).
pub const TESTS: &[&str] = &["defmt-log"];

/// `defmt-log`: the trapcheck scenario on Mica's defmt build. Mica's lines must arrive only as
/// frames (the raw log has neither them nor their constant text) and decode to the lines the
/// plain build prints; the guest's own text passes untouched (trapcheck's report checks).
pub fn defmt_log_test(
    platform: Platform,
    gic: u8,
    release: bool,
    timeout: Option<Duration>,
) -> Result<(), String> {
    crate::host::ensure_host_tools()?;
    let built = build(&platform, release)?;
    let run = boot_trapcheck(platform, gic, &built, timeout)?;
    let tail = |why: &str| {
        let lines: Vec<&str> = run.decoded.lines().collect();
        format!(
            "{why}; last 20 decoded lines:\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    };
    check_defmt_log(&run.raw, &run.decoded).map_err(|why| tail(&why))?;
    crate::boot_tests::check_trapcheck_log(&run.decoded).map_err(|why| tail(&why))?;
    say(run.wire.to_string());
    match run.captured.ending {
        crate::qemu::Ending::Exited(status) if status.success() => Ok(()),
        crate::qemu::Ending::Exited(status) => Err(tail(&format!("QEMU exited with {status}"))),
        _ => Err(tail("QEMU did not power off before the timeout")),
    }
}

/// A boot of the trapcheck scenario on the defmt build.
struct TrapcheckRun {
    captured: crate::qemu::Captured,
    raw: Vec<u8>,
    decoded: String,
    wire: Wire,
}

fn boot_trapcheck(
    platform: Platform,
    gic: u8,
    built: &DefmtImage,
    timeout: Option<Duration>,
) -> Result<TrapcheckRun, String> {
    let guest = crate::images::build_guest("trapcheck")
        .map_err(|e| format!("building trapcheck failed: {e}"))?;
    let scenario = crate::suites::trapcheck(platform, gic, guest);
    let work = target_dir().join("scenarios").join("defmt-log");
    let prepared = scenario.prepare(&built.image, &work)?;
    let logs = target_dir().join("test-logs");
    let raw_log = logs.join("defmt-log.log");
    let decoded_log = logs.join("defmt-log.decoded.log");
    let timeout = timeout.unwrap_or(crate::boot_tests::TRAPCHECK_TIMEOUT);
    say(format!(
        "booting trapcheck on the defmt build (timeout {} s, raw log {}, decoded {})",
        timeout.as_secs(),
        raw_log.display(),
        decoded_log.display()
    ));
    let captured = crate::qemu::run_captured(&prepared.qemu_args, &raw_log, timeout, &|_| false)?;
    let raw = read_file(&raw_log)?;
    let decoder = Decoder::load(&built.elf)?;
    let wire = Wire::measure(&decoder, &raw);
    let mut output = Output::new(decoder);
    let decoded = String::from_utf8_lossy(&output.feed(&raw, true)).replace('\r', "");
    crate::util::write_file(&decoded_log, decoded.as_bytes())?;
    Ok(TrapcheckRun {
        captured,
        raw,
        decoded,
        wire,
    })
}

/// What Mica's lines cost on the wire: as defmt frames, and as the plain build's text.
#[derive(Debug, PartialEq)]
struct Wire {
    lines: usize,
    frame_bytes: usize,
    text_bytes: usize,
}

impl Wire {
    fn measure(decoder: &Decoder, raw: &[u8]) -> Wire {
        let mut wire = Wire {
            lines: 0,
            frame_bytes: 0,
            text_bytes: 0,
        };
        for piece in Splitter::default().feed(raw) {
            if let Piece::Frame(frame) = piece {
                wire.lines += 1;
                // The opening and closing zero bytes.
                wire.frame_bytes += frame.len() + 2;
                // `(MICA) text\r\n`, as the plain build prints it (without timestamps).
                wire.text_bytes += decoder.line(&frame).len() + 2;
            }
        }
        wire
    }
}

impl std::fmt::Display for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mica's {} lines: {} bytes as defmt frames, {} bytes as the plain build's text",
            self.lines, self.frame_bytes, self.text_bytes
        )?;
        if self.text_bytes > 0 {
            write!(
                f,
                " ({:.0} % of it)",
                self.frame_bytes as f64 * 100.0 / self.text_bytes as f64
            )?;
        }
        Ok(())
    }
}

/// Mica's start-up lines: absent from the raw stream as text, present once decoded.
fn check_defmt_log(raw: &[u8], decoded: &str) -> Result<(), String> {
    const STARTING: &str = "starting at EL2";
    let raw_text = String::from_utf8_lossy(raw);
    if raw_text.contains(&format!("{TAG}Mica ")) {
        return Err("Mica's start-up line went out as plain text, not as a defmt frame".into());
    }
    // The constant text of a line is interned: only its arguments travel.
    if raw_text.contains(STARTING) {
        return Err(format!(
            "`{STARTING}` is on the wire: the format string was not interned"
        ));
    }
    let frames = Splitter::default()
        .feed(raw)
        .iter()
        .filter(|p| matches!(p, Piece::Frame(_)))
        .count();
    let wanted = [
        (format!("{TAG}Mica "), STARTING),
        (TAG.to_string(), " created: "),
        (TAG.to_string(), "footprint: image"),
    ];
    for (prefix, part) in wanted {
        let found = decoded
            .lines()
            .any(|l| l.starts_with(&prefix) && l.contains(part));
        if !found {
            return Err(format!(
                "no decoded line `{prefix}…{part}…` ({frames} frames in the raw log)"
            ));
        }
    }
    if decoded.contains("<undecodable defmt frame") {
        return Err("a frame did not decode".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece {
        Piece::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn start_up_lines_must_come_as_frames() {
        let decoded = "(MICA) Mica 0.1.0 starting at EL2\n(MICA) DOM1: trapcheck created: 64 MiB\n\
            (MICA) footprint: image 400 KiB\n";
        assert!(check_defmt_log(b"\0\x05\x7f\0", decoded).is_ok());
        let plain = b"(MICA) Mica 0.1.0 starting at EL2\r\n";
        assert!(check_defmt_log(plain, decoded)
            .unwrap_err()
            .contains("plain text"));
        let not_interned = b"\0\x05Mica 0.1.0 starting at EL2\0";
        assert!(check_defmt_log(not_interned, decoded)
            .unwrap_err()
            .contains("not interned"));
        let missing = decoded.replace("starting", "waking");
        assert!(check_defmt_log(b"", &missing)
            .unwrap_err()
            .contains("starting at EL2"));
        let bad = format!("{decoded}(MICA) <undecodable defmt frame, 3 bytes: Malformed>\n");
        assert!(check_defmt_log(b"", &bad).is_err());
    }

    #[test]
    fn footprint_section_shows_the_difference() {
        let wire = Wire {
            lines: 10,
            frame_bytes: 250,
            text_bytes: 1000,
        };
        let s = footprint_section(200_000, 210_000, 5, &wire);
        assert!(s.contains("10 lines: 250 bytes as defmt frames, 1000 bytes as the plain build's text (25 % of it)"));
        assert!(s.starts_with("## Footprint\n"));
        assert!(s.contains("| plain (default) | 200000 bytes (195.3 KiB) | — |"));
        assert!(s.contains("| 210000 bytes (205.1 KiB) | +10000 bytes (+5.0 %) |"));
        assert!(s.contains("(5 entries, kept on the host"));
    }

    #[test]
    fn a_line_decoded_mid_line_waits_for_the_line_end() {
        let render = |frame: &[u8]| format!("(MICA) frame of {}", frame.len());
        let mut out = Output::with_renderer(Box::new(render));
        assert_eq!(out.feed(b"\0\x01\x02\0", false), b"(MICA) frame of 2\r\n");
        // A guest line is being written when the frame comes: it is finished first.
        assert_eq!(
            out.feed(b"(MICA) DOM1: hal\0\x05\0", false),
            b"(MICA) DOM1: hal"
        );
        assert_eq!(
            out.feed(b"f\r\nnext", false),
            b"f\r\n(MICA) frame of 1\r\nnext"
        );
        // A prompt that stays open: a flush ends the line to show the held frame.
        assert_eq!(out.feed(b"\0\x07\0", true), b"\r\n(MICA) frame of 1\r\n");
        assert_eq!(out.feed(b"x", true), b"x");
    }

    #[test]
    fn separates_frames_from_text() {
        let mut s = Splitter::default();
        let pieces = s.feed(b"hello\r\n\0\0\x01\x02\x7c\0guest\0\x05\x7f\0");
        assert_eq!(
            pieces,
            vec![
                text("hello\r\n"),
                Piece::Frame(vec![1, 2, 0x7c]),
                text("guest"),
                Piece::Frame(vec![5, 0x7f]),
            ]
        );
    }

    #[test]
    fn frames_survive_chunk_boundaries() {
        let mut s = Splitter::default();
        assert_eq!(s.feed(b"ab\0\x01"), vec![text("ab")]);
        assert_eq!(s.feed(b"\x02"), vec![]);
        assert_eq!(s.feed(b"\0cd"), vec![Piece::Frame(vec![1, 2]), text("cd")]);
    }

    #[test]
    fn a_stray_nul_does_not_swallow_the_output() {
        let mut s = Splitter::default();
        let mut long = vec![0u8];
        long.extend(std::iter::repeat_n(b'x', MAX_FRAME + 1));
        let pieces = s.feed(&long);
        let total: usize = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.len(),
                Piece::Frame(_) => panic!("no frame here"),
            })
            .sum();
        assert_eq!(total, MAX_FRAME + 1);
        // Back in text mode afterwards.
        assert_eq!(s.feed(b"y"), vec![text("y")]);
    }
}
