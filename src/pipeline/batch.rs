//! A batch being filled by a consumer: converted lines grouped by database, where each line
//! came from, and the messages that were rejected before reaching InfluxDB.

use std::collections::HashMap;
use std::ops::Range;

use bytes::BytesMut;

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
}

impl Group {
    fn new(db: String) -> Self {
        Group {
            db,
            lines: BytesMut::new(),
            line_ends: Vec::new(),
            sources: Vec::new(),
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
        }
    }

    /// Messages in the batch (accepted and rejected).
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Converts one message into the batch.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        converter: &mut Converter,
        kind: Kind,
        routing: &Routing,
        keep_payload: bool,
        partition: i32,
        offset: i64,
        payload: &[u8],
    ) {
        let index = self.sources.len();
        let range = if keep_payload {
            let start = self.payloads.len();
            self.payloads.extend_from_slice(payload);
            start..self.payloads.len()
        } else {
            0..0
        };
        self.sources.push(Source {
            partition,
            offset,
            payload: range,
        });
        let (groups, tenant_group) = (&mut self.groups, &mut self.tenant_group);
        let mut chosen = 0;
        let result = converter.convert_to(kind, payload, |tenant| {
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
        match result {
            Ok(encoded) => {
                let g = &mut self.groups[chosen];
                g.line_ends.push(g.lines.len());
                g.sources.push(index);
                self.sanitized += usize::from(encoded.sanitized > 0);
            }
            Err(reject) => self.rejected.push((index, reject)),
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
    fn per_tenant_routing_groups_lines_by_database() {
        let routing = Routing::PerTenant("mon".into());
        let mut b = PendingBatch::new(1, &routing, 10);
        let mut c = Converter::default();
        for (i, t) in ["a", "b", "a"].iter().enumerate() {
            b.add(
                &mut c,
                Kind::Metrics,
                &routing,
                false,
                0,
                i as i64,
                metric(t, i as u32).as_bytes(),
            );
        }
        b.add(&mut c, Kind::Metrics, &routing, true, 0, 3, b"{bad");
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
}
