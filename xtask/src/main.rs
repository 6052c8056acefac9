//! The project's commands, run as `cargo xtask <command>`:
//!
//! - `demo`: install what a fresh machine lacks, build the plugins and the
//!   daemon, start the daemon on the embedded defaults, deploy the example
//!   stages and pipeline and print working curl/CLI lines (Ctrl-C stops it);
//! - `test`: fmt check, clippy, plugin builds and tests, every host test;
//! - `plugins`: build the example stages and test guests for wasm32-wasip2;
//! - `bench`: the criterion call-path bench and the HTTP load script;
//! - `models`: fetch and prepare the ML models and ONNX test data into
//!   `target/models` (`scripts/models.py`: a Python venv, the ONNX backend
//!   tests, SmolLM2 GGUF and its tokenizer, MiniLM as ONNX); idempotent.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Cargo workspaces of Wasm components (built for wasm32-wasip2 only).
const WASM_WORKSPACES: [&str; 2] = ["plugins/Cargo.toml", "tests/guests/Cargo.toml"];
/// The example stages the demo deploys, with their deploy-time config.
const DEMO_STAGES: [(&str, &str); 3] = [("normalize", ""), ("count", ""), ("chunk", "size=8")];
const WASM_TARGET: &str = "wasm32-wasip2";
/// The example pipelines the demo applies.
const DEMO_PIPELINES: [&str; 6] = [
    "examples/pipelines/text.toml",
    "examples/pipelines/clean.toml",
    "examples/pipelines/embed.toml",
    "examples/pipelines/chat.toml",
    "examples/pipelines/finetune.toml",
    "examples/pipelines/classify.toml",
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = root();
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("demo") => demo(&root, &args[1..]),
        Some("test") => test(&root),
        Some("plugins") => plugins(&root),
        Some("bench") => bench(&root),
        Some("models") => models(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask <demo [--listen ADDR] | test | plugins | bench | models>"
            );
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Runs a command, echoing it, failing with its status.
fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Adds the wasm32-wasip2 target if this toolchain lacks it (idempotent).
fn ensure_wasm_target() -> anyhow::Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("running rustup (is Rust installed with rustup?)")?;
    if !String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    Ok(())
}

/// Installs a Vulkan driver for weft-nn's GPU path if missing
/// (`scripts/install-vulkan.sh`: Debian's Mesa drivers, whose llvmpipe
/// device runs the GPU tests on machines without a GPU); idempotent.
fn ensure_vulkan(root: &Path) -> anyhow::Result<()> {
    run(Command::new("sh").arg(root.join("scripts/install-vulkan.sh")))?;
    // The Vulkan loader complains on every start without a runtime dir
    // (containers, CI); give the processes started from here one.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: set before any thread is started; xtask is single-threaded.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    Ok(())
}

/// Installs a NATS server with JetStream if missing
/// (`scripts/install-nats.sh`: Debian's `nats-server`), which the cluster
/// tests start one of per test; idempotent.
fn ensure_nats(root: &Path) -> anyhow::Result<()> {
    run(Command::new("sh").arg(root.join("scripts/install-nats.sh")))
}

fn plugins(root: &Path) -> anyhow::Result<()> {
    ensure_wasm_target()?;
    for manifest in WASM_WORKSPACES {
        run(cargo()
            .args([
                "build",
                "--release",
                "--target",
                WASM_TARGET,
                "--manifest-path",
                manifest,
            ])
            .arg("--target-dir")
            .arg(target_dir(root)))?;
    }
    Ok(())
}

fn test(root: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    ensure_wasm_target()?;
    // weft-nn's GPU tests need a Vulkan driver (llvmpipe where no GPU is).
    ensure_vulkan(root)?;
    // The cluster tests start nats-server processes.
    ensure_nats(root)?;
    // The inference tests run real models and compare with references.
    models(root)?;
    let target = target_dir(root);
    run(cargo().args(["fmt", "--all", "--check"]))?;
    for manifest in WASM_WORKSPACES {
        // `cargo fmt --manifest-path` does not work for these workspaces.
        let dir = Path::new(manifest)
            .parent()
            .expect("manifest in a directory");
        run(cargo()
            .args(["fmt", "--all", "--check"])
            .current_dir(root.join(dir)))?;
    }
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    for manifest in WASM_WORKSPACES {
        run(cargo()
            .args([
                "clippy",
                "--release",
                "--target",
                WASM_TARGET,
                "--manifest-path",
                manifest,
            ])
            .arg("--target-dir")
            .arg(&target)
            .args(["--", "-D", "warnings"]))?;
    }
    plugins(root)?;
    // The plugins' and guests' own tests run natively through the SDK's
    // test harness.
    for manifest in WASM_WORKSPACES {
        run(cargo()
            .args(["test", "--manifest-path", manifest])
            .arg("--target-dir")
            .arg(&target))?;
    }
    run(cargo().args(["test", "--workspace"]))?;
    eprintln!("all checks passed in {:.0?}", started.elapsed());
    Ok(())
}

