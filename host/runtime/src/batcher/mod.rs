//! Dynamic batching at the `wasi:nn` layer: `compute` calls on the same
//! stateless graph from different instances are concatenated along
//! dimension 0, run as one engine call, and split back. Calls merge when
//! their inputs have the same names, types and shapes apart from dimension 0
//! (stages get there by padding to fixed buckets). A merged call that fails
//! is retried call by call, so one caller's bad input never fails another's.
//! A batch waits up to `max_wait` for more calls only while no call that
//! cannot join it is queued (calls of other shapes never wait on each other).
//!
//! Calls on a stateful model that can join sessions ([`Model::joinable`]:
//! a decoder on the CPU) run differently: each call brings its caller's
//! session, and the calls queued while a pass runs go together as the next
//! pass, each on its own session ([`Model::compute_joined`]). A pass waits
//! only for callers of the last two passes whose contexts are still open
//! and that are not back yet, for up to a quarter of the last
//! single-token pass's time (not `max_wait`; not at all before one has
//! run): so concurrent generations stay in step (continuous batching), a
//! caller one pass behind catches up instead of leaving another behind in
//! turn, and a lone one never waits. A prompt longer than `prefill_chunk`
//! tokens runs a chunk per pass, the rest going first into the next pass
//! ([`Model::split_call`]; chunked prefill): other callers' next tokens
//! (those in the pass, and those that come while the prompt runs) are not
//! held up by the whole prompt, and a prompt whose caller has gone (a
//! closed stream) stops at the end of its chunk.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use weft_nn::{Joined, Model, Session, Tensor};

use crate::inference::{BatchConfig, InferenceStats};
use crate::nn::NnError;

type Named = Vec<(String, Tensor)>;
/// A caller's execution context's session.
pub(crate) type Shared = Arc<Mutex<Box<dyn Session>>>;
/// The callers of the last two joined passes, by their sessions.
type Recent = [Vec<Weak<Mutex<Box<dyn Session>>>>; 2];
type Call = (Named, Shared, oneshot::Sender<Answer>);

/// What the batcher sends back for a call.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The call ran (merged with others or on its own).
    Done(Result<Named, NnError>),
    /// No other call could join it: the caller runs it on its own session,
    /// outside the batcher's slots, so calls that never merge (other
    /// shapes) run as concurrently as with batching off.
    Alone(Named),
}

/// Rows of a call (dimension 0 shared by all its inputs), or `None` when it
/// cannot be merged.
fn rows(inputs: &Named) -> Option<usize> {
    let first = inputs.first()?.1.shape.first().copied()?;
    inputs
        .iter()
        .all(|(_, t)| t.shape.first() == Some(&first))
        .then_some(first)
}

fn compatible(a: &Named, b: &Named) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((na, ta), (nb, tb))| {
            na == nb && ta.ty == tb.ty && ta.shape.get(1..) == tb.shape.get(1..)
        })
}

