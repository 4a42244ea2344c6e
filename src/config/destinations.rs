//! More than one place to write: the `[destinations.NAME]` tables (INI: `[destination:NAME]`
//! sections), each a partial `[influxdb]` inheriting the keys it does not set, the consumer
//! group each destination consumes with, and which destinations take a tenant's messages.
//!
//! Owns the destinations' names, their inheritance from `[influxdb]` and the routing decision.
//! Must never: talk to Kafka or a server, or show a password or token (they are `Secret`s in
//! each destination's [`InfluxConfig`]).

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serializer};

use super::{Config, InfluxConfig, PipelineConfig};

/// The name of the first destination, `[influxdb]` itself: its consumers keep the pipeline's
/// `group_id`. No `[destinations.NAME]` may take it.
pub const PRIMARY: &str = "influxdb";

/// One more destination: `[destinations.NAME]`, merged over the resolved `[influxdb]`.
#[derive(Debug, Clone)]
pub struct Destination {
    /// `[a-z0-9_-]+`; its consumers use the group `<group_id>.<name>`.
    pub name: String,
    pub influx: InfluxConfig,
}

/// Whether `name` may name a destination: `[a-z0-9_-]+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// The keys an `[influxdb]` section (and so a destination) takes.
fn influx_keys() -> BTreeSet<String> {
    match toml::Value::try_from(InfluxConfig::default()) {
        Ok(toml::Value::Table(t)) => t.keys().cloned().collect(),
        _ => BTreeSet::new(),
    }
}

