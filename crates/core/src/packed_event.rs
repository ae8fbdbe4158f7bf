//! The packed form of a stored event: the JSON texts of its fields without their keys, in a
//! fixed order, behind a checksum.
//!
//! An export copies most of a stored event's fields into its file as they are. Out of the
//! JSON form ([`event_json::write_event`]) that took a walk over every byte, to find where
//! each text ends and to prove it is in serde_json's form: about a third of an export's CPU.
//! In the packed form each text is found by the separator after it, a control character
//! that JSON text never holds raw, and a CRC-32 of the whole takes the place of the proof:
//! the texts were written by this crate's encoder from a checked event, so any change to
//! them since is a checksum mismatch.
//!
//! A body is UTF-8 text (it fits a `TEXT` column of any database):
//!
//! ```text
//! \x01 <CRC-32 of the rest, 8 lowercase hex digits> <slot> \x1f <slot> ... \x1f <slot>
//!      then, for each member of `extra`: \x1f <key> \x1e <value>
//! ```
//!
//! The 19 slots, each empty when the field is absent, else its JSON text as serde_json
//! writes it: `id`, `time`, `action`, `organization`, the actor's `user_id`, `user_email`,
//! `user_name`, `token_id`, `token_name`, `ip` and `user_agent`, the entity's `kind` and
//! `id`, the outcome's `code` and `latency_ms`, `params`, `payload`, `previous`, `next`.
//! An `extra` key is kept as it is written between quotes, which is the key itself: an
//! event with a key that JSON must escape is stored in the JSON form instead. A body that
//! starts with `{` is in the JSON form, as every body stored before this form was.

use std::borrow::Cow;

use crate::canonical_json::CanonicalJson;
use crate::event_json::{
    self, ActorTexts, EntityTexts, ExtraTexts, KeptTexts, OutcomeTexts, StoredTexts,
};
use crate::{Actor, Event};

/// The first character of a packed body.
const MARK: char = '\u{1}';
/// Ends each slot but the last.
const SLOT_END: char = '\u{1f}';
/// Ends the key of an `extra` member.
const KEY_END: char = '\u{1e}';
/// Hex digits of the checksum.
const CRC_DIGITS: usize = 8;
/// The fixed slots.
const SLOTS: usize = 19;

/// Why a packed body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackedError {
    /// Its bytes are not those its checksum was taken of.
    #[error("the stored event's checksum does not match its text: it was changed or damaged after it was written")]
    Checksum,
    /// It does not have the packed form's layout.
    #[error("the stored event is not in the packed form: {0}")]
    Layout(&'static str),
}

/// True when `body` is in the packed form (else it is JSON).
pub fn is_packed(body: &str) -> bool {
    body.starts_with(MARK)
}

/// Appends `event` to `out` in the packed form, with the `kept` texts in place of its own
/// fields; in the JSON form when a key of its `extra` needs an escape.
pub fn write(out: &mut String, event: &Event, kept: KeptTexts<'_>) {
    if event
        .extra
        .keys()
        .any(|key| key.bytes().any(|b| event_json::escape_of(b).is_some()))
    {
        return event_json::write_event_parts(out, event, kept);
    }
    out.push(MARK);
    let crc_at = out.len();
    out.push_str("00000000");
    let start = out.len();
    let optional_str = |out: &mut String, value: &Option<String>| {
        if let Some(value) = value {
            event_json::write_str(out, value);
        }
        out.push(SLOT_END);
    };
    event_json::write_str(out, &event.id);
    out.push(SLOT_END);
    out.push_str(itoa::Buffer::new().format(event.time));
    out.push(SLOT_END);
    event_json::write_str(out, &event.action);
    out.push(SLOT_END);
    optional_str(out, &event.organization);
    // Slots 4 to 10.
    for (_, field) in event_json::actor_fields(&event.actor) {
        optional_str(out, field);
    }
    match &event.entity {
        Some(entity) => {
            event_json::write_str(out, &entity.kind);
            out.push(SLOT_END);
            optional_str(out, &entity.id);
        }
        None => {
            out.push(SLOT_END);
            out.push(SLOT_END);
        }
    }
    if let Some(code) = event.outcome.code {
        out.push_str(itoa::Buffer::new().format(code));
    }
    out.push(SLOT_END);
    if let Some(latency) = event.outcome.latency_ms {
        out.push_str(itoa::Buffer::new().format(latency));
    }
    out.push(SLOT_END);
    match kept.params {
        Some(text) if !event_json::no_params(text) => out.push_str(text.as_str()),
        Some(_) => {}
        None if !event.params.is_empty() => event_json::write_map(out, &event.params),
        None => {}
    }
    out.push(SLOT_END);
    match kept.payload {
        // `null` is no payload, as serde_json reads `Option<Value>`.
        Some(text) if text.as_str() != "null" => out.push_str(text.as_str()),
        Some(_) => {}
        None => {
            if let Some(value) = &event.payload {
                event_json::write_value(out, value);
            }
        }
    }
    out.push(SLOT_END);
    if let Some(previous) = &event.previous {
        event_json::write_value(out, previous);
    }
    out.push(SLOT_END);
    if let Some(next) = &event.next {
        event_json::write_value(out, next);
    }
    for (key, value) in &event.extra {
        out.push(SLOT_END);
        out.push_str(key);
        out.push(KEY_END);
        event_json::write_value(out, value);
    }
    let crc = crc32fast::hash(&out.as_bytes()[start..]);
    let mut hex = [0u8; CRC_DIGITS];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[(crc >> (28 - 4 * i) & 0xf) as usize];
    }
    out.replace_range(
        crc_at..start,
        std::str::from_utf8(&hex).expect("hex digits"),
    );
}

