//! A schema built from a [`SchemaDefinition`]: parsing, rendering and catalog checks driven by
//! the column list.

use auditsync_core::canonical_json::CanonicalJson;
use auditsync_core::event_json::StoredTexts;
use auditsync_core::{
    Catalog, CatalogEntry, CatalogError, Column, ColumnType, Entity, Event, Schema, ValidationError,
};
use serde_json::Value;

use crate::definition::{ActorField, Derive, ResolvedColumn, SchemaDefinition, Target};
use crate::fields::{self, Fields};
use crate::time;

/// A schema whose columns, mapping and catalog come from a definition file.
#[derive(Debug, Clone)]
pub struct DefinedSchema {
    definition: SchemaDefinition,
    resolved: Vec<ResolvedColumn>,
    columns: Vec<Column>,
    /// Input keys accepted: the column names, plus `id` when no column holds the id.
    allowed: Vec<String>,
    id_key: bool,
}

impl DefinedSchema {
    /// Builds the schema; the definition is checked again.
    pub fn new(definition: SchemaDefinition) -> Result<Self, auditsync_core::ConfigError> {
        let resolved = definition.resolve()?;
        let columns = resolved
            .iter()
            .map(|c| Column::new(c.def.name.clone(), c.def.ty))
            .collect();
        let id_key = !resolved.iter().any(|c| c.target == Target::Id);
        let mut allowed: Vec<String> = resolved.iter().map(|c| c.def.name.clone()).collect();
        if id_key {
            allowed.push("id".into());
        }
        Ok(Self {
            definition,
            resolved,
            columns,
            allowed,
            id_key,
        })
    }

    /// The definition it was built from.
    pub fn definition(&self) -> &SchemaDefinition {
        &self.definition
    }

    fn column_for(&self, target: &Target) -> Option<&ResolvedColumn> {
        self.resolved.iter().find(|c| &c.target == target)
    }

    /// The action names an event carries: all of a `string_array` action column, else the
    /// action.
    fn action_names<'a>(&self, event: &'a Event) -> Vec<&'a str> {
        if let Some(col) = self.column_for(&Target::Action) {
            if let Some(Value::Array(names)) = event.extra.get(&col.def.name) {
                return names.iter().filter_map(Value::as_str).collect();
            }
        }
        vec![event.action.as_str()]
    }

    fn read(col: &ResolvedColumn, value: Value) -> Result<Value, ValidationError> {
        let name = col.def.name.as_str();
        Ok(match col.def.ty {
            ColumnType::String if col.def.required => {
                Value::String(fields::non_empty_string(name, value)?)
            }
            ColumnType::String => Value::String(fields::string(name, value)?),
            ColumnType::Integer => match col.target {
                Target::OutcomeLatency => Value::from(fields::unsigned(name, value)?),
                _ => Value::from(fields::integer(name, value)?),
            },
            ColumnType::Boolean => Value::Bool(fields::boolean(name, value)?),
            ColumnType::TimestampMillis => Value::from(fields::epoch_millis(name, value)?),
            ColumnType::Timestamp => Value::from(time::parse_timestamp(name, value)?),
            ColumnType::Date => Value::String(time::parse_date(name, value)?),
            ColumnType::StringArray => {
                let items = fields::string_array(name, value)?;
                if col.target == Target::Action
                    && (items.is_empty() || items.iter().any(|h| h.trim().is_empty()))
                {
                    return Err(ValidationError::new(
                        name,
                        "must hold at least one non-empty action name",
                    ));
                }
                Value::from(items)
            }
            ColumnType::Json => match col.target {
                Target::Params => Value::Object(fields::object(name, value)?),
                _ => value,
            },
        })
    }

    fn derived(derive: Derive, time_ms: i64) -> Value {
        match derive {
            Derive::Year => Value::from(time::year(time_ms)),
            Derive::Month => Value::String(time::month_start(time_ms)),
            Derive::Date => Value::String(time::date(time_ms)),
        }
    }
}

