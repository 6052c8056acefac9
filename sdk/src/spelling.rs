//! Near misses of a known name: `max_token` for `max_tokens`, `top-p` for
//! `top_p`, `maxTokens`, `temprature`. A stage that reads optional fields or
//! config keys would otherwise silently ignore a misspelt one and use its
//! default; with [`nearest`] it can say which was meant.

/// The name of `known` that `given` nearly is, the nearest one when several
/// are: the same but for case, `-` and `_`; or, for the longer names, a
/// typo or two away (one for six or seven letters, two from eight; short
/// names have too many short neighbours: `seed`, `feed`, `speed`).
///
/// # Example
///
/// ```
/// use weft_sdk::spelling::nearest;
///
/// let fields = ["prompt", "max_tokens", "top_p", "seed"];
/// assert_eq!(nearest("max_token", &fields), Some("max_tokens"));
/// assert_eq!(nearest("maxTokens", &fields), Some("max_tokens"));
/// assert_eq!(nearest("top-p", &fields), Some("top_p"));
/// assert_eq!(nearest("prompts", &fields), Some("prompt"));
/// assert_eq!(nearest("feed", &fields), None);
/// assert_eq!(nearest("id", &fields), None);
/// ```
pub fn nearest<'a>(given: &str, known: &[&'a str]) -> Option<&'a str> {
    let plain = given.to_lowercase().replace('-', "_");
    known
        .iter()
        .filter_map(|&name| {
            let typos = match name.len() {
                0..6 => 0,
                6..8 => 1,
                _ => 2,
            };
            let apart = edits(&plain, name);
            let near = plain.replace('_', "") == name.replace('_', "") || apart <= typos;
            near.then_some((apart, name))
        })
        .min_by_key(|(apart, _)| *apart)
        .map(|(_, name)| name)
}

/// The edit distance of `a` and `b` (insertions, deletions, substitutions
/// of characters).
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(edits("", "abc"), 3);
        assert_eq!(edits("temprature", "temperature"), 1);
        assert_eq!(edits("kitten", "sitting"), 3);
    }

    #[test]
    fn the_nearest_of_several_wins() {
        // `mesage` is one edit from `message`, two from `messages`.
        assert_eq!(nearest("mesage", &["messages", "message"]), Some("message"));
        assert_eq!(nearest("temprature", &["temperature"]), Some("temperature"));
        assert_eq!(nearest("size", &["seed"]), None);
    }
}
