//! [`StreamDecoder`]: token ids to text, one at a time, in whole characters.

use crate::Bpe;

/// Decodes ids as they are generated, returning text only once it forms
/// complete UTF-8: a byte-level token can end in the middle of a character,
/// whose remaining bytes come with the next tokens.
///
/// # Example
///
/// ```
/// // `ð`, `Ł`, `ĺ`, `Ĥ` spell the four bytes of 😂 (F0 9F 98 82).
/// let json = r#"{"tokens": ["ðŁ", "ĺ", "Ĥ", "Ġ!"], "merges": []}"#;
/// let bpe = tok::Bpe::from_json(json.as_bytes())?;
/// let mut decoder = bpe.stream_decoder();
/// assert_eq!(decoder.push(0), "");
/// assert_eq!(decoder.push(1), "");
/// assert_eq!(decoder.push(2), "😂");
/// assert_eq!(decoder.push(3), " !");
/// assert_eq!(decoder.finish(), "");
/// # Ok::<(), tok::Error>(())
/// ```
#[derive(Debug)]
pub struct StreamDecoder<'b> {
    bpe: &'b Bpe,
    /// Bytes of a character still incomplete (at most 3).
    pending: Vec<u8>,
    /// Whether a token has been pushed.
    started: bool,
}

impl<'b> StreamDecoder<'b> {
    /// A decoder with nothing pending.
    pub(crate) fn new(bpe: &'b Bpe) -> Self {
        StreamDecoder {
            bpe,
            pending: Vec::new(),
            started: false,
        }
    }

    /// Adds token `id` and returns the text it completes: empty while a character
    /// is still cut short. Bytes that can never be UTF-8 become U+FFFD at once.
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(r#"{"tokens": ["hi", "ÿ"], "merges": []}"#.as_bytes())?;
    /// let mut decoder = bpe.stream_decoder();
    /// assert_eq!(decoder.push(0), "hi");
    /// assert_eq!(decoder.push(1), "\u{FFFD}", "0xFF never starts a character");
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn push(&mut self, id: u32) -> String {
        self.bpe.token_bytes(id, !self.started, &mut self.pending);
        self.started = true;
        let mut text = String::new();
        let mut rest = self.pending.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // Checked by `from_utf8` just above.
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // Cut short: wait for the next token.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        text
    }

    /// Ends the stream: whatever is still pending, as U+FFFD.
    ///
    /// # Example
    ///
    /// ```
    /// let bpe = tok::Bpe::from_json(r#"{"tokens": ["Ã"], "merges": []}"#.as_bytes())?;
    /// let mut decoder = bpe.stream_decoder();
    /// assert_eq!(decoder.push(0), "");
    /// assert_eq!(decoder.finish(), "\u{FFFD}");
    /// # Ok::<(), tok::Error>(())
    /// ```
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}
