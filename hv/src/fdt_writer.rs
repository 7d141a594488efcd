//! Writes flattened device trees (the devicetree specification's "Flattened Devicetree (DTB)
//! Format": header, memory reservation block, structure block, strings block), for the trees
//! Mica gives its guests.
//!
//! Mica's own, rather than a general-purpose crate: the guests' trees are written once per
//! domain, so a linear search for repeated property names and a pairwise check of the few
//! memory reservations do, and the image carries no hash map, ordered map or sort for them.

use alloc::vec::Vec;
use core::fmt;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_END: u32 = 9;
/// The format version written, and the oldest one it stays compatible with.
const FDT_VERSION: u32 = 17;
const FDT_LAST_COMP_VERSION: u32 = 16;
/// Ten big-endian 32-bit fields.
const HEADER_SIZE: usize = 40;
/// Byte offsets of the header fields filled in by `finish`.
const TOTALSIZE_AT: usize = 4;
const OFF_DT_STRUCT_AT: usize = 8;
const OFF_DT_STRINGS_AT: usize = 12;
const OFF_MEM_RSVMAP_AT: usize = 16;
const VERSION_AT: usize = 20;
const LAST_COMP_VERSION_AT: usize = 24;
const SIZE_DT_STRINGS_AT: usize = 32;
const SIZE_DT_STRUCT_AT: usize = 36;
/// The specification's longest node name (before the `@`) and property name.
const NODE_NAME_MAX: usize = 31;
const PROPERTY_NAME_MAX: usize = 31;
/// Deepest nesting written (Mica's readers accept less; see `bootcfg`).
const MAX_DEPTH: usize = 64;

/// Why the writer refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// A node name breaks the specification's rules (characters, length, one `@`).
    InvalidNodeName,
    /// A property name breaks the specification's rules (characters, length).
    InvalidPropertyName,
    /// A string value contains a NUL byte.
    InvalidString,
    /// Nodes ended in another order than begun, a property outside a node or after a child
    /// node, nesting too deep, or nodes left open at `finish`.
    BadNesting,
    /// Two memory reservations overlap, or one wraps around the address space.
    BadMemoryReservation,
    /// The tree or a property outgrows the format's 32-bit sizes.
    TooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidNodeName => "invalid node name",
            Self::InvalidPropertyName => "invalid property name",
            Self::InvalidString => "string with a NUL byte",
            Self::BadNesting => "nodes and properties out of order",
            Self::BadMemoryReservation => "overlapping or wrapping memory reservation",
            Self::TooLarge => "tree too large",
        })
    }
}

type Result<T> = core::result::Result<T, Error>;

/// An open node, handed back to [`FdtWriter::end_node`] to close it.
#[must_use]
#[derive(Debug)]
pub struct Node {
    depth: usize,
}

/// A device tree being written, node by node, properties before child nodes.
pub struct FdtWriter {
    /// Header, memory reservations and the structure block so far.
    data: Vec<u8>,
    /// The strings block: property names, each once, NUL-terminated.
    strings: Vec<u8>,
    off_dt_struct: usize,
    depth: usize,
    /// Whether a child node has ended since the open node began (no more properties then).
    child_ended: bool,
}

impl FdtWriter {
    /// A tree with no memory reservations.
    pub fn new() -> Result<Self> {
        Self::new_with_mem_reserv(&[])
    }

    /// A tree whose memory reservation block lists `reservations` (address, size).
    pub fn new_with_mem_reserv(reservations: &[(u64, u64)]) -> Result<Self> {
        for (k, &(address, size)) in reservations.iter().enumerate() {
            let end = address
                .checked_add(size)
                .ok_or(Error::BadMemoryReservation)?;
            let overlaps = reservations[..k]
                .iter()
                .any(|&(a, s)| address < a.saturating_add(s) && a < end);
            if overlaps {
                return Err(Error::BadMemoryReservation);
            }
        }
        let mut data = Vec::with_capacity(HEADER_SIZE + 16 * (reservations.len() + 1));
        data.resize(HEADER_SIZE, 0);
        // The header is 8-byte aligned already, as the reservation block must be.
        for &(address, size) in reservations.iter().chain([(0, 0)].iter()) {
            data.extend_from_slice(&address.to_be_bytes());
            data.extend_from_slice(&size.to_be_bytes());
        }
        let off_dt_struct = data.len();
        Ok(Self {
            data,
            strings: Vec::new(),
            off_dt_struct,
            depth: 0,
            child_ended: false,
        })
    }

