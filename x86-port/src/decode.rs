//! x86 instruction-length decoder. QEMU's TCG SVM does not save the next RIP on intercepts
//! (no NRIP save, no decode assists), so Mica finds the length of the trapping instruction
//! itself: legacy and REX prefixes, the one-byte, 0F and 0F38/0F3A opcode maps, ModRM, SIB,
//! displacements and immediates. VEX/EVEX/XOP-encoded instructions are reported as
//! unsupported (no intercepted instruction uses them).
//!
//! The bytes are guest memory: anything malformed is an error, never a panic.

/// Longest legal x86 instruction.
pub const MAX_LEN: usize = 15;

/// The default operand/address size the code runs with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Real mode or a 16-bit code segment.
    Bits16,
    /// A 32-bit code segment (protected mode, or compatibility mode).
    Bits32,
    /// 64-bit mode.
    Bits64,
}

/// Why bytes do not decode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DecodeError {
    /// The bytes end before the instruction does.
    Truncated,
    /// More than [`MAX_LEN`] bytes.
    TooLong,
    /// Not a valid opcode in this mode.
    Invalid,
    /// A valid encoding this decoder does not handle (VEX, EVEX, XOP, 3DNow!).
    Unsupported,
}

/// Which opcode map an instruction comes from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Map {
    /// One-byte opcodes.
    Primary,
    /// `0F xx`.
    Secondary,
    /// `0F 38 xx`.
    Escape38,
    /// `0F 3A xx`.
    Escape3A,
}

/// A decoded instruction's shape.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Insn {
    /// Total length in bytes.
    pub len: usize,
    /// Opcode map.
    pub map: Map,
    /// Opcode byte within the map.
    pub opcode: u8,
    /// The ModRM byte, if the instruction has one.
    pub modrm: Option<u8>,
    /// A REP/REPE (F3) prefix was present.
    pub rep: bool,
}

impl Insn {
    /// Whether this is `map opcode` with ModRM `modrm` (for the `0F 01 /xx` forms).
    pub fn is(&self, map: Map, opcode: u8, modrm: Option<u8>) -> bool {
        self.map == map && self.opcode == opcode && (modrm.is_none() || self.modrm == modrm)
    }
}

/// Immediate size classes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Imm {
    None,
    Byte,
    Word,
    /// 16 or 32 bits by operand size.
    Z,
    /// 16, 32 or 64 bits by operand size (MOV reg, imm).
    V,
    /// imm16 + imm8 (ENTER).
    Enter,
    /// Segment:offset far pointer (16 + z).
    FarPtr,
    /// Memory offset of address size (MOV AL/eAX, moffs).
    Moffs,
    /// F6/F7: an immediate only for TEST (ModRM reg 0 or 1); byte or z.
    TestByte,
    TestZ,
}

