//! `auditsync key new` and `auditsync verify-archive`: the signing key of the manifests, and
//! the offline check of an exported tree against them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use auditsync_core::Sink;
use auditsync_engine::verify_archive::{
    verify_archive, Checkpoint, FindingKind, VerifyOptions, VerifyProgress,
};
use auditsync_manifest::{KeyRing, ManifestSigner, PublicKey};

use crate::app::App;
use crate::{endpoints, progress};

/// `auditsync key` actions.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeyAction {
    /// Write a new Ed25519 signing key (PKCS#8 PEM, mode 0600) and print its public key.
    New {
        /// Where the private key goes; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// Also write the public key (SPKI PEM) here, for verifiers.
        #[arg(long)]
        public_out: Option<PathBuf>,
    },
}

/// `auditsync manifest` actions.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ManifestAction {
    /// Write the manifests that are due now, without exporting: after manifests are turned
    /// on, the first one lists every file the store's batch records know, so earlier
    /// exports become covered.
    Backfill {
        /// Only this destination (default: all).
        destination: Option<String>,
    },
}

/// `auditsync verify-archive` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArchiveArgs {
    /// A destination's name, a sink URL (s3://, az://, gs://, file://) or a local directory
    /// (a copy of the tree). With --proof, optional: where to read the proven file.
    #[arg(required_unless_present = "proof")]
    source: Option<String>,
    /// Check one record's proof (from `auditsync prove`) instead of a whole archive.
    #[arg(long)]
    proof: Option<PathBuf>,
    /// A trusted public key (SPKI PEM); repeat for several. Without one, the public half of
    /// the config's signing key.
    #[arg(long = "public-key")]
    public_keys: Vec<PathBuf>,
    /// A head saved earlier (`--save-checkpoint`): a chain cut back behind it is found.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Write the heads found now, for a later `--checkpoint`.
    #[arg(long)]
    save_checkpoint: Option<PathBuf>,
    /// The last manifest must be at most this old: `90s`, `30m`, `2h`, `1d`.
    #[arg(long)]
    expect_fresh: Option<String>,
    /// Read only the files with events at or after this time (RFC 3339 or a date); the
    /// chain of manifests is still checked whole.
    #[arg(long)]
    from: Option<String>,
    /// Read only the files with events before this time (a date: through its end).
    #[arg(long)]
    to: Option<String>,
    /// Report files no manifest lists without failing (archives from before manifests).
    #[arg(long)]
    allow_unmanifested: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn key_command(action: &KeyAction) -> anyhow::Result<ExitCode> {
    let KeyAction::New { out, public_out } = action;
    let signer = ManifestSigner::generate();
    write_new(out, signer.to_pem().as_bytes(), 0o600)?;
    let public = signer.public_key().to_pem();
    if let Some(path) = public_out {
        write_new(path, public.as_bytes(), 0o644)?;
    }
    eprintln!(
        "wrote signing key {} to {}; keep it secret. Its public key:",
        signer.key_id(),
        out.display()
    );
    print!("{public}");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn manifest_command(
    app: &App,
    action: &ManifestAction,
) -> anyhow::Result<ExitCode> {
    let ManifestAction::Backfill { destination } = action;
    if app.config.manifests.is_none() {
        bail!("config key `manifests` is not set: there is no signing key to write manifests with");
    }
    if let Some(name) = destination {
        if !app.exporter.destination_names().contains(name) {
            bail!(
                "no destination `{name}`; destinations: {}",
                app.exporter.destination_names().join(", ")
            );
        }
    }
    let mut failed = false;
    for (name, result) in app.exporter.write_manifests(destination.as_deref()).await {
        match result {
            Ok(r) => println!(
                "{name}: {} manifests written, listing {} files",
                r.written, r.files
            ),
            Err(e) => {
                failed = true;
                println!("{name}: FAILED: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Creates `path` with `bytes`, refusing to replace a file.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).with_context(|| {
        format!(
            "cannot create {} (an existing file is never replaced)",
            path.display()
        )
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `verify-archive --proof FILE [SOURCE]`: the signature and the Merkle path, and with a
/// SOURCE the file's bytes and the record in them.
async fn check_proof(
    path: &Path,
    keys: &KeyRing,
    source: Option<&str>,
    app: Option<&App>,
) -> anyhow::Result<ExitCode> {
    use auditsync_engine::proof::{check, check_file, Proof};
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--proof {}: cannot read it", path.display()))?;
    let proof: Proof = serde_json::from_str(&text)
        .with_context(|| format!("--proof {}: not a proof", path.display()))?;
    let proven = match check(&proof, keys) {
        Ok(proven) => proven,
        Err(problem) => {
            println!("FAIL proof {}: {problem}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    println!(
        "proof {}: `{}` (sha256 {}, seq {}..={}) is listed in manifest {} of `{}`, written {}, signed by key {}",
        path.display(),
        proven.entry.key,
        proven.entry.sha256,
        proven.entry.first_seq,
        proven.entry.last_seq,
        proven.header.number,
        proven.header.destination,
        proven.header.created,
        proven.header.key_id
    );
    let Some(source) = source else {
        println!("record {} is as the proof holds it only if the file's bytes match: give SOURCE to check them", proof.record_number);
        return Ok(ExitCode::SUCCESS);
    };
    let (sink, label) = open_source(source, app)?;
    let key = auditsync_core::ObjectKey::new(proven.entry.key.clone())?;
    let body = sink
        .get(&key)
        .await
        .with_context(|| format!("{label}: cannot read `{}`", proven.entry.key))?;
    match check_file(&proof, &proven, &body) {
        Ok(()) => {
            println!(
                "record {} of `{}` in {label} is the proof's record",
                proof.record_number, proven.entry.key
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            println!("FAIL {}: {problem}", proven.entry.key);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Parses `90s`, `30m`, `2h`, `1d` into milliseconds.
fn parse_duration_ms(text: &str) -> anyhow::Result<i64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits.parse().map_err(|_| {
        anyhow!("--expect-fresh: `{text}` is not a duration such as 90s, 30m, 2h or 1d")
    })?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("--expect-fresh: `{text}` needs a unit: s, m, h or d"),
    };
    Ok(n.saturating_mul(unit_ms))
}

fn trusted_keys(args: &VerifyArchiveArgs, app: Option<&App>) -> anyhow::Result<KeyRing> {
    let mut ring = KeyRing::default();
    for path in &args.public_keys {
        let what = format!("--public-key {}", path.display());
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("{what}: cannot read it"))?;
        ring.add(PublicKey::from_pem(&pem, &what)?);
    }
    if ring.is_empty() {
        let Some(manifests) = app.and_then(|a| a.config.manifests.as_ref()) else {
            bail!("give the public key(s) to trust with --public-key FILE (the config has no `manifests` signing key to take it from)");
        };
        ring.add(manifests.signer()?.public_key());
    }
    Ok(ring)
}

/// A name or URL as `sync` takes them, or a local directory (read through the volume sink).
fn open_source(spec: &str, app: Option<&App>) -> anyhow::Result<(Arc<dyn Sink>, String)> {
    let path = Path::new(spec);
    let spec = if !auditsync_engine::sink_url::is_url(spec) && path.is_dir() {
        let absolute = path
            .canonicalize()
            .with_context(|| format!("SOURCE {spec}: cannot resolve the directory"))?;
        format!("file://{}", absolute.display())
    } else {
        spec.to_string()
    };
    let destinations: std::sync::Arc<[auditsync_engine::Destination]> = app.map_or_else(
        || std::sync::Arc::from(Vec::new()),
        |a| a.exporter.destinations(),
    );
    let endpoint = endpoints::open(&spec, app.map(|a| &a.config), &destinations, "SOURCE")
        .map_err(|e| anyhow!("{e:#} (nor a local directory)"))?;
    Ok((endpoint.sink, endpoint.label))
}

pub(crate) async fn verify_archive_command(
    app: Option<&App>,
    args: &VerifyArchiveArgs,
) -> anyhow::Result<ExitCode> {
    let keys = trusted_keys(args, app)?;
    if let Some(path) = &args.proof {
        return check_proof(path, &keys, args.source.as_deref(), app).await;
    }
    let source = args.source.as_deref().unwrap_or_default();
    let checkpoint = match &args.checkpoint {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--checkpoint {}: cannot read it", path.display()))?;
            Some(serde_json::from_str::<Checkpoint>(&text).with_context(|| {
                format!("--checkpoint {}: not a checkpoint file", path.display())
            })?)
        }
    };
    let options = VerifyOptions {
        keys,
        checkpoint,
        expect_fresh_ms: args
            .expect_fresh
            .as_deref()
            .map(parse_duration_ms)
            .transpose()?,
        allow_unmanifested: args.allow_unmanifested,
        now_ms: chrono::Utc::now().timestamp_millis(),
        from_ms: args
            .from
            .as_deref()
            .map(|t| crate::range_export::parse_bound(t, "--from", false))
            .transpose()?,
        to_ms: args
            .to
            .as_deref()
            .map(|t| crate::range_export::parse_bound(t, "--to", true))
            .transpose()?,
    };
    let (sink, label) = open_source(source, app)?;
    let progress = Arc::new(VerifyProgress::default());
    let shown = progress.clone();
    let bar = progress::Progress::start(
        "verify-archive",
        progress::Unit::Items("objects"),
        move || {
            use std::sync::atomic::Ordering;
            progress::Reading {
                done: shown.objects.load(Ordering::Relaxed),
                total: Some(shown.objects_total.load(Ordering::Relaxed)),
                message: format!(
                    "{} read",
                    progress::megabytes(shown.bytes.load(Ordering::Relaxed))
                ),
            }
        },
    );
    let report = verify_archive(sink, &options, &progress)
        .await
        .with_context(|| format!("verify-archive {label}"))?;
    drop(bar);
    if let Some(path) = &args.save_checkpoint {
        let saved = Checkpoint {
            heads: report.heads.clone(),
        };
        std::fs::write(path, serde_json::to_string_pretty(&saved)? + "\n")
            .with_context(|| format!("--save-checkpoint {}: cannot write it", path.display()))?;
    }
    let clean = report.is_clean(args.allow_unmanifested);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.findings {
            let level = if args.allow_unmanifested && f.kind == FindingKind::FileUnlisted {
                "note"
            } else {
                "FAIL"
            };
            let kind = serde_json::to_value(f.kind)?;
            println!(
                "{level} {} {}: {}",
                kind.as_str().unwrap_or_default(),
                f.key,
                f.detail
            );
        }
        for h in &report.heads {
            println!(
                "chain {}: ends at manifest {} (seq {}, written {})",
                h.chain, h.number, h.last_seq, h.created
            );
        }
        println!(
            "verify-archive {label}: {} manifests, {} files{}, {} records, {} read: {}",
            report.manifests,
            report.files,
            if report.files_skipped > 0 {
                format!(" ({} outside --from/--to not read)", report.files_skipped)
            } else {
                String::new()
            },
            report.events,
            progress::megabytes(report.bytes),
            if clean {
                "everything verifies".to_string()
            } else {
                format!("{} findings", report.findings.len())
            }
        );
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration_ms("90s").unwrap(), 90_000);
        assert_eq!(parse_duration_ms("2h").unwrap(), 7_200_000);
        assert_eq!(parse_duration_ms("1d").unwrap(), 86_400_000);
        assert!(parse_duration_ms("10")
            .unwrap_err()
            .to_string()
            .contains("unit"));
        assert!(parse_duration_ms("h").is_err());
        assert!(parse_duration_ms("5w").is_err());
    }
}
