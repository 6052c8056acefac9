//! A batch job: every row of a dataset through a pipeline, block by block.
//!
//! Blocks stream through a memory budget: a block is read only once its
//! input and its expected output fit in `max_in_flight_bytes`, so a slow
//! step throttles reading and memory stays flat however large the dataset.
//! Inside a block, rows run concurrently (as many as the pipeline's steps
//! can take at once, so batched steps fill their batches; a whole batch per
//! request when every step is batched) and their outputs are put back in row
//! order. Each finished block is committed to redb
//! atomically with the job's counters; a block is never committed twice.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use weft_runtime::Item;
use weft_store::{BlockCommit, DatasetBlock, JobRecord};

use super::{BatchSpec, Jobs, Live};
use crate::ApiError;
use crate::blocking;
use crate::datasets::Format;
use crate::pipeline::{PipelineHandle, RunFailure, StepFailure};

pub(crate) type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Blocks a job works on at once (more only if the budget allows).
const BLOCKS_IN_FLIGHT: usize = 4;

/// Checks at submit time that the daemon can write the output directory.
pub(super) fn check_output_dir(dir: &Path) -> Result<(), ApiError> {
    let fail = |e: std::io::Error| {
        ApiError::bad_request(
            "invalid_job",
            format!("`output.dir`: cannot write to {}: {e}", dir.display()),
        )
        .hint("give a directory the daemon's user can create and write")
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".weft-write-test");
    std::fs::write(&probe, b"").map_err(fail)?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Runs the job's remaining blocks, then checks the failure budget and
/// writes the output directory. `Err` is the job's error message.
pub(super) async fn run(
    jobs: &Jobs,
    rec: &JobRecord,
    spec: &BatchSpec,
    _live: &Arc<Live>,
) -> Result<(), String> {
    let inner = &jobs.inner;
    let store = inner.store.clone();
    let (id, name) = (rec.id, spec.dataset.clone());
    let (dataset, done) = blocking(move || -> Result<_, ApiError> {
        let blocks: HashSet<u32> = store.job_blocks(id)?.into_iter().map(|(b, _)| b).collect();
        Ok((store.dataset(&name)?, blocks))
    })
    .await
    .map_err(|e| e.message)?;
    let dataset = dataset.ok_or_else(|| format!("dataset `{}` was deleted", spec.dataset))?;
    if dataset.blocks.len() as u32 != rec.blocks_total || dataset.rows != rec.items_total {
        return Err(format!(
            "dataset `{}` changed since the job was submitted ({} rows in {} blocks, now {} in {})",
            spec.dataset,
            rec.items_total,
            rec.blocks_total,
            dataset.rows,
            dataset.blocks.len()
        ));
    }
    let format: Format = dataset.format.parse().map_err(|e: ApiError| e.message)?;

    let mut first_row = Vec::with_capacity(dataset.blocks.len());
    let mut row = 0u64;
    for b in &dataset.blocks {
        first_row.push(row);
        row += u64::from(b.rows);
    }
    let todo: Vec<(u32, DatasetBlock, u64)> = dataset
        .blocks
        .iter()
        .enumerate()
        .filter(|(i, _)| !done.contains(&(*i as u32)))
        .map(|(i, b)| (i as u32, b.clone(), first_row[i]))
        .collect();

    // In a cluster, blocks go through the work queue to every node.
    match super::distributed::queue_for(jobs, spec).await {
        Some(queue) => {
            super::distributed::run(jobs, rec, spec, &dataset, todo, format, &queue).await?;
        }
        None => run_local(jobs, id, spec, format, todo).await?,
    }

    let store = jobs.inner.store.clone();
    let rec = blocking(move || store.job(id))
        .await
        .map_err(|e| e.message)?
        .ok_or("job deleted while running")?;
    over_budget(&rec, spec)?;
    if let Some(dir) = &spec.output.dir {
        let (store, dir) = (jobs.inner.store.clone(), dir.clone());
        blocking(move || write_dir(&store, id, &dir))
            .await
            .map_err(|e| e.message)?;
    }
    Ok(())
}

/// Runs `todo` (block index, block, first row) on this node.
async fn run_local(
    jobs: &Jobs,
    id: u64,
    spec: &BatchSpec,
    format: Format,
    todo: Vec<(u32, DatasetBlock, u64)>,
) -> Result<(), String> {
    let inner = &jobs.inner;
    let budget_total = spec
        .max_in_flight_bytes
        .unwrap_or(inner.config.max_in_flight_bytes)
        // Permits are taken as a u32 at a time: a budget above 4 GiB is
        // treated as 4 GiB (a block never needs more).
        .clamp(1, u64::from(u32::MAX));
    let budget = Arc::new(Semaphore::new(budget_total as usize));
    // Output bytes per input byte, in thousandths, learnt from finished
    // blocks (the first block assumes output as large as input).
    let ratio = Arc::new(AtomicU64::new(1000));
    let pipeline = current(jobs, &spec.pipeline)?;
    let parallel = parallelism(&pipeline);
    let rows_at_once = Arc::new((Arc::new(Semaphore::new(parallel)), parallel));
    let mut blocks = stream::iter(todo)
        .map(|(index, block, first)| {
            let (budget, ratio, rows_at_once) =
                (budget.clone(), ratio.clone(), rows_at_once.clone());
            let (jobs, spec) = (jobs.clone(), spec.clone());
            // Owned and boxed: the block futures run concurrently.
            Box::pin(async move {
                let estimate =
                    block.bytes + block.bytes.saturating_mul(ratio.load(Ordering::Relaxed)) / 1000;
                let cost = estimate.clamp(1, budget_total) as u32;
                let _memory = budget.acquire_many_owned(cost).await.expect("never closed");
                let started = Instant::now();
                let commit = run_block(&jobs, &spec, format, &block, first, &rows_at_once).await?;
                if let Some(r) = (commit.output.len() as u64 * 1000).checked_div(block.bytes) {
                    ratio.store(r.max(1), Ordering::Relaxed);
                }
                let ran = started.elapsed();
                let rec = jobs
                    .commit_block(id, index, commit, None)
                    .await
                    .map_err(|e| e.message)?;
                tracing::debug!(
                    job = id,
                    block = index,
                    run_ms = ran.as_secs_f64() * 1e3,
                    commit_ms = (started.elapsed() - ran).as_secs_f64() * 1e3,
                    "block committed"
                );
                Ok::<_, String>(rec)
            }) as BoxFuture<Result<Option<JobRecord>, String>>
        })
        .buffer_unordered(BLOCKS_IN_FLIGHT);
    while let Some(result) = blocks.next().await {
        let Some(rec): Option<JobRecord> = result? else {
            continue;
        };
        over_budget(&rec, spec)?;
    }
    drop(blocks);
    Ok(())
}

/// The event of a committed block.
pub(super) fn block_event(index: u32, rec: &JobRecord) -> Value {
    json!({
        "type": "block", "block": index,
        "blocks_done": rec.blocks_done, "blocks_total": rec.blocks_total,
        "items_done": rec.items_done, "items_total": rec.items_total,
        "items_failed": rec.items_failed,
    })
}

/// The pipeline as it is now (a re-applied pipeline's new version).
fn current(jobs: &Jobs, name: &str) -> Result<PipelineHandle, String> {
    jobs.inner
        .pipelines
        .get(name)
        .ok_or_else(|| format!("pipeline `{name}` was deleted"))
}

/// Rows in flight per job: enough to fill every replica's batches twice.
fn parallelism(p: &PipelineHandle) -> usize {
    p.steps
        .iter()
        .map(|s| s.spec.replicas.max as usize * s.spec.batch.as_ref().map_or(1, |b| b.max_size))
        .max()
        .unwrap_or(1)
        .saturating_mul(2)
        .clamp(2, 1024)
}

pub(super) fn over_budget(rec: &JobRecord, spec: &BatchSpec) -> Result<(), String> {
    let allowed = spec.max_failed_fraction * rec.items_total as f64;
    if rec.items_failed as f64 > allowed {
        return Err(format!(
            "{} of {} rows failed, more than max_failed_fraction {} allows; see them with \
             `weft job output {} --errors` (GET /v1/jobs/{}/errors)",
            rec.items_failed, rec.items_total, spec.max_failed_fraction, rec.id, rec.id
        ));
    }
    Ok(())
}

/// Runs one block's rows and returns what to commit.
async fn run_block(
    jobs: &Jobs,
    spec: &BatchSpec,
    format: Format,
    block: &DatasetBlock,
    first_row: u64,
    rows_at_once: &(Arc<Semaphore>, usize),
) -> Result<BlockCommit, String> {
    let store = jobs.inner.store.clone();
    let object = block.object.clone();
    let data = blocking(move || store.get_object(&object))
        .await
        .map_err(|e| e.message)?
        .ok_or_else(|| format!("dataset block object {} is missing", block.object))?;
    Ok(run_rows(
        jobs,
        &spec.pipeline,
        format,
        &data,
        first_row,
        rows_at_once,
        None,
    )
    .await)
}

/// Fetches an object this node does not have (a cluster worker asks the
/// job's owner): `Ok(None)` when the owner has none either.
pub(crate) type FetchObject =
    Arc<dyn Fn(String) -> BoxFuture<Result<Option<Vec<u8>>, String>> + Send + Sync>;

/// One row's outcome: its number, and its outputs or why it failed.
type RowResult = (u64, Result<Vec<Item>, RunFailure>);

/// Runs the rows of one block (`data`: the block object's bytes, rows
/// numbered from `first_row`) through `pipeline` and returns what to
/// commit. Objects the rows name (`objects` datasets) come from the local
/// store, else from `fetch`.
///
/// When every step is batched, rows go to the pipeline a whole batch at a
/// time: one request per batch rather than one per row, which keeps the
/// engine's work per row small. A batch that fails runs again row by row,
/// so only the rows that fail count as failed.
pub(crate) async fn run_rows(
    jobs: &Jobs,
    pipeline: &str,
    format: Format,
    data: &[u8],
    first_row: u64,
    (rows_at_once, parallel): &(Arc<Semaphore>, usize),
    fetch: Option<FetchObject>,
) -> BlockCommit {
    let rows: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|r| !r.is_empty())
        .collect();
    let chunk = current(jobs, pipeline)
        .ok()
        .and_then(|p| p.whole_batch())
        .unwrap_or(1)
        .clamp(1, *parallel);
    // Built up front rather than in a `map` closure over borrowed chunks,
    // which the compiler cannot prove `Send` for every lifetime.
    let mut chunks: Vec<futures_util::future::BoxFuture<'_, Vec<RowResult>>> = Vec::new();
    for (first, rows) in (first_row..).step_by(chunk).zip(rows.chunks(chunk)) {
        let fetch = fetch.clone();
        chunks.push(Box::pin(async move {
            let _slots = rows_at_once
                .acquire_many(rows.len() as u32)
                .await
                .expect("never closed");
            run_chunk(jobs, pipeline, format, rows, first, fetch).await
        }));
    }
    let results: Vec<RowResult> = stream::iter(chunks)
        .buffered(parallel.div_ceil(chunk))
        .flat_map(stream::iter)
        .collect()
        .await;
    let mut commit = BlockCommit {
        rows_in: results.len() as u32,
        ..BlockCommit::default()
    };
    for (n, result) in results {
        match result {
            Ok(items) => {
                for item in items {
                    push_line(&mut commit.output, &item);
                    commit.rows_out += 1;
                }
            }
            Err(failure) => {
                commit.failed += 1;
                let error = crate::api::run_error(failure.clone());
                let line = json!({
                    "row": n,
                    "step": failure.step,
                    "code": error.code,
                    "error": error.message,
                });
                commit.errors.extend_from_slice(line.to_string().as_bytes());
                commit.errors.push(b'\n');
            }
        }
    }
    commit
}

