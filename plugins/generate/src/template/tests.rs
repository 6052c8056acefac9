//! The chat formats against llama.cpp's renderings and the vocabularies
//! `auto` reads them from.

use serde_json::json;

use super::*;

fn vocab(tokens: &[&str]) -> Bpe {
    let json = json!({"tokens": tokens, "merges": [], "pre": "llama-bpe", "bos_id": 0});
    Bpe::from_json(json.to_string().as_bytes()).unwrap()
}

/// Llama 3's format, as llama.cpp writes it (`llm_chat_apply_template`,
/// LLAMA_3): contents trimmed, BOS from the tokenizer.
#[test]
fn llama3_prompts_have_headers_and_end_of_turn_tokens() {
    let messages = [
        Message {
            role: Role::System,
            content: "Be brief. ".into(),
        },
        Message {
            role: Role::User,
            content: "Hi".into(),
        },
    ];
    assert_eq!(
        Template::Llama3.render(&messages),
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let bpe = vocab(&[
        "<|begin_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    ]);
    let ids = encode_prompt(&bpe, Template::Llama3, &messages[1..]);
    assert_eq!(ids[..2], [0, 1], "BOS, then the first header");
}

#[test]
fn the_template_follows_the_vocab_or_the_config() {
    let llama3 = vocab(&["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]);
    let chatml = vocab(&["<|im_start|>", "<|im_end|>"]);
    let config = |t: &str| Config::from_iter([("template", t)]);
    let auto = Config::default();
    assert_eq!(
        Template::from_config(&auto, &llama3).unwrap(),
        Template::Llama3
    );
    assert_eq!(
        Template::from_config(&auto, &chatml).unwrap(),
        Template::ChatMl
    );
    assert_eq!(
        Template::from_config(&config("chatml"), &chatml).unwrap(),
        Template::ChatMl
    );
    let err = Template::from_config(&config("chatml"), &llama3).unwrap_err();
    assert!(err.contains("no `<|im_start|>` token"), "{err}");
    let err = Template::from_config(&config("llama3"), &chatml).unwrap_err();
    assert!(err.contains("no `<|start_header_id|>` token"), "{err}");
    let err = Template::from_config(&config("gemini"), &chatml).unwrap_err();
    assert!(
        err.contains("`template` is `gemini`") && err.contains("`zephyr`"),
        "{err}"
    );
    let err = Template::from_config(&config("gemma"), &chatml).unwrap_err();
    assert!(err.contains("no `<start_of_turn>` token"), "{err}");
    let err = Template::from_config(&config("mistral"), &chatml).unwrap_err();
    assert!(err.contains("no `</s>` token"), "{err}");
    let err = Template::from_config(&config("phi4"), &chatml).unwrap_err();
    assert!(err.contains("no `<|im_sep|>` token"), "{err}");
    // Named as asked, of two names for one format.
    let err = Template::from_config(&config("exaone4"), &chatml).unwrap_err();
    assert!(err.contains("which the `exaone4` chat template"), "{err}");
    // The file's chat template decides first.
    let with_template = |jinja: &str| {
        let json = json!({"tokens": ["</s>", "<|im_start|>", "<|im_end|>", "<|user|>", "<|assistant|>", "<|end|>", "<|im_sep|>"], "merges": [],
                          "chat_template": jinja});
        Bpe::from_json(json.to_string().as_bytes()).unwrap()
    };
    for (jinja, want) in [
        (
            "{{ '<|user|>\\n' + message['content'] + eos_token }}{{ '<|assistant|>' }}",
            Template::Zephyr,
        ),
        (
            "{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}",
            Template::Mistral,
        ),
        (
            "{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{{ '<|assistant|>\\n' }}",
            Template::Phi3,
        ),
        (
            "[INST] <<SYS>>\\n' + system_message + '\\n<</SYS>>",
            Template::Llama2,
        ),
        (
            "{{'<|im_start|>' + message['role'] + '\\n'}}",
            Template::ChatMl,
        ),
        (
            "{{'<|im_start|>' + message['role'] + '<|im_sep|>'}}",
            Template::Phi4,
        ),
        ("{{ something else }}", Template::ChatMl),
    ] {
        let bpe = with_template(jinja);
        assert_eq!(Template::from_config(&auto, &bpe).unwrap(), want, "{jinja}");
    }
}

fn conversation() -> Vec<Message> {
    let m = |role, content: &str| Message {
        role,
        content: content.into(),
    };
    vec![
        m(Role::System, "Be brief."),
        m(Role::User, "Hi"),
        m(Role::Assistant, "Hello!"),
        m(Role::User, "Who are you?"),
    ]
}

/// Gemma's format, as llama.cpp writes it (`LLM_CHAT_TEMPLATE_GEMMA`):
/// no system role (its message goes before the next user message's
/// content), `model` for the assistant, contents trimmed.
#[test]
fn gemma_prompts_have_turns_and_no_system_role() {
    let messages = [
        Message {
            role: Role::System,
            content: " Be brief. ".into(),
        },
        Message {
            role: Role::User,
            content: "Hi ".into(),
        },
        Message {
            role: Role::Assistant,
            content: "Hello!".into(),
        },
        Message {
            role: Role::User,
            content: "And you?".into(),
        },
    ];
    assert_eq!(
        Template::Gemma.render(&messages),
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n\
         <start_of_turn>model\nHello!<end_of_turn>\n\
         <start_of_turn>user\nAnd you?<end_of_turn>\n\
         <start_of_turn>model\n"
    );
    // Its turn markers are control tokens, as in Gemma's files.
    let json = json!({"tokens": ["<bos>", "<start_of_turn>", "<end_of_turn>"], "merges": [],
                      "token_types": [3, 3, 3], "bos_id": 0, "add_bos": true,
                      "chat_template": "{{ '<start_of_turn>' + role + '\\n' }}"});
    let gemma = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        Template::from_config(&Config::default(), &gemma).unwrap(),
        Template::Gemma
    );
    let ids = encode_prompt(&gemma, Template::Gemma, &messages[1..2]);
    assert_eq!(ids[..2], [0, 1], "BOS, then the first turn: {ids:?}");
}

/// Mistral's Tekken formats, as llama.cpp writes them
/// (`mistral-v3-tekken`, `mistral-v7-tekken`), and `auto` picking them
/// on a Tekken vocab only (a SentencePiece Mistral keeps the spaced
/// `[INST]`).
#[test]
fn mistral_tekken_prompts_have_no_spaces() {
    assert_eq!(
        Template::MistralV3Tekken.render(&conversation()),
        "[INST]Be brief.\n\nHi[/INST]Hello!</s>[INST]Who are you?[/INST]"
    );
    assert_eq!(
        Template::MistralV7Tekken.render(&conversation()),
        "[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]Hi[/INST]Hello!</s>\
         [INST]Who are you?[/INST]"
    );
    let vocab = |pre: &str, jinja: &str| {
        let tokens = ["</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]"];
        let json = json!({"tokens": tokens, "merges": [], "pre": pre, "chat_template": jinja});
        Bpe::from_json(json.to_string().as_bytes()).unwrap()
    };
    let auto = Config::default();
    let v3 = "{{ '[INST]' + message['content'] + '[/INST]' }}";
    let v7 = "{{ '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}{{ '[INST]' }}";
    // Mistral's official templates, told apart as llama.cpp does.
    let official_v1 = "{{ ' [INST] ' + system_message + message['content'] }}";
    let official_v3 = "{{ '[AVAILABLE_TOOLS]' }}{{ '[INST] ' + message['content'] + '[/INST]' }}";
    let llama2 = "{{ '[INST] <<SYS>>\\n' + system_message + '\\n<</SYS>>' }}";
    for (pre, jinja, want) in [
        ("tekken", v3, Template::MistralV3Tekken),
        ("tekken", v7, Template::MistralV7Tekken),
        ("tekken", official_v3, Template::MistralV3Tekken),
        ("llama-bpe", v3, Template::Mistral),
        ("llama-bpe", v7, Template::MistralV7),
        ("llama-bpe", official_v1, Template::MistralV1),
        ("llama-bpe", official_v3, Template::MistralV3),
        ("llama-bpe", llama2, Template::Llama2),
        (
            "llama-bpe",
            "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}",
            Template::Llama2Strip,
        ),
    ] {
        let got = Template::from_config(&auto, &vocab(pre, jinja)).unwrap();
        assert_eq!(got, want, "{pre}: {jinja}");
    }
    let chatml = vocab("tekken", "");
    let config = Config::from_iter([("template", "mistral-v7-tekken")]);
    assert_eq!(
        Template::from_config(&config, &chatml).unwrap(),
        Template::MistralV7Tekken
    );
    let bare = Bpe::from_json(br#"{"tokens": ["</s>"], "merges": []}"#).unwrap();
    let config = Config::from_iter([("template", "mistral-v3-tekken")]);
    let err = Template::from_config(&config, &bare).unwrap_err();
    assert!(err.contains("no `[INST]` token"), "{err}");
    // A Tekken vocab without Mistral's control tokens is refused, not
    // prompted with text it was never tuned on.
    let json = json!({"tokens": ["</s>"], "merges": [], "pre": "tekken", "chat_template": v3});
    let plain = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    let err = Template::from_config(&auto, &plain).unwrap_err();
    assert!(err.contains("no `[INST]` token"), "{err}");
    let with_system = vocab("tekken", v7);
    let config = Config::from_iter([("template", "mistral-v7-tekken")]);
    assert!(Template::from_config(&config, &with_system).is_ok());
    let json = json!({"tokens": ["</s>", "[INST]", "[/INST]"], "merges": [], "pre": "tekken"});
    let no_system = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    let err = Template::from_config(&config, &no_system).unwrap_err();
    assert!(err.contains("no `[SYSTEM_PROMPT]` token"), "{err}");
}

/// DeepSeek V3's and R1's format, as llama.cpp writes it
/// (`LLM_CHAT_TEMPLATE_DEEPSEEK_3`), picked from the file's template.
#[test]
fn deepseek3_prompts_have_user_and_assistant_markers() {
    assert_eq!(
        Template::DeepSeek3.render(&conversation()),
        "Be brief.\n\n<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜>\
         <｜User｜>Who are you?<｜Assistant｜>"
    );
    let tokens = ["<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"];
    let jinja = "{{'<｜User｜>' + message['content']}}{{'<｜Assistant｜>'}}";
    let json = json!({"tokens": tokens, "merges": [], "chat_template": jinja});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    let auto = Config::default();
    assert_eq!(
        Template::from_config(&auto, &bpe).unwrap(),
        Template::DeepSeek3
    );
    let err = Template::from_config(&auto, &vocab(&["<|im_start|>"])).unwrap_err();
    assert!(err.contains("no `<|im_end|>` token"), "{err}");
    let config = Config::from_iter([("template", "deepseek3")]);
    let err = Template::from_config(&config, &vocab(&["<|im_start|>"])).unwrap_err();
    assert!(err.contains("no `<｜User｜>` token"), "{err}");
    assert!(err.contains("the `deepseek3` chat template"), "{err}");
}

/// DeepSeek-V2's format, as llama.cpp writes it
/// (`LLM_CHAT_TEMPLATE_DEEPSEEK_2`), picked by `auto` from the line of the
/// file's template llama.cpp knows it by; its replies stop at the file's
/// end of sentence.
#[test]
fn deepseek2_prompts_have_user_and_assistant_lines() {
    assert_eq!(
        Template::DeepSeek2.render(&conversation()),
        "Be brief.\n\nUser: Hi\n\nAssistant: Hello!<｜end▁of▁sentence｜>\
         User: Who are you?\n\nAssistant:"
    );
    let jinja = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}\
                 {{ 'User: ' + message['content'] + '\\n\\n' }}{% elif message['role'] == \
                 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token }}{% endif %}\
                 {% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}";
    let tokens = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "a"];
    let json = json!({"tokens": tokens, "merges": [], "chat_template": jinja, "eos_id": 1});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    let auto = Config::default();
    assert_eq!(
        Template::from_config(&auto, &bpe).unwrap(),
        Template::DeepSeek2
    );
    assert_eq!(crate::stop_tokens(&bpe), [1]);
    let config = Config::from_iter([("template", "deepseek2")]);
    let err = Template::from_config(&config, &vocab(&["<|im_start|>"])).unwrap_err();
    assert!(err.contains("no `<｜end▁of▁sentence｜>` token"), "{err}");
}

/// DeepSeek Coder's instruct format, as llama.cpp writes it
/// (`LLM_CHAT_TEMPLATE_DEEPSEEK`), picked by `auto` from its end of turn,
/// at which its replies stop.
#[test]
fn deepseek_coder_prompts_have_instruction_and_response_headers() {
    assert_eq!(
        Template::DeepSeekCoder.render(&conversation()),
        "Be brief.### Instruction:\nHi\n### Response:\nHello!\n<|EOT|>\n\
         ### Instruction:\nWho are you?\n### Response:\n"
    );
    let jinja = "{{'### Instruction:\\n' + message['content'] + '\\n'}}\
                 {{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}";
    let tokens = ["<｜begin▁of▁sentence｜>", "<|EOT|>", "a"];
    let json = json!({"tokens": tokens, "merges": [], "chat_template": jinja, "eos_id": 1});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        Template::from_config(&Config::default(), &bpe).unwrap(),
        Template::DeepSeekCoder
    );
    assert_eq!(crate::stop_tokens(&bpe), [1]);
    let config = Config::from_iter([("template", "deepseek")]);
    let err = Template::from_config(&config, &vocab(&["<|im_start|>"])).unwrap_err();
    assert!(err.contains("no `<|EOT|>` token"), "{err}");
}

/// Hunyuan-Dense's format (llama.cpp `hunyuan-dense`, each reply opened
/// once), picked by `auto` from its assistant's marker, stopping at its
/// end of turn; refused on a vocab without its markers.
#[test]
fn hunyuan_prompts_have_user_and_assistant_markers() {
    assert_eq!(
        Template::Hunyuan.render(&conversation()),
        "Be brief.<｜hy_place▁holder▁no▁3｜><｜hy_User｜>Hi\
         <｜hy_Assistant｜>Hello!<｜hy_place▁holder▁no▁2｜>\
         <｜hy_User｜>Who are you?<｜hy_Assistant｜>"
    );
    let tokens = [
        "<｜hy_place▁holder▁no▁2｜>",
        "<｜hy_place▁holder▁no▁3｜>",
        "<｜hy_User｜>",
        "<｜hy_Assistant｜>",
    ];
    let jinja = "{{- '<｜hy_User｜>' + message['content'] }}{{- '<｜hy_Assistant｜>' }}";
    let json = json!({"tokens": tokens, "merges": [], "chat_template": jinja, "eos_id": 0});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        Template::from_config(&Config::default(), &bpe).unwrap(),
        Template::Hunyuan
    );
    assert_eq!(crate::stop_tokens(&bpe), [0]);
    let config = Config::from_iter([("template", "hunyuan-dense")]);
    let err = Template::from_config(&config, &vocab(&["<|im_start|>"])).unwrap_err();
    assert!(err.contains("no `<｜hy_User｜>` token"), "{err}");
}

