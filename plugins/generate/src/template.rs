//! Chat templates: how a conversation's messages become the prompt text, in
//! the format the model was tuned on, as llama.cpp writes each.

use tok::{Bpe, PreTokenizer};
use weft_sdk::Config;

use crate::request::{Message, Role};

/// How messages become a prompt: the chat format the model was tuned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Template {
    /// ChatML, `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
    /// `<|im_start|>assistant\n`: SmolLM2, Qwen2, Qwen3 and many more.
    ChatMl,
    /// Phi-4's (14B; llama.cpp `phi4`): ChatML with `<|im_sep|>` after the
    /// role and no newlines: `<|im_start|>{role}<|im_sep|>{content}<|im_end|>`
    /// per message, then `<|im_start|>assistant<|im_sep|>`.
    Phi4,
    /// Llama 3's: `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>`
    /// per message (content trimmed), then
    /// `<|start_header_id|>assistant<|end_header_id|>\n\n`; the tokenizer
    /// adds `<|begin_of_text|>` as BOS.
    Llama3,
    /// Zephyr's (TinyLlama-1.1B-Chat): `<|{role}|>\n{content}</s>\n` per
    /// message, then `<|assistant|>\n`.
    Zephyr,
    /// Phi-3's: Zephyr's with `<|end|>` for `</s>`.
    Phi3,
    /// `[INST] {user} [/INST]{reply}</s>[INST] ...` (Mistral-7B-Instruct
    /// v0.1 and v0.2, llama.cpp's `llama2` format): a system message goes
    /// first in the first `[INST]`, followed by a newline; the tokenizer
    /// adds `<s>`.
    Mistral,
    /// Mistral's v1 (llama.cpp `mistral-v1`): ` [INST] {user} [/INST]
    /// {reply}</s>`, a system message first in the first turn, followed by
    /// a blank line. Picked by `auto` for Mistral's official v1 template.
    MistralV1,
    /// Mistral's v3 (Mistral-7B-Instruct v0.3, Mixtral 8x22B; llama.cpp
    /// `mistral-v3`): `[INST] {user}[/INST] {reply, trimmed}</s>`, a system
    /// message as in v1. Picked by `auto` for a template with Mistral's
    /// `[AVAILABLE_TOOLS]`.
    MistralV3,
    /// Mistral's v3-tekken (Mistral NeMo; llama.cpp `mistral-v3-tekken`):
    /// `[INST]{user}[/INST]{reply}</s>...`, no spaces around the turns; a
    /// system message goes first in the first `[INST]`, followed by a blank
    /// line. Picked by `auto` for an `[INST]` template on a Tekken vocab.
    MistralV3Tekken,
    /// Mistral's v7 (Mistral Large 2411; llama.cpp `mistral-v7`):
    /// `[SYSTEM_PROMPT] {system}[/SYSTEM_PROMPT]`, `[INST] {user}[/INST]`,
    /// ` {reply}</s>`. Picked by `auto` for a `[SYSTEM_PROMPT]` template.
    MistralV7,
    /// Mistral's v7-tekken (Mistral Small 3; llama.cpp
    /// `mistral-v7-tekken`): v7 without the spaces. Picked by `auto` for a
    /// `[SYSTEM_PROMPT]` template on a Tekken vocab.
    MistralV7Tekken,
    /// Llama 2 chat's: Mistral's, with the system message as
    /// `<<SYS>>\n{system}\n<</SYS>>\n\n` (llama.cpp `llama2-sys`).
    Llama2,
    /// Llama 2 chat's own template's (llama.cpp `llama2-sys-strip`):
    /// `llama2` with every message trimmed.
    Llama2Strip,
    /// Gemma's: `<start_of_turn>{role}\n{content}<end_of_turn>\n` per
    /// message (content trimmed, the assistant's role `model`, a system
    /// message put before the next user message's content), then
    /// `<start_of_turn>model\n`; the tokenizer adds `<bos>`.
    Gemma,
    /// DeepSeek V3's and R1's (and the R1 distils of Qwen and Llama;
    /// llama.cpp `deepseek3`): a system message then a blank line,
    /// `<｜User｜>{user}`, `<｜Assistant｜>{reply}<｜end▁of▁sentence｜>`,
    /// then `<｜Assistant｜>`.
    DeepSeek3,
    /// IBM Granite 3's and 4's (llama.cpp `granite`):
    /// `<|start_of_role|>{role}<|end_of_role|>{content}<|end_of_text|>\n`
    /// per message, then `<|start_of_role|>assistant<|end_of_role|>`.
    Granite,
    /// No chat format (config `none`, for base models): the messages'
    /// contents, one per line, are the text the model goes on from.
    Plain,
}

