//! `normalize`: cleans up text so that later stages see one spelling of it.
//!
//! Input, per item: JSON `{"text": "...", ...}`. Output, per item, keeping the
//! key and the item's other fields (a dataset row's `id` goes through): JSON
//! `{"text": "<normalised>", ...}` where normalising is, in order,
//!
//! 1. Unicode NFKC, so compatibility forms fold (`ﬁ` → `fi`, full-width `Ａ` → `A`,
//!    no-break space → space);
//! 2. Unicode lowercasing with [`str::to_lowercase`] (`ÉCOLE` → `école`, and a
//!    word-final `Σ` becomes `ς`); config `lowercase=false` skips this step;
//! 3. every run of Unicode whitespace collapsed to one ASCII space, and the ends
//!    trimmed.
//!
//! An item that is not JSON or has no string `text` fails the batch with
//! `bad-input` naming the item's index.

use unicode_normalization::UnicodeNormalization;
use weft_sdk::{Config, Item, Stage, StageError};

/// The stage; its only setting is whether to lowercase.
#[derive(Debug)]
pub struct Normalize {
    lowercase: bool,
}

impl Stage for Normalize {
    fn init(config: Config) -> Result<Self, String> {
        config.expect_keys("normalize", &["lowercase"])?;
        let lowercase = config
            .parse_or("lowercase", true)
            .map_err(|e| format!("normalize: {e}"))?;
        Ok(Normalize { lowercase })
    }

    fn process(&mut self, batch: Vec<Item>) -> Result<Vec<Item>, StageError> {
        batch
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let bad = |why: &str| {
                    StageError::bad_input(format!(
                        "normalize: item {index}: expected JSON {{\"text\": string}}: {why}"
                    ))
                };
                // Read as a map, not a struct with serde's `flatten` (which
                // buffers every row through an intermediate form).
                let mut fields: serde_json::Map<String, serde_json::Value> =
                    item.parse_json().map_err(|e| bad(e.message()))?;
                let text = match fields.get("text") {
                    Some(serde_json::Value::String(text)) => normalize(text, self.lowercase),
                    Some(other) => return Err(bad(&format!("`text` is {other}, not a string"))),
                    None => return Err(bad("missing field `text`")),
                };
                fields.insert("text".into(), text.into());
                Ok(Item::json(&fields)?.with_key_from(&item))
            })
            .collect()
    }
}

weft_sdk::export_stage!(Normalize);

/// NFKC, then (optionally) lowercase, then collapse whitespace: NFKC first because
/// it turns exotic spaces into plain ones for the last step.
pub fn normalize(text: &str, lowercase: bool) -> String {
    let folded: String = text.nfkc().collect();
    let cased = if lowercase {
        folded.to_lowercase()
    } else {
        folded
    };
    let mut out = String::with_capacity(cased.len());
    for word in cased.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use weft_sdk::testing::Harness;

    use super::*;

    fn run(config: &[(&str, &str)], text: &str) -> String {
        let mut harness = Harness::<Normalize>::new(config);
        let input = Item::json(&json!({ "text": text })).unwrap();
        let out = harness.process(vec![input]).unwrap();
        let value: Value = out[0].parse_json().unwrap();
        value["text"].as_str().unwrap().to_string()
    }

    #[test]
    fn lowercases_unicode_and_final_sigma() {
        assert_eq!(run(&[], "ÉCOLE"), "école");
        assert_eq!(run(&[], "ΣΑΣ"), "σας");
        assert_eq!(run(&[], "ΟΔΟΣ ΣΑΣ"), "οδος σας");
    }

    #[test]
    fn applies_nfkc_before_lowercasing() {
        // Ligature, full-width letters, decomposed é, superscript two.
        assert_eq!(run(&[], "ﬁle ＡＢＣ e\u{301}t\u{e9} x²"), "file abc été x2");
    }

    #[test]
    fn collapses_and_trims_unicode_whitespace() {
        let text = "\u{3000} a\t\n b\u{a0}\u{2003}c \u{2028}";
        assert_eq!(run(&[], text), "a b c");
        assert_eq!(run(&[], " \n\t "), "");
    }

    #[test]
    fn lowercase_false_keeps_case() {
        assert_eq!(
            run(&[("lowercase", "false")], "  Hello   WORLD "),
            "Hello WORLD"
        );
    }

    #[test]
    fn bad_lowercase_value_fails_init() {
        let err = Harness::<Normalize>::try_new(&[("lowercase", "nope")]).unwrap_err();
        assert!(err.contains("lowercase") && err.contains("nope"), "{err}");
    }

    #[test]
    fn keeps_keys_and_order() {
        let mut harness = Harness::<Normalize>::new(&[]);
        let batch = vec![
            Item::json(&json!({"text": "A"})).unwrap().with_key("k1"),
            Item::json(&json!({"text": "B"})).unwrap(),
        ];
        let out = harness.process(batch).unwrap();
        assert_eq!(out[0].key.as_deref(), Some("k1"));
        assert_eq!(out[1].key, None);
        assert_eq!(out[1].content_type, "application/json");
        assert_eq!(out[1].payload, br#"{"text":"b"}"#);
    }

    /// A row's `id` (and any other field) was dropped, so batch output could
    /// not be joined back to its rows.
    #[test]
    fn passes_other_fields_on() {
        let mut harness = Harness::<Normalize>::new(&[]);
        let item = Item::json(&json!({"id": 7, "text": " Hi  THERE", "tags": ["a"]})).unwrap();
        let out = harness.process(vec![item]).unwrap();
        let value: Value = out[0].parse_json().unwrap();
        assert_eq!(value, json!({"id": 7, "text": "hi there", "tags": ["a"]}));
    }

    #[test]
    fn rejects_non_json_and_missing_text_with_the_index() {
        let mut harness = Harness::<Normalize>::new(&[]);
        let ok = Item::json(&json!({"text": "fine"})).unwrap();
        for bad in [
            Item::text("plain"),
            Item::json(&json!({"body": "x"})).unwrap(),
        ] {
            let err = harness.process(vec![ok.clone(), bad]).unwrap_err();
            let StageError::BadInput(message) = err else {
                panic!("expected bad-input, got {err:?}");
            };
            assert!(message.contains("item 1"), "{message}");
            assert!(message.contains("\"text\""), "{message}");
        }
    }
}
