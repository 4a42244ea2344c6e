//! Partitions that librdkafka cannot read: a batch it cannot decompress (a codec the build
//! lacks, corrupt compressed data), a CRC mismatch, a corrupt record batch, or any other
//! error it reports for one partition instead of its messages.
//!
//! librdkafka does not skip such a batch: it fetches the same offset again about once a
//! second and reports the same error, so the partition waits, and nothing is lost, until the
//! data can be read (a build with the codec, a repaired log). What it must not be is quiet:
//! this tracker turns the stream of repeated errors into state changes, each logged once
//! (`Began`, `Ended`), and a reminder at most every [`REMIND_EVERY`]. The consumer publishes
//! the state for `/metrics` and `/ready`.
//!
//! Pure bookkeeping: no Kafka, no clock (the caller passes `now`), no logging.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::PipelineStats;

/// While a partition stays unreadable, it is reported again this often.
pub const REMIND_EVERY: Duration = Duration::from_secs(300);

/// A partition with no error for this long is readable again even if no message came (an
/// error that went away by itself on a partition that has nothing new to read). librdkafka
/// reports a stuck partition's error on every fetch, about once a second.
pub const QUIET_FOR: Duration = Duration::from_secs(60);

/// Why a partition cannot be read: the `cause` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// A compressed batch librdkafka cannot decompress (an unknown codec, corrupt data).
    Decompression,
    /// A record or batch whose CRC does not match (with `check.crcs=true`).
    Crc,
    /// A batch librdkafka cannot parse, or the broker reports as corrupt.
    Corrupt,
    /// Any other error reported for the partition instead of its messages.
    Other,
}

impl Cause {
    pub const ALL: [Cause; 4] = [
        Cause::Decompression,
        Cause::Crc,
        Cause::Corrupt,
        Cause::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Cause::Decompression => "decompression",
            Cause::Crc => "crc",
            Cause::Corrupt => "corrupt",
            Cause::Other => "other",
        }
    }
}

/// A change worth one log line.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// The partition became unreadable (or its cause changed).
    Began {
        partition: i32,
        cause: Cause,
        detail: String,
    },
    /// Still unreadable: since how long, and how many errors since the last report.
    Still {
        partition: i32,
        cause: Cause,
        unreadable_for: Duration,
        errors: u64,
        detail: String,
    },
    /// Readable again: a message came, or no error for [`QUIET_FOR`].
    Ended {
        partition: i32,
        cause: Cause,
        unreadable_for: Duration,
        by_message: bool,
    },
}

#[derive(Debug)]
struct Entry {
    cause: Cause,
    since: Instant,
    last_error: Instant,
    last_report: Instant,
    /// Errors since the last report.
    errors: u64,
    detail: String,
}

/// The unreadable partitions of one consumer.
#[derive(Debug, Default)]
pub struct Unreadable {
    parts: BTreeMap<i32, Entry>,
}

impl Unreadable {
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// An error for `partition`: starts (or changes the cause of) its unreadable state.
    pub fn error(
        &mut self,
        partition: i32,
        cause: Cause,
        detail: &str,
        now: Instant,
    ) -> Option<Report> {
        match self.parts.get_mut(&partition) {
            Some(e) if e.cause == cause => {
                e.errors += 1;
                e.last_error = now;
                if e.detail != detail {
                    detail.clone_into(&mut e.detail);
                }
                None
            }
            _ => {
                self.parts.insert(
                    partition,
                    Entry {
                        cause,
                        since: now,
                        last_error: now,
                        last_report: now,
                        errors: 0,
                        detail: detail.to_owned(),
                    },
                );
                Some(Report::Began {
                    partition,
                    cause,
                    detail: detail.to_owned(),
                })
            }
        }
    }

    /// A message of `partition` was read: it is readable (again).
    pub fn read(&mut self, partition: i32, now: Instant) -> Option<Report> {
        let e = self.parts.remove(&partition)?;
        Some(Report::Ended {
            partition,
            cause: e.cause,
            unreadable_for: now.saturating_duration_since(e.since),
            by_message: true,
        })
    }

    /// Reminders due and partitions quiet long enough to count as readable.
    pub fn tick(&mut self, now: Instant) -> Vec<Report> {
        let mut out = Vec::new();
        self.parts.retain(|&partition, e| {
            if now.saturating_duration_since(e.last_error) >= QUIET_FOR {
                out.push(Report::Ended {
                    partition,
                    cause: e.cause,
                    unreadable_for: e.last_error.saturating_duration_since(e.since),
                    by_message: false,
                });
                return false;
            }
            if now.saturating_duration_since(e.last_report) >= REMIND_EVERY {
                out.push(Report::Still {
                    partition,
                    cause: e.cause,
                    unreadable_for: now.saturating_duration_since(e.since),
                    errors: e.errors,
                    detail: e.detail.clone(),
                });
                e.last_report = now;
                e.errors = 0;
            }
            true
        });
        out
    }

    /// The partitions are no longer ours: their new owner reports them.
    pub fn forget(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.parts.remove(p);
        }
    }

    /// Each unreadable partition, its cause and since when.
    pub fn iter(&self) -> impl Iterator<Item = (i32, Cause, Instant)> + '_ {
        self.parts.iter().map(|(&p, e)| (p, e.cause, e.since))
    }
}