/// The destinations of a file (TOML as written, or an INI file mapped onto it): each of its
/// `[destinations.NAME]` `tables` merged key by key over its `[influxdb]` table as written
/// (`base`), so a key neither sets has its default; ordered by name. The error names the key
/// (`destinations.NAME[.KEY]`).
pub(super) fn resolve(
    base: &toml::Table,
    tables: &toml::Table,
) -> Result<Vec<Destination>, (String, String)> {
    let known = influx_keys();
    let mut out = Vec::with_capacity(tables.len());
    for (name, table) in tables {
        let key = format!("destinations.{name}");
        if !valid_name(name) {
            return Err((
                key,
                format!("{name:?}: a destination's name is [a-z0-9_-]+"),
            ));
        }
        if name == PRIMARY {
            return Err((
                key,
                format!("\"{PRIMARY}\" is the name of [{PRIMARY}] itself; choose another"),
            ));
        }
        let toml::Value::Table(table) = table else {
            return Err((key, "must be a table of [influxdb] keys".into()));
        };
        let mut merged = base.clone();
        for (k, v) in table {
            if !known.contains(k) {
                return Err((
                    format!("{key}.{k}"),
                    "unknown key (a destination takes the keys of [influxdb])".into(),
                ));
            }
            merged.insert(k.clone(), v.clone());
        }
        let influx = InfluxConfig::deserialize(toml::Value::Table(merged))
            .map_err(|e| (key.clone(), e.message().trim().to_owned()))?;
        out.push(Destination {
            name: name.clone(),
            influx,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `[destinations.NAME]` tables, as `--check-config` shows them (fully resolved).
pub(super) fn serialize<S: Serializer>(d: &[Destination], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(d.iter().map(|d| (&d.name, &d.influx)))
}

impl Config {
    /// Every destination with its name: [`PRIMARY`] (`[influxdb]`) first, then the others by
    /// name. The index in this order is the one [`Routes`] answers with.
    pub fn destinations(&self) -> impl Iterator<Item = (&str, &InfluxConfig)> {
        std::iter::once((PRIMARY, &self.influxdb)).chain(
            self.destinations
                .iter()
                .map(|d| (d.name.as_str(), &d.influx)),
        )
    }

    /// The consumer group a pipeline's consumers for `destination` use: the pipeline's
    /// `group_id` for [`PRIMARY`], `<group_id>.<NAME>` for the others.
    pub fn group_id_for(&self, pipeline: &PipelineConfig, destination: &str) -> String {
        if destination == PRIMARY {
            pipeline.group_id.clone()
        } else {
            format!("{}.{destination}", pipeline.group_id)
        }
    }
}

/// What one destination does with a message of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The destination takes the tenant: write it.
    Write,
    /// Another destination takes it: commit without writing.
    Skip,
    /// No destination takes it: dead-letter it (reason `unrouted`). Only the first destination
    /// answers so, so that such a message is dead-lettered once; the others skip it.
    Unrouted,
}

/// Which destinations take which tenants, built once from the `tenants` lists; a question
/// per message is a set look-up per destination, without allocating.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Per destination (in [`Config::destinations`] order): its tenants; `None`: every one.
    takes: Vec<Option<HashSet<String>>>,
}

impl Routes {
    /// From each destination's `tenants` (empty: every tenant), in destination order.
    pub fn new<'a>(tenants: impl IntoIterator<Item = &'a [String]>) -> Self {
        let takes = tenants
            .into_iter()
            .map(|t| (!t.is_empty()).then(|| t.iter().cloned().collect()))
            .collect();
        Self { takes }
    }

    /// The routes of a configuration's destinations, in [`Config::destinations`] order.
    pub fn of(config: &Config) -> Self {
        Self::new(config.destinations().map(|(_, i)| i.tenants.as_slice()))
    }

    /// Whether destination `index` writes `tenant`'s messages (false for no such index).
    pub fn takes(&self, index: usize, tenant: &str) -> bool {
        match self.takes.get(index) {
            Some(None) => true,
            Some(Some(set)) => set.contains(tenant),
            None => false,
        }
    }

    /// Whether any destination writes `tenant`'s messages.
    /// Whether destination `index` takes every tenant (no `tenants` list).
    pub fn takes_all(&self, index: usize) -> bool {
        matches!(self.takes.get(index), Some(None))
    }

    pub fn taken(&self, tenant: &str) -> bool {
        (0..self.takes.len()).any(|i| self.takes(i, tenant))
    }

    /// What destination `index` does with a message of `tenant`.
    pub fn decide(&self, index: usize, tenant: &str) -> Route {
        if self.takes(index, tenant) {
            Route::Write
        } else if index == 0 && !self.taken(tenant) {
            Route::Unrouted
        } else {
            Route::Skip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(lists: &[&[&str]]) -> Routes {
        let owned: Vec<Vec<String>> = lists
            .iter()
            .map(|l| l.iter().map(|t| (*t).to_owned()).collect())
            .collect();
        Routes::new(owned.iter().map(Vec::as_slice))
    }

    /// Each destination's decision for `tenant`, in order.
    fn decisions(r: &Routes, n: usize, tenant: &str) -> Vec<Route> {
        (0..n).map(|i| r.decide(i, tenant)).collect()
    }

    use Route::{Skip, Unrouted, Write};

    #[test]
    fn by_default_every_destination_takes_every_tenant() {
        let r = routes(&[&[], &[]]);
        assert_eq!(decisions(&r, 2, "any"), [Write, Write]);
        assert!(r.taken(""));
    }

    #[test]
    fn disjoint_lists_shard_the_tenants() {
        let r = routes(&[&["a", "b"], &["c"]]);
        assert_eq!(decisions(&r, 2, "a"), [Write, Skip]);
        assert_eq!(decisions(&r, 2, "b"), [Write, Skip]);
        assert_eq!(decisions(&r, 2, "c"), [Skip, Write]);
    }

    #[test]
    fn overlapping_lists_replicate_the_shared_tenants() {
        let r = routes(&[&["a", "b"], &["b", "c"], &[]]);
        assert_eq!(decisions(&r, 3, "b"), [Write, Write, Write]);
        assert_eq!(decisions(&r, 3, "a"), [Write, Skip, Write]);
        assert_eq!(decisions(&r, 3, "z"), [Skip, Skip, Write]);
    }

    #[test]
    fn a_tenant_nobody_takes_is_unrouted_once_by_the_first_destination() {
        let r = routes(&[&["a"], &["b"]]);
        assert!(!r.taken("z"));
        assert_eq!(decisions(&r, 2, "z"), [Unrouted, Skip]);
        // The first destination taking nobody but another taking the tenant: a skip.
        let r = routes(&[&["x"], &["z"]]);
        assert_eq!(decisions(&r, 2, "z"), [Skip, Write]);
    }

    #[test]
    fn names_are_lower_case_letters_digits_underscores_and_hyphens() {
        for ok in ["b", "replica_2", "dc-1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "B", "a.b", "a b", "é", "a:b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    fn resolved(text: &str) -> Result<Vec<Destination>, (String, String)> {
        let file: toml::Table = toml::from_str(text).unwrap();
        let table = |name: &str| match file.get(name) {
            Some(toml::Value::Table(t)) => t.clone(),
            _ => toml::Table::new(),
        };
        resolve(&table("influxdb"), &table("destinations"))
    }

    #[test]
    fn a_destination_inherits_every_key_it_does_not_set() {
        let d = resolved(
            "[influxdb]\nport = 9999\npassword = \"pw\"\ntenants = [\"t\"]\n\
             [destinations.b]\nip_address = \"10.0.0.2\"\n\
             [destinations.a]\nport = 1\ntenants = []\n",
        )
        .unwrap();
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a", "b"], "ordered by name");
        let (a, b) = (&d[0].influx, &d[1].influx);
        assert_eq!((b.ip_address.as_str(), b.port), ("10.0.0.2", 9999));
        assert_eq!(b.password.expose(), "pw");
        assert_eq!(b.tenants, ["t"], "tenants inherited when not set");
        assert_eq!(b.database_name, "mon", "a default neither sets");
        assert_eq!((a.ip_address.as_str(), a.port), ("127.0.0.1", 1));
        assert!(a.tenants.is_empty(), "tenants set: every tenant");
    }

    #[test]
    fn bad_destinations_are_refused_naming_the_table_and_key() {
        let err = |text: &str| resolved(text).unwrap_err().0;
        assert_eq!(err("[destinations.b]\nportt = 1\n"), "destinations.b.portt");
        assert_eq!(err("[destinations.B]\nport = 1\n"), "destinations.B");
        assert_eq!(err("[destinations.influxdb]\n"), "destinations.influxdb");
        assert_eq!(err("[destinations.b]\nport = \"x\"\n"), "destinations.b");
        assert_eq!(err("[destinations]\nb = 1\n"), "destinations.b");
    }
}
