//! `weft model ...`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;

use super::print_json;
use crate::client::{Client, seg};

/// `weft model ...`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Upload FILE as model NAME (a new version when the bytes changed).
    Upload {
        /// Model name (stages load it with `wasi:nn` `load-by-name`).
        name: String,
        /// An .onnx or .gguf file.
        file: PathBuf,
        /// onnx or ggml (default: from the file's first bytes).
        #[arg(long)]
        encoding: Option<String>,
    },
    /// List models.
    List,
    /// Show a model, its versions and what it holds.
    Show {
        /// Model name.
        name: String,
    },
    /// Delete a model (refused while running instances hold it loaded).
    Delete {
        /// Model name.
        name: String,
        /// Delete it even while running instances hold it loaded (they keep
        /// their copy; new ones cannot load it).
        #[arg(long)]
        force: bool,
    },
}

/// Runs `weft model ...`.
pub async fn model(client: &Client, cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Upload {
            name,
            file,
            encoding,
        } => {
            let bytes = tokio::fs::read(&file)
                .await
                .with_context(|| format!("reading {}", file.display()))?;
            let mut req = client
                .request(Method::PUT, &format!("/v1/models/{}", seg(&name)?))
                .body(bytes);
            if let Some(e) = encoding {
                req = req.query(&[("encoding", e)]);
            }
            let response = client.send(req).await?;
            // 200: the same bytes as the latest version, which stays.
            let unchanged = if response.status() == reqwest::StatusCode::OK {
                ", unchanged"
            } else {
                ""
            };
            let v: serde_json::Value = response.json().await?;
            out!(
                "model {name} v{} ({}, {} bytes{unchanged})",
                v["latest"]["version"],
                v["latest"]["encoding"].as_str().unwrap_or(""),
                v["latest"]["size"]
            )?;
            let tokenizer = &v["latest"]["summary"]["tokenizer"];
            if let Some(id) = tokenizer["object"].as_str() {
                out!("tokenizer object {id} (generate: --config tokenizer={id})")?;
            } else if let Some(why) = tokenizer["why"].as_str() {
                out!("no tokenizer for the generate stage: {why}")?;
            }
            Ok(())
        }
        ModelCommand::List => {
            let v = client
                .json(client.request(Method::GET, "/v1/models"))
                .await?;
            for m in v["models"].as_array().into_iter().flatten() {
                out!(
                    "{:<24} v{:<4} {:<5} {:>12} bytes",
                    m["name"].as_str().unwrap_or(""),
                    m["latest"]["version"],
                    m["latest"]["encoding"].as_str().unwrap_or(""),
                    m["latest"]["size"]
                )?;
            }
            Ok(())
        }
        ModelCommand::Show { name } => {
            print_json(
                &client
                    .json(client.request(Method::GET, &format!("/v1/models/{}", seg(&name)?)))
                    .await?,
            )?;
            Ok(())
        }
        ModelCommand::Delete { name, force } => {
            let path = format!("/v1/models/{}", seg(&name)?);
            let req = client.request(Method::DELETE, &path);
            let req = if force {
                req.query(&[("force", "true")])
            } else {
                req
            };
            client.send(req).await?;
            out!("deleted model {name}")?;
            Ok(())
        }
    }
}
