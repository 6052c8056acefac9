//! `weft dataset ...` and `weft job ...`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::print_json;
use weft_store::JobState;

use crate::client::{Client, seg};

/// `weft dataset ...`.
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Upload FILES (streamed, concatenated) as dataset NAME.
    Create {
        /// Dataset name.
        name: String,
        /// Input files: JSON lines, CSV, text lines, or any files with
        /// `--format objects` (each file becomes one row).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// jsonl, csv, lines or objects (default: from the first file's extension).
        #[arg(long)]
        format: Option<String>,
        /// Rows per block (the unit of progress, parallelism and resume).
        #[arg(long)]
        block_rows: Option<u32>,
    },
    /// List datasets.
    List,
    /// Show a dataset and its blocks.
    Show {
        /// Dataset name.
        name: String,
    },
    /// Delete a dataset.
    Delete {
        /// Dataset name.
        name: String,
    },
}

/// `weft job ...`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job: a batch job with `--dataset`, an async invocation with
    /// `--input`. Prints the job id.
    Submit {
        /// The pipeline to run.
        #[arg(long)]
        pipeline: String,
        /// Batch job: the dataset to run over.
        #[arg(long, conflicts_with = "input")]
        dataset: Option<String>,
        /// Invoke job: the input (JSON, or text with `--content-type text/plain`).
        #[arg(long)]
        input: Option<String>,
        /// Content type of `--input`.
        #[arg(long, default_value = "application/json")]
        content_type: String,
        /// Batch job: also write output.jsonl and errors.jsonl to this
        /// directory (on the daemon's machine) when it succeeds.
        #[arg(long)]
        output_dir: Option<PathBuf>,
        /// Batch job: fail once more than this fraction of rows failed.
        #[arg(long)]
        max_failed_fraction: Option<f64>,
        /// Batch job, in a cluster: run the blocks on every node (`true`) or
        /// on this one only (`false`); default: every node when more than
        /// one is alive.
        #[arg(long)]
        distribute: Option<bool>,
        /// Invoke job: seconds the whole run may take (default 3600).
        #[arg(long)]
        timeout_s: Option<u64>,
        /// Follow the job until it ends, like `weft job watch`.
        #[arg(long)]
        watch: bool,
    },
    /// List jobs, newest first.
    List,
    /// Show a job as JSON.
    Status {
        /// Job id.
        id: String,
    },
    /// Follow a job with a live progress bar until it ends; exits non-zero
    /// unless it succeeded.
    Watch {
        /// Job id.
        id: String,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// Job id.
        id: String,
    },
    /// Download a batch job's output (JSON lines, input order).
    Output {
        /// Job id.
        id: String,
        /// Write here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// The failed rows instead of the output.
        #[arg(long)]
        errors: bool,
        /// What has been committed so far, before the job succeeded.
        #[arg(long)]
        partial: bool,
    },
    /// Delete a finished job.
    Delete {
        /// Job id.
        id: String,
    },
}

/// Runs `weft dataset ...`.
pub async fn dataset(client: &Client, cmd: DatasetCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetCommand::Create {
            name,
            files,
            format,
            block_rows,
        } => {
            let format = match format {
                Some(f) => f,
                None => crate::datasets::Format::of_file(&files[0])
                    .map(|f| f.as_str().to_string())
                    .with_context(|| {
                        format!(
                            "cannot tell the format of {}: pass --format jsonl|csv|lines|objects",
                            files[0].display()
                        )
                    })?,
            };
            let body = if format == "objects" {
                let mut ids = String::new();
                for f in &files {
                    let bytes = tokio::fs::read(f)
                        .await
                        .with_context(|| format!("reading {}", f.display()))?;
                    let v = client
                        .json(client.request(Method::PUT, "/v1/objects").body(bytes))
                        .await?;
                    ids.push_str(v["id"].as_str().unwrap_or_default());
                    ids.push('\n');
                }
                reqwest::Body::from(ids)
            } else {
                for f in &files {
                    anyhow::ensure!(f.is_file(), "{} is not a readable file", f.display());
                }
                reqwest::Body::wrap_stream(concat_files(files))
            };
            let mut query = vec![("name", name), ("format", format)];
            if let Some(n) = block_rows {
                query.push(("block_rows", n.to_string()));
            }
            let v = client
                .json(
                    client
                        .request(Method::POST, "/v1/datasets")
                        .query(&query)
                        .body(body),
                )
                .await?;
            out!(
                "created dataset {} ({} rows, {} blocks, {} bytes)",
                v["name"].as_str().unwrap_or(""),
                v["rows"],
                v["blocks"],
                v["bytes"]
            )?;
            Ok(())
        }
        DatasetCommand::List => {
            let v = client
                .json(client.request(Method::GET, "/v1/datasets"))
                .await?;
            for d in v["datasets"].as_array().into_iter().flatten() {
                out!(
                    "{:<24} {:<8} {:>10} rows {:>6} blocks {:>12} bytes",
                    d["name"].as_str().unwrap_or(""),
                    d["format"].as_str().unwrap_or(""),
                    d["rows"],
                    d["blocks"],
                    d["bytes"]
                )?;
            }
            Ok(())
        }
        DatasetCommand::Show { name } => {
            print_json(
                &client
                    .json(client.request(Method::GET, &format!("/v1/datasets/{}", seg(&name)?)))
                    .await?,
            )?;
            Ok(())
        }
        DatasetCommand::Delete { name } => {
            client
                .send(client.request(Method::DELETE, &format!("/v1/datasets/{}", seg(&name)?)))
                .await?;
            out!("deleted dataset {name}")?;
            Ok(())
        }
    }
}

