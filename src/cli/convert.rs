//! `monasca-persister convert`: JSON lines in, line protocol out.
//!
//! The debugging and replay tool: feed it messages (one per line, any bytes), get exactly the
//! lines the daemon would write on stdout and one `line N: <reason>` on stderr per rejected
//! message. Reading all input is success, whatever was rejected; only I/O errors fail.

use std::io::{self, BufRead, Write};

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

/// Converts every line of `input`, writing lines to `out` and rejections to `err`.
pub fn run(
    kind: Kind,
    converter: &mut Converter,
    mut input: impl BufRead,
    mut out: impl Write,
    mut err: impl Write,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    let mut line = Vec::with_capacity(4096);
    let mut buf = BytesMut::with_capacity(FLUSH_AT + 64 * 1024);
    let mut number = 0u64;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        number += 1;
        let message = line.trim_ascii();
        if message.is_empty() {
            continue;
        }
        summary.messages += 1;
        match converter.convert(kind, message, &mut buf) {
            Ok(e) => {
                summary.accepted += 1;
                summary.sanitized += u64::from(e.sanitized > 0);
            }
            Err(reason) => {
                summary.rejected += 1;
                writeln!(err, "line {number}: {reason}")?;
            }
        }
        if buf.len() >= FLUSH_AT {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    writeln!(
        err,
        "{} messages: {} converted, {} rejected, {} sanitized",
        summary.messages, summary.accepted, summary.rejected, summary.sanitized
    )?;
    Ok(summary)
}
