//! Byte-exact encoding of the Xen structs, without `unsafe`.
//!
//! Every struct in [`crate::xen`] is `#[repr(C)]` with the offsets of the Xen public headers
//! (checked at compile time), so a guest can also use it in place. The hypervisor never
//! looks at guest memory as a Rust value: it copies bytes and decodes them field by field
//! with [`Wire`], which cannot fail on any byte pattern.

/// A plain value with a fixed little-endian wire form of [`Wire::SIZE`] bytes. Every byte
/// pattern decodes to some value, so decoding untrusted bytes is safe.
pub trait Wire: Copy + Sized {
    /// Size of the encoding in bytes (equals `size_of::<Self>()` for the ABI structs).
    const SIZE: usize;
    /// The all-zero value.
    const ZERO: Self;
    /// Decodes from the first [`Wire::SIZE`] bytes, `None` if `bytes` is shorter.
    fn decode(bytes: &[u8]) -> Option<Self>;
    /// Encodes into the first [`Wire::SIZE`] bytes of `out`, `None` if it is shorter.
    fn encode(&self, out: &mut [u8]) -> Option<()>;
}

macro_rules! wire_int {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            const ZERO: Self = 0;
            fn decode(bytes: &[u8]) -> Option<Self> {
                let raw = bytes.get(..Self::SIZE)?;
                Some(<$t>::from_le_bytes(raw.try_into().ok()?))
            }
            fn encode(&self, out: &mut [u8]) -> Option<()> {
                out.get_mut(..Self::SIZE)?.copy_from_slice(&self.to_le_bytes());
                Some(())
            }
        }
    )*};
}
wire_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl<T: Wire, const N: usize> Wire for [T; N] {
    const SIZE: usize = T::SIZE * N;
    const ZERO: Self = [T::ZERO; N];
    fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..Self::SIZE)?;
        let mut out = [T::ZERO; N];
        for (slot, chunk) in out.iter_mut().zip(bytes.chunks_exact(T::SIZE.max(1))) {
            *slot = T::decode(chunk)?;
        }
        Some(out)
    }
    fn encode(&self, out: &mut [u8]) -> Option<()> {
        let out = out.get_mut(..Self::SIZE)?;
        for (item, chunk) in self.iter().zip(out.chunks_exact_mut(T::SIZE.max(1))) {
            item.encode(chunk)?;
        }
        Some(())
    }
}

/// Defines a `#[repr(C)]` ABI struct with explicit offsets, asserts the offsets and the size
/// against the Rust layout at compile time, and implements [`Wire`] for it.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident : $size:literal {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty = $off:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, PartialEq, Eq, Debug)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        const _: () = {
            assert!(core::mem::size_of::<$name>() == $size);
            $( assert!(core::mem::offset_of!($name, $field) == $off); )*
        };

        impl $crate::xen::wire::Wire for $name {
            const SIZE: usize = $size;
            const ZERO: Self = Self { $( $field: <$ty as $crate::xen::wire::Wire>::ZERO, )* };
            fn decode(bytes: &[u8]) -> Option<Self> {
                let bytes = bytes.get(..$size)?;
                Some(Self {
                    $( $field: <$ty as $crate::xen::wire::Wire>::decode(bytes.get($off..)?)?, )*
                })
            }
            fn encode(&self, out: &mut [u8]) -> Option<()> {
                let out = out.get_mut(..$size)?;
                // Padding bytes are written as zero so nothing stale leaks to a guest.
                out.fill(0);
                $( $crate::xen::wire::Wire::encode(&self.$field, out.get_mut($off..)?)?; )*
                Some(())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                <Self as $crate::xen::wire::Wire>::ZERO
            }
        }
    };
}
pub(crate) use wire_struct;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_round_trip_little_endian() {
        let mut buf = [0u8; 8];
        0x0102_0304u32.encode(&mut buf).unwrap();
        assert_eq!(&buf[..4], &[4, 3, 2, 1]);
        assert_eq!(u32::decode(&buf), Some(0x0102_0304));
        assert_eq!(u64::decode(&buf[..7]), None);
        assert_eq!(0u16.encode(&mut buf[..1]), None);
    }

    #[test]
    fn arrays_round_trip() {
        let a: [u16; 3] = [1, 0x200, 3];
        let mut buf = [0u8; 6];
        a.encode(&mut buf).unwrap();
        assert_eq!(buf, [1, 0, 0, 2, 3, 0]);
        assert_eq!(<[u16; 3]>::decode(&buf), Some(a));
        assert_eq!(<[u16; 3]>::decode(&buf[..5]), None);
    }
}
