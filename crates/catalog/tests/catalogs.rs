//! The built-in catalogs against the reference documents, and validation of each kind of
//! invalid event.

use std::sync::Arc;

use auditsync_catalog::{SchemaDefinition, SchemaSet, ACTOR_CHANGE, UEVENTS, WAREHOUSE};
use auditsync_core::{registry, Event, Schema};
use serde_json::{json, Map, Value};

fn schema(name: &str) -> Arc<dyn Schema> {
    auditsync_catalog::link();
    registry::build_schema(name).unwrap()
}

/// The names in a seed's parameter cell (`["id","targetUid"]`, typos and stray braces
/// included).
fn param_names(cell: &str) -> Vec<String> {
    cell.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

struct SeedRow {
    seed: String,
    entity: String,
    operation: String,
    params: Vec<String>,
}

fn seed_rows() -> Vec<SeedRow> {
    include_str!("fixtures/seed_catalog_rows.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            SeedRow {
                seed: cells[0].into(),
                entity: cells[1].into(),
                operation: cells[2].into(),
                params: param_names(cells[3]),
            }
        })
        .collect()
}

fn params_of(names: &[String]) -> Map<String, Value> {
    names
        .iter()
        .map(|n| (n.clone(), Value::String(format!("v-{n}"))))
        .collect()
}

fn uevents_line(action: &str, params: Map<String, Value>) -> Value {
    json!({"opType": "Query", "createdAt": 1_690_610_557_857_i64, "nameHints": [action],
           "userEmail": "a@example.com", "requestParams": params})
}

#[test]
fn every_row_of_seeds_000_and_001_is_in_the_uevents_catalog() {
    let uevents = schema("uevents");
    let catalog = uevents.catalog().expect("uevents has a catalog");
    let rows = seed_rows();
    assert_eq!(rows.iter().filter(|r| r.seed == "000").count(), 68);
    assert_eq!(rows.iter().filter(|r| r.seed == "001").count(), 69);
    for row in &rows {
        let entries: Vec<_> = catalog.lookup(&row.operation).collect();
        assert!(
            entries
                .iter()
                .any(|e| e.entity.as_deref() == Some(row.entity.as_str())
                    && row.params.iter().all(|p| e.params.contains(p))),
            "seed {} row {} {} {:?}: no entry answers to it with these parameters",
            row.seed,
            row.entity,
            row.operation,
            row.params
        );
        // The row's own parameters satisfy the catalog, whichever spelling it used; except
        // seed 000's addUDFBulk, whose first parameter name is blank (seed 001: `udfs.name`).
        if row.seed == "000" && row.operation == "addUDFBulk" {
            assert_eq!(row.params, ["udfs.description", "projectUID"]);
            continue;
        }
        let event = uevents
            .parse(uevents_line(&row.operation, params_of(&row.params)))
            .unwrap();
        uevents
            .check(&event)
            .unwrap_or_else(|e| panic!("seed {} {}: {e}", row.seed, row.operation));
    }
    // Where the seeds disagree the typo is an alias of the correct name.
    for (typo, name) in [
        ("dserAllFabricInfoAspect", "userAllFabricInfoAspect"),
        ("add Project Dependency", "addProjectDependency"),
        ("PullOrigin", "pullOrigin"),
        (
            "LatestJobReleaseByJobIdAndFabricID",
            "latestJobReleaseByJobIdAndFabricID",
        ),
    ] {
        let entry = catalog.lookup(typo).next().unwrap();
        assert_eq!(entry.name, name);
        assert!(entry.aliases.iter().any(|a| a == typo));
    }
}

