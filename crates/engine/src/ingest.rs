//! Parses and validates producer records, then appends them to the store all or nothing.

use std::fmt;
use std::sync::Arc;

use auditsync_core::event_json::KeptTexts;
use auditsync_core::{Event, Schema, ValidationError};
use auditsync_store::{Appended, EncodedEvent, Store, StoreError};

use crate::redact::Redactor;
use auditsync_core::strict_json;
use serde_json::{Map, Value};

/// Where in the input a record was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of NDJSON input.
    Line(usize),
    /// 0-based index in a JSON array.
    Index(usize),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Index(n) => write!(f, "index {n}"),
        }
    }
}

/// Why an ingest was refused. Nothing of a refused input is stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// `enableUserEvents` is false.
    #[error("user events are disabled (enableUserEvents is false): nothing was recorded")]
    Disabled,
    /// A record is not JSON, or not UTF-8.
    #[error("{at}: malformed JSON: {message}")]
    Malformed {
        /// Where.
        at: Location,
        /// The parser's message.
        message: String,
    },
    /// A record is larger than allowed.
    #[error("{at}: event is {size} bytes, over the limit of {max} bytes")]
    TooLarge {
        /// Where.
        at: Location,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A record does not fit the schema.
    #[error("{at}: {error}")]
    Invalid {
        /// Where.
        at: Location,
        /// The field and the problem.
        error: ValidationError,
    },
    /// The input held no record.
    #[error("the input holds no event")]
    Empty,
    /// The input holds more records than one request may.
    #[error("{count} events in one request, over the limit of {max}")]
    TooMany {
        /// How many it held (or at least).
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The store failed; nothing was committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The input could not be read to its end; nothing was committed.
    #[error("cannot read the input: {0}")]
    Read(#[source] std::io::Error),
}

/// Default per-event size limit: 1 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// Default limit of events in one request (unlimited for the CLI's `ingest`).
pub const DEFAULT_MAX_EVENTS: usize = usize::MAX;

impl IngestError {
    /// A short, stable name of the kind of rejection (for metrics and API error codes).
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Disabled => "disabled",
            IngestError::Malformed { .. } => "malformed",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::Invalid { .. } => "invalid",
            IngestError::Empty => "empty",
            IngestError::TooMany { .. } => "too_many_events",
            IngestError::Store(_) => "store_error",
            IngestError::Read(_) => "read_error",
        }
    }
}

/// The last steps of every road into the store (HTTP, CLI `ingest`, the `Recorder`,
/// auditsync's own events), after the schema's checks where a schema applies: refuse an
/// event without an action, give one without an id a UUIDv7, and redact it.
pub fn admit(at: Location, event: Event, redactor: &Redactor) -> Result<Event, IngestError> {
    admit_scanned(at, event, redactor, Scanned::No)
}

/// Whether an event's strings were already found free of control characters (its whole
/// text was, by [`strict_json::may_hold_forbidden_char`]).
#[derive(Debug, Clone, Copy)]
enum Scanned {
    Yes,
    No,
}

fn admit_scanned(
    at: Location,
    mut event: Event,
    redactor: &Redactor,
    scanned: Scanned,
) -> Result<Event, IngestError> {
    if event.action.trim().is_empty() {
        return Err(IngestError::Invalid {
            at,
            error: ValidationError::new("action", "must not be empty"),
        });
    }
    // The redactor writes only `[REDACTED]`, hashes and re-encoded JSON text, none of
    // which holds a control character.
    let forbidden = match scanned {
        Scanned::Yes => None,
        Scanned::No => forbidden_char_in(&event),
    };
    if let Some((field, c)) = forbidden {
        return Err(IngestError::Invalid {
            at,
            error: ValidationError::new(
                field,
                format!("contains the control character U+{:04X}", c as u32),
            ),
        });
    }
    if event.id.is_empty() {
        // Written straight into the string, without `Display`'s formatting machinery.
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        event.id = uuid::Uuid::now_v7()
            .hyphenated()
            .encode_lower(&mut text)
            .to_string();
    }
    redactor.redact(&mut event);
    Ok(event)
}

