//! Event catalogs: the actions a schema knows and the request parameters each requires.

use std::collections::HashMap;

use crate::canonical_json::{self, CanonicalJson};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One known action (an operation, an event type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// The action's name as producers should send it, e.g. `getUser` or `graph.created`.
    pub name: String,
    /// The entity the action applies to, e.g. `User` or `graph`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
    /// What the action means.
    #[serde(default)]
    pub description: String,
    /// The request parameters the action carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// The parameters that must be present; all of `params` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<Vec<String>>,
    /// Other spellings of the name found in the reference documents (typos included), accepted
    /// as the same action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Names producers emit for this action in other words (e.g. a GraphQL field name `User`
    /// for `getUser`), accepted as the same action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    /// Why `required` differs from `params`, or any other note on the row.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl CatalogEntry {
    /// The parameters that must be present.
    pub fn required_params(&self) -> &[String] {
        self.required.as_deref().unwrap_or(&self.params)
    }

    /// Every name the entry answers to: its name, aliases and hints.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str())
            .chain(self.aliases.iter().map(String::as_str))
            .chain(self.hints.iter().map(String::as_str))
    }
}

/// The list of actions a schema accepts. An action name may have several entries (the same
/// operation used with different parameter sets); an event matches if it fits any of them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Vec<CatalogEntry>", into = "Vec<CatalogEntry>")]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
    by_name: HashMap<String, Vec<usize>>,
}

impl PartialEq for Catalog {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl From<Vec<CatalogEntry>> for Catalog {
    fn from(entries: Vec<CatalogEntry>) -> Self {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            for name in entry.names() {
                let rows = by_name.entry(name.to_string()).or_default();
                if !rows.contains(&i) {
                    rows.push(i);
                }
            }
        }
        Self { entries, by_name }
    }
}

impl From<Catalog> for Vec<CatalogEntry> {
    fn from(catalog: Catalog) -> Self {
        catalog.entries
    }
}

/// Why an event does not fit its catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// No entry answers to any of the names.
    #[error("unknown action {names:?}: not in the catalog")]
    UnknownAction {
        /// The names the event carried.
        names: Vec<String>,
    },
    /// The action is known but a required parameter is absent (or null).
    #[error("action `{action}` requires parameter `{param}`")]
    MissingParam {
        /// The catalog name of the action.
        action: String,
        /// The first missing parameter.
        param: String,
    },
}

impl Catalog {
    /// The entries, in file order.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the catalog has no entry (then every action is accepted).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries that answer to `name` (by name, alias or hint).
    pub fn lookup(&self, name: &str) -> impl Iterator<Item = &CatalogEntry> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| &self.entries[i])
    }

    /// Checks that one of `names` is a known action whose required parameters are all in
    /// `params`; returns the entry it matched. An empty catalog accepts everything.
    pub fn check<'a>(
        &'a self,
        names: &[&str],
        params: &Map<String, Value>,
    ) -> Result<Option<&'a CatalogEntry>, CatalogError> {
        self.check_with(names, &|name| has_param(params, name))
    }

    /// [`Catalog::check`] of parameters still their JSON text in serde_json's form, looked
    /// up without reading the whole text where the name is not a path.
    pub fn check_params_text<'a>(
        &'a self,
        names: &[&str],
        params: CanonicalJson<'_>,
    ) -> Result<Option<&'a CatalogEntry>, CatalogError> {
        self.check_with(names, &|name| text_has_param(params, name))
    }

    fn check_with<'a>(
        &'a self,
        names: &[&str],
        has_param: &dyn Fn(&str) -> bool,
    ) -> Result<Option<&'a CatalogEntry>, CatalogError> {
        if self.is_empty() {
            return Ok(None);
        }
        let mut first_missing = None;
        for name in names {
            for entry in self.lookup(name) {
                let missing = entry.required_params().iter().find(|p| !has_param(p));
                match missing {
                    None => return Ok(Some(entry)),
                    Some(param) => {
                        first_missing.get_or_insert_with(|| CatalogError::MissingParam {
                            action: entry.name.clone(),
                            param: param.clone(),
                        });
                    }
                }
            }
        }
        Err(
            first_missing.unwrap_or_else(|| CatalogError::UnknownAction {
                names: names.iter().map(|n| n.to_string()).collect(),
            }),
        )
    }
}

/// [`has_param`] of parameters still their JSON text: a plain name among the top-level
/// members, a path (or a key with an escape) in the text read whole.
fn text_has_param(params: CanonicalJson<'_>, name: &str) -> bool {
    if !name.contains('.') {
        let mut found = false;
        let walked = canonical_json::members(params.as_str(), &|_| false, &mut |_, key, value| {
            if key == name {
                found = value.as_str() != "null";
            }
            true
        });
        if walked {
            return found;
        }
    }
    serde_json::from_str::<Map<String, Value>>(params.as_str())
        .is_ok_and(|map| has_param(&map, name))
}