/// A packed body's slots and `extra` members, its checksum verified.
struct Unpacked<'t> {
    slots: [&'t str; SLOTS],
    extra: Members<'t>,
}

/// The `extra` members of a packed body (`key \x1e value` each), cut at the separators that
/// the scan for the slots' ends goes on to find: one pass over the body for both.
struct Members<'t> {
    packed: &'t str,
    ends: memchr::Memchr<'t>,
    /// Where the next member starts; `None` after the last.
    start: Option<usize>,
}

impl<'t> Iterator for Members<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let start = self.start?;
        let end = self.ends.next();
        self.start = end.map(|end| end + 1);
        // The separators are ASCII, so every cut falls between characters.
        Some(&self.packed[start..end.unwrap_or(self.packed.len())])
    }
}

fn unpack(body: &str) -> Result<Unpacked<'_>, PackedError> {
    let rest = body
        .strip_prefix(MARK)
        .ok_or(PackedError::Layout("no mark"))?;
    let (crc, packed) = rest
        .split_at_checked(CRC_DIGITS)
        .ok_or(PackedError::Layout("no checksum"))?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| PackedError::Layout("no checksum"))?;
    if crc != crc32fast::hash(packed.as_bytes()) {
        return Err(PackedError::Checksum);
    }
    // The separators are ASCII, so every cut falls between characters.
    let mut ends = memchr::memchr_iter(SLOT_END as u8, packed.as_bytes());
    let mut slots = [""; SLOTS];
    let mut start = 0;
    for slot in &mut slots[..SLOTS - 1] {
        let end = ends.next().ok_or(PackedError::Layout("too few fields"))?;
        *slot = &packed[start..end];
        start = end + 1;
    }
    // Each member of `extra` comes after a separator of its own.
    let end = ends.next();
    slots[SLOTS - 1] = &packed[start..end.unwrap_or(packed.len())];
    let extra = Members {
        packed,
        ends,
        start: end.map(|end| end + 1),
    };
    Ok(Unpacked { slots, extra })
}

/// The texts of a packed body's fields ([`event_json::read_stored_texts`] reads either
/// form); `None` when its checksum or layout is wrong, which [`json_of`] then reports.
pub(crate) fn texts(body: &str) -> Option<StoredTexts<'_>> {
    let Unpacked { slots, extra } = unpack(body).ok()?;
    // Written only from a checked event by `write`, as its checksum shows; `null` is none,
    // as serde_json reads an `Option`.
    fn text(slot: &str) -> Option<CanonicalJson<'_>> {
        (!slot.is_empty() && slot != "null").then_some(CanonicalJson::stored(slot))
    }
    let [id, time, action, organization, user_id, user_email, user_name, token_id, token_name, ip, user_agent, kind, entity_id, code, latency_ms, params, payload, previous, next] =
        slots;
    let mut members = Vec::new();
    for member in extra {
        let at = memchr::memchr(KEY_END as u8, member.as_bytes())?;
        members.push((&member[..at], CanonicalJson::stored(&member[at + 1..])));
    }
    Some(StoredTexts {
        id: text(id),
        time: time.parse().ok()?,
        actor: ActorTexts {
            user_id: text(user_id),
            user_email: text(user_email),
            user_name: text(user_name),
            token_id: text(token_id),
            token_name: text(token_name),
            ip: text(ip),
            user_agent: text(user_agent),
        },
        action: (!action.is_empty()).then_some(CanonicalJson::stored(action))?,
        entity: (!kind.is_empty()).then(|| EntityTexts {
            kind: CanonicalJson::stored(kind),
            id: text(entity_id),
        }),
        organization: text(organization),
        outcome: OutcomeTexts {
            code: text(code),
            latency_ms: text(latency_ms),
        },
        params: text(params),
        payload: text(payload),
        previous: text(previous),
        next: text(next),
        extra: ExtraTexts(members),
    })
}

