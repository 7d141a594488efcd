//! Known boards, keyed by the root node's `compatible`. A board that is not listed runs
//! with no quirks: everything Mica needs is in its device tree.

/// What Mica knows about a board beyond its device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Board {
    /// A name for the log.
    pub name: &'static str,
    /// Root `compatible` strings that select this board.
    pub compatible: &'static [&'static str],
}

/// Boards with an entry. Order does not matter: compatibles are disjoint.
pub const BOARDS: &[Board] = &[Board {
    name: "QEMU virt",
    compatible: &["linux,dummy-virt"],
}];

/// The board whose compatible matches one of `root_compatibles`, if any.
pub fn find<'a>(mut root_compatibles: impl Iterator<Item = &'a str>) -> Option<&'static Board> {
    root_compatibles.find_map(|c| BOARDS.iter().find(|b| b.compatible.contains(&c)))
}
