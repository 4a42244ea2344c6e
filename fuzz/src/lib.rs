//! Invariants the fuzz targets assert, beyond "does not crash":
//!
//! - an accepted message yields exactly one line, ending in `\n`, and nothing else in the
//!   buffer; a rejected one leaves the buffer as it was and carries a typed reason;
//! - the line carries the envelope's tenant as its only tenant tag (never a dimension's);
//! - where the strings avoid what the IOx parser reads differently from InfluxDB 1.x
//!   (backslash, tab, NUL in identifiers), the `influxdb-line-protocol` parser reads the line
//!   back as one point with the same measurement, tenant and timestamp.

use bytes::BytesMut;
use influxdb_line_protocol::parse_lines;
use monasca_persister::decode::{AlarmTransition, Decoder, Metric};
use monasca_persister::encode::{Encoder, Policy};

/// Strings whose meaning the IOx parser shares with 1.x.
fn iox_safe(s: &str) -> bool {
    !s.contains(['\\', '\t', '\0'])
}

fn tenant_tags(p: &influxdb_line_protocol::ParsedLine<'_>, key: &str) -> Vec<String> {
    p.series
        .tag_set
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v.to_string())
        .collect()
}

fn check_metric(m: &Metric<'_, '_>, policy: Policy) {
    let prefix = b"previous\n";
    let mut out = BytesMut::from(&prefix[..]);
    match (Encoder {
        policy,
        ..Default::default()
    })
    .metric(m, &mut out)
    {
        Err(e) => {
            assert_eq!(&out[..], prefix, "rejected message left bytes behind");
            assert!(!e.to_string().is_empty());
        }
        Ok(_) => {
            let line = std::str::from_utf8(&out[prefix.len()..]).expect("UTF-8 line");
            assert!(line.ends_with('\n'), "line not terminated: {line:?}");
            assert_eq!(
                line.matches('\n').count(),
                1,
                "more than one line: {line:?}"
            );
            assert!(
                !line.starts_with(['#', '\t', '\0', ' ']),
                "line would be skipped: {line:?}"
            );
            let clean = iox_safe(m.name)
                && iox_safe(m.tenant_id)
                && iox_safe(m.region)
                && m.dimensions
                    .iter()
                    .all(|(k, v)| iox_safe(k) && v.as_str().is_none_or(iox_safe));
            if clean && policy == Policy::Reject {
                let mut lines: Vec<_> = parse_lines(line).collect();
                assert_eq!(lines.len(), 1, "{line:?}");
                let p = lines.remove(0).unwrap_or_else(|e| panic!("{e}: {line:?}"));
                assert_eq!(p.series.measurement.to_string().replace("\\=", "="), m.name);
                assert_eq!(tenant_tags(&p, "_tenant_id"), vec![m.tenant_id.to_owned()]);
                assert_eq!(p.timestamp, Some(m.timestamp_ms));
            }
        }
    }
}

fn check_alarm(a: &AlarmTransition<'_, '_>, policy: Policy) {
    let mut out = BytesMut::new();
    match (Encoder {
        policy,
        ..Default::default()
    })
    .alarm(a, &mut out)
    {
        Err(e) => {
            assert!(out.is_empty(), "rejected message left bytes behind");
            assert!(!e.to_string().is_empty());
        }
        Ok(_) => {
            let line = std::str::from_utf8(&out).expect("UTF-8 line");
            assert!(line.ends_with('\n'));
            if iox_safe(a.tenant_id) && policy == Policy::Reject {
                let mut lines: Vec<_> = parse_lines(line).collect();
                assert_eq!(lines.len(), 1, "{line:?}");
                let p = lines.remove(0).unwrap_or_else(|e| panic!("{e}: {line:?}"));
                assert_eq!(p.series.measurement.as_str(), "alarm_state_history");
                assert_eq!(tenant_tags(&p, "tenant_id"), vec![a.tenant_id.to_owned()]);
                assert_eq!(p.field_set.len(), 10);
                assert_eq!(p.timestamp, Some(a.timestamp_ms));
            }
        }
    }
}

/// Decodes `data` as a metric and checks the encoder's invariants under both policies.
pub fn metric(decoder: &mut Decoder, data: &[u8]) {
    decoder.metric(data, |m| {
        if let Ok(m) = m {
            check_metric(&m, Policy::Reject);
            check_metric(&m, Policy::Sanitize);
        }
    });
}

/// Decodes `data` as an alarm transition and checks the encoder's invariants.
pub fn alarm(decoder: &mut Decoder, data: &[u8]) {
    decoder.alarm(data, |a| {
        if let Ok(a) = a {
            check_alarm(&a, Policy::Reject);
            check_alarm(&a, Policy::Sanitize);
        }
    });
}
