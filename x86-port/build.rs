//! Links the `mica-x86` image with its own linker script, at a fixed address: the multiboot
//! header's a.out fields name load addresses, so the image is not position independent.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let bare_metal = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "none");
    if bare_metal {
        println!("cargo:rustc-link-arg-bins=-T{dir}/mica-x86.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    }
    println!("cargo:rerun-if-changed={dir}/mica-x86.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
