//! `sched_op` sub-operations and structs (`sched.h`).

use super::wire::wire_struct;
use super::DomId;

/// Give up the CPU.
pub const SCHEDOP_YIELD: u64 = 0;
/// Block until an event is pending (on Arm prefer WFI).
pub const SCHEDOP_BLOCK: u64 = 1;
/// Shut the domain down ([`SchedShutdown`]).
pub const SCHEDOP_SHUTDOWN: u64 = 2;
/// Block until one of some ports is pending ([`SchedPoll`]).
pub const SCHEDOP_POLL: u64 = 3;
/// Shut another domain down (privileged).
pub const SCHEDOP_REMOTE_SHUTDOWN: u64 = 4;
/// Record a shutdown code without shutting down.
pub const SCHEDOP_SHUTDOWN_CODE: u64 = 5;
/// Watchdog.
pub const SCHEDOP_WATCHDOG: u64 = 6;
/// Pin override (privileged).
pub const SCHEDOP_PIN_OVERRIDE: u64 = 7;

/// Shutdown reason: power off.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// Shutdown reason: reboot.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// Shutdown reason: suspend.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// Shutdown reason: crash.
pub const SHUTDOWN_CRASH: u32 = 3;
/// Shutdown reason: watchdog fired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// Shutdown reason: soft reset.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
/// Highest defined reason.
pub const SHUTDOWN_MAX: u32 = 5;

wire_struct! {
    /// SCHEDOP_shutdown / SCHEDOP_shutdown_code argument.
    pub struct SchedShutdown: 4 {
        /// `SHUTDOWN_*`.
        pub reason: u32 = 0,
    }
}

wire_struct! {
    /// SCHEDOP_remote_shutdown argument.
    pub struct SchedRemoteShutdown: 8 {
        /// Domain to shut down.
        pub domain_id: DomId = 0,
        /// `SHUTDOWN_*`.
        pub reason: u32 = 4,
    }
}

wire_struct! {
    /// SCHEDOP_poll argument (24 bytes).
    pub struct SchedPoll: 24 {
        /// Handle: `u32 ports[nr_ports]`.
        pub ports: u64 = 0,
        /// Number of ports.
        pub nr_ports: u32 = 8,
        /// Absolute system-time timeout in ns (0 = none).
        pub timeout: u64 = 16,
    }
}
