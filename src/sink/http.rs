//! The HTTP side of the sink: one pooled `hyper-util` client, request building for both write
//! APIs, and turning every answer or transport failure into an [`Verdict`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::classify::{Api, RetryCause, Verdict, classify, error_message};
use super::{InfluxConfig, SinkError};

pub(super) struct Client {
    /// Pooled, keep-alive connections to the one server.
    client: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `http(s)://host:port`.
    base: String,
    api: Api,
    /// Basic (1.x) or Token (2.x) credentials, marked sensitive so no debug output shows them.
    auth: Option<HeaderValue>,
    retention_policy: String,
    org: String,
    retention_hours: u32,
    /// Database name → retention hours, for the tenants given their own.
    retention_by_db: std::collections::BTreeMap<String, u32>,
    gzip: bool,
    timeout: Duration,
}

impl Client {
    pub(super) fn new(c: &InfluxConfig) -> Result<Self, SinkError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs_f64(
            c.request_timeout_seconds.clamp(0.1, 60.0),
        )));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = if c.ssl && c.verify_ssl {
            builder
                .with_native_roots()
                .map_err(|e| SinkError::Tls(format!("loading the system's CA certificates: {e}")))?
        } else {
            builder.with_tls_config(unverified_tls()?)
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs_f64(
                c.pool_idle_timeout_seconds.max(0.0),
            ))
            .pool_max_idle_per_host(c.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let host = if c.ip_address.contains(':') && !c.ip_address.starts_with('[') {
            format!("[{}]", c.ip_address)
        } else {
            c.ip_address.clone()
        };
        let base = format!(
            "{}://{}:{}",
            if c.ssl { "https" } else { "http" },
            host,
            c.port
        );
        base.parse::<Uri>()
            .map_err(|e| SinkError::Config(format!("bad address {base:?}: {e}")))?;
        let auth = match c.api {
            Api::V1 if !c.user.is_empty() => {
                use base64::Engine as _;
                let raw = format!("{}:{}", c.user, c.password.expose());
                let enc = base64::engine::general_purpose::STANDARD.encode(raw);
                Some(sensitive(&format!("Basic {enc}"))?)
            }
            Api::V2 if !c.token.is_empty() => {
                Some(sensitive(&format!("Token {}", c.token.expose()))?)
            }
            _ => None,
        };
        Ok(Client {
            client,
            base,
            api: c.api,
            auth,
            retention_policy: c.retention_policy.clone(),
            org: c.org.clone(),
            retention_hours: c.default_retention_hours,
            retention_by_db: if c.db_per_tenant {
                (c.retention_hours_per_tenant.iter())
                    .map(|(tenant, &h)| (c.database_for(tenant).into_owned(), h))
                    .collect()
            } else {
                Default::default()
            },
            gzip: c.gzip,
            timeout: Duration::from_secs_f64(c.request_timeout_seconds.max(0.001)),
        })
    }

    fn write_uri(&self, db: &str) -> String {
        match self.api {
            Api::V1 => {
                let mut u = format!("{}/write?db={}&precision=ms", self.base, urlencode(db));
                if !self.retention_policy.is_empty() {
                    u.push_str("&rp=");
                    u.push_str(&urlencode(&self.retention_policy));
                }
                u
            }
            Api::V2 => format!(
                "{}/api/v2/write?org={}&bucket={}&precision=ms",
                self.base,
                urlencode(&self.org),
                urlencode(db)
            ),
        }
    }

    /// The body as sent: compressed once here when `gzip` is on, then sent as often as
    /// retries need.
    pub(super) fn encode_body(&self, body: Bytes) -> Bytes {
        if self.gzip { gzip(&body) } else { body }
    }

    /// One write request of a body from [`Self::encode_body`]; the answer classified.
    pub(super) async fn write(&self, db: &str, body: Bytes) -> Verdict {
        let mut req =
            Request::post(self.write_uri(db)).header(CONTENT_TYPE, "text/plain; charset=utf-8");
        if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        match self.send(req, body).await {
            Ok((status, retry_after, body)) => {
                classify(self.api, status, retry_after.as_deref(), &body)
            }
            Err(a) => a,
        }
    }

    /// `CREATE DATABASE`, plus the default retention policy when configured. Only called after
    /// the server said the database does not exist, so an existing one is never altered.
    pub(super) async fn create_database(&self, db: &str) -> Result<(), (RetryCause, String)> {
        let mut q = format!("CREATE DATABASE {}", quote_ident(db));
        let hours = self
            .retention_by_db
            .get(db)
            .copied()
            .unwrap_or(self.retention_hours);
        if hours > 0 {
            let h = hours;
            q.push_str(&format!(
                "; CREATE RETENTION POLICY \"{h}h\" ON {} DURATION {h}h REPLICATION 1 DEFAULT",
                quote_ident(db)
            ));
        }
        let form = format!("q={}", urlencode(&q));
        let req = Request::post(format!("{}/query", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        let (status, _, body) = self
            .send(req, Bytes::from(form))
            .await
            .map_err(|a| match a {
                Verdict::Retry { cause, message, .. } => (cause, message),
                other => (RetryCause::Transport, format!("{other:?}")),
            })?;
        let text = String::from_utf8_lossy(&body);
        match status {
            200 if !text.contains("\"error\"") => Ok(()),
            401 => Err((
                RetryCause::Auth,
                format!("creating database: HTTP {status}: {}", error_message(&body)),
            )),
            // A user without the admin privilege may not create databases.
            _ if status == 403 || text.contains("not authorized") => Err((
                RetryCause::Forbidden,
                format!("creating database: HTTP {status}: {}", error_message(&body)),
            )),
            _ => Err((
                RetryCause::Server,
                format!("creating database: HTTP {status}: {}", error_message(&body)),
            )),
        }
    }

    /// Sends with credentials and the request timeout. Transport failures come back as the
    /// retry action they call for.
    async fn send(
        &self,
        req: http::request::Builder,
        body: Bytes,
    ) -> Result<(u16, Option<String>, Bytes), Verdict> {
        let mut req = req;
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let req = req.body(Full::new(body)).map_err(|e| Verdict::Reject {
            message: format!("building request: {e}"),
        })?;
        let exchange = async {
            let resp = self.client.request(req).await?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, retry_after, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(Verdict::Retry {
                cause: RetryCause::Transport,
                after: None,
                message: error_chain(&*e),
            }),
            Err(_) => Err(Verdict::Retry {
                cause: RetryCause::Timeout,
                after: None,
                message: format!("no answer within {:?}", self.timeout),
            }),
        }
    }
}

fn sensitive(v: &str) -> Result<HeaderValue, SinkError> {
    let mut h = HeaderValue::from_str(v).map_err(|_| {
        SinkError::Config("credentials contain characters HTTP headers cannot carry".into())
    })?;
    h.set_sensitive(true);
    Ok(h)
}

/// An error and its causes on one line ("connection refused" hides under hyper's "client error").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn gzip(body: &[u8]) -> Bytes {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    Bytes::from(enc.finish().unwrap_or_default())
}

