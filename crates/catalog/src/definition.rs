//! The schema definition file: the format of the built-in schemas and of custom ones.

use std::path::Path;

use auditsync_core::{Actor, Catalog, ColumnType, ConfigError};
use serde::{Deserialize, Serialize};

/// A schema as a file describes it (JSON). The built-in schemas are such files, embedded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaDefinition {
    /// The name destinations and `schema` refer to.
    pub name: String,
    /// Version of the column set.
    pub version: u32,
    /// What the records are.
    #[serde(default)]
    pub description: String,
    /// Every record must name a user or an access token as its actor.
    #[serde(default)]
    pub require_actor: bool,
    /// The columns, in file order.
    pub columns: Vec<ColumnDefinition>,
    /// The known actions; empty accepts any action.
    #[serde(default)]
    pub catalog: Catalog,
}

/// One column and where its value lives in the canonical event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnDefinition {
    /// Its name in files and in producers' records.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// The event field it maps to: `id`, `time`, `action`, `organization`, `actor.user_id`,
    /// `actor.user_email`, `actor.user_name`, `actor.token_id`, `actor.token_name`,
    /// `actor.ip`, `actor.user_agent`, `entity.kind`, `entity.id`, `outcome.code`,
    /// `outcome.latency_ms`, `params`, `payload`, `previous`, `next` or `extra.<key>`.
    /// Defaults to `extra.<column name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A value computed from the event time instead of a field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive: Option<Derive>,
    /// Producers must send it (non-empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// What it holds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Values computed from the event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Derive {
    /// The year, an integer.
    Year,
    /// The first day of the month, a date.
    Month,
    /// The day, a date.
    Date,
}

/// Where a column's value lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Id,
    Time,
    Action,
    Organization,
    Actor(ActorField),
    EntityKind,
    EntityId,
    OutcomeCode,
    OutcomeLatency,
    Params,
    Payload,
    Previous,
    Next,
    Extra(String),
    Derived(Derive),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActorField {
    UserId,
    UserEmail,
    UserName,
    TokenId,
    TokenName,
    Ip,
    UserAgent,
}

impl ActorField {
    /// The actor's field this names.
    pub(crate) fn slot(self, actor: &mut Actor) -> &mut Option<String> {
        match self {
            ActorField::UserId => &mut actor.user_id,
            ActorField::UserEmail => &mut actor.user_email,
            ActorField::UserName => &mut actor.user_name,
            ActorField::TokenId => &mut actor.token_id,
            ActorField::TokenName => &mut actor.token_name,
            ActorField::Ip => &mut actor.ip,
            ActorField::UserAgent => &mut actor.user_agent,
        }
    }

    /// The text of the stored actor's field this names.
    pub(crate) fn text<'t>(
        self,
        actor: &auditsync_core::event_json::ActorTexts<'t>,
    ) -> Option<auditsync_core::canonical_json::CanonicalJson<'t>> {
        match self {
            ActorField::UserId => actor.user_id,
            ActorField::UserEmail => actor.user_email,
            ActorField::UserName => actor.user_name,
            ActorField::TokenId => actor.token_id,
            ActorField::TokenName => actor.token_name,
            ActorField::Ip => actor.ip,
            ActorField::UserAgent => actor.user_agent,
        }
    }
}

impl Target {
    fn parse(field: &str) -> Option<Self> {
        use ActorField::*;
        Some(match field {
            "id" => Target::Id,
            "time" => Target::Time,
            "action" => Target::Action,
            "organization" => Target::Organization,
            "actor.user_id" => Target::Actor(UserId),
            "actor.user_email" => Target::Actor(UserEmail),
            "actor.user_name" => Target::Actor(UserName),
            "actor.token_id" => Target::Actor(TokenId),
            "actor.token_name" => Target::Actor(TokenName),
            "actor.ip" => Target::Actor(Ip),
            "actor.user_agent" => Target::Actor(UserAgent),
            "entity.kind" => Target::EntityKind,
            "entity.id" => Target::EntityId,
            "outcome.code" => Target::OutcomeCode,
            "outcome.latency_ms" => Target::OutcomeLatency,
            "params" => Target::Params,
            "payload" => Target::Payload,
            "previous" => Target::Previous,
            "next" => Target::Next,
            other => {
                let key = other.strip_prefix("extra.")?;
                if key.is_empty() {
                    return None;
                }
                Target::Extra(key.to_string())
            }
        })
    }

    /// The column types a target can be written as.
    fn accepts(&self, ty: ColumnType) -> bool {
        use ColumnType::*;
        match self {
            Target::Time => matches!(ty, TimestampMillis | Timestamp),
            Target::Action => matches!(ty, String | StringArray),
            Target::OutcomeCode => ty == Integer,
            Target::OutcomeLatency => ty == Integer,
            Target::Params => ty == Json,
            Target::Payload | Target::Previous | Target::Next => ty == Json,
            Target::Extra(_) => true,
            Target::Derived(Derive::Year) => ty == Integer,
            Target::Derived(_) => ty == Date,
            Target::Id
            | Target::Organization
            | Target::Actor(_)
            | Target::EntityKind
            | Target::EntityId => ty == String,
        }
    }
}

/// A checked column: its definition and where it maps.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedColumn {
    pub(crate) def: ColumnDefinition,
    pub(crate) target: Target,
}

