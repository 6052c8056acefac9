use super::*;

/// A tiny vocab in GPT-2 spelling: `Ġ` is space, `Ċ` newline.
fn bpe() -> Bpe {
    let json = serde_json::json!({
        "tokens": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>",
                   "h", "e", "l", "o", "Ġ", "w", "r", "d", "Ċ", "1", "2",
                   "he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "Ġworld", "ld",
                   "12"],
        "merges": ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d",
                   "Ġwor ld", "1 2"],
        "token_types": [3, 3, 3, 4],
        "bos_id": 0,
        "eos_id": 2,
    });
    Bpe::from_json(json.to_string().as_bytes()).unwrap()
}

fn id(bpe: &Bpe, token: &str) -> u32 {
    bpe.token_to_id(token).unwrap()
}

#[test]
fn merges_apply_by_rank() {
    let bpe = bpe();
    assert_eq!(
        bpe.encode("hello world"),
        [id(&bpe, "hello"), id(&bpe, "Ġworld")]
    );
    assert_eq!(bpe.encode("hel"), [id(&bpe, "he"), id(&bpe, "l")]);
    // `l l` outranks `l d`, so `lld` is `ll` + `d`.
    assert_eq!(bpe.encode("lld"), [id(&bpe, "ll"), id(&bpe, "d")]);
}

#[test]
fn digits_are_split_one_by_one_by_default() {
    let bpe = bpe();
    assert_eq!(bpe.encode("12"), [id(&bpe, "1"), id(&bpe, "2")]);
    let json = br#"{"tokens": ["1", "2", "12"], "merges": ["1 2"], "pre": "gpt2"}"#;
    assert_eq!(Bpe::from_json(json).unwrap().encode("12"), [2]);
}

#[test]
fn special_tokens_match_verbatim() {
    let bpe = bpe();
    assert_eq!(
        bpe.encode("<|im_start|>hello<|im_end|>\n<tool><|endoftext|>"),
        [1, id(&bpe, "hello"), 2, id(&bpe, "Ċ"), 3, 0]
    );
    // Unmarked, `<|...|>` tokens are still special.
    let json = br#"{"tokens": ["<|x|>", "<", "|", "x", ">"], "merges": []}"#;
    assert_eq!(Bpe::from_json(json).unwrap().encode("<|x|><"), [0, 1]);
}

#[test]
fn decode_maps_bytes_back() {
    let bpe = bpe();
    let text = "hello world\n<|im_end|>";
    assert_eq!(bpe.decode(&bpe.encode(text)), text);
    assert_eq!(bpe.decode(&[9999]), "", "unknown ids decode to nothing");
}

#[test]
fn any_text_round_trips_through_a_byte_level_vocab() {
    let map = ByteMap::new();
    let tokens: Vec<String> = (0..=255u8)
        .map(|b| map.char(b).to_string())
        .chain(["Ġt", "he", "Ġthe", "<|im_end|>"].map(String::from))
        .collect();
    let json = serde_json::json!({"tokens": tokens, "merges": ["Ġ t", "h e", "Ġt he"]});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    for text in [
        "",
        "the the  Thé\n\t😀 3.14<|im_end|>",
        "\0\u{7f}\u{ad}",
        "ΣΑΣ 中文 ١٢٣",
    ] {
        let ids = bpe.encode(text);
        assert_eq!(bpe.decode(&ids), text);
        let mut decoder = bpe.stream_decoder();
        let streamed: String = ids.iter().map(|&id| decoder.push(id)).collect();
        assert_eq!(streamed + &decoder.finish(), text);
    }
    assert_eq!(bpe.encode(" the"), [258]);
}

