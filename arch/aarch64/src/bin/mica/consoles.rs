//! Glue between the physical UART and the console multiplexer (`mica_hv::console`): every
//! domain's output, tagged per line, and keyboard input for the domain that has focus.

use crate::{console, timer, world};
use core::sync::atomic::{AtomicU32, Ordering};
use mica_hv::console::{ConsoleMux, InputAction};
use spin::Mutex;

static MUX: Mutex<Option<ConsoleMux>> = Mutex::new(None);
/// INTID of the physical UART's interrupt (0: none).
static UART_INTID: AtomicU32 = AtomicU32::new(0);

fn sink(bytes: &[u8]) {
    console::write_raw(bytes);
}

/// Starts multiplexing. Until then Mica's lines go straight to the UART.
pub fn init(timestamps: bool, uart_intid: Option<u32>) {
    *MUX.lock() = Some(ConsoleMux::new(timestamps));
    UART_INTID.store(uart_intid.unwrap_or(0), Ordering::Relaxed);
}

/// The physical UART's interrupt, if Mica takes input from it.
pub fn uart_intid() -> Option<u32> {
    match UART_INTID.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// A domain joins the console.
pub fn add_domain(id: u16, name: &str) {
    if let Some(mux) = MUX.lock().as_mut() {
        mux.add_domain(id, name);
    }
}

/// A domain leaves the console (its partial line is flushed).
pub fn remove_domain(id: u16) {
    if let Some(mux) = MUX.lock().as_mut() {
        mux.remove_domain(id, timer::now(), timer::frequency(), &mut sink);
    }
}

/// Prints one of Mica's own lines.
pub fn hypervisor_line(text: &str) {
    let mut guard = MUX.lock();
    match guard.as_mut() {
        Some(mux) => mux.hypervisor_line(text, timer::now(), timer::frequency(), &mut sink),
        None => {
            drop(guard);
            console::write_bytes(b"(MICA) ");
            console::write_bytes(text.as_bytes());
            console::write_bytes(b"\n");
        }
    }
}

/// One byte a guest wrote to its UART.
pub fn guest_byte(dom: u16, byte: u8) {
    if let Some(mux) = MUX.lock().as_mut() {
        mux.guest_output(dom, byte, timer::now(), timer::frequency(), &mut sink);
    }
}

/// Flushes partial lines that have waited long enough (prompts).
pub fn flush_idle(now: u64) {
    if let Some(mux) = MUX.lock().as_mut() {
        mux.flush_idle(now, timer::frequency(), &mut sink);
    }
}

/// One byte typed on the physical UART.
pub fn input(byte: u8) {
    let action = match MUX.lock().as_mut() {
        Some(mux) => mux.input(byte, timer::now(), timer::frequency(), &mut sink),
        None => return,
    };
    if let InputAction::Deliver { dom, bytes } = action {
        if crate::xen::console_input(dom, bytes.as_slice()) {
            return;
        }
        if let Some(d) = world::domain(dom) {
            let line = {
                let mut uart = d.uart.model.lock();
                for &b in bytes.as_slice() {
                    uart.push_rx(b);
                }
                uart.irq_line()
            };
            crate::run::kick(&d, d.vgic.set_level(d.uart.intid, line));
        }
    }
}
