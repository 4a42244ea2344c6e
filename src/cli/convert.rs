//! `monasca-persister convert`: JSON lines in, line protocol out.
//!
//! The debugging and replay tool: feed it messages (one per line, any bytes), get exactly the
//! lines the daemon would write on stdout and one `line N: <reason>` on stderr per rejected
//! message. Reading all input is success, whatever was rejected; only I/O errors fail.
//!
//! A FILE argument that names a regular file is mapped into memory and each line converted
//! where it lies in the mapping (no copy through the kernel, no per-line read or copy);
//! standard input and anything else is read in large blocks into one buffer and converted
//! there. Output and reports are collected and written in large blocks.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

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
/// for a line longer than that). Small enough to stay in the core's cache between the
/// kernel's copy and the parse.
const READ_AT_LEAST: usize = 128 << 10;

/// A mapped file's pages already converted are handed back (and reports flushed) after each
/// this many bytes, so the process's resident size does not grow with the file.
const MAPPED_WINDOW: usize = 8 << 20;

/// Converts every line of `input`, writing lines to `out` and rejections to `err`.
pub fn run(
    kind: Kind,
    converter: &mut Converter,
    mut input: impl Read,
    mut out: impl Write,
    err: impl Write,
) -> io::Result<Summary> {
    let mut lines = Lines::new(converter, kind, err);
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
    lines.finish(out)
}

/// Converts every line of `file` as [`run`] does. A non-empty regular file is mapped into
/// memory and converted where it lies; anything else (a FIFO, a device, an empty file, a file
/// that cannot be mapped) is read through [`run`].
///
/// The mapping reads the file as it is on disk while the command runs: if another process
/// truncates it meanwhile, the kernel ends this one with SIGBUS. Feed such a file through
/// standard input (`convert < FILE`), which is read with `read(2)`.
pub fn run_file(
    kind: Kind,
    converter: &mut Converter,
    file: File,
    out: impl Write,
    err: impl Write,
) -> io::Result<Summary> {
    match Mapped::new(&file) {
        Some(map) => run_mapped(kind, converter, &map, MAPPED_WINDOW, out, err),
        None => run(kind, converter, file, out, err),
    }
}

/// The mapped file's lines, converted `window` bytes at a time.
fn run_mapped(
    kind: Kind,
    converter: &mut Converter,
    map: &Mapped,
    window: usize,
    mut out: impl Write,
    err: impl Write,
) -> io::Result<Summary> {
    let mut lines = Lines::new(converter, kind, err);
    let data = map.bytes();
    let (mut start, mut next_release) = (0usize, window);
    for end in memchr::memchr_iter(b'\n', data) {
        lines.line(&data[start..end], &mut out)?;
        start = end + 1;
        if start >= next_release {
            map.release(start);
            lines.err.flush()?;
            next_release = start + window;
        }
    }
    if start < data.len() {
        lines.line(&data[start..], &mut out)?;
    }
    lines.finish(out)
}

/// A whole regular file mapped read-only, private to this process.
struct Mapped {
    ptr: NonNull<u8>,
    len: usize,
    /// Bytes from the start already handed back by [`Mapped::release`] (page-aligned).
    released: Cell<usize>,
}