    fn push_u32(&mut self, value: u32) {
        self.data.extend_from_slice(&value.to_be_bytes());
    }

    /// Pads the structure block with zeros to a 4-byte boundary.
    fn align(&mut self) {
        let padded = self.data.len().next_multiple_of(4);
        self.data.resize(padded, 0);
    }

    /// Opens a child of the open node (or the root, named ""). Properties of the new node
    /// come before its own children.
    pub fn begin_node(&mut self, name: &str) -> Result<Node> {
        if self.depth >= MAX_DEPTH {
            return Err(Error::BadNesting);
        }
        if !node_name_valid(name) {
            return Err(Error::InvalidNodeName);
        }
        self.push_u32(FDT_BEGIN_NODE);
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.align();
        self.depth += 1;
        self.child_ended = false;
        Ok(Node { depth: self.depth })
    }

    /// Closes `node`, which must be the innermost open one.
    pub fn end_node(&mut self, node: Node) -> Result<()> {
        if node.depth != self.depth {
            return Err(Error::BadNesting);
        }
        self.push_u32(FDT_END_NODE);
        self.depth -= 1;
        self.child_ended = true;
        Ok(())
    }

    /// The offset of `name` in the strings block, adding it the first time.
    fn name_offset(&mut self, name: &str) -> Result<u32> {
        let mut at = 0;
        for entry in self.strings.split(|&b| b == 0) {
            if entry == name.as_bytes() && at + entry.len() < self.strings.len() {
                return u32::try_from(at).map_err(|_| Error::TooLarge);
            }
            at += entry.len() + 1;
        }
        let offset = u32::try_from(self.strings.len()).map_err(|_| Error::TooLarge)?;
        self.strings.extend_from_slice(name.as_bytes());
        self.strings.push(0);
        Ok(offset)
    }

    /// Adds property `name` with raw `value` to the open node.
    pub fn property(&mut self, name: &str, value: &[u8]) -> Result<()> {
        if self.depth == 0 || self.child_ended {
            return Err(Error::BadNesting);
        }
        if !property_name_valid(name) {
            return Err(Error::InvalidPropertyName);
        }
        let len = u32::try_from(value.len()).map_err(|_| Error::TooLarge)?;
        let name_offset = self.name_offset(name)?;
        self.push_u32(FDT_PROP);
        self.push_u32(len);
        self.push_u32(name_offset);
        self.data.extend_from_slice(value);
        self.align();
        Ok(())
    }

    /// A property with no value (a flag such as `interrupt-controller`).
    pub fn property_null(&mut self, name: &str) -> Result<()> {
        self.property(name, &[])
    }

    /// A NUL-terminated string.
    pub fn property_string(&mut self, name: &str, value: &str) -> Result<()> {
        self.property_string_list(name, &[value])
    }

    /// NUL-terminated strings one after another (a `compatible` list).
    pub fn property_string_list(&mut self, name: &str, values: &[&str]) -> Result<()> {
        let mut bytes = Vec::with_capacity(values.iter().map(|v| v.len() + 1).sum());
        for v in values {
            if v.as_bytes().contains(&0) {
                return Err(Error::InvalidString);
            }
            bytes.extend_from_slice(v.as_bytes());
            bytes.push(0);
        }
        self.property(name, &bytes)
    }

    /// One 32-bit cell.
    pub fn property_u32(&mut self, name: &str, value: u32) -> Result<()> {
        self.property(name, &value.to_be_bytes())
    }

    /// Two cells holding a 64-bit value.
    pub fn property_u64(&mut self, name: &str, value: u64) -> Result<()> {
        self.property(name, &value.to_be_bytes())
    }

    /// 32-bit cells.
    pub fn property_array_u32(&mut self, name: &str, cells: &[u32]) -> Result<()> {
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.property(name, &bytes)
    }

