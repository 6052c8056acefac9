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
//! only for callers of the last pass that are not back yet, for up to a
//! quarter of that pass's time (not `max_wait`): so concurrent generations
//! stay in step (continuous batching), and a lone one never waits. In a
//! pass with others, a prompt longer than `prefill_chunk` tokens runs its
//! first chunk and the rest goes first into the next pass
//! ([`Model::split_call`]; chunked prefill), so the others' next tokens are
//! not held up by the whole prompt.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use weft_nn::{Joined, Model, Session, Tensor};

use crate::inference::{BatchConfig, InferenceStats};
use crate::nn::NnError;

type Named = Vec<(String, Tensor)>;
/// A caller's execution context's session.
pub(crate) type Shared = Arc<Mutex<Box<dyn Session>>>;
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
    // Calls in the last joined pass, and how long the last pass of single
    // tokens took (µs; a prompt's pass would make later waits long): its
    // callers come back for their next token at about the same time.
    let mut last = 0;
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
            // the last pass that are not back yet (a lone generation never
            // waits), for up to a quarter of that pass's time: a pass costs
            // far more than the wait, and callers released together that
            // are not let fall back into step would split into groups
            // taking turns, each pass half full.
            let wait = if joined {
                std::time::Duration::from_micros(last_took.load(Ordering::Relaxed) / 4)
            } else {
                config.max_wait
            };
            let deadline = Instant::now() + wait;
            while n < config.max_batch && waiting.is_empty() {
                let call = match rx.try_recv() {
                    Ok(call) => call,
                    Err(_) if joined && n >= last => break,
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
            last = n;
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
                    last_took.store(took, Ordering::Relaxed);
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
    // With others in the pass, a long prompt runs its first chunk now.
    let cuts: Vec<Option<(Named, Named)>> = guards
        .iter()
        .zip(&batch)
        .map(|(session, (inputs, _, _))| {
            let others = batch.len() > 1 && chunk > 0;
            others
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
                **session = Box::new(Failed(why.clone()));
            }
            batch.iter().map(|_| Err(panicked(&why))).collect()
        }
    };
    drop(guards);
    for (((_, session, reply), result), cut) in batch.into_iter().zip(results).zip(cuts) {
        match (result, cut) {
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

/// A session whose state a panic left unknown (a KV cache extended for
/// some layers and not others): every later call on it fails, saying so,
/// instead of computing from that state.
#[derive(Debug)]
pub(crate) struct Failed(pub(crate) String);

impl Session for Failed {
    fn compute(&mut self, _: &[(String, Tensor)]) -> Result<Named, weft_nn::NnError> {
        Err(weft_nn::NnError::new(
            weft_nn::NnErrorKind::RuntimeError,
            format!(
                "this execution context failed earlier (the inference engine panicked: {}), \
                 so its state is lost: create a new execution context",
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
mod tests {
    use std::time::Duration;

    use weft_nn::{Encoding, Engine, Target};

    use super::*;

    fn x(rows: usize) -> Named {
        let data: Vec<f32> = (0..rows * 2).map(|i| i as f32).collect();
        vec![("x".into(), Tensor::from_f32(vec![rows, 2], &data))]
    }

    fn linear() -> Arc<dyn Model> {
        Engine::default()
            .load(
                &weft_nn::fixtures::onnx_linear(),
                Encoding::Onnx,
                Target::Cpu,
            )
            .unwrap()
    }

    /// A session for a call (stateless graphs' calls ignore it).
    fn session(model: &Arc<dyn Model>) -> Shared {
        Arc::new(Mutex::new(model.session()))
    }

    fn start(max_batch: usize, max_wait: Duration) -> (mpsc::Sender<Call>, Arc<InferenceStats>) {
        start_with(linear(), max_batch, max_wait)
    }

    fn start_with(
        model: Arc<dyn Model>,
        max_batch: usize,
        max_wait: Duration,
    ) -> (mpsc::Sender<Call>, Arc<InferenceStats>) {
        let stats = Arc::new(InferenceStats::default());
        let (tx, rx) = mpsc::channel(8);
        let config = BatchConfig {
            max_batch,
            max_wait,
            max_in_flight: 1,
            ..BatchConfig::default()
        };
        tokio::spawn(run(model, rx, config, stats.clone()));
        (tx, stats)
    }

    async fn answer(rx: oneshot::Receiver<Answer>) -> Answer {
        // Far below the max_wait the tests set: an answer held for company
        // that cannot come fails here.
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("the call was held back")
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_calls_that_fit_together_run_as_one_engine_call() {
        let (tx, stats) = start(4, Duration::from_secs(600));
        let (a, b) = (oneshot::channel(), oneshot::channel());
        let s = session(&linear());
        tx.send((x(1), s.clone(), a.0)).await.unwrap();
        tx.send((x(3), s, b.0)).await.unwrap();
        let (Answer::Done(a), Answer::Done(b)) = (answer(a.1).await, answer(b.1).await) else {
            panic!("not merged");
        };
        let (a, b) = (a.unwrap(), b.unwrap());
        // Each caller gets its own rows: x = [0, 1] gives [0.5 + 4, -0.5 + 5, 1 + 6].
        assert_eq!(a[0].1.shape, vec![1, 3]);
        assert_eq!(a[0].1.to_f32().unwrap(), vec![4.5, 4.5, 7.0]);
        assert_eq!(b[0].1.shape, vec![3, 3]);
        assert_eq!(&b[0].1.to_f32().unwrap()[..3], &[4.5, 4.5, 7.0]);
        assert_eq!(stats.engine_calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_nothing_can_join_goes_back_at_once_to_run_alone() {
        let (tx, stats) = start(4, Duration::from_secs(600));
        // Queued together, 3 rows and 4 rows cannot share a call of 4: the
        // first must not wait out max_wait for company while the second is
        // queued, and neither holds a batch slot.
        let (a, b) = (oneshot::channel(), oneshot::channel());
        let s = session(&linear());
        tx.send((x(3), s.clone(), a.0)).await.unwrap();
        tx.send((x(4), s, b.0)).await.unwrap();
        let (Answer::Alone(a), Answer::Alone(b)) = (answer(a.1).await, answer(b.1).await) else {
            panic!("expected both back to run alone");
        };
        assert_eq!(
            (a[0].1.shape.clone(), b[0].1.shape.clone()),
            (vec![3, 2], vec![4, 2])
        );
        assert_eq!(stats.engine_calls.load(Ordering::Relaxed), 0);
    }

    /// SmolLM2 (`cargo xtask models`), a decoder: joinable on the CPU.
    fn smollm2() -> Arc<dyn Model> {
        let path = std::env::var_os("WEFT_MODELS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/models")
            })
            .join("smollm2-135m-instruct.gguf");
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask models`)", path.display()));
        Engine::default()
            .load(&bytes, Encoding::Ggml, Target::Cpu)
            .unwrap()
    }

    fn ids(ids: &[i64]) -> Named {
        vec![("input_ids".into(), Tensor::from_i64(vec![ids.len()], ids))]
    }

    /// `calls` on `sessions`, queued before a batcher on `model` starts (so
    /// the first pass may take them all): their answers, the stats, and the
    /// queue for more calls.
    async fn decoder_calls(
        model: &Arc<dyn Model>,
        calls: &[Named],
        sessions: &[Shared],
        config: BatchConfig,
    ) -> (
        Vec<Result<Named, NnError>>,
        Arc<InferenceStats>,
        mpsc::Sender<Call>,
    ) {
        let stats = Arc::new(InferenceStats::default());
        let (tx, rx) = mpsc::channel(8);
        let mut replies = Vec::new();
        for (inputs, s) in calls.iter().zip(sessions) {
            let (reply, rx) = oneshot::channel();
            tx.send((inputs.clone(), s.clone(), reply)).await.unwrap();
            replies.push(rx);
        }
        tokio::spawn(run(model.clone(), rx, config, stats.clone()));
        let mut answers = Vec::new();
        for rx in replies {
            let Answer::Done(a) = answer(rx).await else {
                panic!("a decoder call sent back to run alone");
            };
            answers.push(a);
        }
        (answers, stats, tx)
    }

    /// Decoder calls queued together run as one joined pass, each on its
    /// caller's session, and get what they get alone; a bad one fails
    /// alone. A decoder pass never waits `max_wait` (600 s here): the next
    /// call runs after at most a quarter of the last pass's time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_decoder_calls_run_as_one_pass_on_their_own_sessions() {
        let model = smollm2();
        assert!(model.joinable());
        let steps = [
            [ids(&[1, 4093, 198]), ids(&[1, 520]), ids(&[99999])],
            [ids(&[504]), ids(&[30]), ids(&[2])],
        ];
        let sessions: Vec<Shared> = (0..3).map(|_| session(&model)).collect();
        let mut alone: Vec<_> = (0..2).map(|_| model.session()).collect();
        let config = BatchConfig {
            max_batch: 32,
            max_wait: Duration::from_secs(600),
            ..BatchConfig::default()
        };
        let (mut answers, stats, tx) = decoder_calls(&model, &steps[0], &sessions, config).await;
        assert_eq!(stats.engine_calls.load(Ordering::Relaxed), 1, "one pass");
        let bad = answers.pop().unwrap().unwrap_err();
        assert!(bad.message.contains("outside the vocabulary"), "{bad:?}");
        for ((a, s), inputs) in answers.into_iter().zip(&mut alone).zip(&steps[0]) {
            let want = s.compute(inputs).unwrap();
            assert_eq!(a.unwrap()[0].1.data, want[0].1.data);
        }
        // The next token of the first session, on an idle engine: at once,
        // and from where its session's cache left off.
        let (reply, rx) = oneshot::channel();
        tx.send((steps[1][0].clone(), sessions[0].clone(), reply))
            .await
            .unwrap();
        let Answer::Done(a) = answer(rx).await else {
            panic!("sent back to run alone");
        };
        let want = alone[0].compute(&steps[1][0]).unwrap();
        assert_eq!(a.unwrap()[0].1.data, want[0].1.data);
        assert_eq!(stats.engine_calls.load(Ordering::Relaxed), 2);
    }

    /// Beside other callers, a prompt longer than `prefill_chunk` runs its
    /// first chunk in their pass and the rest in the next (alone: whole),
    /// with the logits it gets whole; one too long for the context is not
    /// cut, and fails whole, leaving its session as it was.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn long_prompts_run_in_chunks_beside_other_callers() {
        let model = smollm2();
        let prompt: Vec<i64> = (500..521).collect();
        let too_long: Vec<i64> = vec![500; 8193];
        let calls = [ids(&prompt), ids(&[1, 520]), ids(&too_long)];
        let sessions: Vec<Shared> = (0..3).map(|_| session(&model)).collect();
        let config = BatchConfig {
            prefill_chunk: 8,
            ..BatchConfig::default()
        };
        let (mut answers, stats, _tx) = decoder_calls(&model, &calls, &sessions, config).await;
        // Its first 8 tokens beside the others, then the other 13 alone.
        assert_eq!(stats.engine_calls.load(Ordering::Relaxed), 2);
        let too_long = answers.pop().unwrap().unwrap_err();
        assert!(too_long.message.contains("context"), "{too_long:?}");
        let chunked = answers[0].as_ref().unwrap()[0].1.to_f32().unwrap();
        let whole = model.session().compute(&calls[0]).unwrap()[0]
            .1
            .to_f32()
            .unwrap();
        let worst = chunked
            .iter()
            .zip(&whole)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "chunked prefill's logits {worst} off");
        // The refused prompt left nothing in its session's cache.
        let mut refused = sessions[2].lock().unwrap();
        let again = refused.compute(&calls[1]).unwrap();
        let fresh = model.session().compute(&calls[1]).unwrap();
        assert_eq!(again[0].1.data, fresh[0].1.data);
    }

    /// Echoes its input, and panics on a negative value: a stand-in for a
    /// bug in the engine. Joinable (a decoder) or batchable (a graph).
    #[derive(Debug)]
    struct Panicky {
        joinable: bool,
    }

    #[derive(Debug)]
    struct Echo;

    impl Session for Echo {
        fn compute(&mut self, inputs: &[(String, Tensor)]) -> Result<Named, weft_nn::NnError> {
            let values = inputs[0].1.to_f32().unwrap();
            assert!(values.iter().all(|&v| v >= 0.0), "a negative value");
            Ok(inputs.to_vec())
        }
    }

    impl Model for Panicky {
        fn session(&self) -> Box<dyn Session> {
            Box::new(Echo)
        }
        fn batchable(&self) -> bool {
            !self.joinable
        }
        fn joinable(&self) -> bool {
            self.joinable
        }
        fn weight_bytes(&self) -> u64 {
            0
        }
    }

    fn negative() -> Named {
        vec![("x".into(), Tensor::from_f32(vec![1, 2], &[-1.0, 0.0]))]
    }

    /// Queues `calls` before a batcher for `model` starts, so they leave as
    /// one batch; returns their answers and the queue.
    async fn one_batch(
        model: Arc<dyn Model>,
        calls: Vec<(Named, Shared)>,
    ) -> (Vec<Answer>, mpsc::Sender<Call>) {
        let (tx, rx) = mpsc::channel(8);
        let mut replies = Vec::new();
        for (inputs, s) in calls {
            let (reply, rx) = oneshot::channel();
            tx.send((inputs, s, reply)).await.unwrap();
            replies.push(rx);
        }
        let config = BatchConfig {
            max_batch: 8,
            max_wait: Duration::from_millis(20),
            ..BatchConfig::default()
        };
        tokio::spawn(run(model, rx, config, Arc::new(InferenceStats::default())));
        let mut answers = Vec::new();
        for rx in replies {
            answers.push(answer(rx).await);
        }
        (answers, tx)
    }

    fn done(a: Answer) -> Result<Named, NnError> {
        match a {
            Answer::Done(r) => r,
            Answer::Alone(_) => panic!("sent back to run alone"),
        }
    }

    /// A panic inside a merged call fails only the call that causes it; the
    /// others are answered, and the slot goes on serving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_engine_panic_in_a_merged_call_fails_only_its_call() {
        let model: Arc<dyn Model> = Arc::new(Panicky { joinable: false });
        let s = session(&model);
        let calls = vec![
            (x(1), s.clone()),
            (negative(), s.clone()),
            (x(2), s.clone()),
        ];
        let (answers, tx) = one_batch(model, calls).await;
        let mut answers = answers.into_iter().map(done);
        assert_eq!(answers.next().unwrap().unwrap(), x(1));
        let e = answers.next().unwrap().unwrap_err();
        assert!(e.message.contains("a negative value"), "{e:?}");
        assert_eq!(answers.next().unwrap().unwrap(), x(2));
        // The slot serves the next batch.
        let (a, b) = (oneshot::channel(), oneshot::channel());
        tx.send((x(1), s.clone(), a.0)).await.unwrap();
        tx.send((x(3), s, b.0)).await.unwrap();
        assert_eq!(done(answer(a.1).await).unwrap(), x(1));
        assert_eq!(done(answer(b.1).await).unwrap(), x(3));
    }

    /// A panic inside a joined pass fails every call of the pass, and their
    /// contexts refuse to go on from a state the pass may have half
    /// changed; a new context works.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_engine_panic_in_a_joined_pass_fails_its_contexts() {
        let model: Arc<dyn Model> = Arc::new(Panicky { joinable: true });
        let (good, bad) = (session(&model), session(&model));
        let calls = vec![(x(1), good.clone()), (negative(), bad)];
        let (answers, tx) = one_batch(model.clone(), calls).await;
        for a in answers {
            let e = done(a).unwrap_err();
            assert!(
                e.message.contains("failed on this call (a negative value)"),
                "{e:?}"
            );
        }
        let (a, b) = (oneshot::channel(), oneshot::channel());
        tx.send((x(1), good, a.0)).await.unwrap();
        let e = done(answer(a.1).await).unwrap_err();
        assert!(
            e.message.contains("create a new execution context"),
            "{e:?}"
        );
        tx.send((x(1), session(&model), b.0)).await.unwrap();
        assert_eq!(done(answer(b.1).await).unwrap(), x(1));
    }
}
