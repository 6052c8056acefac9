//! Jobs: one record per batch or async job, the output of every finished
//! block, and an append-only event log per job.
//!
//! A block's output, its error rows and the job's counters are written in one
//! transaction, and a block already recorded is never recorded again: a job
//! resumed after a crash redoes exactly the blocks that had not committed, so
//! its output has no gaps and no duplicates.

use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::objects::{free_unreferenced, write_object};
use crate::stages::now_ms;
use crate::{COUNTERS, JOB_BLOCKS, JOB_EVENTS, JOBS, ObjectId, Result, Store, db, record};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Accepted, waiting for capacity.
    Queued,
    /// Running (or to be resumed after a restart).
    Running,
    /// Finished; the result or output is complete.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Stopped by a user.
    Cancelled,
    /// Taken over by another node of the cluster while this one was away
    /// (`error` says where); it runs, or ran, there.
    Moved,
}

impl JobState {
    /// Every state.
    pub const ALL: [Self; 6] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
        Self::Moved,
    ];

    /// The state [`JobState::as_str`] names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the job will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Moved
        )
    }

    /// Lowercase name, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Moved => "moved",
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id, increasing from 1.
    pub id: u64,
    /// `batch` or `invoke`; the daemon owns the meaning.
    pub kind: String,
    /// The submitted spec as JSON; its schema belongs to the daemon.
    pub spec_json: String,
    /// Current state.
    pub state: JobState,
    /// Submission time, ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// When it (last) started running.
    pub started_unix_ms: Option<u64>,
    /// When it reached a terminal state.
    pub finished_unix_ms: Option<u64>,
    /// Blocks to process (batch jobs).
    pub blocks_total: u32,
    /// Blocks committed.
    pub blocks_done: u32,
    /// Input rows to process.
    pub items_total: u64,
    /// Input rows processed (succeeded or failed) in committed blocks.
    pub items_done: u64,
    /// Input rows that failed in committed blocks.
    pub items_failed: u64,
    /// Output rows in committed blocks.
    pub rows_out: u64,
    /// Last progress report (`done`, `total`, message) of an async job.
    pub progress: Option<(u64, Option<u64>, String)>,
    /// Final result of an async job, as JSON.
    pub result_json: Option<String>,
    /// Why the job failed.
    pub error: Option<String>,
}

/// The committed output of one block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockOutput {
    /// Input rows in the block.
    pub rows_in: u32,
    /// Output rows written.
    pub rows_out: u32,
    /// Input rows that failed.
    pub failed: u32,
    /// Object holding the output rows (JSON lines).
    pub output: ObjectId,
    /// Object holding the error rows (JSON lines), when any failed.
    pub errors: Option<ObjectId>,
}

/// What a finished block hands to [`Store::commit_block`].
#[derive(Debug, Clone, Default)]
pub struct BlockCommit {
    /// Input rows in the block.
    pub rows_in: u32,
    /// Output rows.
    pub rows_out: u32,
    /// Failed input rows.
    pub failed: u32,
    /// Output rows as JSON lines.
    pub output: Vec<u8>,
    /// Error rows as JSON lines (empty when none failed).
    pub errors: Vec<u8>,
}

fn get_job(txn: &WriteTransaction, id: u64) -> Result<Option<JobRecord>> {
    let table = txn.open_table(JOBS).map_err(db)?;
    let raw = table.get(id).map_err(db)?;
    raw.map(|r| record::decode("jobs", r.value())).transpose()
}

fn put_job(txn: &WriteTransaction, rec: &JobRecord) -> Result<()> {
    txn.open_table(JOBS)
        .map_err(db)?
        .insert(rec.id, record::encode(rec).as_slice())
        .map_err(db)?;
    Ok(())
}

impl Store {
    /// Stores a new queued job and returns it with its id.
    pub fn create_job(
        &self,
        kind: &str,
        spec_json: &str,
        blocks_total: u32,
        items_total: u64,
    ) -> Result<JobRecord> {
        let txn = self.write()?;
        let rec = {
            let mut counters = txn.open_table(COUNTERS).map_err(db)?;
            let id = counters.get("job").map_err(db)?.map_or(0, |v| v.value()) + 1;
            counters.insert("job", id).map_err(db)?;
            drop(counters);
            let rec = JobRecord {
                id,
                kind: kind.to_string(),
                spec_json: spec_json.to_string(),
                state: JobState::Queued,
                created_unix_ms: now_ms(),
                started_unix_ms: None,
                finished_unix_ms: None,
                blocks_total,
                blocks_done: 0,
                items_total,
                items_done: 0,
                items_failed: 0,
                rows_out: 0,
                progress: None,
                result_json: None,
                error: None,
            };
            put_job(&txn, &rec)?;
            rec
        };
        txn.commit().map_err(db)?;
        Ok(rec)
    }