/// Serves one graph's queue until every sender is gone.
pub(crate) async fn run(
    model: Arc<dyn Model>,
    mut rx: mpsc::Receiver<Call>,
    config: BatchConfig,
    stats: Arc<InferenceStats>,
) {
    // Up to one batch per core runs at once, each on a session of its own:
    // the engine's serial parts (elementwise ops between the matrix
    // products) then overlap, and calls that arrive while every slot is
    // busy queue up and leave together as the next batch. Joined passes
    // (which use every core) run one at a time on their callers' sessions.
    let joined = model.joinable() && !model.batchable();
    let slots = if joined {
        1
    } else {
        config.max_in_flight.max(1)
    };
    let own = if joined { 0 } else { slots };
    let sessions: Arc<Mutex<Vec<Box<dyn Session>>>> =
        Arc::new(Mutex::new((0..own).map(|_| model.session()).collect()));
    let rows = |inputs: &Named| if joined { Some(1) } else { rows(inputs) };
    let compatible = |a: &Named, b: &Named| joined || compatible(a, b);
    let permits = Arc::new(tokio::sync::Semaphore::new(slots));
    let mut waiting: VecDeque<Call> = VecDeque::new();
    // The sessions of the last two joined passes, and how long the last
    // pass of single tokens took (µs; a prompt's pass, which may take
    // seconds, would make later waits long): their callers come back for
    // their next token at about the same time.
    let mut recent: Recent = Default::default();
    let last_took = Arc::new(std::sync::atomic::AtomicU64::new(0));
    // The rest of prompts cut by the last pass: they go first into the next.
    let (cont_tx, mut cont_rx) = mpsc::unbounded_channel::<Call>();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        // (The pass that cut them sent them before giving its permit back.)
        let mut rests = Vec::new();
        while let Ok(call) = cont_rx.try_recv() {
            rests.push(call);
        }
        for call in rests.into_iter().rev() {
            waiting.push_front(call);
        }
        let first = match waiting.pop_front() {
            Some(call) => call,
            None => match rx.recv().await {
                Some(call) => call,
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut total = rows(&batch[0].0);
        if let Some(mut n) = total {
            // Calls that queued while the engine was busy, then those that
            // arrive within `max_wait`.
            let mut kept = VecDeque::new();
            while let Some(call) = waiting.pop_front() {
                match rows(&call.0) {
                    Some(r) if n + r <= config.max_batch && compatible(&batch[0].0, &call.0) => {
                        n += r;
                        batch.push(call);
                    }
                    _ => kept.push_back(call),
                }
            }
            waiting = kept;
            // Wait for more only while nothing else is queued: once a call
            // that cannot join is waiting, the engine has work either way,
            // and holding this batch back would only delay both. Joined
            // passes take what is queued, and wait only for the callers of
            // the last two passes that are not back yet and whose contexts
            // are open (a lone generation never waits), for up to a
            // quarter of the last single-token pass's time: a pass costs far
            // more than the wait, and callers released together that are
            // not let fall back into step would split into groups taking
            // turns, each pass part full. (Waiting for as many callers as
            // the last pass had instead left one behind every pass, in
            // turn.)
            let wait = if joined {
                std::time::Duration::from_micros(last_took.load(Ordering::Relaxed) / 4)
            } else {
                config.max_wait
            };
            let deadline = Instant::now() + wait;
            while n < config.max_batch && waiting.is_empty() {
                let call = match rx.try_recv() {
                    Ok(call) => call,
                    Err(_) if joined && !awaits(&recent, &batch) => break,
                    Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(call)) => call,
                        _ => break,
                    },
                };
                match rows(&call.0) {
                    Some(r) if n + r <= config.max_batch && compatible(&batch[0].0, &call.0) => {
                        n += r;
                        batch.push(call);
                    }
                    _ => waiting.push_back(call),
                }
            }
            total = Some(n);
            if joined {
                let sessions = batch.iter().map(|(_, s, _)| Arc::downgrade(s)).collect();
                recent[0] = std::mem::replace(&mut recent[1], sessions);
            }
        }
        if batch.len() == 1 && !joined {
            let (inputs, _, reply) = batch.pop().expect("one call");
            let _ = reply.send(Answer::Alone(inputs));
            continue;
        }
        let sessions = sessions.clone();
        let stats = stats.clone();
        let model = model.clone();
        let last_took = last_took.clone();
        let cont_tx = cont_tx.clone();
        // Every call one token id (at most one i64): decoding steps.
        let steps = batch
            .iter()
            .all(|(inputs, _, _)| inputs.iter().all(|(_, t)| t.data.len() <= 8));
        // The engine call blocks: on the blocking pool, holding its slot.
        tokio::task::spawn_blocking(move || {
            if joined {
                let start = std::time::Instant::now();
                serve_joined(&*model, batch, &stats, config.prefill_chunk, &cont_tx);
                if steps {
                    let took = start.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                    last_took.store(took.max(1), Ordering::Relaxed);
                }
                drop(permit);
                return;
            }
            let taken = sessions.lock().unwrap_or_else(|e| e.into_inner()).pop();
            // A slot always has a session: there are as many as permits.
            let mut session = taken.expect("a session per slot");
            serve(&*model, &mut session, batch, total, &stats);
            sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(session);
            drop(permit);
        });
    }
}

/// Whether a caller of the last two passes (`recent`) whose context is
/// still open is not in `batch`: its next call is on its way. (A `Weak`
/// keeps its allocation, so its address names the session it was made
/// from for as long as it is held.)
fn awaits(recent: &Recent, batch: &[Call]) -> bool {
    recent.iter().flatten().any(|w| {
        w.strong_count() > 0
            && !batch
                .iter()
                .any(|(_, s, _)| std::ptr::addr_eq(Arc::as_ptr(s), w.as_ptr()))
    })
}

/// Runs a batch on a slot's session: merged into one call, or one by one
/// where they cannot merge, or the merged call failed (so that a bad call
/// fails alone). A panic replaces the slot's session with a fresh one.
fn serve(
    model: &dyn Model,
    session: &mut Box<dyn Session>,
    batch: Vec<Call>,
    total: Option<usize>,
    stats: &InferenceStats,
) {
    if batch.len() > 1 {
        let rows: Vec<usize> = batch.iter().filter_map(|(i, _, _)| rows(i)).collect();
        let merged = merge(batch.iter().map(|(i, _, _)| i));
        stats.engine_calls.fetch_add(1, Ordering::Relaxed);
        match contained(|| session.compute(&merged)) {
            Ok(Ok(outputs)) => {
                if let Some(parts) = split(outputs, &rows, total.unwrap_or(0)) {
                    for ((_, _, reply), part) in batch.into_iter().zip(parts) {
                        let _ = reply.send(Answer::Done(Ok(part)));
                    }
                    return;
                }
            }
            Ok(Err(_)) => {}
            Err(_) => *session = model.session(),
        }
    }
    for (inputs, _, reply) in batch {
        stats.engine_calls.fetch_add(1, Ordering::Relaxed);
        let result = match contained(|| session.compute(&inputs)) {
            Ok(result) => result,
            Err(why) => {
                *session = model.session();
                Err(panicked(&why))
            }
        };
        let _ = reply.send(Answer::Done(
            result.map_err(crate::inference::convert_error),
        ));
    }
}

