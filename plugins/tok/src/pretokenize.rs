//! The byte-level BPE pre-tokenizers, by hand: the pieces the GPT-2 regex
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! finds, following llama.cpp's `unicode_regex_split_custom_gpt2` step by
//! step, and those of Llama 3's (and Qwen2's, DBRX's), following its
//! `unicode_regex_split_custom_llama3`, and of GPT-4o's and Tekken's, whose
//! words split where their case changes, as llama.cpp's `std::regex` finds
//! them in its category-collapsed text, and llama.cpp's `default` sequence
//! of four regexes; DeepSeek's sequences are in [`deepseek`].

use crate::unicode::{Class, is_default_punctuation};

mod deepseek;

/// Which pre-tokenizer a vocabulary was trained with.
///
/// # Example
///
/// ```
/// use tok::PreTokenizer;
///
/// assert_eq!(PreTokenizer::Gpt2.split("it's 2024!"), ["it", "'s", " 2024", "!"]);
/// assert_eq!(PreTokenizer::SmolLm.split("it's 2024!"), ["it", "'s", " ", "2", "0", "2", "4", "!"]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// The GPT-2 regex alone (llama.cpp `gpt2`).
    Gpt2,
    /// llama.cpp's `default`, what it runs for a byte-level GGUF without
    /// `tokenizer.ggml.pre` (files converted before it named
    /// pre-tokenizers): four regexes, each splitting the pieces of the one
    /// before. Runs of punctuation (`[\p{P}\$\+<=>\^~\|]+`: every ASCII
    /// symbol but `` ` ``) apart from the rest, the GPT-2 regex, runs of
    /// `\p{N}` apart, then ASCII digits in threes (`[0-9][0-9][0-9]`).
    Default,
    /// Every `\p{N}` character on its own first, then the GPT-2 regex on the text
    /// between (llama.cpp `smollm`, also StarCoder's; HF
    /// `Digits(individual_digits)` then `ByteLevel`).
    SmolLm,
    /// Llama 3's regex (llama.cpp `llama-bpe`):
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    /// Its vocabularies also take a piece that is a token whole before
    /// merging ([`PreTokenizer::ignores_merges`]) and start with BOS.
    Llama3,
    /// Qwen2's (and Qwen3's; llama.cpp `qwen2`): Llama 3's regex with
    /// digits one by one (`\p{N}` for `\p{N}{1,3}`).
    Qwen2,
    /// Llama 3's regex alone (llama.cpp `dbrx`, `smaug-bpe`: DBRX's and
    /// OLMo 2's GPT-4-style vocabularies; `glm4`, `chatglm-bpe`: GLM-4's):
    /// merges always run, no BOS by default.
    Dbrx,
    /// GPT-4o's (llama.cpp `gpt-4o`: Phi-4-mini, Llama 4), where a word
    /// splits where its case changes:
    /// `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
    /// with the cases as llama.cpp reads them: `A`-`Z` upper, `a`-`z`
    /// lower, every other letter both, and marks no part of a word
    /// (HF `tokenizers` reads the categories themselves, which differs
    /// only past ASCII: `ÉCOLE` is one piece there, `É` + `COLE` here).
    Gpt4o,
    /// Mistral's Tekken (llama.cpp `tekken`: Mistral NeMo, Mistral Small
    /// 3, Pixtral): GPT-4o's cased words without contractions, and digits
    /// one by one. Like Llama 3's vocabularies, a piece that is a token
    /// whole is that token, and a text starts with BOS.
    Tekken,
    /// Falcon's (llama.cpp `falcon`: Falcon 7B and 40B, Falcon-Mamba):
    /// `default`'s sequence with `` ` `` among the punctuation and without
    /// the runs of `\p{N}`: runs of punctuation apart from the rest, the
    /// GPT-2 regex, then ASCII digits in threes.
    Falcon,
    /// DeepSeek LLM's (llama.cpp `deepseek-llm`: DeepSeek LLM, DeepSeek-MoE,
    /// DeepSeek-V2 and V2-Lite), six regexes in turn: line breaks apart,
    /// runs of cased letters and of ASCII and fullwidth symbols (each after
    /// a space, if one comes first), trailing whitespace, runs of the scripts
    /// from U+0800 to the CJK ideographs and of Hangul, then of numbers.
    DeepSeekLlm,
    /// DeepSeek Coder's (llama.cpp `deepseek-coder`): line breaks apart,
    /// runs of letters and of punctuation (after a space, if one comes
    /// first), of the same scripts as [`PreTokenizer::DeepSeekLlm`], then
    /// digits one by one.
    DeepSeekCoder,
    /// DeepSeek-V3's (llama.cpp `deepseek-v3`: DeepSeek-V3 and R1; also
    /// `hunyuan-dense`): numbers in threes, runs of CJK ideographs and kana
    /// apart, then Llama 3's kind of words, where an ASCII symbol takes the
    /// ASCII letters after it and marks go on with letters.
    DeepSeekV3,
}