#[test]
fn every_built_in_catalog_row_is_accepted_with_its_parameters() {
    let mut checked = 0;
    for name in ["uevents", "warehouse", "actor_change"] {
        let schema = schema(name);
        let catalog = schema.catalog().unwrap();
        assert!(catalog.len() >= 30, "{name}: {}", catalog.len());
        for entry in catalog.entries() {
            for action in entry.names() {
                let mut event = Event {
                    time: 1_700_000_000_000,
                    action: action.to_string(),
                    params: params_of(&entry.params),
                    ..Event::default()
                };
                event.actor.user_id = Some("u-1".into());
                schema
                    .check(&event)
                    .unwrap_or_else(|e| panic!("{name} {action}: {e}"));
                checked += 1;
            }
        }
    }
    assert!(checked > 69 + 45 + 32, "{checked}");
}

#[test]
fn the_sample_records_of_seed_002_pass_strict_validation() {
    let uevents = schema("uevents");
    let lines = [
        r#"{"opType": "Query", "createdAt": 1690610557857, "nameHints": ["User"], "userEmail": "prophecy-system@prophecy.io", "customerName": "prophecy.io", "responseCode": 200, "requestParams": {"email": "\"adminuser@prophecy.io\""}, "requestPayload": "[\"_id\",\"name\",\"firstName\",\"lastName\",\"email\",\"created\",\"createdBy\",\"aspects(aspect:[Info]){AspectName AspectValue}\"]", "latencyInMillis": 11}"#,
        r#"{"opType": "Query", "createdAt": 1690552930350, "nameHints": ["ProjectReleaseByProjectIdAndStatus"], "userEmail": "prophecy-system@prophecy.io", "customerName": "prophecy.io", "responseCode": 200, "requestParams": {"statuses": "[Pending,Running,Retrying]"}, "requestPayload": "[\"_id\",\"releaseTag\",\"status\",\"attempt\",\"createdBy\",\"project{_id name}\"]", "latencyInMillis": 5}"#,
    ];
    let catalog = uevents.catalog().unwrap();
    for (line, operation) in lines.iter().zip(["getUser", "projectReleaseStatus"]) {
        let event = uevents.parse(serde_json::from_str(line).unwrap()).unwrap();
        uevents.check(&event).unwrap();
        let matched = catalog
            .check(&[event.action.as_str()], &event.params)
            .unwrap()
            .unwrap();
        assert_eq!(matched.name, operation);
    }
}

#[test]
fn each_kind_of_invalid_event_is_refused_naming_the_field() {
    let uevents = schema("uevents");
    let warehouse = schema("warehouse");
    let actor = schema("actor_change");
    let check = |schema: &Arc<dyn Schema>, record: Value| -> String {
        match schema.parse(record.clone()) {
            Err(e) => e.to_string(),
            Ok(event) => match schema.check(&event) {
                Err(e) => e.to_string(),
                Ok(()) => panic!("{record} was accepted"),
            },
        }
    };
    let cases: Vec<(&Arc<dyn Schema>, Value, &str, &str)> = vec![
        (
            &uevents,
            uevents_line("getUsr", Map::new()),
            "`nameHints`",
            "unknown action getUsr",
        ),
        (
            &uevents,
            uevents_line("setPassword", params_of(&["uid".into()])),
            "`requestParams.newPassword`",
            "setPassword",
        ),
        (
            &uevents,
            json!({"opType": "Query", "createdAt": "noon", "nameHints": ["getUser"]}),
            "`createdAt`",
            "milliseconds",
        ),
        (
            &warehouse,
            json!({"EVENT_TIME": "2024-03-01 10:00:00", "EVENT_TYPE": "user_logon"}),
            "`EVENT_TYPE`",
            "unknown action",
        ),
        (
            &warehouse,
            json!({"EVENT_TIME": "2024-03-01 10:00:00", "EVENT_TYPE": "user_login", "EVENT_YEAR": "2024"}),
            "`EVENT_YEAR`",
            "integer",
        ),
        (
            &warehouse,
            json!({"EVENT_TIME": "2024-03-01 10:00:00", "EVENT_TYPE": "user_login", "EVENT_YEAR": 2023}),
            "`EVENT_YEAR`",
            "does not match",
        ),
        (
            &warehouse,
            json!({"EVENT_TIME": "1 March", "EVENT_TYPE": "user_login"}),
            "`EVENT_TIME`",
            "RFC 3339",
        ),
        (
            &actor,
            json!({"timestamp": "2024-03-01T10:00:00Z", "action": "graph.created"}),
            "actor_access_token_id",
            "user or an access token",
        ),
        (
            &actor,
            json!({"timestamp": "2024-03-01T10:00:00Z", "action": "graph.made", "actor_user_id": "u"}),
            "`action`",
            "unknown action graph.made",
        ),
        (
            &actor,
            json!({"timestamp": "2024-03-01T10:00:00Z", "action": "graph.created", "actor_user_id": 7}),
            "`actor_user_id`",
            "expected a string",
        ),
        (
            &actor,
            json!({"timestamp": "2024-03-01T10:00:00Z", "action": "graph.created", "actor": "u"}),
            "`actor`",
            "unknown field",
        ),
    ];
    for (schema, record, field, problem) in cases {
        let err = check(schema, record.clone());
        assert!(
            err.contains(field) && err.contains(problem),
            "{}: {record}: {err}",
            schema.name()
        );
    }
}

