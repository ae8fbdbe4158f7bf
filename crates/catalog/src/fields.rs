//! Typed readers for the fields of an incoming JSON record; each error names the field.

use auditsync_core::ValidationError;
use serde_json::{Map, Value};

pub(crate) struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    /// Takes a JSON object, refusing fields outside `allowed`.
    pub(crate) fn new(record: Value, allowed: &[&str]) -> Result<Self, ValidationError> {
        let Value::Object(map) = record else {
            return Err(ValidationError::new(
                "",
                format!("expected a JSON object, got {}", kind(&record)),
            ));
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ValidationError::new(
                unknown.as_str(),
                format!("unknown field; expected one of {}", allowed.join(", ")),
            ));
        }
        Ok(Self { map })
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        match self.map.remove(name) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    pub(crate) fn required<T>(
        &mut self,
        name: &str,
        read: fn(&str, Value) -> Result<T, ValidationError>,
    ) -> Result<T, ValidationError> {
        let value = self
            .take(name)
            .ok_or_else(|| ValidationError::new(name, "missing required field"))?;
        read(name, value)
    }

    pub(crate) fn optional<T>(
        &mut self,
        name: &str,
        read: fn(&str, Value) -> Result<T, ValidationError>,
    ) -> Result<Option<T>, ValidationError> {
        self.take(name).map(|v| read(name, v)).transpose()
    }
}

pub(crate) use auditsync_core::strict_json::kind;

fn wrong(name: &str, expected: &str, got: &Value) -> ValidationError {
    ValidationError::new(name, format!("expected {expected}, got {}", kind(got)))
}

pub(crate) fn string(name: &str, v: Value) -> Result<String, ValidationError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(wrong(name, "a string", &other)),
    }
}

pub(crate) fn non_empty_string(name: &str, v: Value) -> Result<String, ValidationError> {
    let s = string(name, v)?;
    if s.trim().is_empty() {
        return Err(ValidationError::new(name, "must not be empty"));
    }
    Ok(s)
}

pub(crate) fn boolean(name: &str, v: Value) -> Result<bool, ValidationError> {
    v.as_bool().ok_or_else(|| wrong(name, "a boolean", &v))
}

pub(crate) fn integer(name: &str, v: Value) -> Result<i64, ValidationError> {
    v.as_i64().ok_or_else(|| wrong(name, "an integer", &v))
}

pub(crate) fn unsigned(name: &str, v: Value) -> Result<u64, ValidationError> {
    v.as_u64()
        .ok_or_else(|| wrong(name, "a non-negative integer", &v))
}

/// Milliseconds since the epoch, between 1970 and 9999.
pub(crate) fn epoch_millis(name: &str, v: Value) -> Result<i64, ValidationError> {
    const MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let ms = v
        .as_i64()
        .ok_or_else(|| wrong(name, "milliseconds since the Unix epoch", &v))?;
    if !(0..=MAX).contains(&ms) {
        return Err(ValidationError::new(
            name,
            format!("{ms} is outside 1970..9999 in epoch milliseconds"),
        ));
    }
    Ok(ms)
}

pub(crate) fn object(name: &str, v: Value) -> Result<Map<String, Value>, ValidationError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(wrong(name, "an object", &other)),
    }
}

pub(crate) fn string_array(name: &str, v: Value) -> Result<Vec<String>, ValidationError> {
    let Value::Array(items) = v else {
        return Err(wrong(name, "an array of strings", &v));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| string(&format!("{name}[{i}]"), item))
        .collect()
}
