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
        "{:<24} {:<22} {:<6} {:>8} {:>9} {:>10} {:>9} {:>8} {:>5}",
        "NODE", "ADDRESS", "STATE", "AGE", "CPU FREE", "MEMORY", "IN-FLIGHT", "REPLICAS", "JOBS"
    );
    for n in v["nodes"].as_array().into_iter().flatten() {
        let mut name = n["name"].as_str().unwrap_or("").to_string();
        if n["self"].as_bool() == Some(true) {
            name.push_str(" *");
        }
        let _ = writeln!(
            out,
            "{:<24} {:<22} {:<6} {:>8} {:>9} {:>10} {:>9} {:>8} {:>5}",
            name,
            n["http_addr"].as_str().unwrap_or(""),
            match (n["alive"].as_bool(), n["draining"].as_bool()) {
                (Some(true), Some(true)) => "drain",
                (Some(true), _) => "alive",
                _ => "DEAD",
            },
            format!("{:.1}s", n["age_ms"].as_u64().unwrap_or(0) as f64 / 1000.0),
            match (
                n["capacity"]["free"]["cpu"].as_f64(),
                n["capacity"]["cpu"].as_f64()
            ) {
                (Some(free), Some(all)) => format!("{free}/{all}"),
                (_, Some(all)) => format!("{all}"),
                _ => "-".into(),
            },
            n["capacity"]["memory_mib"]
                .as_u64()
                .map_or("-".into(), |m| format!("{m} MiB")),
            n["load"]["in_flight"].to_string(),
            n["load"]["replicas"].to_string(),
            n["load"]["jobs_running"].to_string(),
        );
    }
    let groups: Vec<String> = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| {
            let node = n["name"].as_str().unwrap_or("").to_string();
            n["placement_groups"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |g| {
                    format!(
                        "{:<24} {:<14} {:>7} bundles  on {node}",
                        g["name"].as_str().unwrap_or(""),
                        g["strategy"].as_str().unwrap_or(""),
                        g["bundles"]
                    )
                })
        })
        .collect();
    if !groups.is_empty() {
        let _ = writeln!(out, "\nPLACEMENT GROUP          STRATEGY");
        for g in groups {
            let _ = writeln!(out, "{g}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_table_shows_state_free_cores_and_groups() {
        let v = json!({
            "enabled": true, "node": "a", "nats": "nats://x:4222", "connected": true,
            "nodes": [
                {"name": "a", "self": true, "alive": true, "draining": true, "http_addr": "h:1",
                 "age_ms": 0, "capacity": {"cpu": 2.0, "memory_mib": 100, "free": {"cpu": 1.5}},
                 "load": {"in_flight": 0, "replicas": 1, "jobs_running": 0},
                 "placement_groups": [{"name": "train", "strategy": "pack", "bundles": 2}]},
                {"name": "b", "alive": false, "http_addr": "h:2", "age_ms": 9000,
                 "capacity": {"cpu": 4.0, "memory_mib": 100}, "load": {}},
            ],
        });
        let table = status_table(&v);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("connected"), "{table}");
        assert!(
            lines[2].starts_with("a *") && lines[2].contains("drain"),
            "{table}"
        );
        assert!(lines[2].contains("1.5/2"), "{table}");
        assert!(
            lines[3].contains("DEAD") && lines[3].contains(" 4 "),
            "{table}"
        );
        assert!(table.contains("train") && table.contains("on a"), "{table}");
    }
}
