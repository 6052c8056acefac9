//! The generation loop, apart from `wasi:nn` and the host, so that it tests
//! natively against a scripted model.

use serde::Serialize;
use tok::Bpe;
use weft_sdk::StageError;

use crate::request::Settings;
use crate::sample::{Pcg32, sample};

/// Why a model step failed.
#[derive(Debug)]
pub(crate) enum StepError {
    /// The context window is full (`wasi:nn` `too-large`): the prompt is too long,
    /// or the completion reached the window's end.
    ContextFull(String),
    /// Anything else, already classified for the host.
    Failed(StageError),
}

/// A model session holding its own KV cache: feed it tokens, get the logits that
/// follow the last one.
pub(crate) trait Session {
    /// Appends `ids` to the sequence and returns the next-token logits.
    fn feed(&mut self, ids: &[u32]) -> Result<Vec<f32>, StepError>;
}

/// Where tokens and progress go as they are made.
pub(crate) trait Sink {
    /// Token `id`, which completed `piece` (empty while a character is cut short).
    fn token(&mut self, piece: &str, id: u32);
    /// `generated` of at most `max_tokens` tokens made so far.
    fn progress(&mut self, generated: usize, max_tokens: usize);
}

/// How often, in tokens, progress is reported.
const PROGRESS_EVERY: usize = 8;

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FinishReason {
    /// The model produced an end token.
    Stop,
    /// `max_tokens`, or the end of the context window.
    Length,
}

/// A finished completion: the output item's JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Completion {
    pub(crate) text: String,
    pub(crate) tokens: usize,
    pub(crate) prompt_tokens: usize,
    pub(crate) finish_reason: FinishReason,
}

