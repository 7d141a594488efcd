//! Links the `mica` image with its own linker script.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/mica.ld");
    // A static position-independent executable: the entry code applies .rela.dyn itself.
    println!("cargo:rustc-link-arg-bins=-pie");
    println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
    println!("cargo:rustc-link-arg-bins=-znotext");
    // Relative relocations packed as DT_RELR (a word per run of up to 63 pointers instead of
    // 24 bytes each): about 8 KiB less image. boot.S applies them.
    println!("cargo:rustc-link-arg-bins=-zpack-relative-relocs");
    // The defmt build adds defmt's script (found through the search path defmt's own build
    // script sets): it gathers the interned strings into the non-allocated `.defmt` section,
    // which stays in the ELF for the host decoder and never reaches the flat image.
    if std::env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
    println!("cargo:rerun-if-changed={dir}/mica.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
