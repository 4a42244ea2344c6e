//! A batch being filled by a consumer: converted lines grouped by database, where each line
//! came from, and the messages that were rejected before reaching InfluxDB.
//!
//! Owns the [`Batcher`], the one place a message enters a batch (routing, payloads kept for
//! dead letters, the series gate). Must never drop a message: each is a line or a reject.

use std::collections::HashMap;
use std::ops::Range;

use bytes::BytesMut;

use std::sync::Arc;

use super::series::SeriesGate;
use crate::config::{Route, Routes};
use crate::convert::{Converter, Kind, Reject};

/// Where lines go: one database, or one per tenant (`<prefix>_<tenant>`).
#[derive(Debug, Clone)]
pub enum Routing {
    Single(String),
    PerTenant(String),
}

/// Where a message came from, and its raw payload (kept only when there is a dead-letter
/// topic to send it to).
#[derive(Debug, Clone)]
pub struct Source {
    pub partition: i32,
    pub offset: i64,
    pub payload: Range<usize>,
}

/// The lines for one database.
#[derive(Debug)]
pub struct Group {
    pub db: String,
    pub lines: BytesMut,
    pub line_ends: Vec<usize>,
    /// Index into the batch's `sources` of each line.
    pub sources: Vec<usize>,
    /// When each line's message was made (ms since the epoch; 0: unknown), for the
    /// end-to-end latency.
    pub created: Vec<i64>,
}

impl Group {
    fn new(db: String) -> Self {
        Group {
            db,
            lines: BytesMut::new(),
            line_ends: Vec::new(),
            sources: Vec::new(),
            created: Vec::new(),
        }
    }
}

/// Buffers of a finished batch, handed back to its consumer so the next batch reuses them
/// instead of faulting in fresh pages (measured: without this, zeroing new pages cost about a
/// tenth of the daemon's CPU).
#[derive(Debug, Default)]
pub struct Spare {
    pub lines: Option<BytesMut>,
    pub line_ends: Vec<usize>,
    /// The single group's line → source index.
    pub line_sources: Vec<usize>,
    /// The single group's line → creation time.
    pub line_created: Vec<i64>,
    pub sources: Vec<Source>,
    pub payloads: Option<BytesMut>,
}

/// A batch under construction, then in flight.
#[derive(Debug)]
pub struct PendingBatch {
    pub id: u64,
    pub groups: Vec<Group>,
    /// `PerTenant` routing: tenant → index in `groups` (allocates once per tenant per batch).
    tenant_group: HashMap<String, usize>,
    pub sources: Vec<Source>,
    /// Raw payloads back to back (empty unless kept for dead-lettering).
    pub payloads: BytesMut,
    /// Messages rejected by the converter: index into `sources`, and why.
    pub rejected: Vec<(usize, Reject)>,
    /// Accepted messages whose strings were altered by the sanitize policy.
    pub sanitized: usize,
    /// Messages refused by `max_hourly_series_per_tenant`: index into `sources`, tenant.
    pub over_limit: Vec<(usize, String)>,
    /// Messages of a tenant no destination takes (only the first destination's batches have
    /// them): index into `sources`, tenant.
    pub unrouted: Vec<(usize, String)>,
    /// Messages this destination leaves to others: a tenant it does not take, or a reject the
    /// first destination dead-letters.
    pub skipped: usize,
}

impl PendingBatch {
    pub fn new(id: u64, routing: &Routing, capacity: usize) -> Self {
        Self::reusing(id, routing, capacity, Spare::default())
    }