/// Llama 3's vocabularies take a whole piece that is a token even where
/// no merges lead to it, and add BOS unless their file says not to.
#[test]
fn llama3_ignores_merges_and_adds_bos() {
    let spec = |pre: &str, add_bos: &str| {
        format!(
            r#"{{"tokens": ["a", "b", "c", "ab", "abc"], "merges": ["a b"], "pre": "{pre}"{add_bos}}}"#
        )
    };
    let llama3 = Bpe::from_json(spec("llama-bpe", "").as_bytes()).unwrap();
    assert_eq!(llama3.encode("abc"), [4]);
    assert_eq!(
        llama3.encode("abcab"),
        [3, 2, 3],
        "not a token whole: merged"
    );
    assert!(llama3.add_bos);
    let qwen2 = Bpe::from_json(spec("qwen2", "").as_bytes()).unwrap();
    assert_eq!(qwen2.encode("abc"), [3, 2]);
    assert!(!qwen2.add_bos);
    let no_bos = Bpe::from_json(spec("llama-bpe", r#", "add_bos": false"#).as_bytes()).unwrap();
    assert!(!no_bos.add_bos);
    // Tekken's vocabularies too, as llama.cpp reads `tekken`.
    let tekken = Bpe::from_json(spec("tekken", "").as_bytes()).unwrap();
    assert_eq!(tekken.encode("abc"), [4]);
    assert!(tekken.add_bos);
}

/// A SentencePiece vocab: `▁` for spaces, one added at the start and
/// after special tokens, best score merged first, bytes for the rest.
#[test]
fn sentencepiece_vocabularies() {
    let json = serde_json::json!({
        "model": "llama",
        "tokens": ["<unk>", "<s>", "</s>", "<0x0A>", "<0xC3>", "<0xA9>",
                   "▁", "h", "i", "▁h", "▁hi", "hi"],
        "scores": [0, 0, 0, 0, 0, 0, -1, -2, -3, -4, -5, -6],
        "token_types": [2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1],
        "bos_id": 1, "eos_id": 2,
    });
    let spm = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    assert!(spm.add_bos(), "SentencePiece vocabs add BOS by default");
    // ` hi`: `▁h` (-4) before `hi` (-6), then `▁hi`.
    assert_eq!(spm.encode("hi"), [10]);
    assert_eq!(spm.encode("hi hi</s>hi"), [10, 10, 2, 10]);
    assert_eq!(
        spm.encode("é\n"),
        [6, 4, 5, 3],
        "bytes for what has no token"
    );
    assert_eq!(spm.encode(""), Vec::<u32>::new());
    assert_eq!(
        spm.decode(&[10, 10, 4, 5, 3]),
        "hi hié\n",
        "the first space dropped"
    );
    assert_eq!(spm.decode(&[11, 10]), "hi hi");
    let mut decoder = spm.stream_decoder();
    assert_eq!(decoder.push(10), "hi");
    assert_eq!(decoder.push(4), "");
    assert_eq!(decoder.push(5), "é");
    assert_eq!(decoder.push(10), " hi");
    // Without the added space (`add_space_prefix` false).
    // Whitespace after an `rstrip` token is dropped (Phi-3's).
    let mut json = json;
    json["rstrip"] = serde_json::json!([2]);
    let strips = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(strips.encode("hi</s> \n\thi"), [10, 2, 10]);
    assert_eq!(spm.encode("hi</s>\n"), [10, 2, 6, 3]);
    json["rstrip"] = serde_json::json!([]);
    json["add_space_prefix"] = false.into();
    let bare = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(bare.encode("hi hi"), [11, 10]);
    assert_eq!(bare.decode(&[10]), " hi");
}

#[test]
fn rejects_bad_files() {
    let err = Bpe::from_json(br#"{"tokens": ["a"], "merges": [], "eos_id": 3}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tokenizer JSON: `eos_id` is 3, but there are only 1 tokens"
    );
    let err = Bpe::from_json(br#"{"tokens": [], "merges": [], "pre": "kimi-k2"}"#).unwrap_err();
    assert!(err.to_string().contains("\"kimi-k2\""), "{err}");
    assert!(matches!(Bpe::from_json(b"{}"), Err(Error::Json(_))));
    let err = Bpe::from_json(br#"{"tokens": ["a"]}"#).unwrap_err();
    assert!(matches!(err, Error::NoMerges), "{err}");
    let err = Bpe::from_json(br#"{"model": "llama", "tokens": ["a"]}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tokenizer JSON: a `llama` (SentencePiece) tokenizer needs one score per token: \
         0 scores for 1 tokens"
    );
    let err = Bpe::from_json(br#"{"model": "t5", "tokens": []}"#).unwrap_err();
    assert!(err.to_string().contains("\"t5\" is not supported"), "{err}");
    let pair = br#"{"tokens": ["a", "b", "ab"], "merges": [["a", "b"]]}"#;
    assert_eq!(Bpe::from_json(pair).unwrap().encode("ab"), [2]);
}
