//! The Python persister's oslo.config INI file, read unchanged and mapped onto our TOML schema,
//! with oslo.config 10.7's rules (checked option by option against oslo.config itself by
//! `tests/oslo_config.rs`):
//!
//! - `[group]` headers: names are lower-cased, except `DEFAULT`, which must be written so;
//!   `key = value` or `key: value` (the first `=` or `:` splits); keys are case-sensitive;
//!   whole-line `#` / `;` comments only (a `#` after a value is part of it); a value in one
//!   pair of matching quotes loses them; indented lines continue the previous value (joined
//!   with a newline; a blank line ends it); a later value of a key replaces an earlier one.
//! - Every option monasca-persister 9.0.0 registers (and the oslo.log ones) has its oslo
//!   default, so `[kafka_metrics] num_processors` defaults to `$kafka.num_processors`,
//!   `[influxdb] user` to `mon_persister`, `verify_ssl` to false.
//! - `$name`, `$group.name`, `${group.name}` name registered options (set or default; ours
//!   too); `$$` and `\$` are a `$`; a `$` not followed by a name is kept as written; a name
//!   that is no option is an error.
//! - `OS_<GROUP>__<OPTION>` environment variables override the file.
//! - Values are typed as oslo types them (booleans `true/false/yes/no/on/off/1/0`, ports,
//!   host addresses, `host:port` lists); an empty value of a typed option is unset.
//!
//! What oslo refuses we refuse, naming file, line and key. Keys we do not use (`[zookeeper]`,
//! `consumer_id`, …) are reported once as warnings, never fatal.
//!
//! Owns the way from INI text to the TOML schema's table: `parse` (the text), `resolve`
//! (oslo.config's values), `oslo` and `tables` (the options and where each goes), `render`
//! (the table). Must never: accept what oslo.config refuses, take a default that differs from
//! oslo's, or quote a password or token in an error.

mod oslo;
mod parse;
mod render;
mod resolve;
mod tables;

pub(super) use render::to_toml;

#[cfg(test)]
mod tests {
    use super::super::load;

    /// Shaped like the Python persister's shipped monasca-persister.conf.
    const PYTHON_CONF: &str = "\
[DEFAULT]
debug = False
log_dir = /var/log/monasca/persister

[repositories]
metrics_driver = monasca_persister.repositories.influxdb.metrics_repository:MetricInfluxdbRepository
alarm_state_history_driver = monasca_persister.repositories.influxdb.alarm_state_history_repository:AlarmStateHistInfluxdbRepository

[zookeeper]
uri = 127.0.0.1:2181
partition_interval_recheck_seconds = 15

[kafka]
uri = 10.0.0.1:9092,10.0.0.2:9092
batch_size = 5000

[kafka_alarm_history]
enabled = True
uri = $kafka.uri
group_id = 1_alarm-state-transitions
topic = alarm-state-transitions
consumer_id = 1
client_id = 1
batch_size = 1
max_wait_time_seconds = 30
fetch_size_bytes = 4096

[kafka_metrics]
enabled = True
uri = ${kafka.uri}
group_id = 1_metrics
topic = metrics
batch_size = $kafka.fetch_size_bytes
max_wait_time_seconds = 30
num_processors = 2

[kafka_events]
enabled = False

[influxdb]
database_name = mon
ip_address = 192.168.1.5
port = 8086
user = mon_persister
password = p$$ss
ssl = False
verify_ssl = False
";

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mp-ini-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn python_persister_conf_is_read_unchanged() {
        let loaded = load(&write("persister.conf", PYTHON_CONF)).unwrap();
        let c = loaded.config;
        assert_eq!(c.kafka_metrics.uri, "10.0.0.1:9092,10.0.0.2:9092");
        assert_eq!(c.kafka_alarm_history.uri, "10.0.0.1:9092,10.0.0.2:9092");
        assert_eq!(
            c.kafka_metrics.batch_size, 4096,
            "$kafka.fetch_size_bytes: a reference to an option's oslo default"
        );
        assert_eq!(c.kafka_metrics.num_processors, 2);
        assert_eq!(c.kafka_alarm_history.batch_size, 1);
        assert_eq!(c.influxdb.ip_address, "192.168.1.5");
        assert_eq!(c.influxdb.user, "mon_persister");
        assert_eq!(c.influxdb.password.expose(), "p$ss");
        assert_eq!(c.persister.log_dir, "/var/log/monasca/persister");
        let unused = loaded
            .warnings
            .iter()
            .find(|w| w.contains("not used"))
            .expect("unused keys reported");
        for k in [
            "zookeeper.uri",
            "kafka_alarm_history.consumer_id",
            "kafka.batch_size",
        ] {
            assert!(unused.contains(k), "{k} in {unused}");
        }
    }