fn demo(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let listen = match args {
        [flag, addr] if flag == "--listen" => addr.clone(),
        [] => "127.0.0.1:7070".to_string(),
        _ => bail!("usage: cargo xtask demo [--listen ADDR]"),
    };
    plugins(root)?;
    models(root)?;
    ensure_vulkan(root)?;
    run(cargo().args(["build", "--package", "weft", "--bin", "weft"]))?;
    let target = target_dir(root);
    let weft = target.join("debug/weft");
    let data_dir = target.join("demo-data");
    let server = format!("http://{listen}");

    eprintln!(
        "starting the daemon on {server} (data in {})",
        data_dir.display()
    );
    let mut daemon = Command::new(&weft)
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(&data_dir)
        .stdin(Stdio::null())
        .spawn()
        .context("starting the weft daemon")?;
    let ready = wait_healthy(&weft, &server, &mut daemon);
    if let Err(e) = ready {
        let _ = daemon.kill();
        return Err(e);
    }
    if let Err(e) = deploy_demo(&weft, &server, &target) {
        let _ = daemon.kill();
        return Err(e);
    }
    let weft_bin = weft.display();
    println!(
        r#"
weft is running on {server} with the example stages deployed (normalize, count, chunk,
embed, generate, finetune, classify), the models `minilm` (all-MiniLM-L6-v2, ONNX) and
`smollm2` (SmolLM2-135M-Instruct, GGUF), and the example pipelines `text` (normalize ->
chunk -> count), `clean` (batched normalize for batch jobs), `embed` (normalize -> embed,
batched), `chat` (generate, streamed), `finetune` (a training job) and `classify`
(serves the newest trained classifier) from examples/pipelines/.

Inference:

  curl -s {server}/embed -H 'content-type: application/json' \
       -d '{{"text": "Sandboxed stages call models through wasi-nn"}}' | head -c 200; echo
  curl -sN {server}/chat -H 'content-type: application/json' \
       -d '{{"prompt": "What is the capital of France?"}}'
  curl -s {server}/v1/stages/generate/invoke -H 'content-type: application/json' \
       -d '{{"messages": [{{"role": "user", "content": "Write a haiku about rust."}}], "temperature": 0.7, "top_p": 0.9, "seed": 7}}'
  {weft_bin} --server {server} model list

Fine-tuning: train a topic classifier on MiniLM embeddings, then serve it:

  DATA=$({weft_bin} --server {server} object put examples/data/topics.jsonl)
  {weft_bin} --server {server} job submit --pipeline finetune --watch \
       --input '{{"data": "'$DATA'", "epochs": 4}}'
  curl -s {server}/classify -H 'content-type: application/json' \
       -d '{{"text": "The goalkeeper saved a penalty in the cup final."}}'

Try it:

  curl -s {server}/v1/stages/normalize/invoke -H 'content-type: application/json' \
       -d '{{"text": "  Hello   WÖRLD  "}}'
  curl -s {server}/v1/stages/count/invoke -H 'content-type: application/json' \
       -d '{{"text": "the quick brown fox"}}'
  curl -sN {server}/v1/stages/chunk/invoke -H 'accept: text/event-stream' \
       -H 'content-type: application/json' \
       -d '{{"text": "one two three four five six seven eight nine ten eleven twelve"}}'
  curl -s {server}/text -H 'content-type: application/json' \
       -d '{{"text": "Pipelines chain stages: normalise, chunk, then count the words of each chunk"}}'
  curl -sN {server}/text/stream -H 'content-type: application/json' \
       -d '{{"text": "the chunk step streams each chunk as it is made"}}'
  curl -s {server}/v1/stages
  curl -s {server}/metrics

  {weft_bin} --server {server} stage list
  {weft_bin} --server {server} invoke normalize --data '{{"text": "ÉCOLE  Normale"}}'
  {weft_bin} --server {server} invoke chunk --stream --data '{{"text": "a b c d e f g h i j"}}'
  {weft_bin} --server {server} pipeline status text

A batch job over a dataset, an embedding job, and an async job:

  seq 1 100000 | sed 's/.*/{{"text": "  Row \0  of the CORPUS "}}/' > /tmp/corpus.jsonl
  {weft_bin} --server {server} dataset create corpus /tmp/corpus.jsonl
  {weft_bin} --server {server} job submit --pipeline clean --dataset corpus --watch
  {weft_bin} --server {server} job output 1 | head -3
  head -2000 /tmp/corpus.jsonl > /tmp/small.jsonl
  {weft_bin} --server {server} dataset create small /tmp/small.jsonl
  {weft_bin} --server {server} job submit --pipeline embed --dataset small --watch
  curl -si {server}/text -H 'prefer: respond-async' -H 'content-type: application/json' \
       -d '{{"text": "runs in the background"}}'

Press Ctrl-C to stop.
"#
    );
    let status = daemon.wait()?;
    if !status.success() {
        bail!("the daemon exited with {status}");
    }
    Ok(())
}

