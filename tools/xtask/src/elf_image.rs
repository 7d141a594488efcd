//! ELF → flat binary image, the form boot loaders (QEMU `-kernel`, U-Boot `booti`) load.
//!
//! Every PT_LOAD segment's file bytes land at `p_paddr - lowest p_paddr`; gaps between segments
//! are zero; the zero-initialised tail of a segment (bss) is left out, the image clears it itself.

use std::path::Path;

use object::elf::{FileHeader64, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;

/// Largest image we agree to produce; a bigger one means segments far apart (a linker-script bug).
const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// One loadable segment's file bytes and where they go.
struct Piece<'a> {
    paddr: u64,
    bytes: &'a [u8],
}

/// Flattens a 64-bit ELF file's loadable segments into one image starting at the lowest
/// physical address.
pub fn flatten(elf: &[u8]) -> Result<Vec<u8>, String> {
    let header = FileHeader64::<Endianness>::parse(elf)
        .map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
    let endian = header
        .endian()
        .map_err(|e| format!("bad ELF header: {e}"))?;
    let segments = header
        .program_headers(endian, elf)
        .map_err(|e| format!("bad ELF program headers: {e}"))?;

    let mut pieces = Vec::new();
    for segment in segments {
        if segment.p_type(endian) != PT_LOAD || segment.p_filesz(endian) == 0 {
            continue;
        }
        let bytes = segment
            .data(endian, elf)
            .map_err(|_| "a PT_LOAD segment lies outside the file".to_string())?;
        pieces.push(Piece {
            paddr: segment.p_paddr(endian),
            bytes,
        });
    }
    if pieces.is_empty() {
        return Err("the ELF file has no loadable bytes".into());
    }
    pieces.sort_by_key(|p| p.paddr);

    let base = pieces[0].paddr;
    let mut end = base;
    for piece in &pieces {
        if piece.paddr < end {
            return Err(format!(
                "PT_LOAD segments overlap at physical address {:#x}",
                piece.paddr
            ));
        }
        end = piece
            .paddr
            .checked_add(piece.bytes.len() as u64)
            .ok_or("a PT_LOAD segment wraps the address space")?;
    }
    let size = end - base;
    if size > MAX_IMAGE_BYTES {
        return Err(format!(
            "flat image would be {size} bytes (segments too far apart)"
        ));
    }

    let mut image = vec![0u8; size as usize];
    for piece in &pieces {
        let start = (piece.paddr - base) as usize;
        image[start..start + piece.bytes.len()].copy_from_slice(piece.bytes);
    }
    Ok(image)
}

/// Reads the ELF at `elf_path` and writes its flat image to `out_path`.
pub fn flatten_file(elf_path: &Path, out_path: &Path) -> Result<(), String> {
    let elf =
        std::fs::read(elf_path).map_err(|e| format!("reading {}: {e}", elf_path.display()))?;
    let image = flatten(&elf).map_err(|e| format!("{}: {e}", elf_path.display()))?;
    crate::util::write_file(out_path, &image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (type, paddr, file bytes, memsz) of one program header.
    type Seg<'a> = (u32, u64, &'a [u8], u64);

    /// Builds a little-endian ELF64 file with the given program headers; segment data follows
    /// the headers in order.
    fn make_elf(segs: &[Seg]) -> Vec<u8> {
        let ph_off = 64u64;
        let data_start = ph_off + 56 * segs.len() as u64;
        let mut out = Vec::new();
        out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&2u16.to_le_bytes()); // e_type EXEC
        out.extend_from_slice(&183u16.to_le_bytes()); // e_machine AArch64
        out.extend_from_slice(&1u32.to_le_bytes()); // e_version
        out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
        out.extend_from_slice(&ph_off.to_le_bytes()); // e_phoff
        out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        out.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
        out.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
        out.extend_from_slice(&(segs.len() as u16).to_le_bytes());
        out.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
        out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
        let mut offset = data_start;
        for (p_type, paddr, bytes, memsz) in segs {
            out.extend_from_slice(&p_type.to_le_bytes());
            out.extend_from_slice(&5u32.to_le_bytes()); // flags
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&(paddr + 0xffff_0000_0000).to_le_bytes()); // vaddr differs
            out.extend_from_slice(&paddr.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&memsz.to_le_bytes());
            out.extend_from_slice(&0x1000u64.to_le_bytes());
            offset += bytes.len() as u64;
        }
        for (_, _, bytes, _) in segs {
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn places_segments_by_paddr_and_zero_fills_gaps() {
        let elf = make_elf(&[
            (PT_LOAD, 0x4000_0010, b"DATA", 4),
            (PT_LOAD, 0x4000_0000, b"CODE", 4),
        ]);
        let image = flatten(&elf).unwrap();
        assert_eq!(image.len(), 0x14);
        assert_eq!(&image[..4], b"CODE");
        assert!(image[4..0x10].iter().all(|&b| b == 0));
        assert_eq!(&image[0x10..], b"DATA");
    }

    #[test]
    fn leaves_out_trailing_bss_and_non_load_segments() {
        let elf = make_elf(&[
            (PT_LOAD, 0x1000, b"text", 4),
            (PT_LOAD, 0x1004, b"dd", 0x1000), // .data followed by .bss
            (PT_LOAD, 0x3000, b"", 0x2000),   // pure bss
            (1 /* not PT_LOAD */ + 0x6474e550, 0x9000, b"xx", 2),
        ]);
        let image = flatten(&elf).unwrap();
        assert_eq!(image, b"textdd");
    }

    #[test]
    fn rejects_overlapping_segments() {
        let elf = make_elf(&[(PT_LOAD, 0x1000, b"aaaa", 4), (PT_LOAD, 0x1002, b"bb", 2)]);
        assert!(flatten(&elf).unwrap_err().contains("overlap"));
    }

    #[test]
    fn rejects_far_apart_segments() {
        let elf = make_elf(&[
            (PT_LOAD, 0x1000, b"a", 1),
            (PT_LOAD, 0x10_0000_0000, b"b", 1),
        ]);
        assert!(flatten(&elf).unwrap_err().contains("too far apart"));
    }

    #[test]
    fn rejects_garbage_truncated_and_empty_files() {
        assert!(flatten(b"").is_err());
        assert!(flatten(b"hello, this is not an ELF file at all, not even close........").is_err());
        let elf = make_elf(&[(PT_LOAD, 0x1000, b"abcdefgh", 8)]);
        assert!(
            flatten(&elf[..elf.len() - 4]).is_err(),
            "segment data cut off"
        );
        assert!(flatten(&make_elf(&[])).unwrap_err().contains("no loadable"));
    }
}
