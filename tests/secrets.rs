//! Secrets never leave through `--check-config` (or its warnings and errors), whatever they
//! contain: arbitrary strings (quotes, backslashes, newlines, unicode, `$`, `'`) as the InfluxDB
//! password and token and as secret librdkafka properties, in TOML and in the INI file. The
//! output is searched for the raw secret and its TOML-, JSON- and Rust-escaped forms.

use std::process::Command;

use proptest::prelude::*;

const SECRET_PROPERTIES: &[&str] = &[
    "sasl.password",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
    "my.custom.password",
    "some_secret_thing",
];

fn dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("mp-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every form the secret could take in the output (trailing/leading quotes removed).
fn forms(secret: &str) -> Vec<String> {
    let unquote = |s: String| s[1..s.len() - 1].to_owned();
    let mut f = vec![
        secret.to_owned(),
        unquote(toml::Value::String(secret.to_owned()).to_string()),
        unquote(serde_json::to_string(secret).unwrap()),
        unquote(format!("{secret:?}")),
    ];
    // A multi-line TOML string would carry it line by line: the longest line must not appear.
    if let Some(l) = secret.lines().max_by_key(|l| l.len())
        && l.chars().count() >= 6
    {
        f.push(l.to_owned());
    }
    f.retain(|s| s.chars().count() >= 6);
    f
}

fn check_config(path: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_monasca-persister"))
        .arg("--config-file")
        .arg(path)
        .arg("--check-config")
        .env_remove("OS_INFLUXDB__PASSWORD")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn assert_hidden(secret: &str, output: &str) -> Result<(), TestCaseError> {
    for form in forms(secret) {
        prop_assert!(
            !output.contains(&form),
            "secret {secret:?} appears (as {form:?}) in:\n{output}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn toml_secrets_never_printed(
        secret in "[^\\x00]{8,40}",
        prop in prop::sample::select(SECRET_PROPERTIES),
    ) {
        let s = toml::Value::String(secret.clone()).to_string();
        let text = format!(
            "[influxdb]\npassword = {s}\ntoken = {s}\n[kafka.properties]\n\"{prop}\" = {s}\n\"client.id\" = \"visible-id\"\n"
        );
        let path = dir().join("secret.toml");
        std::fs::write(&path, text).unwrap();
        let (code, out) = check_config(&path);
        prop_assert_eq!(code, 0, "{}", out);
        prop_assert!(out.contains("visible-id"));
        assert_hidden(&secret, &out)?;
    }

    #[test]
    fn ini_secrets_never_printed(
        secret in "[^\\x00-\\x20\\x7f]{8,40}",
        prop in prop::sample::select(SECRET_PROPERTIES),
    ) {
        // The INI file holds one line per value; `$$` is a `$` in oslo-read options.
        let text = format!(
            "[influxdb]\npassword = {}\n[kafka_properties]\n{prop} = {secret}\n",
            secret.replace('$', "$$")
        );
        let path = dir().join("secret.conf");
        std::fs::write(&path, text).unwrap();
        let (_, out) = check_config(&path);
        assert_hidden(&secret, &out)?;
    }

    #[test]
    fn a_bad_reference_in_a_password_is_refused_without_showing_it(
        head in "[A-Za-z0-9]{4,12}",
        name in "[a-z][a-z0-9_]{5,12}",
    ) {
        // `$name` that names no option: oslo refuses the file; so do we, without the value.
        let secret = format!("{head}${name}");
        let path = dir().join("badref.conf");
        std::fs::write(&path, format!("[influxdb]\npassword = {secret}\n")).unwrap();
        let (code, out) = check_config(&path);
        prop_assume!(!["user", "port", "ssl", "debug"].contains(&name.as_str()));
        prop_assert_eq!(code, 2, "{}", out);
        assert_hidden(&secret, &out)?;
        prop_assert!(!out.contains(&name), "{}", out);
    }
}
