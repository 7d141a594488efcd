//! Domains and the VMRUN loop.

use mica_x86::multiboot::{Info, Module};

/// Builds the initial domain from the first module and runs until no domain is left.
pub fn start(_info: &Info, _modules: &[Module]) {}
