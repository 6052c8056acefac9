"""The Ray Data side of benches/compare_ray_data_embed.sh.

Usage: python ray_data_embed_job.py INPUT.txt OUT_DIR MODEL.onnx TOKENIZER.json
           [--num-cpus 2] [--batch-size 32] [--actors 2] [--actor-cpus 0.5]
           [--num-blocks 8] [--max-tokens 128]

Reads INPUT.txt with ray.data.read_text and runs every line, in
map_batches(batch_size=32) on a pool of --actors actors, through what weft's
`normalize` -> `embed` pipeline does:
  normalize  NFKC, lowercase, runs of whitespace to one space, ends trimmed
             (the same one-liner as benches/ray_data_job.py);
  embed      BERT uncased WordPiece with HF `tokenizers` (the model's
             tokenizer.json, truncated to --max-tokens, padded to the longest
             text of the batch), all-MiniLM-L6-v2 through onnxruntime (CPU,
             intra_op_num_threads=1, one session per actor, made once in the
             actor's constructor), mean of `last_hidden_state` under the
             attention mask, L2-normalised.
Writes {"text": normalised, "embedding": [f32; 384], "tokens": n} rows with
write_parquet to OUT_DIR (the text is kept so that the check can match Ray's
rows, which come in no particular order, to weft's, which are in input order).

--actor-cpus defaults to 0.5: with ray.init(num_cpus=2), two actors of 1 CPU
take every logical CPU and the read task never gets one (Ray Data starts the
actor pool first; ray-project/ray#44687), so the job hangs. The actors still
get the two real cores: onnxruntime runs one thread in each.
--num-blocks splits the read into that many blocks (read_text of one file is
one read task; with one block only one actor would get work).

Prints one JSON line on stdout, the fields of benches/ray_data_job.py (rows,
import_s, init_s, run_s, total_s, peak_rss_mib, peak_pss_mib, processes,
rss_samples); the peak memory comes from its process-tree sampler.
"""
import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def normalize(text: str) -> str:
    """What plugins/normalize does with lowercase=true (as in ray_data_job.py;
    defined here so that Ray ships it to the actors with the class)."""
    import unicodedata

    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


class Embedder:
    """One onnxruntime session and one tokenizer per actor."""

    def __init__(self, model: str, tokenizer: str, max_tokens: int):
        import onnxruntime as rt
        from tokenizers import Tokenizer

        opts = rt.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.sess = rt.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.tok = Tokenizer.from_file(tokenizer)
        self.tok.enable_truncation(max_length=max_tokens)
        # tokenizer.json pads to a fixed 128; pad to the batch's longest instead.
        self.tok.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")

    def __call__(self, batch):
        import numpy as np

        texts = [normalize(s) for s in batch["text"]]
        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        (hidden,) = self.sess.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        m = mask[:, :, None].astype(np.float32)
        emb = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return {"text": texts, "embedding": emb.astype(np.float32), "tokens": mask.sum(axis=1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("out_dir")
    ap.add_argument("model")
    ap.add_argument("tokenizer")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--actor-cpus", type=float, default=0.5)
    ap.add_argument("--num-blocks", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--dashboard", action="store_true",
                    help="start Ray's dashboard too (off: less memory and start-up for Ray)")
    args = ap.parse_args()

    peak_file = os.path.join(os.path.dirname(os.path.abspath(args.out_dir)),
                             f".ray-peak-{os.getpid()}.json")
    sampler = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "ray_data_job.py"), "--sample-tree", str(os.getpid()), peak_file])

    t = time.perf_counter()
    import ray
    import ray.data
    t_imported = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=args.dashboard,
             log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    t_ready = time.perf_counter()

    (ray.data.read_text(os.path.abspath(args.input), override_num_blocks=args.num_blocks)
        .map_batches(Embedder,
                     fn_constructor_args=(os.path.abspath(args.model), os.path.abspath(args.tokenizer),
                                          args.max_tokens),
                     batch_size=args.batch_size,
                     concurrency=args.actors,
                     num_cpus=args.actor_cpus)
        .write_parquet(args.out_dir))
    t_done = time.perf_counter()

    import pyarrow.parquet as pq
    rows = sum(pq.ParquetFile(os.path.join(args.out_dir, n)).metadata.num_rows
               for n in os.listdir(args.out_dir) if n.endswith(".parquet"))

    sampler.terminate()
    sampler.wait()
    try:
        with open(peak_file) as f:
            peak = json.load(f)
        os.unlink(peak_file)
    except OSError:
        peak = {"rss_kib": 0, "pss_kib": 0, "processes": 0, "samples": 0}
    print(json.dumps({
        "rows": rows,
        "import_s": round(t_imported - t, 3),
        "init_s": round(t_ready - t_imported, 3),
        "run_s": round(t_done - t_ready, 3),
        "total_s": round(t_done - T_START, 3),
        "peak_rss_mib": round(peak["rss_kib"] / 1024, 1),
        "peak_pss_mib": round(peak["pss_kib"] / 1024, 1),
        "processes": peak["processes"],
        "rss_samples": peak["samples"],
    }), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
