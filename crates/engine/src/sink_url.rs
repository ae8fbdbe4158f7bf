//! Sink URLs for ad-hoc use: `s3://bucket/prefix?region=..&endpoint=..`,
//! `az://account/container/prefix`, `gs://bucket/prefix`, `file:///path`.
//!
//! A URL becomes the same sink options a config destination has (checked by the sink's own
//! typed config) plus a key prefix. Credentials never go in the URL: S3 uses the AWS provider
//! chain (environment, profile, ...), Azure a SAS token from `AZURE_STORAGE_SAS_TOKEN` or else
//! Entra ID, GCS `GOOGLE_APPLICATION_CREDENTIALS` or the metadata server.

use serde_json::{Map, Value};

/// A parsed sink URL.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkUrl {
    /// The sink type, as registered (`s3`, `azure`, `gcs`, `pv`).
    pub kind: &'static str,
    /// The sink's options.
    pub options: Map<String, Value>,
    /// Keys live under this prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
}

/// Why a sink URL cannot be used; the message names the part at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink URL `{url}`: {part}: {problem}")]
pub struct SinkUrlError {
    /// The URL, as given.
    pub url: String,
    /// The part at fault (`scheme`, `bucket`, `query parameter region`, ...).
    pub part: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The schemes and the sink each maps to.
pub const SCHEMES: &[(&str, &str)] =
    &[("s3", "s3"), ("az", "azure"), ("gs", "gcs"), ("file", "pv")];

/// True when `text` looks like a URL rather than a destination name.
pub fn is_url(text: &str) -> bool {
    text.contains("://")
}

/// Parses a sink URL.
pub fn parse(text: &str) -> Result<SinkUrl, SinkUrlError> {
    let fail = |part: &str, problem: String| SinkUrlError {
        url: text.to_string(),
        part: part.to_string(),
        problem,
    };
    let url = url::Url::parse(text).map_err(|e| fail("url", e.to_string()))?;
    let scheme = url.scheme();
    let kind = SCHEMES
        .iter()
        .find(|(s, _)| *s == scheme)
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            let known: Vec<String> = SCHEMES.iter().map(|(s, _)| format!("{s}://")).collect();
            fail(
                "scheme",
                format!("`{scheme}` is not known; known: {}", known.join(", ")),
            )
        })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail(
            "credentials",
            "do not put credentials in a URL; use the environment or a named destination".into(),
        ));
    }
    let segments: Vec<String> = url
        .path_segments()
        .map(|s| {
            s.filter(|p| !p.is_empty())
                .map(|p| percent_decode(p).map_err(|e| fail("path", e)))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let host = url.host_str().unwrap_or("").to_string();
    let mut options = Map::new();
    let mut allowed: &[&str] = &[];
    let prefix_from = |skip: usize| {
        segments
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("/")
    };
    let prefix = match kind {
        "s3" => {
            if host.is_empty() {
                return Err(fail("bucket", "missing: s3://BUCKET/prefix".into()));
            }
            options.insert("bucket".into(), Value::String(host));
            allowed = &[
                "region",
                "endpoint",
                "force_path_style",
                "sse",
                "kms_key_id",
            ];
            prefix_from(0)
        }
        "azure" => {
            if host.is_empty() {
                return Err(fail(
                    "account",
                    "missing: az://ACCOUNT/container/prefix".into(),
                ));
            }
            let container = segments.first().ok_or_else(|| {
                fail("container", "missing: az://account/CONTAINER/prefix".into())
            })?;
            options.insert(
                "account_url".into(),
                Value::String(format!("https://{host}.blob.core.windows.net")),
            );
            options.insert("container".into(), Value::String(container.clone()));
            if let Ok(sas) = std::env::var("AZURE_STORAGE_SAS_TOKEN") {
                options.insert("sas_token".into(), Value::String(sas));
            }
            allowed = &["endpoint"];
            prefix_from(1)
        }
        "gcs" => {
            if host.is_empty() {
                return Err(fail("bucket", "missing: gs://BUCKET/prefix".into()));
            }
            options.insert("bucket".into(), Value::String(host));
            allowed = &["endpoint", "anonymous"];
            prefix_from(0)
        }
        _ => {
            if !host.is_empty() && host != "localhost" {
                return Err(fail(
                    "host",
                    format!("`{host}`: a file URL names a local path, file:///path"),
                ));
            }
            let path = url
                .to_file_path()
                .map_err(|()| fail("path", "not an absolute local path".into()))?;
            options.insert("root".into(), Value::String(path.display().to_string()));
            String::new()
        }
    };
    for (name, value) in url.query_pairs() {
        if !allowed.contains(&name.as_ref()) {
            return Err(fail(
                &format!("query parameter `{name}`"),
                if allowed.is_empty() {
                    format!("{scheme}:// URLs take no query parameters")
                } else {
                    format!("not known for {scheme}://; known: {}", allowed.join(", "))
                },
            ));
        }
        let value = match name.as_ref() {
            "force_path_style" | "anonymous" => match value.as_ref() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                other => {
                    return Err(fail(
                        &format!("query parameter `{name}`"),
                        format!("`{other}` is not true or false"),
                    ))
                }
            },
            // Azure: an explicit endpoint (Azurite, a sovereign cloud) replaces the account URL.
            "endpoint" if kind == "azure" => {
                options.insert("account_url".into(), Value::String(value.to_string()));
                continue;
            }
            _ => Value::String(value.to_string()),
        };
        options.insert(name.to_string(), value);
    }
    Ok(SinkUrl {
        kind,
        options,
        prefix,
    })
}

