//! One generation request: its JSON, its settings, and its messages, which
//! the model's chat format (`template`) makes a prompt.

use serde::{Deserialize, Serialize};
use weft_sdk::{Config, Item, StageError};

use crate::sample::Sampling;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    System,
    User,
    Assistant,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Message {
    pub(crate) role: Role,
    pub(crate) content: String,
}

/// The request JSON, as sent.
#[derive(Debug, Deserialize)]
struct Body {
    prompt: Option<String>,
    messages: Option<Vec<Message>>,
    /// Session mode only: the next user message (like `prompt`).
    message: Option<String>,
    /// Session mode only: forget the conversation first.
    reset: Option<bool>,
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    /// Every other field: a dataset row's own columns (an `id`) pass, a
    /// near miss of a field above is refused ([`Body::misspelt`]).
    #[serde(flatten)]
    other: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
}

/// The fields of [`Body`].
const FIELDS: [&str; 8] = [
    "prompt",
    "messages",
    "message",
    "reset",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
];

/// How to generate: the stage's config, overridden per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settings {
    /// The most tokens to generate.
    pub(crate) max_tokens: usize,
    /// Temperature and top-p.
    pub(crate) sampling: Sampling,
    /// The sampler's seed.
    pub(crate) seed: u64,
}

impl Settings {
    /// Greedy decoding of up to `max_tokens`, seed 0 (for tests).
    #[cfg(test)]
    pub(crate) fn greedy(max_tokens: usize) -> Self {
        Settings {
            max_tokens,
            sampling: Sampling {
                temperature: 0.0,
                top_p: 1.0,
            },
            seed: 0,
        }
    }

    /// The defaults from config keys `max_tokens`, `temperature`, `top_p`, `seed`.
    pub(crate) fn from_config(config: &Config) -> Result<Self, String> {
        let settings = Settings {
            max_tokens: config.parse_or("max_tokens", 128)?,
            sampling: Sampling {
                temperature: config.parse_or("temperature", 0.0)?,
                top_p: config.parse_or("top_p", 1.0)?,
            },
            seed: config.parse_or("seed", 0)?,
        };
        settings.check()?;
        Ok(settings)
    }

    /// Rejects values that cannot generate anything sensible.
    fn check(&self) -> Result<(), String> {
        let Sampling { temperature, top_p } = self.sampling;
        if self.max_tokens == 0 {
            return Err("`max_tokens` must be at least 1".into());
        }
        if !(temperature.is_finite() && temperature >= 0.0) {
            return Err(format!(
                "`temperature` ({temperature}) must be 0 (greedy) or more"
            ));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(format!("`top_p` ({top_p}) must be in (0, 1]"));
        }
        Ok(())
    }
}

/// A parsed request: the conversation and its settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub(crate) messages: Vec<Message>,
    pub(crate) settings: Settings,
}

impl Request {
    /// Parses item `index`, filling unset settings from `defaults`.
    pub(crate) fn parse(index: usize, item: &Item, defaults: Settings) -> Result<Self, StageError> {
        let bad = |what: &str| {
            StageError::bad_input(format!(
                "generate: item {index}: {what}; expected JSON {{\"prompt\": string}} or \
                 {{\"messages\": [{{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": string}}, ...]}}"
            ))
        };
        let body: Body = item.parse_json().map_err(|e| bad(e.message()))?;
        if let Some(why) = body.misspelt() {
            return Err(bad(&why));
        }
        if body.message.is_some() || body.reset.is_some() {
            return Err(bad(
                "`message` and `reset` are for chat sessions (config `session=true`)",
            ));
        }
        // Settings first (while `body` is whole); a bad prompt is reported first.
        let settings = body.settings(index, defaults);
        let messages = match (body.prompt, body.messages) {
            (Some(prompt), None) => vec![Message {
                role: Role::User,
                content: prompt,
            }],
            (None, Some(messages)) if !messages.is_empty() => messages,
            (None, Some(_)) => return Err(bad("`messages` is empty")),
            (Some(_), Some(_)) => return Err(bad("give `prompt` or `messages`, not both")),
            (None, None) => return Err(bad("missing `prompt` or `messages`")),
        };
        Ok(Request {
            messages,
            settings: settings?,
        })
    }
}