/// ModRM presence and immediate of a one-byte opcode; `None` means invalid or a prefix.
fn primary(op: u8, mode: Mode) -> Option<(bool, Imm)> {
    let long = mode == Mode::Bits64;
    Some(match op {
        // ALU ops: r/m forms, AL/eAX immediate forms, and the legacy segment/BCD ops.
        0x00..=0x3f => match op & 7 {
            0..=3 => (true, Imm::None),
            4 => (false, Imm::Byte),
            5 => (false, Imm::Z),
            // 26/2E/36/3E are prefixes, handled before; 0F is the escape.
            _ if op == 0x0f => return None,
            _ if long => return None,
            _ => (false, Imm::None),
        },
        0x40..=0x5f => (false, Imm::None),
        0x60 | 0x61 if long => return None,
        0x60 | 0x61 => (false, Imm::None),
        0x62 if long => return None,
        0x62 | 0x63 => (true, Imm::None),
        0x68 => (false, Imm::Z),
        0x69 => (true, Imm::Z),
        0x6a => (false, Imm::Byte),
        0x6b => (true, Imm::Byte),
        0x6c..=0x6f => (false, Imm::None),
        0x70..=0x7f => (false, Imm::Byte),
        0x80 | 0x83 => (true, Imm::Byte),
        0x82 if long => return None,
        0x82 => (true, Imm::Byte),
        0x81 => (true, Imm::Z),
        0x84..=0x8f => (true, Imm::None),
        0x90..=0x99 | 0x9b..=0x9f => (false, Imm::None),
        0x9a if long => return None,
        0x9a => (false, Imm::FarPtr),
        0xa0..=0xa3 => (false, Imm::Moffs),
        0xa4..=0xa7 | 0xaa..=0xaf => (false, Imm::None),
        0xa8 => (false, Imm::Byte),
        0xa9 => (false, Imm::Z),
        0xb0..=0xb7 => (false, Imm::Byte),
        0xb8..=0xbf => (false, Imm::V),
        0xc0 | 0xc1 => (true, Imm::Byte),
        0xc2 | 0xca => (false, Imm::Word),
        0xc3 | 0xc9 | 0xcb | 0xcc | 0xcf => (false, Imm::None),
        0xc4 | 0xc5 if long => return None,
        0xc4 | 0xc5 => (true, Imm::None),
        0xc6 => (true, Imm::Byte),
        0xc7 => (true, Imm::Z),
        0xc8 => (false, Imm::Enter),
        0xcd => (false, Imm::Byte),
        0xce if long => return None,
        0xce => (false, Imm::None),
        0xd0..=0xd3 | 0xd8..=0xdf => (true, Imm::None),
        0xd4 | 0xd5 if long => return None,
        0xd4 | 0xd5 => (false, Imm::Byte),
        0xd6 => return None,
        0xd7 => (false, Imm::None),
        0xe0..=0xe7 | 0xeb => (false, Imm::Byte),
        0xe8 | 0xe9 => (false, Imm::Z),
        0xea if long => return None,
        0xea => (false, Imm::FarPtr),
        0xec..=0xef | 0xf1 | 0xf4 | 0xf5 | 0xf8..=0xfd => (false, Imm::None),
        0xf6 => (true, Imm::TestByte),
        0xf7 => (true, Imm::TestZ),
        0xfe | 0xff => (true, Imm::None),
        // Prefixes (and 0x0f) are consumed before the table is consulted.
        _ => return None,
    })
}

/// ModRM presence and immediate of a `0F xx` opcode; `Err` for invalid or unsupported.
fn secondary(op: u8) -> Result<(bool, Imm), DecodeError> {
    Ok(match op {
        0x00..=0x03 | 0x0d | 0x10..=0x23 | 0x28..=0x2f => (true, Imm::None),
        0x05..=0x09 | 0x0b | 0x0e | 0x30..=0x35 | 0x37 | 0x77 => (false, Imm::None),
        0x0f => return Err(DecodeError::Unsupported),
        0x40..=0x6f | 0x74..=0x76 | 0x78 | 0x79 | 0x7c..=0x7f => (true, Imm::None),
        0x70..=0x73 => (true, Imm::Byte),
        0x80..=0x8f => (false, Imm::Z),
        0x90..=0x9f => (true, Imm::None),
        0xa0..=0xa2 | 0xa8..=0xaa | 0xc8..=0xcf => (false, Imm::None),
        0xa3 | 0xa5 | 0xab | 0xad..=0xaf | 0xb0..=0xb9 | 0xbb..=0xc1 | 0xc3 | 0xc7 => {
            (true, Imm::None)
        }
        0xa4 | 0xac | 0xba | 0xc2 | 0xc4..=0xc6 => (true, Imm::Byte),
        0xd0..=0xff => (true, Imm::None),
        _ => return Err(DecodeError::Invalid),
    })
}

/// A cursor over the instruction bytes that enforces both the input and the 15-byte limit.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn next(&mut self) -> Result<u8, DecodeError> {
        if self.pos >= MAX_LEN {
            return Err(DecodeError::TooLong);
        }
        let b = *self.bytes.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        for _ in 0..n {
            self.next()?;
        }
        Ok(())
    }
}

