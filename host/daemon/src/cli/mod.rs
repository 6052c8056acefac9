//! The `weft` command line: `serve`, and client subcommands over HTTP.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use reqwest::Method;

use crate::client::{Client, seg};

/// weft: generative-AI pipelines as sandboxed WebAssembly stages.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about)]
pub struct Cli {
    /// The daemon to talk to (client subcommands).
    #[arg(
        long,
        global = true,
        env = "WEFT_SERVER",
        default_value = "http://127.0.0.1:7070"
    )]
    pub server: String,
    /// Bearer token for mutating routes (`weft serve --token` sets the daemon's).
    #[arg(long, global = true, env = "WEFT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses `args` as [`Parser::try_parse_from`] does, and refuses
    /// `weft serve --server`, which would otherwise be ignored (a daemon
    /// listens on `--listen`; `--server` names the daemon the client
    /// subcommands talk to, and `serve --help` does not list it).
    pub fn try_parse_checked<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        // `serve`'s own hidden `--server` takes the global one's place there
        // (clap does not propagate a global to a subcommand that has its id).
        let mut cli = Self::command().mut_subcommand("serve", |serve| {
            serve.arg(clap::Arg::new("server").long("server").hide(true))
        });
        let matches = cli.try_get_matches_from_mut(args)?;
        let given = |m: &clap::ArgMatches| {
            m.value_source("server") == Some(clap::parser::ValueSource::CommandLine)
        };
        if let Some(("serve", serve)) = matches.subcommand()
            && (given(serve) || given(&matches))
        {
            return Err(cli.error(
                clap::error::ErrorKind::ArgumentConflict,
                "`--server` names the daemon that client subcommands talk to; \
                 `weft serve` listens on `--listen ADDR` (e.g. --listen 0.0.0.0:8080)",
            ));
        }
        Self::from_arg_matches(&matches).map_err(|e| e.format(&mut cli))
    }
}

/// Subcommands.
// Parsed once per process: `serve`'s many flags make it the large variant,
// and boxing it would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    /// Manage stages.
    #[command(subcommand)]
    Stage(StageCommand),
    /// Call a stage once with a payload and print the result.
    Invoke(InvokeArgs),
    /// Store and fetch objects.
    #[command(subcommand)]
    Object(ObjectCommand),
    /// Manage pipelines (chains of stages behind HTTP triggers).
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Upload and inspect datasets (inputs of batch jobs).
    #[command(subcommand)]
    Dataset(jobs::DatasetCommand),
    /// Submit, follow and cancel batch and async jobs.
    #[command(subcommand)]
    Job(jobs::JobCommand),
    /// Named, stateful, long-lived stage instances.
    #[command(subcommand)]
    Actor(actors::ActorCommand),
    /// Upload and inspect models (ONNX, GGUF) for `wasi:nn`.
    #[command(subcommand)]
    Model(models::ModelCommand),
    /// The cluster's nodes: address, liveness, capacity, load.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// This node's resources: capacity, reserved, free.
    #[command(subcommand)]
    Node(placement::NodeCommand),
    /// Placement groups: bundles of resources reserved together.
    #[command(subcommand, name = "placement-group", alias = "pg")]
    PlacementGroup(placement::PlacementGroupCommand),
}

/// `weft pipeline ...`.
#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Create or update a pipeline from a TOML (or `.json`) spec file.
    Apply {
        /// The spec file.
        file: PathBuf,
    },
    /// List pipelines.
    List,
    /// Show a pipeline's replicas, queue depth and latency per step.
    Status {
        /// Pipeline name.
        name: String,
    },
    /// Run a pipeline once with a payload and print the result.
    Invoke(PipelineInvokeArgs),
    /// Remove a pipeline and its trigger routes.
    Delete {
        /// Pipeline name.
        name: String,
    },
}

/// `weft pipeline invoke` options.
#[derive(Debug, Args)]
pub struct PipelineInvokeArgs {
    /// Pipeline name.
    pub name: String,
    /// The payload.
    #[command(flatten)]
    pub payload: Payload,
}

/// What to send and how.
#[derive(Debug, Args)]
pub struct Payload {
    /// Inline payload (JSON by default).
    #[arg(long, conflicts_with = "file")]
    pub data: Option<String>,
    /// Read the payload from a file (`-` for stdin).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Content type of the payload.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// Print partial results and progress as they stream.
    #[arg(long)]
    pub stream: bool,
}

