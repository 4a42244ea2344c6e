//! Every InfluxDB answer mapped to what the writer does next — in one place, as a pure
//! function, so each status/body pair has a unit test.
//!
//! Observed on InfluxDB 1.6.7 (see the README): a `partial write` 400 means the other lines
//! were stored; any other 400 (`unable to parse` for every line, a field type conflict inside
//! the batch) means nothing was stored. Rewriting a point InfluxDB already holds stores the
//! same point again (same series, same timestamp), so splitting a batch and resending its
//! halves never duplicates anything.

use std::time::Duration;

/// Why a write is being retried; a label for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryCause {
    /// 401: wrong or missing credentials.
    Auth,
    /// 403: the user may not write to (or create) this database: a refusal of one database,
    /// not of the whole server.
    Forbidden,
    /// 429.
    Throttled,
    /// 5xx (including 1.x's "retention policy not found").
    Server,
    /// 404 where the database cannot be created (v2 bucket missing).
    NotFound,
    /// Connection refused, reset, TLS failure, malformed response.
    Transport,
    /// No complete answer within the request timeout.
    Timeout,
}

impl RetryCause {
    /// Every cause, in declaration order (the index of each in counters).
    pub const ALL: [RetryCause; 7] = [
        RetryCause::Auth,
        RetryCause::Forbidden,
        RetryCause::Throttled,
        RetryCause::Server,
        RetryCause::NotFound,
        RetryCause::Transport,
        RetryCause::Timeout,
    ];

    /// Whether this refuses one database (a missing grant, a bucket that does not exist)
    /// rather than failing the server or the credentials.
    pub fn refuses_database(self) -> bool {
        matches!(self, RetryCause::Forbidden | RetryCause::NotFound)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RetryCause::Auth => "auth",
            RetryCause::Forbidden => "forbidden",
            RetryCause::Throttled => "throttled",
            RetryCause::Server => "server_error",
            RetryCause::NotFound => "not_found",
            RetryCause::Transport => "transport",
            RetryCause::Timeout => "timeout",
        }
    }
}

/// What to do with a request after its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every point is stored.
    Done,
    /// 1.x `partial write`: the server stored the rest and names what it dropped.
    Partial { message: String },
    /// Nothing was stored because of some lines: send the halves separately until the bad
    /// lines stand alone.
    Split { message: String },
    /// 1.x `database not found`: create it, then send again.
    CreateDatabase,
    /// Send again after a backoff (or the server's `Retry-After`).
    Retry {
        cause: RetryCause,
        after: Option<Duration>,
        message: String,
    },
    /// The server will never take these lines: report them rejected with its message.
    Reject { message: String },
}

pub use crate::config::Api;

/// Classifies an HTTP answer. `body` is the response body; `retry_after` the raw header.
pub fn classify(api: Api, status: u16, retry_after: Option<&str>, body: &[u8]) -> Verdict {
    let message = || error_message(body);
    match status {
        200..=299 => Verdict::Done,
        400 => {
            let m = message();
            if m.contains("partial write") {
                Verdict::Partial { message: m }
            } else {
                Verdict::Split { message: m }
            }
        }
        401 | 403 => Verdict::Retry {
            cause: if status == 401 {
                RetryCause::Auth
            } else {
                RetryCause::Forbidden
            },
            after: None,
            message: format!("HTTP {status}: {}", message()),
        },
        404 => {
            let m = message();
            if api == Api::V1 && m.contains("database not found") {
                Verdict::CreateDatabase
            } else {
                Verdict::Retry {
                    cause: RetryCause::NotFound,
                    after: None,
                    message: format!("HTTP 404: {m}"),
                }
            }
        }
        // A proxy's timeout, or a redirect nobody configured: neither says anything about the
        // points, so they are sent again.
        300..=399 | 408 => Verdict::Retry {
            cause: if status == 408 {
                RetryCause::Timeout
            } else {
                RetryCause::Server
            },
            after: None,
            message: format!("HTTP {status}: {}", message()),
        },
        413 => Verdict::Split {
            message: "HTTP 413: request body too large".to_owned(),
        },
        429 => Verdict::Retry {
            cause: RetryCause::Throttled,
            after: retry_after.and_then(parse_retry_after),
            message: format!("HTTP 429: {}", message()),
        },
        500..=599 => Verdict::Retry {
            cause: RetryCause::Server,
            after: retry_after.and_then(parse_retry_after),
            message: format!("HTTP {status}: {}", message()),
        },
        _ => Verdict::Reject {
            message: format!("HTTP {status}: {}", message()),
        },
    }
}