/// Looks a parameter up by name, or by a dotted path into objects and arrays of objects
/// (`udfs.name`: `udfs` is an object with a `name`, or a non-empty array of such objects).
fn has_param(params: &Map<String, Value>, name: &str) -> bool {
    if params.get(name).is_some_and(|v| !v.is_null()) {
        return true;
    }
    let Some((head, rest)) = name.split_once('.') else {
        return false;
    };
    match params.get(head) {
        Some(Value::Object(inner)) => has_param(inner, rest),
        Some(Value::Array(items)) => {
            !items.is_empty()
                && items
                    .iter()
                    .all(|i| i.as_object().is_some_and(|o| has_param(o, rest)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        serde_json::from_value(json!([
            {"name": "getUser", "entity": "User", "params": ["email"], "hints": ["User"]},
            {"name": "checkout", "params": ["projectId", "branchName"]},
            {"name": "checkout", "params": ["branchName", "projectUID"]},
            {"name": "projectReleaseStatus", "params": ["projectID", "statuses"],
             "required": ["statuses"], "aliases": ["projReleaseStatus"]},
        ]))
        .unwrap()
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn names_aliases_and_hints_resolve_and_params_are_checked() {
        let c = catalog();
        let ok = c.check(&["User"], &params(json!({"email": "a"}))).unwrap();
        assert_eq!(ok.unwrap().name, "getUser");
        let ok = c
            .check(&["projReleaseStatus"], &params(json!({"statuses": "x"})))
            .unwrap();
        assert_eq!(ok.unwrap().name, "projectReleaseStatus");
        assert_eq!(
            c.check(&["getUser"], &params(json!({"email": null}))),
            Err(CatalogError::MissingParam {
                action: "getUser".into(),
                param: "email".into()
            })
        );
        assert_eq!(
            c.check(&["user"], &params(json!({}))),
            Err(CatalogError::UnknownAction {
                names: vec!["user".into()]
            })
        );
    }

    #[test]
    fn a_name_with_two_rows_accepts_either_parameter_set() {
        let c = catalog();
        for p in [
            json!({"projectId": 1, "branchName": "b"}),
            json!({"projectUID": 1, "branchName": "b"}),
        ] {
            assert!(c.check(&["checkout"], &params(p)).is_ok());
        }
        let err = c
            .check(&["checkout"], &params(json!({"branchName": "b"})))
            .unwrap_err();
        assert!(err.to_string().contains("projectId"), "{err}");
    }

    #[test]
    fn dotted_parameters_look_into_objects_and_arrays() {
        let p = params(json!({"udfs": [{"name": "f"}, {"name": "g"}], "o": {"k": 1}, "udfs.x": 2}));
        assert!(has_param(&p, "udfs.name"));
        assert!(has_param(&p, "o.k"));
        assert!(has_param(&p, "udfs.x"));
        assert!(!has_param(&p, "udfs.description"));
        assert!(!has_param(&params(json!({"udfs": []})), "udfs.name"));
        assert!(!has_param(
            &params(json!({"udfs": [{"name": "f"}, {}]})),
            "udfs.name"
        ));
    }

    /// Parameters still their text are found, or not, exactly as once read: by name among
    /// the top-level members, by path, `null` as missing, and under an escaped key.
    #[test]
    fn parameters_as_text_are_checked_as_if_they_had_been_read() {
        let c = catalog();
        let texts = [
            r#"{"email":"a"}"#,
            r#"{"email":null}"#,
            r#"{"x":{"email":"nested, not top-level"}}"#,
            r#"{"emai\u006c":"escaped"}"#,
            r#"{"statuses":[1],"projectID":2}"#,
            r#"{"projectId":1,"branchName":"b"}"#,
            r#"{"branchName":"b"}"#,
            r#"{}"#,
        ];
        let names: [&[&str]; 4] = [
            &["User"],
            &["getUser"],
            &["projReleaseStatus"],
            &["checkout"],
        ];
        for text in texts {
            let raw: Box<serde_json::value::RawValue> = serde_json::from_str(text).unwrap();
            // An escaped key is not in serde_json's form: such a text is read whole.
            let canonical = canonical_json::check(&raw, &mut |_| true)
                .unwrap_or_else(|| CanonicalJson::stored(raw.get()));
            for names in names {
                assert_eq!(
                    c.check_params_text(names, canonical),
                    c.check(names, &serde_json::from_str(text).unwrap()),
                    "{names:?} {text}"
                );
            }
        }
        let udfs = r#"{"udfs":[{"name":"f"},{"name":"g"}],"o":{"k":1}}"#;
        let raw: Box<serde_json::value::RawValue> = serde_json::from_str(udfs).unwrap();
        let canonical = canonical_json::check(&raw, &mut |_| true).unwrap();
        assert!(text_has_param(canonical, "udfs.name"));
        assert!(text_has_param(canonical, "o.k"));
        assert!(!text_has_param(canonical, "udfs.description"));
        assert!(!text_has_param(canonical, "name"));
    }

    #[test]
    fn an_empty_catalog_accepts_anything_and_round_trips() {
        assert_eq!(Catalog::default().check(&["x"], &Map::new()).unwrap(), None);
        let c = catalog();
        let back: Catalog = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.lookup("User").count(), 1);
    }
}