#[test]
fn the_warehouse_schema_derives_its_date_columns_from_the_event_time() {
    let warehouse = schema("warehouse");
    assert_eq!(warehouse.columns().len(), 29);
    let event = warehouse
        .parse(
            json!({"EVENT_TIME": "2024-02-29T23:59:59.999+00:00", "EVENT_TYPE": "user_login",
                      "ORGANIZATION_ID": "org-1", "EVENT_ID": "e-1", "EMAIL": "a@b.c",
                      "EVENT_DATE": "2024-02-29", "APP_ID": "app-9"}),
        )
        .unwrap();
    warehouse.check(&event).unwrap();
    assert_eq!(event.id, "e-1");
    assert_eq!(event.actor.user_email.as_deref(), Some("a@b.c"));
    let mut values = Vec::new();
    warehouse.render(event, &mut values);
    let row: Map<String, Value> = warehouse
        .columns()
        .iter()
        .map(|c| c.name.clone())
        .zip(values)
        .collect();
    assert_eq!(row["EVENT_YEAR"], json!(2024));
    assert_eq!(row["EVENT_MONTH"], json!("2024-02-01"));
    assert_eq!(row["EVENT_DATE"], json!("2024-02-29"));
    assert_eq!(row["EVENT_TIME"], json!("2024-02-29 23:59:59.999"));
    assert_eq!(row["APP_ID"], json!("app-9"));
    assert_eq!(row["EVENT_TYPE"], json!("user_login"));
    assert_eq!(row["DOMAIN"], Value::Null);
}

#[test]
fn the_nine_column_schema_maps_actor_and_change() {
    let actor = schema("actor_change");
    let names: Vec<&str> = actor.columns().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "timestamp",
            "actor_access_token_id",
            "actor_access_token_name",
            "actor_user_id",
            "actor_user_name",
            "actor_user_email",
            "action",
            "previous",
            "next"
        ]
    );
    let record = json!({"timestamp": "2024-03-01 10:00:00.250", "actor_access_token_name": "ci",
                        "action": "team.member.added", "previous": null, "next": {"role": "admin"}});
    let event = actor.parse(record).unwrap();
    actor.check(&event).unwrap();
    assert_eq!(event.actor.token_name.as_deref(), Some("ci"));
    let mut values = Vec::new();
    actor.render(event, &mut values);
    assert_eq!(values[0], json!("2024-03-01 10:00:00.250"));
    assert_eq!(values[8], json!({"role": "admin"}));
}

