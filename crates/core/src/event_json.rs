//! An [`Event`] written as compact JSON text, byte for byte what `serde_json::to_string`
//! writes for it, without serde's machinery.
//!
//! Every stored event is encoded once on its way in, and serde_json's string escaper looks
//! at one byte at a time: most of an event's bytes are strings that need no escape at all,
//! which this one skips eight bytes at a time. A test holds the two encoders to the same
//! output.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::canonical_json::{self, CanonicalJson};
use crate::{Actor, Entity, Event, Outcome};

/// An event read for an export ([`read_event_for_export`]): its payload and parameters
/// still the JSON text they are stored as.
#[derive(Debug)]
pub struct EventForExport<'t> {
    /// The event, with `payload` `None` and `params` empty.
    pub event: Event,
    /// The payload's text, if it has one.
    pub payload: Option<&'t RawValue>,
    /// The parameters' text (an object), if it has any.
    pub params: Option<&'t RawValue>,
}

/// Reads an event written by [`write_event`], leaving its payload and its parameters as the
/// JSON text they are (exports copy them into their files instead of reading them into
/// `Value`s and writing them again).
pub fn read_event_for_export(text: &str) -> Result<EventForExport<'_>, serde_json::Error> {
    let read: EventLeavingTexts<'_> = serde_json::from_str(text)?;
    let event = Event {
        id: read.id,
        time: read.time,
        actor: read.actor,
        action: read.action,
        entity: read.entity,
        organization: read.organization,
        outcome: read.outcome,
        params: Map::new(),
        payload: None,
        previous: read.previous,
        next: read.next,
        extra: read.extra,
    };
    Ok(EventForExport {
        event,
        payload: read.payload,
        params: read.params,
    })
}

/// [`Event`]'s fields with the payload and parameters borrowed as text. A field added to
/// `Event` and not here makes the round-trip test fail (unknown fields are refused).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLeavingTexts<'t> {
    #[serde(default)]
    id: String,
    time: i64,
    #[serde(default)]
    actor: Actor,
    action: String,
    #[serde(default)]
    entity: Option<Entity>,
    #[serde(default)]
    organization: Option<String>,
    #[serde(default)]
    outcome: Outcome,
    #[serde(default, borrow)]
    params: Option<&'t RawValue>,
    #[serde(default, borrow)]
    payload: Option<&'t RawValue>,
    #[serde(default)]
    previous: Option<Value>,
    #[serde(default)]
    next: Option<Value>,
    #[serde(default)]
    extra: Map<String, Value>,
}

/// A stored event's fields left as the JSON texts they are in its body
/// ([`read_stored_texts`]), for an export that copies them into its file instead of
/// reading them into an [`Event`] and writing them again. Every text is in serde_json's
/// form; their types are not yet checked (see [`crate::Schema::render_texts`]).
#[derive(Debug)]
pub struct StoredTexts<'t> {
    /// The id (a string), if the body has one.
    pub id: Option<CanonicalJson<'t>>,
    /// The event time, epoch ms.
    pub time: i64,
    /// The actor's fields.
    pub actor: ActorTexts<'t>,
    /// The action (a string).
    pub action: CanonicalJson<'t>,
    /// The entity, if any.
    pub entity: Option<EntityTexts<'t>>,
    /// The organization (a string), if any.
    pub organization: Option<CanonicalJson<'t>>,
    /// The outcome's fields.
    pub outcome: OutcomeTexts<'t>,
    /// The parameters (an object), if any.
    pub params: Option<CanonicalJson<'t>>,
    /// The payload, if any.
    pub payload: Option<CanonicalJson<'t>>,
    /// The state before, if any.
    pub previous: Option<CanonicalJson<'t>>,
    /// The state after, if any.
    pub next: Option<CanonicalJson<'t>>,
    /// The other fields, in body order.
    pub extra: ExtraTexts<'t>,
}