impl PreTokenizer {
    /// The pre-tokenizer llama.cpp uses for a GGUF `tokenizer.ggml.pre` name,
    /// for the names whose regex `tok` runs.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(tok::PreTokenizer::from_name("smollm"), Some(tok::PreTokenizer::SmolLm));
    /// assert_eq!(tok::PreTokenizer::from_name("llama-bpe"), Some(tok::PreTokenizer::Llama3));
    /// assert_eq!(tok::PreTokenizer::from_name("kimi-k2"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "default" => Some(PreTokenizer::Default),
            "gpt2" | "gpt-2" | "mpt" | "olmo" | "jais" | "trillion" | "phi-2" | "exaone4"
            | "a.x-4.0" | "mellum" | "gigachat" | "modern-bert" | "roberta-bpe" | "jina-es"
            | "jina-de" | "jina-v1-en" | "jina-v2-es" | "jina-v2-de" | "jina-v2-code" => {
                Some(PreTokenizer::Gpt2)
            }
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => Some(PreTokenizer::SmolLm),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => Some(PreTokenizer::Llama3),
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "kormo" | "f2llmv2" | "stablelm2" => {
                Some(PreTokenizer::Qwen2)
            }
            "dbrx" | "smaug-bpe" | "glm4" | "chatglm-bpe" => Some(PreTokenizer::Dbrx),
            "gpt-4o" | "llama4" | "kanana2" | "talkie" => Some(PreTokenizer::Gpt4o),
            "tekken" => Some(PreTokenizer::Tekken),
            "falcon" => Some(PreTokenizer::Falcon),
            "deepseek-llm" => Some(PreTokenizer::DeepSeekLlm),
            "deepseek-coder" => Some(PreTokenizer::DeepSeekCoder),
            "deepseek-v3" | "hunyuan-dense" => Some(PreTokenizer::DeepSeekV3),
            _ => None,
        }
    }

    /// Whether a piece that is a token as a whole is that token, merges
    /// or not (llama.cpp's `ignore_merges`, HF's `ignore_merges`): Llama 3
    /// and Tekken.
    pub fn ignores_merges(self) -> bool {
        matches!(self, PreTokenizer::Llama3 | PreTokenizer::Tekken)
    }

    /// Whether its vocabularies start a text with BOS unless their file
    /// says otherwise (llama.cpp's default for the name): Llama 3 and
    /// Tekken.
    pub fn adds_bos(self) -> bool {
        matches!(self, PreTokenizer::Llama3 | PreTokenizer::Tekken)
    }

    /// Splits `text` into the pieces BPE then runs on, in order; the pieces
    /// concatenate back to `text`.
    ///
    /// # Example
    ///
    /// ```
    /// let pieces = tok::PreTokenizer::Gpt2.split("Hello  world\n");
    /// assert_eq!(pieces, ["Hello", " ", " world", "\n"]);
    /// ```
    pub fn split(self, text: &str) -> Vec<&str> {
        let mut pieces = Vec::new();
        match self {
            PreTokenizer::Gpt2 => split_gpt2(text, &mut pieces),
            PreTokenizer::Default => split_default(text, false, &mut pieces),
            PreTokenizer::Falcon => split_default(text, true, &mut pieces),
            PreTokenizer::SmolLm => {
                let mut start = 0;
                for (at, c) in text.char_indices() {
                    if Class::is_number(c) {
                        split_gpt2(&text[start..at], &mut pieces);
                        pieces.push(&text[at..at + c.len_utf8()]);
                        start = at + c.len_utf8();
                    }
                }
                split_gpt2(&text[start..], &mut pieces);
            }
            PreTokenizer::Llama3 | PreTokenizer::Dbrx => split_llama3(text, 3, &mut pieces),
            PreTokenizer::Qwen2 => split_llama3(text, 1, &mut pieces),
            PreTokenizer::Gpt4o => split_cased(text, true, 3, &mut pieces),
            PreTokenizer::Tekken => split_cased(text, false, 1, &mut pieces),
            PreTokenizer::DeepSeekLlm => deepseek::split_llm(text, &mut pieces),
            PreTokenizer::DeepSeekCoder => deepseek::split_coder(text, &mut pieces),
            PreTokenizer::DeepSeekV3 => deepseek::split_v3(text, &mut pieces),
        }
        pieces
    }
}