/// Generates from `prompt` until a `stop` token, `max_tokens` or a full
/// context; the stop token itself is neither emitted nor counted.
pub(crate) fn generate(
    session: &mut impl Session,
    bpe: &Bpe,
    stop: &[u32],
    prompt: &[u32],
    settings: Settings,
    sink: &mut impl Sink,
) -> Result<Completion, StageError> {
    let mut logits = session.feed(prompt).map_err(|e| match e {
        StepError::ContextFull(message) => StageError::bad_input(format!(
            "generate: the prompt ({} tokens) does not fit the model's context: {message}; \
             send a shorter prompt or fewer messages",
            prompt.len()
        )),
        StepError::Failed(e) => e,
    })?;
    let mut rng = Pcg32::new(settings.seed);
    let mut decoder = bpe.stream_decoder();
    let mut text = String::new();
    let mut generated = 0;
    let finish_reason = loop {
        let id = sample(&logits, settings.sampling, &mut rng) as u32;
        if stop.contains(&id) {
            break FinishReason::Stop;
        }
        generated += 1;
        let piece = decoder.push(id);
        text.push_str(&piece);
        sink.token(&piece, id);
        if generated % PROGRESS_EVERY == 0 {
            sink.progress(generated, settings.max_tokens);
        }
        if generated == settings.max_tokens {
            break FinishReason::Length;
        }
        logits = match session.feed(&[id]) {
            Ok(logits) => logits,
            Err(StepError::ContextFull(_)) => break FinishReason::Length,
            Err(StepError::Failed(e)) => return Err(e),
        };
    };
    text.push_str(&decoder.finish());
    Ok(Completion {
        text,
        tokens: generated,
        prompt_tokens: prompt.len(),
        finish_reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens: 0 `<|im_end|>`, then `a`, `b`, then the two halves of `é`.
    fn bpe() -> Bpe {
        Bpe::from_json(r#"{"tokens": ["<|im_end|>", "a", "b", "Ã", "©"], "merges": []}"#.as_bytes())
            .unwrap()
    }

    /// Greedily yields `script` in order (one-hot logits), recording its inputs;
    /// fails with a full context after `window` tokens in all.
    struct Scripted {
        script: Vec<u32>,
        fed: Vec<Vec<u32>>,
        window: usize,
    }

    impl Session for Scripted {
        fn feed(&mut self, ids: &[u32]) -> Result<Vec<f32>, StepError> {
            self.fed.push(ids.to_vec());
            if self.fed.iter().map(Vec::len).sum::<usize>() > self.window {
                return Err(StepError::ContextFull("context is 4 tokens".into()));
            }
            let mut logits = vec![0.0; 5];
            logits[self.script[self.fed.len() - 1] as usize] = 1.0;
            Ok(logits)
        }
    }

    fn scripted(script: &[u32]) -> Scripted {
        Scripted {
            script: script.to_vec(),
            fed: Vec::new(),
            window: usize::MAX,
        }
    }

    #[derive(Default)]
    struct Recorded {
        tokens: Vec<(String, u32)>,
        progress: Vec<usize>,
    }

    impl Sink for Recorded {
        fn token(&mut self, piece: &str, id: u32) {
            self.tokens.push((piece.to_string(), id));
        }
        fn progress(&mut self, generated: usize, _max_tokens: usize) {
            self.progress.push(generated);
        }
    }

    fn settings(max_tokens: usize) -> Settings {
        Settings::greedy(max_tokens)
    }

    #[test]
    fn stops_at_the_end_token_and_streams_whole_characters() {
        let mut session = scripted(&[1, 3, 4, 2, 0]);
        let mut sink = Recorded::default();
        let done = generate(&mut session, &bpe(), &[0], &[2, 2], settings(10), &mut sink).unwrap();
        assert_eq!(done.text, "aéb");
        assert_eq!((done.tokens, done.prompt_tokens), (4, 2));
        assert_eq!(done.finish_reason, FinishReason::Stop);
        let pieces: Vec<(&str, u32)> = sink
            .tokens
            .iter()
            .map(|(p, id)| (p.as_str(), *id))
            .collect();
        assert_eq!(pieces, [("a", 1), ("", 3), ("é", 4), ("b", 2)]);
        // The prompt goes in whole, then one token at a time.
        assert_eq!(
            session.fed,
            [vec![2, 2], vec![1], vec![3], vec![4], vec![2]]
        );
    }

    #[test]
    fn stops_at_max_tokens_without_an_extra_step() {
        let mut session = scripted(&[1; 20]);
        let mut sink = Recorded::default();
        let done = generate(&mut session, &bpe(), &[0], &[2], settings(16), &mut sink).unwrap();
        assert_eq!(
            (done.tokens, done.finish_reason),
            (16, FinishReason::Length)
        );
        assert_eq!(done.text, "a".repeat(16));
        assert_eq!(session.fed.len(), 16);
        assert_eq!(sink.progress, [8, 16]);
    }

    #[test]
    fn a_prompt_too_long_is_bad_input() {
        let mut session = Scripted {
            window: 1,
            ..scripted(&[1])
        };
        let err = generate(
            &mut session,
            &bpe(),
            &[0],
            &[2, 2],
            settings(4),
            &mut Recorded::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, StageError::BadInput(m) if m.contains("prompt (2 tokens)")
                && m.contains("context is 4 tokens") && m.ends_with("send a shorter prompt or fewer messages")),
            "{err:?}"
        );
    }

    #[test]
    fn a_full_context_ends_the_completion() {
        let mut session = Scripted {
            window: 3,
            ..scripted(&[1, 1, 1, 1])
        };
        let done = generate(
            &mut session,
            &bpe(),
            &[0],
            &[2],
            settings(10),
            &mut Recorded::default(),
        )
        .unwrap();
        assert_eq!(
            (done.text.as_str(), done.finish_reason),
            ("aaa", FinishReason::Length)
        );
    }

    #[test]
    fn other_failures_pass_through() {
        struct Broken;
        impl Session for Broken {
            fn feed(&mut self, _: &[u32]) -> Result<Vec<f32>, StepError> {
                Err(StepError::Failed(StageError::retryable("timeout: busy")))
            }
        }
        let err = generate(
            &mut Broken,
            &bpe(),
            &[0],
            &[1],
            settings(3),
            &mut Recorded::default(),
        )
        .unwrap_err();
        assert_eq!(err, StageError::retryable("timeout: busy"));
    }

    #[test]
    fn a_cut_character_at_the_end_is_replaced() {
        let mut session = scripted(&[3, 0]);
        let done = generate(
            &mut session,
            &bpe(),
            &[0],
            &[1],
            settings(5),
            &mut Recorded::default(),
        )
        .unwrap();
        assert_eq!(done.text, "\u{FFFD}");
    }
}