/// The files one after another (a newline between them when a file does
/// not end with one), read in chunks: nothing is held whole in memory.
fn concat_files(
    files: Vec<PathBuf>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
    tokio::spawn(async move {
        for f in files {
            let file = match tokio::fs::File::open(&f).await {
                Ok(file) => file,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let mut chunks = tokio_util::io::ReaderStream::with_capacity(file, 256 << 10);
            let mut last = b'\n';
            while let Some(chunk) = chunks.next().await {
                if let Ok(c) = &chunk
                    && let Some(&b) = c.last()
                {
                    last = b;
                }
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
            if last != b'\n' && tx.send(Ok(bytes::Bytes::from_static(b"\n"))).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Runs `weft job ...`.
pub async fn job(client: &Client, cmd: JobCommand) -> anyhow::Result<()> {
    match cmd {
        JobCommand::Submit {
            pipeline,
            dataset,
            input,
            content_type,
            output_dir,
            max_failed_fraction,
            distribute,
            timeout_s,
            watch: follow,
        } => {
            let mut spec = match (dataset, input) {
                (Some(dataset), None) => {
                    json!({"kind": "batch", "pipeline": pipeline, "dataset": dataset})
                }
                (None, Some(input)) => {
                    let value = if content_type.contains("json") {
                        serde_json::from_str(&input).context(
                            "--input is not JSON (pass --content-type text/plain for text)",
                        )?
                    } else {
                        Value::String(input)
                    };
                    json!({"kind": "invoke", "pipeline": pipeline, "input": value, "content_type": content_type})
                }
                _ => anyhow::bail!(
                    "give --dataset NAME (batch job) or --input DATA (async invocation)"
                ),
            };
            if let Some(dir) = output_dir {
                spec["output"] = json!({"dir": dir});
            }
            if let Some(f) = max_failed_fraction {
                spec["max_failed_fraction"] = json!(f);
            }
            if let Some(d) = distribute {
                spec["distribute"] = json!(d);
            }
            if let Some(t) = timeout_s {
                spec["timeout_s"] = json!(t);
            }
            let v = client
                .json(client.request(Method::POST, "/v1/jobs").json(&spec))
                .await?;
            let id = v["id"].as_str().unwrap_or_default().to_string();
            out!("{id}")?;
            if follow {
                return watch(client, &id).await;
            }
            Ok(())
        }
        JobCommand::List => {
            let v = client.json(client.request(Method::GET, "/v1/jobs")).await?;
            for j in v["jobs"].as_array().into_iter().flatten() {
                let progress = match j["kind"].as_str() {
                    Some("batch") => format!(
                        "{}/{} rows, {} failed",
                        j["progress"]["items_done"],
                        j["progress"]["items_total"],
                        j["progress"]["items_failed"]
                    ),
                    _ => j["progress"]["message"].as_str().unwrap_or("").to_string(),
                };
                out!(
                    "{:>6} {:<7} {:<10} {:<20} {}",
                    j["id"].as_str().unwrap_or(""),
                    j["kind"].as_str().unwrap_or(""),
                    j["state"].as_str().unwrap_or(""),
                    j["pipeline"].as_str().unwrap_or(""),
                    progress
                )?;
            }
            Ok(())
        }
        JobCommand::Status { id } => {
            print_json(
                &client
                    .json(client.request(Method::GET, &format!("/v1/jobs/{}", seg(&id)?)))
                    .await?,
            )?;
            Ok(())
        }
        JobCommand::Watch { id } => watch(client, &id).await,
        JobCommand::Cancel { id } => {
            let v = client
                .json(client.request(Method::POST, &format!("/v1/jobs/{}/cancel", seg(&id)?)))
                .await?;
            out!("job {id} {}", v["state"].as_str().unwrap_or(""))?;
            Ok(())
        }
        JobCommand::Output {
            id,
            output,
            errors,
            partial,
        } => {
            let what = if errors { "errors" } else { "output" };
            let mut req = client.request(Method::GET, &format!("/v1/jobs/{}/{what}", seg(&id)?));
            if partial {
                req = req.query(&[("partial", "true")]);
            }
            let response = client.send(req).await?;
            let mut sink: Box<dyn Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                sink.write_all(&chunk?)?;
            }
            sink.flush()?;
            Ok(())
        }
        JobCommand::Delete { id } => {
            client
                .send(client.request(Method::DELETE, &format!("/v1/jobs/{}", seg(&id)?)))
                .await?;
            out!("deleted job {id}")?;
            Ok(())
        }
    }
}

/// Polls the job and draws its progress until it ends.
async fn watch(client: &Client, id: &str) -> anyhow::Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    // Since when the daemon has not answered: a restart (the job resumes
    // after it) is waited out, for up to `RECONNECT`.
    let mut lost: Option<std::time::Instant> = None;
    loop {
        let v = match client
            .json(client.request(Method::GET, &format!("/v1/jobs/{}", seg(id)?)))
            .await
        {
            Ok(v) => {
                lost = None;
                v
            }
            Err(e) if unreachable(&e) => {
                let since = *lost.get_or_insert_with(|| {
                    eprintln!("\n{e}; retrying for {RECONNECT:?}");
                    std::time::Instant::now()
                });
                if since.elapsed() > RECONNECT {
                    return Err(e);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let state = v["state"].as_str().unwrap_or("").to_string();
        let line = progress_line(&v);
        if line != last {
            let mut err = std::io::stderr().lock();
            if tty {
                write!(err, "\r\x1b[2K{line}")?;
            } else {
                writeln!(err, "{line}")?;
            }
            err.flush()?;
            last = line;
        }
        if has_ended(&state) {
            if tty {
                eprintln!();
            }
            if v["kind"] == "invoke" && state == "succeeded" {
                out!("{}", v["result"])?;
            }
            return match state.as_str() {
                "succeeded" => Ok(()),
                _ => anyhow::bail!(
                    "job {id} {state}{}",
                    v["error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether a job in `state` will not change any more: `moved` too (a
/// cluster's node took it over; its `error` says which).
fn has_ended(state: &str) -> bool {
    JobState::from_name(state).is_some_and(JobState::is_terminal)
}

/// How long `weft job watch` waits for a daemon that stopped answering.
const RECONNECT: Duration = Duration::from_secs(120);

/// Whether `e` is the daemon not answering at all (not an error it sent).
fn unreachable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<reqwest::Error>()
        .is_some_and(|e| e.is_connect() || e.is_timeout() || e.is_request())
}

/// `[#####.....] 52% 5200/10000 rows  1830 rows/s  ETA 3s  2 failed  running`.
fn progress_line(v: &Value) -> String {
    let state = v["state"].as_str().unwrap_or("");
    if v["kind"] != "batch" {
        let p = &v["progress"];
        return match p["done"].as_u64() {
            Some(done) => format!(
                "{state}: {done}/{} {}",
                p["total"]
                    .as_u64()
                    .map_or("?".to_string(), |t| t.to_string()),
                p["message"].as_str().unwrap_or("")
            ),
            None => state.to_string(),
        };
    }
    let p = &v["progress"];
    let fraction = p["fraction"].as_f64().unwrap_or(0.0).clamp(0.0, 1.0);
    let filled = (fraction * 30.0).round() as usize;
    let mut line = format!(
        "[{}{}] {:>3.0}% {}/{} rows",
        "#".repeat(filled),
        ".".repeat(30 - filled),
        fraction * 100.0,
        p["items_done"],
        p["items_total"]
    );
    if let Some(rate) = p["items_per_s"].as_f64() {
        line.push_str(&format!("  {rate:.0} rows/s"));
    }
    if let Some(eta) = p["eta_s"].as_f64() {
        line.push_str(&format!("  ETA {eta:.0}s"));
    }
    if p["items_failed"].as_u64().unwrap_or(0) > 0 {
        line.push_str(&format!("  {} failed", p["items_failed"]));
    }
    line.push_str(&format!("  {state}"));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        let v = json!({"kind": "batch", "state": "running", "progress": {
            "fraction": 0.5, "items_done": 5, "items_total": 10, "items_failed": 1,
            "items_per_s": 2.0, "eta_s": 2.5}});
        let line = progress_line(&v);
        assert!(
            line.starts_with("[###############...............]  50% 5/10 rows"),
            "{line}"
        );
        assert!(
            line.contains("2 rows/s")
                && line.contains("ETA 2s")
                && line.ends_with("1 failed  running"),
            "{line}"
        );
        let v = json!({"kind": "invoke", "state": "running", "progress": {"done": 3, "total": null, "message": "epoch"}});
        assert_eq!(progress_line(&v), "running: 3/? epoch");
    }

    /// `weft job watch` stops at every final state, `moved` included (it
    /// polled a moved job for ever).
    #[test]
    fn watching_ends_at_every_final_state() {
        for state in ["succeeded", "failed", "cancelled", "moved"] {
            assert!(has_ended(state), "{state}");
        }
        for state in ["queued", "running", ""] {
            assert!(!has_ended(state), "{state}");
        }
    }
}
