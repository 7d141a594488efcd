//! Timer interrupts without an APIC, as a kernel booted with no local APIC takes them: the
//! 8259A pair programmed like Linux does (vectors 0x30-0x3f), PIT channel 0 in rate mode at
//! 100 Hz on line 0. Counts ticks first while spinning with no instruction that exits (only
//! the hypervisor's own timer can interrupt the guest to deliver them), then while halted.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod guest {
    use core::sync::atomic::{AtomicU32, Ordering};
    use x86_guest_rt::{cpu, irq, println};

    x86_guest_rt::entry!(main);

    const PIC_MASTER_CMD: u16 = 0x20;
    const PIC_MASTER_DATA: u16 = 0x21;
    const PIC_SLAVE_CMD: u16 = 0xa0;
    const PIC_SLAVE_DATA: u16 = 0xa1;
    /// ICW1: initialization, ICW4 follows.
    const ICW1: u8 = 0x11;
    const MASTER_VECTORS: u8 = 0x30;
    const SLAVE_VECTORS: u8 = 0x38;
    /// ICW3: slave on master line 2; the slave's id 2.
    const MASTER_CASCADE: u8 = 1 << 2;
    const SLAVE_ID: u8 = 2;
    /// ICW4: 8086 mode.
    const ICW4_8086: u8 = 0x01;
    /// Masks: only line 0 (and the cascade) open on the master, the slave closed.
    const MASTER_ONLY_TIMER: u8 = !(1 << 0 | 1 << 2);
    const ALL_MASKED: u8 = 0xff;
    /// Non-specific end of interrupt.
    const EOI: u8 = 0x20;
    const PIT_COMMAND: u16 = 0x43;
    const PIT_CHANNEL0: u16 = 0x40;
    /// Channel 0, low then high byte, mode 2 (rate generator), binary.
    const PIT_RATE_MODE: u8 = 0x34;
    /// 1193182 Hz / 11932 = 100 Hz.
    const PIT_COUNT: u16 = 11_932;
    const SPIN_TICKS: u32 = 10;
    const HALT_TICKS: u32 = 5;

    static TICKS: AtomicU32 = AtomicU32::new(0);

    fn on_tick() {
        TICKS.fetch_add(1, Ordering::Relaxed);
        cpu::outb(PIC_MASTER_CMD, EOI);
    }

    fn main() {
        for (port, value) in [
            (PIC_MASTER_DATA, ALL_MASKED),
            (PIC_SLAVE_DATA, ALL_MASKED),
            (PIC_MASTER_CMD, ICW1),
            (PIC_MASTER_DATA, MASTER_VECTORS),
            (PIC_MASTER_DATA, MASTER_CASCADE),
            (PIC_MASTER_DATA, ICW4_8086),
            (PIC_SLAVE_CMD, ICW1),
            (PIC_SLAVE_DATA, SLAVE_VECTORS),
            (PIC_SLAVE_DATA, SLAVE_ID),
            (PIC_SLAVE_DATA, ICW4_8086),
            (PIC_SLAVE_DATA, ALL_MASKED),
            (PIC_MASTER_DATA, MASTER_ONLY_TIMER),
        ] {
            cpu::outb(port, value);
        }
        irq::install(MASTER_VECTORS, on_tick);
        cpu::outb(PIT_COMMAND, PIT_RATE_MODE);
        cpu::outb(PIT_CHANNEL0, PIT_COUNT as u8);
        cpu::outb(PIT_CHANNEL0, (PIT_COUNT >> 8) as u8);
        irq::enable();
        let start = cpu::rdtsc();
        // A plain load loop: no PAUSE, no I/O, nothing that traps.
        while TICKS.load(Ordering::Relaxed) < SPIN_TICKS {}
        let spun = cpu::rdtsc() - start;
        println!("tick: {SPIN_TICKS} ticks while spinning ({spun} TSC ticks)");
        while TICKS.load(Ordering::Relaxed) < SPIN_TICKS + HALT_TICKS {
            // SAFETY: interrupts are on and the timer runs, so HLT returns at the next tick.
            unsafe { core::arch::asm!("hlt", options(nomem, nostack)) };
        }
        println!("tick: {HALT_TICKS} more while halted; ok");
    }
}

#[cfg(not(target_os = "none"))]
fn main() {}
