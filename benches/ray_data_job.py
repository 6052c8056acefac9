"""The Ray Data side of benches/compare_ray_data.sh.

Usage: python ray_data_job.py INPUT.txt OUT_DIR [--num-cpus 2] [--batch-size 256]

Reads INPUT.txt with ray.data.read_text, runs every line through the same
normalisation as weft's `normalize` stage (plugins/normalize/src/lib.rs) in
map_batches, and writes {"text": normalised} rows with write_json to OUT_DIR.
The stage does, in order: NFKC, str::to_lowercase, then every run of Unicode
whitespace becomes one space and the ends are trimmed; here that is
unicodedata.normalize("NFKC", s).lower() and " ".join(s.split()). Like the
stage, the output keeps only the text (the stage counts no words).

Prints one JSON line on stdout:
  rows             rows written
  import_s         `import ray` + `import ray.data`
  init_s           ray.init (starting the local cluster)
  run_s            read_text -> map_batches -> write_json, the work itself
  total_s          from the first line of this script to the end of the
                   write (start-up included; ray.shutdown not included)
  peak_rss_mib     the largest sum, over the samples, of VmRSS of this
                   driver and every process below it (gcs_server, raylet,
                   workers, agents; all are descendants of the driver
                   when ray.init starts a local cluster). A sampler process
                   walks /proc every 0.2 s. The sum counts memory shared
                   between processes (the object store's shared memory,
                   shared libraries) once per process, so it overstates.
  peak_pss_mib     the same with Pss from /proc/PID/smaps_rollup, which
                   splits shared pages between the processes mapping them,
                   so shared memory is counted once. The fairer figure.
  processes        the most processes seen in one sample.
"""
import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import unicodedata  # noqa: E402


def normalize(text: str) -> str:
    """What plugins/normalize does with lowercase=true."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def normalize_batch(batch):
    return {"text": [normalize(s) for s in batch["text"]]}


# --- peak memory of a process tree -------------------------------------------

def _children() -> dict:
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces.
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _tree(root: int, skip: int) -> list:
    kids = _children()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid == skip:
            continue
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _kib(path: str, field: bytes) -> int:
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def sample_tree(root: int, out_path: str, interval: float = 0.2) -> None:
    """Samples the tree under `root` (without this process) until `root`
    exits or SIGTERM, then writes the peaks to `out_path` as JSON."""
    import signal

    me = os.getpid()
    peak = {"rss_kib": 0, "pss_kib": 0, "processes": 0, "samples": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop and os.path.exists(f"/proc/{root}"):
        pids = _tree(root, me)
        rss = sum(_kib(f"/proc/{p}/status", b"VmRSS:") for p in pids)
        pss = sum(_kib(f"/proc/{p}/smaps_rollup", b"Pss:") for p in pids)
        peak["rss_kib"] = max(peak["rss_kib"], rss)
        peak["pss_kib"] = max(peak["pss_kib"], pss)
        peak["processes"] = max(peak["processes"], len(pids))
        peak["samples"] += 1
        with open(out_path + ".tmp", "w") as f:
            json.dump(peak, f)
        os.replace(out_path + ".tmp", out_path)
        time.sleep(interval)


# --- the job -----------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("out_dir")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--dashboard", action="store_true",
                    help="start Ray's dashboard too (off: less memory and start-up for Ray)")
    args = ap.parse_args()

    peak_file = os.path.join(os.path.dirname(os.path.abspath(args.out_dir)),
                             f".ray-peak-{os.getpid()}.json")
    sampler = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--sample-tree", str(os.getpid()), peak_file])

    t = time.perf_counter()
    import ray
    import ray.data
    t_imported = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=args.dashboard,
             log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    t_ready = time.perf_counter()

    (ray.data.read_text(args.input)
        .map_batches(normalize_batch, batch_size=args.batch_size)
        .write_json(args.out_dir))
    t_done = time.perf_counter()

    rows = 0
    for name in os.listdir(args.out_dir):
        with open(os.path.join(args.out_dir, name), "rb") as f:
            rows += sum(1 for _ in f)

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
    if len(sys.argv) == 4 and sys.argv[1] == "--sample-tree":
        sample_tree(int(sys.argv[2]), sys.argv[3])
    else:
        main()
