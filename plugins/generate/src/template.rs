//! Chat templates: how a conversation's messages become the prompt text, in
//! the format the model was tuned on, as llama.cpp writes each (ERNIE's, which
//! llama.cpp has no built-in for, as its files' own template renders).

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
    /// DeepSeek-V2's, V2-Lite's and Coder-V2's (llama.cpp `deepseek2`): a
    /// system message then a blank line, `User: {user}` then a blank line,
    /// `Assistant: {reply}<｜end▁of▁sentence｜>`, then `Assistant:`.
    DeepSeek2,
    /// DeepSeek Coder's instruct models' (llama.cpp `deepseek`): a system
    /// message as it is, `### Instruction:\n{user}\n`, `### Response:\n
    /// {reply}\n<|EOT|>\n`, then `### Response:\n`.
    DeepSeekCoder,
    /// DeepSeek V3's and R1's (and the R1 distils of Qwen and Llama;
    /// llama.cpp `deepseek3`): a system message then a blank line,
    /// `<｜User｜>{user}`, `<｜Assistant｜>{reply}<｜end▁of▁sentence｜>`,
    /// then `<｜Assistant｜>`.
    DeepSeek3,
    /// Tencent's Hunyuan-Dense Instruct's (0.5B-7B, Hunyuan-MT; llama.cpp
    /// `hunyuan-dense`): `{system}<｜hy_place▁holder▁no▁3｜>`,
    /// `<｜hy_User｜>{user}`, `<｜hy_Assistant｜>{reply}<｜hy_place▁holder▁no▁2｜>`,
    /// then `<｜hy_Assistant｜>`. (llama.cpp's built-in writes the
    /// assistant's marker after each user message too, so a reply in the
    /// conversation follows two; the model's own template writes one. Both
    /// write a system message only first, where `generate` puts it.)
    Hunyuan,
    /// IBM Granite 3's and 4's (llama.cpp `granite`):
    /// `<|start_of_role|>{role}<|end_of_role|>{content}<|end_of_text|>\n`
    /// per message, then `<|start_of_role|>assistant<|end_of_role|>`.
    Granite,
    /// LG's EXAONE 3, 3.5 and 4 (llama.cpp `exaone3`, `exaone4`, which
    /// differ only in 4's tool role): `[|system|]{system}[|endofturn|]\n`,
    /// `[|user|]{user}\n`, `[|assistant|]{reply}[|endofturn|]\n`, contents
    /// trimmed, then `[|assistant|]`.
    Exaone,
    /// GLM-4's (llama.cpp `chatglm4`): `[gMASK]<sop>` first, then
    /// `<|{role}|>\n{content}` per message, then `<|assistant|>\n`.
    ChatGlm4,
    /// MiniCPM's (llama.cpp `minicpm`): `<用户>{user}<AI>` for a user
    /// message, a system message's or a reply's content alone, contents
    /// trimmed; the reply starts after the last `<AI>`.
    MiniCpm,
    /// ERNIE 4.5's (its files' own template; llama.cpp has no built-in):
    /// `<|begin_of_sentence|>` first, then `{system}\n`, `User: {user}\n`,
    /// `Assistant: {reply}<|end_of_sentence|>` per message, then
    /// `Assistant: `.
    Ernie,
    /// No chat format (config `none`, for base models): the messages'
    /// contents, one per line, are the text the model goes on from.
    Plain,
}

