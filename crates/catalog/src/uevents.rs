use auditsync_core::canonical_json::CanonicalJson;
use auditsync_core::event_json::StoredTexts;
use auditsync_core::{Catalog, Column, Event, Schema, TextEvent, ValidationError};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::defined::DefinedSchema;
use crate::fields;

/// The `uevents` schema: one line per user action, as the self-hosted user-events export
/// writes it. Its columns and catalog are `schemas/uevents.json`.
///
/// Mapping to the canonical event: `createdAt` → `time`, `nameHints[0]` → `action`,
/// `userEmail` → `actor.user_email`, `customerName` → `organization`, `responseCode` →
/// `outcome.code`, `latencyInMillis` → `outcome.latency_ms`, `requestParams` → `params`,
/// `requestPayload` → `payload`. `opType` and a `nameHints` list of more than one name are
/// kept in `extra` under their own names, so a record renders back exactly as it came in.
/// An optional `id` is taken as the event's idempotency key; it is not a column.
///
/// It is the generic [`DefinedSchema`] plus a fast path for ingest that deserializes the
/// line straight into typed fields.
#[derive(Debug, Clone)]
pub struct UeventsSchema {
    inner: DefinedSchema,
}

const OP_TYPE: &str = "opType";
const NAME_HINTS: &str = "nameHints";

impl UeventsSchema {
    /// The schema with its nine columns and its catalog.
    pub fn new() -> Self {
        Self {
            inner: crate::builtin::defined(crate::builtin::UEVENTS),
        }
    }
}

impl Default for UeventsSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl Schema for UeventsSchema {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn version(&self) -> u32 {
        self.inner.version()
    }

    fn columns(&self) -> &[Column] {
        self.inner.columns()
    }

    fn parse(&self, record: Value) -> Result<Event, ValidationError> {
        self.inner.parse(record)
    }

    fn parse_text<'t>(&self, text: &'t str) -> Option<TextEvent<'t>> {
        // Typed deserialization accepts a subset of what `parse` accepts (it refuses
        // duplicate keys, for one); `build` applies the same checks to both.
        let record: Record<'t> = serde_json::from_str(text).ok()?;
        let payload_text = record.request_payload;
        let params_text = record.request_params;
        let event = build(record).ok()?;
        Some(TextEvent {
            event,
            payload_text,
            params_text,
        })
    }

    fn render(&self, event: Event, out: &mut Vec<Value>) {
        self.inner.render(event, out)
    }

    fn render_texts<'t>(
        &self,
        stored: &StoredTexts<'t>,
        out: &mut Vec<Value>,
        texts: &mut Vec<(usize, CanonicalJson<'t>)>,
    ) -> bool {
        self.inner.render_texts(stored, out, texts)
    }

    fn payload_column(&self) -> Option<usize> {
        self.inner.payload_column()
    }

    fn params_column(&self) -> Option<usize> {
        self.inner.params_column()
    }

    fn catalog(&self) -> Option<&Catalog> {
        self.inner.catalog()
    }

    fn check(&self, event: &Event) -> Result<(), ValidationError> {
        self.inner.check(event)
    }

    fn check_with_params_text(
        &self,
        event: &Event,
        params: CanonicalJson<'_>,
    ) -> Result<(), ValidationError> {
        self.inner.check_with_params_text(event, params)
    }
}

/// A uevents record with its types checked; what `build` checks besides.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Record<'t> {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "opType")]
    op_type: String,
    #[serde(rename = "createdAt")]
    created_at: i64,
    #[serde(rename = "nameHints")]
    name_hints: Vec<String>,
    #[serde(rename = "userEmail", default)]
    user_email: Option<String>,
    #[serde(rename = "customerName", default)]
    customer_name: Option<String>,
    #[serde(rename = "responseCode", default)]
    response_code: Option<i64>,
    // Both left as text: the ingest path stores them as they came when it can (see
    // `auditsync_core::canonical_json`), and reads them strictly otherwise.
    #[serde(rename = "requestParams", default, borrow)]
    request_params: Option<&'t RawValue>,
    #[serde(rename = "requestPayload", default, borrow)]
    request_payload: Option<&'t RawValue>,
    #[serde(rename = "latencyInMillis", default)]
    latency_in_millis: Option<u64>,
}

