#!/usr/bin/env python3
"""The baseline side of benches/nn.sh (onnxruntime, llama.cpp, numpy), and
the inputs both sides read.

  prep CORPUS.txt TOKENIZER.json SMOLLM2.gguf OUT_DIR
      writes OUT_DIR/minilm_ids.json ({"ids": [[...], ...]}, unpadded) and
      OUT_DIR/prompt.json ({"prompt_ids": [...]}, a chat-formatted prompt)
  prep-ids CORPUS.txt TOKENIZER.json OUT_DIR
      writes OUT_DIR/minilm_ids.json alone
  prompt SMOLLM2-TOKENIZER.json OUT_DIR
      writes OUT_DIR/prompt.json alone, without llama.cpp
  ort MODEL.onnx IDS.json THREADS BATCH...
  torch MINILM_DIR IDS.json BATCH...
      MiniLM through PyTorch on CUDA (config.json + model.safetensors)
  llama MODEL.gguf PROMPT.json TOKENS
  numpy N

Every measurement is one JSON object on stdout, in the shape the weft side
(host/nn/examples/nn_bench.rs) prints.
"""
import json
import sys
import time

PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n<|im_start|>user\nWrite a short poem about a river "
    "that runs through a quiet town at night.<|im_end|>\n<|im_start|>assistant\n"
)


def prep_ids(corpus, tokenizer, out):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer)
    tok.no_padding()
    tok.no_truncation()
    lines = [l for l in open(corpus, encoding="utf-8").read().split("\n") if l]
    ids = [e.ids[:512] for e in tok.encode_batch(lines)]
    json.dump({"ids": ids}, open(f"{out}/minilm_ids.json", "w"))
    return ids


def prep(corpus, tokenizer, gguf, out):
    ids = prep_ids(corpus, tokenizer, out)
    from llama_cpp import Llama

    vocab = Llama(model_path=gguf, vocab_only=True, verbose=False)
    prompt = vocab.tokenize(PROMPT.encode(), add_bos=False, special=True)
    json.dump({"prompt_ids": prompt}, open(f"{out}/prompt.json", "w"))
    lens = [len(i) for i in ids]
    print(
        f"{len(ids)} sentences, {min(lens)}-{max(lens)} tokens (mean {sum(lens) / len(lens):.1f}); "
        f"prompt {len(prompt)} tokens",
        file=sys.stderr,
    )


def pad(rows):
    import numpy as np

    n = max(len(r) for r in rows)
    ids = np.zeros((len(rows), n), dtype=np.int64)
    mask = np.zeros((len(rows), n), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def ort(model, ids_path, threads, batches):
    import onnxruntime as rt

    opts = rt.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = rt.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    rows = json.load(open(ids_path))["ids"]
    for b in batches:
        feeds = [pad(rows[i : i + b]) for i in range(0, len(rows), b)]
        sess.run(None, feeds[0])
        t = time.perf_counter()
        for f in feeds:
            sess.run(None, f)
        secs = time.perf_counter() - t
        print(json.dumps({"bench": "minilm", "batch": b, "threads": threads,
                          "sentences_per_s": round(len(rows) / secs, 2)}))


def torch_bert(model_dir, ids_path, batches):
    """MiniLM through PyTorch's BertModel on CUDA: the GPU baseline.

    Inputs start on the host and the last hidden state comes back to it
    (what weft-nn's call does), fp32, default attention.
    """
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    cfg = BertConfig.from_json_file(f"{model_dir}/config.json")
    model = BertModel(cfg, add_pooling_layer=False)
    weights = {k.removeprefix("bert."): v for k, v in load_file(f"{model_dir}/model.safetensors").items()}
    missing, _ = model.load_state_dict(weights, strict=False)
    # (Older transformers keep position_ids as a buffer the file lacks.)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        sys.exit(f"BertModel weights missing from the safetensors: {missing}")
    model = model.cuda().eval()
    rows = json.load(open(ids_path))["ids"]
    with torch.inference_mode():
        for b in batches:
            feeds = [pad(rows[i : i + b]) for i in range(0, len(rows), b)]

            def run(f):
                inputs = {k: torch.from_numpy(v).cuda() for k, v in f.items()}
                return model(**inputs).last_hidden_state.cpu()

            run(feeds[0])
            torch.cuda.synchronize()
            t = time.perf_counter()
            for f in feeds:
                run(f)
            secs = time.perf_counter() - t
            print(json.dumps({"bench": "minilm", "engine": "torch-cuda", "batch": b,
                              "device": torch.cuda.get_device_name(),
                              "sentences_per_s": round(len(rows) / secs, 2)}))


def prompt_ids(tokenizer, out):
    """The bench prompt's ids without llama.cpp: a byte-level BPE built from
    the GGUF's vocabulary and merges (`cargo xtask models` writes them to
    smollm2-tokenizer.json), with the chat markers as special tokens."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    gguf = json.load(open(tokenizer))
    vocab = {t: i for i, t in enumerate(gguf["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in gguf["merges"]]
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.add_special_tokens([AddedToken(t, special=True) for t in ("<|im_start|>", "<|im_end|>")])
    ids = tok.encode(PROMPT, add_special_tokens=False).ids
    json.dump({"prompt_ids": ids}, open(f"{out}/prompt.json", "w"))


def llama(model, prompt_path, tokens):
    import numpy as np
    from llama_cpp import Llama

    prompt = json.load(open(prompt_path))["prompt_ids"]
    llm = Llama(model_path=model, n_threads=2, n_threads_batch=2, n_ctx=512, verbose=False)

    vocab = llm.n_vocab()

    def last():
        # Without logits_all, eval() keeps no scores: read the context's
        # logits of the last token directly.
        return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))))

    llm.eval(prompt)  # warm-up
    llm.reset()
    t = time.perf_counter()
    llm.eval(prompt)
    nxt = last()
    prompt_ms = (time.perf_counter() - t) * 1e3
    generated = [nxt]
    t = time.perf_counter()
    for _ in range(tokens):
        llm.eval([nxt])
        nxt = last()
        generated.append(nxt)
    secs = time.perf_counter() - t
    print(json.dumps({"bench": "llama", "prompt_tokens": len(prompt), "prompt_ms": round(prompt_ms, 2),
                      "tokens_per_s": round(tokens / secs, 2), "generated": generated}))


def numpy_matmul(n):
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    a @ b
    reps = 5
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    secs = time.perf_counter() - t
    print(json.dumps({"bench": "matmul", "n": n, "numpy_gflops": round(2 * n**3 * reps / secs / 1e9, 2)}))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "prep":
        prep(*args)
    elif cmd == "prep-ids":
        prep_ids(*args)
    elif cmd == "ort":
        ort(args[0], args[1], int(args[2]), [int(b) for b in args[3:]])
    elif cmd == "torch":
        torch_bert(args[0], args[1], [int(b) for b in args[2:]])
    elif cmd == "prompt":
        prompt_ids(args[0], args[1])
    elif cmd == "llama":
        llama(args[0], args[1], int(args[2]))
    elif cmd == "numpy":
        numpy_matmul(int(args[0]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
