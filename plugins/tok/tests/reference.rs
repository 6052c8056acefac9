//! Checks both tokenizers against every id list in the reference files, made by
//! `scripts/reference.py` into `host/nn/tests/data/`: HF `tokenizers` output for
//! all-MiniLM-L6-v2 and llama.cpp output for SmolLM2-135M-Instruct and the tiny
//! models of each family, read with the vocabularies that `cargo xtask models`
//! puts in `target/models/`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tok::{Bpe, WordPiece};

const MODELS: &str = "run `cargo xtask models` to fetch the models and their tokenizers";

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str, hint: &str) -> Vec<u8> {
    let path = root().join(relative);
    fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}; {hint}", path.display()))
}

fn reference<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let bytes = read(
        &format!("host/nn/tests/data/{name}"),
        "it is written by scripts/reference.py",
    );
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `minilm_reference.json`, the parts about tokens.
#[derive(Deserialize)]
struct MiniLm {
    sentences: Vec<Sentence>,
    wordpiece_checks: Vec<Check>,
}

#[derive(Deserialize)]
struct Sentence {
    text: String,
    input_ids: Vec<u32>,
    attention_mask: Vec<u32>,
    token_type_ids: Vec<u32>,
}

/// A text and its ids.
#[derive(Deserialize)]
struct Check {
    text: String,
    ids: Vec<u32>,
}

/// `smollm2_reference.json`, the parts about tokens.
#[derive(Deserialize)]
struct SmolLm2 {
    bos_id: u32,
    eos_id: u32,
    add_bos: bool,
    prompts: Vec<Prompt>,
    tokenizer_checks: Vec<Check>,
}

#[derive(Deserialize)]
struct Prompt {
    prompt: String,
    bos_added: bool,
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    stopped: String,
    text: String,
}