fn build(r: Record<'_>) -> Result<Event, ValidationError> {
    if r.id.as_deref().is_some_and(|id| id.trim().is_empty()) {
        return Err(ValidationError::new("id", "must not be empty"));
    }
    if r.op_type.trim().is_empty() {
        return Err(ValidationError::new(OP_TYPE, "must not be empty"));
    }
    let time = fields::epoch_millis("createdAt", Value::from(r.created_at))?;
    let mut hints = r.name_hints;
    if hints.is_empty() || hints.iter().any(|h| h.trim().is_empty()) {
        return Err(ValidationError::new(
            NAME_HINTS,
            "must hold at least one non-empty operation name",
        ));
    }
    let mut event = Event {
        id: r.id.unwrap_or_default(),
        time,
        ..Event::default()
    };
    event.actor.user_email = r.user_email;
    event.organization = r.customer_name;
    event.outcome.code = r.response_code;
    event.outcome.latency_ms = r.latency_in_millis;
    event.extra.insert(OP_TYPE.into(), Value::String(r.op_type));
    if hints.len() > 1 {
        event
            .extra
            .insert(NAME_HINTS.into(), Value::from(hints.clone()));
    }
    event.action = hints.swap_remove(0);
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SAMPLE: &str = r#"{"opType": "Query", "createdAt": 1690610557857, "nameHints": ["User"], "userEmail": "prophecy-system@prophecy.io", "customerName": "prophecy.io", "responseCode": 200, "requestParams": {"email": "\"adminuser@prophecy.io\""}, "requestPayload": "[\"_id\",\"name\"]", "latencyInMillis": 11}"#;

    fn render(schema: &UeventsSchema, event: &Event) -> Value {
        let mut values = Vec::new();
        schema.render(event.clone(), &mut values);
        let map = schema
            .columns()
            .iter()
            .map(|c| c.name.clone())
            .zip(values)
            .collect();
        Value::Object(map)
    }

    #[test]
    fn a_sample_line_round_trips_exactly() {
        let schema = UeventsSchema::new();
        let input: Value = serde_json::from_str(SAMPLE).unwrap();
        let event = schema.parse(input.clone()).unwrap();
        assert_eq!(event.action, "User");
        assert_eq!(event.time, 1_690_610_557_857);
        assert_eq!(event.organization.as_deref(), Some("prophecy.io"));
        assert_eq!(render(&schema, &event), input);
    }

    #[test]
    fn the_fast_path_builds_the_same_events_and_refuses_what_parse_refuses() {
        let schema = UeventsSchema::new();
        let accepted = [
            SAMPLE.to_string(),
            json!({"opType": "M", "createdAt": 5, "nameHints": ["a", "b"], "requestPayload": null, "userEmail": null}).to_string(),
            json!({"opType": "M", "createdAt": 5, "nameHints": ["a"], "requestPayload": {"k": [1]}, "id": "x"}).to_string(),
        ];
        for text in accepted {
            let slow = schema.parse(serde_json::from_str(&text).unwrap()).unwrap();
            let fast = schema.parse_text(&text).unwrap().into_event().unwrap();
            assert_eq!(fast, slow, "{text}");
        }
        let refused = [
            json!({"opType": "", "createdAt": 5, "nameHints": ["a"]}),
            json!({"opType": "Q", "createdAt": -5, "nameHints": ["a"]}),
            json!({"opType": "Q", "createdAt": 5, "nameHints": [""]}),
            json!({"opType": "Q", "createdAt": 5, "nameHints": ["a"], "id": " "}),
            json!({"opType": "Q", "createdAt": 5, "nameHints": ["a"], "extra": 1}),
            json!({"opType": "Q", "createdAt": 5.5, "nameHints": ["a"]}),
        ];
        for value in refused {
            assert!(schema.parse(value.clone()).is_err(), "{value}");
            assert!(schema.parse_text(&value.to_string()).is_none(), "{value}");
        }
    }

    #[test]
    fn the_payload_column_is_request_payload() {
        let schema = UeventsSchema::new();
        let column = schema.payload_column().unwrap();
        assert_eq!(schema.columns()[column].name, "requestPayload");
    }

    #[test]
    fn several_name_hints_survive() {
        let schema = UeventsSchema::new();
        let input = json!({"opType": "Mutation", "createdAt": 1, "nameHints": ["a", "b"]});
        let event = schema.parse(input).unwrap();
        assert_eq!(render(&schema, &event)["nameHints"], json!(["a", "b"]));
    }

    #[test]
    fn bad_records_name_the_field() {
        let schema = UeventsSchema::new();
        let cases = [
            (json!([1]), "``", "expected a JSON object"),
            (
                json!({"createdAt": 1, "nameHints": ["a"]}),
                "`opType`",
                "missing",
            ),
            (
                json!({"opType": "Q", "nameHints": ["a"]}),
                "`createdAt`",
                "missing",
            ),
            (
                json!({"opType": "Q", "createdAt": "yesterday", "nameHints": ["a"]}),
                "`createdAt`",
                "milliseconds",
            ),
            (
                json!({"opType": "Q", "createdAt": -5, "nameHints": ["a"]}),
                "`createdAt`",
                "outside",
            ),
            (
                json!({"opType": "Q", "createdAt": 1, "nameHints": []}),
                "`nameHints`",
                "at least one",
            ),
            (
                json!({"opType": "Q", "createdAt": 1, "nameHints": ["a", 3]}),
                "`nameHints[1]`",
                "expected a string",
            ),
            (
                json!({"opType": "Q", "createdAt": 1, "nameHints": ["a"], "responseCode": "200"}),
                "`responseCode`",
                "integer",
            ),
            (
                json!({"opType": "Q", "createdAt": 1, "nameHints": ["a"], "requestParams": "x"}),
                "`requestParams`",
                "object",
            ),
            (
                json!({"opType": "Q", "createdAt": 1, "nameHints": ["a"], "latencyInMillis": -1}),
                "`latencyInMillis`",
                "non-negative",
            ),
            (
                json!({"opType": "Q", "createdAt": 1, "nameHints": ["a"], "usrEmail": "x"}),
                "`usrEmail`",
                "unknown field",
            ),
        ];
        for (input, field, problem) in cases {
            let err = schema.parse(input.clone()).unwrap_err().to_string();
            assert!(
                err.contains(field) && err.contains(problem),
                "{input}: {err}"
            );
        }
    }
}
