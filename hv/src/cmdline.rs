//! Mica's own command line: the `/chosen/xen,xen-bootargs` string, in Xen's syntax, so a
//! boot setup written for Xen works unchanged.
//!
//! Syntax (Xen's `docs/misc/xen-command-line.pandoc`): space-separated `name` or `name=value`
//! options; double quotes group spaces into one value; `-` and `_` are interchangeable in
//! names; a boolean may be given bare (true), with `no-` in front (false), or as
//! `yes/on/true/enable/1` and `no/off/false/disable/0`. Sizes are an integer (decimal, `0x`
//! hex, or octal with a leading `0`) with one optional suffix `B`, `K`, `M`, `G` or `T`
//! (binary multiples, either case); **without a suffix the unit is KiB**, as in Xen.
//!
//! Nothing here fails: bad values become human-readable notes in [`HvCmdline::errors`] and
//! the option keeps its default.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Options Xen knows that Mica accepts and deliberately ignores (no note printed beyond a
/// summary). Console and UART selection come from the device tree; the rest tune Xen
/// internals that Mica does not have.
const KNOWN_IGNORED: &[&str] = &[
    "console",
    "dtuart",
    "loglvl",
    "guest_loglvl",
    "sync_console",
    "bootscrub",
    "sched",
    "conswitch",
];

/// The options Mica understands, parsed from its command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HvCmdline {
    /// `dom0_mem=`: the initial domain's RAM in bytes (`None`: not given or invalid).
    pub dom0_mem: Option<u64>,
    /// `dom0_max_vcpus=N` (as `(N, N)`) or `=MIN-MAX`.
    pub dom0_max_vcpus: Option<(u32, u32)>,
    /// `console_timestamps=`: any of Xen's timestamp modes (`boot`, `date`, `datems`, `raw`)
    /// or a true boolean turns them on; `none` or a false boolean turns them off.
    pub console_timestamps: bool,
    /// `vwfi=native`: vCPUs that own their CPU (a `null` cpupool) execute WFI/WFE without
    /// trapping, as Xen's option does; `vwfi=trap` (the default) traps them.
    pub vwfi_native: bool,
    /// Xen options recognised and ignored, as written (`console=dtuart`).
    pub known_ignored: Vec<String>,
    /// Options Mica does not know, as written.
    pub unknown: Vec<String>,
    /// One line per rejected value, e.g. `dom0_mem=abc: not a size`.
    pub errors: Vec<String>,
}

impl HvCmdline {
    /// The value of the last `name=value` option among [`Self::known_ignored`], if any (e.g.
    /// `dtuart`), with `-`/`_` treated alike.
    pub fn ignored_value(&self, name: &str) -> Option<&str> {
        self.known_ignored.iter().rev().find_map(|opt| {
            let (key, value) = opt.split_once('=')?;
            same_name(key, name).then_some(value)
        })
    }
}

/// Compares option names with `-` and `_` treated as the same character.
fn same_name(a: &str, b: &str) -> bool {
    let norm = |c: u8| if c == b'-' { b'_' } else { c };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| norm(x) == norm(y))
}

/// Splits on spaces, keeping double-quoted parts together and dropping the quotes.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(core::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// An unsigned integer in Xen's notation: `0x` hex, leading `0` octal, else decimal. Returns
/// the value and the unparsed rest, or `None` if no digit was read or it overflowed.
fn parse_uint_prefix(s: &str) -> Option<(u64, &str)> {
    let (radix, digits) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, h)
    } else if let Some(octal) = s
        .strip_prefix('0')
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
    {
        (8, octal)
    } else {
        (10, s)
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    // `end` is a character boundary (`find` returned it); the checked split just keeps the
    // slicing panic and its message formatting out of the image.
    let (number, rest) = digits.split_at_checked(end)?;
    let value = u64::from_str_radix(number, radix).ok()?;
    Some((value, rest))
}

/// A whole string that is an unsigned integer in Xen's notation.
fn parse_uint(s: &str) -> Option<u64> {
    match parse_uint_prefix(s)? {
        (v, "") => Some(v),
        _ => None,
    }
}

/// A size in Xen's notation (see the module documentation), in bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let (value, rest) = parse_uint_prefix(s)?;
    let shift = match rest {
        "" | "K" | "k" => 10,
        "B" | "b" => 0,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return None,
    };
    value.checked_mul(1u64 << shift)
}

/// Xen's boolean spellings; `None` if the value is none of them.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "yes" | "on" | "true" | "enable" | "1" => Some(true),
        "no" | "off" | "false" | "disable" | "0" => Some(false),
        _ => None,
    }
}