impl Body {
    /// A field that is not one of [`FIELDS`] but nearly is (`max_token`,
    /// `top-p`, `maxTokens`, `temprature`): a setting the request meant to
    /// give, and would otherwise silently not get. As the message of an
    /// error, with the field meant. Near is: the same but for case, `-` and
    /// `_`; or, for the longer fields, a typo or two away (one for six
    /// letters, two from eight; short names have too many short
    /// neighbours: `seed`, `feed`, `speed`).
    fn misspelt(&self) -> Option<String> {
        self.other.keys().find_map(|key| {
            weft_sdk::spelling::nearest(key, &FIELDS)
                .map(|f| format!("unknown field `{key}`: did you mean `{f}`?"))
        })
    }

    /// The request's settings: `defaults` overridden by what it sets.
    fn settings(&self, index: usize, defaults: Settings) -> Result<Settings, StageError> {
        let settings = Settings {
            max_tokens: self.max_tokens.unwrap_or(defaults.max_tokens),
            sampling: Sampling {
                temperature: self.temperature.unwrap_or(defaults.sampling.temperature),
                top_p: self.top_p.unwrap_or(defaults.sampling.top_p),
            },
            seed: self.seed.unwrap_or(defaults.seed),
        };
        settings
            .check()
            .map_err(|e| StageError::bad_input(format!("generate: item {index}: {e}")))?;
        Ok(settings)
    }
}

/// A parsed request to a chat session (config `session=true`): the next user
/// message, a reset, or both (a reset, then the message opens a new
/// conversation).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TurnRequest {
    /// Forget the conversation before anything else.
    pub(crate) reset: bool,
    /// The user's next message; `None` only for a bare reset.
    pub(crate) message: Option<String>,
    pub(crate) settings: Settings,
}

