use std::cell::RefCell;

use serde_json::json;
use weft_sdk::Item;

use super::*;
use crate::request::Settings;
use crate::template::chatml;

/// Specials, then one token per character used in the tests (no merges): a
/// prompt's length is easy to reason about.
fn bpe() -> Bpe {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .map(String::from)
        .to_vec();
    tokens.extend(
        ('a'..='z')
            .chain('A'..='Z')
            .chain('0'..='9')
            .map(String::from),
    );
    // GPT-2's byte-level spelling of space and newline.
    tokens.extend(["Ġ", "Ċ", "?", ".", "!"].map(String::from));
    let json = json!({"tokens": tokens, "merges": [], "eos_id": 2});
    Bpe::from_json(json.to_string().as_bytes()).unwrap()
}

const STOP: [u32; 2] = [2, 0];

fn settings(max_tokens: usize) -> Settings {
    Settings::greedy(max_tokens)
}

fn chat(bpe: &Bpe) -> Chat<'_> {
    Chat {
        bpe,
        template: Template::ChatMl,
        stop: &STOP,
        system: None,
        history_tokens: 1024,
    }
}

/// A greedy model that answers `reply` then `<|im_end|>`, recording every
/// prompt it is given. It refuses prompts over `window` tokens, and fails
/// after its first token when `fail` is set.
struct Fake<'a> {
    prompts: &'a RefCell<Vec<Vec<u32>>>,
    reply: Vec<u32>,
    at: usize,
    window: usize,
    fail: bool,
    vocab: usize,
}

impl Session for Fake<'_> {
    fn feed(&mut self, ids: &[u32]) -> Result<Vec<f32>, StepError> {
        if self.at == 0 {
            if ids.len() > self.window {
                return Err(StepError::ContextFull(format!(
                    "{} tokens exceed the context of {}",
                    ids.len(),
                    self.window
                )));
            }
            self.prompts.borrow_mut().push(ids.to_vec());
        } else if self.fail {
            return Err(StepError::Failed(StageError::retryable(
                "generate: model `fake`: compute failed: timeout",
            )));
        }
        let id = self.reply.get(self.at).copied().unwrap_or(2);
        self.at += 1;
        let mut logits = vec![0.0; self.vocab];
        logits[id as usize] = 1.0;
        Ok(logits)
    }
}

/// Tokens streamed, per sink.
#[derive(Default)]
struct Streamed(Vec<u32>);

impl Sink for Streamed {
    fn token(&mut self, _piece: &str, id: u32) {
        self.0.push(id);
    }
    fn progress(&mut self, _generated: usize, _max_tokens: usize) {}
}

impl Sink for &mut Streamed {
    fn token(&mut self, piece: &str, id: u32) {
        (**self).token(piece, id);
    }
    fn progress(&mut self, generated: usize, max_tokens: usize) {
        (**self).progress(generated, max_tokens);
    }
}

/// The model's side of a test: what it replies and how it fails.
struct Model {
    prompts: RefCell<Vec<Vec<u32>>>,
    window: usize,
    fail: bool,
}

impl Model {
    fn new() -> Self {
        Model {
            prompts: RefCell::new(Vec::new()),
            window: usize::MAX,
            fail: false,
        }
    }

    /// Sends one request item to the session, the model replying `reply`.
    fn send(
        &self,
        chat: &Chat<'_>,
        body: Value,
        reply: &str,
        max_tokens: usize,
    ) -> Result<Value, StageError> {
        let request = TurnRequest::parse(0, &Item::json(&body).unwrap(), settings(max_tokens))?;
        let reply = chat.bpe.encode(reply);
        let mut out = chat.run_batch(vec![(request, Streamed::default())], || {
            Ok(Fake {
                prompts: &self.prompts,
                reply: reply.clone(),
                at: 0,
                window: self.window,
                fail: self.fail,
                vocab: chat.bpe.len(),
            })
        })?;
        Ok(out.remove(0))
    }