    #[test]
    fn retention_per_tenant_is_read_as_an_oslo_dict() {
        let c = load(&write(
            "retention.conf",
            "[influxdb]\ndb_per_tenant = True\nretention_hours_per_tenant = gold:720, free : 0,abc-123:24\n",
        ))
        .unwrap()
        .config;
        let want: std::collections::BTreeMap<String, u32> =
            [("gold", 720), ("free", 0), ("abc-123", 24)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        assert_eq!(c.influxdb.retention_hours_per_tenant, want);
        let e = load(&write(
            "retention-bad.conf",
            "[influxdb]\ndb_per_tenant = True\nretention_hours_per_tenant = gold=720\n",
        ))
        .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(3), "influxdb.retention_hours_per_tenant")
        );
        assert!(
            e.to_string().contains("\"gold=720\" is not key:value"),
            "{e}"
        );
        let e = load(&write(
            "retention-shared.conf",
            "[influxdb]\nretention_hours_per_tenant = gold:720\n",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("needs db_per_tenant = true"), "{e}");
    }

    #[test]
    fn bad_value_names_file_line_and_key() {
        let e = load(&write(
            "bad.conf",
            "[kafka_metrics]\nenabled = True\nbatch_size = lots\n",
        ))
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.key, "kafka_metrics.batch_size");
        assert!(
            e.to_string()
                .contains("bad.conf:3: kafka_metrics.batch_size:"),
            "{e}"
        );
    }

    #[test]
    fn validation_error_points_at_the_ini_line() {
        let e = load(&write("zero.conf", "[kafka_metrics]\n\nbatch_size = 0\n")).unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(3), "kafka_metrics.batch_size")
        );
    }

    #[test]
    fn num_processors_zero_disables_the_pipeline() {
        let c = load(&write(
            "zero-procs.conf",
            "[kafka_alarm_history]\nnum_processors = 0\n",
        ))
        .unwrap()
        .config;
        assert!(!c.kafka_alarm_history.enabled && c.kafka_metrics.enabled);
    }

    #[test]
    fn reference_to_an_unregistered_option_is_refused_as_oslo_does() {
        let e = load(&write(
            "unreg.conf",
            "[kafka]\nbatch_size = 5\n[kafka_metrics]\nbatch_size = $kafka.batch_size\n",
        ))
        .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (Some(4), "kafka_metrics.batch_size")
        );
    }

    #[test]
    fn environment_overrides_the_files_and_later_files_override_earlier_ones() {
        let a = write("a.conf", "[influxdb]\nport = 1\ndatabase_name = a\n");
        let b = write("b.conf", "[influxdb]\nport = 2\n");
        let env = |n: &str| (n == "OS_INFLUXDB__DATABASE_NAME").then(|| "env".to_owned());
        let c = super::super::load_all(&[a.clone(), b.clone()], &env)
            .unwrap()
            .config;
        assert_eq!(
            (c.influxdb.port, c.influxdb.database_name.as_str()),
            (2, "env")
        );
        let c = super::super::load_all(&[b, a], &|_| None).unwrap().config;
        assert_eq!(
            (c.influxdb.port, c.influxdb.database_name.as_str()),
            (1, "a")
        );
    }

    #[test]
    fn dangling_reference_is_an_error() {
        let e = load(&write("ref.conf", "[kafka_metrics]\nuri = $kafka.nope\n")).unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("$kafka.nope"), "{e}");
    }

    #[test]
    fn non_influx_repository_is_refused() {
        let e = load(&write("cass.conf", "[repositories]\nmetrics_driver = monasca_persister.repositories.cassandra.metrics_repository:MetricCassandraRepository\n")).unwrap_err();
        assert_eq!(e.key, "repositories.metrics_driver");
    }

    #[test]
    fn kafka_properties_pass_through() {
        let c = load(&write(
            "props.conf",
            "[kafka_properties]\nsecurity.protocol = SASL_SSL\nsasl.password = x\n",
        ))
        .unwrap()
        .config;
        assert_eq!(c.kafka.properties["security.protocol"], "SASL_SSL");
        assert_eq!(c.kafka.properties["sasl.password"], "x");
    }

    #[test]
    fn destination_sections_are_influxdb_sections_inheriting_from_it() {
        let c = load(&write(
            "destinations.conf",
            "[influxdb]\nip_address = 10.0.0.1\npassword = pw\ntenants = t1, t2\n\
             [destination:b]\nip_address = 10.0.0.2\n\
             [destination:archive]\nport = 9999\ntenants =\ndb_per_tenant = yes\n",
        ))
        .unwrap()
        .config;
        assert_eq!(c.influxdb.tenants, ["t1", "t2"]);
        let got: Vec<(&str, &str, u16, &[String], bool)> = c
            .destinations()
            .map(|(n, i)| {
                let t = i.tenants.as_slice();
                (n, i.ip_address.as_str(), i.port, t, i.db_per_tenant)
            })
            .collect();
        let t = c.influxdb.tenants.as_slice();
        assert_eq!(
            got,
            [
                ("influxdb", "10.0.0.1", 8086, t, false),
                ("archive", "10.0.0.1", 9999, &[][..], true),
                ("b", "10.0.0.2", 8086, t, false),
            ]
        );
        for (_, i) in c.destinations() {
            assert_eq!(i.password.expose(), "pw");
            assert_eq!(i.user, "mon_persister", "oslo's default, inherited");
        }
    }

    /// The line and key of the error loading `text` gives.
    fn refused_at(name: &str, text: &str) -> (Option<usize>, String) {
        let e = load(&write(name, text)).unwrap_err();
        (e.line, e.key)
    }

    #[test]
    fn bad_destination_sections_name_the_line() {
        let at = |line: usize, key: &str| (Some(line), key.to_owned());
        let text = "[influxdb]\nport = 1\n\n[destination:b.c]\nport = 2\n";
        assert_eq!(refused_at("d1.conf", text), at(4, "[destination:b.c]"));
        let e = load(&write("d1.conf", text)).unwrap_err();
        assert!(e.to_string().contains("[a-z0-9_-]+"), "{e}");
        for (text, line, key) in [
            (
                "[destination:b]\nport = 2\nzookeeper = x\n",
                3,
                "destination:b.zookeeper",
            ),
            ("[destination:b]\n\nport = 0\n", 3, "destinations.b.port"),
            ("[destination:b]\nport = x\n", 2, "destination:b.port"),
        ] {
            assert_eq!(refused_at("d2.conf", text), at(line, key), "{text}");
        }
    }

    #[test]
    fn continuation_lines_and_comments() {
        let c = load(&write(
            "cont.conf",
            "# comment\n[kafka]\n; another\nuri = a:1,\n  b:2\n",
        ))
        .unwrap()
        .config;
        assert_eq!(c.kafka.uri, "a:1,b:2");
    }
}
