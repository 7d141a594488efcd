//! Writer for the cpio "newc" format the Linux kernel unpacks as an initramfs.
//!
//! Entries are written as data, so device nodes need neither root nor mknod on the host.

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// Builds a newc archive in memory.
pub struct CpioWriter {
    out: Vec<u8>,
    next_inode: u32,
}

/// The header fields of one entry that differ between entry kinds.
struct Entry<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    data: &'a [u8],
    rdev: (u32, u32),
}

impl CpioWriter {
    pub fn new() -> Self {
        CpioWriter {
            out: Vec::new(),
            next_inode: 1,
        }
    }

    /// A directory; `path` is relative to the archive root, without a leading `/`.
    pub fn dir(&mut self, path: &str, perm: u32) {
        self.push(Entry {
            name: path,
            mode: S_IFDIR | (perm & 0o7777),
            nlink: 2,
            data: &[],
            rdev: (0, 0),
        });
    }

    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) {
        self.push(Entry {
            name: path,
            mode: S_IFREG | (perm & 0o7777),
            nlink: 1,
            data,
            rdev: (0, 0),
        });
    }

    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.push(Entry {
            name: path,
            mode: S_IFCHR | (perm & 0o7777),
            nlink: 1,
            data: &[],
            rdev: (major, minor),
        });
    }

    /// Appends the end-of-archive marker and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_inode = 0;
        self.push(Entry {
            name: TRAILER,
            mode: 0,
            nlink: 1,
            data: &[],
            rdev: (0, 0),
        });
        self.out
    }

    fn push(&mut self, entry: Entry) {
        let inode = self.next_inode;
        if inode != 0 {
            self.next_inode += 1;
        }
        let fields = [
            inode,
            entry.mode,
            0, // uid
            0, // gid
            entry.nlink,
            0, // mtime: fixed, so the archive is reproducible
            entry.data.len() as u32,
            0, // devmajor
            0, // devminor
            entry.rdev.0,
            entry.rdev.1,
            entry.name.len() as u32 + 1, // name size counts the NUL
            0,                           // check (only used by the "crc" variant)
        ];
        self.out.extend_from_slice(MAGIC.as_bytes());
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(entry.name.as_bytes());
        self.out.push(0);
        self.pad4();
        self.out.extend_from_slice(entry.data);
        self.pad4();
    }

    fn pad4(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, rdevmajor, rdevminor, data) of each entry, read back from an archive.
    fn parse(mut archive: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut entries = Vec::new();
        let mut consumed = 0usize;
        loop {
            assert_eq!(&archive[..6], MAGIC.as_bytes());
            let field = |i: usize| {
                let text = std::str::from_utf8(&archive[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(text, 16).unwrap()
            };
            let (mode, size, rmaj, rmin, namesize) =
                (field(1), field(6), field(9), field(10), field(11));
            let name_end = 110 + namesize as usize;
            assert_eq!(archive[name_end - 1], 0, "name is NUL-terminated");
            let name = String::from_utf8(archive[110..name_end - 1].to_vec()).unwrap();
            let data_start = (consumed + name_end).next_multiple_of(4) - consumed;
            let data = archive[data_start..data_start + size as usize].to_vec();
            let next = (consumed + data_start + size as usize).next_multiple_of(4) - consumed;
            consumed += next;
            archive = &archive[next..];
            if name == TRAILER {
                assert!(archive.is_empty());
                return entries;
            }
            entries.push((name, mode, rmaj, rmin, data));
        }
    }

    #[test]
    fn round_trips_dirs_files_and_devices() {
        let mut cpio = CpioWriter::new();
        cpio.dir("dev", 0o755);
        cpio.char_device("dev/console", 0o600, 5, 1);
        cpio.file("init", 0o755, b"#!/bin/sh\n");
        cpio.file("odd", 0o644, b"12345");
        let archive = cpio.finish();
        assert_eq!(archive.len() % 4, 0);
        let entries = parse(&archive);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0], ("dev".into(), 0o040755, 0, 0, vec![]));
        assert_eq!(entries[1], ("dev/console".into(), 0o020600, 5, 1, vec![]));
        assert_eq!(
            entries[2],
            ("init".into(), 0o100755, 0, 0, b"#!/bin/sh\n".to_vec())
        );
        assert_eq!(entries[3].4, b"12345");
    }

    #[test]
    fn permission_bits_cannot_change_the_entry_type() {
        let mut cpio = CpioWriter::new();
        cpio.file("f", 0o170777, b"");
        let entries = parse(&cpio.finish());
        assert_eq!(entries[0].1, S_IFREG | 0o777);
    }

    #[test]
    fn empty_archive_is_just_the_trailer() {
        let archive = CpioWriter::new().finish();
        assert!(parse(&archive).is_empty());
        assert!(archive
            .windows(TRAILER.len())
            .any(|w| w == TRAILER.as_bytes()));
    }
}
