//! `monasca-persister convert`: JSON lines in, line protocol out.
//!
//! The debugging and replay tool: feed it messages (one per line, any bytes), get exactly the
//! lines the daemon would write on stdout and one `line N: <reason>` on stderr per rejected
//! message. Reading all input is success, whatever was rejected; only I/O errors fail.
//!
//! Input is read in large blocks into one buffer and each line converted where it lies there
//! (no per-line read or copy); output and reports are collected and written in large blocks.

use std::io::{self, BufWriter, Read, Write};

use bytes::BytesMut;

use crate::convert::{Converter, Kind};

/// What a run saw, printed as the closing summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Non-blank input lines.
    pub messages: u64,
    /// Lines written.
    pub accepted: u64,
    /// Messages rejected (each reported on stderr).
    pub rejected: u64,
    /// Accepted messages whose strings the sanitize policy altered.
    pub sanitized: u64,
}

/// Flush the output buffer once it holds this much.
const FLUSH_AT: usize = 256 * 1024;

/// Size of the input buffer; each read asks for at least half of it (the buffer grows only
/// for a line longer than that).
const READ_AT_LEAST: usize = 1 << 20;

/// Converts every line of `input`, writing lines to `out` and rejections to `err`.
pub fn run(
    kind: Kind,
    converter: &mut Converter,
    mut input: impl Read,
    mut out: impl Write,
    err: impl Write,
) -> io::Result<Summary> {
    let mut lines = Lines {
        converter,
        kind,
        summary: Summary::default(),
        number: 0,
        buf: BytesMut::with_capacity(FLUSH_AT + 64 * 1024),
        err: BufWriter::with_capacity(64 * 1024, err),
    };
    // `data[start..filled]` is read but not yet converted (a line without its newline yet).
    let mut data = vec![0u8; READ_AT_LEAST];
    let (mut start, mut filled) = (0usize, 0usize);
    loop {
        if data.len() - filled < READ_AT_LEAST / 2 {
            // Keep the unconverted tail; make room (more only for a line longer than that).
            data.copy_within(start..filled, 0);
            filled -= start;
            start = 0;
            if data.len() - filled < READ_AT_LEAST / 2 {
                data.resize(data.len() * 2, 0);
            }
        }
        let n = match input.read(&mut data[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if start < filled {
                lines.line(&data[start..filled], &mut out)?;
            }
            break;
        }
        let searched = filled;
        filled += n;
        for end in memchr::memchr_iter(b'\n', &data[searched..filled]) {
            let end = searched + end;
            lines.line(&data[start..end], &mut out)?;
            start = end + 1;
        }
        // Reports of what was read so far go out now (at once per line when typed on a
        // terminal, once per block from a file).
        lines.err.flush()?;
    }
    let Lines {
        summary,
        buf,
        mut err,
        ..
    } = lines;
    out.write_all(&buf)?;
    out.flush()?;
    writeln!(
        err,
        "{} messages: {} converted, {} rejected, {} sanitized",
        summary.messages, summary.accepted, summary.rejected, summary.sanitized
    )?;
    err.flush()?;
    Ok(summary)
}

/// The per-line state of a run.
struct Lines<'c, E: Write> {
    converter: &'c mut Converter,
    kind: Kind,
    summary: Summary,
    /// Number of the last line seen (1-based).
    number: u64,
    /// Converted lines not yet written.
    buf: BytesMut,
    /// Reports, written out after each block read and whenever `buf` is written.
    err: BufWriter<E>,
}

impl<E: Write> Lines<'_, E> {
    /// Converts one input line (without its `\n`).
    fn line(&mut self, line: &[u8], out: &mut impl Write) -> io::Result<()> {
        self.number += 1;
        let message = line.trim_ascii();
        if message.is_empty() {
            return Ok(());
        }
        self.summary.messages += 1;
        match self.converter.convert(self.kind, message, &mut self.buf) {
            Ok(e) => {
                self.summary.accepted += 1;
                self.summary.sanitized += u64::from(e.sanitized > 0);
            }
            Err(reason) => {
                self.summary.rejected += 1;
                writeln!(self.err, "line {}: {reason}", self.number)?;
            }
        }
        if self.buf.len() >= FLUSH_AT {
            self.err.flush()?;
            out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}