    /// A new batch built on a finished batch's buffers (cleared).
    pub fn reusing(id: u64, routing: &Routing, capacity: usize, spare: Spare) -> Self {
        let mut groups = Vec::new();
        let Spare {
            lines,
            mut line_ends,
            mut line_sources,
            mut line_created,
            mut sources,
            payloads,
        } = spare;
        if let Routing::Single(db) = routing {
            let mut g = Group::new(db.clone());
            g.lines = lines.unwrap_or_default();
            g.lines.clear();
            g.lines.reserve(capacity.min(1 << 16) * 256);
            line_ends.clear();
            line_ends.reserve(capacity.min(1 << 16));
            g.line_ends = line_ends;
            line_sources.clear();
            line_sources.reserve(capacity.min(1 << 16));
            g.sources = line_sources;
            line_created.clear();
            line_created.reserve(capacity.min(1 << 16));
            g.created = line_created;
            groups.push(g);
        }
        sources.clear();
        sources.reserve(capacity.min(1 << 16));
        let mut payloads = payloads.unwrap_or_default();
        payloads.clear();
        PendingBatch {
            id,
            groups,
            tenant_group: HashMap::new(),
            sources,
            payloads,
            rejected: Vec::new(),
            sanitized: 0,
            over_limit: Vec::new(),
            unrouted: Vec::new(),
            skipped: 0,
        }
    }

    /// Messages in the batch (accepted and rejected).
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// Fills batches: converts each message into the current [`PendingBatch`] by the pipeline's
/// rules (kind, routing, series limit, whether raw payloads are kept for dead letters), and
/// hands the batch out when the consumer flushes it, starting the next one on the buffers of
/// a finished one.
pub struct Batcher {
    batch: PendingBatch,
    converter: Converter,
    kind: Kind,
    routing: Routing,
    capacity: usize,
    /// Raw payloads are kept only when there is a dead-letter topic to send rejects to.
    keep_payload: bool,
    /// `max_hourly_series_per_tenant`, when set.
    gate: Option<SeriesGate>,
    /// Buffers of finished batches, for the next ones (at most `max_spares`).
    spares: Vec<Spare>,
    max_spares: usize,
    /// With more than one destination: which tenants this one takes (None: every tenant).
    place: Option<(Arc<Routes>, usize)>,
    /// Whether this is the first destination, which dead-letters what the converter rejects
    /// and what no destination takes (so each is dead-lettered once).
    first: bool,
    /// Where a message this destination skips is encoded, and then dropped.
    skipped: BytesMut,
}

impl Batcher {
    /// Batches of `kind` routed by `routing`, `capacity` messages each, starting with batch 1.
    pub fn new(converter: Converter, kind: Kind, routing: Routing, capacity: usize) -> Self {
        Batcher {
            batch: PendingBatch::new(1, &routing, capacity),
            converter,
            kind,
            routing,
            capacity,
            keep_payload: false,
            gate: None,
            spares: Vec::new(),
            max_spares: 0,
            place: None,
            first: true,
            skipped: BytesMut::new(),
        }
    }

    /// Destination `index` of `routes`: it writes only the tenants it takes, and only the
    /// first destination (index 0) dead-letters rejects and unrouted messages.
    pub fn at_destination(mut self, routes: Arc<Routes>, index: usize) -> Self {
        self.first = index == 0;
        self.place = (!routes.takes_all(index)).then_some((routes, index));
        self
    }

    /// Keeps each message's raw payload in the batch (for dead-lettering its rejects).
    pub fn keeping_payloads(mut self, keep: bool) -> Self {
        self.keep_payload = keep;
        self
    }

    /// Refuses messages that would add a series past their tenant's hourly limit.
    pub fn with_series_gate(mut self, gate: Option<SeriesGate>) -> Self {
        self.gate = gate;
        self
    }

    /// Keeps the buffers of up to `n` finished batches for reuse.
    pub fn keeping_spares(mut self, n: usize) -> Self {
        self.max_spares = n;
        self
    }

    /// Gives the series gate back (its cache lives as long as a consumer).
    pub fn into_series_gate(self) -> Option<SeriesGate> {
        self.gate
    }

    /// The batch being filled.
    pub fn batch(&self) -> &PendingBatch {
        &self.batch
    }

    /// Messages in the batch being filled.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Moves the series limit to the current clock hour (nothing without a limit: no clock
    /// read).
    pub fn refresh_hour(&mut self) {
        if let Some(gate) = &mut self.gate {
            gate.set_hour(super::series::current_hour());
        }
    }

    /// The hour the series limit counts in (see `series::current_hour`).
    pub fn set_hour(&mut self, hour: u64) {
        if let Some(gate) = &mut self.gate {
            gate.set_hour(hour);
        }
    }

