//! Secrets never leave through `--check-config` (or its warnings and errors), whatever they
//! contain: arbitrary strings (quotes, backslashes, newlines, unicode, `$`, `'`) as the InfluxDB
//! password and token and as secret librdkafka properties, in TOML and in the INI file. The
//! output is searched for the raw secret and its TOML-, JSON- and Rust-escaped forms.
//!
//! Nor through the running daemon: a secret-bearing property librdkafka refuses is named in
//! the start-up error without its value, a value librdkafka quotes back in its log is
//! scrubbed, and OIDC (SASL/OAUTHBEARER with `sasl.oauthbearer.method=oidc`) fetches its token
//! from a token endpoint with the configured client id and secret, logging neither the secret
//! nor the token.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;

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

/// Runs the daemon on a TOML config with `properties` (lines of `[kafka.properties]`) against
/// a Kafka address nobody listens on, for at most `limit`; its exit code (`None`: still
/// running, then killed) and everything it printed, at debug level.
fn run_daemon(name: &str, properties: &str, limit: Duration) -> (Option<i32>, String) {
    let (mut child, log) = spawn_daemon(name, properties);
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status.code().expect("exited, not killed by a signal"));
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (code, std::fs::read_to_string(&log).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// librdkafka refuses an unknown property with an error that carries its value; a
    /// secret-looking one (each kind of name we treat as secret) is named without it.
    #[test]
    fn a_refused_secret_property_is_named_in_the_start_up_error_without_its_value(
        secret in "[A-Za-z0-9+/=_.-]{8,40}",
        prop in prop::sample::select(SECRET_PROPERTIES),
    ) {
        let key = format!("x.{prop}");
        let (code, out) = run_daemon(
            "refused",
            &format!("\"{key}\" = \"{secret}\""),
            Duration::from_secs(30),
        );
        prop_assert_eq!(code, Some(1), "{}", out);
        prop_assert!(out.contains(&format!("No such configuration property: \"{key}\"")), "{}", out);
        assert_hidden(&secret, &out)?;
    }
}

/// Starts the daemon (debug log) on a TOML config with `properties` (lines of
/// `[kafka.properties]`) against a Kafka address nobody listens on; the child and its log.
fn spawn_daemon(name: &str, properties: &str) -> (std::process::Child, std::path::PathBuf) {
    let path = dir().join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("[kafka]\nuri = \"127.0.0.1:1\"\n[kafka.properties]\n{properties}\n[persister]\nadmin_listen = \"\"\n"),
    )
    .unwrap();
    let log = dir().join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_monasca-persister"))
        .arg("--config-file")
        .arg(&path)
        .env("RUST_LOG", "debug")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    (child, log)
}

/// Waits until `path`'s text contains `what`; the text.
fn wait_for_log(path: &std::path::Path, what: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(what) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_secret_librdkafka_quotes_back_in_its_log_is_scrubbed() {
    // An unparsable sasl.oauthbearer.config is quoted from where parsing stopped.
    let secret = "tok3n-Hunter2-value";
    let (code, out) = run_daemon(
        "quoted",
        &format!(
            "\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanisms\" = \"OAUTHBEARER\"\n\"enable.sasl.oauthbearer.unsecure.jwt\" = \"true\"\n\"sasl.oauthbearer.config\" = \"principal=persister {secret}\""
        ),
        Duration::from_secs(4),
    );
    assert_eq!(code, None, "still running: {out}");
    assert!(
        out.contains("Unrecognized sasl.oauthbearer.config beginning at: ***"),
        "librdkafka's complaint, scrubbed: {out}"
    );
    assert!(!out.contains(secret), "{out}");
}

/// One HTTP request as the token endpoint received it.
struct TokenRequest {
    request_line: String,
    authorization: String,
    body: String,
}

/// A token endpoint on 127.0.0.1 that answers every POST with `token`; the requests it got
/// come out of the receiver.
fn token_endpoint(token: String) -> (u16, std::sync::mpsc::Receiver<TokenRequest>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let (mut authorization, mut length) = (String::new(), 0usize);
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (name, value) = h.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "authorization" => authorization = value.trim().to_owned(),
                    "content-length" => length = value.trim().parse().unwrap(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer =
                format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":3600}}"#);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = tx.send(TokenRequest {
                request_line: request_line.trim_end().to_owned(),
                authorization,
                body: String::from_utf8(body).unwrap(),
            });
        }
    });
    (port, rx)
}

#[test]
fn oidc_fetches_its_token_with_the_configured_client_and_logs_neither_secret_nor_token() {
    // A JWT as an identity provider issues it: librdkafka reads its `sub` and `exp`.
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let token = format!(
        "{}.{}.c2lnbmF0dXJlLW9mLXRoZS1pc3N1ZXI",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"sub":"persister","exp":{exp},"iat":{}}}"#,
            exp - 3600
        ))
    );
    let (port, requests) = token_endpoint(token.clone());
    let secret = "oidc-Client-Secret-77";
    let (mut child, log) = spawn_daemon(
        "oidc",
        &format!(
            r#""security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanisms" = "OAUTHBEARER"
"sasl.oauthbearer.method" = "oidc"
"sasl.oauthbearer.client.id" = "monasca-persister"
"sasl.oauthbearer.client.secret" = "{secret}"
"sasl.oauthbearer.token.endpoint.url" = "http://127.0.0.1:{port}/realms/kafka/token"
"sasl.oauthbearer.scope" = "kafka"
# librdkafka's own debug output too: it must not print them either.
"debug" = "security,broker""#
        ),
    );
    let got = requests.recv_timeout(Duration::from_secs(30));
    // The token is in use once librdkafka tries the broker with it (it is down).
    let text = wait_for_log(&log, "Connect to ipv4#127.0.0.1:1", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or(text);
    assert!(
        text.contains("Connect to ipv4#127.0.0.1:1"),
        "librdkafka went on to the broker:\n{text}"
    );
    let got = got.unwrap_or_else(|_| panic!("no token request within 30 s:\n{text}"));
    assert_eq!(got.request_line, "POST /realms/kafka/token HTTP/1.1");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("monasca-persister:{secret}"));
    assert_eq!(got.authorization, format!("Basic {basic}"));
    assert_eq!(got.body, "grant_type=client_credentials&scope=kafka");
    assert!(
        !text.contains("Failed to retrieve OIDC token"),
        "the token was accepted:\n{text}"
    );
    for (what, needle) in [
        ("secret", secret),
        ("token", token.as_str()),
        ("token signature", "c2lnbmF0dXJlLW9mLXRoZS1pc3N1ZXI"),
        ("basic credentials", basic.as_str()),
    ] {
        assert!(!text.contains(needle), "the {what} is in the log:\n{text}");
    }
}
