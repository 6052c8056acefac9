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

/// A prompt longer than `prefill_chunk` runs its first chunk in the
/// other callers' pass and the rest a chunk a pass, with the logits it
/// gets whole; one too long for the context is not cut, and fails whole,
/// leaving its session as it was.
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
    // Its first 8 tokens beside the others, then 8 and 5 alone.
    assert_eq!(stats.engine_calls.load(Ordering::Relaxed), 3);
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

/// A prompt whose caller has gone (the call was cancelled: its client
/// closed the stream) stops at the end of the chunk that was running, and
/// its context, holding part of the prompt, refuses later calls; the
/// engine is then free for others at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_whose_caller_has_gone_stops_at_the_end_of_its_chunk() {
    let model = smollm2();
    let stats = Arc::new(InferenceStats::default());
    let (tx, rx) = mpsc::channel(8);
    let config = BatchConfig {
        prefill_chunk: 8,
        ..BatchConfig::default()
    };
    tokio::spawn(run(model.clone(), rx, config, stats.clone()));
    // 32 chunks: run whole, this prompt would take 32 passes.
    let prompt: Vec<i64> = (0..256).map(|i| 500 + i % 300).collect();
    let gone = session(&model);
    let (reply, waiting) = oneshot::channel();
    tx.send((ids(&prompt), gone.clone(), reply)).await.unwrap();
    let calls = || stats.engine_calls.load(Ordering::Relaxed);
    while calls() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(waiting);
    // Another caller is answered, after the prompt stopped.
    let (reply, rx) = oneshot::channel();
    tx.send((ids(&[1, 520]), session(&model), reply))
        .await
        .unwrap();
    done(answer(rx).await).unwrap();
    assert_eq!(stats.cancelled.load(Ordering::Relaxed), 1);
    assert!(calls() < 32, "{} passes: the prompt ran on", calls());
    let refused = gone.lock().unwrap().compute(&ids(&[1])).unwrap_err();
    assert!(refused.message.contains("cancelled"), "{refused:?}");
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

/// A joinable model whose passes take a fixed time (the first for a pass
/// with a call of more than one value, a prompt's; the second otherwise)
/// and echo each call: the batcher's timing without a model's cost.
#[derive(Debug)]
struct Paced(Duration, Duration);

impl Model for Paced {
    fn session(&self) -> Box<dyn Session> {
        Box::new(Echo)
    }
    fn batchable(&self) -> bool {
        false
    }
    fn joinable(&self) -> bool {
        true
    }
    fn compute_joined(&self, calls: &mut [Joined<'_>]) -> Vec<weft_nn::Outputs> {
        let prompt = calls.iter().any(|(_, i)| i[0].1.data.len() > 4);
        std::thread::sleep(if prompt { self.0 } else { self.1 });
        calls.iter_mut().map(|(s, i)| s.compute(i)).collect()
    }
    fn weight_bytes(&self) -> u64 {
        0
    }
}

/// Generations that come back at different times share every pass: one
/// that started a pass late, and is then the slowest back, is waited for
/// instead of being left a pass behind (which, with passes waiting for
/// as many callers as the last one had, left the slowest of the others
/// behind in its place the next time, and so on: a third of the passes
/// more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoder_callers_that_come_back_at_different_times_share_passes() {
    let pass = Duration::from_millis(80);
    let model: Arc<dyn Model> = Arc::new(Paced(pass, pass));
    let (tx, stats) = start_with(model.clone(), 32, Duration::from_secs(600));
    // Milliseconds before the first call and between calls (a guest's
    // work on a token): the third starts during the first pass.
    let callers = [(0, 0), (0, 1), (20, 3)].map(|(start, think)| {
        let (tx, s) = (tx.clone(), session(&model));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(start)).await;
            for _ in 0..8 {
                let (reply, rx) = oneshot::channel();
                tx.send((x(1), s.clone(), reply)).await.unwrap();
                assert_eq!(done(answer(rx).await).unwrap(), x(1));
                tokio::time::sleep(Duration::from_millis(think)).await;
            }
        })
    });
    for caller in callers {
        caller.await.unwrap();
    }
    // The first two alone, then all three, then the third's last call.
    let passes = stats.engine_calls.load(Ordering::Relaxed);
    assert!(passes <= 10, "{passes} passes for 3 callers of 8 calls");
}

/// A pass awaits the callers of the last two passes that are not in it,
/// but not one whose context is closed.
#[test]
fn a_pass_awaits_recent_callers_whose_contexts_are_open() {
    let model: Arc<dyn Model> = Arc::new(Paced(Duration::ZERO, Duration::ZERO));
    let (a, b, c) = (session(&model), session(&model), session(&model));
    let call = |s: &Shared| (x(1), s.clone(), oneshot::channel().0);
    let recent = [
        vec![Arc::downgrade(&a)],
        vec![Arc::downgrade(&b), Arc::downgrade(&c)],
    ];
    assert!(awaits(&recent, &[call(&b), call(&c)]), "a is on its way");
    assert!(!awaits(&recent, &[call(&a), call(&b), call(&c)]));
    drop(a);
    assert!(
        !awaits(&recent, &[call(&b), call(&c)]),
        "a's context is closed"
    );
    assert!(awaits(&recent, &[call(&b)]));
}

/// A long prompt's pass does not set how long the next pass waits: with
/// the other caller of that pass idle (its context open), the next token
/// runs at once, not after a quarter of the prompt's seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompts_pass_does_not_make_the_next_pass_wait() {
    let model: Arc<dyn Model> = Arc::new(Paced(Duration::from_secs(3), Duration::ZERO));
    let (busy, idle) = (session(&model), session(&model));
    let calls = vec![(x(3), busy.clone()), (x(3), idle.clone())];
    let (answers, tx) = one_batch(model, calls).await;
    assert_eq!(answers.len(), 2);
    let (reply, rx) = oneshot::channel();
    let t = std::time::Instant::now();
    tx.send((one(), busy, reply)).await.unwrap();
    assert_eq!(done(answer(rx).await).unwrap(), one());
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "the next token waited {:?} for an idle caller",
        t.elapsed()
    );
    drop(idle);
}

/// One value: a decoding step's call.
fn one() -> Named {
    vec![("x".into(), Tensor::from_f32(vec![1], &[1.0]))]
}
