//! This process's CPU time and memory, read from `/proc` (Linux only): the whole process, and
//! its threads' CPU time grouped by what they do (consumer, librdkafka, io, other).
//!
//! Owns the grouping of threads by name; the names themselves are defined once in
//! [`crate::stats::thread_names`], which the threads' creators use. Must never make a group
//! go down (an ended thread's time stays counted) nor fail `/metrics` when `/proc` cannot be
//! read (the families are left out).

use crate::stats::thread_names;

/// CPU seconds and resident bytes of this process, from `/proc/self/stat` (Linux only).
pub(super) fn process_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, rss is 24: after the state
    // (field 3) they are at 11, 12 and 21 here.
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let pages: u64 = f.get(21)?.parse().ok()?;
    // The kernel's USER_HZ is 100 and pages are 4 KiB on every platform this daemon ships for
    // (x86_64, aarch64 with 4 KiB pages); no libc call needed.
    Some((ticks / 100.0, pages * 4096))
}

/// The group a thread's CPU time is counted in, from its name: the consumers are named
/// `metrics-N` and `alarms-N`, librdkafka names its threads `rdk:…`, and the tokio runtime's
/// (HTTP writes, the admin endpoint) are `persister-io`.
fn thread_group(name: &str) -> &'static str {
    if thread_names::is_consumer(name) {
        "consumer"
    } else if name.starts_with(LIBRDKAFKA_PREFIX) {
        "librdkafka"
    } else if name.starts_with(thread_names::IO_RUNTIME) {
        "io"
    } else {
        "other"
    }
}

/// How librdkafka names its own threads (`rdk:main`, `rdk:broker1`, …).
const LIBRDKAFKA_PREFIX: &str = "rdk:";

/// The four thread groups, in the order [`thread_cpu`] reports them.
const THREAD_GROUPS: [&str; 4] = ["consumer", "librdkafka", "io", "other"];

/// What [`thread_cpu`] saw at its last call: each live thread's group and CPU seconds, and per
/// group the seconds of threads that have ended since, so that every group only ever grows.
#[derive(Default)]
struct ThreadCpuSeen {
    threads: std::collections::HashMap<u64, (usize, f64)>,
    ended: [f64; 4],
}

static THREAD_CPU_SEEN: std::sync::Mutex<Option<ThreadCpuSeen>> = std::sync::Mutex::new(None);

/// CPU seconds of this process's threads, summed by [`thread_group`], from
/// `/proc/self/task/*/stat` (Linux only). A thread that has ended keeps counting with what it
/// had used when last seen (librdkafka starts and stops a thread per broker), so each group
/// is a counter that never goes down; only the time an ended thread used after the previous
/// call is missing from the groups (the process total has it).
pub(super) fn thread_cpu() -> Option<[(&'static str, f64); 4]> {
    let mut live = std::collections::HashMap::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u64>().ok())
        else {
            continue;
        };
        // A thread that ended meanwhile has no files any more: skip it.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, n)| n);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let group = THREAD_GROUPS
            .iter()
            .position(|g| *g == thread_group(name))
            .unwrap_or(THREAD_GROUPS.len() - 1);
        live.insert(tid, (group, (ticks(11) + ticks(12)) / 100.0));
    }
    let mut seen = THREAD_CPU_SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seen = seen.get_or_insert_with(ThreadCpuSeen::default);
    for (tid, (group, secs)) in &seen.threads {
        if !live.contains_key(tid) {
            seen.ended[*group] += secs;
        }
    }
    let mut sums = seen.ended;
    for (group, secs) in live.values() {
        sums[*group] += secs;
    }
    seen.threads = live;
    Some(std::array::from_fn(|i| (THREAD_GROUPS[i], sums[i])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Runs a thread named `name` that burns CPU until `done` (asked between bursts, on that
    /// thread, so while it is alive) gives an answer, or 20 s of wall time pass: a loaded
    /// machine only makes it take longer. Returns the answer.
    fn burn<T: Send + 'static>(
        name: &str,
        done: impl Fn() -> Option<T> + Send + 'static,
    ) -> Option<T> {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let start = Instant::now();
                let mut x = 0u64;
                while start.elapsed() < Duration::from_secs(20) {
                    for _ in 0..1_000_000 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                    if let Some(answer) = done() {
                        return Some(answer);
                    }
                }
                None
            })
            .expect("spawn")
            .join()
            .expect("the busy thread")
    }

    /// CPU ticks (10 ms) the calling thread has used.
    fn own_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc/thread-self");
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, r)| r.split_whitespace().collect());
        f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
    }

    /// A consumer thread that has ended still counts: the group never goes down.
    #[test]
    fn an_ended_thread_s_time_stays_counted() {
        // Read once the thread's own time is 50 ms, so this reading knows the thread.
        let during = burn("alarms-9", || {
            (own_ticks() >= 5).then(|| thread_cpu().expect("/proc/self/task")[0].1)
        })
        .expect("the thread used 50 ms within 20 s");
        assert!(
            during >= 0.05,
            "the live thread's time is counted: {during}"
        );
        let after = thread_cpu().expect("/proc/self/task")[0].1;
        assert!(
            after >= during,
            "the group went down from {during} to {after}"
        );
    }

    #[test]
    fn threads_are_grouped_by_their_names() {
        for (name, group) in [
            ("metrics-0", "consumer"),
            ("alarms-12", "consumer"),
            ("metrics-0-close", "other"),
            ("metrics-", "other"),
            ("rdk:broker1", "librdkafka"),
            ("rdk:main", "librdkafka"),
            ("persister-io", "io"),
            ("monasca-persist", "other"),
        ] {
            assert_eq!(thread_group(name), group, "{name}");
        }
    }

    /// A thread named like a consumer that burns CPU shows up in the consumer group, and the
    /// groups add up to no more than the whole process.
    #[test]
    fn a_consumer_thread_s_cpu_time_is_counted_as_consumer() {
        let before = thread_cpu().expect("/proc/self/task")[0].1;
        let during = burn("metrics-7", move || {
            let during = thread_cpu().expect("/proc/self/task");
            (during[0].1 - before >= 0.05).then_some(during)
        })
        .unwrap_or_else(|| panic!("the consumer group did not grow by 50 ms in 20 s"));
        let total: f64 = during.iter().map(|g| g.1).sum();
        let (process, _) = process_usage().expect("/proc/self/stat");
        assert!(total <= process + 0.02, "{during:?} against {process}");
    }
}