    /// Hands out the batch being filled and starts batch `next_id`.
    pub fn take(&mut self, next_id: u64) -> PendingBatch {
        let spare = self.spares.pop().unwrap_or_default();
        let fresh = PendingBatch::reusing(next_id, &self.routing, self.capacity, spare);
        std::mem::replace(&mut self.batch, fresh)
    }

    /// Takes back a finished batch's buffers.
    pub fn recycle(&mut self, spare: Spare) {
        if self.spares.len() < self.max_spares {
            self.spares.push(spare);
        }
    }

    /// Converts one message into the batch; with a series gate, a line that would add a series
    /// beyond its tenant's hourly limit is taken back and the message refused.
    pub fn add(&mut self, partition: i32, offset: i64, payload: &[u8]) {
        let Batcher {
            batch,
            converter,
            kind,
            routing,
            keep_payload,
            gate,
            place,
            first,
            skipped,
            ..
        } = self;
        let index = batch.sources.len();
        let range = if *keep_payload {
            let start = batch.payloads.len();
            batch.payloads.extend_from_slice(payload);
            start..batch.payloads.len()
        } else {
            0..0
        };
        batch.sources.push(Source {
            partition,
            offset,
            payload: range,
        });
        let (groups, tenant_group) = (&mut batch.groups, &mut batch.tenant_group);
        let mut chosen = 0;
        let mut route = Route::Write;
        let skip_buf = &mut *skipped;
        let result = converter.convert_to(*kind, payload, |tenant| {
            if let Some((routes, i)) = place {
                route = routes.decide(*i, tenant);
                if route != Route::Write {
                    if route == Route::Unrouted {
                        batch.unrouted.push((index, tenant.to_owned()));
                    }
                    return skip_buf;
                }
            }
            if let Routing::PerTenant(prefix) = routing {
                chosen = match tenant_group.get(tenant) {
                    Some(&g) => g,
                    None => {
                        groups.push(Group::new(format!("{prefix}_{tenant}")));
                        tenant_group.insert(tenant.to_owned(), groups.len() - 1);
                        groups.len() - 1
                    }
                };
            }
            &mut groups[chosen].lines
        });
        if route != Route::Write {
            skipped.clear();
            batch.skipped += usize::from(route == Route::Skip);
            return;
        }
        match result {
            Err(_) if !*first => batch.skipped += 1,
            Ok(encoded) => {
                let g = &mut batch.groups[chosen];
                if let Some(gate) = gate.as_mut() {
                    let start = g.line_ends.last().copied().unwrap_or(0);
                    if let Err(tenant) = gate.admit(&g.lines[start..]) {
                        let tenant = String::from_utf8_lossy(tenant).into_owned();
                        g.lines.truncate(start);
                        batch.over_limit.push((index, tenant));
                        return;
                    }
                }
                g.line_ends.push(g.lines.len());
                g.sources.push(index);
                g.created.push(encoded.created_ms);
                batch.sanitized += usize::from(encoded.sanitized > 0);
            }
            Err(reject) => batch.rejected.push((index, reject)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(tenant: &str, v: u32) -> String {
        format!(
            r#"{{"metric":{{"name":"m","timestamp":{v},"value":{v}}},"meta":{{"tenantId":"{tenant}","region":"r"}}}}"#
        )
    }

    #[test]
    fn a_line_past_its_tenants_series_limit_is_taken_back_and_its_message_refused() {
        use crate::pipeline::series::{SeriesGate, SeriesLimit};
        let gate = SeriesGate::new(std::sync::Arc::new(SeriesLimit::new(1)));
        let mut batcher = Batcher::new(
            Converter::default(),
            Kind::Metrics,
            Routing::PerTenant("mon".into()),
            10,
        )
        .keeping_payloads(true)
        .with_series_gate(Some(gate));
        batcher.set_hour(1);
        let with_host = |t: &str, host: &str, v: u32| {
            format!(
                r#"{{"metric":{{"name":"m","dimensions":{{"host":"{host}"}},"timestamp":{v},"value":{v}}},"meta":{{"tenantId":"{t}","region":"r"}}}}"#
            )
        };
        let messages = [
            with_host("a", "h1", 1),
            with_host("a", "h2", 2), // a second series of a: refused
            with_host("b", "h2", 3), // b's first
            with_host("a", "h1", 4), // a's admitted series again
        ];
        for (i, m) in messages.iter().enumerate() {
            batcher.add(0, i as i64, m.as_bytes());
        }
        let b = batcher.batch();
        assert_eq!(b.over_limit, vec![(1, "a".to_string())]);
        let a = &b.groups[0];
        assert_eq!((a.db.as_str(), a.sources.clone()), ("mon_a", vec![0, 3]));
        let text = std::str::from_utf8(&a.lines).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            !text.contains("h2"),
            "the refused line was taken back: {text}"
        );
        assert_eq!(a.line_ends, vec![text.find('\n').unwrap() + 1, text.len()]);
        assert_eq!(
            &b.payloads[b.sources[1].payload.clone()],
            messages[1].as_bytes()
        );
    }

    #[test]
    fn per_tenant_routing_groups_lines_by_database() {
        let mut batcher = Batcher::new(
            Converter::default(),
            Kind::Metrics,
            Routing::PerTenant("mon".into()),
            10,
        )
        .keeping_payloads(true);
        for (i, t) in ["a", "b", "a"].iter().enumerate() {
            batcher.add(0, i as i64, metric(t, i as u32).as_bytes());
        }
        batcher.add(0, 3, b"{bad");
        let b = batcher.batch();
        let dbs: Vec<_> = b
            .groups
            .iter()
            .map(|g| (g.db.as_str(), g.sources.clone()))
            .collect();
        assert_eq!(dbs, vec![("mon_a", vec![0, 2]), ("mon_b", vec![1])]);
        assert_eq!(b.groups[0].line_ends.len(), 2);
        assert_eq!(b.rejected.len(), 1);
        assert_eq!(&b.payloads[b.sources[3].payload.clone()], b"{bad");
        assert_eq!(b.len(), 4);
    }

    #[test]
    fn each_destination_writes_its_tenants_and_the_first_dead_letters_the_rest_once() {
        let tenants = [vec!["a".to_string()], vec!["b".to_string()]];
        let routes = Arc::new(Routes::new(tenants.iter().map(Vec::as_slice)));
        let at = |index| {
            let mut b = Batcher::new(
                Converter::default(),
                Kind::Metrics,
                Routing::Single("mon".into()),
                10,
            )
            .keeping_payloads(true)
            .at_destination(routes.clone(), index);
            for (offset, t) in ["a", "b", "z"].iter().enumerate() {
                b.add(0, offset as i64, metric(t, offset as u32).as_bytes());
            }
            b.add(0, 3, b"{bad");
            b
        };
        let first = at(0);
        let b = first.batch();
        assert_eq!(b.groups[0].sources, vec![0], "tenant a only");
        assert_eq!(
            std::str::from_utf8(&b.groups[0].lines)
                .unwrap()
                .lines()
                .count(),
            1
        );
        assert_eq!(b.unrouted, vec![(2, "z".to_string())], "nobody takes z");
        assert_eq!(
            b.rejected.len(),
            1,
            "the reject is the first's to dead-letter"
        );
        assert_eq!(
            (b.skipped, b.len()),
            (1, 4),
            "b is the other's; every message counted"
        );

        let second = at(1);
        let b = second.batch();
        assert_eq!(b.groups[0].sources, vec![1], "tenant b only");
        assert!(b.unrouted.is_empty() && b.rejected.is_empty());
        assert_eq!((b.skipped, b.len()), (3, 4));
    }

    #[test]
    fn a_destination_taking_every_tenant_writes_everything() {
        let tenants = [vec![], vec!["b".to_string()]];
        let routes = Arc::new(Routes::new(tenants.iter().map(Vec::as_slice)));
        let mut b = Batcher::new(
            Converter::default(),
            Kind::Metrics,
            Routing::Single("mon".into()),
            10,
        )
        .at_destination(routes, 0);
        for (offset, t) in ["a", "b", "z"].iter().enumerate() {
            b.add(0, offset as i64, metric(t, offset as u32).as_bytes());
        }
        assert_eq!(b.batch().groups[0].sources, vec![0, 1, 2]);
        assert!(b.batch().unrouted.is_empty());
    }
}
