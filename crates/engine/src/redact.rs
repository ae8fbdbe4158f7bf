//! Redaction of sensitive parameters, before anything is stored.
//!
//! Any object key whose name, ignoring case, `_` and `-`, is in the list (`newPassword`,
//! `password`, `token`, `apiKey`, `authorization`, ...) has its value replaced by
//! [`REDACTED`], at any depth of `params`, `payload`, `previous`, `next` and `extra`. A string
//! that holds JSON (as `requestPayload` often does) is searched too; if something in it is
//! redacted, it is written back as compact JSON.
//!
//! A rule with a dot is a path from the event's root instead (`params.user.answer`,
//! `actor.user_email`); through arrays it applies to every element. Fields can also be
//! pseudonymized rather than removed: [`Redactor::with_hmac`] replaces them with a keyed
//! HMAC-SHA256 (`hmac-sha256:<hex>`), equal for equal inputs, so analysts can join on them
//! without reading them.

use std::collections::HashMap;
use std::sync::Arc;

use auditsync_core::canonical_json::{self, CanonicalJson, Seen};
use auditsync_core::Event;
use serde_json::value::RawValue;
use serde_json::Value;

/// What a redacted value becomes.
pub const REDACTED: &str = "[REDACTED]";

/// Names redacted by default (compared ignoring case, `_` and `-`).
pub const DEFAULT_FIELDS: &[&str] = &[
    "password",
    "newPassword",
    "oldPassword",
    "currentPassword",
    "confirmPassword",
    "passwd",
    "secret",
    "clientSecret",
    "token",
    "accessToken",
    "refreshToken",
    "idToken",
    "sessionToken",
    "apiKey",
    "apiToken",
    "authorization",
    "cookie",
    "credential",
    "credentials",
    "privateKey",
    "secretAccessKey",
    "sasToken",
];

/// What happens to a matched value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Redact,
    Hmac,
}

/// Where a rule applies: a name anywhere, or one path from the root.
#[derive(Debug, Clone, Default)]
struct Rules {
    names: HashMap<String, Action>,
    /// Bit `n` is set when a name is `n` bytes long (63 for any longer): most keys are
    /// told apart by their length alone, without hashing.
    name_lengths: u64,
    paths: HashMap<Vec<String>, Action>,
}

impl Rules {
    fn add(&mut self, rule: &str, action: Action) {
        let slot = if rule.contains('.') {
            let path = rule.split('.').map(str::to_string).collect();
            self.paths.entry(path).or_insert(action)
        } else {
            let name = normalize(rule);
            self.name_lengths |= length_bit(name.len());
            self.names.entry(name).or_insert(action)
        };
        // Redaction wins over pseudonymization when a field is named for both.
        if action == Action::Redact {
            *slot = Action::Redact;
        }
    }

    fn lookup(&self, path: &[String], key: &str) -> Option<Action> {
        if !self.paths.is_empty() {
            let mut full = path.to_vec();
            full.push(key.to_string());
            if let Some(action) = self.paths.get(&full) {
                return Some(*action);
            }
        }
        self.lookup_name(key)
    }

    fn lookup_name(&self, key: &str) -> Option<Action> {
        let mut buf = [0u8; NORMALIZED_ON_STACK];
        match normalize_ascii(key, &mut buf) {
            Some(short) if self.name_lengths & length_bit(short.len()) == 0 => None,
            Some(short) => self.names.get(short).copied(),
            None => self.names.get(&normalize(key)).copied(),
        }
    }
}

/// Why a redaction setting cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedactError {
    /// The HMAC key is too short to resist guessing.
    #[error("the HMAC key is {0} bytes; at least 16 are needed")]
    ShortKey(usize),
    /// A path does not start at a field that can hold data.
    #[error("`{0}`: a path starts with params, payload, previous, next, extra or actor")]
    BadPath(String),
}

/// Replaces the values of sensitive fields, or their keyed hashes.
#[derive(Clone)]
pub struct Redactor {
    rules: Rules,
    hmac_key: Option<Arc<Vec<u8>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: it is never printed.
        f.debug_struct("Redactor")
            .field("names", &self.rules.names.len())
            .field("paths", &self.rules.paths.len())
            .field("hmac", &self.hmac_key.is_some())
            .finish()
    }
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The bit of [`Rules::name_lengths`] for a name of `len` bytes.
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// Keys up to this long (ASCII) are normalized without allocating: the common case, looked
/// up once for every key of every event.
const NORMALIZED_ON_STACK: usize = 64;

