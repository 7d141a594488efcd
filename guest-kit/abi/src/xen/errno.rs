//! Xen error numbers (`public/errno.h`). Hypercalls return them negated in x0.

/// Operation not permitted.
pub const EPERM: i32 = 1;
/// No such entry.
pub const ENOENT: i32 = 2;
/// No such domain.
pub const ESRCH: i32 = 3;
/// I/O error.
pub const EIO: i32 = 5;
/// No such device or address (e.g. a misplaced guest area).
pub const ENXIO: i32 = 6;
/// Argument list too long.
pub const E2BIG: i32 = 7;
/// Bad port / handle.
pub const EBADF: i32 = 9;
/// Try again.
pub const EAGAIN: i32 = 11;
/// Out of memory.
pub const ENOMEM: i32 = 12;
/// Permission denied.
pub const EACCES: i32 = 13;
/// Bad guest address.
pub const EFAULT: i32 = 14;
/// Busy (e.g. already registered).
pub const EBUSY: i32 = 16;
/// Already exists.
pub const EEXIST: i32 = 17;
/// Cross-domain link refused.
pub const EXDEV: i32 = 18;
/// No such device.
pub const ENODEV: i32 = 19;
/// Invalid argument.
pub const EINVAL: i32 = 22;
/// Table full.
pub const ENFILE: i32 = 23;
/// Too many open ports.
pub const EMFILE: i32 = 24;
/// No space left.
pub const ENOSPC: i32 = 28;
/// Too many links.
pub const EMLINK: i32 = 31;
/// Argument out of domain.
pub const EDOM: i32 = 33;
/// Result out of range.
pub const ERANGE: i32 = 34;
/// Deadlock would occur.
pub const EDEADLK: i32 = 35;
/// Name too long.
pub const ENAMETOOLONG: i32 = 36;
/// No locks available.
pub const ENOLCK: i32 = 37;
/// Function not implemented.
pub const ENOSYS: i32 = 38;
/// Invalid request code.
pub const EBADRQC: i32 = 56;
/// Invalid slot.
pub const EBADSLT: i32 = 57;
/// No data.
pub const ENODATA: i32 = 61;
/// Timer expired.
pub const ETIME: i32 = 62;
/// Bad message.
pub const EBADMSG: i32 = 74;
/// Value too large.
pub const EOVERFLOW: i32 = 75;
/// Illegal byte sequence.
pub const EILSEQ: i32 = 84;
/// Too many users.
pub const EUSERS: i32 = 87;
/// Not a socket.
pub const ENOTSOCK: i32 = 88;
/// Operation not supported.
pub const EOPNOTSUPP: i32 = 95;
/// Address in use.
pub const EADDRINUSE: i32 = 98;
/// Address not available.
pub const EADDRNOTAVAIL: i32 = 99;
/// No buffer space.
pub const ENOBUFS: i32 = 105;
/// Already connected.
pub const EISCONN: i32 = 106;
/// Not connected.
pub const ENOTCONN: i32 = 107;
/// Endpoint shut down.
pub const ESHUTDOWN: i32 = 108;
/// Too many references.
pub const ETOOMANYREFS: i32 = 109;
/// Timed out.
pub const ETIMEDOUT: i32 = 110;

/// The x0 value for a failed hypercall: `-errno` as a 64-bit register.
pub const fn neg(errno: i32) -> i64 {
    -(errno as i64)
}