/// The formats, by config name, with a text only their chat templates
/// (GGUF `tokenizer.chat_template`) hold, most specific first. The
/// `[INST]` formats share `[INST]`; [`inst_format`] tells them apart.
const TEMPLATES: [(&str, Template, &str); 16] = [
    ("phi4", Template::Phi4, "<|im_sep|>"),
    ("chatml", Template::ChatMl, "<|im_start|>"),
    ("gemma", Template::Gemma, "<start_of_turn>"),
    ("llama3", Template::Llama3, "<|start_header_id|>"),
    ("phi3", Template::Phi3, "<|end|>"),
    ("zephyr", Template::Zephyr, "<|assistant|>"),
    ("llama2", Template::Llama2, "<<SYS>>"),
    ("llama2-sys-strip", Template::Llama2Strip, "<<SYS>>"),
    (
        "mistral-v7-tekken",
        Template::MistralV7Tekken,
        "[SYSTEM_PROMPT]",
    ),
    ("mistral", Template::Mistral, "[INST]"),
    ("mistral-v1", Template::MistralV1, "[INST]"),
    ("mistral-v3", Template::MistralV3, "[INST]"),
    ("mistral-v3-tekken", Template::MistralV3Tekken, "[INST]"),
    ("mistral-v7", Template::MistralV7, "[INST]"),
    ("deepseek3", Template::DeepSeek3, "<｜Assistant｜>"),
    ("granite", Template::Granite, "<|start_of_role|>"),
];

/// How a format lays a conversation out.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Each message on its own.
    Turns(Turns),
    /// Turns opened by `[INST]` and closed by the reply.
    Inst(Inst),
    /// Gemma's: turns, and no system role.
    Gemma,
    /// No format: the contents, one per line.
    Plain,
}

/// A format that writes each message on its own: the opening of its role,
/// its content, the closing; then the opening of the reply.
#[derive(Debug, Clone, Copy)]
struct Turns {
    /// The opening and closing of a system, a user and an assistant
    /// message, in [`Role`] order.
    roles: [(&'static str, &'static str); 3],
    /// Whether contents are trimmed first (Llama 3's).
    trim: bool,
    /// What the reply starts after: the assistant's opening, but for
    /// Mistral's v7 formats, which write none.
    reply: &'static str,
}

impl Turns {
    /// `roles`, contents as they are, the reply after the assistant's
    /// opening.
    const fn new(roles: [(&'static str, &'static str); 3]) -> Self {
        Turns {
            roles,
            trim: false,
            reply: roles[2].0,
        }
    }

    fn role(&self, role: Role) -> (&'static str, &'static str) {
        match role {
            Role::System => self.roles[0],
            Role::User => self.roles[1],
            Role::Assistant => self.roles[2],
        }
    }
}