/// Logs a change of a partition's readability and publishes it for `/metrics` and `/ready`.
pub fn publish(r: Report, stats: &PipelineStats, topic: &str, consumer: &str) {
    match r {
        Report::Began {
            partition,
            cause,
            detail,
        } => {
            clear(stats, topic, partition);
            let epoch_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            stats
                .unreadable_since
                .set((topic.to_owned(), partition, cause.label()), epoch_ms);
            tracing::warn!(
                consumer,
                topic,
                partition,
                cause = cause.label(),
                "partition unreadable: its messages wait (nothing is skipped) until librdkafka can read them: {detail}"
            );
        }
        Report::Still {
            partition,
            cause,
            unreadable_for,
            errors,
            detail,
        } => {
            tracing::warn!(
                consumer,
                topic,
                partition,
                cause = cause.label(),
                unreadable_seconds = unreadable_for.as_secs(),
                errors_since_last_report = errors,
                "partition still unreadable: {detail}"
            );
        }
        Report::Ended {
            partition,
            cause,
            unreadable_for,
            by_message,
        } => {
            clear(stats, topic, partition);
            let how = if by_message {
                "a message was read"
            } else {
                "no error for a while"
            };
            tracing::info!(
                consumer,
                topic,
                partition,
                cause = cause.label(),
                unreadable_seconds = unreadable_for.as_secs_f64(),
                "partition readable again ({how})"
            );
        }
    }
}

/// Drops `partition`'s unreadable gauge, whatever its cause.
pub fn clear(stats: &PipelineStats, topic: &str, partition: i32) {
    for cause in Cause::ALL {
        (stats.unreadable_since).remove(&(topic.to_owned(), partition, cause.label()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DETAIL: &str =
        "Decompression (codec 0x4) of message at 0 of 62636 bytes failed: Local: Not implemented";

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn one_report_per_state_change_however_many_errors_repeat() {
        let t0 = Instant::now();
        let mut u = Unreadable::default();
        let began = u.error(3, Cause::Decompression, DETAIL, t0);
        assert!(matches!(began, Some(Report::Began { partition: 3, .. })));
        for i in 1..120 {
            assert_eq!(u.error(3, Cause::Decompression, DETAIL, t0 + s(i)), None);
            assert!(
                u.tick(t0 + s(i)).is_empty(),
                "no reminder before {REMIND_EVERY:?}"
            );
        }
        assert_eq!(
            u.iter().collect::<Vec<_>>(),
            vec![(3, Cause::Decompression, t0)]
        );
        let ended = u.read(3, t0 + s(120));
        assert_eq!(
            ended,
            Some(Report::Ended {
                partition: 3,
                cause: Cause::Decompression,
                unreadable_for: s(120),
                by_message: true
            })
        );
        assert!(u.is_empty());
        assert_eq!(
            u.read(3, t0 + s(121)),
            None,
            "a readable partition stays quiet"
        );
    }

    #[test]
    fn a_partition_still_unreadable_is_reminded_of_at_the_interval_with_its_error_count() {
        let t0 = Instant::now();
        let mut u = Unreadable::default();
        u.error(1, Cause::Crc, "CRC", t0);
        let mut reminders = Vec::new();
        for i in 1..=700 {
            let now = t0 + s(i);
            u.error(1, Cause::Crc, "CRC", now);
            reminders.extend(u.tick(now));
        }
        assert_eq!(
            reminders,
            vec![
                Report::Still {
                    partition: 1,
                    cause: Cause::Crc,
                    unreadable_for: REMIND_EVERY,
                    errors: 300,
                    detail: "CRC".into()
                },
                Report::Still {
                    partition: 1,
                    cause: Cause::Crc,
                    unreadable_for: REMIND_EVERY * 2,
                    errors: 300,
                    detail: "CRC".into()
                },
            ]
        );
    }

    #[test]
    fn a_new_cause_is_a_new_state_and_quiet_partitions_recover() {
        let t0 = Instant::now();
        let mut u = Unreadable::default();
        u.error(0, Cause::Other, "x", t0);
        assert!(matches!(
            u.error(0, Cause::Corrupt, "y", t0 + s(1)),
            Some(Report::Began {
                cause: Cause::Corrupt,
                ..
            })
        ));
        assert!(u.tick(t0 + s(1) + QUIET_FOR - s(1)).is_empty());
        assert_eq!(
            u.tick(t0 + s(1) + QUIET_FOR),
            vec![Report::Ended {
                partition: 0,
                cause: Cause::Corrupt,
                unreadable_for: Duration::ZERO,
                by_message: false
            }]
        );
        assert!(u.is_empty());
    }

    #[test]
    fn forgotten_partitions_are_no_longer_reported() {
        let t0 = Instant::now();
        let mut u = Unreadable::default();
        u.error(0, Cause::Other, "x", t0);
        u.error(1, Cause::Other, "x", t0);
        u.forget(&[0]);
        assert_eq!(
            u.iter().map(|(p, ..)| p).collect::<Vec<_>>(),
            vec![1],
            "only the partition still ours"
        );
    }
}
