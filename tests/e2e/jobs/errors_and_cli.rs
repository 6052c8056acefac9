//! Bad datasets and job specs, and the dataset and job CLI.

use super::*;

#[tokio::test]
async fn bad_datasets_and_job_specs_are_explained() {
    let d = probe_daemon().await;
    // Datasets.
    let (s, e) = dataset(&d, "name=bad&format=jsonl", "{}\n{\"a\":\nnext\n".into()).await;
    assert_eq!(s, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2: not JSON"),
        "{e}"
    );
    assert_eq!(
        d.get_json("/v1/datasets").await["datasets"],
        json!([]),
        "nothing registered"
    );
    // No rows (a job over it "succeeded" over 0 of 0 rows).
    for (query, body) in [
        ("name=e&format=jsonl", ""),
        ("name=e&format=lines", "\n\n"),
        ("name=e&format=csv", "op,n\n"),
    ] {
        let (s, e) = dataset(&d, query, body.into()).await;
        assert_eq!(
            (s, e["error"]["code"].as_str()),
            (400, Some("empty_dataset")),
            "{query}: {e}"
        );
    }
    let (s, e) = dataset(&d, "name=nofmt", "x\n".into()).await;
    assert_eq!(s, 400);
    assert!(
        e["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("format=jsonl"),
        "{e}"
    );
    let (s, _) = dataset(&d, "name=Bad Name&format=lines", "x\n".into()).await;
    assert_eq!(s, 400);
    let (s, e) = dataset(&d, "format=lines", "x\n".into()).await;
    assert_eq!(s, 400, "{e}");
    for rows in ["0", "100001"] {
        let (s, e) = dataset(
            &d,
            &format!("name=t&format=lines&block_rows={rows}"),
            "x\n".into(),
        )
        .await;
        assert_eq!(s, 400, "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("block_rows"),
            "{e}"
        );
    }
    let (s, e) = dataset(&d, "name=t&format=parquet", "x\n".into()).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (s, csv) = dataset(&d, "name=t&format=csv", "op,n\necho,1\necho,\"2\"\n".into()).await;
    assert_eq!((s, csv["rows"].as_u64()), (201, Some(2)), "{csv}");
    let (s, e) = dataset(&d, "name=t&format=lines", "x\n".into()).await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("already_exists"))
    );
    let (s, e) = dataset(
        &d,
        "name=o&format=objects",
        format!("{}\n", "ab".repeat(32)),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not stored"),
        "{e}"
    );
    let r = d
        .http
        .get(d.url("/v1/datasets/missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Jobs.
    let cases = [
        (
            json!({"kind": "batch", "pipeline": "nope", "dataset": "t"}),
            "no pipeline named `nope`",
        ),
        (
            json!({"kind": "batch", "pipeline": "p", "dataset": "nope"}),
            "no dataset named `nope`",
        ),
        (
            json!({"kind": "batch", "pipeline": "p"}),
            "missing field `dataset`",
        ),
        (
            json!({"kind": "train", "pipeline": "p"}),
            "unknown variant `train`",
        ),
        (
            json!({"kind": "batch", "pipeline": "p", "dataset": "t", "output": {"dir": "relative"}}),
            "`output.dir`",
        ),
        (
            json!({"kind": "batch", "pipeline": "p", "dataset": "t", "output": {"dir": "/proc/weft-no"}}),
            "cannot write",
        ),
        (
            json!({"kind": "invoke", "pipeline": "p", "input_base64": "%%"}),
            "not valid base64",
        ),
    ];
    for (spec, message) in cases {
        let (s, e, _) = submit(&d, &spec).await;
        assert_eq!(s, 400, "{spec}: {e}");
        assert!(
            e["error"]["message"].as_str().unwrap().contains(message),
            "{spec}: {e}"
        );
        assert!(e["error"]["hint"].is_string(), "{e}");
    }
    assert_eq!(
        d.get_json("/v1/jobs").await["jobs"],
        json!([]),
        "nothing submitted"
    );
    for path in [
        "/v1/jobs/42",
        "/v1/jobs/x",
        "/v1/jobs/42/events",
        "/v1/jobs/42/output",
    ] {
        let r = d.http.get(d.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "job_not_found"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_uploads_datasets_and_follows_jobs() {
    let d = probe_daemon().await;
    let dir = d.dir.path();
    // Two files, the first without a final newline: rows must not merge.
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    std::fs::write(&a, rows(60, |i| json!({"op": "echo", "n": i})).trim_end()).unwrap();
    std::fs::write(&b, rows(40, |i| json!({"op": "echo", "n": 60 + i}))).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    d.cli(&["dataset", "create", "two", a, b, "--block-rows", "16"])
        .await
        .unwrap();
    let ds = d.get_json("/v1/datasets/two").await;
    assert_eq!(
        (ds["rows"].as_u64(), ds["blocks"].as_u64()),
        (Some(100), Some(7)),
        "{ds}"
    );

    // `weft job submit --pipeline p` and `rest`.
    let submit_p = |rest: &[&'static str]| {
        let mut args = vec!["job", "submit", "--pipeline", "p"];
        args.extend_from_slice(rest);
        args
    };
    d.cli(&submit_p(&["--dataset", "two", "--watch"]))
        .await
        .unwrap();
    let out = dir.join("out.jsonl");
    d.cli(&["job", "output", "1", "-o", out.to_str().unwrap()])
        .await
        .unwrap();
    let ns: Vec<u64> = lines(&std::fs::read_to_string(&out).unwrap())
        .iter()
        .map(|v| v["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..100).collect::<Vec<_>>());
    d.cli(&["job", "list"]).await.unwrap();
    d.cli(&["dataset", "list"]).await.unwrap();
    // The spec's other settings have flags too.
    d.cli(&submit_p(&["--dataset", "two", "--distribute", "false"]))
        .await
        .unwrap();
    let newest = &d.get_json("/v1/jobs").await["jobs"][0];
    assert_eq!(newest["spec"]["distribute"], false, "{newest}");
    let err = d
        .cli(&submit_p(&["--input", "{}", "--timeout-s", "0"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("timeout_s"), "{err}");

    // An async invocation, followed to its end.
    d.cli(&submit_p(&["--input", r#"{"op":"echo"}"#, "--watch"]))
        .await
        .unwrap();
    // A job that fails makes `--watch` fail, with the reason.
    let poison = dir.join("poison.jsonl");
    std::fs::write(&poison, "{\"op\":\"fatal\"}\n").unwrap();
    d.cli(&["dataset", "create", "poison", poison.to_str().unwrap()])
        .await
        .unwrap();
    let err = d
        .cli(&submit_p(&["--dataset", "poison", "--watch"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("failed") && err.contains("1 of 1 rows failed"),
        "{err}"
    );
    // Mistakes are explained.
    let err = d
        .cli(&["job", "submit", "--pipeline", "p", "--dataset", "nope"])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no dataset named `nope`") && err.contains("hint:"),
        "{err}"
    );
    let bin = dir.join("data.bin");
    std::fs::write(&bin, b"x").unwrap();
    let err = d
        .cli(&["dataset", "create", "x", bin.to_str().unwrap()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--format"), "{err}");
    let err = d
        .cli(&["job", "submit", "--pipeline", "p"])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--dataset"), "{err}");
}