/// The first string of `event` (a field, a key or a value inside its maps) holding a control
/// character, as JSON text read by [`strict_json`] may not; events built in code (the
/// `Recorder`, auditsync's own) are held to the same rule. The path is built only on a hit.
fn forbidden_char_in(event: &Event) -> Option<(String, char)> {
    /// The path below `v` (`.note.lines[1]`, empty for `v` itself) and the character.
    fn in_value(v: &Value) -> Option<(String, char)> {
        match v {
            Value::String(s) => strict_json::forbidden_char(s).map(|c| (String::new(), c)),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| in_value(v).map(|(below, c)| (format!("[{i}]{below}"), c))),
            Value::Object(map) => in_map(map),
            _ => None,
        }
    }
    fn in_map(map: &Map<String, Value>) -> Option<(String, char)> {
        map.iter().find_map(|(k, v)| {
            strict_json::forbidden_char(k)
                .map(|c| (String::new(), c))
                .or_else(|| in_value(v))
                .map(|(below, c)| (format!(".{k}{below}"), c))
        })
    }
    let under = |name: &str, found: Option<(String, char)>| {
        found.map(|(below, c)| (format!("{name}{below}"), c))
    };
    let a = &event.actor;
    let fields = [
        ("id", Some(&event.id)),
        ("action", Some(&event.action)),
        ("organization", event.organization.as_ref()),
        ("actor.user_id", a.user_id.as_ref()),
        ("actor.user_email", a.user_email.as_ref()),
        ("actor.user_name", a.user_name.as_ref()),
        ("actor.token_id", a.token_id.as_ref()),
        ("actor.token_name", a.token_name.as_ref()),
        ("actor.ip", a.ip.as_ref()),
        ("actor.user_agent", a.user_agent.as_ref()),
        ("entity.kind", event.entity.as_ref().map(|e| &e.kind)),
        (
            "entity.id",
            event.entity.as_ref().and_then(|e| e.id.as_ref()),
        ),
    ];
    fields
        .into_iter()
        .find_map(|(name, s)| {
            s.and_then(|s| strict_json::forbidden_char(s))
                .map(|c| (name.to_string(), c))
        })
        .or_else(|| under("params", in_map(&event.params)))
        .or_else(|| under("extra", in_map(&event.extra)))
        .or_else(|| {
            [
                ("payload", &event.payload),
                ("previous", &event.previous),
                ("next", &event.next),
            ]
            .into_iter()
            .find_map(|(name, v)| under(name, v.as_ref().and_then(in_value)))
        })
}

/// What to do with an event that has the right types but breaks the schema's rules (an
/// unknown action, a missing required parameter, no actor where one is required).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationMode {
    /// Refuse the whole input, naming the field (the default).
    #[default]
    Strict,
    /// Store the event and report it as flagged. A value of the wrong type is still refused:
    /// it cannot be written into a typed column.
    Permissive,
}

/// An event stored despite breaking the schema's rules (permissive mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flagged {
    /// Where it was in the input.
    pub at: Location,
    /// The rule it breaks.
    pub error: ValidationError,
}

/// Validated events ready to store, and those among them that break the schema's rules.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// Every event of the input, in order, with ids, redacted, encoded for the store.
    pub events: Vec<EncodedEvent>,
    /// Events kept in permissive mode although they break a rule (always empty in strict
    /// mode).
    pub flagged: Vec<Flagged>,
}

/// Validates records against one schema and appends them to the store.
#[derive(Debug, Clone)]
pub struct Ingestor {
    store: Arc<dyn Store>,
    schema: Arc<dyn Schema>,
    mode: ValidationMode,
    enabled: bool,
    max_event_bytes: usize,
    max_events: usize,
    redactor: Redactor,
}

impl Ingestor {
    /// An ingestor for `schema`; when `enabled` is false every ingest is refused.
    pub fn new(store: Arc<dyn Store>, schema: Arc<dyn Schema>, enabled: bool) -> Self {
        Self {
            store,
            schema,
            mode: ValidationMode::Strict,
            enabled,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            max_events: DEFAULT_MAX_EVENTS,
            redactor: Redactor::default(),
        }
    }

    /// Sets the redactor applied to every event before it is stored.
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Sets what happens to events that break the schema's rules.
    pub fn with_validation(mut self, mode: ValidationMode) -> Self {
        self.mode = mode;
        self
    }

    /// Checks the schema's rules, gives the event an id if it has none and redacts it: the
    /// last step before storing.
    fn finish(
        &self,
        at: Location,
        event: Event,
        scanned: Scanned,
        kept: KeptTexts<'_>,
        parsed: &mut Parsed,
    ) -> Result<(), IngestError> {
        let checked = match kept.params {
            Some(params) => self.schema.check_with_params_text(&event, params),
            None => self.schema.check(&event),
        };
        if let Err(error) = checked {
            match self.mode {
                ValidationMode::Strict => return Err(IngestError::Invalid { at, error }),
                ValidationMode::Permissive => parsed.flagged.push(Flagged { at, error }),
            }
        }
        let event = admit_scanned(at, event, &self.redactor, scanned)?;
        parsed.events.push(EncodedEvent::with_texts(event, kept));
        Ok(())
    }