impl Mapped {
    /// Maps `file` if it is a non-empty regular file; `None` otherwise (the caller reads it).
    fn new(file: &File) -> Option<Self> {
        let meta = file.metadata().ok()?;
        let len = usize::try_from(meta.len()).ok()?;
        if !meta.is_file() || len == 0 {
            return None;
        }
        // SAFETY: a fresh mapping chosen by the kernel (no address given), of a descriptor
        // that is open for reading; the result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: the range just mapped. Advice only: a failure changes nothing.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        Some(Self {
            ptr: NonNull::new(ptr.cast())?,
            len,
            released: Cell::new(0),
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes stay mapped until `drop`. The file's contents are
        // assumed not to change meanwhile (see `run_file`); `release` only drops pages from
        // this process, and reading them again would fault them back in from the file.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Hands back the pages that lie wholly before `offset`: they stay in the page cache but
    /// no longer count in this process's resident size.
    fn release(&self, offset: usize) {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0);
        if page == 0 {
            return;
        }
        let (from, upto) = (self.released.get(), offset.min(self.len) / page * page);
        if upto > from {
            // SAFETY: a page-aligned range of this mapping. On a private read-only file
            // mapping, MADV_DONTNEED drops only this process's page table entries; the bytes
            // read afterwards (none are: `upto` lies behind the last line converted) would
            // come from the file again.
            unsafe {
                libc::madvise(
                    self.ptr.as_ptr().add(from).cast(),
                    upto - from,
                    libc::MADV_DONTNEED,
                )
            };
            self.released.set(upto);
        }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no borrow of `bytes` outlives
        // `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
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

impl<'c, E: Write> Lines<'c, E> {
    fn new(converter: &'c mut Converter, kind: Kind, err: E) -> Self {
        Self {
            converter,
            kind,
            summary: Summary::default(),
            number: 0,
            buf: BytesMut::with_capacity(FLUSH_AT + 64 * 1024),
            err: BufWriter::with_capacity(64 * 1024, err),
        }
    }

    /// Writes what is left and the summary line.
    fn finish(self, mut out: impl Write) -> io::Result<Summary> {
        let Lines {
            summary,
            buf,
            mut err,
            ..
        } = self;
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

/// `convert`'s command line: exit 2 when the file cannot be opened, 1 on a write error.
#[cfg(feature = "daemon")]
pub fn main(a: super::args::ConvertArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let policy = if a.sanitize {
        crate::Policy::Sanitize
    } else {
        crate::Policy::Reject
    };
    let encoder = crate::Encoder {
        policy,
        dialect: a.line_protocol,
    };
    let mut converter = Converter::new(encoder, a.max_message_bytes);
    let (stdout, stderr) = (io::stdout().lock(), io::stderr().lock());
    let result = match a.file.filter(|f| f.as_os_str() != "-") {
        Some(path) => match File::open(&path) {
            Ok(f) => run_file(a.kind, &mut converter, f, stdout, stderr),
            Err(e) => {
                eprintln!(
                    "monasca-persister convert: cannot open {}: {e}",
                    path.display()
                );
                return ExitCode::from(2);
            }
        },
        None => run(a.kind, &mut converter, io::stdin().lock(), stdout, stderr),
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monasca-persister convert: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid, rejected, blank and cut-off lines, and a last line without its newline.
    fn input() -> Vec<u8> {
        let mut input = Vec::new();
        for (i, line) in include_str!("../../tests/fixtures/sample-metrics.jsonl")
            .lines()
            .enumerate()
        {
            input.extend_from_slice(line.as_bytes());
            input.extend_from_slice(match i % 7 {
                0 => b"\n\n",
                3 => b"\r\n",
                _ => b"\n",
            });
            if i % 11 == 0 {
                input.extend_from_slice(&line.as_bytes()[..line.len() / 2]);
                input.extend_from_slice(b"\n{\"metric\":1}\n\xff\xfe\n");
            }
        }
        input.extend_from_slice(br#"{"metric":{"name":"last""#);
        input
    }

    fn via_run(input: &[u8]) -> (Summary, Vec<u8>, Vec<u8>) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let summary = run(
            Kind::Metrics,
            &mut Converter::default(),
            input,
            &mut out,
            &mut err,
        )
        .unwrap();
        (summary, out, err)
    }

    fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("mp-convert-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn a_mapped_file_converts_exactly_as_its_bytes_read_from_a_stream() {
        let input = input();
        let path = temp_file("mapped", &input);
        let map = Mapped::new(&File::open(&path).unwrap()).expect("a regular file maps");
        // Windows of one page, of a few pages and of more than the file: pages are handed
        // back behind the line being converted, never under it.
        for window in [4096, 3 * 4096 + 5, 1 << 30] {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let summary = run_mapped(
                Kind::Metrics,
                &mut Converter::default(),
                &map,
                window,
                &mut out,
                &mut err,
            )
            .unwrap();
            let (want_summary, want_out, want_err) = via_run(&input);
            assert_eq!(summary, want_summary, "window {window}");
            assert!(
                summary.rejected > 10 && summary.accepted > 100,
                "{summary:?}"
            );
            assert_eq!(out, want_out, "window {window}");
            assert_eq!(
                String::from_utf8_lossy(&err),
                String::from_utf8_lossy(&want_err),
                "window {window}"
            );
        }
        drop(map);
        std::fs::remove_file(path).unwrap();
    }

    /// Resident bytes of the mapping that starts at `addr`, from `/proc/self/smaps`.
    fn resident(addr: usize) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines();
        let start = format!("{addr:x}-");
        lines.find(|l| l.starts_with(&start)).expect("the mapping");
        let rss = lines.find(|l| l.starts_with("Rss:")).unwrap();
        let kb: usize = rss.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }

    #[test]
    fn converted_pages_of_a_mapped_file_are_handed_back() {
        let line = include_str!("../../tests/fixtures/sample-metrics.jsonl")
            .lines()
            .next()
            .unwrap();
        let input = format!("{line}\n").repeat((8 << 20) / (line.len() + 1));
        let path = temp_file("resident", input.as_bytes());
        let map = Mapped::new(&File::open(&path).unwrap()).unwrap();
        let (window, addr) = (256 << 10, map.ptr.as_ptr() as usize);
        let convert = |window| {
            let mut sink = io::sink();
            run_mapped(
                Kind::Metrics,
                &mut Converter::default(),
                &map,
                window,
                &mut sink,
                io::sink(),
            )
            .unwrap()
        };
        let summary = convert(window);
        assert_eq!(summary.accepted as usize, input.len() / (line.len() + 1));
        // Everything but the last window (and the page it ends in) was handed back.
        assert!(resident(addr) <= window + 8192, "{}", resident(addr));
        // Without hand-backs the whole file would stay resident: the check can fail.
        let summary = convert(usize::MAX / 2);
        assert_eq!(summary.accepted as usize, input.len() / (line.len() + 1));
        assert!(resident(addr) >= input.len() / 2, "{}", resident(addr));
        drop(map);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn an_empty_file_is_read_not_mapped() {
        let path = temp_file("empty", b"");
        let file = File::open(&path).unwrap();
        assert!(Mapped::new(&file).is_none());
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let summary = run_file(
            Kind::Alarms,
            &mut Converter::default(),
            file,
            &mut out,
            &mut err,
        )
        .unwrap();
        assert_eq!(summary, Summary::default());
        assert!(out.is_empty());
        assert_eq!(err, b"0 messages: 0 converted, 0 rejected, 0 sanitized\n");
        std::fs::remove_file(path).unwrap();
    }
}