#[test]
fn built_in_files_are_valid_definitions_and_custom_files_load() {
    for text in [UEVENTS, WAREHOUSE, ACTOR_CHANGE] {
        SchemaDefinition::from_json(text).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logins.json");
    std::fs::write(
        &path,
        r#"{"name": "logins", "version": 2, "require_actor": true,
            "columns": [
              {"name": "at", "type": "timestamp_millis", "field": "time", "required": true},
              {"name": "who", "type": "string", "field": "actor.user_id"},
              {"name": "what", "type": "string", "field": "action", "required": true},
              {"name": "day", "type": "date", "derive": "date"},
              {"name": "ok", "type": "boolean"}
            ],
            "catalog": [{"name": "login"}, {"name": "logout"}]}"#,
    )
    .unwrap();
    let set = SchemaSet::with_files(&[&path]).unwrap();
    assert!(set.names().contains(&"logins".to_string()));
    let logins = set.get("logins").unwrap();
    let event = logins
        .parse(json!({"at": 86_400_000, "who": "u", "what": "login", "ok": true}))
        .unwrap();
    logins.check(&event).unwrap();
    assert_eq!(event.extra["ok"], json!(true));
    let mut values = Vec::new();
    logins.render(event, &mut values);
    assert_eq!(
        values,
        [
            json!(86_400_000),
            json!("u"),
            json!("login"),
            json!("1970-01-02"),
            json!(true)
        ]
    );
    let err = set.get("nope").unwrap_err().to_string();
    assert!(err.contains("logins") && err.contains("uevents"), "{err}");
    // A custom file may not take a built-in name.
    let clash = dir.path().join("clash.json");
    std::fs::write(&clash, UEVENTS).unwrap();
    let err = SchemaSet::with_files(&[&clash]).unwrap_err().to_string();
    assert!(
        err.contains("schema_files[0]") && err.contains("already taken"),
        "{err}"
    );
}

fn fixture_rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('|').collect())
        .collect()
}

#[test]
fn the_warehouse_schema_has_every_column_type_and_event_type_of_seed_003() {
    let warehouse = schema("warehouse");
    let catalog = warehouse.catalog().unwrap();
    let rows = fixture_rows(include_str!("fixtures/seed_003.txt"));
    let columns: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r[0] == "column")
        .map(|r| (r[1], r[2]))
        .collect();
    assert_eq!(columns.len(), 29);
    for ((name, declared), column) in columns.iter().zip(warehouse.columns()) {
        assert_eq!(*name, column.name);
        let ty = auditsync_catalog::type_name(column.ty);
        let expected = match declared.split_whitespace().next().unwrap() {
            "VARCHAR" => "string",
            "NUMBER" => "integer",
            "DATE" => "date",
            "TIMESTAMPNTZ" => "timestamp",
            other => panic!("seed type {other}"),
        };
        assert_eq!(ty, expected, "{name}");
    }
    let types: Vec<&str> = rows
        .iter()
        .filter(|r| r[0] == "event_type")
        .map(|r| r[1])
        .collect();
    assert_eq!(types.len(), 45);
    assert_eq!(catalog.len(), 45);
    for ty in types {
        assert!(catalog.lookup(ty).next().is_some(), "{ty}");
    }
}

#[test]
fn the_actor_change_schema_has_every_column_and_action_of_seed_004() {
    let actor = schema("actor_change");
    let rows = fixture_rows(include_str!("fixtures/seed_004.txt"));
    let columns: Vec<&str> = rows
        .iter()
        .filter(|r| r[0] == "column")
        .map(|r| r[1])
        .collect();
    let names: Vec<&str> = actor.columns().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(columns, names);
    let actions: Vec<&str> = rows
        .iter()
        .filter(|r| r[0] == "action")
        .map(|r| r[1])
        .collect();
    assert_eq!(actions.len(), 32);
    let catalog = actor.catalog().unwrap();
    assert_eq!(catalog.len(), 32);
    for action in actions {
        assert!(catalog.lookup(action).next().is_some(), "{action}");
    }
}
