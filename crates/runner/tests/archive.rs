//! Provable archives through the real binary: `key new`, exports that write signed manifests,
//! and `verify-archive` of a destination, a URL and a local copy.

use serde_json::{json, Value};

mod support;
use support::{files_under, line, Env};

fn config(manifests: Value) -> Value {
    json!({
        "enableUserEvents": true,
        "namespace": "acme",
        "destinations": [{"name": "archive", "type": "pv", "root": "out", "prefix": "p", "max_events": 10}],
        "manifests": manifests,
    })
}

/// Makes a key pair with `auditsync key new` in the env's folder: (private, public) paths.
fn new_key(env: &Env, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = env.path(&format!("{name}.pem"));
    let public = env.path(&format!("{name}.pub.pem"));
    env.ok(&[
        "key",
        "new",
        "--out",
        key.to_str().unwrap(),
        "--public-out",
        public.to_str().unwrap(),
    ]);
    (key, public)
}

#[test]
fn exports_are_signed_and_verify_archive_finds_a_changed_file_offline() {
    let env = Env::new(json!({}));
    let key = env.path("signing.pem");
    let public = env.path("public.pem");
    let out = env.run(&[
        "key",
        "new",
        "--out",
        key.to_str().unwrap(),
        "--public-out",
        public.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let private = std::fs::read_to_string(&key).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(printed, std::fs::read_to_string(&public).unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // An existing key is never replaced.
    let again = env.run(&["key", "new", "--out", key.to_str().unwrap()]);
    assert!(!again.status.success());
    assert_eq!(std::fs::read_to_string(&key).unwrap(), private);

    env.write_config(config(json!({"signing_key_file": key})));
    let lines: Vec<Value> = (0..35).map(line).collect();
    env.ingest(&lines);
    env.ok(&["export", "--once"]);
    env.ingest(&(35..50).map(line).collect::<Vec<_>>());
    env.ok(&["export", "--once"]);
    let files = files_under(&env.path("out"));
    let manifests: Vec<_> = files
        .iter()
        .filter(|p| p.to_string_lossy().contains("/p/acme/audit/_manifests/"))
        .collect();
    assert_eq!(manifests.len(), 2, "{files:?}");
    assert_eq!(files.len(), 2 + 6, "{files:?}");

    // By name (the key from the config), by URL and as a plain copy with the public key.
    let public = public.to_str().unwrap();
    let by_name = env.ok(&[
        "verify-archive",
        "archive",
        "--save-checkpoint",
        env.path("head.json").to_str().unwrap(),
    ]);
    assert!(
        by_name.contains("2 manifests, 6 files, 50 records"),
        "{by_name}"
    );
    assert!(by_name.ends_with("everything verifies\n"), "{by_name}");
    let url = format!("file://{}", env.path("out/p").display());
    env.ok(&["verify-archive", &url, "--public-key", public]);
    let copy = env.path("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for f in &files {
        let rel = f.strip_prefix(env.path("out/p")).unwrap();
        std::fs::create_dir_all(copy.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(f, copy.join(rel)).unwrap();
    }
    let copy_arg = copy.to_str().unwrap();
    let checkpoint = env.path("head.json");
    let checkpoint = checkpoint.to_str().unwrap();
    env.ok(&[
        "verify-archive",
        copy_arg,
        "--public-key",
        public,
        "--checkpoint",
        checkpoint,
    ]);
    let json: Value = serde_json::from_str(&env.ok(&[
        "verify-archive",
        copy_arg,
        "--public-key",
        public,
        "--json",
    ]))
    .unwrap();
    assert_eq!(json["findings"], json!([]));
    assert_eq!(json["events"], 50);

    // A changed file, the last manifest dropped: each named, exit 1.
    let data = files
        .iter()
        .find(|p| !p.to_string_lossy().contains("_manifests"))
        .unwrap();
    let rel = data.strip_prefix(env.path("out/p")).unwrap();
    let mut bytes = std::fs::read(copy.join(rel)).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(copy.join(rel), bytes).unwrap();
    let last = manifests
        .last()
        .unwrap()
        .strip_prefix(env.path("out/p"))
        .unwrap();
    std::fs::remove_file(copy.join(last)).unwrap();
    let out = env.run(&[
        "verify-archive",
        copy_arg,
        "--public-key",
        public,
        "--checkpoint",
        checkpoint,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("FAIL file_modified {}", rel.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("FAIL rollback {}", last.display())),
        "{text}"
    );
    assert!(text.contains("FAIL file_unlisted"), "{text}");

    // Without manifests there is nothing to prove: said, exit 1.
    let empty = env.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = env.run(&[
        "verify-archive",
        empty.to_str().unwrap(),
        "--public-key",
        public,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no manifests"));
    // The private key never reaches any output.
    let body: String = private
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!text.contains(&body) && !by_name.contains(&body));
}

#[test]
fn a_bad_signing_key_is_refused_naming_the_config_key_without_quoting_it() {
    let env = Env::new(json!({}));
    let key = env.path("bad.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0c2VjcmV0\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    env.write_config(config(json!({"signing_key_file": key})));
    let out = env.run(&["export", "--once"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("manifests.signing_key_file"), "{err}");
    assert!(!err.contains("c2VjcmV0c2VjcmV0"), "{err}");
    env.write_config(config(
        json!({"signing_key_file": key, "signing_key_env": "X"}),
    ));
    let out = env.run(&["export", "--once"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set exactly one of"), "{err}");
}

#[test]
fn files_exported_before_manifests_are_covered_by_a_backfill() {
    let env = Env::new(json!({}));
    let (key, public) = new_key(&env, "signing");
    let mut plain = config(json!(null));
    plain.as_object_mut().unwrap().remove("manifests");
    env.write_config(plain);
    env.ingest(&(0..25).map(line).collect::<Vec<_>>());
    env.ok(&["export", "--once"]);
    let public = public.to_str().unwrap();
    let out = env.run(&["verify-archive", "archive", "--public-key", public]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no manifests"),
        "{out:?}"
    );

    env.write_config(config(json!({"signing_key_file": key})));
    assert!(env
        .ok(&["status"])
        .contains("archive: no manifest written yet"));
    let out = env.ok(&["manifest", "backfill", "archive"]);
    assert_eq!(out, "archive: 1 manifests written, listing 3 files\n");
    assert_eq!(
        env.ok(&["manifest", "backfill"]),
        "archive: 0 manifests written, listing 0 files\n"
    );
    let out = env.ok(&["verify-archive", "archive", "--public-key", public]);
    assert!(out.contains("1 manifests, 3 files, 25 records"), "{out}");
    let status = env.ok(&["status"]);
    assert!(
        status.contains("archive: last manifest 1 (up to seq 25), written "),
        "{status}"
    );

    // A file from elsewhere: a failure, or a note with --allow-unmanifested.
    let stray = env.path("out/p/acme/audit/2020/01/01/00/x.ndjson");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, "{}\n").unwrap();
    let out = env.run(&["verify-archive", "archive", "--public-key", public]);
    assert_eq!(out.status.code(), Some(1));
    let out = env.ok(&[
        "verify-archive",
        "archive",
        "--public-key",
        public,
        "--allow-unmanifested",
    ]);
    assert!(
        out.contains("note file_unlisted acme/audit/2020/01/01/00/x.ndjson"),
        "{out}"
    );
    let err = env.run(&["manifest", "backfill", "nope"]);
    assert!(String::from_utf8_lossy(&err.stderr)
        .contains("no destination `nope`; destinations: archive"));
}

#[test]
fn a_proof_of_one_record_checks_offline_and_fails_when_anything_in_it_changes() {
    let env = Env::new(json!({}));
    let (key, public) = new_key(&env, "signing");
    env.write_config(config(json!({"signing_key_file": key})));
    env.ingest(&(0..25).map(line).collect::<Vec<_>>());
    env.ok(&["export", "--once"]);
    let files = files_under(&env.path("out/p"));
    let file = files[1]
        .strip_prefix(env.path("out/p"))
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let proof = env.path("proof.json");
    env.ok(&[
        "prove",
        "--file",
        &file,
        "--record",
        "4",
        "--out",
        proof.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&proof).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    // Record 4 of the second file is input line 13.
    let record: Value = serde_json::from_str(value["record"].as_str().unwrap()).unwrap();
    assert_eq!(record["requestParams"], line(13)["requestParams"], "{text}");

    let public = public.to_str().unwrap();
    let proof_arg = proof.to_str().unwrap();
    let out = env.ok(&[
        "verify-archive",
        "--proof",
        proof_arg,
        "--public-key",
        public,
    ]);
    assert!(
        out.contains(&format!("`{file}`")) && out.contains("manifest 1 of `archive`"),
        "{out}"
    );
    let tree = env.path("out/p");
    let out = env.ok(&[
        "verify-archive",
        "--proof",
        proof_arg,
        "--public-key",
        public,
        tree.to_str().unwrap(),
    ]);
    assert!(out.contains("is the proof's record"), "{out}");

    // Another key, a changed record, a changed file: each fails.
    let (_, other_public) = new_key(&env, "other");
    let out = env.run(&[
        "verify-archive",
        "--proof",
        proof_arg,
        "--public-key",
        other_public.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not trusted"));
    let mut forged = value.clone();
    forged["record"] = json!(value["record"]
        .as_str()
        .unwrap()
        .replace("user13", "user99"));
    let forged_path = env.path("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let out = env.run(&[
        "verify-archive",
        "--proof",
        forged_path.to_str().unwrap(),
        "--public-key",
        public,
        tree.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("differs from the proof's"));
    let mut forged = value.clone();
    forged["entry"] = json!(value["entry"]
        .as_str()
        .unwrap()
        .replace("\"events\":10", "\"events\":11"));
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let out = env.run(&[
        "verify-archive",
        "--proof",
        forged_path.to_str().unwrap(),
        "--public-key",
        public,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("do not lead to the signed Merkle root"));
    let mut bytes = std::fs::read(&files[1]).unwrap();
    bytes[5] ^= 1;
    std::fs::write(&files[1], bytes).unwrap();
    let out = env.run(&[
        "verify-archive",
        "--proof",
        proof_arg,
        "--public-key",
        public,
        tree.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the file's sha256 is"));
}

/// Issue 12, point 5: a range export reads only the files whose manifest times meet the range
/// (every key here names the same hour).
#[test]
fn a_range_export_skips_the_files_its_manifests_put_outside_the_range() {
    let env = Env::new(json!({}));
    let key = env.path("signing.pem");
    env.ok(&["key", "new", "--out", key.to_str().unwrap()]);
    env.write_config(config(json!({"signing_key_file": key})));
    env.ingest(&(0..50).map(line).collect::<Vec<_>>());
    env.ok(&["export", "--once"]);
    env.ok(&["gc", "--once"]);
    let out_file = env.path("range.ndjson");
    let out = env.run(&[
        "export",
        "--source",
        "archive",
        "--from",
        "2023-07-29T06:02:57.857Z",
        "--to",
        "2023-07-29T06:03:07.857Z",
        "--format",
        "ndjson",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("exported 10 events"), "{said}");
    assert!(
        said.contains("1 archive files read, 4 skipped by their manifests' time bounds"),
        "{said}"
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    let emails: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["userEmail"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        emails,
        (20..30)
            .map(|i| format!("user{i}@example.com"))
            .collect::<Vec<_>>()
    );

    // verify-archive reads only the files of a range too, and still checks the chain.
    let out = env.ok(&[
        "verify-archive",
        "archive",
        "--from",
        "2023-07-29T06:02:57.857Z",
        "--to",
        "2023-07-29T06:03:07.857Z",
    ]);
    assert!(
        out.contains("1 manifests, 1 files (4 outside --from/--to not read), 10 records"),
        "{out}"
    );
    // A file outside the range is not read: its damage is not seen; inside, it is.
    let files = files_under(&env.path("out"));
    std::fs::write(&files[0], "changed").unwrap();
    env.ok(&[
        "verify-archive",
        "archive",
        "--from",
        "2023-07-29T06:02:57.857Z",
    ]);
    let out = env.run(&[
        "verify-archive",
        "archive",
        "--to",
        "2023-07-29T06:02:57.857Z",
    ]);
    assert_eq!(out.status.code(), Some(1));
}
