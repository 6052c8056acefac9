//! DeepSeek's pre-tokenizers (llama.cpp `deepseek-llm`, `deepseek-coder`,
//! `deepseek-v3`), each a sequence of regexes run as llama.cpp's
//! `unicode_regex_split` runs them: every regex splits each piece the one
//! before left, its matches and the text between them becoming pieces.
//!
//! llama.cpp runs a regex that names no category over the characters, any
//! whitespace past ASCII read as `\v` (so never in a bracketed class), and
//! one that names categories over its collapsed text ([`Category`]).
//! Categories past ASCII come from this crate's tables, of llama.cpp's
//! Unicode (15.1) and checked against its own table code point by code point.

use super::Chars;
use crate::unicode::{Category, in_table};

/// DeepSeek LLM's (llama.cpp `deepseek-llm`: DeepSeek LLM, DeepSeek-MoE,
/// DeepSeek-V2 and V2-Lite):
/// `[\r\n]`, `\s?[LETTERS]+` ([`CASED`]), `\s?[!-/:-~！-／：-～‘-‟　-。]+`,
/// `\s+$`, `[一-龥ࠀ-一가-퟿]+`, `\p{N}+`.
pub(super) fn split_llm<'a>(text: &'a str, pieces: &mut Vec<&'a str>) {
    let split = resplit(vec![text], newline);
    let split = resplit(split, |t, pos| space_then_run(t, pos, is_cased));
    let split = resplit(split, |t, pos| space_then_run(t, pos, is_llm_punctuation));
    let split = trailing_spaces(split);
    let split = resplit(split, |t, pos| run(t, pos, is_llm_cjk));
    pieces.extend(resplit(split, |t, pos| {
        run(t, pos, |c| Category::of(c) == Category::Number)
    }));
}

/// DeepSeek Coder's (llama.cpp `deepseek-coder`): `[\r\n]`, `\s?\p{L}+`,
/// `\s?\p{P}+`, `[一-龥ࠀ-一가-퟿]+`, `\p{N}` (numbers one by one).
pub(super) fn split_coder<'a>(text: &'a str, pieces: &mut Vec<&'a str>) {
    let is = |category| move |c| Category::of(c) == category;
    let split = resplit(vec![text], newline);
    let split = resplit(split, |t, pos| space_then_run(t, pos, is(Category::Letter)));
    let split = resplit(split, |t, pos| {
        space_then_run(t, pos, is(Category::Punctuation))
    });
    let split = resplit(split, |t, pos| run(t, pos, is_llm_cjk));
    pieces.extend(resplit(split, |t, pos| {
        t.at(pos)
            .is_some_and(is(Category::Number))
            .then_some(pos + 1)
    }));
}

/// DeepSeek-V3's (llama.cpp `deepseek-v3`: V3, R1, their `deepseek2`
/// files; also `hunyuan-dense`): `\p{N}{1,3}`, `[一-龥぀-ゟ゠-ヿ]+`, then
/// `[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
pub(super) fn split_v3<'a>(text: &'a str, pieces: &mut Vec<&'a str>) {
    let split = resplit(vec![text], |t, pos| {
        let number = |i| t.at(i).is_some_and(|c| Category::of(c) == Category::Number);
        let end = (pos..pos + 3).find(|&i| !number(i)).unwrap_or(pos + 3);
        (end > pos).then_some(end)
    });
    let split = resplit(split, |t, pos| run(t, pos, is_v3_cjk));
    pieces.extend(resplit(split, v3_word));
}

/// The last regex of [`split_v3`] at `pos`: its first alternative that
/// matches there, if one does.
fn v3_word(t: &Chars<'_>, pos: usize) -> Option<usize> {
    let category = |i| t.at(i).map(Category::of);
    // [!"#...~][A-Za-z]+: one ASCII symbol, then ASCII letters.
    if t.at(pos).is_some_and(|c| c.is_ascii_punctuation())
        && t.at(pos + 1).is_some_and(|c| c.is_ascii_alphabetic())
    {
        return Some(t.run(pos + 1, |c| c.is_ascii_alphabetic()));
    }
    // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ (a mark may be either part:
    // the run is the same).
    let word = |c| matches!(Category::of(c), Category::Letter | Category::Mark);
    if t.at(pos).is_some_and(word) {
        return Some(t.run(pos, word));
    }
    let lead = !t.newline(pos)
        && !matches!(
            category(pos),
            Some(Category::Letter | Category::Punctuation | Category::Symbol) | None
        );
    if lead && t.at(pos + 1).is_some_and(word) {
        return Some(t.run(pos + 1, word));
    }
    // ` ?[\p{P}\p{S}]+[\r\n]*`
    let symbol = |c| matches!(Category::of(c), Category::Punctuation | Category::Symbol);
    let start = match t.at(pos) {
        Some(' ') if t.at(pos + 1).is_some_and(symbol) => pos + 1,
        _ => pos,
    };
    if t.at(start).is_some_and(symbol) {
        let end = t.run(start, symbol);
        return Some(t.run(end, |c| matches!(c, '\r' | '\n')));
    }
    // `\s*[\r\n]+`, `\s+(?!\S)`, `\s+`
    match t.spaces(pos) {
        (0, _) => None,
        (_, Some(past_newline)) => Some(past_newline),
        (spaces, None) => Some(t.space_run_end(pos, spaces)),
    }
}