/// Phi-4's format, as llama.cpp writes it (`LLM_CHAT_TEMPLATE_PHI_4`).
#[test]
fn phi4_prompts_separate_the_role_with_im_sep() {
    assert_eq!(
        Template::Phi4.render(&conversation()),
        "<|im_start|>system<|im_sep|>Be brief.<|im_end|>\
         <|im_start|>user<|im_sep|>Hi<|im_end|>\
         <|im_start|>assistant<|im_sep|>Hello!<|im_end|>\
         <|im_start|>user<|im_sep|>Who are you?<|im_end|>\
         <|im_start|>assistant<|im_sep|>"
    );
}

/// Every format writes conversations as llama.cpp does
/// (`llama_chat_apply_template`, through `scripts/reference.py --only
/// chat`): system messages, replies with spaces around them, several
/// turns. Zephyr's differs: weft ends its turns with `</s>`, as
/// TinyLlama's template does (checked over HTTP against it), where
/// llama.cpp's built-in writes `<|endoftext|>`; and Hunyuan's opens a
/// reply with its marker once, as the model's template does, where
/// llama.cpp's writes it after the user's message and again before the
/// reply. ERNIE's, which llama.cpp has no built-in for, is its files'
/// own template as jinja2 renders it.
#[test]
fn every_format_writes_conversations_as_llama_cpp_does() {
    let reference: serde_json::Value = serde_json::from_str(include_str!(
        "../../../../host/nn/tests/data/chat_formats_reference.json"
    ))
    .unwrap();
    let conversations: Vec<Vec<Message>> = reference["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let c = c.as_array().unwrap();
            c.iter()
                .map(|m| Message {
                    role: serde_json::from_value(m[0].clone()).unwrap(),
                    content: m[1].as_str().unwrap().into(),
                })
                .collect()
        })
        .collect();
    let mut checked = Vec::new();
    for (name, template, _) in TEMPLATES {
        let llama_cpp = match name {
            "zephyr" => continue,
            "mistral" => "llama2",
            "llama2" => "llama2-sys",
            name => name,
        };
        let format = reference["formats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == llama_cpp)
            .unwrap_or_else(|| panic!("no llama.cpp reference for {llama_cpp}"));
        for (messages, want) in conversations
            .iter()
            .zip(format["texts"].as_array().unwrap())
        {
            let mut want = want.as_str().unwrap().to_owned();
            if name == "hunyuan-dense" {
                let reply = "<｜hy_Assistant｜>";
                want = want.replace(&reply.repeat(2), reply);
            }
            assert_eq!(
                template.render(messages),
                want,
                "{name} (llama.cpp `{llama_cpp}`)"
            );
        }
        checked.push(llama_cpp);
    }
    // Every format of the reference is one of weft's (or Zephyr's).
    let formats = reference["formats"].as_array().unwrap();
    assert_eq!(formats.len(), checked.len() + 1, "{checked:?}");
}

