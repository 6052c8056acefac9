//! `weft actor ...`.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Payload, invoke, print_json};
use crate::client::{Client, seg};

/// `weft actor ...`.
#[derive(Debug, Subcommand)]
pub enum ActorCommand {
    /// Create a named actor: a long-lived instance of STAGE with its own state.
    Create {
        /// Actor name.
        name: String,
        /// The stage it runs.
        #[arg(long)]
        stage: String,
        /// Stage version (default: the latest).
        #[arg(long)]
        version: Option<u32>,
        /// Config KEY=VALUE, merged over the stage's (repeatable).
        #[arg(long)]
        config: Vec<String>,
    },
    /// List actors (and stored ones that could not start, with why).
    List,
    /// Show an actor as JSON: stage, version, config, calls.
    Show {
        /// Actor name.
        name: String,
    },
    /// Call an actor (calls run one at a time, in order).
    Call {
        /// Actor name.
        name: String,
        /// The payload.
        #[command(flatten)]
        payload: Payload,
    },
    /// Delete an actor and its state.
    Delete {
        /// Actor name.
        name: String,
    },
}

/// Runs `weft actor ...`.
pub async fn actor(client: &Client, cmd: ActorCommand) -> anyhow::Result<()> {
    match cmd {
        ActorCommand::Create {
            name,
            stage,
            version,
            config,
        } => {
            let mut cfg = serde_json::Map::new();
            for kv in &config {
                let (k, v) = kv
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .with_context(|| format!("--config `{kv}` is not KEY=VALUE"))?;
                cfg.insert(k.to_string(), Value::String(v.to_string()));
            }
            let body = json!({"name": name, "stage": stage, "version": version, "config": cfg});
            let v = client
                .json(client.request(Method::POST, "/v1/actors").json(&body))
                .await?;
            print_json(&v)?;
            Ok(())
        }
        ActorCommand::List => {
            let v = client
                .json(client.request(Method::GET, "/v1/actors"))
                .await?;
            for a in v["actors"].as_array().into_iter().flatten() {
                out!(
                    "{:<24} {:<20} v{:<4} {:>8} calls",
                    a["name"].as_str().unwrap_or(""),
                    a["stage"].as_str().unwrap_or(""),
                    a["version"],
                    a["calls"]
                )?;
            }
            for a in v["not_running"].as_array().into_iter().flatten() {
                out!(
                    "{:<24} {:<20} NOT RUNNING: {}",
                    a["name"].as_str().unwrap_or(""),
                    a["stage"].as_str().unwrap_or(""),
                    a["error"].as_str().unwrap_or("")
                )?;
            }
            Ok(())
        }
        ActorCommand::Show { name } => {
            let v = client
                .json(client.request(Method::GET, &format!("/v1/actors/{}", seg(&name)?)))
                .await?;
            print_json(&v)?;
            Ok(())
        }
        ActorCommand::Call { name, payload } => {
            invoke(client, &format!("/v1/actors/{}/call", seg(&name)?), payload).await
        }
        ActorCommand::Delete { name } => {
            client
                .send(client.request(Method::DELETE, &format!("/v1/actors/{}", seg(&name)?)))
                .await?;
            out!("deleted actor {name}")?;
            Ok(())
        }
    }
}
