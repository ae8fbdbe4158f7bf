//! Events auditsync records about its own actions (downloads, range exports, config changes,
//! verify runs): taking audit data out or changing how it is kept is itself audited.

use auditsync_core::Event;
use serde::Serialize;
use serde_json::{Map, Value};

/// An event of `action` happening now, done through `token` (an admin token's name, or
/// `auditsync` / `cli` for the service and the command line), with a fresh id.
pub fn own_event(action: &str, token: impl Into<String>) -> Event {
    let mut event = Event {
        id: uuid::Uuid::now_v7().to_string(),
        time: chrono::Utc::now().timestamp_millis(),
        action: action.into(),
        ..Event::default()
    };
    event.actor.token_name = Some(token.into());
    // uevents requires a GraphQL operation type: a change of how data is kept is a
    // mutation; reading data out (a range, a download, a verify run) is a query.
    let op_type = if action == "auditsync.config.changed" {
        "Mutation"
    } else {
        "Query"
    };
    event.extra.insert("opType".into(), op_type.into());
    event
}

/// The fields of `args` that are set, as event parameters.
pub fn params_of(args: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(args) {
        Ok(Value::Object(params)) => params.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => Map::new(),
    }
}