/// Waits until the daemon answers HTTP (`weft stage list` needs a live one).
fn wait_healthy(weft: &Path, server: &str, daemon: &mut std::process::Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = daemon.try_wait()? {
            bail!(
                "the daemon exited during start-up with {status} (is the port taken? use --listen)"
            );
        }
        let probe = Command::new(weft)
            .args(["--server", server, "stage", "list"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if probe.success() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the daemon did not answer on {server} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the CLI against the demo daemon and returns what it printed.
fn cli(weft: &Path, server: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(weft)
        .args(["--server", server])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running weft {args:?}"))?;
    if !out.status.success() {
        bail!("weft {args:?} failed with {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Deploys the example stages, the two models with their tokenizer files
/// (as objects the stages read at init) and the example pipelines.
fn deploy_demo(weft: &Path, server: &str, target: &Path) -> anyhow::Result<()> {
    let wasm = |name: &str| target.join(format!("{WASM_TARGET}/release/{name}.wasm"));
    let models = target.join("models");
    let path = |p: PathBuf| p.display().to_string();
    for (name, config) in DEMO_STAGES {
        let mut args = vec!["stage", "deploy", name];
        let file = path(wasm(name));
        args.push(&file);
        if !config.is_empty() {
            args.extend(["--config", config]);
        }
        cli(weft, server, &args)?;
    }
    for (name, file, encoding) in [
        ("minilm", "minilm/model.onnx", "onnx"),
        ("smollm2", "smollm2-135m-instruct.gguf", "ggml"),
    ] {
        let file = path(models.join(file));
        cli(
            weft,
            server,
            &["model", "upload", name, &file, "--encoding", encoding],
        )?;
    }
    let vocab = cli(
        weft,
        server,
        &["object", "put", &path(models.join("minilm/vocab.txt"))],
    )?;
    let tokenizer = cli(
        weft,
        server,
        &[
            "object",
            "put",
            &path(models.join("smollm2-tokenizer.json")),
        ],
    )?;
    for (name, config) in [
        ("embed", format!("vocab={vocab}")),
        ("finetune", format!("vocab={vocab}")),
        ("classify", format!("vocab={vocab}")),
        ("generate", format!("tokenizer={tokenizer}")),
    ] {
        let file = path(wasm(name));
        cli(
            weft,
            server,
            &["stage", "deploy", name, &file, "--config", &config],
        )?;
    }
    for spec in DEMO_PIPELINES {
        cli(weft, server, &["pipeline", "apply", spec])?;
    }
    Ok(())
}

fn bench(root: &Path) -> anyhow::Result<()> {
    plugins(root)?;
    run(cargo().args(["bench", "--package", "weft-benches"]))?;
    run(Command::new("bash").arg("benches/load.sh"))?;
    Ok(())
}

/// Fetches the models and test data into `<target>/models` (idempotent: what
/// is already there is kept).
fn models(root: &Path) -> anyhow::Result<()> {
    run(Command::new("python3")
        .arg(root.join("scripts/models.py"))
        .arg("--dest")
        .arg(target_dir(root).join("models")))
}