/// IBM Granite 3's and 4's format, as llama.cpp writes it
/// (`LLM_CHAT_TEMPLATE_GRANITE_3_X`), picked from the file's template
/// and refused on a vocab without its role tokens.
#[test]
fn granite_prompts_have_role_markers() {
    assert_eq!(
        Template::Granite.render(&conversation()),
        "<|start_of_role|>system<|end_of_role|>Be brief.<|end_of_text|>\n\
         <|start_of_role|>user<|end_of_role|>Hi<|end_of_text|>\n\
         <|start_of_role|>assistant<|end_of_role|>Hello!<|end_of_text|>\n\
         <|start_of_role|>user<|end_of_role|>Who are you?<|end_of_text|>\n\
         <|start_of_role|>assistant<|end_of_role|>"
    );
    let tokens = ["<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>"];
    let jinja = "{{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' }}";
    let json = json!({"tokens": tokens, "merges": [], "chat_template": jinja});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    let auto = Config::default();
    assert_eq!(
        Template::from_config(&auto, &bpe).unwrap(),
        Template::Granite
    );
    let json = json!({"tokens": &tokens[1..], "merges": [], "chat_template": jinja});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    let err = Template::from_config(&auto, &bpe).unwrap_err();
    assert!(err.contains("no `<|end_of_text|>` token"), "{err}");
}

