//! What the writer is given and what it answers: [`Lines`] of line protocol (one write's
//! body), and the [`WriteReport`] of their fate.
//!
//! Owns the line boundaries: they come from the encoder, never from scanning for newlines
//! (string fields may hold raw ones), except for [`Lines::from_newline_separated`], for lines
//! known to hold none. Must never copy the body to send part of it (slices are zero-copy).

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::encode::lineproto::LINE_END;

/// A finished batch: line protocol and where each line ends. Line ends come from the encoder,
/// not from scanning for `\n`, because string fields may hold raw newlines.
#[derive(Debug, Clone, Default)]
pub struct Lines {
    /// The lines, back to back, each ending in `\n`.
    pub body: Bytes,
    /// Exclusive end offset of each line in `body`.
    pub line_ends: Vec<usize>,
}

impl Lines {
    /// A batch from lines that hold no raw newline (all metric lines).
    pub fn from_newline_separated(body: Bytes) -> Self {
        let line_ends = body
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == LINE_END)
            .map(|(i, _)| i + 1)
            .collect();
        Lines { body, line_ends }
    }

    /// A batch from an encoder's buffer and its recorded line ends.
    pub fn new(body: BytesMut, line_ends: Vec<usize>) -> Self {
        Lines {
            body: body.freeze(),
            line_ends,
        }
    }

    pub fn len(&self) -> usize {
        self.line_ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.line_ends.is_empty()
    }

    pub(super) fn start(&self, line: usize) -> usize {
        if line == 0 {
            0
        } else {
            self.line_ends[line - 1]
        }
    }

    /// The bytes of lines `r` (zero-copy).
    pub(super) fn slice(&self, r: &Range<usize>) -> Bytes {
        self.body
            .slice(self.start(r.start)..self.line_ends[r.end - 1])
    }

    /// One line without its final newline.
    pub(super) fn line(&self, i: usize) -> &[u8] {
        &self.body[self.start(i)..self.line_ends[i] - 1]
    }
}

/// A line InfluxDB refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// Index of the line in the batch.
    pub index: usize,
    /// InfluxDB's reason.
    pub reason: String,
}

/// The fate of a batch: every line not listed in `rejected` or `refused` is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub written: usize,
    pub rejected: Vec<RejectedLine>,
    /// Lines not written because the database refused them for longer than the caller
    /// allowed (see [`Writer::write_or_give_up`](super::Writer::write_or_give_up)); none of them is stored.
    pub refused: Vec<RejectedLine>,
    /// HTTP requests it took (splits and retries included).
    pub requests: u32,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A batch of `lines`, each given without its newline.
    pub(in crate::sink) fn batch(lines: &[&str]) -> Lines {
        Lines::from_newline_separated(Bytes::from(
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        ))
    }

    #[test]
    fn batch_slices_are_whole_lines() {
        let b = batch(&["a v=1 1", "b v=1 1", "c v=1 1"]);
        assert_eq!(&b.slice(&(1..3))[..], b"b v=1 1\nc v=1 1\n");
        assert_eq!(b.line(2), b"c v=1 1");
    }
}