/// The rows in flight at once for one block run outside a local job (a
/// cluster worker): enough to fill the pipeline's replicas.
pub(crate) fn rows_at_once(jobs: &Jobs, pipeline: &str) -> Option<(Arc<Semaphore>, usize)> {
    let p = jobs.inner.pipelines.get(pipeline)?;
    let parallel = parallelism(&p);
    Some((Arc::new(Semaphore::new(parallel)), parallel))
}

/// The item a stored row becomes (its key is the row number).
async fn row_item(
    jobs: &Jobs,
    format: Format,
    row: &[u8],
    n: u64,
    fetch: Option<FetchObject>,
) -> Result<Item, RunFailure> {
    let payload = if format == Format::Objects {
        let store = jobs.inner.store.clone();
        let id = String::from_utf8_lossy(row).into_owned();
        let lookup = id.clone();
        let mut bytes = blocking(move || store.get_object(&lookup))
            .await
            .map_err(|e| e.message);
        if let (Ok(None), Some(fetch)) = (&bytes, fetch) {
            bytes = fetch(id.clone()).await;
        }
        match bytes {
            Ok(Some(b)) => b,
            other => {
                let why = match other {
                    Err(e) => e,
                    _ => format!("object {id} is missing"),
                };
                return Err(RunFailure {
                    pipeline: String::new(),
                    step: "read".into(),
                    failure: StepFailure::Invoke(weft_runtime::InvokeError::Host {
                        stage: "read".into(),
                        message: why,
                    }),
                });
            }
        }
    } else {
        row.to_vec()
    };
    Ok(Item {
        key: Some(n.to_string()),
        content_type: format.item_content_type().to_string(),
        payload,
    })
}