    /// One job, or `None`.
    pub fn job(&self, id: u64) -> Result<Option<JobRecord>> {
        let txn = self.read()?;
        let table = txn.open_table(JOBS).map_err(db)?;
        let raw = table.get(id).map_err(db)?;
        raw.map(|r| record::decode("jobs", r.value())).transpose()
    }

    /// Every job this release can read, oldest first (see
    /// [`record::listed`]).
    pub fn list_jobs(&self) -> Result<Vec<JobRecord>> {
        let txn = self.read()?;
        let table = txn.open_table(JOBS).map_err(db)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(db)? {
            let (key, raw) = entry.map_err(db)?;
            out.extend(record::listed("jobs", key.value(), raw.value()));
        }
        Ok(out)
    }

    /// Changes a job in one transaction. `change` sees the current record
    /// and returns `false` to leave it as it is. Returns the record after
    /// the change, or `None` when there is no such job. Entering a terminal
    /// state stamps `finished_unix_ms`; entering `Running` stamps
    /// `started_unix_ms`.
    pub fn update_job(
        &self,
        id: u64,
        change: impl FnOnce(&mut JobRecord) -> bool,
    ) -> Result<Option<JobRecord>> {
        let txn = self.write()?;
        let Some(mut rec) = get_job(&txn, id)? else {
            return Ok(None);
        };
        let before = rec.state;
        if change(&mut rec) {
            if rec.state != before {
                if rec.state == JobState::Running {
                    rec.started_unix_ms = Some(now_ms());
                }
                if rec.state.is_terminal() {
                    rec.finished_unix_ms = Some(now_ms());
                }
            }
            put_job(&txn, &rec)?;
            txn.commit().map_err(db)?;
        }
        Ok(Some(rec))
    }

    /// Records block `block` of job `id` with its output and updates the
    /// job's counters, atomically. Returns the updated job, or `None` when
    /// the block was already recorded (nothing is written then) or the job
    /// is gone.
    pub fn commit_block(
        &self,
        id: u64,
        block: u32,
        commit: &BlockCommit,
    ) -> Result<Option<JobRecord>> {
        Ok(self
            .commit_block_logged(id, block, commit, |_| None)?
            .map(|(rec, _)| rec))
    }

    /// [`Store::commit_block`], appending `event(&record)` (when it gives
    /// one) to the job's event log in the same transaction, so that a
    /// crash cannot keep the block and lose its event; returns the event's
    /// sequence number with the record.
    pub fn commit_block_logged(
        &self,
        id: u64,
        block: u32,
        commit: &BlockCommit,
        event: impl FnOnce(&JobRecord) -> Option<String>,
    ) -> Result<Option<(JobRecord, Option<LoggedEvent>)>> {
        let txn = self.write()?;
        let Some(mut rec) = get_job(&txn, id)? else {
            return Ok(None);
        };
        // A job that has ended (cancelled, failed) keeps the counters it
        // ended with: blocks still in flight then are dropped.
        if rec.state.is_terminal() {
            return Ok(None);
        }
        {
            let mut blocks = txn.open_table(JOB_BLOCKS).map_err(db)?;
            if blocks.get((id, block)).map_err(db)?.is_some() {
                return Ok(None);
            }
            let output = BlockOutput {
                rows_in: commit.rows_in,
                rows_out: commit.rows_out,
                failed: commit.failed,
                output: write_object(&txn, &commit.output)?,
                errors: if commit.errors.is_empty() {
                    None
                } else {
                    Some(write_object(&txn, &commit.errors)?)
                },
            };
            blocks
                .insert((id, block), record::encode(&output).as_slice())
                .map_err(db)?;
            crate::refs::count(&txn, &output, true)?;
        }
        rec.blocks_done += 1;
        rec.items_done += u64::from(commit.rows_in);
        rec.items_failed += u64::from(commit.failed);
        rec.rows_out += u64::from(commit.rows_out);
        put_job(&txn, &rec)?;
        let logged = match event(&rec) {
            Some(text) => Some((append_event(&txn, id, &text)?, text)),
            None => None,
        };
        txn.commit().map_err(db)?;
        Ok(Some((rec, logged)))
    }

