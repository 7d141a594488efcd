//! ELF64 kernels for PVH: the loadable segments (placed at their physical addresses) and the
//! 32-bit entry point from the `XEN_ELFNOTE_PHYS32_ENTRY` note, the way Xen's PVH loader
//! reads Linux's `vmlinux` (or a guest-kit x86 guest). The file is untrusted: every offset and
//! size is checked against the file and the destination before anything is copied.

use alloc::vec::Vec;

/// `\x7fELF`.
const MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
const CLASS_64: u8 = 2;
const DATA_LE: u8 = 1;
const MACHINE_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
/// Program header entry size of ELF64.
const PHDR_SIZE: usize = 56;
/// Most program headers accepted.
const MAX_PHDRS: usize = 64;
/// Xen's note name and the note type holding the PVH entry (`xen/include/public/elfnote.h`).
const XEN_NOTE_NAME: &[u8] = b"Xen\0";
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// What is wrong with an image.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ElfError {
    /// Not an ELF file (no magic).
    NotElf,
    /// Not ELF64 little-endian x86-64.
    WrongKind,
    /// A header, segment or note lies outside the file, or sizes are inconsistent.
    Malformed,
    /// No `XEN_ELFNOTE_PHYS32_ENTRY` note: not a PVH kernel.
    NoPvhEntry,
}

/// A loadable segment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Segment {
    /// Guest-physical destination.
    pub paddr: u64,
    /// Offset of its bytes in the file.
    pub offset: usize,
    /// Bytes taken from the file.
    pub filesz: usize,
    /// Bytes in memory (the rest are zero).
    pub memsz: u64,
}

/// A PVH kernel image.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PvhImage {
    /// The 32-bit entry point.
    pub entry32: u32,
    /// Loadable segments.
    pub segments: Vec<Segment>,
}

impl PvhImage {
    /// The guest-physical range the segments cover, `[low, high)`.
    pub fn span(&self) -> Option<(u64, u64)> {
        let low = self.segments.iter().map(|s| s.paddr).min()?;
        let high = self
            .segments
            .iter()
            .map(|s| s.paddr.checked_add(s.memsz))
            .try_fold(0u64, |acc, end| end.map(|e| acc.max(e)))?;
        Some((low, high))
    }
}

fn bytes<const N: usize>(file: &[u8], off: usize) -> Result<[u8; N], ElfError> {
    let end = off.checked_add(N).ok_or(ElfError::Malformed)?;
    let mut out = [0u8; N];
    out.copy_from_slice(file.get(off..end).ok_or(ElfError::Malformed)?);
    Ok(out)
}
fn u16_at(file: &[u8], off: usize) -> Result<u16, ElfError> {
    Ok(u16::from_le_bytes(bytes(file, off)?))
}
fn u32_at(file: &[u8], off: usize) -> Result<u32, ElfError> {
    Ok(u32::from_le_bytes(bytes(file, off)?))
}
fn u64_at(file: &[u8], off: usize) -> Result<u64, ElfError> {
    Ok(u64::from_le_bytes(bytes(file, off)?))
}
fn usize_of(v: u64) -> Result<usize, ElfError> {
    usize::try_from(v).map_err(|_| ElfError::Malformed)
}

/// Whether `file` starts like an ELF file.
pub fn is_elf(file: &[u8]) -> bool {
    file.starts_with(&MAGIC)
}