/// A text's characters, looked at by index; past either end is `None`.
struct Chars<'a> {
    text: &'a str,
    chars: Vec<(usize, char)>,
}

impl<'a> Chars<'a> {
    fn new(text: &'a str) -> Self {
        Chars {
            text,
            chars: text.char_indices().collect(),
        }
    }

    fn at(&self, i: usize) -> Option<char> {
        self.chars.get(i).map(|&(_, c)| c)
    }

    /// How many characters the text has.
    fn len(&self) -> usize {
        self.chars.len()
    }

    /// Where character `i` starts in the text (its length past the end).
    fn offset(&self, i: usize) -> usize {
        self.chars.get(i).map_or(self.text.len(), |&(at, _)| at)
    }

    /// The end of the run of characters `is` takes from `pos`.
    fn run(&self, mut pos: usize, is: impl Fn(char) -> bool) -> usize {
        while self.at(pos).is_some_and(&is) {
            pos += 1;
        }
        pos
    }

    fn class(&self, i: usize) -> Option<Class> {
        self.at(i).map(Class::of)
    }

    fn newline(&self, i: usize) -> bool {
        matches!(self.at(i), Some('\r' | '\n'))
    }

    /// The end of a contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`,
    /// `'d`; in any case when `any_case`) starting at `pos`, if one does.
    fn contraction(&self, pos: usize, any_case: bool) -> Option<usize> {
        if self.at(pos) != Some('\'') {
            return None;
        }
        let fold = |c: char| if any_case { c.to_ascii_lowercase() } else { c };
        match (self.at(pos + 1).map(fold), self.at(pos + 2).map(fold)) {
            (Some('s' | 't' | 'm' | 'd'), _) => Some(pos + 2),
            (Some('r' | 'v'), Some('e')) | (Some('l'), Some('l')) => Some(pos + 3),
            _ => None,
        }
    }

    /// The length of the run of whitespace at `pos`, and the end of its
    /// last line break, if it has one.
    fn spaces(&self, pos: usize) -> (usize, Option<usize>) {
        let (mut spaces, mut past_newline) = (0, None);
        while self.class(pos + spaces) == Some(Class::Space) {
            if self.newline(pos + spaces) {
                past_newline = Some(pos + spaces + 1);
            }
            spaces += 1;
        }
        (spaces, past_newline)
    }

    /// `\s+(?!\S)` leaves the last space of a run before a non-space to
    /// start the next piece; `\s+` takes a run that ends the text.
    fn space_run_end(&self, pos: usize, spaces: usize) -> usize {
        if spaces > 1 && pos + spaces < self.chars.len() {
            pos + spaces - 1
        } else {
            pos + spaces.max(1)
        }
    }

    /// The end of GPT-4o's `[UPPER]*[lower]+` at `pos`, else of its
    /// `[UPPER]+[lower]*`, if either matches: the first as a backtracking
    /// regex finds it, giving back upper-case letters from the longest run
    /// until a lower-case one follows.
    fn cased_word(&self, pos: usize) -> Option<usize> {
        let letter = |i: usize, not: fn(&char) -> bool| {
            self.class(i) == Some(Class::Letter) && !self.at(i).is_some_and(|c| not(&c))
        };
        let upper = |i| letter(i, char::is_ascii_lowercase);
        let lower = |i| letter(i, char::is_ascii_uppercase);
        let lower_run = |mut i| {
            while lower(i) {
                i += 1;
            }
            i
        };
        let mut run = pos;
        while upper(run) {
            run += 1;
        }
        match (pos..=run).rev().find(|&i| lower(i)) {
            Some(first_lower) => Some(lower_run(first_lower)),
            None => (run > pos).then_some(run),
        }
    }

