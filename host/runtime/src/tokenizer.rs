//! The tokenizer a GGUF file carries, extracted at upload into the JSON
//! the `generate` stage takes (the `tok` crate's `Bpe`).

/// The tokenizer a GGUF file carries (`tokenizer.ggml.*`), as the JSON the
/// `generate` stage takes as its `tokenizer` object (the `tok` crate's
/// `Bpe`; `scripts/models.py` writes the same for SmolLM2): for byte-level
/// BPE (`tokenizer.ggml.model` = `gpt2`) and SentencePiece (`llama`: Llama 2,
/// Mistral, TinyLlama, Gemma) tokenizers, the ones it reads, checked by building
/// it as the stage will (a pre-tokenizer it does not know is named here, at
/// upload, not at deploy). An error says why there is none.
pub fn gguf_tokenizer(g: &weft_nn::GgufInfo) -> Result<Vec<u8>, String> {
    use serde_json::{Map, Value, json};
    use weft_nn::GgufValue;
    let model = g
        .get("tokenizer.ggml.model")
        .and_then(GgufValue::as_str)
        .ok_or("the file has no tokenizer (no `tokenizer.ggml.model`)")?;
    if model != "gpt2" && model != "llama" {
        return Err(format!(
            "its tokenizer is `{model}`; the generate stage reads byte-level BPE (`gpt2`) \
             and SentencePiece (`llama`) tokenizers"
        ));
    }
    let array = |key: &str| match g.get(key) {
        Some(GgufValue::Array(items)) => Ok(items.as_slice()),
        _ => Err(format!("the tokenizer has no `{key}` list")),
    };
    let strings = |key: &str| -> Result<Vec<&str>, String> {
        array(key)?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| format!("`{key}` holds a non-string"))
            })
            .collect()
    };
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let tokens = strings("tokenizer.ggml.tokens")?;
    if model == "gpt2" {
        out.insert("merges".into(), json!(strings("tokenizer.ggml.merges")?));
    } else {
        let scores = array("tokenizer.ggml.scores")?
            .iter()
            .map(|v| {
                v.as_float()
                    .ok_or("`tokenizer.ggml.scores` holds a non-number")
            })
            .collect::<Result<Vec<f64>, _>>()?;
        out.insert("scores".into(), json!(scores));
    }
    if let Ok(types) = array("tokenizer.ggml.token_type") {
        let types: Vec<i64> = types.iter().filter_map(GgufValue::as_int).collect();
        let name = g.get("general.name").and_then(GgufValue::as_str);
        let rstrip = phi3_rstrip(name.unwrap_or_default(), &tokens, &types);
        if !rstrip.is_empty() {
            out.insert("rstrip".into(), json!(rstrip));
        }
        out.insert("token_types".into(), json!(types));
    }
    out.insert("tokens".into(), json!(tokens));
    for (key, field) in [
        ("tokenizer.ggml.pre", "pre"),
        ("tokenizer.chat_template", "chat_template"),
    ] {
        if let Some(v) = g.get(key).and_then(GgufValue::as_str) {
            out.insert(field.into(), json!(v));
        }
    }
    // A byte-level file converted before llama.cpp named pre-tokenizers
    // (no name, or an empty one) runs its `default` ones there (not
    // `tok`'s own default, SmolLM's).
    let named = out
        .get("pre")
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty());
    if model == "gpt2" && !named {
        out.insert("pre".into(), json!("default"));
    }
    for (key, field) in [
        ("bos_token_id", "bos_id"),
        ("eos_token_id", "eos_id"),
        // (Where a reply ends besides EOS, as llama.cpp stops: GLM-4's
        // `<|user|>`.)
        ("eot_token_id", "eot_id"),
        ("eom_token_id", "eom_id"),
        ("unknown_token_id", "unknown_id"),
        ("padding_token_id", "padding_id"),
    ] {
        if let Some(v) = g
            .get(&format!("tokenizer.ggml.{key}"))
            .and_then(GgufValue::as_int)
        {
            out.insert(field.into(), json!(v));
        }
    }
    // (`add_space_prefix` matters to SentencePiece alone.)
    let fields: &[&str] = match model {
        "llama" => &["add_bos_token", "add_eos_token", "add_space_prefix"],
        _ => &["add_bos_token", "add_eos_token"],
    };
    for &field in fields {
        if let Some(v) = g
            .get(&format!("tokenizer.ggml.{field}"))
            .and_then(GgufValue::as_int)
        {
            out.insert(field.into(), json!(v != 0));
        }
    }
    let json = serde_json::to_vec(&Value::Object(out)).expect("JSON");
    tok::Bpe::from_json(&json).map_err(|e| format!("the generate stage cannot use it: {e}"))?;
    Ok(json)
}