fn percent_decode(segment: &str) -> Result<String, String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in `{segment}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{segment}` is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_scheme_maps_to_its_sink_options_and_prefix() {
        let s3 = parse("s3://audit-bucket/acme/exports?region=eu-west-1&endpoint=http://127.0.0.1:9000&force_path_style=true").unwrap();
        assert_eq!(s3.kind, "s3");
        assert_eq!(s3.prefix, "acme/exports");
        assert_eq!(
            Value::Object(s3.options),
            json!({"bucket": "audit-bucket", "region": "eu-west-1",
                   "endpoint": "http://127.0.0.1:9000", "force_path_style": true})
        );
        let az =
            parse("az://acct/logs/a%20b?endpoint=http://127.0.0.1:10000/devstoreaccount1").unwrap();
        assert_eq!(az.kind, "azure");
        assert_eq!(az.prefix, "a b");
        assert_eq!(az.options["container"], json!("logs"));
        assert_eq!(
            az.options["account_url"],
            json!("http://127.0.0.1:10000/devstoreaccount1")
        );
        let gs = parse("gs://b?anonymous=true").unwrap();
        assert_eq!((gs.kind, gs.prefix.as_str()), ("gcs", ""));
        assert_eq!(gs.options["anonymous"], json!(true));
        let file = parse("file:///var/audit").unwrap();
        assert_eq!(file.kind, "pv");
        assert_eq!(file.options["root"], json!("/var/audit"));
    }

    #[test]
    fn a_bad_url_names_the_part_that_is_wrong() {
        for (url, part) in [
            ("ftp://x/y", "scheme"),
            ("s3:///prefix", "bucket"),
            ("az://acct", "container"),
            ("s3://b/p?regoin=x", "query parameter `regoin`"),
            (
                "s3://b/p?force_path_style=maybe",
                "query parameter `force_path_style`",
            ),
            ("s3://key:secret@b/p", "credentials"),
            ("file://server/share", "host"),
            ("file:///x?root=/y", "query parameter `root`"),
            ("not a url", "url"),
        ] {
            let err = parse(url).unwrap_err();
            assert_eq!(err.part, part, "{url}: {err}");
            assert!(err.to_string().contains(url), "{err}");
        }
        assert!(parse("ftp://x")
            .unwrap_err()
            .to_string()
            .contains("s3://, az://, gs://, file://"));
    }
}
