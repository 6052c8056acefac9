//! [`Item`]: the unit of work that flows between stages.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StageError;

/// Content type set by [`Item::json`].
const JSON: &str = "application/json";
/// Content type set by [`Item::bincode`].
const BINCODE: &str = "application/x-bincode";
/// Content type set by [`Item::text`].
const TEXT: &str = "text/plain; charset=utf-8";

/// One unit of work: a request body, a dataset row, a chunk of a document.
///
/// A plain value mirroring the WIT `item` record, so stages never see the
/// generated bindings. The payload is opaque bytes; `content_type` says how to
/// read it, and the helpers below cover the common encodings.
///
/// # Example
///
/// ```
/// use weft_sdk::Item;
///
/// let item = Item::bytes("image/png", vec![0x89, b'P', b'N', b'G']).with_key("img-7");
/// assert_eq!(item.key.as_deref(), Some("img-7"));
/// assert_eq!(item.content_type, "image/png");
/// assert_eq!(item.payload.len(), 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Item {
    /// Caller-chosen identity carried from input to output (row id, chunk index).
    pub key: Option<String>,
    /// MIME type of `payload`, e.g. `application/json`.
    pub content_type: String,
    /// The bytes themselves.
    pub payload: Vec<u8>,
}

impl Item {
    /// An item with the given content type and payload and no key.
    ///
    /// # Example
    ///
    /// ```
    /// let item = weft_sdk::Item::bytes("application/octet-stream", [1u8, 2, 3]);
    /// assert_eq!(item.payload, vec![1, 2, 3]);
    /// assert!(item.key.is_none());
    /// ```
    pub fn bytes(content_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Item {
            key: None,
            content_type: content_type.into(),
            payload: payload.into(),
        }
    }

    /// A UTF-8 text item (`text/plain; charset=utf-8`).
    ///
    /// # Example
    ///
    /// ```
    /// let item = weft_sdk::Item::text("hello");
    /// assert_eq!(item.content_type, "text/plain; charset=utf-8");
    /// assert_eq!(item.as_str().unwrap(), "hello");
    /// ```
    pub fn text(text: impl Into<String>) -> Self {
        Item::bytes(TEXT, text.into().into_bytes())
    }

    /// Serialises `value` as JSON (`application/json`).
    ///
    /// Fails only when `value`'s `Serialize` impl does (e.g. a map with non-string
    /// keys): that is a bug in the stage, so the error is [`StageError::Fatal`].
    ///
    /// # Example
    ///
    /// ```
    /// let item = weft_sdk::Item::json(&serde_json::json!({ "text": "hi" }))?;
    /// assert_eq!(item.content_type, "application/json");
    /// assert_eq!(item.payload, br#"{"text":"hi"}"#);
    /// # Ok::<(), weft_sdk::StageError>(())
    /// ```
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, StageError> {
        let payload = serde_json::to_vec(value).map_err(|e| {
            StageError::fatal(format!(
                "could not encode {} as JSON: {e}",
                std::any::type_name::<T>()
            ))
        })?;
        Ok(Item::bytes(JSON, payload))
    }