/// Parses a PVH kernel.
pub fn parse_pvh(file: &[u8]) -> Result<PvhImage, ElfError> {
    if !is_elf(file) {
        return Err(ElfError::NotElf);
    }
    let ident: [u8; 16] = bytes(file, 0)?;
    if ident[4] != CLASS_64 || ident[5] != DATA_LE || u16_at(file, 18)? != MACHINE_X86_64 {
        return Err(ElfError::WrongKind);
    }
    let phoff = usize_of(u64_at(file, 0x20)?)?;
    let phentsize = usize::from(u16_at(file, 0x36)?);
    let phnum = usize::from(u16_at(file, 0x38)?);
    if phentsize != PHDR_SIZE || phnum > MAX_PHDRS {
        return Err(ElfError::Malformed);
    }
    let mut segments = Vec::new();
    let mut entry32 = None;
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * PHDR_SIZE)
            .ok_or(ElfError::Malformed)?;
        let kind = u32_at(file, ph)?;
        let offset = usize_of(u64_at(file, ph + 0x08)?)?;
        let filesz = usize_of(u64_at(file, ph + 0x20)?)?;
        let end = offset.checked_add(filesz).ok_or(ElfError::Malformed)?;
        if end > file.len() {
            return Err(ElfError::Malformed);
        }
        match kind {
            PT_LOAD => {
                let memsz = u64_at(file, ph + 0x28)?;
                if (filesz as u64) > memsz {
                    return Err(ElfError::Malformed);
                }
                let paddr = u64_at(file, ph + 0x18)?;
                paddr.checked_add(memsz).ok_or(ElfError::Malformed)?;
                segments.push(Segment {
                    paddr,
                    offset,
                    filesz,
                    memsz,
                });
            }
            PT_NOTE => {
                if let Some(e) = find_pvh_note(&file[offset..end])? {
                    entry32 = Some(e);
                }
            }
            _ => {}
        }
    }
    Ok(PvhImage {
        entry32: entry32.ok_or(ElfError::NoPvhEntry)?,
        segments,
    })
}

