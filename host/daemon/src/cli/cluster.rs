//! `weft cluster ...`.

use std::io::Write;

use clap::Subcommand;
use reqwest::Method;

use crate::client::Client;

/// `weft cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The nodes of the cluster: address, liveness, capacity and load.
    Status {
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `weft cluster ...`.
pub async fn cluster(client: &Client, cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status { json } => {
            let v = client
                .json(client.request(Method::GET, "/v1/cluster"))
                .await?;
            if json {
                return Ok(super::print_json(&v)?);
            }
            print!("{}", status_table(&v));
            std::io::stdout().flush()?;
            Ok(())
        }
    }
}

/// The table `weft cluster status` prints.
pub fn status_table(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let node = v["node"].as_str().unwrap_or("");
    if v["enabled"].as_bool() == Some(true) {
        let _ = writeln!(
            out,
            "cluster via {} ({}), this node: {node}",
            v["nats"].as_str().unwrap_or("?"),
            if v["connected"].as_bool() == Some(true) {
                "connected"
            } else {
                "NOT CONNECTED"
            },
        );
    } else {
        let _ = writeln!(out, "single node ({node}): not in a cluster (no --cluster)");
    }
    let _ = writeln!(
        out,
        "{:<24} {:<22} {:<6} {:>8} {:>5} {:>10} {:>9} {:>8} {:>5}",
        "NODE", "ADDRESS", "STATE", "AGE", "CPU", "MEMORY", "IN-FLIGHT", "REPLICAS", "JOBS"
    );
    for n in v["nodes"].as_array().into_iter().flatten() {
        let mut name = n["name"].as_str().unwrap_or("").to_string();
        if n["self"].as_bool() == Some(true) {
            name.push_str(" *");
        }
        let _ = writeln!(
            out,
            "{:<24} {:<22} {:<6} {:>8} {:>5} {:>10} {:>9} {:>8} {:>5}",
            name,
            n["http_addr"].as_str().unwrap_or(""),
            if n["alive"].as_bool() == Some(true) {
                "alive"
            } else {
                "DEAD"
            },
            format!("{:.1}s", n["age_ms"].as_u64().unwrap_or(0) as f64 / 1000.0),
            n["capacity"]["cpu"]
                .as_f64()
                .map_or("-".into(), |c| format!("{c}")),
            n["capacity"]["memory_mib"]
                .as_u64()
                .map_or("-".into(), |m| format!("{m} MiB")),
            n["load"]["in_flight"].to_string(),
            n["load"]["replicas"].to_string(),
            n["load"]["jobs_running"].to_string(),
        );
    }
    out
}
