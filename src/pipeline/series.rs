//! `[influxdb] max_hourly_series_per_tenant`: no tenant adds more than N series in an hour.
//!
//! A series is a line's measurement and tag set as written (the line up to its first
//! unescaped space), so it is exactly what InfluxDB counts against `max-series-per-database`
//! and keeps in its index. Per clock hour (UTC) and tenant, the first N distinct series are
//! admitted; a message that would add one more is refused (dead-lettered with reason
//! `series_limit`); series already admitted keep flowing all hour. At the next hour every
//! tenant starts again from zero.
//!
//! - **Shared by the consumers of one daemon** ([`SeriesLimit`], sharded by tenant): two
//!   consumers never admit N + 1 series between them. Each daemon counts on its own, so with
//!   D daemons sharing a topic a tenant can add up to D × N series an hour (its messages
//!   spread over the partitions the daemons own); a restart starts the hour's count again.
//! - **Memory**: a tracked series is a 64-bit hash in a hash set: 8 bytes plus 1 control byte
//!   per slot, at a load of 7/16 to 7/8, so 10–21 bytes, about 15 on average. The shared sets
//!   hold at most N per tenant seen this hour. Each consumer also keeps a cache of the series
//!   it has seen admitted this hour (so the common case takes no lock), cleared when it
//!   reaches [`LOCAL_MAX`] entries: at most about 5 MiB per consumer.
//!
//! Hashes (not the keys) are kept: two series of one tenant whose 64-bit hashes collide count
//! as one (at a million series, a chance of about 3 in 100 million).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

/// Shards of the shared state (by tenant).
const SHARDS: usize = 16;

/// Most entries in one consumer's cache of admitted series before it is cleared.
pub const LOCAL_MAX: usize = 1 << 18;

/// 64-bit FxHash-style mixing over 8-byte words: fast on the short keys here, and only ever
/// used for series and tenant names this daemon writes (not for a map an outsider can fill
/// with chosen keys without bound: every set here is capped).
pub fn hash(seed: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = seed;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h.rotate_left(5) ^ w).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    // Length, and a final avalanche so that the low bits (which pick buckets) depend on all.
    h = (h.rotate_left(5) ^ bytes.len() as u64).wrapping_mul(K);
    h ^ (h >> 29)
}

/// A hasher for keys that are hashes already.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with this; a fallback for anything else.
        self.0 = hash(self.0, bytes);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashSet64 = HashSet<u64, BuildHasherDefault<IdHasher>>;

/// The line's series key: everything up to its first space not escaped by a backslash.
pub fn series_key(line: &[u8]) -> &[u8] {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b' ', &line[from..]) {
        let at = from + i;
        let backslashes = line[..at].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return &line[..at];
        }
        from = at + 1;
    }
    line
}

#[derive(Default)]
struct TenantSeries {
    series: HashSet64,
    /// Messages refused, since start (a counter: not reset by the hour).
    refused: u64,
}

struct Shard {
    hour: u64,
    tenants: HashMap<Box<str>, TenantSeries>,
}

/// The series each tenant has added this hour, shared by the consumers of a pipeline.
pub struct SeriesLimit {
    max: usize,
    shards: Vec<Mutex<Shard>>,
}

/// One tenant's state, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantCount {
    pub tenant: String,
    /// Series admitted in the current hour.
    pub tracked: usize,
    /// Messages refused since start.
    pub refused: u64,
}

impl SeriesLimit {
    pub fn new(max_per_tenant: usize) -> Self {
        SeriesLimit {
            max: max_per_tenant,
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        hour: 0,
                        tenants: HashMap::new(),
                    })
                })
                .collect(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Whether `series` of `tenant` may be written in `hour`: it was admitted this hour
    /// already, or the tenant has fewer than the limit (then it is admitted now).
    pub fn admit(&self, tenant: &str, tenant_hash: u64, series: u64, hour: u64) -> bool {
        let shard = &self.shards[(tenant_hash >> 32) as usize % SHARDS];
        let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
        if hour > s.hour {
            // A new hour: every tenant of this shard starts again (a consumer a little behind
            // the clock keeps counting in the newer hour).
            s.hour = hour;
            for t in s.tenants.values_mut() {
                t.series.clear();
            }
        }
        let t = match s.tenants.get_mut(tenant) {
            Some(t) => t,
            None => s.tenants.entry(tenant.into()).or_default(),
        };
        if t.series.contains(&series) {
            return true;
        }
        if t.series.len() < self.max {
            t.series.insert(series);
            return true;
        }
        t.refused += 1;
        false
    }

    /// Every tenant seen, with its series this hour and its refusals.
    pub fn counts(&self) -> Vec<TenantCount> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let s = shard.lock().unwrap_or_else(|e| e.into_inner());
            out.extend(s.tenants.iter().map(|(t, c)| TenantCount {
                tenant: t.to_string(),
                tracked: c.series.len(),
                refused: c.refused,
            }));
        }
        out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        out
    }
}

