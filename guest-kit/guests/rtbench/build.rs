//! Links with the guest-kit layout as a position-independent image the runtime relocates.
fn main() {
    for arg in [
        "-Tmica-guest.ld",
        "-pie",
        "--no-dynamic-linker",
        "-z",
        "text",
        "-z",
        "norelro",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
