//! Retention per tenant against a real InfluxDB 1.6: with a database per tenant, each
//! database the writer creates gets the default retention policy configured for its tenant
//! (`retention_hours_per_tenant`), or `default_retention_hours` for the others.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::Influx;
use monasca_persister::sink::{InfluxConfig, Lines, Writer};
use tokio_util::sync::CancellationToken;

/// The default retention policy of `db`: (name, duration as InfluxDB shows it).
fn default_policy(influx: &Influx, db: &str) -> Result<(String, String), String> {
    let v = influx.query(db, &format!("SHOW RETENTION POLICIES ON \"{db}\""));
    let rows = v["results"][0]["series"][0]["values"]
        .as_array()
        .ok_or_else(|| format!("no policies in {v}"))?;
    let defaults: Vec<_> = rows.iter().filter(|r| r[4] == true).collect();
    match defaults.as_slice() {
        [r] => Ok((
            r[0].as_str().unwrap_or_default().to_owned(),
            r[1].as_str().unwrap_or_default().to_owned(),
        )),
        _ => Err(format!("not one default policy: {rows:?}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_created_tenant_database_gets_its_tenants_retention() {
    let influx = Influx::start();
    let per_tenant: BTreeMap<String, u32> = [("gold", 720), ("free", 0)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let w = Writer::new(
        InfluxConfig {
            port: influx.port,
            database_name: "mon".into(),
            db_per_tenant: true,
            default_retention_hours: 48,
            retention_hours_per_tenant: per_tenant,
            ..InfluxConfig::default()
        },
        CancellationToken::new(),
    )
    .expect("writer");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    for tenant in ["gold", "free", "other"] {
        let db = w.database_for(tenant).into_owned();
        let body = Bytes::from(format!("m,host=h value=1 {now}\n"));
        let r = w
            .write(&db, &Lines::from_newline_separated(body))
            .await
            .expect("written");
        assert_eq!(r.written, 1, "{tenant}");
    }
    assert_eq!(
        default_policy(&influx, "mon_gold"),
        Ok(("720h".into(), "720h0m0s".into()))
    );
    assert_eq!(
        default_policy(&influx, "mon_free"),
        Ok(("autogen".into(), "0s".into())),
        "0: no retention policy of ours (InfluxDB's infinite autogen)"
    );
    assert_eq!(
        default_policy(&influx, "mon_other"),
        Ok(("48h".into(), "48h0m0s".into()))
    );
}