/// One consumer's door to a [`SeriesLimit`]: the tenant of the message being converted and a
/// cache of the series this consumer saw admitted this hour (no lock for those).
pub struct SeriesGate {
    limit: std::sync::Arc<SeriesLimit>,
    hour: u64,
    admitted: HashSet64,
    tenant: String,
    tenant_hash: u64,
}

impl SeriesGate {
    pub fn new(limit: std::sync::Arc<SeriesLimit>) -> Self {
        SeriesGate {
            limit,
            hour: 0,
            admitted: HashSet64::default(),
            tenant: String::new(),
            tenant_hash: 0,
        }
    }

    /// The clock hour (UTC hours since the epoch) for the messages that follow.
    pub fn set_hour(&mut self, hour: u64) {
        if hour != self.hour {
            self.hour = hour;
            self.admitted.clear();
        }
    }

    /// The tenant of the message being converted.
    pub fn tenant_is(&mut self, tenant: &str) {
        tenant.clone_into(&mut self.tenant);
        self.tenant_hash = hash(0, tenant.as_bytes());
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn limit(&self) -> usize {
        self.limit.max()
    }

    /// Whether the line (of the tenant last given) may be written.
    pub fn admit(&mut self, line: &[u8]) -> bool {
        let h = hash(self.tenant_hash, series_key(line));
        if self.admitted.contains(&h) {
            return true;
        }
        if !self
            .limit
            .admit(&self.tenant, self.tenant_hash, h, self.hour)
        {
            return false;
        }
        if self.admitted.len() >= LOCAL_MAX {
            self.admitted.clear();
        }
        self.admitted.insert(h);
        true
    }
}

/// UTC hours since the Unix epoch, now.
pub fn current_hour() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 3600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_series_key_ends_at_the_first_unescaped_space() {
        assert_eq!(series_key(b"cpu,host=a value=1 1"), b"cpu,host=a");
        assert_eq!(
            series_key(br"cpu\ idle,host=a\ b value=1 1"),
            br"cpu\ idle,host=a\ b"
        );
        // An escaped backslash before the space: the space ends the key.
        assert_eq!(series_key(br"cpu,path=c:\\ value=1 1"), br"cpu,path=c:\\");
        assert_eq!(series_key(b"nospace"), b"nospace");
    }

    #[test]
    fn hashes_differ_by_key_and_by_seed() {
        let a = hash(0, b"cpu,host=a,_tenant_id=t");
        assert_ne!(a, hash(0, b"cpu,host=b,_tenant_id=t"));
        assert_ne!(a, hash(1, b"cpu,host=a,_tenant_id=t"));
        assert_ne!(hash(0, b"ab"), hash(0, b"ab\0"), "the length counts");
        assert_eq!(a, hash(0, b"cpu,host=a,_tenant_id=t"));
    }

    fn line(tenant: &str, host: usize) -> String {
        format!("cpu,_tenant_id={tenant},host=h{host} value=1 1")
    }

    #[test]
    fn each_tenant_gets_its_first_n_series_an_hour_and_keeps_them() {
        let limit = Arc::new(SeriesLimit::new(3));
        let mut a = SeriesGate::new(limit.clone());
        let mut b = SeriesGate::new(limit.clone());
        a.set_hour(10);
        b.set_hour(10);
        a.tenant_is("big");
        let got: Vec<bool> = (0..5).map(|h| a.admit(line("big", h).as_bytes())).collect();
        assert_eq!(got, [true, true, true, false, false]);
        // The other consumer shares the count: no fourth series there either, but the
        // admitted ones flow.
        b.tenant_is("big");
        assert!(!b.admit(line("big", 7).as_bytes()));
        assert!(b.admit(line("big", 1).as_bytes()));
        // Another tenant has its own count.
        b.tenant_is("small");
        assert!(b.admit(line("small", 9).as_bytes()));
        assert_eq!(
            limit.counts(),
            vec![
                TenantCount {
                    tenant: "big".into(),
                    tracked: 3,
                    refused: 3
                },
                TenantCount {
                    tenant: "small".into(),
                    tracked: 1,
                    refused: 0
                }
            ]
        );
        // The next hour starts from zero; the refusals stay counted.
        a.set_hour(11);
        a.tenant_is("big");
        assert!(a.admit(line("big", 4).as_bytes()));
        let big = &limit.counts()[0];
        assert_eq!((big.tracked, big.refused), (1, 3));
    }

    #[test]
    fn a_consumer_behind_the_clock_counts_in_the_newer_hour() {
        let limit = Arc::new(SeriesLimit::new(1));
        let mut ahead = SeriesGate::new(limit.clone());
        let mut behind = SeriesGate::new(limit.clone());
        ahead.set_hour(11);
        behind.set_hour(10);
        ahead.tenant_is("t");
        behind.tenant_is("t");
        assert!(ahead.admit(line("t", 1).as_bytes()));
        assert!(
            !behind.admit(line("t", 2).as_bytes()),
            "hour 10 does not reset hour 11's count"
        );
    }
}
