//! `weft node ...` and `weft placement-group ...`.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::print_json;
use crate::client::{Client, seg};

/// `weft node ...`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// The node's capacity, what replicas and groups reserved, and what is free.
    Status,
    /// Drain node NAME of a cluster: it passes the requests it gets to its
    /// peers while its replicas go idle.
    Drain {
        /// Node name (see `weft cluster status`).
        name: String,
    },
    /// Stop draining node NAME.
    Undrain {
        /// Node name.
        name: String,
    },
}

/// `weft placement-group ...`.
#[derive(Debug, Subcommand)]
pub enum PlacementGroupCommand {
    /// Reserve bundles of resources together, all or none.
    Create {
        /// Group name.
        name: String,
        /// A bundle, RESOURCE=AMOUNT pairs separated by commas
        /// (`cpu=1,gpu=1,memory_mib=4096,licence=1`); repeat per bundle.
        #[arg(long = "bundle", required = true)]
        bundles: Vec<String>,
        /// pack, spread, strict_pack or strict_spread.
        #[arg(long, default_value = "pack")]
        strategy: String,
    },
    /// List groups.
    List,
    /// Show a group as JSON.
    Show {
        /// Group name.
        name: String,
    },
    /// Remove a group, returning its reservations.
    Delete {
        /// Group name.
        name: String,
    },
}

/// `cpu=1,gpu=1,licence=2` as a bundle's JSON.
fn bundle(text: &str) -> anyhow::Result<Value> {
    let mut b = Map::new();
    let mut custom = Map::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .with_context(|| format!("--bundle `{text}`: `{pair}` is not RESOURCE=AMOUNT"))?;
        let amount: f64 = v
            .parse()
            .with_context(|| format!("--bundle `{text}`: `{v}` is not a number"))?;
        match k {
            "cpu" | "gpu" | "memory_mib" => b.insert(k.to_string(), json!(amount)),
            other => custom.insert(other.to_string(), json!(amount)),
        };
    }
    if !custom.is_empty() {
        b.insert("custom".into(), Value::Object(custom));
    }
    Ok(Value::Object(b))
}

/// Runs `weft node ...`.
pub async fn node(client: &Client, cmd: NodeCommand) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Status => {
            let v = client.json(client.request(Method::GET, "/v1/node")).await?;
            Ok(print_json(&v)?)
        }
        NodeCommand::Drain { name } => drain(client, &name, "drain").await,
        NodeCommand::Undrain { name } => drain(client, &name, "undrain").await,
    }
}

async fn drain(client: &Client, name: &str, action: &str) -> anyhow::Result<()> {
    let v = client
        .json(client.request(
            Method::POST,
            &format!("/v1/cluster/nodes/{}/{action}", seg(name)?),
        ))
        .await?;
    Ok(print_json(&v)?)
}

/// Runs `weft placement-group ...`.
pub async fn group(client: &Client, cmd: PlacementGroupCommand) -> anyhow::Result<()> {
    match cmd {
        PlacementGroupCommand::Create {
            name,
            bundles,
            strategy,
        } => {
            let bundles = bundles
                .iter()
                .map(|b| bundle(b))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let body = json!({"name": name, "bundles": bundles, "strategy": strategy});
            let v = client
                .json(
                    client
                        .request(Method::POST, "/v1/placement-groups")
                        .json(&body),
                )
                .await?;
            Ok(print_json(&v)?)
        }
        PlacementGroupCommand::List => {
            let v = client
                .json(client.request(Method::GET, "/v1/placement-groups"))
                .await?;
            for g in v["placement_groups"].as_array().into_iter().flatten() {
                out!(
                    "{:<24} {:<14} {} bundles",
                    g["name"].as_str().unwrap_or(""),
                    g["strategy"].as_str().unwrap_or(""),
                    g["bundles"].as_array().map_or(0, Vec::len)
                )?;
            }
            Ok(())
        }
        PlacementGroupCommand::Show { name } => {
            let v = client
                .json(client.request(
                    Method::GET,
                    &format!("/v1/placement-groups/{}", seg(&name)?),
                ))
                .await?;
            Ok(print_json(&v)?)
        }
        PlacementGroupCommand::Delete { name } => {
            client
                .send(client.request(
                    Method::DELETE,
                    &format!("/v1/placement-groups/{}", seg(&name)?),
                ))
                .await?;
            out!("deleted placement group {name}")?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_parse_from_flags() {
        assert_eq!(
            bundle("cpu=1,gpu=1,licence=2").unwrap(),
            json!({"cpu": 1.0, "gpu": 1.0, "custom": {"licence": 2.0}})
        );
        assert!(
            bundle("cpu")
                .unwrap_err()
                .to_string()
                .contains("RESOURCE=AMOUNT")
        );
        assert!(
            bundle("cpu=x")
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
    }
}
