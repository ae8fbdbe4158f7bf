//! Tenant files: the destinations that take one tenant's events only.
//!
//! `tenants_dir` holds one `*.json` file per tenant:
//!
//! ```json
//! {"tenant": "acme", "destinations": [{"name": "s3", "type": "s3", "bucket": "acme-audit"}]}
//! ```
//!
//! `tenant` is the events' organization (`customerName` in `uevents`); each destination has
//! the keys of a `destinations` entry. Its cursor, lease and manifests are kept under
//! `<name>@<tenant>` ([`tenant_destination_name`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use auditsync_catalog::SchemaSet;
use serde::{Deserialize, Serialize};

use super::validate::check_destinations;
use super::DestinationConfig;

/// One tenant's file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantFile {
    /// The tenant: the organization of the events its destinations take, exactly.
    pub tenant: String,
    /// Its destinations, each with the keys of a `destinations` entry.
    pub destinations: Vec<DestinationConfig>,
    /// The file it was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

/// The longest tenant accepted, in bytes.
pub const MAX_TENANT_BYTES: usize = 256;

/// How the store knows a tenant's destination: `<name>@<tenant>`. A destination's name has
/// no `@`, so the first one splits it back.
pub fn tenant_destination_name(tenant: &str, name: &str) -> String {
    format!("{name}@{tenant}")
}

/// Reads every `*.json` file of `dir` (in name order) and checks it: its JSON, its keys,
/// its destinations as `destinations` entries are checked, and no two files name one
/// tenant. Errors name the file and the key.
pub fn load_tenants(dir: &Path, schemas: &SchemaSet) -> anyhow::Result<Vec<TenantFile>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "config key `tenants_dir`: cannot read the directory {}",
            dir.display()
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("config key `tenants_dir`: cannot list {}", dir.display()))?;
    paths.retain(|p| p.extension().is_some_and(|e| e == "json") && p.is_file());
    paths.sort();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut tenants = Vec::with_capacity(paths.len());
    for path in paths {
        let file = read_tenant_file(&path, schemas)
            .with_context(|| format!("tenant file {}", path.display()))?;
        if let Some(earlier) = seen.insert(file.tenant.clone(), path.clone()) {
            bail!(
                "tenant file {}: key `tenant`: {:?} is also the tenant of {}",
                path.display(),
                file.tenant,
                earlier.display()
            );
        }
        tenants.push(file);
    }
    Ok(tenants)
}

fn read_tenant_file(path: &Path, schemas: &SchemaSet) -> anyhow::Result<TenantFile> {
    let text = std::fs::read_to_string(path).context("cannot read it")?;
    let value: serde_json::Value = serde_json::from_str(&text).context("not valid JSON")?;
    let file: TenantFile = serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        anyhow!("key `{key}`: {}", e.into_inner())
    })?;
    check_tenant(&file.tenant)?;
    check_destinations(&file.destinations, "destinations", schemas)?;
    Ok(TenantFile {
        path: path.to_path_buf(),
        ..file
    })
}

/// The file a new tenant gets in `dir`: its name made of letters, digits, `-` and `_` (others
/// become `_`), and a short hash of the whole name so that two tenants never share one.
pub fn new_tenant_file(dir: &Path, tenant: &str) -> PathBuf {
    use sha2::Digest;
    let readable: String = tenant
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = hex::encode(&sha2::Sha256::digest(tenant.as_bytes())[..4]);
    dir.join(format!("{readable}-{hash}.json"))
}

/// Writes a tenant file whole or not at all ([`write_file_atomically`]).
pub fn write_tenant_file(path: &Path, file: &TenantFile) -> anyhow::Result<()> {
    write_file_atomically(path, &serde_json::to_vec_pretty(file)?)
}

