//! A string that must never reach a log, an error message or `--check-config` output.
//!
//! Owns [`Secret`] (a password or token) and [`Redactor`] (secret librdkafka property values
//! scrubbed from a client's text). Must never: show a secret through `Debug`, `Display` or
//! serialization.

use std::fmt;

/// A password or token. `Debug` and `Display` print `***` (or nothing when empty), so a
/// struct holding one can be logged whole.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// Serialized (for `--check-config`) as `***`, never as itself.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Scrubs the values of secret librdkafka properties (see
/// [`is_secret_property`](super::is_secret_property)) from text librdkafka produced: its
/// configuration errors name the refused property *and its value*, and some of its messages
/// quote a value back (an unparsable `sasl.oauthbearer.config` is echoed from where parsing
/// stopped). Every client's errors and log lines pass through one of these.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// What to replace, longest first (so a value is replaced before its own pieces).
    needles: Vec<String>,
}

/// Pieces of a secret shorter than this are left alone: they would match ordinary words.
const MIN_PIECE: usize = 4;

impl Redactor {
    /// From a client's properties: the secret ones' values, and each of their
    /// whitespace-separated pieces (a quoted tail of a value is a run of whole pieces).
    pub fn new<'a>(properties: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut needles = Vec::new();
        for (k, v) in properties {
            if v.is_empty() || !super::is_secret_property(k) {
                continue;
            }
            needles.push(v.to_owned());
            needles.extend(
                v.split_whitespace()
                    .filter(|p| p.len() >= MIN_PIECE && p.len() < v.len())
                    .map(str::to_owned),
            );
        }
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Redactor { needles }
    }

    /// [`Redactor::new`] over owned `(key, value)` pairs, as the config holds them.
    pub fn of(properties: &[(String, String)]) -> Self {
        Self::new(properties.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// `text` with every secret (or piece of one) replaced by `***`.
    pub fn redact<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        let mut out = std::borrow::Cow::Borrowed(text);
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = std::borrow::Cow::Owned(out.replace(n.as_str(), "***"));
            }
        }
        out
    }

    /// A librdkafka error as text, without secrets. A refused property is named with its
    /// value only when the property is not a secret one (rust-rdkafka's own `Display` of
    /// `ClientConfig` prints the value whatever it is).
    pub fn error(&self, e: &rdkafka::error::KafkaError) -> String {
        use rdkafka::error::KafkaError;
        match e {
            KafkaError::ClientConfig(_, desc, key, value) => {
                let value = if super::is_secret_property(key) && !value.is_empty() {
                    "***"
                } else {
                    value.as_str()
                };
                let text = format!("Client config error: {desc} (property {key}, value {value:?})");
                self.redact(&text).into_owned()
            }
            other => self.redact(&other.to_string()).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_and_their_pieces_are_scrubbed_and_nothing_else() {
        let r = Redactor::new([
            ("sasl.password", "hunter2-pw"),
            (
                "sasl.oauthbearer.config",
                "principal=admin extension_x=TOKENVALUE",
            ),
            ("client.id", "visible-client"),
            ("ssl.key.password", ""),
        ]);
        assert_eq!(
            r.redact("Unrecognized sasl.oauthbearer.config beginning at: extension_x=TOKENVALUE"),
            "Unrecognized sasl.oauthbearer.config beginning at: ***"
        );
        assert_eq!(r.redact("bad hunter2-pw here"), "bad *** here");
        assert_eq!(
            r.redact("client visible-client; the whole principal=admin extension_x=TOKENVALUE"),
            "client visible-client; the whole ***"
        );
        assert!(matches!(
            r.redact("nothing secret"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_refused_secret_property_is_named_without_its_value() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaConfRes;
        let r = Redactor::new([("x.sasl.password", "hunter2-pw")]);
        let e = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
            "No such configuration property: \"x.sasl.password\"".into(),
            "x.sasl.password".into(),
            "hunter2-pw".into(),
        );
        assert!(
            e.to_string().contains("hunter2-pw"),
            "rust-rdkafka prints it"
        );
        let text = r.error(&e);
        assert_eq!(
            text,
            "Client config error: No such configuration property: \"x.sasl.password\" (property x.sasl.password, value \"***\")"
        );
        // Not a secret: its value helps.
        let e = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value".into(),
            "acks".into(),
            "some".into(),
        );
        assert!(
            Redactor::default()
                .error(&e)
                .ends_with(r#"(property acks, value "some")"#)
        );
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "\"***\" \"***\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
