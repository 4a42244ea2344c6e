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
//!   hold at most N per tenant seen this hour. Each consumer also keeps a direct-mapped cache
//!   of the series it has seen admitted this hour (so the common case takes no lock):
//!   [`LOCAL_SLOTS`] hashes, 512 KiB per consumer.
//!
//! Hashes (not the keys) are kept: two series of one tenant whose 64-bit hashes collide count
//! as one (at a million series, a chance of about 3 in 100 million).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

/// Shards of the shared state (by tenant).
const SHARDS: usize = 16;

/// Slots of one consumer's cache of admitted series (direct-mapped: a series' hash picks its
/// slot; a newer series evicts an older one, which then asks the shared state again).
pub const LOCAL_SLOTS: usize = 1 << 16;

/// The 128-bit product of `a` and `b`, folded to 64 bits (the mixing step of wyhash and its
/// successors).
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline(always)]
fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// A fast 64-bit hash of a series key: 16 bytes per folded multiply. Only ever used for series
/// and tenant names this daemon writes, in sets that are capped (no outsider can fill a map
/// without bound with chosen collisions).
pub fn hash(seed: u64, bytes: &[u8]) -> u64 {
    const K0: u64 = 0xa076_1d64_78bd_642f;
    const K1: u64 = 0xe703_7ed1_a0b4_28db;
    let mut h = seed ^ K0 ^ (bytes.len() as u64).wrapping_mul(K1);
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        h = fold_mul(word(&c[..8]) ^ K1, word(&c[8..]) ^ h);
    }
    let rest = chunks.remainder();
    let (a, b) = if rest.len() > 8 {
        (word(&rest[..8]), word(&rest[8..]))
    } else {
        (word(rest), 0)
    };
    fold_mul(a ^ K1 ^ h, b ^ K0).wrapping_add(h)
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

/// Whether the byte at `at` is escaped: preceded by an odd number of backslashes.
fn escaped(line: &[u8], at: usize) -> bool {
    line[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// The line's series key: everything up to its first space not escaped by a backslash.
pub fn series_key(line: &[u8]) -> &[u8] {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b' ', &line[from..]) {
        let at = from + i;
        if !escaped(line, at) {
            return &line[..at];
        }
        from = at + 1;
    }
    line
}

/// The tenant tag's value in a series key, as written (escaped); empty when there is none.
pub fn tenant_of_key(key: &[u8]) -> &[u8] {
    const TAG: &[u8] = b",_tenant_id=";
    let finder = memchr::memmem::Finder::new(TAG);
    for at in finder.find_iter(key) {
        if escaped(key, at) {
            continue;
        }
        let value = &key[at + TAG.len()..];
        let mut end = 0;
        while let Some(i) = memchr::memchr(b',', &value[end..]) {
            if !escaped(value, end + i) {
                return &value[..end + i];
            }
            end += i + 1;
        }
        return value;
    }
    &[]
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

/// One consumer's door to a [`SeriesLimit`], with a cache of the series this consumer saw
/// admitted this hour (no lock for those).
pub struct SeriesGate {
    limit: std::sync::Arc<SeriesLimit>,
    hour: u64,
    /// Hashes of series admitted this hour, at `hash % LOCAL_SLOTS`; 0: empty.
    admitted: Box<[u64]>,
}

impl SeriesGate {
    pub fn new(limit: std::sync::Arc<SeriesLimit>) -> Self {
        SeriesGate {
            limit,
            hour: 0,
            admitted: vec![0; LOCAL_SLOTS].into_boxed_slice(),
        }
    }

    /// The clock hour (UTC hours since the epoch) for the messages that follow.
    pub fn set_hour(&mut self, hour: u64) {
        if hour != self.hour {
            self.hour = hour;
            self.admitted.fill(0);
        }
    }

    pub fn limit(&self) -> usize {
        self.limit.max()
    }

    /// Whether the line may be written; `Err(tenant)` (as the line writes it) when it may
    /// not. Its series key holds the tenant (the `_tenant_id` tag, which every metric line
    /// carries), so the key's hash alone names the tenant's series, and the tenant is read
    /// from the key only on a miss of the cache.
    #[inline]
    pub fn admit<'l>(&mut self, line: &'l [u8]) -> Result<(), &'l [u8]> {
        let key = series_key(line);
        // 0 marks an empty slot.
        let h = hash(0, key).max(1);
        let slot = &mut self.admitted[h as usize % LOCAL_SLOTS];
        if *slot == h {
            return Ok(());
        }
        let tenant = tenant_of_key(key);
        let name = String::from_utf8_lossy(tenant);
        if !self.limit.admit(&name, hash(1, tenant), h, self.hour) {
            return Err(tenant);
        }
        self.admitted[h as usize % LOCAL_SLOTS] = h;
        Ok(())
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
    fn the_tenant_is_read_from_its_tag_as_written() {
        assert_eq!(
            tenant_of_key(b"cpu,_region=r,_tenant_id=abc,host=a"),
            b"abc"
        );
        assert_eq!(tenant_of_key(b"cpu,_tenant_id=abc"), b"abc");
        assert_eq!(tenant_of_key(br"cpu,_tenant_id=a\,b,host=x"), br"a\,b");
        // Inside a value (its comma escaped), not the tag.
        assert_eq!(
            tenant_of_key(br"cpu,host=x\,_tenant_id=no,_tenant_id=yes"),
            b"yes"
        );
        assert_eq!(tenant_of_key(b"cpu,host=a"), b"");
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
        let got: Vec<bool> = (0..5)
            .map(|h| a.admit(line("big", h).as_bytes()).is_ok())
            .collect();
        assert_eq!(got, [true, true, true, false, false]);
        // The other consumer shares the count: no fourth series there either, but the
        // admitted ones flow.
        assert!(b.admit(line("big", 7).as_bytes()).is_err());
        assert!(b.admit(line("big", 1).as_bytes()).is_ok());
        // Another tenant has its own count.
        assert!(b.admit(line("small", 9).as_bytes()).is_ok());
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
        assert!(a.admit(line("big", 4).as_bytes()).is_ok());
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
        assert!(ahead.admit(line("t", 1).as_bytes()).is_ok());
        assert!(
            behind.admit(line("t", 2).as_bytes()).is_err(),
            "hour 10 does not reset hour 11's count"
        );
    }
}