    /// The committed blocks of a job, in block order.
    pub fn job_blocks(&self, id: u64) -> Result<Vec<(u32, BlockOutput)>> {
        let txn = self.read()?;
        let table = txn.open_table(JOB_BLOCKS).map_err(db)?;
        let mut out = Vec::new();
        for entry in table.range((id, 0)..=(id, u32::MAX)).map_err(db)? {
            let (key, raw) = entry.map_err(db)?;
            out.push((key.value().1, record::decode("job_blocks", raw.value())?));
        }
        Ok(out)
    }

    /// Appends an event to a job's log and returns its sequence number
    /// (1, 2, …).
    pub fn append_job_event(&self, id: u64, event: &str) -> Result<u64> {
        let txn = self.write()?;
        let seq = append_event(&txn, id, event)?;
        txn.commit().map_err(db)?;
        Ok(seq)
    }

    /// A job's events with a sequence number above `after`, in order.
    pub fn job_events(&self, id: u64, after: u64) -> Result<Vec<(u64, String)>> {
        let txn = self.read()?;
        let table = txn.open_table(JOB_EVENTS).map_err(db)?;
        let mut out = Vec::new();
        let Some(first) = after.checked_add(1) else {
            return Ok(out);
        };
        for entry in table.range((id, first)..=(id, u64::MAX)).map_err(db)? {
            let (key, raw) = entry.map_err(db)?;
            out.push((key.value().1, raw.value().to_string()));
        }
        Ok(out)
    }

    /// Removes a job with its blocks and events, and frees its output
    /// (unless something else refers to the same bytes); `true` when it
    /// existed.
    pub fn delete_job(&self, id: u64) -> Result<bool> {
        Ok(self.delete_jobs(&[id], &[])? == 1)
    }

    /// [`Store::delete_job`] of several jobs in one transaction (one look
    /// for what else names their output), which also deletes the state
    /// keys `forget` from every stage's state (the jobs' checkpoints); how
    /// many jobs existed.
    pub fn delete_jobs(&self, ids: &[u64], forget: &[String]) -> Result<usize> {
        let txn = self.write()?;
        let mut existed = 0;
        let mut outputs = std::collections::BTreeSet::new();
        {
            let mut jobs = txn.open_table(JOBS).map_err(db)?;
            let mut blocks = txn.open_table(JOB_BLOCKS).map_err(db)?;
            let mut events = txn.open_table(JOB_EVENTS).map_err(db)?;
            for &id in ids {
                existed += usize::from(jobs.remove(id).map_err(db)?.is_some());
                let mut removed = Vec::new();
                blocks
                    .retain_in((id, 0)..=(id, u32::MAX), |(_, block), raw| {
                        // One this release cannot read names objects that
                        // stay: they are still counted as named.
                        let at = format_args!("{id}/{block}");
                        removed.extend(record::listed::<BlockOutput>("job_blocks", at, raw));
                        false
                    })
                    .map_err(db)?;
                for block in removed {
                    crate::refs::count(&txn, &block, false)?;
                    outputs.extend(std::iter::once(block.output).chain(block.errors));
                }
                events
                    .retain_in((id, 0)..=(id, u64::MAX), |_, _| false)
                    .map_err(db)?;
            }
        }
        free_unreferenced(&txn, outputs)?;
        crate::state::forget(&txn, forget)?;
        txn.commit().map_err(db)?;
        Ok(existed)
    }
}

/// An event appended to a job's log: its sequence number and text.
pub type LoggedEvent = (u64, String);

