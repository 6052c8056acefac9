//! What forwarding a request to a peer costs: p50/p99 of a one-step echo
//! pipeline's trigger called on node b directly, against the same call made
//! to node a while a is draining (a passes it to b and streams the answer
//! back). Two in-process daemons on loopback joined through a local
//! `nats-server -js`; sequential requests over keep-alive connections; the
//! two series alternate in rounds so drift hits both alike.
//!
//!     cargo run -p weft-e2e --example cluster_forward [REQUESTS]
//!
//! Debug build (as the tests); needs `nats-server` (scripts/install-nats.sh)
//! and the probe guest (`cargo xtask plugins`).

use std::time::{Duration, Instant};

use serde_json::json;
use weft::cluster::ClusterConfig;
use weft_e2e::{NatsServer, TestDaemon};

async fn node(nats: &NatsServer, name: &str) -> TestDaemon {
    let url = nats.url();
    TestDaemon::start_with(|c| {
        let mut cluster = ClusterConfig::new(url);
        cluster.node_name = Some(name.to_string());
        cluster.heartbeat = Duration::from_millis(100);
        c.cluster = Some(cluster);
    })
    .await
}

async fn call(d: &TestDaemon, forwarded: bool) -> Duration {
    let body = json!({"op": "echo"}).to_string();
    let t = Instant::now();
    let r = d
        .http
        .post(d.url("/echo"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers().contains_key("x-weft-forwarded"), forwarded);
    r.bytes().await.expect("body");
    t.elapsed()
}

fn quantile(v: &mut [Duration], q: f64) -> f64 {
    v.sort();
    v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(2000, |s| s.parse().expect("REQUESTS"));
    let nats = NatsServer::start();
    let (a, b) = (node(&nats, "a").await, node(&nats, "b").await);
    b.deploy("probe", "probe.wasm").await;
    let spec = "name = \"echo\"\n[[steps]]\nstage = \"probe\"\n[[triggers]]\nroute = \"/echo\"\n";
    assert_eq!(b.apply("echo", spec).await.0, 201);
    // Wait for a to have the pipeline, then drain it.
    let until = Instant::now() + Duration::from_secs(10);
    while a.get_json("/v1/pipelines/echo").await["name"] != "echo" {
        assert!(Instant::now() < until, "replication");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, _, _) = a.post("/v1/cluster/nodes/a/drain", &json!({})).await;
    assert_eq!(s, 200);
    for _ in 0..200 {
        call(&b, false).await;
        call(&a, true).await;
    }
    let (mut direct, mut forwarded) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n / 100 {
        for _ in 0..100 {
            direct.push(call(&b, false).await);
        }
        for _ in 0..100 {
            forwarded.push(call(&a, true).await);
        }
    }
    let (d50, d99) = (quantile(&mut direct, 0.5), quantile(&mut direct, 0.99));
    let (f50, f99) = (
        quantile(&mut forwarded, 0.5),
        quantile(&mut forwarded, 0.99),
    );
    println!("requests per series: {}", direct.len());
    println!("direct to b:        p50 {d50:8.0} µs   p99 {d99:8.0} µs");
    println!("via draining a:     p50 {f50:8.0} µs   p99 {f99:8.0} µs");
    println!(
        "forwarding adds:    p50 {:8.0} µs ({:.2}x)   (target: <= 1000 µs p50)",
        f50 - d50,
        f50 / d50
    );
}
