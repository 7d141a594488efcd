//! Prints one line through the guest console and powers off.
#![no_std]
#![no_main]

use mica_guest_rt::{cpu, println};

mica_guest_rt::entry!(main);

fn main() {
    println!("hello: hello world from vCPU {}", cpu::mpidr() & 0xff);
}