/// [`crate::Actor`]'s fields as texts (strings), each as [`crate::Actor`] names it.
#[derive(Debug, Default)]
pub struct ActorTexts<'t> {
    /// Stable user id.
    pub user_id: Option<CanonicalJson<'t>>,
    /// User's email address.
    pub user_email: Option<CanonicalJson<'t>>,
    /// User's display or login name.
    pub user_name: Option<CanonicalJson<'t>>,
    /// Id of the access token used.
    pub token_id: Option<CanonicalJson<'t>>,
    /// Name of the access token used.
    pub token_name: Option<CanonicalJson<'t>>,
    /// Client IP address.
    pub ip: Option<CanonicalJson<'t>>,
    /// Client user agent.
    pub user_agent: Option<CanonicalJson<'t>>,
}

/// [`crate::Entity`]'s fields as texts (strings).
#[derive(Debug)]
pub struct EntityTexts<'t> {
    /// Its kind.
    pub kind: CanonicalJson<'t>,
    /// Its id, if known.
    pub id: Option<CanonicalJson<'t>>,
}

/// [`crate::Outcome`]'s fields as texts (integers).
#[derive(Debug, Default)]
pub struct OutcomeTexts<'t> {
    /// The response code, if any.
    pub code: Option<CanonicalJson<'t>>,
    /// The latency in ms, if any.
    pub latency_ms: Option<CanonicalJson<'t>>,
}

/// The event's other fields as `(key, text)`, in body order.
#[derive(Debug, Default)]
pub struct ExtraTexts<'t>(pub Vec<(&'t str, CanonicalJson<'t>)>);

impl<'t> ExtraTexts<'t> {
    /// The text of `key`.
    pub fn get(&self, key: &str) -> Option<CanonicalJson<'t>> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

/// Sets `slot` to `value` (`null` reads as none, as serde_json reads an `Option`).
fn optional<'t>(slot: &mut Option<CanonicalJson<'t>>, value: CanonicalJson<'t>) -> bool {
    if value.as_str() != "null" {
        *slot = Some(value);
    }
    true
}

/// Reads a stored body leaving every field as its text. A packed body
/// ([`crate::packed_event`]) is split at its separators; `None` when its checksum does not
/// match. A JSON body (written by [`write_event`]) is read in one pass over it; `None`
/// unless the whole body is in serde_json's form, with no field an [`Event`] does not have,
/// no repeated key and no escape in a key. The caller reads a body this refuses as an
/// [`Event`] instead, which also reports what is wrong with it (such a body is rare).
pub fn read_stored_texts(text: &str) -> Option<StoredTexts<'_>> {
    if crate::packed_event::is_packed(text) {
        return crate::packed_event::texts(text);
    }
    let (mut id, mut time, mut action) = (None, None, None);
    let (mut organization, mut params, mut payload) = (None, None, None);
    let (mut previous, mut next) = (None, None);
    let mut actor = ActorTexts::default();
    let mut outcome = OutcomeTexts::default();
    let mut extra = ExtraTexts::default();
    let (mut entity_seen, mut entity_kind, mut entity_id) = (false, None, None);
    let objects = |key: &str| matches!(key, "actor" | "outcome" | "entity" | "extra");
    let whole = canonical_json::members(text, &objects, &mut |parent, key, value| match parent {
        None => match key {
            "id" => optional(&mut id, value),
            "time" => {
                time = value.as_str().parse::<i64>().ok();
                time.is_some()
            }
            "action" => {
                action = Some(value);
                true
            }
            "organization" => optional(&mut organization, value),
            "params" => optional(&mut params, value),
            "payload" => optional(&mut payload, value),
            "previous" => optional(&mut previous, value),
            "next" => optional(&mut next, value),
            // Their fields came just before.
            "actor" | "outcome" | "extra" => true,
            "entity" => {
                entity_seen = true;
                true
            }
            _ => false,
        },
        Some("actor") => {
            let slot = match key {
                "user_id" => &mut actor.user_id,
                "user_email" => &mut actor.user_email,
                "user_name" => &mut actor.user_name,
                "token_id" => &mut actor.token_id,
                "token_name" => &mut actor.token_name,
                "ip" => &mut actor.ip,
                "user_agent" => &mut actor.user_agent,
                _ => return false,
            };
            optional(slot, value)
        }
        Some("outcome") => match key {
            "code" => optional(&mut outcome.code, value),
            "latency_ms" => optional(&mut outcome.latency_ms, value),
            _ => false,
        },
        Some("entity") => match key {
            "kind" => {
                entity_kind = Some(value);
                true
            }
            "id" => optional(&mut entity_id, value),
            _ => false,
        },
        // The only other object walked: "extra".
        Some(_) => {
            extra.0.push((key, value));
            true
        }
    });
    if !whole {
        return None;
    }
    // An entity without its kind is read the slow way, which says what is wrong.
    let entity = match (entity_seen, entity_kind) {
        (false, _) => None,
        (true, Some(kind)) => Some(EntityTexts {
            kind,
            id: entity_id,
        }),
        (true, None) => return None,
    };
    Some(StoredTexts {
        id,
        time: time?,
        actor,
        action: action?,
        entity,
        organization,
        outcome,
        params,
        payload,
        previous,
        next,
        extra,
    })
}