impl SchemaDefinition {
    /// Reads and checks a definition file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
            key: path.display().to_string(),
            message: format!("cannot read schema file: {e}"),
        })?;
        Self::from_json(&text).map_err(|e| match e {
            ConfigError::Invalid { key, message } => ConfigError::Invalid {
                key,
                message: format!("{message} (in schema file {})", path.display()),
            },
            other => other,
        })
    }

    /// Parses and checks definition JSON; errors name the key at fault.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let def: SchemaDefinition =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Invalid {
                key: e.path().to_string(),
                message: e.inner().to_string(),
            })?;
        def.resolve()?;
        Ok(def)
    }

    /// Checks the columns and maps each to its target.
    pub(crate) fn resolve(&self) -> Result<Vec<ResolvedColumn>, ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid { key, message };
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            return Err(invalid(
                "name".into(),
                format!(
                    "{:?} must be non-empty ASCII letters, digits, `_` or `-`",
                    self.name
                ),
            ));
        }
        let mut out: Vec<ResolvedColumn> = Vec::with_capacity(self.columns.len());
        for (i, col) in self.columns.iter().enumerate() {
            let at = |what: &str| format!("columns[{i}].{what}");
            if col.name.trim().is_empty() {
                return Err(invalid(at("name"), "must not be empty".into()));
            }
            if out.iter().any(|c| c.def.name == col.name) {
                return Err(invalid(
                    at("name"),
                    format!("column `{}` appears twice", col.name),
                ));
            }
            let target = match (&col.derive, &col.field) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        at("derive"),
                        "a column has either `field` or `derive`, not both".into(),
                    ))
                }
                (Some(d), None) => Target::Derived(*d),
                (None, Some(f)) => Target::parse(f).ok_or_else(|| {
                    invalid(
                        at("field"),
                        format!(
                            "unknown event field `{f}`; expected id, time, action, organization, \
                             actor.user_id, actor.user_email, actor.user_name, actor.token_id, \
                             actor.token_name, actor.ip, actor.user_agent, entity.kind, \
                             entity.id, outcome.code, outcome.latency_ms, params, payload, \
                             previous, next or extra.<key>"
                        ),
                    )
                })?,
                (None, None) => Target::Extra(col.name.clone()),
            };
            if !target.accepts(col.ty) {
                return Err(invalid(
                    at("type"),
                    format!(
                        "type {} cannot hold `{}`",
                        type_name(col.ty),
                        col.field.as_deref().unwrap_or("a derived value")
                    ),
                ));
            }
            if !matches!(target, Target::Extra(_) | Target::Derived(_))
                && out.iter().any(|c| c.target == target)
            {
                return Err(invalid(
                    at("field"),
                    format!(
                        "two columns map to `{}`",
                        col.field.as_deref().unwrap_or("")
                    ),
                ));
            }
            out.push(ResolvedColumn {
                def: col.clone(),
                target,
            });
        }
        for (needed, what) in [(Target::Time, "time"), (Target::Action, "action")] {
            if !out.iter().any(|c| c.target == needed) {
                return Err(invalid(
                    "columns".into(),
                    format!("one column must map to `{what}` (set its `field`)"),
                ));
            }
        }
        Ok(out)
    }
}

/// The name of a column type as definition files spell it.
pub fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::String => "string",
        ColumnType::Integer => "integer",
        ColumnType::Boolean => "boolean",
        ColumnType::TimestampMillis => "timestamp_millis",
        ColumnType::Timestamp => "timestamp",
        ColumnType::Date => "date",
        ColumnType::StringArray => "string_array",
        ColumnType::Json => "json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_definitions_name_the_key() {
        let base =
            |columns: &str| format!(r#"{{"name": "mine", "version": 1, "columns": [{columns}]}}"#);
        let time = r#"{"name": "t", "type": "timestamp", "field": "time"}"#;
        let action = r#"{"name": "a", "type": "string", "field": "action"}"#;
        let cases = [
            (base(time), "columns", "`action`"),
            (
                base(&format!(
                    r#"{time}, {action}, {{"name": "x", "type": "string", "field": "actor.nobody"}}"#
                )),
                "columns[2].field",
                "unknown event field",
            ),
            (
                base(&format!(
                    r#"{time}, {action}, {{"name": "x", "type": "integer", "field": "params"}}"#
                )),
                "columns[2].type",
                "cannot hold",
            ),
            (
                base(&format!(
                    r#"{time}, {action}, {{"name": "a", "type": "string"}}"#
                )),
                "columns[2].name",
                "twice",
            ),
            (
                base(&format!(
                    r#"{time}, {action}, {{"name": "y", "type": "decimal"}}"#
                )),
                "columns[2].type",
                "unknown variant",
            ),
            (
                base(&format!(
                    r#"{time}, {action}, {{"name": "y", "type": "date", "derive": "date", "field": "time"}}"#
                )),
                "columns[2].derive",
                "not both",
            ),
            (
                r#"{"name": "a b", "version": 1, "columns": []}"#.to_string(),
                "name",
                "ASCII",
            ),
        ];
        for (text, key, problem) in cases {
            let err = SchemaDefinition::from_json(&text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains(problem),
                "{text}: {err}"
            );
        }
        assert!(SchemaDefinition::from_json(&base(&format!("{time}, {action}"))).is_ok());
    }
}
