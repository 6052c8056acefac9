//! Chat sessions (config `session=true`): the conversation is kept in the
//! stage's state (for an actor, its own namespace), and each request is the
//! next turn of it.
//!
//! The state key [`HISTORY_KEY`] holds a [`History`] as JSON. A turn sends the
//! kept history plus the new user message (after config `system`, if any) as
//! one ChatML prompt, then appends the message and the reply. The history is
//! bounded by a token budget: while the prompt plus the request's `max_tokens`
//! exceeds config `history_tokens`, the oldest turn (a user message and its
//! reply) is dropped, from the prompt and from the stored history; the system
//! message and the new message are never dropped. Should the model still
//! refuse the prompt as longer than its context (`wasi:nn` `too-large`), older
//! turns are dropped one at a time and the prompt is sent again, on a new
//! execution context, until only the new message is left.
//!
//! The history is written once, after every item of the batch has been
//! answered: a failed request leaves the stored conversation as it was.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tok::Bpe;
use weft_sdk::{StageError, state};

use crate::request::{Message, Role, TurnRequest};
use crate::run::{self, Session, Sink, StepError};
use crate::template::{Template, encode_prompt};

/// The state key that holds the conversation.
pub(crate) const HISTORY_KEY: &str = "history";

/// A conversation, as stored in state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct History {
    /// Turns answered since the conversation began (or was reset), dropped ones
    /// included: the `turn` of the last answer.
    pub(crate) turns: u64,
    /// The messages kept, oldest first: each turn's user message, then the
    /// assistant's reply.
    pub(crate) messages: Vec<Message>,
}

/// A chat session's settings and what it tokenises with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chat<'a> {
    pub(crate) bpe: &'a Bpe,
    pub(crate) template: Template,
    /// Tokens that end a reply.
    pub(crate) stop: &'a [u32],
    /// Config `system`: sent first in every prompt, never dropped.
    pub(crate) system: Option<&'a str>,
    /// Config `history_tokens`: the most tokens a prompt plus its reply
    /// (`max_tokens`) may take before old turns are dropped.
    pub(crate) history_tokens: usize,
}

impl Chat<'_> {
    /// Answers `requests` in order, as consecutive turns of the conversation in
    /// state, each with its own sink; `new_session` gives a fresh execution
    /// context. The history is saved only when every request succeeded.
    pub(crate) fn run_batch<S: Session, K: Sink>(
        &self,
        requests: Vec<(TurnRequest, K)>,
        mut new_session: impl FnMut() -> Result<S, StageError>,
    ) -> Result<Vec<Value>, StageError> {
        // A batch that starts with a reset does not read the old history, so a
        // reset also clears a history that no longer decodes.
        let mut history: History = match requests.first() {
            Some((request, _)) if request.reset => History::default(),
            _ => state::get_json(HISTORY_KEY)?.unwrap_or_default(),
        };
        let mut out = Vec::with_capacity(requests.len());
        for (request, mut sink) in requests {
            out.push(self.turn(&mut history, request, &mut new_session, &mut sink)?);
        }
        if history == History::default() {
            state::delete(HISTORY_KEY);
        } else {
            state::set_json(HISTORY_KEY, &history)?;
        }
        Ok(out)
    }

    /// One request: a reset, then the message's turn, updating `history` only
    /// when the reply was generated.
    fn turn<S: Session>(
        &self,
        history: &mut History,
        request: TurnRequest,
        new_session: &mut impl FnMut() -> Result<S, StageError>,
        sink: &mut impl Sink,
    ) -> Result<Value, StageError> {
        if request.reset {
            *history = History::default();
        }
        let Some(message) = request.message else {
            return Ok(serde_json::json!({ "reset": true, "turn": 0 }));
        };
        let mut messages = history.messages.clone();
        messages.push(Message {
            role: Role::User,
            content: message,
        });
        // Drop whole turns, oldest first, until the prompt and the reply fit
        // the budget (or only the new message is left).
        let mut first = 0;
        let mut prompt = self.prompt(&messages[first..]);
        while prompt.len() + request.settings.max_tokens > self.history_tokens {
            let Some(next) = next_turn(&messages, first) else {
                break;
            };
            first = next;
            prompt = self.prompt(&messages[first..]);
        }
        let completion = loop {
            let mut session = Probe::new(new_session()?);
            let result = run::generate(
                &mut session,
                self.bpe,
                self.stop,
                &prompt,
                request.settings,
                sink,
            );
            match result {
                Ok(completion) => break completion,
                Err(e) => {
                    // Too long for the model itself: drop another turn and retry.
                    match next_turn(&messages, first).filter(|_| session.prompt_too_large) {
                        Some(next) => {
                            first = next;
                            prompt = self.prompt(&messages[first..]);
                        }
                        None => return Err(e),
                    }
                }
            }
        };
        messages.drain(..first);
        messages.push(Message {
            role: Role::Assistant,
            content: completion.text.clone(),
        });
        history.turns += 1;
        history.messages = messages;
        let mut value = serde_json::to_value(&completion)
            .map_err(|e| StageError::fatal(format!("generate: could not encode the reply: {e}")))?;
        value["turn"] = history.turns.into();
        value["history_turns"] = turns_in(&history.messages).into();
        Ok(value)
    }

    /// The token ids of the prompt for `messages`, after the system message.
    fn prompt(&self, messages: &[Message]) -> Vec<u32> {
        let system = self.system.map(|content| Message {
            role: Role::System,
            content: content.to_string(),
        });
        let all: Vec<Message> = system.into_iter().chain(messages.iter().cloned()).collect();
        encode_prompt(self.bpe, self.template, &all)
    }
}

/// Where the prompt starts once the turn at `first` is dropped: the next user
/// message; `None` when `first` is the last (the new) message.
fn next_turn(messages: &[Message], first: usize) -> Option<usize> {
    (first + 1..messages.len()).find(|&i| messages[i].role == Role::User)
}

/// The number of turns (user messages) in `messages`.
fn turns_in(messages: &[Message]) -> usize {
    messages.iter().filter(|m| m.role == Role::User).count()
}

/// A session that notes whether the model refused the prompt itself as too
/// long for its context.
struct Probe<S> {
    inner: S,
    fed: bool,
    prompt_too_large: bool,
}

impl<S> Probe<S> {
    fn new(inner: S) -> Self {
        Probe {
            inner,
            fed: false,
            prompt_too_large: false,
        }
    }
}

impl<S: Session> Session for Probe<S> {
    fn feed(&mut self, ids: &[u32]) -> Result<Vec<f32>, StepError> {
        let result = self.inner.feed(ids);
        if !self.fed {
            self.prompt_too_large = matches!(result, Err(StepError::ContextFull(_)));
        }
        self.fed = true;
        result
    }
}

#[cfg(test)]
mod tests;