impl Template {
    /// Its config name.
    fn name(self) -> &'static str {
        match TEMPLATES.iter().find(|&&(_, t, _)| t == self) {
            Some((name, ..)) => name,
            None => "none",
        }
    }

    /// Config `template`: a name of [`TEMPLATES`] or `auto` (the default:
    /// from the model's chat template, if its file has one, else Llama 3's
    /// when the vocab has its header tokens, else ChatML), checked against
    /// the vocab: a template whose special tokens it lacks would prompt the
    /// model with text it was never tuned on.
    pub(crate) fn from_config(config: &Config, bpe: &Bpe) -> Result<Self, String> {
        let has = |t: &str| bpe.token_to_id(t).is_some();
        let names = || {
            let names = TEMPLATES.map(|(name, ..)| format!("`{name}`")).join(", ");
            format!("{names}, or `none` for a base model")
        };
        let template = match config.get_or("template", "auto") {
            "none" => Template::Plain,
            "auto" => {
                let tekken = bpe.pre_tokenizer() == Some(PreTokenizer::Tekken);
                let from_file = bpe.chat_template().and_then(|jinja| {
                    let &(_, t, _) = TEMPLATES.iter().find(|(.., mark)| jinja.contains(mark))?;
                    Some(match t {
                        Template::Mistral
                        | Template::MistralV1
                        | Template::MistralV3
                        | Template::MistralV3Tekken
                        | Template::MistralV7
                        | Template::MistralV7Tekken
                        | Template::Llama2
                        | Template::Llama2Strip => inst_format(jinja, tekken),
                        t => t,
                    })
                });
                match from_file {
                    Some(t) => t,
                    None if has("<|start_header_id|>") => Template::Llama3,
                    None => Template::ChatMl,
                }
            }
            other => match TEMPLATES.iter().find(|(name, ..)| *name == other) {
                Some(&(_, t, _)) => t,
                None => {
                    return Err(format!(
                        "`template` is `{other}`: use `auto` (the default: from the model's \
                         chat template or special tokens), {}",
                        names()
                    ));
                }
            },
        };
        let needs: &[&str] = match template {
            Template::ChatMl => &["<|im_start|>", "<|im_end|>"],
            Template::Phi4 => &["<|im_start|>", "<|im_sep|>", "<|im_end|>"],
            Template::Llama3 => &["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
            Template::Phi3 => &["<|user|>", "<|assistant|>", "<|end|>"],
            Template::Zephyr
            | Template::Mistral
            | Template::MistralV1
            | Template::MistralV3
            | Template::Llama2
            | Template::Llama2Strip => &["</s>"],
            Template::MistralV3Tekken => &["[INST]", "[/INST]", "</s>"],
            Template::DeepSeek3 => &["<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"],
            Template::Granite => &["<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>"],
            Template::MistralV7 | Template::MistralV7Tekken => {
                &["[INST]", "[/INST]", "</s>", "[SYSTEM_PROMPT]"]
            }
            Template::Gemma => &["<start_of_turn>", "<end_of_turn>"],
            Template::Plain => &[],
        };
        match needs.iter().find(|t| !has(t)) {
            Some(missing) => Err(format!(
                "the tokenizer has no `{missing}` token, which the `{}` chat template needs: \
                 is this a chat (instruct) model? Set `template` to its format ({})",
                template.name(),
                names()
            )),
            None => Ok(template),
        }
    }

    /// How the format lays messages out, as llama.cpp writes it
    /// (`llm_chat_apply_template`).
    fn layout(self) -> Layout {
        let inst = |open, system, close, reply, trim| {
            Layout::Inst(Inst {
                open,
                system,
                close,
                reply,
                trim,
            })
        };
        Layout::Turns(match self {
            Template::ChatMl => Turns::new([
                ("<|im_start|>system\n", "<|im_end|>\n"),
                ("<|im_start|>user\n", "<|im_end|>\n"),
                ("<|im_start|>assistant\n", "<|im_end|>\n"),
            ]),
            Template::Phi4 => Turns::new([
                ("<|im_start|>system<|im_sep|>", "<|im_end|>"),
                ("<|im_start|>user<|im_sep|>", "<|im_end|>"),
                ("<|im_start|>assistant<|im_sep|>", "<|im_end|>"),
            ]),
            Template::Llama3 => Turns {
                trim: true,
                ..Turns::new([
                    (
                        "<|start_header_id|>system<|end_header_id|>\n\n",
                        "<|eot_id|>",
                    ),
                    ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
                    (
                        "<|start_header_id|>assistant<|end_header_id|>\n\n",
                        "<|eot_id|>",
                    ),
                ])
            },
            Template::Zephyr => Turns::new([
                ("<|system|>\n", "</s>\n"),
                ("<|user|>\n", "</s>\n"),
                ("<|assistant|>\n", "</s>\n"),
            ]),
            Template::Phi3 => Turns::new([
                ("<|system|>\n", "<|end|>\n"),
                ("<|user|>\n", "<|end|>\n"),
                ("<|assistant|>\n", "<|end|>\n"),
            ]),
            Template::MistralV7 => Turns {
                reply: "",
                ..Turns::new([
                    ("[SYSTEM_PROMPT] ", "[/SYSTEM_PROMPT]"),
                    ("[INST] ", "[/INST]"),
                    (" ", "</s>"),
                ])
            },
            Template::MistralV7Tekken => Turns::new([
                ("[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"),
                ("[INST]", "[/INST]"),
                ("", "</s>"),
            ]),
            Template::DeepSeek3 => Turns::new([
                ("", "\n\n"),
                ("<｜User｜>", ""),
                ("<｜Assistant｜>", "<｜end▁of▁sentence｜>"),
            ]),
            Template::Granite => Turns::new([
                (
                    "<|start_of_role|>system<|end_of_role|>",
                    "<|end_of_text|>\n",
                ),
                ("<|start_of_role|>user<|end_of_role|>", "<|end_of_text|>\n"),
                (
                    "<|start_of_role|>assistant<|end_of_role|>",
                    "<|end_of_text|>\n",
                ),
            ]),
            // llama.cpp's `llama2`, `llama2-sys`, `llama2-sys-strip`,
            // `mistral-v1`, `-v3` and `-v3-tekken`.
            Template::Mistral => return inst("[INST] ", ("", "\n"), " [/INST]", "", Trim::None),
            Template::Llama2 | Template::Llama2Strip => {
                let system = ("<<SYS>>\n", "\n<</SYS>>\n\n");
                let trim = match self {
                    Template::Llama2Strip => Trim::All,
                    _ => Trim::None,
                };
                return inst("[INST] ", system, " [/INST]", "", trim);
            }
            Template::MistralV1 => {
                return inst(" [INST] ", ("", "\n\n"), " [/INST]", " ", Trim::None);
            }
            Template::MistralV3 => {
                return inst("[INST] ", ("", "\n\n"), "[/INST]", " ", Trim::Replies);
            }
            Template::MistralV3Tekken => {
                return inst("[INST]", ("", "\n\n"), "[/INST]", "", Trim::None);
            }
            Template::Gemma => return Layout::Gemma,
            Template::Plain => return Layout::Plain,
        })
    }

    /// The prompt text for `messages`, ending where the assistant's reply
    /// starts.
    pub(crate) fn render(self, messages: &[Message]) -> String {
        let mut prompt = String::new();
        match self.layout() {
            Layout::Turns(turns) => {
                for m in messages {
                    let (open, close) = turns.role(m.role);
                    let content = if turns.trim {
                        m.content.trim()
                    } else {
                        &m.content
                    };
                    prompt.push_str(open);
                    prompt.push_str(content);
                    prompt.push_str(close);
                }
                prompt.push_str(turns.reply);
            }
            Layout::Inst(inst) => {
                let mut in_turn = false;
                for m in messages {
                    if !in_turn {
                        prompt.push_str(inst.open);
                        in_turn = true;
                    }
                    let (open, close) = match m.role {
                        Role::System => inst.system,
                        Role::User => ("", inst.close),
                        Role::Assistant => {
                            in_turn = false;
                            (inst.reply, "</s>")
                        }
                    };
                    prompt.push_str(open);
                    match (inst.trim, m.role) {
                        (Trim::All, _) | (Trim::Replies, Role::Assistant) => {
                            prompt.push_str(m.content.trim());
                        }
                        _ => prompt.push_str(&m.content),
                    }
                    prompt.push_str(close);
                }
            }
            Layout::Gemma => {
                let mut system = String::new();
                for m in messages {
                    let role = match m.role {
                        Role::System => {
                            system.push_str(m.content.trim());
                            continue;
                        }
                        Role::User => "user",
                        Role::Assistant => "model",
                    };
                    prompt.push_str(&format!("<start_of_turn>{role}\n"));
                    if !system.is_empty() && m.role == Role::User {
                        prompt.push_str(&system);
                        prompt.push_str("\n\n");
                        system.clear();
                    }
                    prompt.push_str(m.content.trim());
                    prompt.push_str("<end_of_turn>\n");
                }
                prompt.push_str("<start_of_turn>model\n");
            }
            Layout::Plain => {
                let lines: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
                prompt = lines.join("\n");
            }
        }
        prompt
    }
}