/// The formats of SentencePiece chat models, as llama.cpp writes them
/// (`llm_chat_apply_template`: ZEPHYR with TinyLlama's end token; LLAMA_2
/// and its `<<SYS>>` variant).
#[test]
fn zephyr_mistral_and_llama2_prompts() {
    let messages = conversation();
    assert_eq!(
        Template::Zephyr.render(&messages),
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n\
         <|user|>\nWho are you?</s>\n<|assistant|>\n"
    );
    assert_eq!(
        Template::Mistral.render(&messages),
        "[INST] Be brief.\nHi [/INST]Hello!</s>[INST] Who are you? [/INST]"
    );
    assert_eq!(
        Template::Llama2.render(&messages),
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello!</s>[INST] Who are you? [/INST]"
    );
    assert_eq!(
        Template::Mistral.render(&messages[1..2]),
        "[INST] Hi [/INST]"
    );
    assert_eq!(
        Template::Phi3.render(&messages[1..2]),
        "<|user|>\nHi<|end|>\n<|assistant|>\n"
    );
}

/// `template=none`: a base model continues the text itself, whatever
/// its vocab holds.
#[test]
fn no_template_sends_the_text_itself() {
    let messages = conversation();
    assert_eq!(
        Template::Plain.render(&messages[1..2]),
        "Hi",
        "a bare prompt as it is"
    );
    assert_eq!(
        Template::Plain.render(&messages),
        "Be brief.\nHi\nHello!\nWho are you?"
    );
    let base = vocab(&["a"]);
    let none = Config::from_iter([("template", "none")]);
    assert_eq!(
        Template::from_config(&none, &base).unwrap(),
        Template::Plain
    );
    let err = Template::from_config(&Config::default(), &base).unwrap_err();
    assert!(err.contains("`none` for a base model"), "{err}");
}

