//! Puts the guest linker script where the linker finds it: a guest's build script then only
//! names it (`-Tmica-guest.ld`), so every guest links against the same layout.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("link.ld", out.join("mica-guest.ld")).expect("copy link.ld into OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=link.ld");
}
