//! `console_io` sub-operations and the PV console / xenstore ring pages
//! (`xen.h`, `io/console.h`, `io/xs_wire.h`).

use super::wire::wire_struct;
use core::mem::offset_of;

/// Write `count` bytes from `buf` to the hypervisor console.
pub const CONSOLEIO_WRITE: u64 = 0;
/// Read up to `count` bytes of console input into `buf`.
pub const CONSOLEIO_READ: u64 = 1;

/// Size of the console input ring (backend to guest).
pub const XENCONS_IN_SIZE: u32 = 1024;
/// Size of the console output ring (guest to backend).
pub const XENCONS_OUT_SIZE: u32 = 2048;
/// `connection`: the backend is connected.
pub const XENCONSOLE_CONNECTED: u8 = 0;
/// `connection`: the backend is not connected.
pub const XENCONSOLE_DISCONNECTED: u8 = 1;

wire_struct! {
    /// The PV console ring page. Indices are free-running; mask with size - 1.
    pub struct XenconsInterface: 3092 {
        /// Input ring (backend writes, guest reads).
        pub in_: [u8; 1024] = 0,
        /// Output ring (guest writes, backend reads).
        pub out: [u8; 2048] = 1024,
        /// Input consumer index (guest).
        pub in_cons: u32 = 3072,
        /// Input producer index (backend).
        pub in_prod: u32 = 3076,
        /// Output consumer index (backend).
        pub out_cons: u32 = 3080,
        /// Output producer index (guest).
        pub out_prod: u32 = 3084,
        /// `XENCONSOLE_*`.
        pub connection: u8 = 3088,
    }
}

/// Offset of the input ring.
pub const XENCONS_IN: usize = offset_of!(XenconsInterface, in_);
/// Offset of the output ring.
pub const XENCONS_OUT: usize = offset_of!(XenconsInterface, out);
/// Offset of `in_cons`.
pub const XENCONS_IN_CONS: usize = offset_of!(XenconsInterface, in_cons);
/// Offset of `in_prod`.
pub const XENCONS_IN_PROD: usize = offset_of!(XenconsInterface, in_prod);
/// Offset of `out_cons`.
pub const XENCONS_OUT_CONS: usize = offset_of!(XenconsInterface, out_cons);
/// Offset of `out_prod`.
pub const XENCONS_OUT_PROD: usize = offset_of!(XenconsInterface, out_prod);

/// Size of each xenstore ring.
pub const XENSTORE_RING_SIZE: u32 = 1024;
/// xenstore `connection`: connected.
pub const XENSTORE_CONNECTED: u32 = 0;
/// xenstore `connection`: reconnect in progress.
pub const XENSTORE_RECONNECT: u32 = 1;

wire_struct! {
    /// The xenstore ring page.
    pub struct XenstoreDomainInterface: 2076 {
        /// Requests (guest to xenstored).
        pub req: [u8; 1024] = 0,
        /// Replies and watch events (xenstored to guest).
        pub rsp: [u8; 1024] = 1024,
        /// Request consumer.
        pub req_cons: u32 = 2048,
        /// Request producer.
        pub req_prod: u32 = 2052,
        /// Reply consumer.
        pub rsp_cons: u32 = 2056,
        /// Reply producer.
        pub rsp_prod: u32 = 2060,
        /// Features of the server.
        pub server_features: u32 = 2064,
        /// `XENSTORE_*` connection state.
        pub connection: u32 = 2068,
        /// Error indicator.
        pub error: u32 = 2072,
    }
}