/// `weft stage ...`.
#[derive(Debug, Subcommand)]
pub enum StageCommand {
    /// Upload a component as stage NAME (a new version if it changed).
    Deploy {
        /// Stage name.
        name: String,
        /// The `.wasm` component.
        file: PathBuf,
        /// `KEY=VALUE` passed to the stage's `init` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// `KEY=VALUE` environment variable granted to the stage (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
    },
    /// List deployed stages.
    List,
    /// Show one stage and its versions.
    Show {
        /// Stage name.
        name: String,
    },
    /// Remove a stage and its state.
    Delete {
        /// Stage name.
        name: String,
    },
}

/// `weft invoke` options.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// Stage name.
    pub stage: String,
    /// The payload.
    #[command(flatten)]
    pub payload: Payload,
}

/// `weft object ...`.
#[derive(Debug, Subcommand)]
pub enum ObjectCommand {
    /// Store a file; prints its id.
    Put {
        /// The file.
        file: PathBuf,
    },
    /// Fetch an object to stdout or a file.
    Get {
        /// Object id.
        id: String,
        /// Write here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

fn pairs(kind: &str, items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| {
            s.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (format!("{kind}.{k}"), v.to_string()))
                .with_context(|| format!("--{kind} `{s}` is not KEY=VALUE"))
        })
        .collect()
}

/// Writes one line to stdout; a closed pipe (`weft ... | head`) becomes an
/// error the binary exits on quietly instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)
    };
}

mod actors;
mod cluster;
mod jobs;
mod models;
mod placement;
mod serve;

pub use serve::ServeArgs;