    /// Serialises `value` with bincode's standard config (`application/x-bincode`):
    /// compact and fast between stages that share the Rust type.
    ///
    /// # Example
    ///
    /// ```
    /// let item = weft_sdk::Item::bincode(&(7u32, "seven"))?;
    /// assert_eq!(item.content_type, "application/x-bincode");
    /// assert_eq!(item.parse_bincode::<(u32, String)>()?, (7, "seven".to_string()));
    /// # Ok::<(), weft_sdk::StageError>(())
    /// ```
    pub fn bincode<T: Serialize + ?Sized>(value: &T) -> Result<Self, StageError> {
        let payload =
            bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| {
                StageError::fatal(format!(
                    "could not encode {} with bincode: {e}",
                    std::any::type_name::<T>()
                ))
            })?;
        Ok(Item::bytes(BINCODE, payload))
    }

    /// Sets the key, replacing any previous one.
    ///
    /// # Example
    ///
    /// ```
    /// let item = weft_sdk::Item::text("x").with_key("row-42");
    /// assert_eq!(item.key.as_deref(), Some("row-42"));
    /// ```
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Copies `other`'s key (or its absence): the usual way to make an output item
    /// answer the input it came from.
    ///
    /// # Example
    ///
    /// ```
    /// use weft_sdk::Item;
    ///
    /// let input = Item::text("in").with_key("row-1");
    /// let output = Item::text("out").with_key_from(&input);
    /// assert_eq!(output.key, input.key);
    /// ```
    #[must_use]
    pub fn with_key_from(mut self, other: &Item) -> Self {
        self.key.clone_from(&other.key);
        self
    }

    /// Decodes the payload as JSON into `T`.
    ///
    /// A payload that does not match is the caller's mistake, so the error is
    /// [`StageError::BadInput`], naming the key, the content type, the expected
    /// type and where serde stopped.
    ///
    /// # Example
    ///
    /// ```
    /// use weft_sdk::{Item, StageError};
    ///
    /// #[derive(serde::Deserialize, Debug)]
    /// struct Doc {
    ///     text: String,
    /// }
    ///
    /// let ok = Item::bytes("application/json", r#"{"text":"hi"}"#);
    /// assert_eq!(ok.parse_json::<Doc>()?.text, "hi");
    ///
    /// let bad = Item::text("not json").with_key("row-9");
    /// let err = bad.parse_json::<Doc>().unwrap_err();
    /// assert!(matches!(err, StageError::BadInput(_)));
    /// assert!(err.message().contains("row-9"), "{err}");
    /// # Ok::<(), StageError>(())
    /// ```
    pub fn parse_json<T: DeserializeOwned>(&self) -> Result<T, StageError> {
        serde_json::from_slice(&self.payload).map_err(|e| self.json_error::<T>(e))
    }

    /// The `BadInput` for JSON that `T` could not be read from: not JSON at
    /// all, JSON of another shape, or (the mistake of a caller who meant
    /// several items) an array of them.
    fn json_error<T: DeserializeOwned>(&self, err: serde_json::Error) -> StageError {
        let why = without_rust_names(&err.to_string());
        match serde_json::from_slice::<serde_json::Value>(&self.payload) {
            Err(_) => self.decode_error("JSON", err),
            // Several of what the stage reads, sent as one item.
            Ok(serde_json::Value::Array(values))
                if values
                    .first()
                    .is_some_and(|v| serde_json::from_value::<T>(v.clone()).is_ok()) =>
            {
                StageError::bad_input(format!(
                    "{} is a JSON array of {} values where this stage reads one ({why}): \
                     an item is one value; to send several, send one per request, or run \
                     a batch job over them",
                    self.described(),
                    values.len(),
                ))
            }
            // Valid JSON, yet a syntax error: serde read a struct from the
            // array's first values and found more ("trailing characters").
            Ok(serde_json::Value::Array(values))
                if err.classify() == serde_json::error::Category::Syntax =>
            {
                StageError::bad_input(format!(
                    "{} is a JSON array of {} values, which this stage does not read: an \
                     item is one value; to send several, send one per request, or run a \
                     batch job over them",
                    self.described(),
                    values.len(),
                ))
            }
            Ok(_) => StageError::bad_input(format!(
                "{} is JSON, but not of the shape this stage reads: {why}",
                self.described()
            )),
        }
    }

    /// Decodes a payload written by [`Item::bincode`] into `T`; a mismatch is
    /// [`StageError::BadInput`], as for [`Item::parse_json`].
    ///
    /// # Example
    ///
    /// ```
    /// let item = weft_sdk::Item::bincode(&vec![1.5f32, 2.5])?;
    /// assert_eq!(item.parse_bincode::<Vec<f32>>()?, vec![1.5, 2.5]);
    /// assert!(weft_sdk::Item::text("").parse_bincode::<Vec<f32>>().is_err());
    /// # Ok::<(), weft_sdk::StageError>(())
    /// ```
    pub fn parse_bincode<T: DeserializeOwned>(&self) -> Result<T, StageError> {
        bincode::serde::decode_from_slice(&self.payload, bincode::config::standard())
            .map(|(value, _read)| value)
            .map_err(|e| self.decode_error("bincode", e))
    }

    /// The payload as UTF-8 text; invalid UTF-8 is [`StageError::BadInput`].
    ///
    /// # Example
    ///
    /// ```
    /// use weft_sdk::Item;
    ///
    /// assert_eq!(Item::text("héllo").as_str()?, "héllo");
    /// assert!(Item::bytes("text/plain", vec![0xff]).as_str().is_err());
    /// # Ok::<(), weft_sdk::StageError>(())
    /// ```
    pub fn as_str(&self) -> Result<&str, StageError> {
        std::str::from_utf8(&self.payload).map_err(|e| self.decode_error("UTF-8 text", e))
    }

    /// Builds the `BadInput` message shared by the decoders. It is what a
    /// caller over HTTP reads: the item and what is wrong with it, not the
    /// stage's Rust type.
    fn decode_error(&self, format: &str, err: impl std::fmt::Display) -> StageError {
        StageError::bad_input(format!("{} is not valid {format}: {err}", self.described()))
    }

    /// The item as the decoders' messages name it: key, content type, size.
    fn described(&self) -> String {
        let key = match &self.key {
            Some(key) => format!("item {key:?}"),
            None => "item".to_string(),
        };
        format!(
            "{key} (content-type {:?}, {} bytes)",
            self.content_type,
            self.payload.len()
        )
    }
}