/// Decodes the instruction at the start of `bytes`.
pub fn decode(bytes: &[u8], mode: Mode) -> Result<Insn, DecodeError> {
    let mut c = Cursor { bytes, pos: 0 };
    let mut opsize_override = false;
    let mut addrsize_override = false;
    let mut rex_w = false;
    let mut rep = false;
    let mut op = loop {
        let b = c.next()?;
        match b {
            0x66 => opsize_override = true,
            0x67 => addrsize_override = true,
            0xf3 => rep = true,
            0xf0 | 0xf2 | 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 => {}
            _ => break b,
        }
        // A REX prefix counts only right before the opcode; a later legacy prefix drops it.
        rex_w = false;
    };
    if mode == Mode::Bits64 {
        while (0x40..=0x4f).contains(&op) {
            rex_w = op & 0x08 != 0;
            op = c.next()?;
        }
        if matches!(op, 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3) {
            // A legacy prefix after REX: REX is ignored, the prefix applies.
            return decode_tail_after_rex(bytes, mode);
        }
    }
    let op16 = match mode {
        Mode::Bits16 => !opsize_override,
        _ => opsize_override && !rex_w,
    };
    let addr_bytes = match (mode, addrsize_override) {
        (Mode::Bits16, false) | (Mode::Bits32, true) => 2,
        (Mode::Bits16, true) | (Mode::Bits32, false) | (Mode::Bits64, true) => 4,
        (Mode::Bits64, false) => 8,
    };
    let (map, opcode, has_modrm, imm) = if op == 0x0f {
        let op2 = c.next()?;
        match op2 {
            0x38 => (Map::Escape38, c.next()?, true, Imm::None),
            0x3a => (Map::Escape3A, c.next()?, true, Imm::Byte),
            _ => {
                let (m, i) = secondary(op2)?;
                (Map::Secondary, op2, m, i)
            }
        }
    } else {
        if matches!(op, 0xc4 | 0xc5 | 0x62 | 0x8f) {
            // VEX/EVEX/XOP in 64-bit mode always, elsewhere when the next byte's top bits
            // would be a register-form ModRM (for 8F: a non-zero reg field).
            let vex_like = match (op, c.peek()) {
                (0x8f, Some(next)) => next & 0x38 != 0,
                (_, Some(next)) => mode == Mode::Bits64 || next >= 0xc0,
                (_, None) => false,
            };
            if vex_like {
                return Err(DecodeError::Unsupported);
            }
        }
        let (m, i) = primary(op, mode).ok_or(DecodeError::Invalid)?;
        (Map::Primary, op, m, i)
    };
    let mut modrm = None;
    if has_modrm {
        let m = c.next()?;
        modrm = Some(m);
        let md = m >> 6;
        let rm = m & 7;
        if md != 3 {
            if addr_bytes == 2 {
                match (md, rm) {
                    (0, 6) | (2, _) => c.skip(2)?,
                    (1, _) => c.skip(1)?,
                    _ => {}
                }
            } else {
                let mut base = rm;
                if rm == 4 {
                    base = c.next()? & 7;
                }
                match md {
                    0 if rm == 5 || (rm == 4 && base == 5) => c.skip(4)?,
                    1 => c.skip(1)?,
                    2 => c.skip(4)?,
                    _ => {}
                }
            }
        }
    }
    let z = if op16 { 2 } else { 4 };
    let reg = modrm.map(|m| (m >> 3) & 7).unwrap_or(0);
    let imm_len = match imm {
        Imm::None => 0,
        Imm::Byte => 1,
        Imm::Word => 2,
        Imm::Z => {
            // Near branches are always rel32 in 64-bit mode.
            if mode == Mode::Bits64 && (map == Map::Secondary || matches!(opcode, 0xe8 | 0xe9)) {
                4
            } else {
                z
            }
        }
        Imm::V => {
            if rex_w {
                8
            } else {
                z
            }
        }
        Imm::Enter => 3,
        Imm::FarPtr => 2 + z,
        Imm::Moffs => addr_bytes,
        Imm::TestByte if reg < 2 => 1,
        Imm::TestZ if reg < 2 => z,
        Imm::TestByte | Imm::TestZ => 0,
    };
    c.skip(imm_len)?;
    Ok(Insn {
        len: c.pos,
        map,
        opcode,
        modrm,
        rep,
    })
}