/// A stored body in the JSON form: itself when it is JSON, else the very text
/// [`event_json::write_event`] writes for the event it packs.
pub fn json_of(body: &str) -> Result<Cow<'_, str>, PackedError> {
    if !is_packed(body) {
        return Ok(Cow::Borrowed(body));
    }
    let mut out = String::with_capacity(body.len() + 160);
    write_json(&mut out, body)?;
    Ok(Cow::Owned(out))
}

/// Appends to `out` the JSON form of the packed `body` ([`json_of`], into a buffer the
/// caller keeps from event to event).
pub fn write_json(out: &mut String, body: &str) -> Result<(), PackedError> {
    let Unpacked { slots, extra } = unpack(body)?;
    let member = |out: &mut String, name: &str, text: &str| {
        if !text.is_empty() {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":");
            out.push_str(text);
        }
    };
    out.push_str("{\"id\":");
    out.push_str(slots[0]);
    out.push_str(",\"time\":");
    out.push_str(slots[1]);
    let actor_names = event_json::actor_fields(&Actor::default()).map(|(name, _)| name);
    write_object(out, "actor", actor_names.into_iter().zip(&slots[4..11]));
    out.push_str(",\"action\":");
    out.push_str(slots[2]);
    if !slots[11].is_empty() {
        write_object(
            out,
            "entity",
            [("kind", &slots[11]), ("id", &slots[12])].into_iter(),
        );
    }
    member(out, "organization", slots[3]);
    write_object(
        out,
        "outcome",
        [("code", &slots[13]), ("latency_ms", &slots[14])].into_iter(),
    );
    for (name, slot) in ["params", "payload", "previous", "next"]
        .into_iter()
        .zip(&slots[15..19])
    {
        member(out, name, slot);
    }
    let mut first = true;
    for pair in extra {
        let (key, value) = pair
            .split_once(KEY_END)
            .ok_or(PackedError::Layout("an extra field without its key"))?;
        out.push_str(if first { ",\"extra\":{\"" } else { ",\"" });
        first = false;
        out.push_str(key);
        out.push_str("\":");
        out.push_str(value);
    }
    if !first {
        out.push('}');
    }
    out.push('}');
    Ok(())
}

