//! What `dead-letters list` and `replay` print, and their exit statuses.
//!
//! Owns the table layout. Must never print a letter's payload (it may hold anything a tenant
//! sent).

use std::fmt::Write as _;
use std::process::ExitCode;

use super::{DeadLetterError, Filter, Replayed, Tally, list, replay};
use crate::cli::args::DeadLettersAction;

/// An RFC 3339 UTC time of `ms` since the Unix epoch (seconds precision).
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A tally as a table, one line per (reason, source topic, tenant), and its total.
pub fn render(tally: &Tally) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<22} {:<26} {:<34} {:>9}  {:<20}  newest",
        "reason", "source topic", "tenant", "letters", "oldest"
    );
    let time = |t: Option<i64>| t.map_or_else(|| "-".into(), utc);
    let mut total = 0;
    for ((reason, source, tenant), c) in tally {
        total += c.letters;
        let source = if source.is_empty() { "?" } else { source };
        let _ = writeln!(
            out,
            "  {reason:<22} {source:<26} {tenant:<34} {:>9}  {:<20}  {}",
            c.letters,
            time(c.oldest_ms),
            time(c.newest_ms)
        );
    }
    let _ = writeln!(out, "  total: {total}");
    out
}

/// `dead-letters list` and `dead-letters replay`: exit 0 when done, 2 for a configuration
/// error, 1 when Kafka failed them.
pub fn main(action: DeadLettersAction) -> ExitCode {
    let paths = match &action {
        DeadLettersAction::List { config_file } | DeadLettersAction::Replay { config_file, .. } => {
            config_file
        }
    };
    let config = match crate::config::load_all(paths, &|n| std::env::var(n).ok()) {
        Ok(l) => l.config,
        Err(e) => {
            eprintln!("monasca-persister dead-letters: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match action {
        DeadLettersAction::List { .. } => list(&config).map(|topics| {
            for (topic, tally) in topics {
                println!("dead-letter topic {topic}: letters waiting");
                print!("{}", render(&tally));
            }
        }),
        DeadLettersAction::Replay {
            reason,
            tenant,
            dry_run,
            ..
        } => {
            let filter = Filter {
                reasons: reason,
                tenants: tenant,
            };
            replay(&config, &filter, dry_run).map(|topics| print_replayed(&topics, dry_run))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("monasca-persister dead-letters: {e}");
            let config_error = matches!(e, DeadLetterError::NoTopic);
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

fn print_replayed(topics: &[(String, Replayed)], dry_run: bool) {
    let (done, kept) = if dry_run {
        ("would replay", "would leave waiting")
    } else {
        ("replayed", "left waiting (moved to the end of the topic)")
    };
    for (topic, r) in topics {
        println!("dead-letter topic {topic}: {done}");
        print!("{}", render(&r.replayed));
        println!("dead-letter topic {topic}: {kept}");
        print!("{}", render(&r.kept));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::dead_letters::Count;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn a_tally_renders_one_line_per_kind_and_a_total() {
        let mut t = Tally::new();
        let mut c = Count {
            letters: 0,
            oldest_ms: None,
            newest_ms: None,
        };
        c.add(Some(1_700_000_000_000));
        c.add(Some(1_700_000_060_000));
        c.add(None);
        t.insert(
            ("database_refused".into(), "metrics".into(), "t2".into()),
            c,
        );
        let text = render(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[1].contains("database_refused"), "{text}");
        assert!(
            lines[1].contains(" 3  2023-11-14T22:13:20Z  2023-11-14T22:14:20Z"),
            "{text}"
        );
        assert_eq!(lines[2], "  total: 3");
    }
}