/// Fields of an event still the JSON text they came in, in serde_json's form: written in
/// place of the event's own fields, which are then empty. The bytes are those the event
/// gives with the texts read into it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeptTexts<'t> {
    /// The payload (`null` for none), in place of `event.payload`.
    pub payload: Option<CanonicalJson<'t>>,
    /// The parameters, an object, in place of `event.params`.
    pub params: Option<CanonicalJson<'t>>,
}

/// Appends `event` as compact JSON to `out`, exactly as `serde_json::to_string` would.
pub fn write_event(out: &mut String, event: &Event) {
    write_event_parts(out, event, KeptTexts::default());
}

/// [`write_event`] for an event whose payload is still the text it came in: `payload` is
/// written in place of `event.payload` (which should be `None`). The bytes are those
/// `write_event` gives for the event with `payload` read into its `payload` field.
pub fn write_event_with_payload(out: &mut String, event: &Event, payload: CanonicalJson<'_>) {
    let kept = KeptTexts {
        payload: Some(payload),
        params: None,
    };
    write_event_parts(out, event, kept);
}

/// Whether a kept parameters text stands for no parameters (an event without any has an
/// empty map, which is not written).
pub(crate) fn no_params(text: CanonicalJson<'_>) -> bool {
    matches!(text.as_str(), "{}" | "null")
}

pub(crate) fn write_event_parts(out: &mut String, event: &Event, kept: KeptTexts<'_>) {
    out.push_str("{\"id\":");
    write_str(out, &event.id);
    out.push_str(",\"time\":");
    out.push_str(itoa::Buffer::new().format(event.time));
    if !event.actor.is_empty() {
        out.push_str(",\"actor\":");
        write_actor(out, &event.actor);
    }
    out.push_str(",\"action\":");
    write_str(out, &event.action);
    if let Some(entity) = &event.entity {
        out.push_str(",\"entity\":{\"kind\":");
        write_str(out, &entity.kind);
        if let Some(id) = &entity.id {
            out.push_str(",\"id\":");
            write_str(out, id);
        }
        out.push('}');
    }
    if let Some(organization) = &event.organization {
        out.push_str(",\"organization\":");
        write_str(out, organization);
    }
    let outcome = &event.outcome;
    if !outcome.is_empty() {
        out.push_str(",\"outcome\":");
        let mut fields = Fields::new(out);
        if let Some(code) = outcome.code {
            fields
                .key("code")
                .push_str(itoa::Buffer::new().format(code));
        }
        if let Some(latency) = outcome.latency_ms {
            fields
                .key("latency_ms")
                .push_str(itoa::Buffer::new().format(latency));
        }
        fields.end();
    }
    match kept.params {
        Some(text) if !no_params(text) => {
            out.push_str(",\"params\":");
            out.push_str(text.as_str());
        }
        Some(_) => {}
        None if !event.params.is_empty() => {
            out.push_str(",\"params\":");
            write_map(out, &event.params);
        }
        None => {}
    }
    match kept.payload {
        // `null` is no payload, as serde_json reads `Option<Value>`.
        Some(text) if text.as_str() != "null" => {
            out.push_str(",\"payload\":");
            out.push_str(text.as_str());
        }
        Some(_) => {}
        None => write_optional(out, "payload", &event.payload),
    }
    write_optional(out, "previous", &event.previous);
    write_optional(out, "next", &event.next);
    if !event.extra.is_empty() {
        out.push_str(",\"extra\":");
        write_map(out, &event.extra);
    }
    out.push('}');
}

