//! What a `partial write` answer says was dropped: the lines it names, matched to the batch.
//!
//! Owns the matching of InfluxDB's messages (unparseable line text, type conflicts by
//! measurement) to line indexes. Must never name a line it cannot tell was dropped: when in
//! doubt it answers `None` and the writer splits (resending stored points is harmless).

use std::ops::Range;

use super::{Lines, RejectedLine, parse_partial};
use crate::encode::lineproto::{BACKSLASH, COMMA, SPACE, escaped_in_ident};

/// Names the lines a `partial write` dropped, if the message identifies them all: exact text
/// for unparseable lines, the measurement for type conflicts. `None` means "cannot tell":
/// the caller then splits (resending stored points is harmless, see `classify`).
pub(super) fn identify_partial(
    batch: &Lines,
    range: &Range<usize>,
    message: &str,
) -> Option<Vec<RejectedLine>> {
    let d = parse_partial(message);
    if d.unparseable.is_empty() && d.type_conflicts.is_empty() && d.dropped == Some(range.len()) {
        // Every point dropped (e.g. "points beyond retention policy"): no need to split.
        return Some(
            range
                .clone()
                .map(|index| RejectedLine {
                    index,
                    reason: format!("InfluxDB: {message}"),
                })
                .collect(),
        );
    }
    let mut rejected = Vec::new();
    let mut matched_unparseable = vec![false; d.unparseable.len()];
    let mut conflicts = 0usize;
    for i in range.clone() {
        let line = batch.line(i);
        if let Some(k) = d.unparseable.iter().position(|(u, _)| u.as_bytes() == line) {
            matched_unparseable[k] = true;
            rejected.push(RejectedLine {
                index: i,
                reason: format!("InfluxDB: unable to parse: {}", d.unparseable[k].1),
            });
        } else if !d.type_conflicts.is_empty() {
            let m = measurement(line);
            if let Some(name) = d
                .type_conflicts
                .iter()
                .find(|c| c.as_bytes() == m.as_slice())
            {
                conflicts += 1;
                rejected.push(RejectedLine {
                    index: i,
                    reason: format!("InfluxDB: field type conflict on measurement {name:?}"),
                });
            }
        }
    }
    let all_found = matched_unparseable.iter().all(|&m| m)
        && (d.type_conflicts.is_empty() || d.dropped == Some(conflicts));
    (all_found && !rejected.is_empty()).then_some(rejected)
}

/// The measurement of a line, unescaped as 1.x does (`\,`, `\ `, `\=`).
fn measurement(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b == BACKSLASH && i + 1 < line.len() && escaped_in_ident(line[i + 1]) {
            out.push(line[i + 1]);
            i += 2;
            continue;
        }
        if b == COMMA || b == SPACE {
            break;
        }
        out.push(b);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::lines::tests::batch;

    #[test]
    fn partial_write_names_unparseable_lines() {
        let b = batch(&["m value=1 1", "bad one", "m value=2 2"]);
        let got = identify_partial(
            &b,
            &(0..3),
            "partial write: unable to parse 'bad one': invalid field format dropped=0",
        );
        assert_eq!(
            got,
            Some(vec![RejectedLine {
                index: 1,
                reason: "InfluxDB: unable to parse: invalid field format".into()
            }])
        );
    }

    #[test]
    fn partial_write_names_type_conflicts_by_measurement() {
        let b = batch(&["zz value=1 1", "ok value=1 1", "zz,a=b value=2 2"]);
        let msg = r#"partial write: field type conflict: input field "value" on measurement "zz" is type float, already exists as type string dropped=2"#;
        let got = identify_partial(&b, &(0..3), msg).expect("identified");
        assert_eq!(got.iter().map(|r| r.index).collect::<Vec<_>>(), vec![0, 2]);
    }

    #[test]
    fn partial_write_that_cannot_be_matched_asks_for_a_split() {
        let b = batch(&["zz value=1 1", "ok value=1 1"]);
        let msg = r#"partial write: field type conflict: input field "value" on measurement "zz" is type float, already exists as type string dropped=2"#;
        assert_eq!(identify_partial(&b, &(0..2), msg), None);
        assert_eq!(
            identify_partial(
                &b,
                &(0..2),
                "partial write: unable to parse 'x': y dropped=0"
            ),
            None
        );
    }

    #[test]
    fn partial_write_that_dropped_every_point_rejects_them_all() {
        let b = batch(&["old v=1 1", "old v=2 2"]);
        let got = identify_partial(
            &b,
            &(0..2),
            "partial write: points beyond retention policy dropped=2",
        )
        .unwrap();
        assert_eq!(got.iter().map(|r| r.index).collect::<Vec<_>>(), vec![0, 1]);
        assert!(got[0].reason.contains("beyond retention"));
    }

    #[test]
    fn measurement_is_unescaped() {
        assert_eq!(measurement(br"a\,b\ c,t=1 v=1"), b"a,b c".to_vec());
        assert_eq!(measurement(b"m v=1"), b"m".to_vec());
    }
}
