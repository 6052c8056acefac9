//! Placement across the cluster: placement groups that span nodes all or
//! nothing, and a pipeline pinned to a number of nodes that moves when one
//! leaves.

use super::*;

/// Reserved CPU on node `d`.
async fn reserved_cpu(d: &TestDaemon) -> f64 {
    d.get_json("/v1/node").await["reserved"]["cpu"]
        .as_f64()
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_groups_span_nodes_all_or_nothing() {
    let nats = NatsServer::start();
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let cluster = cluster_config(&nats, name);
        nodes.push(
            TestDaemon::start_with(|c| {
                c.cluster = Some(cluster);
                c.capacity.cpus = Some(2.0);
                c.capacity.gpus = Some(0.0);
            })
            .await,
        );
    }
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    sees(a, alive(&["a", "b", "c"])).await;
    sees(b, alive(&["a", "b", "c"])).await;

    // One bundle per node.
    let (s, group, _) = a
        .post(
            "/v1/placement-groups",
            &json!({"name": "ring", "bundles": [{"cpu": 1.5}, {"cpu": 1.5}, {"cpu": 1.5}], "strategy": "strict_spread"}),
        )
        .await;
    assert_eq!(s, 201, "{group}");
    let mut placed: Vec<&str> = group["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["node"].as_str().unwrap())
        .collect();
    placed.sort_unstable();
    assert_eq!(placed, ["a", "b", "c"], "{group}");
    for d in [a, b, c] {
        assert_eq!(reserved_cpu(d).await, 1.5);
    }

    // Three more bundles of 1 CPU fit on no node now (0.5 free each): 409,
    // and whatever share was made (a peer's heartbeat may still show 2
    // free) is rolled back.
    let (s, err, _) = b
        .post(
            "/v1/placement-groups",
            &json!({"name": "more", "bundles": [{"cpu": 1}, {"cpu": 1}, {"cpu": 1}], "strategy": "spread"}),
        )
        .await;
    assert_eq!(s, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was reserved"),
        "{err}"
    );
    for d in [a, b, c] {
        assert_eq!(reserved_cpu(d).await, 1.5, "nothing of `more` is left");
    }
    // Users do not say where bundles go.
    let (s, err, _) = c
        .post(
            "/v1/placement-groups",
            &json!({"name": "pinned", "bundles": [{"cpu": 0.1}], "nodes": ["c"]}),
        )
        .await;
    assert_eq!(s, 400, "{err}");
    // The name is the cluster's.
    eventually("b hears of ring", Duration::from_secs(5), || async {
        let (s, err, _) = b
            .post(
                "/v1/placement-groups",
                &json!({"name": "ring", "bundles": [{"cpu": 0.1}]}),
            )
            .await;
        if s == 409 && err["error"]["code"] == "placement_group_exists" {
            Ok(())
        } else {
            Err(format!("{s} {err}"))
        }
    })
    .await;

    // Deleting on any node releases every share.
    let r = c
        .http
        .delete(c.url("/v1/placement-groups/ring"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    for d in [a, b, c] {
        assert_eq!(reserved_cpu(d).await, 0.0);
    }
}

/// The names of the nodes among `ds` that run pipeline `name`.
async fn running_on(ds: &[(&str, &TestDaemon)], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, d) in ds {
        if get_status(d, &format!("/v1/pipelines/{name}")).await.0 == 200 {
            out.push(n.to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_with_nodes_runs_on_that_many_and_moves_when_one_leaves() {
    let nats = NatsServer::start();
    let mut ds = vec![
        node(&nats, "a").await,
        node(&nats, "b").await,
        node(&nats, "c").await,
    ];
    sees(&ds[0], alive(&["a", "b", "c"])).await;
    ds[0].deploy("normalize", "normalize.wasm").await;
    let spec = "name = \"clean2\"\nnodes = 2\n[[steps]]\nstage = \"normalize\"\n[[triggers]]\nroute = \"/clean2\"\n";
    let (s, v) = ds[0].apply("clean2", spec).await;
    assert_eq!(s, 201, "{v}");

    let names = ["a", "b", "c"];
    let two = eventually("two nodes run clean2", Duration::from_secs(20), || {
        let view: Vec<(&str, &TestDaemon)> = names.iter().copied().zip(ds.iter()).collect();
        async move {
            let on = running_on(&view, "clean2").await;
            if on.len() == 2 {
                Ok(on)
            } else {
                Err(format!("{on:?}"))
            }
        }
    })
    .await;
    // It stays on those two (no flapping), each at its first version.
    tokio::time::sleep(HEARTBEAT * 5).await;
    let view: Vec<(&str, &TestDaemon)> = names.iter().copied().zip(ds.iter()).collect();
    assert_eq!(running_on(&view, "clean2").await, two);
    for (n, d) in &view {
        if two.contains(&n.to_string()) {
            assert_eq!(d.get_json("/v1/pipelines/clean2").await["version"], 1);
        }
    }
    // Every node serves the trigger: the third forwards.
    for d in &ds {
        let out = post_ok(d, "/clean2", json!({"text": "  Hello   WORLD "})).await;
        assert_eq!(out["text"], "hello world", "{out}");
    }

    // One of the two leaves: the third node takes its place.
    let leaving = names.iter().position(|n| *n == two[0]).unwrap();
    ds[leaving].daemon.take().unwrap().shutdown().await.unwrap();
    let rest: Vec<(&str, &TestDaemon)> = names
        .iter()
        .copied()
        .zip(ds.iter())
        .enumerate()
        .filter(|(i, _)| *i != leaving)
        .map(|(_, p)| p)
        .collect();
    eventually(
        "the other two run clean2",
        Duration::from_secs(20),
        || async {
            let on = running_on(&rest, "clean2").await;
            if on.len() == 2 {
                Ok(())
            } else {
                Err(format!("{on:?}"))
            }
        },
    )
    .await;
}