/// EXAONE's format, as llama.cpp writes it (`exaone3`, `exaone4`: one
/// format but for 4's tool role): picked from either file's template
/// (3.5's, or 4.0's with its tool role), and refused on a vocab without
/// its turn tokens.
#[test]
fn exaone_prompts_have_bracketed_turns() {
    assert_eq!(
        Template::Exaone.render(&conversation()),
        "[|system|]Be brief.[|endofturn|]\n[|user|]Hi\n\
         [|assistant|]Hello![|endofturn|]\n[|user|]Who are you?\n[|assistant|]"
    );
    let tokens = ["[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]"];
    let auto = Config::default();
    // (EXAONE 3.5's and 4.0's templates' turns; 4.0's has a tool role.)
    let turns = "{%- if message['role'] == 'system' %}{{- '[|system|]' + message['content'] + \
                 '[|endofturn|]\\n' }}{%- elif message['role'] == 'assistant' %}\
                 {{- '[|assistant|]' + message['content'] + '[|endofturn|]\\n' }}";
    let tool = "{%- elif message['role'] == 'tool' %}{{- '[|tool|]' + message['content'] }}";
    for jinja in [turns.to_string(), format!("{turns}{tool}")] {
        let json = json!({"tokens": tokens, "merges": [], "chat_template": jinja});
        let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
        assert_eq!(
            Template::from_config(&auto, &bpe).unwrap(),
            Template::Exaone
        );
    }
    let json = json!({"tokens": &tokens[..3], "merges": [], "chat_template": turns});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    let err = Template::from_config(&auto, &bpe).unwrap_err();
    assert!(err.contains("no `[|endofturn|]` token"), "{err}");
}