    /// 64-bit values, two cells each.
    pub fn property_array_u64(&mut self, name: &str, values: &[u64]) -> Result<()> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        self.property(name, &bytes)
    }

    /// The finished blob: structure block ended, strings block appended, header filled in.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        if self.depth != 0 {
            return Err(Error::BadNesting);
        }
        self.push_u32(FDT_END);
        let off_dt_strings = self.data.len();
        let size_dt_struct = off_dt_strings - self.off_dt_struct;
        self.data.extend_from_slice(&self.strings);
        let size = |n: usize| u32::try_from(n).map_err(|_| Error::TooLarge);
        let header = [
            (0, FDT_MAGIC),
            (TOTALSIZE_AT, size(self.data.len())?),
            (OFF_DT_STRUCT_AT, size(self.off_dt_struct)?),
            (OFF_DT_STRINGS_AT, size(off_dt_strings)?),
            (OFF_MEM_RSVMAP_AT, size(HEADER_SIZE)?),
            (VERSION_AT, FDT_VERSION),
            (LAST_COMP_VERSION_AT, FDT_LAST_COMP_VERSION),
            (SIZE_DT_STRINGS_AT, size(self.strings.len())?),
            (SIZE_DT_STRUCT_AT, size(size_dt_struct)?),
        ];
        // boot_cpuid_phys (offset 28) stays 0: guests boot on vCPU 0.
        for (at, value) in header {
            self.data[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        Ok(self.data)
    }
}

/// `name[@unit-address]`: a name of 1 to 31 characters starting with a letter, then letters,
/// digits and `,._+-`; the unit address of the same characters. The root's name is empty.
fn node_name_valid(name: &str) -> bool {
    if name.is_empty() {
        return true;
    }
    let allowed = |c: &u8| c.is_ascii_alphanumeric() || b",._+-".contains(c);
    let (base, unit) = match name.split_once('@') {
        Some((base, unit)) => (base, unit),
        None => (name, ""),
    };
    base.len() <= NODE_NAME_MAX
        && base.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && base.as_bytes().iter().all(allowed)
        && unit.as_bytes().iter().all(allowed)
}