/// The special tokens that swallow the whitespace after them: llama.cpp
/// (`llama-vocab.cpp`) gives Phi-3's (found by the model's `general.name`)
/// its `RSTRIP` attribute, as their HF tokenizer config does: every
/// control, user-defined or unknown token but `<unk>`, `<s>` and
/// `<|endoftext|>`, and `</s>`.
fn phi3_rstrip(name: &str, tokens: &[&str], types: &[i64]) -> Vec<usize> {
    let name = name.to_lowercase();
    if !(name.contains("phi-3") || name.contains("phi3")) {
        return Vec::new();
    }
    let special = |id: usize| matches!(types.get(id), Some(2..=4));
    (0..tokens.len())
        .filter(|&id| match tokens[id] {
            "<unk>" | "<s>" | "<|endoftext|>" => false,
            "</s>" => true,
            _ => special(id),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gguf(metadata: Vec<(&str, weft_nn::GgufValue)>) -> weft_nn::GgufInfo {
        weft_nn::GgufInfo {
            version: 3,
            architecture: Some("llama".into()),
            metadata_keys: metadata.iter().map(|(k, _)| k.to_string()).collect(),
            metadata: metadata
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            tensors: Vec::new(),
            parameters: 0,
            data_start: 0,
        }
    }

    #[test]
    fn gguf_tokenizers_are_extracted_or_refused_with_the_reason() {
        use weft_nn::GgufValue::{Array, Int, Str};
        let t5 = gguf(vec![("tokenizer.ggml.model", Str("t5".into()))]);
        let why = gguf_tokenizer(&t5).unwrap_err();
        assert!(why.contains("`t5`") && why.contains("`llama`"), "{why}");
        let no_merges = gguf(vec![("tokenizer.ggml.model", Str("gpt2".into()))]);
        let why = gguf_tokenizer(&no_merges).unwrap_err();
        assert!(why.contains("tokenizer.ggml.tokens"), "{why}");
        let bpe = gguf(vec![
            ("tokenizer.ggml.model", Str("gpt2".into())),
            (
                "tokenizer.ggml.tokens",
                Array(vec![Str("a".into()), Str("b".into())]),
            ),
            ("tokenizer.ggml.merges", Array(vec![Str("a b".into())])),
            ("tokenizer.ggml.eos_token_id", Int(1)),
            ("tokenizer.ggml.eot_token_id", Int(0)),
            ("tokenizer.ggml.add_bos_token", Int(0)),
            // SentencePiece's alone: not copied for BPE.
            ("tokenizer.ggml.add_space_prefix", Int(0)),
        ]);
        let json: serde_json::Value =
            serde_json::from_slice(&gguf_tokenizer(&bpe).unwrap()).unwrap();
        // (No `tokenizer.ggml.pre`: llama.cpp's `default`.)
        assert_eq!(
            json,
            serde_json::json!({"model": "gpt2", "tokens": ["a", "b"], "merges": ["a b"],
                               "pre": "default", "eos_id": 1, "eot_id": 0,
                               "add_bos_token": false})
        );
        let spm = |scores| {
            gguf(vec![
                ("tokenizer.ggml.model", Str("llama".into())),
                ("tokenizer.ggml.tokens", Array(vec![Str("▁a".into())])),
                ("tokenizer.ggml.scores", Array(scores)),
                ("tokenizer.ggml.add_space_prefix", Int(0)),
            ])
        };
        let json: serde_json::Value =
            serde_json::from_slice(&gguf_tokenizer(&spm(vec![Int(-1)])).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"model": "llama", "tokens": ["▁a"], "scores": [-1.0],
                               "add_space_prefix": false})
        );
        let why = gguf_tokenizer(&spm(vec![Str("x".into())])).unwrap_err();
        assert!(why.contains("scores"), "{why}");
        let why = gguf_tokenizer(&spm(vec![])).unwrap_err();
        assert!(why.contains("0 scores for 1 tokens"), "{why}");
        // Phi-3's special tokens swallow the whitespace after them, as in
        // llama.cpp (by the model's name).
        let tokens = [
            "<unk>",
            "<s>",
            "</s>",
            "<|endoftext|>",
            "<|user|>",
            "<|end|>",
            "a",
        ];
        let types = [2, 3, 3, 3, 4, 4, 1];
        assert_eq!(phi3_rstrip("Phi-3 Mini", &tokens, &types), [2, 4, 5]);
        assert_eq!(phi3_rstrip("weft tiny phi3", &tokens, &types), [2, 4, 5]);
        assert!(phi3_rstrip("TinyLlama", &tokens, &types).is_empty());
        // An empty name is none, as llama.cpp reads it.
        let mut empty_pre = bpe.clone();
        empty_pre
            .metadata
            .push(("tokenizer.ggml.pre".into(), Str(String::new())));
        let json: serde_json::Value =
            serde_json::from_slice(&gguf_tokenizer(&empty_pre).unwrap()).unwrap();
        assert_eq!(json["pre"], "default");
        // A pre-tokenizer `tok` does not know is named at upload.
        let mut unknown_pre = bpe;
        unknown_pre
            .metadata
            .push(("tokenizer.ggml.pre".into(), Str("kimi-k2".into())));
        let why = gguf_tokenizer(&unknown_pre).unwrap_err();
        assert!(
            why.contains("cannot use it") && why.contains("\"kimi-k2\""),
            "{why}"
        );
    }
}