/// Runs a chunk of rows (numbered from `first`): as one request when it
/// has several, else (or when that request fails) row by row.
async fn run_chunk(
    jobs: &Jobs,
    pipeline: &str,
    format: Format,
    rows: &[&[u8]],
    first: u64,
    fetch: Option<FetchObject>,
) -> Vec<RowResult> {
    if rows.len() > 1 {
        let mut results: Vec<RowResult> = Vec::with_capacity(rows.len());
        let mut items = Vec::with_capacity(rows.len());
        for (n, row) in (first..).zip(rows) {
            match row_item(jobs, format, row, n, fetch.clone()).await {
                Ok(item) => {
                    items.push(item);
                    results.push((n, Ok(Vec::with_capacity(1))));
                }
                Err(e) => results.push((n, Err(e))),
            }
        }
        if let Some(out) = run_whole(jobs, pipeline, items).await {
            let mut out = out.into_iter();
            for (_, result) in &mut results {
                if let Ok(outputs) = result {
                    outputs.extend(out.next());
                }
            }
            return results;
        }
    }
    let each = (first..).zip(rows).map(|(n, row)| {
        let fetch = fetch.clone();
        async move {
            let result = match row_item(jobs, format, row, n, fetch).await {
                Ok(item) => run_row(jobs, pipeline, item).await,
                Err(e) => Err(e),
            };
            (n, result)
        }
    });
    futures_util::future::join_all(each).await
}