/// GLM-4's format (written as llama.cpp's `chatglm4`, checked above) is
/// picked from GLM-4's template before Zephyr's, whose `<|assistant|>` it
/// also holds, and refused on a vocab without its tokens.
#[test]
fn chatglm4_is_told_from_zephyr() {
    let tokens = [
        "[gMASK]",
        "<sop>",
        "<|system|>",
        "<|user|>",
        "<|assistant|>",
    ];
    let jinja = "[gMASK]<sop>{{- '<|' + message['role'] + '|>\\n' }}{{- '<|assistant|>\\n' }}";
    let json = json!({"tokens": tokens, "merges": [], "chat_template": jinja});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    let auto = Config::default();
    assert_eq!(
        Template::from_config(&auto, &bpe).unwrap(),
        Template::ChatGlm4
    );
    let json = json!({"tokens": &tokens[1..], "merges": [], "chat_template": jinja});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    let err = Template::from_config(&auto, &bpe).unwrap_err();
    assert!(err.contains("no `[gMASK]` token"), "{err}");
}

/// MiniCPM's format (written as llama.cpp's `minicpm`, checked above) is
/// picked by `auto` from a template with its `<用户>` mark, and asked for
/// by name whatever the vocab holds: llama.cpp writes its marks as text.
#[test]
fn minicpm_is_picked_from_its_user_mark() {
    let jinja = "{% for message in messages %}{% if message['role'] == 'user' %}\
                 {{'<用户>' + message['content'].strip() + '<AI>'}}{% else %}\
                 {{message['content'].strip()}}{% endif %}{% endfor %}";
    let json = json!({"tokens": ["a"], "merges": [], "chat_template": jinja});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        Template::from_config(&Config::default(), &bpe).unwrap(),
        Template::MiniCpm
    );
    let plain = vocab(&["a"]);
    let asked = Config::from_iter([("template", "minicpm")]);
    assert_eq!(
        Template::from_config(&asked, &plain).unwrap(),
        Template::MiniCpm
    );
    assert_eq!(
        Template::MiniCpm.render(&conversation()),
        "Be brief.<用户>Hi<AI>Hello!<用户>Who are you?<AI>"
    );
}

/// ERNIE 4.5's format (written as its files' own template renders, checked
/// above) is picked by `auto` from that template, needs its sentence
/// marks in the vocab, and its replies stop at `<|end_of_sentence|>`.
#[test]
fn ernie_is_picked_from_its_template_and_needs_its_marks() {
    let jinja = "{%- set cls_token = \"<|begin_of_sentence|>\" -%}{{- cls_token -}}";
    let tokens = ["<|begin_of_sentence|>", "<|end_of_sentence|>", "a"];
    let json = json!({"tokens": tokens, "merges": [], "chat_template": jinja});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    assert_eq!(
        Template::from_config(&Config::default(), &bpe).unwrap(),
        Template::Ernie
    );
    assert_eq!(crate::stop_tokens(&bpe), [1]);
    let json = json!({"tokens": &tokens[1..], "merges": [], "chat_template": jinja});
    let bpe = Bpe::from_json(json.to_string().as_bytes()).unwrap();
    let err = Template::from_config(&Config::default(), &bpe).unwrap_err();
    assert!(err.contains("`<|begin_of_sentence|>`"), "{err}");
    assert_eq!(
        Template::Ernie.render(&conversation()),
        "<|begin_of_sentence|>Be brief.\nUser: Hi\nAssistant: Hello!<|end_of_sentence|>\
         User: Who are you?\nAssistant: "
    );
}
