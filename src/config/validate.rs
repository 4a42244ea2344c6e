//! The cross-field checks of a [`Config`], one function per section.
//!
//! Owns every rule a loaded configuration must satisfy beyond its types; the error names the
//! key (`section.key`) and what is wrong, and the loader adds the file and line. Must never:
//! change a value, read a file, or put a value (a password, a token) in its message.

use super::{Api, Config, InfluxConfig, KafkaConfig, PersisterConfig};

/// The key at fault and what is wrong with it.
type Problem = (String, String);

fn bad(key: &str, message: &str) -> Result<(), Problem> {
    Err((key.to_owned(), message.to_owned()))
}

/// A finite number above zero (NaN is not).
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// A finite number at or above zero (NaN is not).
fn non_negative(x: f64) -> bool {
    x >= 0.0 && x.is_finite()
}

impl Config {
    /// Cross-field checks; the error names the key.
    pub fn validate(&self) -> Result<(), Problem> {
        self.validate_pipelines()?;
        validate_influx("influxdb", &self.influxdb)?;
        for d in &self.destinations {
            validate_influx(&format!("destinations.{}", d.name), &d.influx)?;
        }
        validate_persister(&self.persister)?;
        validate_kafka(&self.kafka)
    }

    fn validate_pipelines(&self) -> Result<(), Problem> {
        for (name, p) in self.pipelines() {
            if !p.enabled {
                continue;
            }
            if self.brokers(p).trim().is_empty() {
                return bad(
                    &format!("{name}.uri"),
                    "no Kafka brokers (set kafka.uri or this)",
                );
            }
            if p.topic.is_empty() {
                return bad(&format!("{name}.topic"), "must not be empty");
            }
            if p.group_id.is_empty() {
                return bad(&format!("{name}.group_id"), "must not be empty");
            }
            if p.batch_size == 0 {
                return bad(&format!("{name}.batch_size"), "must be at least 1");
            }
            if p.num_processors == 0 {
                return bad(&format!("{name}.num_processors"), "must be at least 1");
            }
            if !positive(p.max_wait_time_seconds) {
                return bad(
                    &format!("{name}.max_wait_time_seconds"),
                    "must be a positive number",
                );
            }
        }
        if !self.kafka_metrics.enabled && !self.kafka_alarm_history.enabled {
            return bad(
                "kafka_metrics.enabled",
                "both pipelines are disabled: nothing to do",
            );
        }
        Ok(())
    }
}

fn validate_influx(section: &str, i: &InfluxConfig) -> Result<(), Problem> {
    if i.database_name.is_empty() {
        return bad(&format!("{section}.database_name"), "must not be empty");
    }
    if i.ip_address.is_empty() {
        return bad(&format!("{section}.ip_address"), "must not be empty");
    }
    if i.port == 0 {
        return bad(&format!("{section}.port"), "must not be 0");
    }
    // `max_body_bytes = 0` is left to the writer, as it always was.
    if let Some(key @ ("batch_size" | "max_in_flight")) = i.zero_request_limit() {
        return bad(&format!("{section}.{key}"), "must be at least 1");
    }
    if !positive(i.request_timeout_seconds) {
        return bad(
            &format!("{section}.request_timeout_seconds"),
            "must be positive",
        );
    }
    if i.api == Api::V2 && i.org.is_empty() {
        return bad(
            &format!("{section}.org"),
            "the v2 API needs an organisation",
        );
    }
    if !i.retention_hours_per_tenant.is_empty() && !i.db_per_tenant {
        return bad(
            &format!("{section}.retention_hours_per_tenant"),
            "needs db_per_tenant = true (a retention per tenant is a retention per database)",
        );
    }
    if i.tenants.iter().any(|t| t.trim().is_empty()) {
        return bad(
            &format!("{section}.tenants"),
            "a tenant id must not be empty",
        );
    }
    Ok(())
}

fn validate_persister(p: &PersisterConfig) -> Result<(), Problem> {
    if p.max_batches_in_flight == 0 {
        return bad("persister.max_batches_in_flight", "must be at least 1");
    }
    if !p.admin_listen.is_empty() && p.admin_listen.parse::<std::net::SocketAddr>().is_err() {
        return bad(
            "persister.admin_listen",
            "must be an address like 127.0.0.1:9091 (or empty)",
        );
    }
    if !positive(p.lag_interval_seconds) {
        return bad(
            "persister.lag_interval_seconds",
            "must be a positive number",
        );
    }
    for (key, seconds) in [
        (
            "persister.ready_max_uncommitted_seconds",
            p.ready_max_uncommitted_seconds,
        ),
        (
            "persister.ready_max_unreadable_seconds",
            p.ready_max_unreadable_seconds,
        ),
    ] {
        if !non_negative(seconds) {
            return bad(key, "must be a non-negative number (0: never)");
        }
    }
    if !positive(p.database_refused_seconds) {
        return bad(
            "persister.database_refused_seconds",
            "must be a positive number",
        );
    }
    if p.max_message_bytes == 0 {
        return bad("persister.max_message_bytes", "must be at least 1");
    }
    Ok(())
}

fn validate_kafka(k: &KafkaConfig) -> Result<(), Problem> {
    if !positive(k.brokers_down_exit_seconds) {
        return bad("kafka.brokers_down_exit_seconds", "must be positive");
    }
    // Offsets are committed by us, only after the write: librdkafka storing or committing
    // positions on its own would commit messages that were consumed but never written.
    for key in ["enable.auto.commit", "enable.auto.offset.store"] {
        if let Some(v) = k.properties.get(key)
            && v.trim() != "false"
        {
            return bad(
                &format!("kafka.properties.{key}"),
                "must be false (or unset): offsets are committed only after the write, \
                 and librdkafka committing on its own would lose unwritten messages",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::pipeline_defaults;
    use crate::convert::Kind;

    fn with_influx(influxdb: InfluxConfig) -> Config {
        Config {
            kafka: KafkaConfig::default(),
            kafka_metrics: pipeline_defaults(Kind::Metrics),
            kafka_alarm_history: pipeline_defaults(Kind::Alarms),
            influxdb,
            destinations: Vec::new(),
            persister: PersisterConfig::default(),
        }
    }

    #[test]
    fn zero_request_limits_are_refused_by_key_except_the_body_size_left_to_the_writer() {
        let zero_in_flight = InfluxConfig {
            max_in_flight: 0,
            max_body_bytes: 0,
            ..InfluxConfig::default()
        };
        assert_eq!(
            with_influx(zero_in_flight).validate().unwrap_err().0,
            "influxdb.max_in_flight"
        );
        let zero_body = InfluxConfig {
            max_body_bytes: 0,
            ..InfluxConfig::default()
        };
        assert_eq!(zero_body.zero_request_limit(), Some("max_body_bytes"));
        assert!(with_influx(zero_body).validate().is_ok());
        assert_eq!(InfluxConfig::default().zero_request_limit(), None);
    }
}