/// serde's message with the stage's Rust types said as JSON: `expected
/// struct Doc` is `expected a JSON object` to a caller over HTTP.
fn without_rust_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("expected struct ") {
        // (`expected struct variant E::V` names an enum's case: left be.)
        if rest[at..].starts_with("expected struct variant") {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
            continue;
        }
        out.push_str(&rest[..at]);
        out.push_str("expected a JSON object");
        rest = &rest[at + "expected struct ".len()..];
        let name = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        rest = &rest[name..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_unicode() {
        let item = Item::json(&serde_json::json!({"text": "école ΣΑΣ"})).unwrap();
        let value: serde_json::Value = item.parse_json().unwrap();
        assert_eq!(value["text"], "école ΣΑΣ");
    }

    #[test]
    /// What a caller reads: the item's key and content type, not the
    /// stage's Rust type (`Vec<u32>` meant nothing to a user over HTTP).
    fn decode_error_names_key_and_content_type_not_the_rust_type() {
        let item = Item::bytes("text/csv", "a,b").with_key("k1");
        let StageError::BadInput(message) = item.parse_json::<Vec<u32>>().unwrap_err() else {
            panic!("expected BadInput");
        };
        assert!(message.contains("\"k1\""), "{message}");
        assert!(message.contains("text/csv"), "{message}");
        assert!(message.contains("is not valid JSON: "), "{message}");
        assert!(!message.contains("Vec<u32>"), "{message}");
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        text: String,
    }

    /// `["a","b"]` to a stage reading `{"text"}` said only "not valid JSON:
    /// trailing characters" (serde reads a struct from an array too).
    #[test]
    fn an_array_where_one_item_is_read_says_so() {
        let item = Item::bytes(JSON, r#"[{"text":"a"},{"text":"b"}]"#);
        let message = item.parse_json::<Doc>().unwrap_err().message().to_string();
        assert!(message.contains("JSON array of 2 values"), "{message}");
        assert!(message.contains("one per request"), "{message}");
        assert!(!message.contains("not valid JSON"), "{message}");
        assert!(!message.contains("Doc"), "{message}");
        // A stage that reads arrays still reads them, and one whose array
        // holds something else is told that, not to send one per request.
        let ok: Vec<Doc> = item.parse_json().unwrap();
        assert_eq!(ok.len(), 2);
        // `["a","b"]` to a stage reading `{"text"}`: serde read the struct
        // from the array and said only "trailing characters".
        let strings = Item::bytes(JSON, r#"["a","b"]"#);
        let message = strings
            .parse_json::<Doc>()
            .unwrap_err()
            .message()
            .to_string();
        assert!(message.contains("JSON array of 2 values"), "{message}");
        assert!(!message.contains("trailing"), "{message}");
        let wrong = Item::bytes(JSON, r#"[{"txt":1}]"#);
        let message = wrong
            .parse_json::<Vec<Doc>>()
            .unwrap_err()
            .message()
            .to_string();
        assert!(
            message.contains("not of the shape") && message.contains("missing field `text`"),
            "{message}"
        );
    }

    #[test]
    fn the_stage_s_struct_names_are_said_as_json() {
        let item = Item::bytes(JSON, "42");
        let message = item.parse_json::<Doc>().unwrap_err().message().to_string();
        assert!(message.contains("expected a JSON object"), "{message}");
        assert!(!message.contains("Doc"), "{message}");
    }

    #[test]
    fn json_of_another_shape_is_not_called_invalid() {
        let item = Item::bytes(JSON, r#"{"txt": "a"}"#);
        let message = item.parse_json::<Doc>().unwrap_err().message().to_string();
        assert!(
            message.contains("is JSON, but not of the shape"),
            "{message}"
        );
        assert!(message.contains("missing field `text`"), "{message}");
    }

    #[test]
    fn bincode_mismatch_is_bad_input() {
        let item = Item::bincode(&1u8).unwrap();
        let err = item.parse_bincode::<String>().unwrap_err();
        assert!(matches!(err, StageError::BadInput(_)), "{err:?}");
    }
}