/// `dom0_mem=`: a list of `<size>`, `min:<size>` and `max:<size>`. Mica gives dom0 a fixed
/// amount: the plain size if present, else the `max:` one.
fn parse_dom0_mem(value: &str) -> Result<u64, &'static str> {
    let mut plain = None;
    let mut max = None;
    for item in value.split(',') {
        if let Some(v) = item.strip_prefix("max:") {
            max = Some(parse_size(v).ok_or("not a size")?);
        } else if let Some(v) = item.strip_prefix("min:") {
            parse_size(v).ok_or("not a size")?;
        } else {
            plain = Some(parse_size(item).ok_or("not a size")?);
        }
    }
    match plain.or(max) {
        Some(0) => Err("must not be zero"),
        Some(v) => Ok(v),
        None => Err("no size given"),
    }
}

/// `dom0_max_vcpus=N` or `=MIN-MAX`.
fn parse_vcpu_range(value: &str) -> Result<(u32, u32), &'static str> {
    let num = |s: &str| {
        parse_uint(s)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or("not a number")
    };
    let (min, max) = match value.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => {
            let n = num(value)?;
            (n, n)
        }
    };
    if min == 0 || max == 0 {
        return Err("must be at least 1");
    }
    if min > max {
        return Err("minimum above maximum");
    }
    Ok((min, max))
}

/// `console_timestamps=`: Xen's modes, or a boolean (Xen maps true to `date`).
fn parse_timestamps(value: Option<&str>) -> Result<bool, &'static str> {
    match value {
        None => Ok(true),
        Some("none") => Ok(false),
        Some("boot" | "date" | "datems" | "raw") => Ok(true),
        Some(v) => parse_bool(v).ok_or("expected none, boot, date, datems, raw or a boolean"),
    }
}

