//! Compact logging (feature `defmt`): Mica's own lines leave the UART as defmt frames, which
//! `cargo xtask run --defmt` decodes on the host with the ELF's `.defmt` table.
//!
//! On the wire a frame is [`FRAME_START`], then the rzCOBS-encoded defmt frame, which holds
//! no zero byte and ends with one. Guests' console output is text and carries no NUL, so the
//! host tells frames from text at the zero bytes. A frame is assembled in a buffer and goes to
//! the UART in one locked write: no guest byte lands inside it.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A frame this long stays whole. Mica's lines are at most 256 bytes of text (logline.rs), so
/// frames fit; a longer one is written in pieces, which other output may then split.
const FRAME_BYTES: usize = 512;
/// Opens a frame on the wire. rzCOBS frames end with the same byte and contain no other.
const FRAME_START: u8 = 0x00;

/// The frame being encoded.
struct Frame {
    encoder: defmt::Encoder,
    buf: [u8; FRAME_BYTES],
    len: usize,
}

/// Appends encoded bytes, writing the buffer out when it is full.
fn push(buf: &mut [u8; FRAME_BYTES], len: &mut usize, bytes: &[u8]) {
    for &byte in bytes {
        if *len == buf.len() {
            crate::console::write_raw(&buf[..]);
            *len = 0;
        }
        buf[*len] = byte;
        *len += 1;
    }
}

/// The one frame in flight, owned by whoever set [`TAKEN`].
struct FrameCell(UnsafeCell<Frame>);

// SAFETY: the frame is only touched between `acquire` (which sets TAKEN with Acquire
// ordering, waiting while another CPU holds it) and `release` (which clears it with Release).
unsafe impl Sync for FrameCell {}

static FRAME: FrameCell = FrameCell(UnsafeCell::new(Frame {
    encoder: defmt::Encoder::new(),
    buf: [0; FRAME_BYTES],
    len: 0,
}));
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Gives the frame to the caller, who must hold [`TAKEN`].
///
/// # Safety
/// Only between a successful `acquire` and its `release`, on the CPU that acquired, with no
/// other reference to the frame alive.
unsafe fn frame() -> &'static mut Frame {
    // SAFETY: guaranteed by the caller: TAKEN makes this CPU the only user.
    unsafe { &mut *FRAME.0.get() }
}

#[defmt::global_logger]
struct UartLogger;

// SAFETY: acquire/release bracket every frame with TAKEN, so frames never interleave; Mica
// logs with interrupts masked at EL2, so no context on the same CPU re-enters a frame.
unsafe impl defmt::Logger for UartLogger {
    fn acquire() {
        while TAKEN
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: TAKEN is ours from here until `release`.
        let Frame { encoder, buf, len } = unsafe { frame() };
        *len = 0;
        push(buf, len, &[FRAME_START]);
        encoder.start_frame(|bytes| push(buf, len, bytes));
    }

    unsafe fn flush() {
        // Every frame is written out by `release`; the UART driver waits for its FIFO.
    }

    unsafe fn release() {
        {
            // SAFETY: defmt calls release once per acquire, on the acquiring CPU.
            let Frame { encoder, buf, len } = unsafe { frame() };
            encoder.end_frame(|bytes| push(buf, len, bytes));
            crate::console::write_raw(&buf[..*len]);
            *len = 0;
        }
        TAKEN.store(false, Ordering::Release);
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: defmt writes only between acquire and release, on the acquiring CPU.
        let Frame { encoder, buf, len } = unsafe { frame() };
        encoder.write(bytes, |out| push(buf, len, out));
    }
}
