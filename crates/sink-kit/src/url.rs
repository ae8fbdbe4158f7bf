//! The two shapes most sink URLs take, so that a sink's URL parser is one call.

use auditsync_core::{SinkUrlError, SinkUrlParts, SinkUrlTarget};
use serde_json::Map;

/// `scheme://BUCKET/prefix?query`: the host goes into option `bucket_option`, every
/// (accepted) query parameter into the option of its name (`booleans` as JSON booleans),
/// and the whole path is the key prefix. `example` shows the form in the error when the
/// host is missing.
pub fn bucket_and_prefix(
    url: &SinkUrlParts,
    bucket_option: &str,
    example: &str,
    booleans: &[&str],
) -> Result<SinkUrlTarget, SinkUrlError> {
    let mut options = Map::new();
    options.insert(
        bucket_option.to_string(),
        url.required_host(bucket_option, example)?.into(),
    );
    url.query_into(&mut options, booleans)?;
    Ok(SinkUrlTarget {
        options,
        prefix: url.prefix_after(0),
    })
}

/// `scheme:///absolute/path`: the local path goes into option `path_option`; no prefix.
pub fn local_path(url: &SinkUrlParts, path_option: &str) -> Result<SinkUrlTarget, SinkUrlError> {
    let mut options = Map::new();
    options.insert(path_option.to_string(), url.local_path()?.into());
    Ok(SinkUrlTarget {
        options,
        prefix: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(host: &str, path: &str, query: &[(&str, &str)]) -> SinkUrlParts {
        SinkUrlParts {
            url: "x://".into(),
            scheme: "x".into(),
            host: host.into(),
            path: path.into(),
            segments: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            query: query
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_bucket_url_gives_the_bucket_the_query_and_the_prefix() {
        let t = bucket_and_prefix(
            &parts("b", "/p/q", &[("flag", "1")]),
            "bucket",
            "x://B",
            &["flag"],
        )
        .unwrap();
        assert_eq!(t.prefix, "p/q");
        assert_eq!(
            serde_json::Value::Object(t.options),
            serde_json::json!({"bucket": "b", "flag": true})
        );
        let err = bucket_and_prefix(&parts("", "/p", &[]), "bucket", "x://B", &[]).unwrap_err();
        assert_eq!(err.part, "bucket");
    }

    #[test]
    fn a_path_url_names_a_local_path_only() {
        assert_eq!(
            local_path(&parts("", "/var/a", &[]), "root")
                .unwrap()
                .options["root"],
            "/var/a"
        );
        assert_eq!(
            local_path(&parts("h", "/var/a", &[]), "root")
                .unwrap_err()
                .part,
            "host"
        );
    }
}
