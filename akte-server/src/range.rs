//! Byte ranges of downloads (`offset`, `length`) over streams read front to back.

/// The part of a stream from `offset` on, at most `length` bytes (0: to the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    skip: u64,
    left: Option<u64>,
}

impl Range {
    /// The range of a request: `length` 0 means to the end.
    pub fn new(offset: u64, length: u64) -> Range {
        Range {
            skip: offset,
            left: (length > 0).then_some(length),
        }
    }

    /// Of the next `chunk` of the stream, the bytes inside the range; `None` when none are.
    pub fn take<'a>(&mut self, chunk: &'a [u8]) -> Option<&'a [u8]> {
        let mut c = chunk;
        if self.skip > 0 {
            let n = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(c.len());
            c = &c[n..];
            self.skip -= n as u64;
        }
        if let Some(left) = self.left.as_mut() {
            let n = usize::try_from(*left).unwrap_or(usize::MAX).min(c.len());
            c = &c[..n];
            *left -= n as u64;
        }
        (!c.is_empty()).then_some(c)
    }

    /// The number of bytes the range holds of a stream of `size` bytes from `offset`.
    pub fn len_of(offset: u64, length: u64, size: u64) -> u64 {
        let rest = size.saturating_sub(offset);
        if length == 0 {
            rest
        } else {
            rest.min(length)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(offset: u64, length: u64, chunks: &[&[u8]]) -> Vec<u8> {
        let mut r = Range::new(offset, length);
        chunks
            .iter()
            .filter_map(|c| r.take(c))
            .flat_map(|c| c.to_vec())
            .collect()
    }

    #[test]
    fn cuts_ranges_across_chunks() {
        let chunks: &[&[u8]] = &[b"abc", b"defg", b"h", b"ijkl"];
        assert_eq!(cut(0, 0, chunks), b"abcdefghijkl");
        assert_eq!(cut(2, 0, chunks), b"cdefghijkl");
        assert_eq!(cut(2, 4, chunks), b"cdef");
        assert_eq!(cut(7, 1, chunks), b"h");
        assert_eq!(cut(11, 10, chunks), b"l");
        assert_eq!(cut(12, 0, chunks), b"");
        assert_eq!(cut(50, 3, chunks), b"");
        assert_eq!(Range::len_of(2, 0, 12), 10);
        assert_eq!(Range::len_of(2, 4, 12), 4);
        assert_eq!(Range::len_of(20, 4, 12), 0);
    }
}