/// Walks the notes of one PT_NOTE segment for Xen's PHYS32_ENTRY.
fn find_pvh_note(notes: &[u8]) -> Result<Option<u32>, ElfError> {
    let mut off = 0usize;
    while off + 12 <= notes.len() {
        let namesz = u32_at(notes, off)? as usize;
        let descsz = u32_at(notes, off + 4)? as usize;
        let kind = u32_at(notes, off + 8)?;
        let name_at = off + 12;
        let desc_at = name_at
            .checked_add(namesz.next_multiple_of(4))
            .ok_or(ElfError::Malformed)?;
        let next = desc_at
            .checked_add(descsz.next_multiple_of(4))
            .ok_or(ElfError::Malformed)?;
        if next > notes.len() {
            return Err(ElfError::Malformed);
        }
        if &notes[name_at..name_at + namesz] == XEN_NOTE_NAME && kind == XEN_ELFNOTE_PHYS32_ENTRY {
            // Linux writes a pointer-sized value, guest-kit a 32-bit one.
            let value = match descsz {
                4 => u64::from(u32_at(notes, desc_at)?),
                8 => u64_at(notes, desc_at)?,
                _ => return Err(ElfError::Malformed),
            };
            return u32::try_from(value)
                .map(Some)
                .map_err(|_| ElfError::Malformed);
        }
        off = next;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 x86-64 file with one PT_LOAD (16 bytes at paddr 0x100000, memsz 0x2000) and
    /// one PT_NOTE holding `notes`.
    fn image(notes: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 0x40 + 2 * PHDR_SIZE];
        f[..4].copy_from_slice(&MAGIC);
        f[4] = CLASS_64;
        f[5] = DATA_LE;
        f[18..20].copy_from_slice(&MACHINE_X86_64.to_le_bytes());
        f[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        let data_at = f.len() as u64;
        let notes_at = data_at + 16;
        let ph =
            |f: &mut Vec<u8>, i: usize, kind: u32, off: u64, paddr: u64, fsz: u64, msz: u64| {
                let b = 0x40 + i * PHDR_SIZE;
                f[b..b + 4].copy_from_slice(&kind.to_le_bytes());
                f[b + 8..b + 16].copy_from_slice(&off.to_le_bytes());
                f[b + 0x18..b + 0x20].copy_from_slice(&paddr.to_le_bytes());
                f[b + 0x20..b + 0x28].copy_from_slice(&fsz.to_le_bytes());
                f[b + 0x28..b + 0x30].copy_from_slice(&msz.to_le_bytes());
            };
        ph(&mut f, 0, PT_LOAD, data_at, 0x10_0000, 16, 0x2000);
        ph(
            &mut f,
            1,
            PT_NOTE,
            notes_at,
            0,
            notes.len() as u64,
            notes.len() as u64,
        );
        f.extend_from_slice(&[0xaa; 16]);
        f.extend_from_slice(notes);
        f
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    #[test]
    fn pvh_entry_and_segments() {
        let mut notes = note(b"GNU\0", 3, &[1, 2, 3, 4, 5]);
        notes.extend(note(
            XEN_NOTE_NAME,
            XEN_ELFNOTE_PHYS32_ENTRY,
            &0x100_0040u64.to_le_bytes(),
        ));
        let img = parse_pvh(&image(&notes)).unwrap();
        assert_eq!(img.entry32, 0x100_0040);
        assert_eq!(img.segments.len(), 1);
        assert_eq!(
            (img.segments[0].paddr, img.segments[0].filesz),
            (0x10_0000, 16)
        );
        assert_eq!(img.span(), Some((0x10_0000, 0x10_2000)));
        // A 4-byte descriptor (guest-kit's) works too.
        let short = note(
            XEN_NOTE_NAME,
            XEN_ELFNOTE_PHYS32_ENTRY,
            &0x10_0000u32.to_le_bytes(),
        );
        assert_eq!(parse_pvh(&image(&short)).unwrap().entry32, 0x10_0000);
    }

    #[test]
    fn bad_images_are_refused() {
        assert_eq!(parse_pvh(b"MZ not elf"), Err(ElfError::NotElf));
        assert_eq!(parse_pvh(&MAGIC), Err(ElfError::Malformed));
        let good_note = note(
            XEN_NOTE_NAME,
            XEN_ELFNOTE_PHYS32_ENTRY,
            &0x10_0000u32.to_le_bytes(),
        );
        // No PVH note: not a PVH kernel.
        assert_eq!(
            parse_pvh(&image(&note(b"Xen\0", 5, b"linux\0\0\0"))),
            Err(ElfError::NoPvhEntry)
        );
        // 32-bit class, big-endian, other machine.
        for (at, value) in [(4usize, 1u8), (5, 2), (18, 40)] {
            let mut f = image(&good_note);
            f[at] = value;
            assert_eq!(parse_pvh(&f), Err(ElfError::WrongKind));
        }
        // A segment running past the end of the file.
        let mut f = image(&good_note);
        f[0x40 + 0x20..0x40 + 0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse_pvh(&f), Err(ElfError::Malformed));
        // filesz > memsz.
        let mut f = image(&good_note);
        f[0x40 + 0x28..0x40 + 0x30].copy_from_slice(&1u64.to_le_bytes());
        assert_eq!(parse_pvh(&f), Err(ElfError::Malformed));
        // paddr + memsz overflowing.
        let mut f = image(&good_note);
        f[0x40 + 0x18..0x40 + 0x20].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse_pvh(&f), Err(ElfError::Malformed));
        // A note whose descriptor size runs past its segment.
        let mut bad = good_note.clone();
        bad[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(parse_pvh(&image(&bad)), Err(ElfError::Malformed));
        // An entry above 4 GiB cannot be a 32-bit entry.
        let high = note(
            XEN_NOTE_NAME,
            XEN_ELFNOTE_PHYS32_ENTRY,
            &(1u64 << 32).to_le_bytes(),
        );
        assert_eq!(parse_pvh(&image(&high)), Err(ElfError::Malformed));
        // Too many program headers; truncation at every length never panics.
        let mut f = image(&good_note);
        f[0x38..0x3a].copy_from_slice(&1000u16.to_le_bytes());
        assert_eq!(parse_pvh(&f), Err(ElfError::Malformed));
        let f = image(&good_note);
        for len in 0..f.len() {
            assert!(parse_pvh(&f[..len]).is_err());
        }
    }
}
