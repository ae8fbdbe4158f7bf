use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Who performed an action: a user, an access token, or both.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// Stable user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// User's email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_email: Option<String>,
    /// User's display or login name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// Id of the access token used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Name of the access token used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_name: Option<String>,
    /// Client IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Client user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl Actor {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self == &Actor::default()
    }

    /// True when a user or an access token is identified (the actor rule of seed 004).
    pub fn is_identified(&self) -> bool {
        self.user_id.is_some()
            || self.user_email.is_some()
            || self.user_name.is_some()
            || self.token_id.is_some()
            || self.token_name.is_some()
    }
}

/// The thing an action was applied to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    /// Kind of entity, e.g. `Project` or `graph`.
    pub kind: String,
    /// Its id, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// How an action ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Response code (HTTP status or the application's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// How long the action took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

impl Outcome {
    /// True when neither the code nor the latency is set.
    pub(crate) fn is_empty(&self) -> bool {
        self == &Outcome::default()
    }
}

/// One audit event in auditsync's canonical form.
///
/// Schemas translate between this form and their own records; the store keeps this form.
/// Fields a schema needs but the canonical form lacks go to [`Event::extra`] under the
/// schema's own names, so that nothing a producer sent is lost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Idempotency key: the same id ingested twice is stored once. Assigned (UUIDv7) at
    /// ingest when the producer gives none.
    #[serde(default)]
    pub id: String,
    /// When the action happened, in milliseconds since the Unix epoch (UTC).
    pub time: i64,
    /// Who acted.
    #[serde(default, skip_serializing_if = "Actor::is_empty")]
    pub actor: Actor,
    /// What was done, e.g. `getUser` or `graph.created`.
    pub action: String,
    /// What it was done to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<Entity>,
    /// The organization (tenant) the action belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// How it ended.
    #[serde(default, skip_serializing_if = "Outcome::is_empty")]
    pub outcome: Outcome,
    /// Request parameters.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    /// Request payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// State before the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Value>,
    /// State after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Value>,
    /// Schema-specific fields, under the schema's own names.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// The actions auditsync records about itself (a config change, a verify run, a range
/// export, a download through the export API). Every built-in schema accepts them beside its
/// catalog, so that an exported file holding them can be read back and ingested again; they
/// still have to satisfy the schema's types and actor rule (their actor is a token name).
pub const OWN_ACTIONS: &[&str] = &[
    "auditsync.config.changed",
    "auditsync.verify.completed",
    "auditsync.export.range",
    "audit_log.export.downloaded",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_and_rejects_unknown_fields() {
        let json = r#"{"id":"e1","time":5,"actor":{"user_email":"a@b.c"},"action":"getUser","params":{"z":1,"a":2}}"#;
        let event: Event = serde_json::from_str(json).unwrap();
        assert_eq!(event.actor.user_email.as_deref(), Some("a@b.c"));
        // preserve_order keeps the producer's parameter order
        assert_eq!(serde_json::to_string(&event).unwrap(), json);
        let err = serde_json::from_str::<Event>(r#"{"time":1,"action":"x","acton":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `acton`"), "{err}");
    }

    #[test]
    fn actor_rule() {
        let mut actor = Actor {
            ip: Some("127.0.0.1".into()),
            ..Actor::default()
        };
        assert!(!actor.is_identified());
        actor.token_name = Some("ci".into());
        assert!(actor.is_identified());
    }
}
