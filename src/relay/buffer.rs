//! The relay's byte buffers: their size, and winding a drained one back to the start of its
//! allocation.

use bytes::BytesMut;

/// What each of a session's four buffers (client and server, in and out) is allocated with.
pub(super) const BUF_CAPACITY: usize = 16 * 1024;

/// Winds a drained buffer back to the start of its allocation, so that the next read or write
/// uses the same, cache-warm bytes. Left alone, a buffer moves on through its allocation by
/// what each transaction read or wrote, touching new cache lines every time (and making the
/// kernel's copies touch them too), until it runs out and a reserve winds it back anyway.
pub(super) fn rewind(buf: &mut BytesMut) {
    if buf.is_empty() {
        // False only for a buffer shared with a `Bytes` still alive: left as it is.
        let _ = buf.try_reclaim(BUF_CAPACITY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, BufMut};

    #[test]
    fn a_drained_buffer_starts_again_at_the_front_of_the_same_allocation() {
        let mut buf = BytesMut::with_capacity(BUF_CAPACITY);
        let start = buf.as_ptr();
        buf.put_slice(&[1; 109]);
        buf.advance(100);
        rewind(&mut buf);
        assert_eq!(buf.len(), 9, "not drained: left as it is");
        assert_eq!(buf.capacity(), BUF_CAPACITY - 100, "still 100 bytes in");
        buf.advance(9);
        rewind(&mut buf);
        assert_eq!(buf.capacity(), BUF_CAPACITY, "the whole allocation again");
        assert_eq!(buf.as_ptr(), start, "the same allocation, from its start");
    }

    #[test]
    fn a_buffer_shared_with_live_bytes_is_left_as_it_is() {
        let mut buf = BytesMut::with_capacity(BUF_CAPACITY);
        buf.put_slice(b"reply");
        let out = buf.split().freeze();
        rewind(&mut buf);
        assert!(buf.is_empty());
        assert_eq!(&out[..], b"reply", "the bytes given out are untouched");
        assert!(buf.capacity() < BUF_CAPACITY);
    }
}