/// The type a stored field's text must have to stand for the field's value.
#[derive(Clone, Copy)]
enum Kind {
    String,
    Object,
    I64,
    U64,
    Any,
}

impl Kind {
    fn holds(self, text: &str) -> bool {
        match self {
            Kind::String => text.starts_with('"'),
            Kind::Object => text.starts_with('{'),
            // The text is in serde_json's form already (no sign on zero, no leading zero):
            // what is left to see is whether it fits.
            Kind::I64 => text.parse::<i64>().is_ok(),
            Kind::U64 => text.parse::<u64>().is_ok(),
            Kind::Any => true,
        }
    }
}

/// The string a JSON string's text in serde_json's form stands for: what is between its
/// quotes when it holds no escape (as most actions), else what serde_json reads.
fn string_of(text: &str) -> Option<String> {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inside) if !inside.contains('\\') => Some(inside.to_owned()),
        _ => serde_json::from_str(text).ok(),
    }
}

fn opt_string(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

impl Schema for DefinedSchema {
    fn name(&self) -> &str {
        &self.definition.name
    }

    fn version(&self) -> u32 {
        self.definition.version
    }

    fn columns(&self) -> &[Column] {
        &self.columns
    }

    fn parse(&self, record: Value) -> Result<Event, ValidationError> {
        let allowed: Vec<&str> = self.allowed.iter().map(String::as_str).collect();
        let mut f = Fields::new(record, &allowed)?;
        let mut event = Event::default();
        if self.id_key {
            event.id = f
                .optional("id", fields::non_empty_string)?
                .unwrap_or_default();
        }
        let mut derived = Vec::new();
        for col in &self.resolved {
            let name = col.def.name.as_str();
            let value = if col.def.required {
                Some(f.required(name, |_, v| Ok(v))?)
            } else {
                f.optional(name, |_, v| Ok(v))?
            };
            let Some(value) = value else { continue };
            let value = Self::read(col, value)?;
            match &col.target {
                Target::Derived(d) => derived.push((col, *d, value)),
                Target::Id => {
                    event.id = opt_string(value).unwrap_or_default();
                    if event.id.trim().is_empty() {
                        return Err(ValidationError::new(name, "must not be empty"));
                    }
                }
                Target::Time => event.time = value.as_i64().unwrap_or_default(),
                Target::Action => match value {
                    Value::Array(mut names) => {
                        if names.len() > 1 {
                            event.extra.insert(name.into(), Value::Array(names.clone()));
                        }
                        event.action = opt_string(names.swap_remove(0)).unwrap_or_default();
                    }
                    other => event.action = opt_string(other).unwrap_or_default(),
                },
                Target::Organization => event.organization = opt_string(value),
                Target::Actor(field) => *field.slot(&mut event.actor) = opt_string(value),
                Target::EntityKind => {
                    event.entity.get_or_insert_with(Entity::default).kind =
                        opt_string(value).unwrap_or_default();
                }
                Target::EntityId => {
                    event.entity.get_or_insert_with(Entity::default).id = opt_string(value);
                }
                Target::OutcomeCode => event.outcome.code = value.as_i64(),
                Target::OutcomeLatency => event.outcome.latency_ms = value.as_u64(),
                Target::Params => {
                    if let Value::Object(map) = value {
                        event.params = map;
                    }
                }
                Target::Payload => event.payload = Some(value),
                Target::Previous => event.previous = Some(value),
                Target::Next => event.next = Some(value),
                Target::Extra(key) => {
                    event.extra.insert(key.clone(), value);
                }
            }
        }
        // Derived columns are computed on output; a producer may send them, but then they
        // must agree with the event time rather than be silently replaced.
        for (col, derive, given) in derived {
            let expected = Self::derived(derive, event.time);
            if given != expected {
                return Err(ValidationError::new(
                    col.def.name.as_str(),
                    format!("{given} does not match the event time (expected {expected})"),
                ));
            }
        }
        Ok(event)
    }

    fn render(&self, mut event: Event, out: &mut Vec<Value>) {
        let string = |s: Option<String>| s.map_or(Value::Null, Value::String);
        for col in &self.resolved {
            let value = match &col.target {
                Target::Id => Value::String(std::mem::take(&mut event.id)),
                Target::Time => match col.def.ty {
                    ColumnType::Timestamp => Value::String(time::timestamp(event.time)),
                    _ => Value::from(event.time),
                },
                Target::Derived(d) => Self::derived(*d, event.time),
                Target::Action => match col.def.ty {
                    ColumnType::StringArray => event
                        .extra
                        .remove(&col.def.name)
                        .unwrap_or_else(|| Value::from(vec![event.action.clone()])),
                    _ => Value::String(event.action.clone()),
                },
                Target::Organization => string(event.organization.take()),
                Target::Actor(field) => string(field.slot(&mut event.actor).take()),
                Target::EntityKind => string(event.entity.as_ref().map(|e| e.kind.clone())),
                Target::EntityId => string(event.entity.as_ref().and_then(|e| e.id.clone())),
                Target::OutcomeCode => event.outcome.code.map_or(Value::Null, Value::from),
                Target::OutcomeLatency => event.outcome.latency_ms.map_or(Value::Null, Value::from),
                Target::Params => Value::Object(std::mem::take(&mut event.params)),
                Target::Payload => event.payload.take().unwrap_or(Value::Null),
                Target::Previous => event.previous.take().unwrap_or(Value::Null),
                Target::Next => event.next.take().unwrap_or(Value::Null),
                Target::Extra(key) => event.extra.remove(key).unwrap_or(Value::Null),
            };
            out.push(value);
        }
    }

    fn render_texts<'t>(
        &self,
        stored: &StoredTexts<'t>,
        out: &mut Vec<Value>,
        texts: &mut Vec<(usize, CanonicalJson<'t>)>,
    ) -> bool {
        // A definition maps each field to one column at most, so `render` moving a field
        // out of the event (instead of copying it) is never seen, and copying texts here
        // gives the same record.
        let string = |text: Option<CanonicalJson<'t>>| text.map(|t| (t, Kind::String));
        for (column, col) in self.resolved.iter().enumerate() {
            let text = match &col.target {
                Target::Id => match stored.id {
                    Some(id) => Some((id, Kind::String)),
                    None => {
                        out.push(Value::String(String::new()));
                        continue;
                    }
                },
                Target::Time => {
                    out.push(match col.def.ty {
                        ColumnType::Timestamp => Value::String(time::timestamp(stored.time)),
                        _ => Value::from(stored.time),
                    });
                    continue;
                }
                Target::Derived(d) => {
                    out.push(Self::derived(*d, stored.time));
                    continue;
                }
                Target::Action => match col.def.ty {
                    ColumnType::StringArray => match stored.extra.get(&col.def.name) {
                        Some(names) => Some((names, Kind::Any)),
                        None => {
                            let Some(action) = string_of(stored.action.as_str()) else {
                                return false;
                            };
                            out.push(Value::from(vec![action]));
                            continue;
                        }
                    },
                    _ => Some((stored.action, Kind::String)),
                },
                Target::Organization => string(stored.organization),
                Target::Actor(field) => string(field.text(&stored.actor)),
                Target::EntityKind => string(stored.entity.as_ref().map(|e| e.kind)),
                Target::EntityId => string(stored.entity.as_ref().and_then(|e| e.id)),
                Target::OutcomeCode => stored.outcome.code.map(|t| (t, Kind::I64)),
                Target::OutcomeLatency => stored.outcome.latency_ms.map(|t| (t, Kind::U64)),
                Target::Params => match stored.params {
                    Some(params) => Some((params, Kind::Object)),
                    None => {
                        out.push(Value::Object(serde_json::Map::new()));
                        continue;
                    }
                },
                Target::Payload => stored.payload.map(|t| (t, Kind::Any)),
                Target::Previous => stored.previous.map(|t| (t, Kind::Any)),
                Target::Next => stored.next.map(|t| (t, Kind::Any)),
                Target::Extra(key) => stored.extra.get(key).map(|t| (t, Kind::Any)),
            };
            match text {
                None => out.push(Value::Null),
                Some((text, kind)) => {
                    // The text (in serde_json's form) stands for the value only if it has the
                    // field's type: else decoding the event fails, as it must.
                    if !kind.holds(text.as_str()) {
                        return false;
                    }
                    out.push(Value::Null);
                    texts.push((column, text));
                }
            }
        }
        true
    }

    fn payload_column(&self) -> Option<usize> {
        self.resolved
            .iter()
            .position(|c| c.target == Target::Payload && c.def.ty == ColumnType::Json)
    }

    fn params_column(&self) -> Option<usize> {
        self.resolved
            .iter()
            .position(|c| c.target == Target::Params && c.def.ty == ColumnType::Json)
    }

    fn catalog(&self) -> Option<&Catalog> {
        Some(&self.definition.catalog).filter(|c| !c.is_empty())
    }

    fn check(&self, event: &Event) -> Result<(), ValidationError> {
        self.check_parts(event, |names| {
            self.definition.catalog.check(names, &event.params)
        })
    }

    fn check_with_params_text(
        &self,
        event: &Event,
        params: CanonicalJson<'_>,
    ) -> Result<(), ValidationError> {
        self.check_parts(event, |names| {
            self.definition.catalog.check_params_text(names, params)
        })
    }
}

impl DefinedSchema {
    /// [`Schema::check`], with the catalog's check of the event's action names given.
    fn check_parts<'a>(
        &'a self,
        event: &Event,
        catalog_check: impl FnOnce(&[&str]) -> Result<Option<&'a CatalogEntry>, CatalogError>,
    ) -> Result<(), ValidationError> {
        if self.definition.require_actor && !event.actor.is_identified() {
            let actor_columns: Vec<&str> = self
                .resolved
                .iter()
                .filter(|c| {
                    matches!(
                        c.target,
                        Target::Actor(
                            ActorField::UserId
                                | ActorField::UserEmail
                                | ActorField::UserName
                                | ActorField::TokenId
                                | ActorField::TokenName
                        )
                    )
                })
                .map(|c| c.def.name.as_str())
                .collect();
            return Err(ValidationError::new(
                actor_columns.join("|"),
                format!(
                    "an action is done by a user or an access token: set at least one of {}",
                    actor_columns.join(", ")
                ),
            ));
        }
        let names = self.action_names(event);
        if names.len() == 1 && auditsync_core::OWN_ACTIONS.contains(&names[0]) {
            return Ok(());
        }
        let action_column = self
            .column_for(&Target::Action)
            .map_or("action", |c| c.def.name.as_str());
        let params_column = self
            .column_for(&Target::Params)
            .map_or("params", |c| c.def.name.as_str());
        match catalog_check(&names) {
            Ok(_) => Ok(()),
            Err(CatalogError::UnknownAction { names }) => Err(ValidationError::new(
                action_column,
                format!(
                    "unknown action {}: not among the {} actions of the `{}` catalog",
                    names.join(", "),
                    self.definition.catalog.len(),
                    self.definition.name
                ),
            )),
            Err(CatalogError::MissingParam { action, param }) => Err(ValidationError::new(
                format!("{params_column}.{param}"),
                format!("missing; action `{action}` requires it"),
            )),
            Err(other) => Err(ValidationError::new(action_column, other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::string_of;

    #[test]
    fn string_of_reads_as_serde_json_does() {
        for text in [
            r#""getUser""#,
            r#""""#,
            r#""Ünïcode ✓""#,
            r#""say \"hi\"""#,
            r#""back\\slash""#,
            r#""tab\tand\nline""#,
            r#""\u001f""#,
        ] {
            let read: String = serde_json::from_str(text).unwrap();
            assert_eq!(string_of(text), Some(read), "{text}");
        }
        assert_eq!(string_of("\"open"), None);
        assert_eq!(string_of("12"), None);
    }
}