/// [`normalize`] into `buf` for a short ASCII `name`; `None` for any other.
fn normalize_ascii<'b>(name: &str, buf: &'b mut [u8; NORMALIZED_ON_STACK]) -> Option<&'b str> {
    if name.len() > buf.len() || !name.is_ascii() {
        return None;
    }
    let mut len = 0;
    for b in name.bytes().filter(|b| *b != b'_' && *b != b'-') {
        buf[len] = b.to_ascii_lowercase();
        len += 1;
    }
    std::str::from_utf8(&buf[..len]).ok()
}

/// Whether JSON text has a `{` outside its strings, that is an object with keys to match.
/// A list of GraphQL field names such as `["teams{_id name}"]` has braces only inside
/// strings: it is not worth parsing for every event.
fn holds_an_object(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    // Only quotes, backslashes and braces matter: jump between them.
    while let Some(skip) = bytes
        .get(i..)
        .and_then(|rest| memchr::memchr3(b'"', b'\\', b'{', rest))
    {
        i += skip;
        match bytes[i] {
            // An escape inside a string: the byte after it cannot end the string.
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'{' if !in_string => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// [`holds_an_object`] of the text a JSON string stands for, given its raw text between the
/// quotes, whose escapes are among `\"`, `\\`, `\n`, `\r` and `\t` (as in
/// [`CanonicalJson`]): an escaped quote is a quote of the inner text, an escaped backslash a
/// backslash of it.
fn escaped_holds_an_object(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    // The inner text has a brace only where the raw text has one.
    if memchr::memchr(b'{', bytes).is_none() {
        return false;
    }
    let mut in_string = false;
    let mut i = 0;
    // Byte by byte: a payload such as `[\"_id\",\"name\"]` has an escape every few
    // bytes, too close together for a search to pay for its calls.
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => {
                match bytes.get(i + 1) {
                    Some(b'"') => in_string = !in_string,
                    // An inner backslash inside an inner string: the inner byte after it (one
                    // raw byte, or an escape of two) cannot end that string.
                    Some(b'\\') if in_string => {
                        i += if bytes.get(i + 2) == Some(&b'\\') {
                            2
                        } else {
                            1
                        }
                    }
                    _ => {}
                }
                i += 2;
            }
            b'{' if !in_string => return true,
            _ => i += 1,
        }
    }
    false
}

const ROOTS: &[&str] = &["params", "payload", "previous", "next", "extra", "actor"];

fn check_path(rule: &str) -> Result<(), RedactError> {
    match rule.split_once('.') {
        Some((root, rest)) if ROOTS.contains(&root) && !rest.is_empty() => Ok(()),
        Some(_) => Err(RedactError::BadPath(rule.to_string())),
        None => Ok(()),
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(DEFAULT_FIELDS.iter().copied())
    }
}

impl Redactor {
    /// A redactor for exactly these names (and dotted paths).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut rules = Rules::default();
        for name in names {
            rules.add(name, Action::Redact);
        }
        Self {
            rules,
            hmac_key: None,
        }
    }

    /// The default names plus `extra` (names, or paths such as `params.user.answer`).
    pub fn with_extra<'a>(extra: impl IntoIterator<Item = &'a str>) -> Self {
        Self::new(DEFAULT_FIELDS.iter().copied().chain(extra))
    }

    /// Checks the configured rules: every path starts at a field that can hold data.
    pub fn check_rules<'a>(rules: impl IntoIterator<Item = &'a str>) -> Result<(), RedactError> {
        rules.into_iter().try_for_each(check_path)
    }

    /// Also replaces `fields` (names or paths; `actor.user_email` for the actor's email)
    /// by `hmac-sha256:<hex>` of their value under `key`.
    pub fn with_hmac<'a>(
        mut self,
        key: Vec<u8>,
        fields: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, RedactError> {
        if key.len() < 16 {
            return Err(RedactError::ShortKey(key.len()));
        }
        for field in fields {
            check_path(field)?;
            self.rules.add(field, Action::Hmac);
        }
        self.hmac_key = Some(Arc::new(key));
        Ok(self)
    }

    /// The payload's JSON text as it may be stored unchanged: in serde_json's own form
    /// ([`canonical_json::check`]) and holding nothing this redactor would replace (no path
    /// rule into the payload, no key it names, no string holding a JSON object). `None`
    /// sends the caller to read the payload as a `Value` and [`Redactor::redact`] it.
    pub fn unchanged_payload<'t>(&self, text: &'t RawValue) -> Option<CanonicalJson<'t>> {
        self.unchanged("payload", text)
    }

    /// The parameters' JSON text as they may be stored unchanged: an object, and otherwise
    /// as [`Redactor::unchanged_payload`] says of a payload (with path rules into `params`).
    /// `None` sends the caller to read them into the event and [`Redactor::redact`] it.
    pub fn unchanged_params<'t>(&self, text: &'t RawValue) -> Option<CanonicalJson<'t>> {
        if !text.get().starts_with('{') {
            return None;
        }
        self.unchanged("params", text)
    }

    /// `text`, the value of the event's field `root`, if redaction would leave it as it is
    /// and it is in serde_json's form.
    fn unchanged<'t>(&self, root: &str, text: &'t RawValue) -> Option<CanonicalJson<'t>> {
        if self.rules.paths.keys().any(|path| path[0] == root) {
            return None;
        }
        canonical_json::check(text, &mut |seen| match seen {
            // An escaped key is compared only once unescaped: left to the `Value` path.
            Seen::Key(key) => !key.contains('\\') && self.rules.lookup_name(key).is_none(),
            Seen::String(text) => !escaped_holds_an_object(text),
        })
    }

    fn hmac(&self, text: &str) -> String {
        use hmac::{Hmac, Mac};
        let key = self.hmac_key.as_deref().map_or(&[][..], Vec::as_slice);
        // HMAC takes keys of any length; `with_hmac` has checked this one.
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
            .expect("HMAC accepts keys of any length");
        mac.update(text.as_bytes());
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }

    fn apply(&self, action: Action, value: &mut Value) -> usize {
        if value.is_null() {
            return 0;
        }
        let replacement = match action {
            Action::Redact => REDACTED.to_string(),
            Action::Hmac => match &*value {
                Value::String(s) => self.hmac(s),
                other => self.hmac(&other.to_string()),
            },
        };
        *value = Value::String(replacement);
        1
    }

    /// Redacts the event in place; returns how many values were replaced.
    pub fn redact(&self, event: &mut Event) -> usize {
        let mut count = 0;
        let mut path = vec!["params".to_string()];
        for (key, value) in event.params.iter_mut() {
            count += self.field(&mut path, key, value);
        }
        path[0] = "extra".into();
        for (key, value) in event.extra.iter_mut() {
            count += self.field(&mut path, key, value);
        }
        for (root, value) in [
            ("payload", &mut event.payload),
            ("previous", &mut event.previous),
            ("next", &mut event.next),
        ] {
            if let Some(value) = value {
                path[0] = root.into();
                count += self.value(&mut path, value);
            }
        }
        if self.rules.paths.is_empty() {
            return count;
        }
        path[0] = "actor".into();
        let actor = &mut event.actor;
        for (key, slot) in [
            ("user_id", &mut actor.user_id),
            ("user_email", &mut actor.user_email),
            ("user_name", &mut actor.user_name),
            ("token_id", &mut actor.token_id),
            ("token_name", &mut actor.token_name),
            ("ip", &mut actor.ip),
            ("user_agent", &mut actor.user_agent),
        ] {
            let full = [path[0].clone(), key.to_string()];
            // Actor fields are matched by path only: a name rule such as `token` is about
            // parameters, and must not erase who acted.
            if let (Some(action), Some(text)) = (self.rules.paths.get(&full[..]), slot.as_mut()) {
                let mut value = Value::String(std::mem::take(text));
                count += self.apply(*action, &mut value);
                *slot = value.as_str().map(str::to_string);
            }
        }
        count
    }

    fn field(&self, path: &mut Vec<String>, key: &str, value: &mut Value) -> usize {
        if let Some(action) = self.rules.lookup(path, key) {
            return self.apply(action, value);
        }
        if self.rules.paths.is_empty() {
            // Only path rules need to know where a value is.
            return self.value(path, value);
        }
        path.push(key.to_string());
        let count = self.value(path, value);
        path.pop();
        count
    }

    fn value(&self, path: &mut Vec<String>, value: &mut Value) -> usize {
        match value {
            Value::Object(map) => map.iter_mut().map(|(k, v)| self.field(path, k, v)).sum(),
            Value::Array(items) => items.iter_mut().map(|v| self.value(path, v)).sum(),
            Value::String(text) => {
                let looks_like_json =
                    matches!(text.trim_start().as_bytes().first(), Some(b'{' | b'['));
                // Only an object has keys to match: JSON with no object outside its strings
                // (a list of field names, as `requestPayload` often is) cannot hold anything
                // to redact, and is not parsed on the ingest path for nothing.
                if !looks_like_json || !holds_an_object(text) {
                    return 0;
                }
                let Ok(mut inner) = serde_json::from_str::<Value>(text) else {
                    return 0;
                };
                let count = self.value(path, &mut inner);
                if count > 0 {
                    *text = inner.to_string();
                }
                count
            }
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_objects_only_outside_strings() {
        for (text, object) in [
            (r#"["_id","teams{_id name}"]"#, false),
            (r#"["a\"{"]"#, false),
            (r#"["a\\",{"token":"t"}]"#, true),
            (r#"[1,{"k":2}]"#, true),
            (r#"{"k":1}"#, true),
        ] {
            assert_eq!(holds_an_object(text), object, "{text}");
        }
        let mut event = Event {
            action: "a".into(),
            payload: Some(json!(r#"["teams{_id}",{"token":"t"}]"#)),
            ..Event::default()
        };
        assert_eq!(Redactor::default().redact(&mut event), 1);
    }

    #[test]
    fn finds_objects_in_escaped_strings_as_in_the_strings_they_stand_for() {
        let pieces = ["{", "}", "[", "\"", "\\", "a", "\n", " ", "é", ","];
        // Every string of up to four pieces: 10^4 texts, all quote and backslash placements.
        let mut texts = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = texts
                .iter()
                .flat_map(|t| pieces.iter().map(move |p| format!("{t}{p}")))
                .collect();
            texts.extend(longer);
        }
        for text in &texts {
            let quoted = serde_json::to_string(text).unwrap();
            let raw = &quoted[1..quoted.len() - 1];
            assert_eq!(
                escaped_holds_an_object(raw),
                holds_an_object(text),
                "{text:?} as {raw}"
            );
        }
    }

    #[test]
    fn payload_text_is_kept_only_when_nothing_in_it_would_change() {
        let redactor = Redactor::default();
        let kept = |text: &str, redactor: &Redactor| {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            redactor.unchanged_payload(&raw).is_some()
        };
        for text in [
            r#""[\"_id\",\"teams{_id name}\"]""#,
            r#"{"query":"q","variables":{"id":1}}"#,
            r#"["a",{"tokenName":"ci"}]"#,
        ] {
            assert!(kept(text, &redactor), "{text}");
        }
        for text in [
            r#"{"variables":{"newPassword":"x"}}"#,
            r#"[{"API_KEY":"k"}]"#,
            r#""{\"token\":\"t\"}""#,
            r#"{"pass\u0077ord":"x"}"#,
            r#"{"a": 1}"#,
        ] {
            assert!(!kept(text, &redactor), "{text}");
        }
        let by_path = Redactor::with_extra(["payload.query"]);
        assert!(!kept(r#"{"q":1}"#, &by_path));
        let elsewhere = Redactor::with_extra(["params.query", "ssn"]);
        assert!(kept(r#"{"q":1}"#, &elsewhere));
        assert!(!kept(r#"{"SSN":1}"#, &elsewhere));
    }

    #[test]
    fn params_text_is_kept_only_when_nothing_in_it_would_change() {
        let kept = |text: &str, redactor: &Redactor| {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            redactor.unchanged_params(&raw).is_some()
        };
        let redactor = Redactor::default();
        for text in [
            r#"{"email":"\"u@x.io\"","n":1,"tags":["a","b,c"]}"#,
            r#"{"nested":{"tokenName":"ci"},"q":"teams"}"#,
            "{}",
        ] {
            assert!(kept(text, &redactor), "{text}");
        }
        for text in [
            r#"{"newPassword":"x"}"#,
            r#"{"nested":[{"API_KEY":"k"}]}"#,
            r#"{"variables":"{\"token\":\"t\"}"}"#,
            // A brace in a string may be JSON: read it to be sure.
            r#"{"q":"teams{_id}"}"#,
            r#"{"pass\u0077ord":"x"}"#,
            r#"{"a": 1}"#,
            r#"{"a":1,"a":2}"#,
            r#"["not","an","object"]"#,
            r#""text""#,
        ] {
            assert!(!kept(text, &redactor), "{text}");
        }
        let by_path = Redactor::with_extra(["params.user.answer"]);
        assert!(!kept(r#"{"q":1}"#, &by_path));
        let elsewhere = Redactor::with_extra(["payload.query", "ssn"]);
        assert!(kept(r#"{"q":1}"#, &elsewhere));
        assert!(!kept(r#"{"SSN":1}"#, &elsewhere));
        let pseudonymized = Redactor::default()
            .with_hmac(vec![7; 16], ["customerId"])
            .unwrap();
        assert!(!kept(r#"{"customer_id":"c1"}"#, &pseudonymized));
    }

    #[test]
    fn redacts_sensitive_names_at_any_depth_and_inside_json_strings() {
        let mut event = Event {
            action: "setPassword".into(),
            params: serde_json::from_value(json!({
                "user": "ada", "newPassword": "hunter2", "NEW_PASSWORD": "x",
                "nested": {"api-key": "k", "list": [{"token": "t"}], "tokenName": "ci"}
            }))
            .unwrap(),
            payload: Some(json!(
                "{\"variables\":{\"newPassword\":\"hunter2\"},\"query\":\"q\"}"
            )),
            previous: Some(json!({"passwordPolicy": "strict"})),
            ..Event::default()
        };
        let redactor = Redactor::with_extra(["ssn"]);
        assert_eq!(redactor.redact(&mut event), 5);
        let text = serde_json::to_string(&event).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("\"k\"") && !text.contains("\"t\""),
            "{text}"
        );
        assert_eq!(event.params["user"], json!("ada"));
        assert_eq!(
            event.params["nested"]["tokenName"],
            json!("ci"),
            "only exact names"
        );
        assert_eq!(event.previous, Some(json!({"passwordPolicy": "strict"})));
        assert_eq!(
            event.payload,
            Some(json!(
                "{\"variables\":{\"newPassword\":\"[REDACTED]\"},\"query\":\"q\"}"
            ))
        );
        // a string that is not JSON, or has nothing to redact, is left byte for byte
        let mut plain = Event {
            payload: Some(json!("[\"_id\", \"name\"]")),
            ..Event::default()
        };
        assert_eq!(redactor.redact(&mut plain), 0);
        assert_eq!(plain.payload, Some(json!("[\"_id\", \"name\"]")));
    }

    #[test]
    fn paths_match_one_place_only() {
        let mut event = Event {
            params: serde_json::from_value(json!({
                "user": {"answer": "blue", "name": "ada"}, "answer": "kept",
                "rows": [{"answer": "a"}, {"answer": "b"}]
            }))
            .unwrap(),
            ..Event::default()
        };
        let redactor = Redactor::with_extra(["params.user.answer", "params.rows.answer"]);
        assert_eq!(redactor.redact(&mut event), 3);
        assert_eq!(event.params["answer"], json!("kept"));
        assert_eq!(event.params["user"]["name"], json!("ada"));
        assert_eq!(event.params["rows"][1]["answer"], json!(REDACTED));
        assert!(Redactor::check_rules(["params.x", "token"]).is_ok());
        let err = Redactor::check_rules(["body.x"]).unwrap_err().to_string();
        assert!(err.contains("body.x"), "{err}");
    }

    #[test]
    fn hmac_pseudonymizes_equal_values_equally_and_hides_them() {
        let key = b"0123456789abcdef-test-key".to_vec();
        let redactor = Redactor::default()
            .with_hmac(key.clone(), ["actor.user_email", "email"])
            .unwrap();
        let event = |email: &str| {
            let mut e = Event {
                params: serde_json::from_value(json!({"email": email, "newPassword": "pw"}))
                    .unwrap(),
                ..Event::default()
            };
            e.actor.user_email = Some(email.into());
            e
        };
        let (mut a, mut b, mut c) = (event("ada@x.io"), event("ada@x.io"), event("bob@x.io"));
        for e in [&mut a, &mut b, &mut c] {
            assert_eq!(redactor.redact(e), 3);
        }
        let hashed = a.actor.user_email.clone().unwrap();
        assert!(
            hashed.starts_with("hmac-sha256:") && hashed.len() == 12 + 64,
            "{hashed}"
        );
        assert_eq!(a.params["email"], json!(hashed), "same value, same hash");
        assert_eq!(b.actor.user_email, a.actor.user_email);
        assert_ne!(c.actor.user_email, a.actor.user_email);
        assert_eq!(a.params["newPassword"], json!(REDACTED));
        assert!(!format!("{redactor:?}").contains("0123456789"));
        let other = Redactor::default()
            .with_hmac(b"another-key-of-16+bytes".to_vec(), ["email"])
            .unwrap();
        let mut d = event("ada@x.io");
        other.redact(&mut d);
        assert_ne!(d.params["email"], a.params["email"], "the key matters");
        assert!(Redactor::default()
            .with_hmac(b"short".to_vec(), ["email"])
            .is_err());
    }
}