/// Splits each of `pieces` at a regex's matches, leftmost first, as
/// llama.cpp's `unicode_regex_split_stl` does: `find(chars, pos)` is the end
/// of the regex's match starting at `pos`, if one does (past `pos`), and the
/// text between two matches is a piece too.
fn resplit<'a>(
    pieces: Vec<&'a str>,
    find: impl Fn(&Chars<'a>, usize) -> Option<usize>,
) -> Vec<&'a str> {
    let mut out = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let chars = Chars::new(piece);
        let (mut gap, mut pos) = (0, 0);
        while pos < chars.len() {
            match find(&chars, pos) {
                Some(end) => {
                    if gap < pos {
                        out.push(chars.slice(gap, pos));
                    }
                    out.push(chars.slice(pos, end));
                    (gap, pos) = (end, end);
                }
                None => pos += 1,
            }
        }
        if gap < chars.len() {
            out.push(chars.slice(gap, chars.len()));
        }
    }
    out
}

/// `\s+$`: the run of whitespace that ends each piece, apart from the rest.
fn trailing_spaces(pieces: Vec<&str>) -> Vec<&str> {
    let mut out = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let start = piece.trim_end_matches(char::is_whitespace).len();
        if start > 0 && start < piece.len() {
            out.extend([&piece[..start], &piece[start..]]);
        } else {
            out.push(piece);
        }
    }
    out
}

/// `[\r\n]`
fn newline(t: &Chars<'_>, pos: usize) -> Option<usize> {
    t.newline(pos).then_some(pos + 1)
}

/// `[...]+`, the class being `is`.
fn run(t: &Chars<'_>, pos: usize, is: impl Fn(char) -> bool) -> Option<usize> {
    let end = t.run(pos, is);
    (end > pos).then_some(end)
}

/// `\s?[...]+`, the class being `is` (which takes no whitespace).
fn space_then_run(t: &Chars<'_>, pos: usize, is: impl Fn(char) -> bool + Copy) -> Option<usize> {
    let space = t.at(pos).is_some_and(char::is_whitespace);
    match (space, t.at(pos + 1).is_some_and(is)) {
        (true, true) => run(t, pos + 1, is),
        _ => run(t, pos, is),
    }
}

/// `deepseek-llm`'s letters: the cased letters (Lu, Ll, Lt) of the scripts
/// with case, as its regex lists them, as inclusive ranges.
const CASED: &[u32] = &[
    0x41, 0x5A, 0x61, 0x7A, 0xB5, 0xB5, 0xC0, 0xD6, 0xD8, 0xF6, 0xF8, 0x1BA, 0x1BC, 0x1BF, 0x1C4,
    0x293, 0x295, 0x2AF, 0x370, 0x373, 0x376, 0x377, 0x37B, 0x37D, 0x37F, 0x37F, 0x386, 0x386,
    0x388, 0x38A, 0x38C, 0x38C, 0x38E, 0x3A1, 0x3A3, 0x3F5, 0x3F7, 0x481, 0x48A, 0x52F, 0x531,
    0x556, 0x10A0, 0x10C5, 0x13A0, 0x13F5, 0x13F8, 0x13FD, 0x1C90, 0x1CBA, 0x1CBD, 0x1CBF, 0x1D00,
    0x1D2B, 0x1D6B, 0x1D77, 0x1D79, 0x1D9A, 0x1E00, 0x1F15, 0x1F18, 0x1F1D, 0x1F20, 0x1F45, 0x1F48,
    0x1F4D, 0x1F50, 0x1F57, 0x1F59, 0x1F59, 0x1F5B, 0x1F5B, 0x1F5D, 0x1F5D, 0x1F5F, 0x1F7D, 0x1F80,
    0x1FB4, 0x1FB6, 0x1FBC, 0x1FBE, 0x1FBE, 0x1FC2, 0x1FC4, 0x1FC6, 0x1FCC, 0x1FD0, 0x1FD3, 0x1FD6,
    0x1FDB, 0x1FE0, 0x1FEC, 0x1FF2, 0x1FF4, 0x1FF6, 0x1FFC, 0x2102, 0x2102, 0x2107, 0x2107, 0x210A,
    0x2113, 0x2115, 0x2115, 0x2119, 0x211D, 0x2124, 0x2124, 0x2126, 0x2126, 0x2128, 0x2128, 0x212A,
    0x212D, 0x212F, 0x2134, 0x2139, 0x2139, 0x213C, 0x213F, 0x2145, 0x2149, 0x214E, 0x214E, 0x2183,
    0x2184, 0x2C00, 0x2C7B, 0x2C7E, 0x2CE4, 0x2CEB, 0x2CEE, 0x2CF2, 0x2CF3, 0xA640, 0xA66D, 0xA680,
    0xA69B, 0xA722, 0xA76F, 0xA771, 0xA787, 0xA78B, 0xA78E, 0xAB70, 0xABBF, 0xFB00, 0xFB06, 0xFB13,
    0xFB17, 0xFF21, 0xFF3A, 0xFF41, 0xFF5A, 0x10400, 0x1044F, 0x104B0, 0x104D3, 0x104D8, 0x104FB,
    0x10C80, 0x10CB2, 0x10CC0, 0x10CF2, 0x118A0, 0x118DF, 0x1E900, 0x1E943,
];