/// The `[INST]` format of a chat template, told apart as llama.cpp's
/// `llm_chat_detect_template` does, except that the Tekken formats (no
/// spaces: v3-tekken, v7-tekken) go by the vocab, not the template's
/// quoting (llama.cpp takes a `"[INST]"` template on another vocab for
/// v3-tekken), and that a template with `bos_token + '[INST]` and without
/// `content.strip()` gets `llama2`, where llama.cpp writes `<s>` before
/// each later turn (`llama2-sys-bos`).
fn inst_format(jinja: &str, tekken: bool) -> Template {
    if jinja.contains("[SYSTEM_PROMPT]") {
        return if tekken {
            Template::MistralV7Tekken
        } else {
            Template::MistralV7
        };
    }
    if tekken {
        return Template::MistralV3Tekken;
    }
    // Mistral's official v1 and v3 templates.
    if jinja.contains("' [INST] ' + system_message") || jinja.contains("[AVAILABLE_TOOLS]") {
        return if jinja.contains(" [INST]") {
            Template::MistralV1
        } else {
            Template::MistralV3
        };
    }
    if jinja.contains("content.strip()") {
        Template::Llama2Strip
    } else if jinja.contains("<<SYS>>") {
        Template::Llama2
    } else {
        Template::Mistral
    }
}

