//! The Linux arm64 `Image` header (Linux `Documentation/arch/arm64/booting.rst`), which Mica,
//! Xen and QEMU use to load kernels and guest-kit guests alike.

/// Size of the header at the start of the image.
pub const HEADER_SIZE: usize = 64;
/// Byte offset of `text_offset` (u64, little endian).
pub const TEXT_OFFSET_AT: usize = 8;
/// Byte offset of `image_size` (u64): bytes from the load address the image needs, .bss
/// included. Zero in images older than Linux 3.17.
pub const IMAGE_SIZE_AT: usize = 16;
/// Byte offset of `flags` (u64).
pub const FLAGS_AT: usize = 24;
/// Byte offset of the magic number (u32).
pub const MAGIC_AT: usize = 56;
/// The magic number, "ARM\x64" read as a little-endian u32.
pub const MAGIC: u32 = 0x644d_5241;

/// Flags bit 0: the kernel is big endian.
pub const FLAG_BIG_ENDIAN: u64 = 1 << 0;
/// Flags bits 2:1: page size the kernel uses (0 unspecified, 1 4K, 2 16K, 3 64K).
pub const FLAG_PAGE_SIZE_MASK: u64 = 0b11 << 1;
/// Flags bits 2:1 = 1: 4 KiB pages.
pub const FLAG_PAGE_SIZE_4K: u64 = 1 << 1;
/// Flags bit 3: the image may be placed anywhere in RAM (2 MiB aligned, plus `text_offset`);
/// when clear it must sit as close as possible to the base of DRAM.
pub const FLAG_PLACE_ANYWHERE: u64 = 1 << 3;
/// Alignment of the load address (before adding `text_offset`).
pub const LOAD_ALIGN: u64 = 2 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_is_arm64_in_little_endian() {
        assert_eq!(MAGIC.to_le_bytes(), *b"ARM\x64");
    }

    #[test]
    fn fields_read_back_from_a_header() {
        let mut header = [0u8; HEADER_SIZE];
        header[TEXT_OFFSET_AT..TEXT_OFFSET_AT + 8].copy_from_slice(&0x8_0000u64.to_le_bytes());
        header[IMAGE_SIZE_AT..IMAGE_SIZE_AT + 8].copy_from_slice(&0x3_3000u64.to_le_bytes());
        header[FLAGS_AT..FLAGS_AT + 8].copy_from_slice(&0xau64.to_le_bytes());
        header[MAGIC_AT..MAGIC_AT + 4].copy_from_slice(b"ARM\x64");
        let u64_at =
            |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        assert_eq!(u64_at(TEXT_OFFSET_AT), 0x8_0000);
        assert_eq!(u64_at(IMAGE_SIZE_AT), 0x3_3000);
        assert_eq!(u64_at(FLAGS_AT), 0xa);
        assert_eq!(
            u32::from_le_bytes(header[MAGIC_AT..MAGIC_AT + 4].try_into().expect("4 bytes")),
            MAGIC
        );
    }

    #[test]
    fn guest_kit_flags_are_le_4k_anywhere() {
        let flags = FLAG_PAGE_SIZE_4K | FLAG_PLACE_ANYWHERE;
        assert_eq!(flags, 0xa);
        assert_eq!(flags & FLAG_BIG_ENDIAN, 0);
        assert_eq!((flags & FLAG_PAGE_SIZE_MASK) >> 1, 1);
    }
}