fn is_cased(c: char) -> bool {
    in_table(CASED, c)
}

/// `[!-/:-~！-／：-～‘-‟　-。]` (its `　`, U+3000, is whitespace: `\v`).
fn is_llm_punctuation(c: char) -> bool {
    matches!(c, '!'..='/' | ':'..='~' | '！'..='／' | '：'..='～' | '‘'..='‟' | '、'..='。')
}

/// `[一-龥ࠀ-一가-퟿]`, whitespace aside.
fn is_llm_cjk(c: char) -> bool {
    matches!(c, '\u{800}'..='\u{9FA5}' | '\u{AC00}'..='\u{D7FF}') && !c.is_whitespace()
}

/// `[一-龥぀-ゟ゠-ヿ]`: the CJK ideographs, hiragana and katakana.
fn is_v3_cjk(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FA5}' | '\u{3040}'..='\u{30FF}')
}

#[cfg(test)]
mod tests {
    use super::super::PreTokenizer;

    #[test]
    fn llm_splits_line_breaks_letters_symbols_then_scripts() {
        let llm = |t| PreTokenizer::DeepSeekLlm.split(t);
        assert_eq!(llm("Hello, world!\n"), ["Hello", ",", " world", "!", "\n"]);
        assert_eq!(
            llm("héllo"),
            ["h", "é", "llo"],
            "letters, then symbols (which take ASCII letters) again"
        );
        assert_eq!(llm("x  "), ["x", "  "]);
        assert_eq!(llm("ʔ  "), ["ʔ", "  "], "trailing whitespace apart");
        assert_eq!(llm("éʔ"), ["é", "ʔ"], "ʔ is a letter without case");
        assert_eq!(llm("a  b"), ["a", " ", " b"]);
        assert_eq!(llm("12 345"), ["12", " ", "345"], "digits in runs");
        assert_eq!(llm("中文 한국어"), ["中文", " ", "한국어"]);
        assert_eq!(llm("（好）"), ["（", "好", "）"]);
        assert_eq!(
            llm("\u{3000}x"),
            ["\u{3000}x"],
            "an ideographic space is \\s"
        );
        assert_eq!(
            llm("\u{1FBE}\u{2126}\u{212A}"),
            ["\u{1FBE}\u{2126}\u{212A}"]
        );
    }

    #[test]
    fn coder_splits_by_category_and_digits_one_by_one() {
        let coder = |t| PreTokenizer::DeepSeekCoder.split(t);
        assert_eq!(
            coder("foo(bar) 42"),
            ["foo", "(", "bar", ")", " ", "4", "2"]
        );
        assert_eq!(coder("héllo, wörld"), ["héllo", ",", " wörld"]);
        assert_eq!(
            coder("a + b"),
            ["a", " +", " b"],
            "symbols are not punctuation"
        );
    }

    #[test]
    fn v3_numbers_in_threes_scripts_apart_then_words() {
        let v3 = |t| PreTokenizer::DeepSeekV3.split(t);
        assert_eq!(v3("1234567"), ["123", "456", "7"]);
        assert_eq!(v3("日本語のテキスト"), ["日本語のテキスト"]);
        assert_eq!(v3("x日本"), ["x", "日本"]);
        assert_eq!(v3("can't (stop)"), ["can", "'t", " (", "stop", ")"]);
        assert_eq!(v3(" héllo wörld"), [" héllo", " wörld"]);
        assert_eq!(v3("a\u{301}b"), ["a\u{301}b"], "marks join words");
        assert_eq!(v3("x!?\n\ny"), ["x", "!?\n\n", "y"]);
        assert_eq!(v3("x  \n y"), ["x", "  \n", " y"]);
        assert_eq!(
            v3("~é x ~y"),
            ["~", "é", " x", " ~", "y"],
            "`~` is a symbol"
        );
        assert_eq!(
            v3("\u{1F}é"),
            ["\u{1F}é"],
            "a control character leads a word"
        );
        assert_eq!(v3("\tx  "), ["\tx", "  "]);
    }
}