/// Runs `items` through the pipeline as one request and returns one output
/// per item. `None` when that cannot be done (a step is not batched, or
/// batches fewer items, or the request failed): the caller runs the items
/// one by one.
async fn run_whole(jobs: &Jobs, pipeline: &str, items: Vec<Item>) -> Option<Vec<Item>> {
    let n = items.len();
    if n == 0 {
        return Some(items);
    }
    patiently(jobs, pipeline, |p| {
        let items = items.clone();
        Box::pin(async move {
            if p.whole_batch().is_none_or(|max| max < items.len()) {
                return Ok(None);
            }
            p.run_items(items).await.map(Some)
        })
    })
    .await
    .ok()
    .flatten()
    .filter(|out| out.len() == n)
}

/// Runs one row.
async fn run_row(jobs: &Jobs, pipeline: &str, item: Item) -> Result<Vec<Item>, RunFailure> {
    patiently(jobs, pipeline, |p| {
        let item = item.clone();
        Box::pin(async move { p.run(item, None).await })
    })
    .await
}

/// Calls `run` on the pipeline as it is now until it is neither overloaded
/// nor being replaced (a batch job is patient; online requests are not).
async fn patiently<T>(
    jobs: &Jobs,
    pipeline: &str,
    run: impl Fn(PipelineHandle) -> BoxFuture<Result<T, RunFailure>>,
) -> Result<T, RunFailure> {
    let mut backoff = Duration::from_millis(5);
    loop {
        let p = current(jobs, pipeline).map_err(|message| RunFailure {
            pipeline: pipeline.to_string(),
            step: "-".into(),
            failure: StepFailure::Invoke(weft_runtime::InvokeError::Host {
                stage: "-".into(),
                message,
            }),
        })?;
        match run(p).await {
            Err(RunFailure {
                failure: StepFailure::Overloaded | StepFailure::Stopped,
                ..
            }) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}

/// Appends an output item as one JSON line: valid one-line JSON as the
/// stage wrote it, anything else as [`crate::api::render_item`] renders it.
fn push_line(out: &mut Vec<u8>, item: &Item) {
    let p = &item.payload;
    if crate::api::is_json(&item.content_type)
        && !p.iter().any(|&b| b == b'\n' || b == b'\r')
        && serde_json::from_slice::<serde::de::IgnoredAny>(p).is_ok()
    {
        out.extend_from_slice(p);
    } else {
        serde_json::to_writer(&mut *out, &crate::api::render_item(item)).expect("JSON serializes");
    }
    out.push(b'\n');
}

/// Writes `output.jsonl` and `errors.jsonl` (each through a temporary file
/// and a rename, so a crash never leaves half a file under the final name).
fn write_dir(store: &weft_store::Store, id: u64, dir: &Path) -> Result<(), ApiError> {
    use std::io::Write;
    let io =
        |e: std::io::Error| ApiError::internal(format!("writing output to {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let blocks = store.job_blocks(id)?;
    for (name, pick) in [
        (
            "output.jsonl",
            (|b: &weft_store::BlockOutput| Some(b.output.clone())) as fn(&_) -> _,
        ),
        ("errors.jsonl", |b: &weft_store::BlockOutput| {
            b.errors.clone()
        }),
    ] {
        let tmp = dir.join(format!(".{name}.{id}.tmp"));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(io)?);
        for (_, block) in &blocks {
            if let Some(object) = pick(block) {
                let bytes = store.get_object(&object)?.ok_or_else(|| {
                    ApiError::internal(format!(
                        "output object {object} of job {id} is gone (the job was deleted?)"
                    ))
                })?;
                file.write_all(&bytes).map_err(io)?;
            }
        }
        let file = file.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, dir.join(name)).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_rows_are_json_text_or_base64() {
        let item = |ct: &str, p: &[u8]| Item {
            key: None,
            content_type: ct.into(),
            payload: p.to_vec(),
        };
        assert_eq!(
            crate::api::render_item(&item("application/json", b"{\"a\":1}")),
            json!({"a": 1})
        );
        assert_eq!(
            crate::api::render_item(&item("text/plain; charset=utf-8", b"hi")),
            json!("hi")
        );
        assert_eq!(
            crate::api::render_item(&item("application/octet-stream", &[0])),
            json!({"key": null, "content_type": "application/octet-stream", "base64": "AA=="})
        );
    }

    #[test]
    fn output_lines_keep_one_line_json_as_written_and_re_encode_the_rest() {
        let line = |ct: &str, p: &[u8]| {
            let mut out = Vec::new();
            push_line(
                &mut out,
                &Item {
                    key: None,
                    content_type: ct.into(),
                    payload: p.to_vec(),
                },
            );
            String::from_utf8(out).unwrap()
        };
        // Key order and spacing as the stage wrote them.
        assert_eq!(
            line("application/json", b"{\"b\": 1, \"a\": [2]}"),
            "{\"b\": 1, \"a\": [2]}\n"
        );
        // Pretty-printed JSON would break the line: re-encoded on one line.
        assert_eq!(
            line("application/json", b"{\n  \"a\": 1\r\n}"),
            "{\"a\":1}\n"
        );
        // Invalid JSON is kept as bytes, not written as a broken line.
        assert_eq!(
            line("application/json", b"{oops"),
            "{\"base64\":\"e29vcHM=\",\"content_type\":\"application/json\",\"key\":null}\n"
        );
        assert_eq!(line("text/plain", b"a\nb"), "\"a\\nb\"\n");
    }

    #[test]
    fn an_unwritable_output_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = check_output_dir(&file.join("sub")).unwrap_err();
        assert!(err.message.contains("cannot write"), "{}", err.message);
        check_output_dir(&dir.path().join("new/deep")).unwrap();
    }
}