/// Fails listing every mismatch at once.
fn report(name: &str, total: usize, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{name}: {} of {total} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn mismatch(text: &str, expected: &[u32], got: &[u32]) -> Option<String> {
    (expected != got).then(|| format!("{text:?}\n  expected {expected:?}\n  got      {got:?}"))
}

fn minilm() -> WordPiece {
    WordPiece::from_bytes(&read("target/models/minilm/vocab.txt", MODELS)).expect("vocab.txt")
}

fn smollm2() -> Bpe {
    Bpe::from_json(&read("target/models/smollm2-tokenizer.json", MODELS))
        .expect("smollm2-tokenizer.json")
}

#[test]
fn wordpiece_matches_hf_tokenizers() {
    let wp = minilm();
    let reference: MiniLm = reference("minilm_reference.json");
    // The references were made without truncation; none reaches 128 tokens.
    let encode = |text: &str| wp.encode(text, tok::DEFAULT_MAX_LEN);
    let mut failures = Vec::new();
    for s in &reference.sentences {
        let enc = encode(&s.text);
        failures.extend(mismatch(&s.text, &s.input_ids, &enc.ids));
        assert_eq!(enc.attention_mask, s.attention_mask, "{:?}", s.text);
        assert_eq!(enc.type_ids, s.token_type_ids, "{:?}", s.text);
    }
    for c in &reference.wordpiece_checks {
        failures.extend(mismatch(&c.text, &c.ids, &encode(&c.text).ids));
    }
    let total = reference.sentences.len() + reference.wordpiece_checks.len();
    report("minilm_reference.json", total, failures);
}

#[test]
fn bpe_matches_llama_cpp() {
    let bpe = smollm2();
    let reference: SmolLm2 = reference("smollm2_reference.json");
    assert_eq!(bpe.bos_id(), Some(reference.bos_id));
    assert_eq!(bpe.eos_id(), Some(reference.eos_id));
    assert_eq!(
        bpe.add_bos(),
        reference.add_bos,
        "llama.cpp adds BOS for this model"
    );
    let mut failures = Vec::new();
    for c in &reference.tokenizer_checks {
        failures.extend(mismatch(&c.text, &c.ids, &bpe.encode(&c.text)));
    }
    for p in &reference.prompts {
        let mut ids = Vec::new();
        if p.bos_added {
            ids.push(reference.bos_id);
        }
        ids.extend(bpe.encode(&p.prompt));
        failures.extend(mismatch(&p.prompt, &p.prompt_ids, &ids));
    }
    let total = reference.tokenizer_checks.len() + reference.prompts.len();
    report("smollm2_reference.json", total, failures);
}

#[test]
fn bpe_decodes_llama_cpp_ids() {
    let bpe = smollm2();
    let reference: SmolLm2 = reference("smollm2_reference.json");
    for c in &reference.tokenizer_checks {
        assert_eq!(bpe.decode(&c.ids), c.text);
    }
    for p in &reference.prompts {
        // The end-of-generation token ends the ids but is not part of the text.
        let mut ids = p.generated_ids.as_slice();
        if p.stopped == "eog" {
            ids = &ids[..ids.len() - 1];
        }
        assert_eq!(bpe.decode(ids), p.text);
        let mut decoder = bpe.stream_decoder();
        let streamed: String = ids.iter().map(|&id| decoder.push(id)).collect();
        assert_eq!(streamed + &decoder.finish(), p.text, "streamed");
    }
}

/// `tiny_archs_reference.json`, the parts about tokens: each tiny model
/// carries SmolLM2's vocabulary under its family's pre-tokenizer name, or
/// (`tinyllama`) a SentencePiece one derived from it.
#[derive(Deserialize)]
struct TinyArchs {
    prompt: String,
    models: Vec<TinyModel>,
}

#[derive(Deserialize)]
struct TinyModel {
    name: String,
    tokenizer_model: String,
    pre: Option<String>,
    add_bos: bool,
    prompt_ids: Vec<u32>,
    tokenizer_checks: Vec<Check>,
    chat: TinyChat,
}

/// The greedy reply to a chat prompt.
#[derive(Deserialize)]
struct TinyChat {
    prompt_text: String,
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    /// The text of the first k generated ids, k = 1, 2, ...
    texts: Vec<String>,
}

/// `bpe` against a tiny model's llama.cpp ids: its BOS default, then every
/// check and the `prompt` (the mismatches).
fn checks(bpe: &Bpe, model: &TinyModel, prompt: &str) -> Vec<String> {
    assert_eq!(bpe.add_bos(), model.add_bos, "{}", model.name);
    let mut failures = Vec::new();
    for c in &model.tokenizer_checks {
        failures.extend(mismatch(&c.text, &c.ids, &bpe.encode(&c.text)));
    }
    failures.extend(mismatch(prompt, &model.prompt_ids, &bpe.encode(prompt)));
    failures
}

/// The Llama 3 (`llama-bpe`), Qwen2 (`qwen2`), DBRX (`dbrx`), GPT-4o
/// (`gpt-4o`), Tekken (`tekken`), EXAONE 3 and 4 (`exaone`, `exaone4`,
/// which llama.cpp splits as StarCoder's and GPT-2's), GLM-4 (`glm4`, as
/// DBRX's), OLMo (`olmo`, as GPT-2's), Command R (`command-r`, as
/// StarCoder's), LFM2 (`lfm2`, as Llama 3's), DeepSeek's (`deepseek-llm`,
/// `deepseek-coder`, `deepseek-v3`), Falcon's (`falcon`) and llama.cpp's
/// `default` (a file without a name) pre-tokenizers, and Llama 3's
/// whole-piece lookup and BOS, split and merge as llama.cpp does.
#[test]
fn pre_tokenizers_match_llama_cpp() {
    let reference: TinyArchs = reference("tiny_archs_reference.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&read("target/models/smollm2-tokenizer.json", MODELS)).unwrap();
    let spec = spec.as_object_mut().unwrap();
    let mut pres = Vec::new();
    for model in &reference.models {
        let Some(pre) = &model.pre else {
            continue;
        };
        spec.insert("pre".into(), pre.clone().into());
        let bpe = Bpe::from_json(&serde_json::to_vec(&spec).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", model.name));
        let failures = checks(&bpe, model, &reference.prompt);
        report(&model.name, model.tokenizer_checks.len() + 1, failures);
        pres.push(pre.as_str());
    }
    for pre in [
        "llama-bpe",
        "qwen2",
        "dbrx",
        "gpt-4o",
        "tekken",
        "default",
        "exaone",
        "exaone4",
        "glm4",
        "olmo",
        "command-r",
        "lfm2",
        "deepseek-llm",
        "deepseek-coder",
        "deepseek-v3",
        "falcon",
    ] {
        assert!(pres.contains(&pre), "{pre} checked");
    }
}

/// SentencePiece vocabularies (`tokenizer.ggml.model` = `llama`, as Llama 2,
/// Mistral, TinyLlama, Phi-3 and Gemma carry), as the host extracts them from
/// the GGUF: llama.cpp's ids for every check (the space it adds after BOS and
/// special tokens, byte fallback, `[INST]` and Zephyr prompts) and for the
/// chat prompt (a BOS only where the file adds one: not Phi-3's), and its
/// text for the generated ids, whole and streamed (the first token's added
/// space dropped).
#[test]
fn sentencepiece_matches_llama_cpp() {
    let reference: TinyArchs = reference("tiny_archs_reference.json");
    let mut checked = 0;
    for model in reference
        .models
        .iter()
        .filter(|m| m.tokenizer_model == "llama")
    {
        let bpe = Bpe::from_json(&read(
            &format!("target/models/tiny-{}.tokenizer.json", model.name),
            MODELS,
        ))
        .unwrap();
        let mut failures = checks(&bpe, model, &reference.prompt);
        let chat = &model.chat;
        let bos = bpe.bos_id().filter(|_| bpe.add_bos());
        let ids: Vec<u32> = bos
            .into_iter()
            .chain(bpe.encode(&chat.prompt_text))
            .collect();
        failures.extend(mismatch(&chat.prompt_text, &chat.prompt_ids, &ids));
        report(&model.name, model.tokenizer_checks.len() + 2, failures);
        for (k, want) in chat.texts.iter().enumerate() {
            let ids = &chat.generated_ids[..=k];
            assert_eq!(&bpe.decode(ids), want, "{}", model.name);
            let mut decoder = bpe.stream_decoder();
            let streamed: String = ids.iter().map(|&id| decoder.push(id)).collect();
            assert_eq!(
                &(streamed + &decoder.finish()),
                want,
                "{} streamed",
                model.name
            );
        }
        assert!(!chat.texts.is_empty());
        checked += 1;
    }
    assert_eq!(
        checked, 8,
        "tinyllama, phi3, phi3long, gemma, gemma2, gemma3, mixtral and mistralv3"
    );
}