fn write_optional(out: &mut String, name: &str, value: &Option<Value>) {
    if let Some(value) = value {
        out.push_str(",\"");
        out.push_str(name);
        out.push_str("\":");
        write_value(out, value);
    }
}

/// The members of one object being written: commas between them, braces around.
struct Fields<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> Fields<'o> {
    fn new(out: &'o mut String) -> Self {
        out.push('{');
        Self { out, first: true }
    }

    /// Writes the key of the next member; the caller writes its value.
    fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_str(self.out, key);
        self.out.push(':');
        self.out
    }

    fn end(self) {
        self.out.push('}');
    }
}

/// The actor's fields with their names, in the order they are written.
pub(crate) fn actor_fields(actor: &Actor) -> [(&'static str, &Option<String>); 7] {
    [
        ("user_id", &actor.user_id),
        ("user_email", &actor.user_email),
        ("user_name", &actor.user_name),
        ("token_id", &actor.token_id),
        ("token_name", &actor.token_name),
        ("ip", &actor.ip),
        ("user_agent", &actor.user_agent),
    ]
}

fn write_actor(out: &mut String, actor: &Actor) {
    let mut fields = Fields::new(out);
    for (name, value) in actor_fields(actor) {
        if let Some(value) = value {
            write_str(fields.key(name), value);
        }
    }
    fields.end();
}

pub(crate) fn write_map(out: &mut String, map: &Map<String, Value>) {
    let mut fields = Fields::new(out);
    for (key, value) in map {
        write_value(fields.key(key), value);
    }
    fields.end();
}

/// Appends `value` as compact JSON, as `serde_json` writes it.
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // Numbers are few and short: serde_json's own text keeps them exact.
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

/// The JSON escape of `b`, if it needs one (as serde_json writes it).
pub(crate) fn escape_of(b: u8) -> Option<&'static str> {
    const CONTROL: [&str; 32] = [
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
        "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011",
        "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019",
        "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    ];
    match b {
        b'"' => Some("\\\""),
        b'\\' => Some("\\\\"),
        0..=0x1f => Some(CONTROL[usize::from(b)]),
        _ => None,
    }
}

/// Appends `s` as a JSON string: quoted, with serde_json's escapes.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    // `done`: bytes of `s` already written; `at`: where the scan goes on.
    let mut done = 0;
    let mut at = 0;
    while at < bytes.len() {
        if let Some(word) = bytes.get(at..at + 8) {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            // Nothing flagged: no quote, backslash or control character in the eight.
            if canonical_json::needs_a_look(word) == 0 {
                at += 8;
                continue;
            }
        }
        // A word (or the tail) with something to escape: byte by byte until its end.
        let end = (at + 8).min(bytes.len());
        for i in at..end {
            if let Some(escape) = escape_of(bytes[i]) {
                // Escaped bytes are ASCII, so `done..i` ends on a character boundary.
                out.push_str(&s[done..i]);
                out.push_str(escape);
                done = i + 1;
            }
        }
        at = end;
    }
    out.push_str(&s[done..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Entity, Outcome};
    use serde_json::json;

    fn same_as_serde(event: &Event) {
        let mut ours = String::new();
        write_event(&mut ours, event);
        assert_eq!(ours, serde_json::to_string(event).unwrap());
    }

    /// The texts of a body written by [`write_event`] are its fields as serde_json writes
    /// them; a body serde_json would read otherwise, or refuse, gives none.
    #[test]
    fn stored_texts_are_the_fields_as_serde_json_writes_them() {
        let mut event = Event {
            id: "e-1".into(),
            time: 1_690_000_000_123,
            action: "user.login".into(),
            ..Event::default()
        };
        event.actor.user_email = Some("a@example.com".into());
        event.entity = Some(Entity {
            kind: "user".into(),
            id: Some("u \"7\"".into()),
        });
        event.organization = Some("Ünïcode\n".into());
        event.outcome = Outcome {
            code: Some(-1),
            latency_ms: Some(25),
        };
        event.params.insert("n".into(), json!({"a": [1, "b"]}));
        event.payload = Some(json!("[\"_id\"]"));
        event.extra.insert("opType".into(), json!("Query"));
        let mut body = String::new();
        write_event(&mut body, &event);
        let texts = read_stored_texts(&body).expect("texts");
        fn text<T: serde::Serialize>(value: &T) -> String {
            serde_json::to_string(value).unwrap()
        }
        assert_eq!(texts.id.unwrap().as_str(), text(&event.id));
        assert_eq!(texts.time, event.time);
        assert_eq!(texts.action.as_str(), text(&event.action));
        assert_eq!(
            texts.actor.user_email.unwrap().as_str(),
            text(&event.actor.user_email)
        );
        let entity = texts.entity.unwrap();
        assert_eq!(entity.kind.as_str(), "\"user\"");
        assert_eq!(entity.id.unwrap().as_str(), r#""u \"7\"""#);
        assert_eq!(
            texts.organization.unwrap().as_str(),
            text(&event.organization)
        );
        assert_eq!(texts.outcome.code.unwrap().as_str(), "-1");
        assert_eq!(texts.params.unwrap().as_str(), text(&event.params));
        assert_eq!(texts.payload.unwrap().as_str(), text(&event.payload));
        assert_eq!(texts.extra.get("opType").unwrap().as_str(), "\"Query\"");
        assert!(texts.previous.is_none() && texts.next.is_none());

        let nulls = r#"{"id":null,"time":1,"action":"a","payload":null}"#;
        let texts = read_stored_texts(nulls).expect("null reads as none");
        assert!(texts.id.is_none() && texts.payload.is_none());
        for refused in [
            r#"{"time":1,"action":"a","color":"red"}"#,
            r#"{"time":1,"action":"a","actor":{"shoe":"x"}}"#,
            r#"{"time":1}"#,
            r#"{"action":"a"}"#,
            r#"{"time":1.0,"action":"a"}"#,
            r#"{"time":1,"action":"a","time":2}"#,
            r#"{"time":1, "action":"a"}"#,
            "{\"time\":1,\"action\":\"a\u{1}\"}",
            r#"{"time":1,"action":"a","entity":{"id":"x"}}"#,
        ] {
            assert!(read_stored_texts(refused).is_none(), "{refused}");
        }
    }

    /// Every byte that may need an escape, at every position around a word's edges.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let specials: Vec<char> = (0u8..0x20)
            .map(char::from)
            .chain(['"', '\\', '\u{7f}', '\u{80}', 'é', '€', '😀', '/', ' ', 'a'])
            .collect();
        for special in &specials {
            for len in 0..20 {
                for at in 0..=len {
                    let mut s: String = "abcdefghijklmnopqrstu"[..len].to_string();
                    s.insert(at, *special);
                    let mut ours = String::new();
                    write_str(&mut ours, &s);
                    assert_eq!(ours, serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn events_are_written_as_serde_json_writes_them() {
        same_as_serde(&Event::default());
        let full = Event {
            id: "e\"1".into(),
            time: -5,
            actor: Actor {
                user_id: Some("u".into()),
                user_email: Some("a@b.c".into()),
                user_name: Some("Ünï\ncode".into()),
                token_id: Some("t".into()),
                token_name: Some("ci".into()),
                ip: Some("127.0.0.1".into()),
                user_agent: Some("curl/8 \\ \u{1}".into()),
            },
            action: "getUser".into(),
            entity: Some(Entity {
                kind: "user".into(),
                id: Some("42".into()),
            }),
            organization: Some("acme, inc.".into()),
            outcome: Outcome {
                code: Some(-1),
                latency_ms: Some(u64::MAX),
            },
            params: json!({"z": 1, "a": [1.5, -0.0, 1e300, null, true, false, {}, []],
                           "n": {"deep": {"er": "\u{1f}"}}, "big": u64::MAX, "neg": i64::MIN})
            .as_object()
            .unwrap()
            .clone(),
            payload: Some(json!("[\"_id\",\"teams{_id name}\"]")),
            previous: Some(json!({"a": 0.1})),
            next: Some(json!([])),
            extra: json!({"opType": "Query", "nameHints": ["a", "b"]})
                .as_object()
                .unwrap()
                .clone(),
        };
        same_as_serde(&full);
        // Each optional part on its own.
        let only_parts = [
            Event {
                outcome: Outcome {
                    code: None,
                    latency_ms: Some(3),
                },
                ..Event::default()
            },
            Event {
                actor: Actor {
                    ip: Some("::1".into()),
                    ..Actor::default()
                },
                ..Event::default()
            },
            Event {
                entity: Some(Entity {
                    kind: "k".into(),
                    id: None,
                }),
                ..Event::default()
            },
            Event {
                next: Some(Value::Null),
                ..Event::default()
            },
        ];
        for event in &only_parts {
            same_as_serde(event);
        }
    }

    #[test]
    fn a_payload_kept_as_text_is_written_as_if_it_had_been_read() {
        use crate::canonical_json::check;
        use serde_json::value::RawValue;
        for text in [
            r#""[\"_id\",\"teams{_id name}\"]""#,
            r#"{"k":[1,"v"],"n":null}"#,
            "null",
            "7",
        ] {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            let event = Event {
                id: "e1".into(),
                action: "a".into(),
                next: Some(json!({"after": "payload"})),
                extra: json!({"opType": "Q"}).as_object().unwrap().clone(),
                ..Event::default()
            };
            let mut ours = String::new();
            write_event_with_payload(&mut ours, &event, check(&raw, &mut |_| true).unwrap());
            let read = Event {
                payload: Some(serde_json::from_str(text).unwrap()).filter(|v: &Value| !v.is_null()),
                ..event
            };
            assert_eq!(ours, serde_json::to_string(&read).unwrap(), "{text}");
        }
    }

    #[test]
    fn an_event_read_for_export_is_the_event_without_its_payload_and_params() {
        let full = Event {
            id: "e1".into(),
            time: 5,
            actor: Actor {
                user_id: Some("u".into()),
                token_name: Some("ci".into()),
                ..Actor::default()
            },
            action: "a".into(),
            entity: Some(Entity {
                kind: "k".into(),
                id: Some("1".into()),
            }),
            organization: Some("org".into()),
            outcome: Outcome {
                code: Some(200),
                latency_ms: Some(3),
            },
            params: json!({"p": [1, {"q": null}]}).as_object().unwrap().clone(),
            payload: Some(json!("[\"_id\",\"teams{_id}\"]")),
            previous: Some(json!({"before": 1})),
            next: Some(json!({"after": 2})),
            extra: json!({"opType": "Q"}).as_object().unwrap().clone(),
        };
        let text = serde_json::to_string(&full).unwrap();
        let read = read_event_for_export(&text).unwrap();
        assert_eq!(
            read.payload.map(RawValue::get),
            Some(serde_json::to_string(&full.payload).unwrap().as_str())
        );
        assert_eq!(
            read.params.map(RawValue::get),
            Some(serde_json::to_string(&full.params).unwrap().as_str())
        );
        assert_eq!(
            read.event,
            Event {
                payload: None,
                params: Map::new(),
                ..full
            }
        );
        let bare = read_event_for_export(r#"{"id":"e","time":1,"action":"a"}"#).unwrap();
        assert!(bare.payload.is_none() && bare.params.is_none());
    }
}