    /// The Llama 3 regex's alternatives after its words, from `pos`:
    /// `\p{N}{1,digits}`, ` ?[^\s\p{L}\p{N}]+[\r\n]*` (GPT-4o's
    /// `[\r\n/]*` with `slash`: a `/` after the line breaks goes on with
    /// them), `\s*[\r\n]+`, `\s+(?!\S)` and `\s+`.
    fn digits_symbols_spaces(&self, pos: usize, digits: usize, slash: bool) -> usize {
        if self.class(pos) == Some(Class::Number) {
            let mut end = pos + 1;
            while end - pos < digits && self.class(end) == Some(Class::Number) {
                end += 1;
            }
            return end;
        }
        let lead = if self.at(pos) == Some(' ') {
            pos + 1
        } else {
            pos
        };
        if self.class(lead) == Some(Class::Other) {
            let mut end = lead;
            while self.class(end) == Some(Class::Other) {
                end += 1;
            }
            while self.newline(end) || (slash && self.at(end) == Some('/')) {
                end += 1;
            }
            return end;
        }
        // `\s*[\r\n]+` takes a run up to its last line break;
        // `\s+(?!\S)` and `\s+` as in GPT-2's.
        match self.spaces(pos) {
            (_, Some(past_newline)) => past_newline,
            (spaces, None) => self.space_run_end(pos, spaces),
        }
    }

    /// Splits the text into pieces, each from where the last ended to
    /// where `end_of_piece` says (always past its start).
    fn split(&self, pieces: &mut Vec<&'a str>, end_of_piece: impl Fn(&Self, usize) -> usize) {
        let mut pos = 0;
        while pos < self.len() {
            let end = end_of_piece(self, pos);
            pieces.push(self.slice(pos, end));
            pos = end;
        }
    }

    /// Characters `from..to` of the text.
    fn slice(&self, from: usize, to: usize) -> &'a str {
        &self.text[self.offset(from)..self.offset(to)]
    }
}

/// Appends the GPT-2 regex's matches in `text` to `pieces`. Lookahead stops at
/// the end of `text`, as llama.cpp's does at the end of an earlier split.
fn split_gpt2<'a>(text: &'a str, pieces: &mut Vec<&'a str>) {
    let chars = Chars::new(text);
    chars.split(pieces, |t, pos| {
        // 's|'t|'re|'ve|'m|'ll|'d
        if let Some(end) = t.contraction(pos, false) {
            return end;
        }
        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
        let lead = if t.at(pos) == Some(' ') { pos + 1 } else { pos };
        if let Some(kind @ (Class::Letter | Class::Number | Class::Other)) = t.class(lead) {
            let mut end = lead;
            while t.class(end) == Some(kind) {
                end += 1;
            }
            return end;
        }
        let (spaces, _) = t.spaces(pos);
        t.space_run_end(pos, spaces)
    });
}

/// Appends llama.cpp's `default` pieces of `text` ([`PreTokenizer::Default`])
/// to `pieces`, or with `falcon` its `falcon` ones ([`PreTokenizer::Falcon`]:
/// `` ` `` a punctuation, no runs of numbers apart): as its
/// `unicode_regex_split` runs a sequence of regexes, each regex's matches
/// and the text between them become the pieces the next one splits.
fn split_default<'a>(text: &'a str, falcon: bool, pieces: &mut Vec<&'a str>) {
    let (mut punct, mut gpt2, mut numbers) = (Vec::new(), Vec::new(), Vec::new());
    let punctuation = |c| (falcon && c == '`') || is_default_punctuation(c);
    split_runs(text, punctuation, &mut punct);
    for piece in punct {
        split_gpt2(piece, &mut gpt2);
    }
    if falcon {
        numbers = gpt2;
    } else {
        for piece in gpt2 {
            split_runs(piece, Class::is_number, &mut numbers);
        }
    }
    for piece in numbers {
        split_threes(piece, pieces);
    }
}