impl TurnRequest {
    /// Parses item `index` of a session's batch, filling unset settings from
    /// `defaults`.
    pub(crate) fn parse(index: usize, item: &Item, defaults: Settings) -> Result<Self, StageError> {
        let bad = |what: &str| {
            StageError::bad_input(format!(
                "generate: item {index}: {what}; this stage keeps the conversation \
                 (config `session=true`): expected JSON {{\"message\": string}} \
                 (or {{\"prompt\": string}}) and/or {{\"reset\": true}}"
            ))
        };
        let body: Body = item.parse_json().map_err(|e| bad(e.message()))?;
        if let Some(why) = body.misspelt() {
            return Err(bad(&why));
        }
        if body.messages.is_some() {
            return Err(bad(
                "`messages` is not accepted: the session sends its own history",
            ));
        }
        let settings = body.settings(index, defaults)?;
        let message = match (body.message, body.prompt) {
            (Some(_), Some(_)) => return Err(bad("give `message` or `prompt`, not both")),
            (message, prompt) => message.or(prompt),
        };
        let reset = body.reset.unwrap_or(false);
        if message.is_none() && !reset {
            return Err(bad("missing `message`"));
        }
        Ok(TurnRequest {
            reset,
            message,
            settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::template::chatml;

    const DEFAULTS: Settings = Settings {
        max_tokens: 128,
        sampling: Sampling {
            temperature: 0.0,
            top_p: 1.0,
        },
        seed: 0,
    };

    fn parse(value: serde_json::Value) -> Result<Request, StageError> {
        Request::parse(2, &Item::json(&value).unwrap(), DEFAULTS)
    }

    #[test]
    fn a_bare_prompt_is_one_user_message() {
        let request = parse(json!({"prompt": "Hi"})).unwrap();
        assert_eq!(
            chatml(&request.messages),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(request.settings, DEFAULTS);
    }

    #[test]
    fn the_prompt_is_the_one_llama_cpp_was_given() {
        // Made by scripts/reference.py; `prompt` is what the reference run fed.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../host/nn/tests/data/smollm2_reference.json"
        );
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let reference: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let prompts = reference["prompts"].as_array().unwrap();
        assert!(!prompts.is_empty());
        for p in prompts {
            let request = parse(json!({"prompt": p["question"]})).unwrap();
            assert_eq!(chatml(&request.messages), p["prompt"].as_str().unwrap());
        }
    }

    #[test]
    fn messages_keep_their_order_and_roles() {
        let request = parse(json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3?"},
        ]}))
        .unwrap();
        assert_eq!(
            chatml(&request.messages),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n\
             <|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn per_request_settings_override_the_config() {
        let request = parse(
            json!({"prompt": "x", "max_tokens": 5, "temperature": 0.7, "top_p": 0.9, "seed": 42}),
        )
        .unwrap();
        assert_eq!(
            request.settings,
            Settings {
                max_tokens: 5,
                sampling: Sampling {
                    temperature: 0.7,
                    top_p: 0.9
                },
                seed: 42
            }
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let message = |v| parse(v).unwrap_err().message().to_string();
        assert!(message(json!({})).contains("item 2: missing `prompt` or `messages`"));
        assert!(message(json!({"prompt": "a", "messages": []})).contains("not both"));
        assert!(message(json!({"messages": []})).contains("`messages` is empty"));
        assert!(
            message(json!({"messages": [{"role": "robot", "content": "x"}]})).contains("robot")
        );
        assert!(
            message(json!({"prompt": "a", "max_tokens": 0}))
                .contains("`max_tokens` must be at least 1")
        );
        assert!(message(json!({"prompt": "a", "temperature": -1})).contains("`temperature` (-1)"));
        assert!(message(json!({"prompt": "a", "top_p": 0})).contains("`top_p` (0)"));
        let err = Request::parse(0, &Item::text("hello"), DEFAULTS).unwrap_err();
        assert!(matches!(err, StageError::BadInput(_)));
    }

    /// A setting under a near miss of its name is refused, naming the
    /// field meant, not silently left at its default; a dataset row's own
    /// fields pass.
    #[test]
    fn near_misses_of_a_field_are_refused_and_other_fields_pass() {
        let message = |v| parse(v).unwrap_err().message().to_string();
        for (key, meant) in [
            ("max_token", "max_tokens"),
            ("maxTokens", "max_tokens"),
            ("top-p", "top_p"),
            ("temprature", "temperature"),
            ("Prompt", "prompt"),
            ("prompts", "prompt"),
            ("TOP_P", "top_p"),
        ] {
            let why = message(json!({"prompt": "a", key: 4}));
            assert!(
                why.contains(&format!("unknown field `{key}`: did you mean `{meant}`?")),
                "{key}: {why}"
            );
        }
        for key in [
            "id",
            "step",
            "speed",
            "prompt_id",
            "tokens_expected",
            "category",
        ] {
            let r = parse(json!({"prompt": "a", key: 3, "max_tokens": 5})).unwrap();
            assert_eq!(r.settings.max_tokens, 5, "{key}");
        }
        let turn = TurnRequest::parse(0, &Item::json(&json!({"mesage": "Hi"})).unwrap(), DEFAULTS);
        assert!(
            turn.unwrap_err()
                .message()
                .contains("did you mean `message`?")
        );
    }

    #[test]
    fn session_requests_are_a_message_a_reset_or_both() {
        let turn = |v| TurnRequest::parse(1, &Item::json(&v).unwrap(), DEFAULTS);
        let message = |m: &str| Some(m.to_string());
        let t = turn(json!({"message": "Hi", "max_tokens": 8})).unwrap();
        assert_eq!((t.reset, t.message), (false, message("Hi")));
        assert_eq!(t.settings.max_tokens, 8);
        assert_eq!(
            turn(json!({"prompt": "Hi"})).unwrap().message,
            message("Hi")
        );
        let t = turn(json!({"reset": true})).unwrap();
        assert_eq!((t.reset, t.message), (true, None));
        let t = turn(json!({"reset": true, "message": "New"})).unwrap();
        assert_eq!((t.reset, t.message), (true, message("New")));

        let error = |v| turn(v).unwrap_err().message().to_string();
        assert!(error(json!({})).contains("item 1: missing `message`"));
        assert!(error(json!({"reset": false})).contains("missing `message`"));
        assert!(error(json!({"message": "a", "prompt": "b"})).contains("not both"));
        assert!(
            error(json!({"messages": [{"role": "user", "content": "x"}]}))
                .contains("the session sends its own history")
        );
        assert!(error(json!({"message": "a", "top_p": 2})).contains("`top_p` (2)"));
        // Without a session, the session's keys are explained.
        let err = parse(json!({"message": "Hi"})).unwrap_err();
        assert!(err.message().contains("config `session=true`"), "{err:?}");
    }

    #[test]
    fn config_defaults_and_checks() {
        assert_eq!(Settings::from_config(&Config::default()).unwrap(), DEFAULTS);
        let config = Config::from_iter([("top_p", "1.5")]);
        assert!(
            Settings::from_config(&config)
                .unwrap_err()
                .contains("`top_p` (1.5)")
        );
    }
}