/// `,"name":{"field":text,...}` with the fields whose text is not empty; nothing when none is.
fn write_object<'s>(
    out: &mut String,
    name: &str,
    fields: impl Iterator<Item = (&'static str, &'s &'s str)>,
) {
    let mut first = true;
    for (field, text) in fields {
        if text.is_empty() {
            continue;
        }
        if first {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":{");
        } else {
            out.push(',');
        }
        first = false;
        out.push('"');
        out.push_str(field);
        out.push_str("\":");
        out.push_str(text);
    }
    if !first {
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical_json::check;
    use crate::event_json::{read_stored_texts, write_event};
    use crate::{Entity, Outcome};
    use serde_json::json;
    use serde_json::value::RawValue;

    /// Events with every field absent, present, empty, `null` or awkward (escapes,
    /// non-ASCII, separators' neighbours), alone and together.
    fn events() -> Vec<Event> {
        let base = Event {
            id: "e-1".into(),
            time: 1_690_000_000_123,
            action: "user.login".into(),
            ..Event::default()
        };
        let mut events = vec![base.clone()];
        let mut full = base.clone();
        full.id = String::new();
        full.time = -5;
        full.actor.user_id = Some("u\u{7f}1".into());
        full.actor.user_email = Some("a@example.com".into());
        full.actor.user_name = Some(String::new());
        full.actor.token_id = Some("t\"1\\".into());
        full.actor.token_name = Some("tok\ten".into());
        full.actor.ip = Some("::1".into());
        full.actor.user_agent = Some("Ünïcode 😀\u{1}\u{1e}\u{1f}".into());
        full.entity = Some(Entity {
            kind: "user".into(),
            id: Some("u \"7\"".into()),
        });
        full.organization = Some("acme, inc.\n".into());
        full.outcome = Outcome {
            code: Some(-1),
            latency_ms: Some(u64::MAX),
        };
        full.params.insert("n".into(), json!({"a": [1, "b", null]}));
        full.params.insert("k\"q".into(), json!(15));
        full.payload = Some(json!("[\"_id\",\"name\"]"));
        full.previous = Some(json!({"x": null}));
        full.next = Some(json!([]));
        full.extra.insert("opType".into(), json!("Query"));
        full.extra
            .insert("nameHints".into(), json!(["User", "getUserTeam"]));
        full.extra.insert("empty".into(), json!(""));
        events.push(full.clone());
        // One field at a time, beside the required ones.
        let mut one = base.clone();
        one.entity = Some(Entity {
            kind: "k".into(),
            id: None,
        });
        events.push(one);
        let mut one = base.clone();
        one.outcome.latency_ms = Some(0);
        events.push(one);
        let mut one = base.clone();
        one.payload = Some(serde_json::Value::Null);
        one.next = Some(json!(null));
        events.push(one);
        let mut one = base.clone();
        one.extra.insert("x".into(), json!(null));
        events.push(one);
        let mut one = base;
        one.actor.user_agent = Some("last".into());
        one.previous = Some(json!(0));
        events.push(one);
        events
    }

    fn packed(event: &Event) -> String {
        let mut body = String::new();
        write(&mut body, event, KeptTexts::default());
        body
    }

    fn json(event: &Event) -> String {
        let mut body = String::new();
        write_event(&mut body, event);
        body
    }

    #[test]
    fn a_packed_body_reads_back_as_the_json_form_of_its_event() {
        for event in events() {
            let body = packed(&event);
            assert!(is_packed(&body), "{body:?}");
            assert_eq!(json_of(&body).unwrap(), json(&event), "{body:?}");
            // And the event itself comes back.
            let back: Event = serde_json::from_str(&json_of(&body).unwrap()).unwrap();
            let again: Event = serde_json::from_str(&json(&event)).unwrap();
            assert_eq!(back, again);
        }
    }

    #[test]
    fn a_packed_bodys_texts_are_those_of_its_json_form() {
        for event in events() {
            let body = packed(&event);
            let legacy = json(&event);
            let texts = read_stored_texts(&body).expect("packed texts");
            // Each text is serde_json's of its field (`null` and absent are none).
            let text = |t: Option<CanonicalJson<'_>>| t.map(|t| t.as_str().to_string());
            let serde = |v: serde_json::Value| (!v.is_null()).then(|| v.to_string());
            let actor = &event.actor;
            let entity = event.entity.as_ref();
            let params = (!event.params.is_empty()).then(|| json!(event.params));
            let found = [
                text(texts.id),
                Some(texts.time.to_string()),
                text(Some(texts.action)),
                text(texts.organization),
                text(texts.actor.user_id),
                text(texts.actor.user_email),
                text(texts.actor.user_name),
                text(texts.actor.token_id),
                text(texts.actor.token_name),
                text(texts.actor.ip),
                text(texts.actor.user_agent),
                text(texts.entity.as_ref().map(|e| e.kind)),
                text(texts.entity.as_ref().and_then(|e| e.id)),
                text(texts.outcome.code),
                text(texts.outcome.latency_ms),
                text(texts.params),
                text(texts.payload),
                text(texts.previous),
                text(texts.next),
            ];
            let expected = [
                serde(json!(event.id)),
                serde(json!(event.time)),
                serde(json!(event.action)),
                serde(json!(event.organization)),
                serde(json!(actor.user_id)),
                serde(json!(actor.user_email)),
                serde(json!(actor.user_name)),
                serde(json!(actor.token_id)),
                serde(json!(actor.token_name)),
                serde(json!(actor.ip)),
                serde(json!(actor.user_agent)),
                serde(json!(entity.map(|e| &e.kind))),
                serde(json!(entity.and_then(|e| e.id.as_ref()))),
                serde(json!(event.outcome.code)),
                serde(json!(event.outcome.latency_ms)),
                serde(json!(params)),
                serde(json!(event.payload)),
                serde(json!(event.previous)),
                serde(json!(event.next)),
            ];
            assert_eq!(found, expected, "{legacy}");
            let extra: Vec<_> = texts
                .extra
                .0
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_str().to_string()))
                .collect();
            let expected: Vec<_> = event
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect();
            assert_eq!(extra, expected, "{legacy}");
            // The same as the JSON form's, where its reader takes it.
            if let Some(from_json) = read_stored_texts(&legacy) {
                assert_eq!(format!("{texts:?}"), format!("{from_json:?}"), "{legacy}");
            }
        }
    }

    /// The JSON form's reader refuses a fraction (its text might not be serde_json's); the
    /// packed form's texts are serde_json's own, fractions too.
    #[test]
    fn a_fraction_is_packed_as_serde_json_writes_it() {
        let mut event = events().swap_remove(0);
        event.params.insert("f".into(), json!(0.1));
        event.extra.insert("g".into(), json!(-2.5e-8));
        let body = packed(&event);
        let texts = read_stored_texts(&body).expect("packed texts");
        let text = |value: &serde_json::Value| serde_json::to_string(value).unwrap();
        assert_eq!(texts.params.unwrap().as_str(), text(&json!({"f": 0.1})));
        assert_eq!(
            texts.extra.get("g").unwrap().as_str(),
            text(&json!(-2.5e-8))
        );
        assert!(read_stored_texts(&json(&event)).is_none());
    }

    #[test]
    fn a_payload_and_parameters_kept_as_text_are_packed_as_they_came() {
        let raw = |text: &str| -> Box<RawValue> { serde_json::from_str(text).unwrap() };
        let written = |event: &Event, payload: Option<&RawValue>, params: Option<&RawValue>| {
            let kept = KeptTexts {
                payload: payload.map(|p| check(p, &mut |_| true).unwrap()),
                params: params.map(|p| check(p, &mut |_| true).unwrap()),
            };
            let mut body = String::new();
            write(&mut body, event, kept);
            body
        };
        let mut event = events().swap_remove(1);
        event.params.insert("z".into(), json!(1));
        event
            .params
            .insert("a".into(), json!({"b": [true, null, "c\"d"]}));
        let payload = raw(&serde_json::to_string(&event.payload).unwrap());
        let params = raw(&serde_json::to_string(&event.params).unwrap());
        let mut without = event.clone();
        without.payload = None;
        without.params.clear();
        assert_eq!(
            written(&without, Some(&payload), Some(&params)),
            packed(&event)
        );
        let mut only_params = event.clone();
        only_params.params.clear();
        assert_eq!(written(&only_params, None, Some(&params)), packed(&event));
        // `null` as text is no payload, `{}` no parameters.
        assert_eq!(
            written(&without, Some(&raw("null")), Some(&raw("{}"))),
            packed(&without)
        );
        // An `extra` key that needs an escape puts the event in the JSON form: the same
        // bytes as the event with its texts read.
        let mut escaped = event.clone();
        escaped.extra.insert("a\"b".into(), json!(1));
        let mut escaped_without = without.clone();
        escaped_without.extra = escaped.extra.clone();
        assert_eq!(
            written(&escaped_without, Some(&payload), Some(&params)),
            packed(&escaped)
        );
        assert!(packed(&escaped).starts_with('{'));
    }

    #[test]
    fn any_change_to_a_packed_body_is_found() {
        let body = packed(&events()[1]);
        for at in 1..body.len() {
            if !body.is_char_boundary(at) || !body.is_char_boundary(at + 1) {
                continue;
            }
            // Each ASCII byte changed to another.
            let byte = body.as_bytes()[at];
            let other = if byte == b'a' { 'b' } else { 'a' };
            let mut changed = body.clone();
            changed.replace_range(at..at + 1, other.encode_utf8(&mut [0; 4]));
            assert!(
                read_stored_texts(&changed).is_none(),
                "byte {at} of {body:?}"
            );
            let err = json_of(&changed).unwrap_err();
            let expected = if at <= CRC_DIGITS {
                [PackedError::Checksum, PackedError::Layout("no checksum")].contains(&err)
            } else {
                err == PackedError::Checksum
            };
            assert!(expected, "byte {at}: {err}");
        }
        assert!(json_of(&body[..body.len() - 1]).is_err());
        assert_eq!(
            json_of("\u{1}00000000"),
            Err(PackedError::Layout("too few fields"))
        );
    }

    #[test]
    fn an_extra_key_json_must_escape_keeps_the_json_form() {
        let mut event = events().swap_remove(0);
        event.extra.insert("a\"b".into(), json!(1));
        let body = packed(&event);
        assert!(!is_packed(&body));
        assert_eq!(body, json(&event));
        assert_eq!(json_of(&body).unwrap(), body);
    }
}