/// Appends the runs of characters `is` takes in `text`, and the text
/// between them, to `pieces` (what a regex `[...]+` and the unmatched
/// text split into).
fn split_runs<'a>(text: &'a str, is: impl Fn(char) -> bool, pieces: &mut Vec<&'a str>) {
    let mut start = 0;
    let mut inside = None;
    for (at, c) in text.char_indices() {
        let now = is(c);
        if inside.is_some_and(|was| was != now) {
            pieces.push(&text[start..at]);
            start = at;
        }
        inside = Some(now);
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
}

/// Appends `[0-9][0-9][0-9]`'s matches in `text` (leftmost first), and the
/// text between them, to `pieces`. (ASCII digits are single bytes, which
/// no other character's UTF-8 contains.)
fn split_threes<'a>(text: &'a str, pieces: &mut Vec<&'a str>) {
    let bytes = text.as_bytes();
    let (mut start, mut at) = (0, 0);
    while at + 3 <= bytes.len() {
        if bytes[at..at + 3].iter().all(u8::is_ascii_digit) {
            if start < at {
                pieces.push(&text[start..at]);
            }
            pieces.push(&text[at..at + 3]);
            at += 3;
            start = at;
        } else {
            at += 1;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
}

/// Appends the Llama 3 regex's matches in `text` to `pieces`, with runs of
/// at most `digits` digits (3 for Llama 3, 1 for Qwen2).
fn split_llama3<'a>(text: &'a str, digits: usize, pieces: &mut Vec<&'a str>) {
    let chars = Chars::new(text);
    chars.split(pieces, |t, pos| {
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if let Some(end) = t.contraction(pos, true) {
            return end;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        let class = t.class(pos);
        if !t.newline(pos)
            && class != Some(Class::Number)
            && (class == Some(Class::Letter) || t.class(pos + 1) == Some(Class::Letter))
        {
            let mut end = pos + 1;
            while t.class(end) == Some(Class::Letter) {
                end += 1;
            }
            return end;
        }
        t.digits_symbols_spaces(pos, digits, false)
    });
}

/// Appends the GPT-4o regex's matches in `text` to `pieces` (Tekken's:
/// without `contractions`, with runs of at most `digits` digits).
fn split_cased<'a>(text: &'a str, contractions: bool, digits: usize, pieces: &mut Vec<&'a str>) {
    let chars = Chars::new(text);
    chars.split(pieces, |t, pos| {
        // [^\r\n\p{L}\p{N}]? then a cased word, then a contraction
        let class = t.class(pos);
        let word = if class == Some(Class::Letter) {
            t.cased_word(pos)
        } else if class != Some(Class::Number) && !t.newline(pos) {
            t.cased_word(pos + 1)
        } else {
            None
        };
        if let Some(end) = word {
            let contraction = t.contraction(end, true).filter(|_| contractions);
            return contraction.unwrap_or(end);
        }
        t.digits_symbols_spaces(pos, digits, true)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt2(text: &str) -> Vec<&str> {
        PreTokenizer::Gpt2.split(text)
    }

    #[test]
    fn contractions_letters_numbers_symbols() {
        assert_eq!(
            gpt2("I'm here, they'll see"),
            ["I", "'m", " here", ",", " they", "'ll", " see"]
        );
        assert_eq!(gpt2("'re're x'"), ["'re", "'re", " x", "'"]);
        assert_eq!(gpt2("don't"), ["don", "'t"]);
        assert_eq!(
            gpt2("DON'T"),
            ["DON", "'", "T"],
            "case-sensitive, as in GPT-2"
        );
        assert_eq!(gpt2("abc123def"), ["abc", "123", "def"]);
        assert_eq!(gpt2(" ?!x"), [" ?!", "x"]);
        assert_eq!(gpt2("über straße"), ["über", " straße"]);
        assert_eq!(gpt2("a'"), ["a", "'"]);
    }

    #[test]
    fn whitespace_runs() {
        assert_eq!(gpt2("a   b"), ["a", "  ", " b"]);
        assert_eq!(gpt2("a\n\nb"), ["a", "\n", "\n", "b"]);
        assert_eq!(gpt2("a \n b"), ["a", " \n", " b"]);
        assert_eq!(gpt2("a  "), ["a", "  "]);
        assert_eq!(gpt2("\n"), ["\n"]);
        assert_eq!(gpt2(" "), [" "]);
        assert_eq!(gpt2(""), Vec::<&str>::new());
        assert_eq!(gpt2("x \t!"), ["x", " ", "\t", "!"]);
    }

    /// llama.cpp's `default` sequence: punctuation runs first (so a
    /// contraction's apostrophe splits from its letters, and a space stays
    /// before them), digits apart, ASCII ones in threes from the left.
    #[test]
    fn default_runs_its_four_regexes_in_turn() {
        let default = |t| PreTokenizer::Default.split(t);
        assert_eq!(default("it's"), ["it", "'", "s"]);
        assert_eq!(default("Hello, world!!"), ["Hello", ",", " world", "!!"]);
        assert_eq!(default("a (b)"), ["a", " ", "(", "b", ")"]);
        assert_eq!(default("x 1234567"), ["x", " ", "123", "456", "7"]);
        assert_eq!(default("v2.0.12"), ["v", "2", ".", "0", ".", "12"]);
        assert_eq!(
            default("a `b"),
            ["a", " `", "b"],
            "a backtick is no punctuation here"
        );
        assert_eq!(default("a $b |c"), ["a", " ", "$", "b", " ", "|", "c"]);
        assert_eq!(
            default("wait\u{2026} \u{ab}q\u{bb}"),
            ["wait", "\u{2026}", " ", "\u{ab}", "q", "\u{bb}"]
        );
        assert_eq!(
            default("\u{661}\u{662}\u{663}\u{664}"),
            ["\u{661}\u{662}\u{663}\u{664}"],
            "not ASCII: whole"
        );
        assert_eq!(default("ab12c"), ["ab", "12", "c"]);
        assert_eq!(default(""), Vec::<&str>::new());
        assert_eq!(
            PreTokenizer::from_name("default"),
            Some(PreTokenizer::Default)
        );
    }

    /// llama.cpp's `falcon`: `default`'s, `` ` `` punctuation too, and
    /// digits left with a space before them.
    #[test]
    fn falcon_isolates_backticks_and_keeps_spaces_on_numbers() {
        let falcon = |t| PreTokenizer::Falcon.split(t);
        assert_eq!(falcon("`a` it's"), ["`", "a", "`", " it", "'", "s"]);
        assert_eq!(falcon("x 1234567"), ["x", " ", "123", "456", "7"]);
        assert_eq!(falcon("x ١٢٣٤"), ["x", " ١٢٣٤"], "no number runs apart");
        assert_eq!(
            PreTokenizer::from_name("falcon"),
            Some(PreTokenizer::Falcon)
        );
    }

    #[test]
    fn smollm_isolates_digits_and_bounds_lookahead() {
        let smol = |t| PreTokenizer::SmolLm.split(t);
        assert_eq!(smol("x 12"), ["x", " ", "1", "2"]);
        assert_eq!(smol("a  1"), ["a", "  ", "1"], "the run ends its split");
        assert_eq!(smol("v2.0"), ["v", "2", ".", "0"]);
    }

    #[test]
    fn llama3_and_qwen2_letters_digits_and_line_breaks() {
        let llama3 = |t| PreTokenizer::Llama3.split(t);
        let qwen2 = |t| PreTokenizer::Qwen2.split(t);
        assert_eq!(llama3("DON'T stop"), ["DON", "'T", " stop"], "any case");
        assert_eq!(llama3("12345 x"), ["123", "45", " x"]);
        assert_eq!(qwen2("12345 x"), ["1", "2", "3", "4", "5", " x"]);
        assert_eq!(llama3("(hello) \tworld"), ["(hello", ")", " ", "\tworld"]);
        assert_eq!(llama3("a!?\n\nb"), ["a", "!?\n\n", "b"]);
        assert_eq!(llama3("a  \n \n  b"), ["a", "  \n \n", " ", " b"]);
        assert_eq!(llama3("a \n"), ["a", " \n"]);
        assert_eq!(llama3("x   "), ["x", "   "]);
        assert_eq!(
            llama3("'x"),
            ["'x"],
            "not a contraction: a leading non-letter"
        );
        assert_eq!(llama3("\r\nx"), ["\r\n", "x"]);
    }

    #[test]
    fn gpt4o_splits_where_the_case_changes() {
        let gpt4o = |t| PreTokenizer::Gpt4o.split(t);
        assert_eq!(gpt4o("HelloWorld"), ["Hello", "World"]);
        assert_eq!(gpt4o("iPhone XMLHttp"), ["i", "Phone", " XMLHttp"]);
        assert_eq!(gpt4o("ABC def"), ["ABC", " def"]);
        assert_eq!(gpt4o("don't DON'T"), ["don't", " DON'T"]);
        assert_eq!(gpt4o("'s x"), ["'s", " x"]);
        assert_eq!(
            gpt4o("ÉCOLE école"),
            ["É", "COLE", " école"],
            "as llama.cpp"
        );
        assert_eq!(gpt4o("éAB!"), ["é", "AB", "!"]);
        assert_eq!(gpt4o("AéB"), ["Aé", "B"]);
        assert_eq!(gpt4o("12345"), ["123", "45"]);
        assert_eq!(gpt4o("a/b //\n"), ["a", "/b", " //\n"]);
        assert_eq!(gpt4o("\tCamel"), ["\tCamel"]);
        assert_eq!(gpt4o("\nX"), ["\n", "X"]);
        assert_eq!(gpt4o("x  y"), ["x", " ", " y"]);
        assert_eq!(gpt4o("foo();\n// c"), ["foo", "();\n//", " c"]);
        assert_eq!(gpt4o("x.\n/y"), ["x", ".\n/", "y"]);
        let tekken = |t| PreTokenizer::Tekken.split(t);
        assert_eq!(tekken("don't HelloWorld"), ["don", "'t", " Hello", "World"]);
        assert_eq!(tekken("x 123"), ["x", " ", "1", "2", "3"]);
    }

    /// The names llama.cpp gives each regex (`llama_vocab::impl::load`),
    /// the later ones too (Minerva's is `minerva-7b`).
    #[test]
    fn llama_cpp_names_pick_their_regex() {
        for (names, pre) in [
            (
                &["minerva-7b", "mellum2", "refact"][..],
                PreTokenizer::SmolLm,
            ),
            (
                &["falcon-h1", "midm-2.0", "lfm2", "jina-v5-nano"],
                PreTokenizer::Llama3,
            ),
            (&["kormo", "f2llmv2"], PreTokenizer::Qwen2),
        ] {
            for name in names {
                assert_eq!(PreTokenizer::from_name(name), Some(pre), "{name}");
            }
        }
        assert_eq!(
            PreTokenizer::from_name("minerva"),
            None,
            "not a llama.cpp name"
        );
    }

    #[test]
    fn pieces_concatenate_back() {
        const POOL: &[char] = &[
            'a', 'Z', 'é', 'ß', '中', '7', '٣', 'Ⅻ', ' ', ' ', '\n', '\t', '\u{A0}', '\'', 's',
            '!', '-', '😀', '\u{301}', '\u{93E}', '\0', '1', '2', '+', '`', '\u{2026}', '~',
            '\u{3000}', '（', '가', 'カ', '\r',
        ];
        // A fixed LCG: the same strings on every run.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) as usize % n
        };
        for _ in 0..2000 {
            let text: String = (0..next(24)).map(|_| POOL[next(POOL.len())]).collect();
            for pre in [
                PreTokenizer::Gpt2,
                PreTokenizer::Default,
                PreTokenizer::Falcon,
                PreTokenizer::SmolLm,
                PreTokenizer::Llama3,
                PreTokenizer::Qwen2,
                PreTokenizer::Dbrx,
                PreTokenizer::Gpt4o,
                PreTokenizer::Tekken,
                PreTokenizer::DeepSeekLlm,
                PreTokenizer::DeepSeekCoder,
                PreTokenizer::DeepSeekV3,
            ] {
                let pieces = pre.split(&text);
                assert_eq!(pieces.concat(), text);
                assert!(pieces.iter().all(|p| !p.is_empty()), "{text:?}: {pieces:?}");
            }
        }
    }
}
