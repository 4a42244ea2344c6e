//! The whole `convert` command over arbitrary input: the first byte picks the kind, policy and
//! line-protocol dialect, the rest is split into lines. Every non-blank input line is either
//! one output line or one `line N:` report, and the summary adds up. When the first byte has
//! bits 3 and 4 set, the input is also written to a file and converted from there (mapped):
//! the output, the reports and the summary must be the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monasca_persister::cli::convert::{run, run_file};
use monasca_persister::{Converter, Dialect, Encoder, Kind, Policy};

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let kind = if first & 1 == 0 {
        Kind::Metrics
    } else {
        Kind::Alarms
    };
    let policy = if first & 2 == 0 {
        Policy::Reject
    } else {
        Policy::Sanitize
    };
    let dialect = if first & 4 == 0 {
        Dialect::V1
    } else {
        Dialect::V3
    };
    let mut converter = Converter::new(Encoder { policy, dialect }, 1 << 16);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = run(kind, &mut converter, input, &mut out, &mut err).expect("in-memory I/O");
    let messages = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .count();
    assert_eq!(summary.messages as usize, messages);
    assert_eq!(summary.accepted + summary.rejected, summary.messages);
    let err = String::from_utf8(err).expect("reports are UTF-8");
    let reports = err.lines().filter(|l| l.starts_with("line ")).count();
    assert_eq!(reports as u64, summary.rejected, "{err}");
    if kind == Kind::Metrics {
        // Metric lines never hold a raw newline, so lines out = messages accepted.
        assert_eq!(
            out.iter().filter(|&&b| b == b'\n').count() as u64,
            summary.accepted
        );
    }
    if first & 0x18 == 0x18 {
        let path = std::env::temp_dir().join(format!("convert-fuzz-{}", std::process::id()));
        std::fs::write(&path, input).expect("temp file");
        let file = std::fs::File::open(&path).expect("temp file");
        let mut converter = Converter::new(Encoder { policy, dialect }, 1 << 16);
        let (mut out2, mut err2) = (Vec::new(), Vec::new());
        let summary2 = run_file(kind, &mut converter, file, &mut out2, &mut err2).expect("file");
        assert_eq!(summary2, summary);
        assert_eq!(out2, out);
        assert_eq!(String::from_utf8(err2).expect("reports are UTF-8"), err);
    }
});
