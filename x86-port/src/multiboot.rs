//! Multiboot (v1) boot information, decoded from bytes the loader left in memory. The loader
//! is trusted less than nothing else, but its values still decide where Mica looks, so every
//! field is bounds-checked before use.

/// EAX at entry from a multiboot loader.
pub const LOADER_MAGIC: u32 = 0x2BAD_B002;
/// Bytes of the info block Mica reads (up to and including the memory-map fields).
pub const INFO_LEN: usize = 52;
/// Bytes of one module entry.
pub const MODULE_LEN: usize = 16;
/// Most modules Mica looks at.
pub const MAX_MODULES: u32 = 16;

/// Info flag: `mem_lower` / `mem_upper` are valid.
const FLAG_MEMORY: u32 = 1 << 0;
/// Info flag: `cmdline` is valid.
const FLAG_CMDLINE: u32 = 1 << 2;
/// Info flag: `mods_count` / `mods_addr` are valid.
const FLAG_MODULES: u32 = 1 << 3;
/// Info flag: `mmap_length` / `mmap_addr` are valid.
const FLAG_MMAP: u32 = 1 << 6;

/// Memory-map entry type of usable RAM.
pub const MMAP_RAM: u32 = 1;

/// What is wrong with boot information.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Error {
    /// Fewer bytes than the structure needs.
    Truncated,
    /// A module ends before it starts.
    BadModule,
    /// More modules than [`MAX_MODULES`].
    TooManyModules,
}

/// The fields of the info block Mica uses.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Info {
    /// KiB of memory above 1 MiB (contiguous), if given.
    pub mem_upper_kib: Option<u32>,
    /// Physical address of Mica's command line (NUL-terminated).
    pub cmdline: Option<u32>,
    /// Number of modules and the address of their table.
    pub modules: Option<(u32, u32)>,
    /// Address and byte length of the memory map.
    pub mmap: Option<(u32, u32)>,
}

fn u32_at(raw: &[u8], off: usize) -> Result<u32, Error> {
    let bytes = raw.get(off..off + 4).ok_or(Error::Truncated)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(bytes);
    Ok(u32::from_le_bytes(word))
}

fn u64_at(raw: &[u8], off: usize) -> Result<u64, Error> {
    Ok(u64::from(u32_at(raw, off)?) | u64::from(u32_at(raw, off + 4)?) << 32)
}

/// Decodes the info block (its first [`INFO_LEN`] bytes).
pub fn parse_info(raw: &[u8]) -> Result<Info, Error> {
    if raw.len() < INFO_LEN {
        return Err(Error::Truncated);
    }
    let flags = u32_at(raw, 0)?;
    let mut info = Info::default();
    if flags & FLAG_MEMORY != 0 {
        info.mem_upper_kib = Some(u32_at(raw, 8)?);
    }
    if flags & FLAG_CMDLINE != 0 {
        info.cmdline = Some(u32_at(raw, 16)?);
    }
    if flags & FLAG_MODULES != 0 {
        let count = u32_at(raw, 20)?;
        if count > MAX_MODULES {
            return Err(Error::TooManyModules);
        }
        info.modules = Some((count, u32_at(raw, 24)?));
    }
    if flags & FLAG_MMAP != 0 {
        info.mmap = Some((u32_at(raw, 48)?, u32_at(raw, 44)?));
    }
    Ok(info)
}

/// One boot module: bytes `[start, end)` and the address of its string.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Module {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Physical address of the NUL-terminated module string (0: none).
    pub string: u32,
}

impl Module {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    /// Whether the module is empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Decodes one [`MODULE_LEN`]-byte module entry.
pub fn parse_module(raw: &[u8]) -> Result<Module, Error> {
    let start = u64::from(u32_at(raw, 0)?);
    let end = u64::from(u32_at(raw, 4)?);
    if end < start {
        return Err(Error::BadModule);
    }
    Ok(Module {
        start,
        end,
        string: u32_at(raw, 8)?,
    })
}

/// One memory-map entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct MemRegion {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// Type ([`MMAP_RAM`] is usable RAM).
    pub kind: u32,
}

