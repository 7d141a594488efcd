//! Glue between the physical UART and the console multiplexer.

/// Prints one of Mica's own lines.
pub fn hypervisor_line(text: &str) {
    crate::console::write_bytes(b"(MICA) ");
    crate::console::write_bytes(text.as_bytes());
    crate::console::write_bytes(b"\n");
}