/// InfluxQL identifier quoting.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub(crate) fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[(b >> 4) as usize]));
            out.push(char::from(b"0123456789ABCDEF"[(b & 15) as usize]));
        }
    }
    out
}

/// TLS config for `verify_ssl = false` (and for plain-HTTP setups, where it is never used):
/// signatures are still checked, the certificate chain and name are not.
fn unverified_tls() -> Result<rustls::ClientConfig, SinkError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth();
    Ok(config)
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn v1_uri_carries_db_and_rp_but_no_credentials() {
        let c = InfluxConfig {
            user: "u".into(),
            password: Secret::new("hunter2"),
            retention_policy: "two weeks".into(),
            ..InfluxConfig::default()
        };
        let client = Client::new(&c).unwrap();
        let uri = client.write_uri("mon_a b");
        assert_eq!(
            uri,
            "http://127.0.0.1:8086/write?db=mon_a%20b&precision=ms&rp=two%20weeks"
        );
        assert!(!format!("{:?}", client.auth).contains("hunter2"));
    }

    #[test]
    fn v2_uri_uses_org_and_bucket() {
        let c = InfluxConfig {
            api: Api::V2,
            org: "o".into(),
            ..InfluxConfig::default()
        };
        assert_eq!(
            Client::new(&c).unwrap().write_uri("mon"),
            "http://127.0.0.1:8086/api/v2/write?org=o&bucket=mon&precision=ms"
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        let c = InfluxConfig {
            ip_address: "::1".into(),
            ..InfluxConfig::default()
        };
        assert!(
            Client::new(&c)
                .unwrap()
                .write_uri("m")
                .starts_with("http://[::1]:8086/")
        );
    }

    #[test]
    fn influxql_identifiers_are_quoted() {
        assert_eq!(quote_ident(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
