use auditsync_core::{Column, ColumnType, Event, Schema, ValidationError};
use serde_json::Value;

/// The `event` schema: auditsync's canonical [`Event`], one column per top-level field.
#[derive(Debug, Clone)]
pub struct CanonicalSchema {
    columns: Vec<Column>,
}

impl CanonicalSchema {
    /// The schema with its columns.
    pub fn new() -> Self {
        use ColumnType::*;
        let columns = [
            ("id", String),
            ("time", TimestampMillis),
            ("actor", Json),
            ("action", String),
            ("entity", Json),
            ("organization", String),
            ("outcome", Json),
            ("params", Json),
            ("payload", Json),
            ("previous", Json),
            ("next", Json),
            ("extra", Json),
        ]
        .into_iter()
        .map(|(name, ty)| Column::new(name, ty))
        .collect();
        Self { columns }
    }
}

impl Default for CanonicalSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl Schema for CanonicalSchema {
    fn name(&self) -> &str {
        "event"
    }

    fn version(&self) -> u32 {
        1
    }

    fn columns(&self) -> &[Column] {
        &self.columns
    }

    fn parse(&self, record: Value) -> Result<Event, ValidationError> {
        let event: Event = serde_json::from_value(record).map_err(|e| {
            let message = e.to_string();
            let field = auditsync_core::field_in_serde_message(&message).unwrap_or_default();
            ValidationError::new(field, message.as_str())
        })?;
        if event.action.trim().is_empty() {
            return Err(ValidationError::new("action", "must not be empty"));
        }
        Ok(event)
    }

    fn render(&self, event: Event, out: &mut Vec<Value>) {
        out.extend([
            Value::String(event.id),
            Value::from(event.time),
            json(&event.actor),
            Value::String(event.action),
            json(&event.entity),
            event.organization.map_or(Value::Null, Value::String),
            json(&event.outcome),
            Value::Object(event.params),
            event.payload.unwrap_or(Value::Null),
            event.previous.unwrap_or(Value::Null),
            event.next.unwrap_or(Value::Null),
            Value::Object(event.extra),
        ]);
    }
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    // The canonical types serialize infallibly (string keys, no custom serializers).
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_renders_canonical_events() {
        let schema = CanonicalSchema::new();
        let event = schema
            .parse(json!({"time": 7, "action": "graph.created", "actor": {"token_name": "ci"}}))
            .unwrap();
        let mut values = Vec::new();
        schema.render(event, &mut values);
        assert_eq!(values.len(), schema.columns().len());
        assert_eq!(values[2], json!({"token_name": "ci"}));
        let err = schema.parse(json!({"time": 7})).unwrap_err();
        assert!(err.to_string().contains("action"), "{err}");
    }
}