/// Re-decodes with the ignored REX prefixes removed from the count but not the length: the
/// instruction keeps its bytes, the REX bits have no effect.
fn decode_tail_after_rex(bytes: &[u8], mode: Mode) -> Result<Insn, DecodeError> {
    // Find the last REX byte before the legacy prefix that follows it; decode from the
    // prefix on and add the skipped bytes back.
    let mut skipped = 0;
    let mut seen_rex = false;
    for (i, &b) in bytes.iter().enumerate().take(MAX_LEN) {
        if (0x40..=0x4f).contains(&b) {
            seen_rex = true;
        } else if seen_rex && matches!(b, 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3) {
            skipped = i;
            break;
        }
    }
    if skipped == 0 {
        return Err(DecodeError::Invalid);
    }
    let inner = decode(&bytes[skipped..], mode)?;
    let len = inner.len + skipped;
    if len > MAX_LEN {
        return Err(DecodeError::TooLong);
    }
    Ok(Insn { len, ..inner })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len(bytes: &[u8], mode: Mode) -> Result<usize, DecodeError> {
        decode(bytes, mode).map(|i| i.len)
    }

    #[test]
    fn intercepted_instructions() {
        use Mode::*;
        for mode in [Bits16, Bits32, Bits64] {
            assert_eq!(len(&[0x0f, 0x01, 0xd9], mode), Ok(3), "vmmcall");
            assert_eq!(len(&[0x0f, 0xa2], mode), Ok(2), "cpuid");
            assert_eq!(len(&[0x0f, 0x30], mode), Ok(2), "wrmsr");
            assert_eq!(len(&[0x0f, 0x32], mode), Ok(2), "rdmsr");
            assert_eq!(len(&[0xf4], mode), Ok(1), "hlt");
            assert_eq!(len(&[0xe6, 0xf8], mode), Ok(2), "out imm8, al");
            assert_eq!(len(&[0xee], mode), Ok(1), "out dx, al");
        }
        let vmmcall = decode(&[0x0f, 0x01, 0xd9, 0xc3], Bits64).unwrap();
        assert!(vmmcall.is(Map::Secondary, 0x01, Some(0xd9)));
        assert!(!vmmcall.is(Map::Secondary, 0xa2, None));
    }

    #[test]
    fn prefixes_modrm_sib_displacements_immediates() {
        use Mode::*;
        // mov rax, [rip + disp32]
        assert_eq!(len(&[0x48, 0x8b, 0x05, 1, 2, 3, 4], Bits64), Ok(7));
        // mov eax, [rsp + rbx*4 + disp8]
        assert_eq!(len(&[0x8b, 0x44, 0x9c, 0x10], Bits64), Ok(4));
        // mov eax, [disp32] through SIB with no base
        assert_eq!(len(&[0x8b, 0x04, 0x25, 0, 0, 0, 0], Bits64), Ok(7));
        // movabs rax, imm64
        assert_eq!(len(&[0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8], Bits64), Ok(10));
        // mov ax, imm16 (66 prefix)
        assert_eq!(len(&[0x66, 0xb8, 1, 2], Bits64), Ok(4));
        // 16-bit code: mov ax, [bx+si+disp16]; mov eax, imm32 with 66
        assert_eq!(len(&[0x8b, 0x80, 1, 2], Bits16), Ok(4));
        assert_eq!(len(&[0x66, 0xb8, 1, 2, 3, 4], Bits16), Ok(6));
        // 32-bit addressing in 16-bit code (67): mov eax, [eax+disp32]
        assert_eq!(len(&[0x67, 0x8b, 0x80, 1, 2, 3, 4], Bits16), Ok(7));
        // test byte [rax], imm8 vs not byte [rax]
        assert_eq!(len(&[0xf6, 0x00, 0x01], Bits64), Ok(3));
        assert_eq!(len(&[0xf6, 0x10], Bits64), Ok(2));
        // jne rel32, call rel32 (64-bit ignores 66 for near branches)
        assert_eq!(len(&[0x0f, 0x85, 1, 2, 3, 4], Bits64), Ok(6));
        assert_eq!(len(&[0xe8, 1, 2, 3, 4], Bits64), Ok(5));
        // SSE4.1 pextrd (0F 3A) and pshufb (0F 38)
        assert_eq!(len(&[0x66, 0x0f, 0x3a, 0x16, 0xc0, 1], Bits64), Ok(6));
        assert_eq!(len(&[0x66, 0x0f, 0x38, 0x00, 0xc1], Bits64), Ok(5));
        // mov al, moffs64 / moffs32
        assert_eq!(len(&[0xa0, 1, 2, 3, 4, 5, 6, 7, 8], Bits64), Ok(9));
        assert_eq!(len(&[0xa0, 1, 2, 3, 4], Bits32), Ok(5));
        // enter, far jmp (32-bit)
        assert_eq!(len(&[0xc8, 1, 2, 3], Bits32), Ok(4));
        assert_eq!(len(&[0xea, 1, 2, 3, 4, 5, 6], Bits32), Ok(7));
        // rep movsb with segment prefix
        let movs = decode(&[0xf3, 0x2e, 0xa4], Bits32).unwrap();
        assert_eq!((movs.len, movs.rep), (3, true));
        // REX then a legacy prefix: REX ignored, length counts every byte.
        assert_eq!(len(&[0x48, 0x66, 0xb8, 1, 2], Bits64), Ok(5));
    }

    #[test]
    fn bad_input_is_an_error() {
        use Mode::*;
        assert_eq!(len(&[], Bits64), Err(DecodeError::Truncated));
        assert_eq!(len(&[0x0f], Bits64), Err(DecodeError::Truncated));
        assert_eq!(len(&[0x0f, 0x01], Bits64), Err(DecodeError::Truncated));
        assert_eq!(len(&[0x8b, 0x04], Bits64), Err(DecodeError::Truncated));
        assert_eq!(
            len(&[0x48, 0xb8, 1, 2, 3], Bits64),
            Err(DecodeError::Truncated)
        );
        // 15 prefixes and an opcode: too long.
        let mut long = [0x66u8; 16];
        long[15] = 0x90;
        assert_eq!(len(&long, Bits64), Err(DecodeError::TooLong));
        // 14 prefixes + nop = 15 bytes is fine.
        assert_eq!(len(&long[1..], Bits64), Ok(15));
        // Invalid in 64-bit mode, valid in 32-bit mode.
        assert_eq!(len(&[0x06], Bits64), Err(DecodeError::Invalid));
        assert_eq!(len(&[0x06], Bits32), Ok(1));
        assert_eq!(len(&[0xd6], Bits32), Err(DecodeError::Invalid));
        assert_eq!(len(&[0x0f, 0x04], Bits64), Err(DecodeError::Invalid));
        assert_eq!(len(&[0x0f, 0xff], Bits64), Err(DecodeError::Truncated));
        // VEX encodings are refused, LES in 32-bit mode is not.
        assert_eq!(
            len(&[0xc5, 0xf8, 0x77], Bits64),
            Err(DecodeError::Unsupported)
        );
        assert_eq!(len(&[0xc4, 0x00], Bits32), Ok(2));
        // Every single byte and every pair decodes or errs without panicking.
        for a in 0..=255u8 {
            for mode in [Bits16, Bits32, Bits64] {
                let _ = decode(&[a], mode);
                for b in 0..=255u8 {
                    let _ = decode(&[a, b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], mode);
                }
            }
        }
    }
}