    /// The last prompt the model was given, as text.
    fn last_prompt(&self, bpe: &Bpe) -> String {
        bpe.decode(self.prompts.borrow().last().unwrap())
    }
}

fn stored() -> Option<History> {
    state::get_json(HISTORY_KEY).unwrap()
}

fn user(content: &str) -> Message {
    Message {
        role: Role::User,
        content: content.into(),
    }
}

fn assistant(content: &str) -> Message {
    Message {
        role: Role::Assistant,
        content: content.into(),
    }
}

#[test]
fn the_history_grows_and_every_turn_sends_it() {
    let bpe = bpe();
    let chat = chat(&bpe);
    let model = Model::new();
    let first = model
        .send(&chat, json!({"message": "My name is Ada."}), "OK.", 16)
        .unwrap();
    assert_eq!(
        (&first["text"], &first["turn"], &first["history_turns"]),
        (&json!("OK."), &json!(1), &json!(1)),
        "{first}"
    );
    assert_eq!(first["finish_reason"], "stop");
    assert_eq!(model.last_prompt(&bpe), chatml(&[user("My name is Ada.")]));
    // `prompt` is accepted as the message too.
    let second = model
        .send(&chat, json!({"prompt": "What is my name?"}), "Ada.", 16)
        .unwrap();
    assert_eq!(
        (&second["turn"], &second["history_turns"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(
        model.last_prompt(&bpe),
        chatml(&[
            user("My name is Ada."),
            assistant("OK."),
            user("What is my name?")
        ])
    );
    assert!(
        second["prompt_tokens"].as_u64().unwrap() > first["prompt_tokens"].as_u64().unwrap() + 5
    );
    assert_eq!(
        stored().unwrap(),
        History {
            turns: 2,
            messages: vec![
                user("My name is Ada."),
                assistant("OK."),
                user("What is my name?"),
                assistant("Ada."),
            ],
        }
    );
}

#[test]
fn the_system_message_comes_first_and_is_not_stored() {
    let bpe = bpe();
    let chat = Chat {
        system: Some("Be brief."),
        ..chat(&bpe)
    };
    let model = Model::new();
    model
        .send(&chat, json!({"message": "Hi"}), "Hi", 8)
        .unwrap();
    model
        .send(&chat, json!({"message": "Bye"}), "Bye", 8)
        .unwrap();
    assert_eq!(
        model.last_prompt(&bpe),
        "<|im_start|>system\nBe brief.<|im_end|>\n".to_string()
            + &chatml(&[user("Hi"), assistant("Hi"), user("Bye")])
    );
    assert_eq!(stored().unwrap().messages.len(), 4);
}

#[test]
fn reset_forgets_the_conversation() {
    let bpe = bpe();
    let chat = chat(&bpe);
    let model = Model::new();
    model
        .send(&chat, json!({"message": "One"}), "A", 8)
        .unwrap();
    model
        .send(&chat, json!({"message": "Two"}), "B", 8)
        .unwrap();
    let reset = model.send(&chat, json!({"reset": true}), "", 8).unwrap();
    assert_eq!(reset, json!({"reset": true, "turn": 0}));
    assert_eq!(
        stored(),
        None,
        "a reset conversation leaves nothing in state"
    );
    assert_eq!(
        model.prompts.borrow().len(),
        2,
        "a bare reset generates nothing"
    );
    let v = model
        .send(&chat, json!({"message": "Three"}), "C", 8)
        .unwrap();
    assert_eq!(v["turn"], 1);
    assert_eq!(model.last_prompt(&bpe), chatml(&[user("Three")]));
    // A reset with a message starts over with that message.
    let v = model
        .send(&chat, json!({"reset": true, "message": "Four"}), "D", 8)
        .unwrap();
    assert_eq!((&v["turn"], &v["history_turns"]), (&json!(1), &json!(1)));
    assert_eq!(model.last_prompt(&bpe), chatml(&[user("Four")]));
    assert_eq!(stored().unwrap().messages, [user("Four"), assistant("D")]);
}

#[test]
fn old_turns_are_dropped_to_fit_the_token_budget() {
    let bpe = bpe();
    // One token per character: `<|im_start|>user\nQ1<|im_end|>\n` is 10 tokens,
    // `<|im_start|>assistant\nR1<|im_end|>\n` 15, the closing
    // `<|im_start|>assistant\n` 11, and the system message `S` 11.
    let plain = chat(&bpe);
    assert_eq!(plain.prompt(&[user("Q1")]).len(), 21);
    assert_eq!(
        plain
            .prompt(&[user("Q1"), assistant("R1"), user("Q2")])
            .len(),
        46
    );
    // Room for the system message, the new message, one old turn and
    // `max_tokens` (4): 11 + 21 + 25 + 4 = 61, but not two old turns (86).
    let budget = 70;
    let chat = Chat {
        history_tokens: budget,
        system: Some("S"),
        ..plain
    };
    let model = Model::new();
    for n in 1..=5 {
        let v = model
            .send(
                &chat,
                json!({"message": format!("Q{n}")}),
                &format!("R{n}"),
                4,
            )
            .unwrap();
        assert_eq!(v["turn"], n, "{v}");
        let kept = if n == 1 { 1 } else { 2 };
        assert_eq!(v["history_turns"], kept, "turn {n}: {v}");
        assert!(
            v["prompt_tokens"].as_u64().unwrap() as usize + 4 <= budget,
            "{v}"
        );
    }
    let prompt = model.last_prompt(&bpe);
    assert!(
        prompt.starts_with("<|im_start|>system\nS<|im_end|>\n"),
        "{prompt}"
    );
    assert!(prompt.contains("Q4") && prompt.contains("R4") && prompt.contains("Q5"));
    assert!(!prompt.contains("Q3"), "{prompt}");
    let history = stored().unwrap();
    assert_eq!(history.turns, 5);
    assert_eq!(
        history.messages,
        [user("Q4"), assistant("R4"), user("Q5"), assistant("R5")],
        "dropped turns leave the stored history too"
    );

    // A message too long for the budget on its own is still sent, alone.
    let v = model
        .send(&chat, json!({"message": "Q".repeat(200)}), "R", 4)
        .unwrap();
    assert_eq!((&v["turn"], &v["history_turns"]), (&json!(6), &json!(1)));
}

#[test]
fn a_prompt_the_model_refuses_drops_old_turns_and_retries() {
    let bpe = bpe();
    let chat = chat(&bpe);
    let mut model = Model::new();
    for n in 1..=3 {
        model
            .send(
                &chat,
                json!({"message": format!("Q{n}")}),
                &format!("R{n}"),
                4,
            )
            .unwrap();
    }
    // Within the budget, but the model's context holds one old turn only.
    model.window = 50;
    let v = model
        .send(&chat, json!({"message": "Q4"}), "R4", 4)
        .unwrap();
    assert_eq!((&v["turn"], &v["history_turns"]), (&json!(4), &json!(2)));
    assert_eq!(
        model.last_prompt(&bpe),
        chatml(&[user("Q3"), assistant("R3"), user("Q4")])
    );
    // When even the new message alone does not fit, it is bad input, and
    // the history stays as it was.
    let before = stored().unwrap();
    model.window = 5;
    let err = model
        .send(&chat, json!({"message": "Q5"}), "R5", 4)
        .unwrap_err();
    assert!(
        matches!(&err, StageError::BadInput(m) if m.contains("does not fit the model's context")),
        "{err:?}"
    );
    assert_eq!(stored().unwrap(), before);
}

#[test]
fn a_failed_turn_leaves_the_history_unchanged() {
    let bpe = bpe();
    let chat = chat(&bpe);
    let mut model = Model::new();
    model
        .send(&chat, json!({"message": "Hello"}), "Hi", 8)
        .unwrap();
    let before = stored().unwrap();
    // The model fails after streaming a token.
    model.fail = true;
    let err = model
        .send(&chat, json!({"message": "Dangling?"}), "No", 8)
        .unwrap_err();
    assert!(matches!(err, StageError::Retryable(_)), "{err:?}");
    assert_eq!(stored().unwrap(), before, "no dangling user message");
    // A failed reset-and-message does not reset either.
    model
        .send(&chat, json!({"reset": true, "message": "Again"}), "No", 8)
        .unwrap_err();
    assert_eq!(stored().unwrap(), before);
    // The retry continues the conversation as if the failure never happened.
    model.fail = false;
    let v = model
        .send(&chat, json!({"message": "Dangling?"}), "No", 8)
        .unwrap();
    assert_eq!(v["turn"], 2);
    assert_eq!(
        model.last_prompt(&bpe),
        chatml(&[user("Hello"), assistant("Hi"), user("Dangling?")])
    );
}

#[test]
fn a_batch_is_consecutive_turns_saved_only_when_all_succeed() {
    let bpe = bpe();
    let chat = chat(&bpe);
    let prompts = RefCell::new(Vec::new());
    let requests = |messages: &[&str]| -> Vec<(TurnRequest, Streamed)> {
        messages
            .iter()
            .map(|m| {
                let item = Item::json(&json!({ "message": m })).unwrap();
                (
                    TurnRequest::parse(0, &item, settings(8)).unwrap(),
                    Streamed::default(),
                )
            })
            .collect()
    };
    let fake = |fail: bool| {
        let mut calls = 0;
        let prompts = &prompts;
        let vocab = bpe.len();
        let reply = bpe.encode("ok");
        move || {
            calls += 1;
            Ok::<_, StageError>(Fake {
                prompts,
                reply: reply.clone(),
                at: 0,
                window: usize::MAX,
                // The second turn of the batch fails.
                fail: fail && calls == 2,
                vocab,
            })
        }
    };
    let err = chat
        .run_batch(requests(&["One", "Two"]), fake(true))
        .unwrap_err();
    assert!(matches!(err, StageError::Retryable(_)));
    assert_eq!(stored(), None, "the first turn is not saved alone");
    let out = chat
        .run_batch(requests(&["One", "Two"]), fake(false))
        .unwrap();
    assert_eq!((&out[0]["turn"], &out[1]["turn"]), (&json!(1), &json!(2)));
    assert_eq!(
        bpe.decode(prompts.borrow().last().unwrap()),
        chatml(&[user("One"), assistant("ok"), user("Two")])
    );
    assert_eq!(stored().unwrap().turns, 2);
}

#[test]
fn streamed_tokens_are_the_reply() {
    let bpe = bpe();
    let chat = chat(&bpe);
    let prompts = RefCell::new(Vec::new());
    let item = Item::json(&json!({"message": "Hi"})).unwrap();
    let request = TurnRequest::parse(0, &item, settings(8)).unwrap();
    let reply = bpe.encode("Hey");
    let mut sink = Streamed::default();
    chat.run_batch(vec![(request, &mut sink)], || {
        Ok(Fake {
            prompts: &prompts,
            reply: reply.clone(),
            at: 0,
            window: usize::MAX,
            fail: false,
            vocab: bpe.len(),
        })
    })
    .unwrap();
    assert_eq!(sink.0, reply);
}

#[test]
fn a_history_that_does_not_decode_is_fatal() {
    state::set(HISTORY_KEY, b"\"not a conversation\"");
    let bpe = bpe();
    let err = Model::new()
        .send(&chat(&bpe), json!({"message": "Hi"}), "x", 4)
        .unwrap_err();
    assert!(matches!(err, StageError::Fatal(_)), "{err:?}");
    // A reset clears it.
    let model = Model::new();
    model
        .send(&chat(&bpe), json!({"reset": true}), "", 4)
        .unwrap();
    let v = model
        .send(&chat(&bpe), json!({"message": "Hi"}), "x", 4)
        .unwrap();
    assert_eq!(v["turn"], 1);
}