/// Appends `event` to job `id`'s log inside `txn`; its sequence number.
fn append_event(txn: &redb::WriteTransaction, id: u64, event: &str) -> Result<u64> {
    let mut table = txn.open_table(JOB_EVENTS).map_err(db)?;
    let last = table
        .range((id, 0)..=(id, u64::MAX))
        .map_err(db)?
        .next_back()
        .transpose()
        .map_err(db)?
        .map_or(0, |(k, _)| k.value().1);
    table.insert((id, last + 1), event).map_err(db)?;
    Ok(last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_found_by_their_names() {
        for s in JobState::ALL {
            assert_eq!(JobState::from_name(s.as_str()), Some(s));
        }
        assert_eq!(JobState::from_name("Running"), None);
    }

    fn commit(rows: u32, failed: u32, out: &str) -> BlockCommit {
        BlockCommit {
            rows_in: rows,
            rows_out: rows - failed,
            failed,
            output: out.as_bytes().to_vec(),
            errors: if failed > 0 {
                b"{\"row\":1}\n".to_vec()
            } else {
                vec![]
            },
        }
    }

    #[test]
    fn blocks_commit_once_with_the_counters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let id = {
            let store = Store::open(&path).unwrap();
            let job = store.create_job("batch", "{}", 3, 30).unwrap();
            assert_eq!((job.id, job.state), (1, JobState::Queued));
            assert_eq!(store.create_job("invoke", "{}", 0, 1).unwrap().id, 2);
            let rec = store
                .commit_block(job.id, 2, &commit(10, 1, "c\n"))
                .unwrap()
                .unwrap();
            assert_eq!(
                (rec.blocks_done, rec.items_done, rec.items_failed),
                (1, 10, 1)
            );
            // The same block again is a no-op: no double counting.
            assert!(
                store
                    .commit_block(job.id, 2, &commit(10, 1, "c\n"))
                    .unwrap()
                    .is_none()
            );
            store
                .commit_block(job.id, 0, &commit(10, 0, "a\n"))
                .unwrap()
                .unwrap();
            job.id
        };
        let store = Store::open(&path).unwrap();
        let rec = store.job(id).unwrap().unwrap();
        assert_eq!((rec.blocks_done, rec.items_done, rec.rows_out), (2, 20, 19));
        let blocks = store.job_blocks(id).unwrap();
        assert_eq!(blocks.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(
            store.get_object(&blocks[1].1.output).unwrap().unwrap(),
            b"c\n"
        );
        assert!(blocks[0].1.errors.is_none() && blocks[1].1.errors.is_some());
        // Once the job has ended, late blocks are not recorded.
        store
            .update_job(id, |j| {
                j.state = JobState::Cancelled;
                true
            })
            .unwrap();
        assert!(
            store
                .commit_block(id, 1, &commit(10, 0, "b\n"))
                .unwrap()
                .is_none()
        );
        assert_eq!(store.job_blocks(id).unwrap().len(), 2);
        // Ids keep increasing after a reopen.
        assert_eq!(store.create_job("batch", "{}", 0, 0).unwrap().id, 3);
    }

    #[test]
    fn updates_stamp_times_and_events_replay_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let id = store.create_job("invoke", "{}", 0, 1).unwrap().id;
        let rec = store
            .update_job(id, |j| {
                j.state = JobState::Running;
                true
            })
            .unwrap()
            .unwrap();
        assert!(rec.started_unix_ms.is_some() && rec.finished_unix_ms.is_none());
        let rec = store
            .update_job(id, |j| {
                j.state = JobState::Succeeded;
                true
            })
            .unwrap()
            .unwrap();
        assert!(rec.finished_unix_ms.is_some());
        assert!(store.update_job(99, |_| true).unwrap().is_none());

        assert_eq!(store.append_job_event(id, "a").unwrap(), 1);
        assert_eq!(store.append_job_event(id, "b").unwrap(), 2);
        let other = store.create_job("invoke", "{}", 0, 1).unwrap().id;
        assert_eq!(store.append_job_event(other, "x").unwrap(), 1);
        let all: Vec<_> = store.job_events(id, 0).unwrap();
        assert_eq!(all, vec![(1, "a".to_string()), (2, "b".to_string())]);
        assert_eq!(store.job_events(id, 1).unwrap().len(), 1);
        assert!(store.job_events(id, u64::MAX).unwrap().is_empty());

        assert!(store.delete_job(id).unwrap());
        assert!(store.job(id).unwrap().is_none());
        assert!(store.job_events(id, 0).unwrap().is_empty());
        assert_eq!(store.job_events(other, 0).unwrap().len(), 1);
    }
}