/// 1 to 31 characters: letters, digits and `,._+?#-`.
fn property_name_valid(name: &str) -> bool {
    (1..=PROPERTY_NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b",._+?#-".contains(&c))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use fdt::Fdt;

    fn sample(reservations: &[(u64, u64)]) -> Vec<u8> {
        let mut w = FdtWriter::new_with_mem_reserv(reservations).unwrap();
        let root = w.begin_node("").unwrap();
        w.property_string_list("compatible", &["a,b", "c"]).unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let n = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x1000_0000])
            .unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("intc").unwrap();
        w.property_null("interrupt-controller").unwrap();
        w.property_array_u32("interrupts", &[1, 2, 3]).unwrap();
        w.property_u64("x,wide", 0x1_0000_0002).unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn reads_back_with_the_fdt_crate_and_mica_s_validator() {
        let blob = sample(&[(0x4800_0000, 0x1000)]);
        assert!(crate::bootcfg::validate(&blob).is_ok());
        let fdt = Fdt::new(&blob).unwrap();
        let root = fdt.find_node("/").unwrap();
        let compatible = root.property("compatible").unwrap().value;
        assert_eq!(compatible, b"a,b\0c\0");
        let memory = fdt.find_node("/memory@40000000").unwrap();
        assert_eq!(
            memory.property("device_type").unwrap().as_str(),
            Some("memory")
        );
        let reg = memory.property("reg").unwrap().value;
        assert_eq!(
            reg,
            [0x4000_0000u64.to_be_bytes(), 0x1000_0000u64.to_be_bytes()].concat()
        );
        let intc = fdt.find_node("/intc").unwrap();
        assert_eq!(intc.property("interrupt-controller").unwrap().value, b"");
        assert_eq!(
            intc.property("interrupts").unwrap().value,
            [0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]
        );
        assert_eq!(
            intc.property("x,wide").unwrap().as_usize(),
            Some(0x1_0000_0002)
        );
        let reserved: Vec<_> = fdt
            .memory_reservations()
            .map(|r| (r.address() as u64, r.size() as u64))
            .collect();
        assert_eq!(reserved, [(0x4800_0000, 0x1000)]);
    }

    /// The same tree through the vm-fdt crate (the writer Mica used before) comes out byte
    /// for byte the same.
    #[test]
    fn same_bytes_as_vm_fdt() {
        let reservation = vm_fdt::FdtReserveEntry::new(0x4800_0000, 0x1000).unwrap();
        let mut w = vm_fdt::FdtWriter::new_with_mem_reserv(&[reservation]).unwrap();
        let root = w.begin_node("").unwrap();
        w.property_string_list("compatible", vec!["a,b".into(), "c".into()])
            .unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let n = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x1000_0000])
            .unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("intc").unwrap();
        w.property_null("interrupt-controller").unwrap();
        w.property_array_u32("interrupts", &[1, 2, 3]).unwrap();
        w.property_u64("x,wide", 0x1_0000_0002).unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        assert_eq!(sample(&[(0x4800_0000, 0x1000)]), w.finish().unwrap());
    }

    #[test]
    fn header_fields_and_shared_names() {
        let blob = sample(&[]);
        let field = |at: usize| u32::from_be_bytes(blob[at..at + 4].try_into().unwrap());
        assert_eq!(field(0), FDT_MAGIC);
        assert_eq!(field(TOTALSIZE_AT) as usize, blob.len());
        assert_eq!(field(VERSION_AT), 17);
        assert_eq!(field(LAST_COMP_VERSION_AT), 16);
        assert_eq!(field(OFF_MEM_RSVMAP_AT) as usize, HEADER_SIZE);
        // An empty reservation block is just its terminating entry.
        assert_eq!(field(OFF_DT_STRUCT_AT) as usize, HEADER_SIZE + 16);
        let strings = field(OFF_DT_STRINGS_AT) as usize;
        assert_eq!(strings + field(SIZE_DT_STRINGS_AT) as usize, blob.len());
        assert_eq!(
            field(OFF_DT_STRUCT_AT) + field(SIZE_DT_STRUCT_AT),
            field(OFF_DT_STRINGS_AT)
        );
        // Each property name once, in first-use order.
        assert_eq!(
            &blob[strings..],
            b"compatible\0#address-cells\0#size-cells\0device_type\0reg\0\
              interrupt-controller\0interrupts\0x,wide\0"
        );
    }

    #[test]
    fn a_name_that_is_the_tail_of_another_gets_its_own_entry() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("ab", 1).unwrap();
        w.property_u32("a", 2).unwrap();
        w.property_u32("ab", 3).unwrap();
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        let fdt = Fdt::new(&blob).unwrap();
        let names: Vec<_> = fdt
            .find_node("/")
            .unwrap()
            .properties()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["ab", "a", "ab"]);
    }

    #[test]
    fn refuses_bad_names_and_strings() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        for bad in ["1abc", "a@b@c", "a b", "@1", "a\0", &"n".repeat(32)] {
            assert_eq!(
                w.begin_node(bad).unwrap_err(),
                Error::InvalidNodeName,
                "{bad:?}"
            );
        }
        assert!(w.begin_node(&format!("{}@ffff", "n".repeat(31))).is_ok());
        let mut w = FdtWriter::new().unwrap();
        let _root = w.begin_node("").unwrap();
        for bad in ["", "a b", "a@b", "a\0", &"p".repeat(32)] {
            assert_eq!(
                w.property_u32(bad, 0).unwrap_err(),
                Error::InvalidPropertyName,
                "{bad:?}"
            );
        }
        assert!(w.property_u32(&"p".repeat(31), 0).is_ok());
        assert_eq!(
            w.property_string("s", "a\0b").unwrap_err(),
            Error::InvalidString
        );
        drop(root);
    }

    #[test]
    fn refuses_bad_nesting() {
        let mut w = FdtWriter::new().unwrap();
        assert_eq!(w.property_u32("a", 0).unwrap_err(), Error::BadNesting);
        let root = w.begin_node("").unwrap();
        let child = w.begin_node("c").unwrap();
        assert_eq!(w.end_node(root).unwrap_err(), Error::BadNesting);
        w.end_node(child).unwrap();
        // Properties of the root after its child: not allowed by the format.
        assert_eq!(w.property_u32("a", 0).unwrap_err(), Error::BadNesting);
        let mut w = FdtWriter::new().unwrap();
        let _root = w.begin_node("").unwrap();
        assert_eq!(w.finish().unwrap_err(), Error::BadNesting);
        let mut w = FdtWriter::new().unwrap();
        let mut open = Vec::new();
        for _ in 0..MAX_DEPTH {
            open.push(w.begin_node("n").unwrap());
        }
        assert_eq!(w.begin_node("n").unwrap_err(), Error::BadNesting);
    }

    #[test]
    fn refuses_overlapping_or_wrapping_reservations() {
        let bad = |r: &[(u64, u64)]| FdtWriter::new_with_mem_reserv(r).err();
        assert_eq!(
            bad(&[(0x1000, 0x2000), (0x2fff, 1)]),
            Some(Error::BadMemoryReservation)
        );
        assert_eq!(
            bad(&[(0x2fff, 1), (0x1000, 0x2000)]),
            Some(Error::BadMemoryReservation)
        );
        assert_eq!(bad(&[(u64::MAX, 2)]), Some(Error::BadMemoryReservation));
        assert_eq!(bad(&[(0x1000, 0x1000), (0x2000, 0x1000)]), None);
    }
}
