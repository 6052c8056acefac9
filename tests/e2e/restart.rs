//! Everything a user uploaded survives a restart; nothing is re-uploaded.

use serde_json::json;
use weft_e2e::TestDaemon;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_state_and_objects_survive_a_restart() {
    let mut d = TestDaemon::start().await;
    d.deploy("count", "count.wasm").await;
    d.deploy("normalize", "normalize.wasm").await;
    let (_, first) = d.invoke("count", &json!({"text": "one two"})).await;
    assert_eq!(first["total_words"], 2);
    let r = d
        .http
        .put(d.url("/v1/objects"))
        .body("kept")
        .send()
        .await
        .unwrap();
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    d.restart().await;

    let (status, body) = d.invoke("normalize", &json!({"text": "Back  AGAIN"})).await;
    assert_eq!((status, body), (200, json!({"text": "back again"})));
    let (_, second) = d.invoke("count", &json!({"text": "three"})).await;
    assert_eq!(second["total_words"], 3, "state survived the restart");
    let kept = d
        .http
        .get(d.url(&format!("/v1/objects/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(kept.text().await.unwrap(), "kept");
    let metrics = d.get_text("/metrics").await;
    assert!(
        metrics.contains("weft_component_compiles_total 0\n"),
        "a restart must load compiled code from the cache, not recompile:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_deploys_and_invokes_against_a_live_daemon() {
    use clap::Parser;
    let d = TestDaemon::start().await;
    let wasm = weft_e2e::wasm_dir().join("normalize.wasm");
    let cli = weft::cli::Cli::parse_from([
        "weft",
        "--server",
        &d.url,
        "stage",
        "deploy",
        "norm",
        wasm.to_str().unwrap(),
        "--config",
        "lowercase=false",
    ]);
    weft::cli::run(cli).await.expect("deploy via CLI");
    let show: serde_json::Value = d.get_json("/v1/stages/norm").await;
    assert_eq!(show["latest"]["config"]["lowercase"], "false");
    let cli = weft::cli::Cli::parse_from([
        "weft",
        "--server",
        &d.url,
        "invoke",
        "norm",
        "--data",
        r#"{"text":"A  B"}"#,
    ]);
    weft::cli::run(cli).await.expect("invoke via CLI");
    let cli =
        weft::cli::Cli::parse_from(["weft", "--server", &d.url, "invoke", "nope", "--data", "{}"]);
    let err = weft::cli::run(cli).await.unwrap_err().to_string();
    assert!(err.contains("404") && err.contains("hint:"), "{err}");
}

/// The CLI says why a request got no answer: no daemon there, or a body
/// over the daemon's limit (which it refuses mid-upload, and which the CLI
/// reported as "cannot reach the weft daemon … is `weft serve` running?").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_says_why_a_request_got_no_answer() {
    use clap::Parser;
    let d = TestDaemon::start_with(|c| c.max_body = 1 << 20).await;
    let big = d.dir.path().join("big.wasm");
    std::fs::write(&big, vec![0u8; 64 << 20]).unwrap();
    let run = |server: &str, args: &[&str]| {
        let mut argv = vec!["weft", "--server", server];
        argv.extend_from_slice(args);
        weft::cli::run(weft::cli::Cli::parse_from(argv))
    };
    let err = run(&d.url, &["stage", "deploy", "big", big.to_str().unwrap()])
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("--max-body-mib"), "{err}");
    assert!(!err.contains("is `weft serve` running"), "{err}");
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = run(&format!("127.0.0.1:{port}"), &["stage", "list"])
        .await
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.contains("is `weft serve` running"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_applies_inspects_and_runs_a_pipeline() {
    use clap::Parser;
    let d = TestDaemon::start().await;
    for stage in ["normalize", "chunk", "count"] {
        d.deploy(stage, &format!("{stage}.wasm")).await;
    }
    let spec =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pipelines/text.toml");
    let run = |args: &[&str]| {
        let mut argv = vec!["weft", "--server", &d.url];
        argv.extend_from_slice(args);
        weft::cli::run(weft::cli::Cli::parse_from(argv))
    };
    run(&["pipeline", "apply", spec.to_str().unwrap()])
        .await
        .expect("apply via CLI");
    run(&["pipeline", "list"]).await.expect("list via CLI");
    run(&[
        "pipeline",
        "invoke",
        "text",
        "--data",
        r#"{"text":"a b c"}"#,
    ])
    .await
    .expect("invoke via CLI");
    run(&["pipeline", "status", "text"])
        .await
        .expect("status via CLI");
    let st = d.get_json("/v1/pipelines/text").await;
    assert_eq!(
        st["steps"][2]["items"], 1,
        "the CLI's invoke went through all three steps: {st}"
    );

    let bad = d.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"text\"\n[[steps]]\nstage = \"normalize\"\nbatch = { max_size = 0 }\n",
    )
    .unwrap();
    let err = run(&["pipeline", "apply", bad.to_str().unwrap()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("400") && err.contains("steps[0].batch.max_size"),
        "{err}"
    );
    // A name is one segment of the path: `dataset delete ../pipelines/text`
    // deleted the pipeline `text`.
    let err = run(&["dataset", "delete", "../pipelines/text"])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("dataset name"), "{err}");
    let err = run(&["stage", "delete", ".."])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("`..` is not a name"), "{err}");
    assert_eq!(d.get_json("/v1/pipelines/text").await["name"], "text");
    run(&["pipeline", "delete", "text"])
        .await
        .expect("delete via CLI");
    assert_eq!(
        d.get_json("/v1/pipelines").await["pipelines"],
        serde_json::json!([])
    );
}

/// A stored pipeline that cannot start after a restart (its stage was
/// deleted) is not a 404 at its route but a 503 saying why, is listed as
/// not running, and starts again by itself once the stage is deployed
/// again: no `apply` needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_cannot_start_starts_once_what_it_misses_is_back() {
    let mut d = TestDaemon::start().await;
    d.deploy("normalize", "normalize.wasm").await;
    let spec = "name = \"n\"\n[[steps]]\nstage = \"normalize\"\n[[triggers]]\nroute = \"/n\"\n";
    assert_eq!(d.apply("n", spec).await.0, 201);
    assert_eq!(d.delete("/v1/stages/normalize").await.0, 204);
    d.restart().await;

    let post = || async {
        let r = d
            .http
            .post(d.url("/n"))
            .header("content-type", "application/json")
            .body(r#"{"text": "Back  AGAIN"}"#)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let (status, v) = post().await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "pipeline_not_running", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("normalize"),
        "{v}"
    );
    let listed = d.get_json("/v1/pipelines").await;
    assert_eq!(listed["not_running"][0]["name"], "n", "{listed}");

    d.deploy("normalize", "normalize.wasm").await;
    let mut answer = (0, serde_json::Value::Null);
    for _ in 0..100 {
        answer = post().await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer, (200, json!({"text": "back again"})));
    let listed = d.get_json("/v1/pipelines").await;
    assert_eq!(listed["not_running"], json!([]), "{listed}");
}