/// Parses a command line. Never fails; see [`HvCmdline::errors`].
pub fn parse(s: &str) -> HvCmdline {
    let mut out = HvCmdline::default();
    for token in tokens(s) {
        let (name, value) = match token.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (token.as_str(), None),
        };
        // `no-foo` switches boolean `foo` off.
        let (name, negated) = match name.strip_prefix("no-") {
            Some(n) if value.is_none() => (n, true),
            _ => (name, false),
        };
        let mut note = |why: &str| out.errors.push(format!("{token}: {why}"));
        if same_name(name, "dom0_mem") {
            match value.map(parse_dom0_mem) {
                Some(Ok(v)) => out.dom0_mem = Some(v),
                Some(Err(why)) => note(why),
                None => note("needs a value"),
            }
        } else if same_name(name, "dom0_max_vcpus") {
            match value.map(parse_vcpu_range) {
                Some(Ok(v)) => out.dom0_max_vcpus = Some(v),
                Some(Err(why)) => note(why),
                None => note("needs a value"),
            }
        } else if same_name(name, "console_timestamps") {
            if negated {
                out.console_timestamps = false;
            } else {
                match parse_timestamps(value) {
                    Ok(v) => out.console_timestamps = v,
                    Err(why) => note(why),
                }
            }
        } else if same_name(name, "vwfi") {
            match value {
                Some("native") => out.vwfi_native = true,
                Some("trap") => out.vwfi_native = false,
                _ => note("expected native or trap"),
            }
        } else if KNOWN_IGNORED.iter().any(|k| same_name(name, k)) {
            out.known_ignored.push(token.to_string());
        } else {
            out.unknown.push(token.to_string());
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn reference_scenario() {
        let c = parse("console=dtuart dtuart=/pl011@9000000 dom0_mem=512M");
        assert_eq!(c.dom0_mem, Some(512 * MIB));
        assert_eq!(c.known_ignored, ["console=dtuart", "dtuart=/pl011@9000000"]);
        assert_eq!(c.ignored_value("dtuart"), Some("/pl011@9000000"));
        assert!(c.unknown.is_empty() && c.errors.is_empty());
        assert!(!c.console_timestamps);
        assert_eq!(c.dom0_max_vcpus, None);
    }

    #[test]
    fn sizes_follow_xen() {
        assert_eq!(parse_size("512M"), Some(512 * MIB));
        assert_eq!(parse_size("512m"), Some(512 * MIB));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("2T"), Some(2 << 40));
        assert_eq!(parse_size("4096B"), Some(4096));
        // No suffix means KiB.
        assert_eq!(parse_size("1024"), Some(MIB));
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("0x10M"), Some(16 * MIB));
        assert_eq!(parse_size("010"), Some(8 << 10));
        assert_eq!(parse_size("0"), Some(0));
        for bad in [
            "",
            "M",
            "abc",
            "12Q",
            "1MB",
            "-1M",
            "0x",
            "99999999999999999999",
            "16777216T",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn dom0_mem_forms() {
        assert_eq!(parse("dom0_mem=512M,max:1G").dom0_mem, Some(512 * MIB));
        assert_eq!(parse("dom0_mem=max:1G,512M").dom0_mem, Some(512 * MIB));
        assert_eq!(
            parse("dom0_mem=min:128M,max:256M").dom0_mem,
            Some(256 * MIB)
        );
        assert_eq!(parse("dom0-mem=256M").dom0_mem, Some(256 * MIB));
        // The last valid occurrence wins.
        assert_eq!(parse("dom0_mem=256M dom0_mem=1G").dom0_mem, Some(1 << 30));
        for bad in [
            "dom0_mem=abc",
            "dom0_mem",
            "dom0_mem=",
            "dom0_mem=0",
            "dom0_mem=min:1G",
            "dom0_mem=max:x",
        ] {
            let c = parse(bad);
            assert_eq!(c.dom0_mem, None, "{bad}");
            assert_eq!(c.errors.len(), 1, "{bad}");
            assert!(c.errors[0].starts_with(bad), "{}", c.errors[0]);
        }
        assert_eq!(parse("dom0_mem=abc").errors, ["dom0_mem=abc: not a size"]);
    }

    #[test]
    fn vcpus() {
        assert_eq!(parse("dom0_max_vcpus=4").dom0_max_vcpus, Some((4, 4)));
        assert_eq!(parse("dom0_max_vcpus=1-3").dom0_max_vcpus, Some((1, 3)));
        for bad in [
            "dom0_max_vcpus=0",
            "dom0_max_vcpus=3-1",
            "dom0_max_vcpus=x",
            "dom0_max_vcpus=-2",
            "dom0_max_vcpus=1-",
            "dom0_max_vcpus=5000000000",
        ] {
            let c = parse(bad);
            assert_eq!(c.dom0_max_vcpus, None, "{bad}");
            assert_eq!(c.errors.len(), 1, "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        for on in [
            "console_timestamps=boot",
            "console_timestamps=date",
            "console_timestamps=1",
            "console_timestamps=yes",
            "console_timestamps=true",
            "console_timestamps",
            "console-timestamps=on",
        ] {
            assert!(parse(on).console_timestamps, "{on}");
        }
        for off in [
            "console_timestamps=none",
            "console_timestamps=no",
            "console_timestamps=0",
            "no-console_timestamps",
            "console_timestamps=boot console_timestamps=off",
        ] {
            assert!(!parse(off).console_timestamps, "{off}");
        }
        let c = parse("console_timestamps=sometimes");
        assert!(!c.console_timestamps);
        assert_eq!(c.errors.len(), 1);
    }

    #[test]
    fn vwfi() {
        assert!(!parse("").vwfi_native);
        assert!(parse("vwfi=native").vwfi_native);
        assert!(!parse("vwfi=native vwfi=trap").vwfi_native);
        let c = parse("vwfi=sometimes");
        assert!(!c.vwfi_native);
        assert_eq!(c.errors, ["vwfi=sometimes: expected native or trap"]);
        assert_eq!(parse("vwfi").errors.len(), 1);
    }

    #[test]
    fn ignored_unknown_and_quotes() {
        let c = parse("  loglvl=all guest_loglvl=all sync_console bootscrub=0 sched=null vwfi=native conswitch=ax  frobnicate=7 noreboot");
        assert_eq!(c.known_ignored.len(), 6);
        assert!(c.vwfi_native);
        assert_eq!(c.unknown, ["frobnicate=7", "noreboot"]);
        let c = parse("console=\"dtuart com1\" x=\"a b\"");
        assert_eq!(c.known_ignored, ["console=dtuart com1"]);
        assert_eq!(c.unknown, ["x=a b"]);
        assert_eq!(parse(""), HvCmdline::default());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let c = parse(&s);
            prop_assert!(c.unknown.len() + c.known_ignored.len() + c.errors.len() <= s.len());
        }

        #[test]
        fn sizes_round_trip(v in 0u64..(1 << 30), unit in 0usize..4) {
            let (suffix, shift) = [("B", 0), ("K", 10), ("M", 20), ("G", 30)][unit];
            prop_assert_eq!(parse_size(&format!("{v}{suffix}")), v.checked_mul(1 << shift));
        }
    }
}
