//! Every domain's output on the one serial line, tagged per line by the portable console
//! multiplexer (`(MICA) DOM1: ...`), exactly as on Arm.

use crate::{port, serial};
use mica_hv::console::ConsoleMux;
use spin::Mutex;

static MUX: Mutex<Option<ConsoleMux>> = Mutex::new(None);
/// Nominal TSC rate for the multiplexer's idle flush (timestamps are off, so only the
/// idle-line flush uses it; an approximate rate only shifts that delay).
const TSC_NOMINAL_HZ: u64 = 1_000_000_000;

fn sink(bytes: &[u8]) {
    serial::write_raw(bytes);
}

/// Starts multiplexing.
pub fn init() {
    *MUX.lock() = Some(ConsoleMux::new(false));
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
        mux.remove_domain(id, port::rdtsc(), TSC_NOMINAL_HZ, &mut sink);
    }
}

/// Prints one of Mica's own lines.
pub fn hypervisor_line(text: &str) {
    let mut guard = MUX.lock();
    match guard.as_mut() {
        Some(mux) => mux.hypervisor_line(text, port::rdtsc(), TSC_NOMINAL_HZ, &mut sink),
        None => {
            drop(guard);
            serial::write_text(b"(MICA) ");
            serial::write_text(text.as_bytes());
            serial::write_text(b"\n");
        }
    }
}

/// One byte of a guest's console output.
pub fn guest_byte(dom: u16, byte: u8) {
    if let Some(mux) = MUX.lock().as_mut() {
        mux.guest_output(dom, byte, port::rdtsc(), TSC_NOMINAL_HZ, &mut sink);
    }
}