/// Which contents an [`Inst`] format trims.
#[derive(Debug, Clone, Copy)]
enum Trim {
    None,
    /// The assistant's (Mistral v3's).
    Replies,
    /// Every message's (Llama 2 chat's own template's).
    All,
}

/// How an `[INST]` format writes a conversation: a turn opens before the
/// first message after a reply; a system message goes inside it.
#[derive(Debug, Clone, Copy)]
struct Inst {
    /// What opens a turn.
    open: &'static str,
    /// What goes before and after a system message.
    system: (&'static str, &'static str),
    /// What follows a user message.
    close: &'static str,
    /// What goes before a reply (which ends with `</s>`).
    reply: &'static str,
    /// Which contents are trimmed.
    trim: Trim,
}

/// The ChatML prompt of `messages` (for tests).
#[cfg(test)]
pub(crate) fn chatml(messages: &[Message]) -> String {
    Template::ChatMl.render(messages)
}

/// The token ids of the prompt for `messages` in `template`: a BOS first
/// when the tokenizer adds one.
pub(crate) fn encode_prompt(bpe: &Bpe, template: Template, messages: &[Message]) -> Vec<u32> {
    let mut prompt = Vec::new();
    if let (true, Some(bos)) = (bpe.add_bos(), bpe.bos_id()) {
        prompt.push(bos);
    }
    prompt.extend(bpe.encode(&template.render(messages)));
    prompt
}

#[cfg(test)]
mod tests {
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
        let official_v3 =
            "{{ '[AVAILABLE_TOOLS]' }}{{ '[INST] ' + message['content'] + '[/INST]' }}";
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
    /// turns. Zephyr's alone differs: weft ends its turns with `</s>`, as
    /// TinyLlama's template does (checked over HTTP against it), where
    /// llama.cpp's built-in writes `<|endoftext|>`.
    #[test]
    fn every_format_writes_conversations_as_llama_cpp_does() {
        let reference: serde_json::Value = serde_json::from_str(include_str!(
            "../../../host/nn/tests/data/chat_formats_reference.json"
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
                assert_eq!(
                    template.render(messages),
                    want.as_str().unwrap(),
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
}