    /// The schema's fast path for one line cleared of control characters: false when it
    /// leaves the line to the strict reader (which then names what is wrong, if anything).
    fn finish_text(
        &self,
        at: Location,
        text: &str,
        parsed: &mut Parsed,
    ) -> Result<bool, IngestError> {
        let Some(mut read) = self.schema.parse_text(text) else {
            return Ok(false);
        };
        // A payload or parameters already in stored form, with nothing to redact, are
        // stored as they came; what is not is read into the event, to be redacted.
        let kept = KeptTexts {
            payload: read
                .payload_text
                .and_then(|payload| self.redactor.unchanged_payload(payload)),
            params: read
                .params_text
                .and_then(|params| self.redactor.unchanged_params(params)),
        };
        if kept.payload.is_some() {
            read.payload_text = None;
        }
        if kept.params.is_some() {
            read.params_text = None;
        }
        if read.read_payload().is_err() || read.read_params().is_err() {
            return Ok(false);
        }
        self.finish(at, read.event, Scanned::Yes, kept, parsed)?;
        Ok(true)
    }

    /// Sets the most events one input may hold.
    pub fn with_max_events(mut self, max: usize) -> Self {
        self.max_events = max;
        self
    }

    /// Whether ingest is enabled (`enableUserEvents`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Parses a JSON body: one object, or an array of objects (an empty array is refused).
    pub fn parse_json(&self, input: &[u8]) -> Result<Parsed, IngestError> {
        use serde_json::value::RawValue;
        if !self.enabled {
            return Err(IngestError::Disabled);
        }
        let malformed = |e: serde_json::Error| IngestError::Malformed {
            at: Location::Line(e.line()),
            message: e.to_string(),
        };
        let text = std::str::from_utf8(input).map_err(|e| IngestError::Malformed {
            at: Location::Line(
                1 + input[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count(),
            ),
            message: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        })?;
        let first = text.trim_start().as_bytes().first().copied();
        let raws: Vec<&RawValue> = match first {
            Some(b'[') => serde_json::from_str(text).map_err(malformed)?,
            Some(b'{') => vec![serde_json::from_str(text).map_err(malformed)?],
            None => return Err(IngestError::Empty),
            Some(_) => {
                return Err(IngestError::Malformed {
                    at: Location::Line(1),
                    message: "expected a JSON object or an array of objects".into(),
                })
            }
        };
        if raws.is_empty() {
            return Err(IngestError::Empty);
        }
        if raws.len() > self.max_events {
            return Err(IngestError::TooMany {
                count: raws.len(),
                max: self.max_events,
            });
        }
        let mut parsed = Parsed::default();
        for (i, raw) in raws.into_iter().enumerate() {
            let at = Location::Index(i);
            let size = raw.get().len();
            if size > self.max_event_bytes {
                return Err(IngestError::TooLarge {
                    at,
                    size,
                    max: self.max_event_bytes,
                });
            }
            self.read_event(at, raw.get(), &mut parsed)?;
        }
        Ok(parsed)
    }

    /// Sets the per-event size limit in bytes.
    pub fn with_max_event_bytes(mut self, max: usize) -> Self {
        self.max_event_bytes = max;
        self
    }

    /// The schema records are validated against.
    pub fn schema(&self) -> &Arc<dyn Schema> {
        &self.schema
    }

    /// Parses NDJSON (blank lines are skipped) into validated events with ids.
    pub fn parse_ndjson(&self, input: &[u8]) -> Result<Parsed, IngestError> {
        let mut parsed = Parsed::default();
        self.parse_ndjson_lines(1, input, &mut parsed)?;
        if parsed.events.is_empty() {
            return Err(IngestError::Empty);
        }
        Ok(parsed)
    }

    /// Parses NDJSON lines whose first is line `first_line` of the input into `parsed`
    /// (one chunk of a streamed file; see [`crate::bulk`]).
    pub fn parse_ndjson_lines(
        &self,
        first_line: usize,
        input: &[u8],
        parsed: &mut Parsed,
    ) -> Result<(), IngestError> {
        if !self.enabled {
            return Err(IngestError::Disabled);
        }
        // Room for the events of the input up front (they are a few hundred bytes each).
        parsed.events.reserve(input.len() / 512);
        let mut start = 0;
        let line_ends = memchr::memchr_iter(b'\n', input).chain(std::iter::once(input.len()));
        for (i, end) in line_ends.enumerate() {
            let line = &input[start..end];
            start = end + 1;
            let at = Location::Line(first_line + i);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if line.len() > self.max_event_bytes {
                return Err(IngestError::TooLarge {
                    at,
                    size: line.len(),
                    max: self.max_event_bytes,
                });
            }
            let text = std::str::from_utf8(line).map_err(|e| IngestError::Malformed {
                at,
                message: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            })?;
            if parsed.events.len() == self.max_events {
                return Err(IngestError::TooMany {
                    count: parsed.events.len() + 1,
                    max: self.max_events,
                });
            }
            self.read_event(at, text, parsed)?;
        }
        Ok(())
    }

    /// Reads one event's JSON text (an NDJSON line, or one event of a JSON body) into
    /// `parsed`: by the schema's typed reader when it may be used, else by the strict reader.
    fn read_event(&self, at: Location, text: &str, parsed: &mut Parsed) -> Result<(), IngestError> {
        // The typed reader does not look inside strings: text that may hold a control
        // character takes the strict reader, which names the field.
        if !strict_json::may_hold_forbidden_char(text.as_bytes())
            && self.finish_text(at, text, parsed)?
        {
            return Ok(());
        }
        let value = strict_json::from_str(text).map_err(|e| IngestError::Malformed {
            at,
            message: e.to_string(),
        })?;
        self.prepare(at, value, parsed)
    }

    /// Validates one record, gives it an id (UUIDv7) if the producer gave none, redacts its
    /// sensitive fields, and adds it to `parsed`.
    pub fn prepare(
        &self,
        at: Location,
        record: Value,
        parsed: &mut Parsed,
    ) -> Result<(), IngestError> {
        if !self.enabled {
            return Err(IngestError::Disabled);
        }
        let event = self
            .schema
            .parse(record)
            .map_err(|error| IngestError::Invalid { at, error })?;
        self.finish(at, event, Scanned::No, KeptTexts::default(), parsed)
    }

    /// The store events are appended to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The most bytes one event (one NDJSON line) may have.
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Appends validated events in one transaction; returns once they are durable.
    pub async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>, IngestError> {
        if !self.enabled {
            return Err(IngestError::Disabled);
        }
        Ok(self.store.append_events(events).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditsync_catalog::UeventsSchema;
    use auditsync_store_sqlite::SqliteStore;

    fn ingestor(dir: &tempfile::TempDir) -> Ingestor {
        let store = SqliteStore::open(dir.path().join("audit.db")).unwrap();
        Ingestor::new(Arc::new(store), Arc::new(UeventsSchema::new()), true)
    }

    /// One uevents line with an id and these `requestParams` and `requestPayload` texts.
    fn line_with(id: &str, params: &str, payload: &str) -> String {
        format!(
            r#"{{"id":"{id}","opType":"Query","createdAt":1690610557857,"nameHints":["getUser"],"userEmail":"a@b.c","requestParams":{params},"requestPayload":{payload}}}"#
        )
    }

    /// One uevents line with an id and this `requestPayload` text.
    fn line(id: &str, payload: &str) -> String {
        line_with(id, r#"{"email":"\"u@x.io\""}"#, payload)
    }

    /// One uevents line with an id and this `requestParams` text.
    fn line_with_params(id: &str, params: &str) -> String {
        line_with(id, params, r#""[\"_id\"]""#)
    }

    /// The body the fast path stores for the line `text`, checked to be the one the general
    /// path stores (the record read as a `Value`), for an NDJSON line and for a JSON body.
    fn stored_body(ingestor: &Ingestor, text: &str) -> String {
        let fast = ingestor.parse_ndjson(text.as_bytes()).unwrap();
        let mut slow = Parsed::default();
        let record = strict_json::from_str(text).unwrap();
        ingestor
            .prepare(Location::Line(1), record, &mut slow)
            .unwrap();
        assert_eq!(fast.events, slow.events, "{text}");
        // A JSON body takes the same fast path as an NDJSON line.
        let json = ingestor.parse_json(text.as_bytes()).unwrap();
        assert_eq!(json.events, slow.events, "{text} (a JSON body)");
        fast.events[0].body.clone()
    }

    #[test]
    fn a_payload_stored_as_it_came_is_stored_as_if_it_had_been_read() {
        let dir = tempfile::tempdir().unwrap();
        let ingestor = ingestor(&dir);
        let payloads = [
            // kept as text
            r#""[\"_id\",\"name\",\"teams{_id name admins{_id email}}\"]""#,
            r#"{"query":"q","variables":{"id":[1,2]}}"#,
            "null",
            // read as a Value: something to redact, or not in serde_json's form
            r#"{"variables":{"newPassword":"hunter2"}}"#,
            r#""{\"token\":\"t\",\"x\":1}""#,
            r#"{"a": 1.50}"#,
            r#""caf\u00e9 \/""#,
        ];
        for (i, payload) in payloads.iter().enumerate() {
            let body = stored_body(&ingestor, &line(&format!("e{i}"), payload));
            assert!(
                !body.contains("hunter2") && !body.contains("\\\"t\\\""),
                "{body}"
            );
        }
    }

    #[test]
    fn parameters_stored_as_they_came_are_stored_as_if_they_had_been_read() {
        let dir = tempfile::tempdir().unwrap();
        let redactors = [
            Redactor::default(),
            Redactor::with_extra(["params.user.answer"])
                .with_hmac(vec![7; 16], ["customerId"])
                .unwrap(),
        ];
        let params = [
            // kept as text (with the default redactor)
            r#"{"email":"\"u@x.io\"","n":0,"tags":["a","b,c"]}"#,
            r#"{"email":"e","user":{"answer":"42","name":"ada"},"customer_id":"c1"}"#,
            r#"{"email":"e","z":{"tokenName":"ci"},"a":[1,null,true]}"#,
            // read into the event: something to redact, or not in serde_json's form
            r#"{"email":"e","newPassword":"hunter2"}"#,
            r#"{"email":"e","nested":[{"api-key":"hunter2"}]}"#,
            r#"{"email":"e","variables":"{\"token\":\"hunter2\"}"}"#,
            r#"{"email": "e", "n": 1.50}"#,
            r#"{"email":"caf\u00e9 \/"}"#,
            r#"{"emai\u006c":"e"}"#,
        ];
        for (r, redactor) in redactors.into_iter().enumerate() {
            let store = SqliteStore::open(dir.path().join(format!("audit-{r}.db"))).unwrap();
            let ingestor = Ingestor::new(Arc::new(store), Arc::new(UeventsSchema::new()), true)
                .with_redactor(redactor);
            for (i, params) in params.iter().enumerate() {
                let body = stored_body(&ingestor, &line_with_params(&format!("e{i}"), params));
                assert!(!body.contains("hunter2"), "{body}");
                if r == 1 {
                    assert!(
                        !body.contains("\"42\"") && !body.contains("\"c1\""),
                        "{body}"
                    );
                }
            }
        }
    }

    /// A catalog check of parameters kept as text names what is missing, as when they are
    /// read.
    #[test]
    fn parameters_stored_as_they_came_are_checked_against_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let ingestor = ingestor(&dir);
        for params in [r#"{"mail":"e"}"#, r#"{"email":null}"#, "{}"] {
            let text = line_with_params("e1", params);
            let err = ingestor.parse_ndjson(text.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, IngestError::Invalid { error, .. } if error.to_string().contains("requestParams.email")),
                "{params}: {err}"
            );
        }
        for params in [r#"{"email":"e"}"#, r#"{"x":1,"email":"e"}"#] {
            let text = line_with_params("e1", params);
            assert!(ingestor.parse_ndjson(text.as_bytes()).is_ok(), "{params}");
        }
    }

    #[test]
    fn parameters_with_a_repeated_key_or_not_an_object_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let ingestor = ingestor(&dir);
        let repeated = format!(
            "{}\n{}\n",
            line_with_params("e1", r#"{"email":"e"}"#),
            line_with_params("e2", r#"{"email":"e","k":1,"k":2}"#)
        );
        let err = ingestor.parse_ndjson(repeated.as_bytes()).unwrap_err();
        assert!(
            matches!(err, IngestError::Malformed { at: Location::Line(2), ref message } if message.contains("k")),
            "{err}"
        );
        for params in [r#""email""#, "[1]", "5"] {
            let text = line_with_params("e1", params);
            let err = ingestor.parse_ndjson(text.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("requestParams"), "{params}: {err}");
        }
    }

    #[test]
    fn a_payload_with_a_repeated_key_is_refused_naming_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let ingestor = ingestor(&dir);
        let input = format!(
            "{}\n{}\n",
            line("e1", "\"ok\""),
            line("e2", r#"{"k":1,"k":2}"#)
        );
        let err = ingestor.parse_ndjson(input.as_bytes()).unwrap_err();
        assert!(
            matches!(err, IngestError::Malformed { at: Location::Line(2), ref message } if message.contains("k")),
            "{err}"
        );
    }
}