/// The formats, by config name, with a text only their chat templates
/// (GGUF `tokenizer.chat_template`) hold, most specific first. The
/// `[INST]` formats share `[INST]`; [`inst_format`] tells them apart.
const TEMPLATES: [(&str, Template, &str); 24] = [
    ("phi4", Template::Phi4, "<|im_sep|>"),
    ("chatml", Template::ChatMl, "<|im_start|>"),
    ("gemma", Template::Gemma, "<start_of_turn>"),
    ("llama3", Template::Llama3, "<|start_header_id|>"),
    ("phi3", Template::Phi3, "<|end|>"),
    ("chatglm4", Template::ChatGlm4, "[gMASK]<sop>"),
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
    ("hunyuan-dense", Template::Hunyuan, "<｜hy_Assistant｜>"),
    ("deepseek3", Template::DeepSeek3, "<｜Assistant｜>"),
    (
        "deepseek2",
        Template::DeepSeek2,
        "'Assistant: ' + message['content'] + eos_token",
    ),
    ("deepseek", Template::DeepSeekCoder, "<|EOT|>"),
    ("granite", Template::Granite, "<|start_of_role|>"),
    ("exaone3", Template::Exaone, "[|assistant|]"),
    ("exaone4", Template::Exaone, "[|assistant|]"),
    ("minicpm", Template::MiniCpm, "<用户>"),
    ("ernie", Template::Ernie, "<|begin_of_sentence|>"),
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
    /// What the prompt starts with (GLM-4's `[gMASK]<sop>`).
    start: &'static str,
}

impl Turns {
    /// `roles`, contents as they are, the reply after the assistant's
    /// opening.
    const fn new(roles: [(&'static str, &'static str); 3]) -> Self {
        Turns {
            roles,
            trim: false,
            reply: roles[2].0,
            start: "",
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
        let asked = config.get_or("template", "auto");
        let template = match asked {
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
            Template::DeepSeek2 => &["<｜end▁of▁sentence｜>"],
            Template::DeepSeekCoder => &["<|EOT|>"],
            Template::Hunyuan => &[
                "<｜hy_User｜>",
                "<｜hy_Assistant｜>",
                "<｜hy_place▁holder▁no▁2｜>",
                "<｜hy_place▁holder▁no▁3｜>",
            ],
            Template::Granite => &["<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>"],
            Template::Exaone => &["[|user|]", "[|assistant|]", "[|endofturn|]"],
            Template::ChatGlm4 => &["[gMASK]", "<sop>", "<|user|>", "<|assistant|>"],
            // (Its marks are written as text, as llama.cpp writes them,
            // however the vocab splits them.)
            Template::MiniCpm => &[],
            Template::Ernie => &["<|begin_of_sentence|>", "<|end_of_sentence|>"],
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
                // (The name asked for: `exaone3` and `exaone4` are one format.)
                match asked {
                    "auto" => template.name(),
                    name => name,
                },
                names()
            )),
            None => Ok(template),
        }
    }

    /// How the format lays messages out, as llama.cpp writes it
    /// (`llm_chat_apply_template`; ERNIE's as its own template renders).
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
            Template::DeepSeek2 => Turns {
                reply: "Assistant:",
                ..Turns::new([
                    ("", "\n\n"),
                    ("User: ", "\n\n"),
                    ("Assistant: ", "<｜end▁of▁sentence｜>"),
                ])
            },
            Template::DeepSeekCoder => Turns::new([
                ("", ""),
                ("### Instruction:\n", "\n"),
                ("### Response:\n", "\n<|EOT|>\n"),
            ]),
            Template::Hunyuan => Turns::new([
                ("", "<｜hy_place▁holder▁no▁3｜>"),
                ("<｜hy_User｜>", ""),
                ("<｜hy_Assistant｜>", "<｜hy_place▁holder▁no▁2｜>"),
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
            Template::Exaone => Turns {
                trim: true,
                ..Turns::new([
                    ("[|system|]", "[|endofturn|]\n"),
                    ("[|user|]", "\n"),
                    ("[|assistant|]", "[|endofturn|]\n"),
                ])
            },
            Template::ChatGlm4 => Turns {
                start: "[gMASK]<sop>",
                ..Turns::new([
                    ("<|system|>\n", ""),
                    ("<|user|>\n", ""),
                    ("<|assistant|>\n", ""),
                ])
            },
            Template::Ernie => Turns {
                start: "<|begin_of_sentence|>",
                ..Turns::new([
                    ("", "\n"),
                    ("User: ", "\n"),
                    ("Assistant: ", "<|end_of_sentence|>"),
                ])
            },
            Template::MiniCpm => Turns {
                trim: true,
                ..Turns::new([("", ""), ("<用户>", "<AI>"), ("", "")])
            },
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
                prompt.push_str(turns.start);
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
mod tests;