/// Runs the calls as one [`Model::compute_joined`], each on its caller's
/// session. A panic fails every call of the pass and leaves each of their
/// sessions [`Failed`]: the pass may have extended some caches and not
/// others, and a context must not go on from a state nobody knows.
fn serve_joined(
    model: &dyn Model,
    batch: Vec<Call>,
    stats: &InferenceStats,
    chunk: usize,
    rests: &mpsc::UnboundedSender<Call>,
) {
    let mut guards: Vec<_> = batch
        .iter()
        .map(|(_, session, _)| session.lock().unwrap_or_else(|e| e.into_inner()))
        .collect();
    // A long prompt runs its first chunk now.
    let cuts: Vec<Option<(Named, Named)>> = guards
        .iter()
        .zip(&batch)
        .map(|(session, (inputs, _, _))| {
            (chunk > 0)
                .then(|| model.split_call(&***session, inputs, chunk))
                .flatten()
        })
        .collect();
    let mut calls: Vec<Joined<'_>> = guards
        .iter_mut()
        .zip(&batch)
        .zip(&cuts)
        .map(|((session, (inputs, _, _)), cut)| {
            let inputs = cut.as_ref().map_or(inputs.as_slice(), |(head, _)| head);
            (&mut ***session, inputs)
        })
        .collect();
    stats.engine_calls.fetch_add(1, Ordering::Relaxed);
    let results = contained(|| model.compute_joined(&mut calls));
    drop(calls);
    let results = match results {
        Ok(results) => results,
        Err(why) => {
            for session in &mut guards {
                **session = Box::new(Failed(format!("the inference engine panicked: {why}")));
            }
            batch.iter().map(|_| Err(panicked(&why))).collect()
        }
    };
    drop(guards);
    for (((_, session, reply), result), cut) in batch.into_iter().zip(results).zip(cuts) {
        match (result, cut) {
            // Its caller has gone (the call was cancelled: a client closed
            // its stream): the rest is not run, and the context, holding
            // part of a prompt, is not used again.
            (Ok(_), Some(_)) if reply.is_closed() => {
                stats.cancelled.fetch_add(1, Ordering::Relaxed);
                *session.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(Failed(
                    "the call that was filling this context was cancelled".into(),
                ));
            }
            // The rest of the prompt: answered once its last chunk ran.
            (Ok(_), Some((_, rest))) => {
                let _ = rests.send((rest, session, reply));
            }
            (result, _) => {
                let _ = reply.send(Answer::Done(
                    result.map_err(crate::inference::convert_error),
                ));
            }
        }
    }
}

/// Runs `f`, an engine call, turning a panic into its message: a bug in
/// weft-nn, or a model it mishandles, must neither take the node's
/// inference down nor leave the callers waiting.
pub(crate) fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// The error of a call the engine panicked on.
pub(crate) fn panicked(why: &str) -> weft_nn::NnError {
    weft_nn::NnError::new(
        weft_nn::NnErrorKind::RuntimeError,
        format!(
            "the inference engine failed on this call ({why}): a bug in weft-nn; \
             please report it with the model and inputs"
        ),
    )
}

/// A session whose state is unknown or partial (a panic left a KV cache
/// extended for some layers and not others; a cancelled prompt ran in
/// part): every later call on it fails, saying why (the field), instead of
/// computing from that state.
#[derive(Debug)]
pub(crate) struct Failed(pub(crate) String);

impl Session for Failed {
    fn compute(&mut self, _: &[(String, Tensor)]) -> Result<Named, weft_nn::NnError> {
        Err(weft_nn::NnError::new(
            weft_nn::NnErrorKind::RuntimeError,
            format!(
                "this execution context failed earlier ({}), so its state is lost: \
                 create a new execution context",
                self.0
            ),
        ))
    }
}

/// The calls' inputs concatenated along dimension 0.
fn merge<'a>(calls: impl Iterator<Item = &'a Named>) -> Named {
    let mut merged: Named = Vec::new();
    for inputs in calls {
        if merged.is_empty() {
            merged = inputs.clone();
            continue;
        }
        for ((_, m), (_, t)) in merged.iter_mut().zip(inputs) {
            m.shape[0] += t.shape[0];
            m.data.extend_from_slice(&t.data);
        }
    }
    merged
}

/// The outputs cut back into one set per call, or `None` when an output
/// is not row-aligned with the inputs.
fn split(outputs: Named, rows: &[usize], total: usize) -> Option<Vec<Named>> {
    let mut parts: Vec<Named> = vec![Vec::new(); rows.len()];
    for (name, t) in outputs {
        if t.shape.first() != Some(&total) || total == 0 {
            return None;
        }
        let row_bytes = t.data.len() / total;
        let mut at = 0;
        for (part, &r) in parts.iter_mut().zip(rows) {
            let mut shape = t.shape.clone();
            shape[0] = r;
            let data = t.data[at..at + r * row_bytes].to_vec();
            at += r * row_bytes;
            part.push((
                name.clone(),
                Tensor {
                    shape,
                    ty: t.ty,
                    data,
                },
            ));
        }
    }
    Some(parts)
}

#[cfg(test)]
mod tests;
