use auditsync_core::{Column, ColumnType, Event, Schema, ValidationError};
use serde_json::Value;

use crate::fields::{self, Fields};

/// The `uevents` schema: one line per user action, as the self-hosted user-events export
/// writes it.
///
/// Mapping to the canonical event: `createdAt` → `time`, `nameHints[0]` → `action`,
/// `userEmail` → `actor.user_email`, `customerName` → `organization`, `responseCode` →
/// `outcome.code`, `latencyInMillis` → `outcome.latency_ms`, `requestParams` → `params`,
/// `requestPayload` → `payload`. `opType` and a `nameHints` list of more than one name are
/// kept in `extra` under their own names, so a record renders back exactly as it came in.
/// An optional `id` is taken as the event's idempotency key; it is not a column.
#[derive(Debug, Clone)]
pub struct UeventsSchema {
    columns: Vec<Column>,
}

const OP_TYPE: &str = "opType";
const NAME_HINTS: &str = "nameHints";

impl UeventsSchema {
    /// The schema with its nine columns.
    pub fn new() -> Self {
        use ColumnType::*;
        let columns = [
            (OP_TYPE, String),
            ("createdAt", TimestampMillis),
            (NAME_HINTS, StringArray),
            ("userEmail", String),
            ("customerName", String),
            ("responseCode", Integer),
            ("requestParams", Json),
            ("requestPayload", Json),
            ("latencyInMillis", Integer),
        ]
        .into_iter()
        .map(|(name, ty)| Column::new(name, ty))
        .collect();
        Self { columns }
    }
}

impl Default for UeventsSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl Schema for UeventsSchema {
    fn name(&self) -> &str {
        "uevents"
    }

    fn version(&self) -> u32 {
        1
    }

    fn columns(&self) -> &[Column] {
        &self.columns
    }

    fn parse(&self, record: Value) -> Result<Event, ValidationError> {
        let mut allowed: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        allowed.push("id");
        let mut f = Fields::new(record, &allowed)?;
        let id = f
            .optional("id", fields::non_empty_string)?
            .unwrap_or_default();
        let op_type = f.required(OP_TYPE, fields::non_empty_string)?;
        let time = f.required("createdAt", fields::epoch_millis)?;
        let mut hints = f.required(NAME_HINTS, fields::string_array)?;
        if hints.is_empty() || hints.iter().any(|h| h.trim().is_empty()) {
            return Err(ValidationError::new(
                NAME_HINTS,
                "must hold at least one non-empty operation name",
            ));
        }
        let mut event = Event {
            id,
            time,
            ..Event::default()
        };
        event.actor.user_email = f.optional("userEmail", fields::string)?;
        event.organization = f.optional("customerName", fields::string)?;
        event.outcome.code = f.optional("responseCode", fields::integer)?;
        event.params = f
            .optional("requestParams", fields::object)?
            .unwrap_or_default();
        event.payload = f.any("requestPayload");
        event.outcome.latency_ms = f.optional("latencyInMillis", fields::unsigned)?;
        event.extra.insert(OP_TYPE.into(), Value::String(op_type));
        if hints.len() > 1 {
            event
                .extra
                .insert(NAME_HINTS.into(), Value::from(hints.clone()));
        }
        event.action = hints.swap_remove(0);
        Ok(event)
    }

    fn render(&self, mut event: Event, out: &mut Vec<Value>) {
        let opt_str = |s: Option<String>| s.map_or(Value::Null, Value::String);
        let name_hints = event
            .extra
            .remove(NAME_HINTS)
            .unwrap_or_else(|| Value::from(vec![event.action]));
        out.extend([
            event.extra.remove(OP_TYPE).unwrap_or(Value::Null),
            Value::from(event.time),
            name_hints,
            opt_str(event.actor.user_email),
            opt_str(event.organization),
            event.outcome.code.map_or(Value::Null, Value::from),
            Value::Object(event.params),
            event.payload.unwrap_or(Value::Null),
            event.outcome.latency_ms.map_or(Value::Null, Value::from),
        ]);
    }
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