fn print_json(v: &serde_json::Value) -> std::io::Result<()> {
    out!("{}", serde_json::to_string_pretty(v).unwrap_or_default())
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(&cli.server, cli.token.clone());
    match cli.command {
        Command::Serve(args) => serve::serve(args, cli.token).await,
        Command::Stage(StageCommand::Deploy {
            name,
            file,
            config,
            env,
        }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut query = pairs("config", &config)?;
            query.extend(pairs("env", &env)?);
            let req = client
                .request(Method::PUT, &format!("/v1/stages/{}", seg(&name)?))
                .query(&query)
                .body(bytes);
            let v = client.json(req).await?;
            print_json(&v)?;
            if let Some(warning) = v["warning"].as_str() {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
        Command::Stage(StageCommand::List) => {
            let v = client
                .json(client.request(Method::GET, "/v1/stages"))
                .await?;
            for s in v["stages"].as_array().into_iter().flatten() {
                out!(
                    "{:<24} v{:<4} {:>9} bytes  {}",
                    s["name"].as_str().unwrap_or(""),
                    s["latest"]["version"],
                    s["latest"]["size"],
                    s["latest"]["digest"]
                        .as_str()
                        .unwrap_or("")
                        .get(..16)
                        .unwrap_or(""),
                )?;
            }
            Ok(())
        }
        Command::Stage(StageCommand::Show { name }) => {
            print_json(
                &client
                    .json(client.request(Method::GET, &format!("/v1/stages/{}", seg(&name)?)))
                    .await?,
            )?;
            Ok(())
        }
        Command::Stage(StageCommand::Delete { name }) => {
            client
                .send(client.request(Method::DELETE, &format!("/v1/stages/{}", seg(&name)?)))
                .await?;
            out!("deleted {name}")?;
            Ok(())
        }
        Command::Invoke(args) => {
            let path = format!("/v1/stages/{}/invoke", seg(&args.stage)?);
            invoke(&client, &path, args.payload).await
        }
        Command::Pipeline(cmd) => pipeline(&client, cmd).await,
        Command::Dataset(cmd) => jobs::dataset(&client, cmd).await,
        Command::Job(cmd) => jobs::job(&client, cmd).await,
        Command::Actor(cmd) => actors::actor(&client, cmd).await,
        Command::Model(cmd) => models::model(&client, cmd).await,
        Command::Cluster(cmd) => cluster::cluster(&client, cmd).await,
        Command::Node(cmd) => placement::node(&client, cmd).await,
        Command::PlacementGroup(cmd) => placement::group(&client, cmd).await,
        Command::Object(ObjectCommand::Put { file }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let v = client
                .json(client.request(Method::PUT, "/v1/objects").body(bytes))
                .await?;
            out!("{}", v["id"].as_str().unwrap_or(""))?;
            Ok(())
        }
        Command::Object(ObjectCommand::Get { id, output }) => {
            let bytes = client
                .send(client.request(Method::GET, &format!("/v1/objects/{}", seg(&id)?)))
                .await?
                .bytes()
                .await?;
            match output {
                Some(path) => std::fs::write(&path, &bytes)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout().write_all(&bytes)?,
            }
            Ok(())
        }
    }
}

async fn pipeline(client: &Client, cmd: PipelineCommand) -> anyhow::Result<()> {
    match cmd {
        PipelineCommand::Apply { file } => {
            let text =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let json = file.extension().is_some_and(|e| e == "json");
            let spec: serde_json::Value = if json {
                serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not JSON", file.display()))?
            } else {
                let s = std::str::from_utf8(&text).context("the spec is not UTF-8")?;
                toml::from_str(s)
                    .with_context(|| format!("{} is not valid TOML", file.display()))?
            };
            let name = spec["name"]
                .as_str()
                .with_context(|| format!("{} has no top-level `name`", file.display()))?
                .to_string();
            // Send the file as written so the daemon's errors point at its fields.
            let req = client
                .request(Method::PUT, &format!("/v1/pipelines/{}", seg(&name)?))
                .header(
                    "content-type",
                    if json {
                        "application/json"
                    } else {
                        "application/toml"
                    },
                )
                .body(text);
            let v = client.json(req).await?;
            out!("applied pipeline {name} (version {})", v["version"])?;
            for t in v["spec"]["triggers"].as_array().into_iter().flatten() {
                out!(
                    "  trigger: {} {}{}",
                    t["method"].as_str().unwrap_or(""),
                    client.base(),
                    t["route"].as_str().unwrap_or("")
                )?;
            }
            Ok(())
        }
        PipelineCommand::List => {
            let v = client
                .json(client.request(Method::GET, "/v1/pipelines"))
                .await?;
            for p in v["pipelines"].as_array().into_iter().flatten() {
                let steps: Vec<&str> = p["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["name"].as_str())
                    .collect();
                out!(
                    "{:<24} v{:<4} {}",
                    p["name"].as_str().unwrap_or(""),
                    p["version"],
                    steps.join(" -> ")
                )?;
            }
            for p in v["not_running"].as_array().into_iter().flatten() {
                out!(
                    "{:<24} NOT RUNNING: {}",
                    p["name"].as_str().unwrap_or(""),
                    p["error"].as_str().unwrap_or("")
                )?;
            }
            Ok(())
        }
        PipelineCommand::Status { name } => {
            let v = client
                .json(client.request(Method::GET, &format!("/v1/pipelines/{}", seg(&name)?)))
                .await?;
            out!("pipeline {name} v{}", v["version"])?;
            out!(
                "{:<16} {:>9} {:>7} {:>9} {:>8} {:>10} {:>10}",
                "step",
                "replicas",
                "queued",
                "in-flight",
                "calls",
                "p50",
                "p99"
            )?;
            for s in v["steps"].as_array().into_iter().flatten() {
                let us = |x: &serde_json::Value| {
                    x.as_u64()
                        .map_or("-".to_string(), |u| format!("{:.2}ms", u as f64 / 1000.0))
                };
                let replicas = format!("{}/{}", s["replicas"]["live"], s["replicas"]["max"]);
                out!(
                    "{:<16} {:>9} {:>7} {:>9} {:>8} {:>10} {:>10}",
                    s["name"].as_str().unwrap_or(""),
                    replicas,
                    s["queued"].to_string(),
                    s["in_flight"].to_string(),
                    s["calls"].to_string(),
                    us(&s["p50_us"]),
                    us(&s["p99_us"]),
                )?;
            }
            Ok(())
        }
        PipelineCommand::Invoke(args) => {
            let path = format!("/v1/pipelines/{}/invoke", seg(&args.name)?);
            invoke(client, &path, args.payload).await
        }
        PipelineCommand::Delete { name } => {
            client
                .send(client.request(Method::DELETE, &format!("/v1/pipelines/{}", seg(&name)?)))
                .await?;
            out!("deleted pipeline {name}")?;
            Ok(())
        }
    }
}

async fn invoke(client: &Client, path: &str, args: Payload) -> anyhow::Result<()> {
    let payload = match (&args.data, &args.file) {
        (Some(d), _) => d.clone().into_bytes(),
        (None, Some(p)) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            buf
        }
        (None, Some(p)) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        (None, None) => anyhow::bail!("give a payload with --data JSON or --file FILE"),
    };
    let mut req = client
        .request(Method::POST, path)
        .header("content-type", &args.content_type)
        .body(payload);
    if args.stream {
        req = req.header("accept", "text/event-stream");
    }
    let response = client.send(req).await?;
    if !args.stream {
        let bytes = response.bytes().await?;
        std::io::stdout().write_all(&bytes)?;
        out!()?;
        return Ok(());
    }
    // Print SSE events as they arrive: "event: data" per line.
    let mut body = response.bytes_stream();
    let mut frames = Frames::default();
    let mut failed = None;
    while let Some(chunk) = body.next().await {
        frames.push(&chunk?);
        while let Some(frame) = frames.next_frame() {
            let mut event = "message";
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if event == "error" {
                // Said as a refused call's error is: message, then hint.
                let v: serde_json::Value =
                    serde_json::from_str(&data).unwrap_or(serde_json::Value::Null);
                failed = Some(crate::client::error_text(&v).unwrap_or(data));
                continue;
            }
            out!("{event}: {data}")?;
        }
    }
    match failed {
        Some(why) => anyhow::bail!("the stage failed: {why}"),
        None => Ok(()),
    }
}

/// A server-sent event stream's bytes as they arrive, cut into frames
/// (ending in a blank line). Text is decoded a whole frame at a time: a
/// character split between two chunks stays whole.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
}

impl Frames {
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole frame, if one has arrived.
    fn next_frame(&mut self) -> Option<String> {
        let end = self.buf.windows(2).position(|w| w == b"\n\n")?;
        let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
        Some(String::from_utf8_lossy(&frame).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    /// `--stream` prints text whole when a chunk ends inside a character
    /// (it printed U+FFFD for each half).
    #[test]
    fn stream_frames_keep_characters_split_between_chunks() {
        let text = "event: partial\ndata: {\"text\":\"wörld\"}\n\nevent: result\ndata: 1\n\n";
        let split = text.find('ö').unwrap() + 1;
        let mut frames = Frames::default();
        frames.push(&text.as_bytes()[..split]);
        assert_eq!(frames.next_frame(), None);
        frames.push(&text.as_bytes()[split..]);
        assert_eq!(
            frames.next_frame().as_deref(),
            Some("event: partial\ndata: {\"text\":\"wörld\"}\n\n")
        );
        assert_eq!(
            frames.next_frame().as_deref(),
            Some("event: result\ndata: 1\n\n")
        );
        assert_eq!(frames.next_frame(), None);
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_checked(std::iter::once("weft").chain(args.iter().copied()))
    }

    /// `weft serve --server 0.0.0.0:8080` listened on 7070 without a word.
    #[test]
    fn serve_refuses_server_and_names_listen() {
        for args in [
            &["serve", "--server", "0.0.0.0:8080"][..],
            &["--server", "0.0.0.0:8080", "serve"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ArgumentConflict, "{args:?}");
            assert!(err.to_string().contains("--listen ADDR"), "{err}");
        }
        let cli = parse(&["serve", "--listen", "127.0.0.1:1"]).unwrap();
        assert!(matches!(cli.command, Command::Serve(_)));
    }

    /// `weft serve`'s numbers are checked as they are parsed: a negative or
    /// NaN amount of a resource was taken, an infinite TTL panicked.
    #[test]
    fn serve_refuses_amounts_it_cannot_use() {
        for (flag, value, why) in [
            ("--cpus", "-1", "0 or more"),
            ("--gpus", "NaN", "0 or more"),
            ("--node-memory-mib", "lots", "not a number"),
            ("--job-ttl-hours", "inf", "0 or more"),
            ("--job-ttl-hours", "1e16", "too long"),
            ("--job-ttl-hours", "-2", "0 or more"),
        ] {
            let arg = format!("{flag}={value}");
            let err = parse(&["serve", &arg]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{flag} {value}");
            assert!(err.to_string().contains(why), "{flag} {value}: {err}");
        }
        let cli = parse(&["serve", "--cpus", "1.5", "--job-ttl-hours", "0"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        assert_eq!((args.cpus, args.job_ttl_hours), (Some(1.5), 0.0));
    }

    #[test]
    fn only_client_subcommands_list_server() {
        let help = parse(&["serve", "--help"]).unwrap_err();
        assert_eq!(help.kind(), ErrorKind::DisplayHelp);
        let help = help.to_string();
        assert!(
            help.contains("--listen") && !help.contains("--server"),
            "{help}"
        );
        let help = parse(&["stage", "list", "--help"]).unwrap_err().to_string();
        assert!(help.contains("--server"), "{help}");
        let cli = parse(&["--server", "127.0.0.1:9", "stage", "list"]).unwrap();
        assert_eq!(cli.server, "127.0.0.1:9");
        let cli = parse(&["stage", "list", "--server", "127.0.0.1:9"]).unwrap();
        assert_eq!(cli.server, "127.0.0.1:9");
    }
}