/// The `error` (1.x) or `message` (2.x) string of a JSON error body, else the body as text.
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    for key in ["\"error\":\"", "\"message\":\""] {
        if let Some(start) = text.find(key) {
            let rest = &text[start + key.len()..];
            return json_unescape_until_quote(rest);
        }
    }
    text.to_owned()
}

/// Reads a JSON string body (after its opening quote) up to the closing quote.
fn json_unescape_until_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                        out.push(ch);
                    }
                }
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// `Retry-After` in seconds (the HTTP-date form is rare for these servers and ignored).
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(300)))
}

/// What a 1.x `partial write` message says was dropped: the exact text of each unparseable
/// line, and the measurements whose points hit a field type conflict.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// (line text, InfluxDB's reason) per unparseable line.
    pub unparseable: Vec<(String, String)>,
    pub type_conflicts: Vec<String>,
    /// The server's `dropped=N` (counts type conflicts, not unparseable lines).
    pub dropped: Option<usize>,
}

/// Parses a `partial write` message: `unable to parse '<line>': <why>` entries separated by
/// newlines, `field type conflict: input field "f" on measurement "m" ...`, `dropped=N`.
pub fn parse_partial(message: &str) -> Dropped {
    let mut d = Dropped::default();
    let body = message.strip_prefix("partial write: ").unwrap_or(message);
    let (body, dropped) = match body.rfind(" dropped=") {
        Some(i) => (&body[..i], body[i + 9..].trim().parse().ok()),
        None => (body, None),
    };
    d.dropped = dropped;
    let mut rest = body;
    while let Some(start) = rest.find("unable to parse '") {
        let after = &rest[start + 17..];
        // The line may itself contain "': "; the entry ends at the last "': " before the next
        // entry (or the end).
        let next = after.find("\nunable to parse '").unwrap_or(after.len());
        let entry = &after[..next];
        if let Some(end) = entry.rfind("': ") {
            d.unparseable
                .push((entry[..end].to_owned(), entry[end + 3..].trim().to_owned()));
        }
        rest = &after[next..];
    }
    let mut rest = body;
    while let Some(i) = rest.find("on measurement \"") {
        let after = &rest[i + 16..];
        match after.find("\" is type") {
            Some(end) => {
                d.type_conflicts.push(after[..end].to_owned());
                rest = &after[end..];
            }
            None => break,
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1(status: u16, body: &str) -> Verdict {
        classify(Api::V1, status, None, body.as_bytes())
    }

    #[test]
    fn no_content_is_done() {
        assert_eq!(v1(204, ""), Verdict::Done);
        assert_eq!(v1(200, "{}"), Verdict::Done);
    }

    #[test]
    fn database_not_found_creates_it() {
        assert_eq!(
            v1(404, r#"{"error":"database not found: \"mon\""}"#),
            Verdict::CreateDatabase
        );
    }

    #[test]
    fn v2_not_found_is_retried_not_created() {
        let a = classify(
            Api::V2,
            404,
            None,
            br#"{"code":"not found","message":"bucket \"b\" not found"}"#,
        );
        assert!(
            matches!(
                a,
                Verdict::Retry {
                    cause: RetryCause::NotFound,
                    ..
                }
            ),
            "{a:?}"
        );
    }

    #[test]
    fn partial_write_is_partial() {
        let a = v1(
            400,
            r#"{"error":"partial write: unable to parse 'x': invalid field format dropped=0"}"#,
        );
        assert_eq!(
            a,
            Verdict::Partial {
                message: "partial write: unable to parse 'x': invalid field format dropped=0"
                    .into()
            }
        );
    }

    #[test]
    fn unparseable_batch_is_split() {
        let a = v1(
            400,
            r#"{"error":"unable to parse 'bad one': invalid field format\nunable to parse 'bad two': invalid field format"}"#,
        );
        assert!(matches!(a, Verdict::Split { .. }), "{a:?}");
    }

    #[test]
    fn type_conflict_inside_the_batch_is_split() {
        // 1.6 stores nothing in this case (observed).
        assert!(matches!(
            v1(400, r#"{"error":"field type conflict"}"#),
            Verdict::Split { .. }
        ));
    }

    #[test]
    fn too_large_is_split() {
        assert!(matches!(v1(413, ""), Verdict::Split { .. }));
    }

    #[test]
    fn auth_failures_are_retried() {
        for (s, want) in [(401, RetryCause::Auth), (403, RetryCause::Forbidden)] {
            assert!(matches!(
                v1(s, r#"{"error":"authorization failed"}"#),
                Verdict::Retry { cause, .. } if cause == want
            ));
        }
        assert!(RetryCause::Forbidden.refuses_database());
        assert!(RetryCause::NotFound.refuses_database());
        assert!(
            !RetryCause::Auth.refuses_database(),
            "bad credentials refuse every database"
        );
    }

    #[test]
    fn throttling_honours_retry_after() {
        let a = classify(Api::V1, 429, Some("7"), b"");
        assert_eq!(
            a,
            Verdict::Retry {
                cause: RetryCause::Throttled,
                after: Some(Duration::from_secs(7)),
                message: "HTTP 429: ".into()
            }
        );
    }

    #[test]
    fn server_errors_are_retried() {
        for s in [500, 502, 503, 504] {
            assert!(
                matches!(
                    v1(s, "oops"),
                    Verdict::Retry {
                        cause: RetryCause::Server,
                        ..
                    }
                ),
                "{s}"
            );
        }
        let rp = v1(500, r#"{"error":"retention policy not found: nope"}"#);
        assert!(
            matches!(rp, Verdict::Retry { cause: RetryCause::Server, ref message, .. } if message.contains("retention policy"))
        );
    }

    #[test]
    fn other_statuses_reject_with_the_server_message() {
        assert_eq!(
            v1(405, r#"{"error":"nope"}"#),
            Verdict::Reject {
                message: "HTTP 405: nope".into()
            }
        );
    }

    #[test]
    fn partial_message_names_unparseable_lines_and_conflicts() {
        let d = parse_partial(
            "partial write: unable to parse 'a b': invalid field format\nunable to parse 'it': s: x': bad dropped=0",
        );
        let lines: Vec<&str> = d.unparseable.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(lines, vec!["a b", "it': s: x"]);
        assert_eq!(d.unparseable[0].1, "invalid field format");
        assert_eq!(d.dropped, Some(0));
        let d = parse_partial(
            r#"partial write: field type conflict: input field "value" on measurement "zz" is type float, already exists as type string dropped=3"#,
        );
        assert_eq!(d.type_conflicts, vec!["zz".to_owned()]);
        assert_eq!(d.dropped, Some(3));
    }

    #[test]
    fn partial_message_with_multibyte_measurement_does_not_panic() {
        let d = parse_partial(
            "partial write: field type conflict: input field \"value\" on measurement \"温度.cpu\" is type float, already exists as type string dropped=1",
        );
        assert_eq!(d.type_conflicts, vec!["温度.cpu".to_owned()]);
        let d = parse_partial("partial write: on measurement \"温");
        assert!(d.type_conflicts.is_empty());
    }

    #[test]
    fn proxy_timeouts_and_redirects_are_retried() {
        assert!(matches!(
            v1(408, ""),
            Verdict::Retry {
                cause: RetryCause::Timeout,
                ..
            }
        ));
        assert!(matches!(
            v1(307, ""),
            Verdict::Retry {
                cause: RetryCause::Server,
                ..
            }
        ));
    }

    #[test]
    fn error_message_unescapes_json() {
        assert_eq!(error_message(br#"{"error":"a \"b\"\nc"}"#), "a \"b\"\nc");
        assert_eq!(error_message(b"plain text"), "plain text");
    }
}