/// The entries of a memory map given as its bytes; a malformed tail ends the walk.
pub fn mmap_entries(raw: &[u8]) -> impl Iterator<Item = MemRegion> + '_ {
    let mut off = 0usize;
    core::iter::from_fn(move || {
        let size = u32_at(raw, off).ok()? as usize;
        // An entry is at least base, length and type (20 bytes) after its size field.
        if size < 20 {
            return None;
        }
        let entry = MemRegion {
            base: u64_at(raw, off + 4).ok()?,
            len: u64_at(raw, off + 12).ok()?,
            kind: u32_at(raw, off + 20).ok()?,
        };
        off = off.checked_add(size)?.checked_add(4)?;
        Some(entry)
    })
}

/// Splits a module string the way Xen x86 reads it: the first word names the file, the
/// rest is that image's command line.
pub fn split_module_string(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.split_once(' ') {
        Some((name, rest)) => (name, rest.trim_start()),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_bytes(flags: u32, fields: &[(usize, u32)]) -> [u8; INFO_LEN] {
        let mut raw = [0u8; INFO_LEN];
        raw[..4].copy_from_slice(&flags.to_le_bytes());
        for &(off, v) in fields {
            raw[off..off + 4].copy_from_slice(&v.to_le_bytes());
        }
        raw
    }

    #[test]
    fn info_fields_follow_flags() {
        let raw = info_bytes(
            FLAG_MEMORY | FLAG_MODULES,
            &[(8, 0x1fb80), (16, 0x1234), (20, 2), (24, 0x9000)],
        );
        let info = parse_info(&raw).unwrap();
        assert_eq!(info.mem_upper_kib, Some(0x1fb80));
        assert_eq!(info.cmdline, None, "no cmdline flag");
        assert_eq!(info.modules, Some((2, 0x9000)));
        assert_eq!(info.mmap, None);
    }

    #[test]
    fn bad_info_is_refused() {
        assert_eq!(parse_info(&[0u8; 10]), Err(Error::Truncated));
        let raw = info_bytes(FLAG_MODULES, &[(20, 1000)]);
        assert_eq!(parse_info(&raw), Err(Error::TooManyModules));
    }

    #[test]
    fn modules_decode_and_reject_reversed_ranges() {
        let mut raw = [0u8; MODULE_LEN];
        raw[..4].copy_from_slice(&0x20_0000u32.to_le_bytes());
        raw[4..8].copy_from_slice(&0x20_1000u32.to_le_bytes());
        raw[8..12].copy_from_slice(&0x8000u32.to_le_bytes());
        let m = parse_module(&raw).unwrap();
        assert_eq!((m.start, m.len(), m.string), (0x20_0000, 0x1000, 0x8000));
        raw[4..8].copy_from_slice(&0x1000u32.to_le_bytes());
        assert_eq!(parse_module(&raw), Err(Error::BadModule));
        assert_eq!(parse_module(&raw[..6]), Err(Error::Truncated));
    }

    #[test]
    fn mmap_walk_stops_at_malformed_entries() {
        let mut raw = alloc::vec::Vec::new();
        for (base, len, kind) in [(0u64, 0x9fc00u64, 1u32), (0x10_0000, 0x7ee_0000, 1)] {
            raw.extend_from_slice(&20u32.to_le_bytes());
            raw.extend_from_slice(&base.to_le_bytes());
            raw.extend_from_slice(&len.to_le_bytes());
            raw.extend_from_slice(&kind.to_le_bytes());
        }
        let all: alloc::vec::Vec<_> = mmap_entries(&raw).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].base, 0x10_0000);
        // A size field too small to hold an entry ends the walk instead of looping.
        raw.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(mmap_entries(&raw).count(), 2);
        // A truncated last entry is dropped.
        assert_eq!(mmap_entries(&raw[..30]).count(), 1);
    }

    #[test]
    fn module_strings_split_like_xen() {
        assert_eq!(
            split_module_string("/boot/vmlinuz console=hvc0 quiet"),
            ("/boot/vmlinuz", "console=hvc0 quiet")
        );
        assert_eq!(split_module_string("initrd.img"), ("initrd.img", ""));
        assert_eq!(split_module_string(""), ("", ""));
    }
}