/// Writes `text` to a temp file beside `path`, fsyncs it, renames it over `path` and
/// fsyncs the directory: a reader (the tenant watcher) sees the old file or the new one,
/// never half of one.
pub fn write_file_atomically(path: &Path, text: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?;
    let temp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("tenant")
    ));
    let written = std::fs::File::create(&temp).and_then(|mut out| {
        out.write_all(text)?;
        out.sync_all()
    });
    if let Err(e) = written {
        // Nothing half-written is left behind.
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot write {}", temp.display()));
    }
    if let Err(e) = std::fs::rename(&temp, path) {
        // The file keeps its old content; the copy that could not take its place goes.
        let _ = std::fs::remove_file(&temp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync the directory {}", dir.display()))?;
    Ok(())
}

/// Checks one destination as a tenant file's entry must be.
pub fn check_destination(d: &DestinationConfig, schemas: &SchemaSet) -> anyhow::Result<()> {
    check_destinations(std::slice::from_ref(d), "destinations", schemas)
}

/// Checks a tenant as a tenant file's `tenant` must be.
pub fn check_tenant(tenant: &str) -> anyhow::Result<()> {
    if tenant.is_empty() || tenant.len() > MAX_TENANT_BYTES {
        bail!(
            "key `tenant`: must be 1 to {MAX_TENANT_BYTES} bytes, got {}",
            tenant.len()
        );
    }
    if tenant.chars().any(char::is_control) {
        bail!("key `tenant`: {tenant:?} holds a control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> SchemaSet {
        SchemaSet::with_files::<PathBuf>(&[]).unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn an_atomic_write_that_cannot_take_the_files_place_leaves_no_copy_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.json");
        write_file_atomically(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        // A directory where the file goes: the rename fails.
        let blocked = dir.path().join("blocked.json");
        std::fs::create_dir(&blocked).unwrap();
        let err = write_file_atomically(&blocked, b"{}").unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot write")
                && format!("{err:#}").contains("blocked.json"),
            "{err:#}"
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["acme.json", "blocked.json"],
            "no temporary copy left"
        );
    }

    #[test]
    fn tenant_files_are_read_in_name_order_and_other_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "b.json",
            r#"{"tenant": "beta", "destinations": [{"name": "v", "type": "pv", "root": "/x"}]}"#,
        );
        write(
            dir.path(),
            "a.json",
            r#"{"tenant": "Acme Corp", "destinations": []}"#,
        );
        write(dir.path(), "notes.txt", "not a tenant");
        let tenants = load_tenants(dir.path(), &schemas()).unwrap();
        let names: Vec<&str> = tenants.iter().map(|t| t.tenant.as_str()).collect();
        assert_eq!(names, ["Acme Corp", "beta"]);
        assert_eq!(tenants[1].destinations[0].name, "v");
        assert_eq!(tenant_destination_name("Acme Corp", "s3"), "s3@Acme Corp");
    }

    #[test]
    fn a_bad_tenant_file_is_refused_with_its_file_and_key() {
        let cases = [
            ("{", "not valid JSON"),
            (
                r#"{"tenant": "a", "destinations": [], "extra": 1}"#,
                "unknown field `extra`",
            ),
            (r#"{"destinations": []}"#, "missing field `tenant`"),
            (
                r#"{"tenant": "", "destinations": []}"#,
                "key `tenant`: must be 1 to 256 bytes",
            ),
            (
                r#"{"tenant": "a\u0007", "destinations": []}"#,
                "control character",
            ),
            (
                r#"{"tenant": "a", "destinations": [{"name": "x@y", "type": "pv"}]}"#,
                "config key `destinations[0].name`",
            ),
            (
                r#"{"tenant": "a", "destinations": [{"name": "x", "type": "pv", "max_events": "9"}]}"#,
                "key `destinations[0].max_events`",
            ),
        ];
        for (text, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "t.json", text);
            let err = format!("{:#}", load_tenants(dir.path(), &schemas()).unwrap_err());
            assert!(err.contains("t.json"), "{text}: {err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn two_files_of_one_tenant_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.json",
            r#"{"tenant": "acme", "destinations": []}"#,
        );
        write(
            dir.path(),
            "b.json",
            r#"{"tenant": "acme", "destinations": []}"#,
        );
        let err = format!("{:#}", load_tenants(dir.path(), &schemas()).unwrap_err());
        assert!(err.contains("b.json") && err.contains("a.json"), "{err}");
    }

    #[test]
    fn a_missing_directory_names_the_key() {
        let err = load_tenants(Path::new("/nonexistent/tenants"), &schemas()).unwrap_err();
        assert!(
            format!("{err:#}").contains("config key `tenants_dir`"),
            "{err:#}"
        );
    }
}
