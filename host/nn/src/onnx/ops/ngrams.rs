//! `TfIdfVectorizer` over integer token ids: counts the n-grams of a
//! pool (with up to `max_skip_count` tokens skipped between their items)
//! in each row, weighted as term frequencies, inverse document
//! frequencies or both.

use std::collections::HashMap;

use super::{Node, req};
use crate::NnError;
use crate::onnx::value::{Value, fail, numel};

pub(super) fn tfidf(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    if node.has("pool_strings") {
        return Err(fail(
            "TfIdfVectorizer over strings is not supported (`wasi:nn` has no string tensors): \
             map the tokens to ids first and give pool_int64s",
        ));
    }
    let ints = |name: &str| node.ints(name).unwrap_or_default();
    let (pool, counts, indexes) = (
        ints("pool_int64s"),
        ints("ngram_counts"),
        ints("ngram_indexes"),
    );
    let (min, max) = (
        node.int("min_gram_length", 1),
        node.int("max_gram_length", 1),
    );
    let skips = node.int("max_skip_count", 0);
    let weights = node.floats("weights").unwrap_or_default();
    let mode = node.string("mode", "TF");
    if !matches!(mode.as_str(), "TF" | "IDF" | "TFIDF") || min < 1 || max < min || skips < 0 {
        return Err(fail(format!(
            "TfIdfVectorizer needs mode TF, IDF or TFIDF and 1 <= min_gram_length <= \
             max_gram_length, got {mode}, {min} and {max} (max_skip_count {skips})"
        )));
    }
    let width = indexes.iter().max().map_or(0, |&m| m.max(-1) + 1) as usize;
    // The pool: ngram_counts[s - 1] is where its s-grams start.
    let mut grams: HashMap<&[i64], usize> = HashMap::new();
    let mut id = 0;
    for (i, &start) in counts.iter().enumerate() {
        let size = i + 1;
        let end = counts.get(i + 1).map_or(pool.len() as i64, |&e| e);
        let (start, end) = (start.max(0) as usize, (end.max(0) as usize).min(pool.len()));
        for gram in pool.get(start..end).unwrap_or_default().chunks_exact(size) {
            let column = indexes.get(id).copied().filter(|&c| c >= 0);
            let column = column.ok_or_else(|| {
                fail(format!(
                    "ngram_indexes has no column for n-gram {id} of the pool"
                ))
            })?;
            if (min as usize..=max as usize).contains(&size) {
                grams.entry(gram).or_insert(column as usize);
            }
            id += 1;
        }
    }
    if !weights.is_empty() && weights.len() != width {
        return Err(fail(format!(
            "TfIdfVectorizer has {} weights for {width} output columns",
            weights.len()
        )));
    }
    let (rows, len) = match x.shape[..] {
        [c] => (1, c),
        [b, c] => (b, c),
        _ => {
            return Err(fail(format!(
                "TfIdfVectorizer's input must be [C] or [B, C], got {:?}",
                x.shape
            )));
        }
    };
    let xv = x.to_i64();
    let mut out = vec![0.0f32; numel(&[rows, width], "TfIdfVectorizer")?];
    // No gram is longer than the pool's longest; no skip reaches past a row.
    let mut gram = Vec::with_capacity((max as usize).min(counts.len()));
    for (row, tokens) in xv.chunks(len.max(1)).take(rows).enumerate() {
        let counts = &mut out[row * width..][..width];
        for skip in 0..=(skips as usize).min(len) {
            let step = skip + 1;
            // Unigrams count once, not once per skip.
            let smallest = if skip > 0 {
                (min as usize).max(2)
            } else {
                min as usize
            };
            for start in 0..tokens.len() {
                gram.clear();
                for size in 1..=max as usize {
                    let Some(&t) = tokens.get(start + (size - 1) * step) else {
                        break;
                    };
                    gram.push(t);
                    if size >= smallest
                        && let Some(&column) = grams.get(&gram[..])
                    {
                        counts[column] += 1.0;
                    }
                }
            }
        }
        for (i, c) in counts.iter_mut().enumerate() {
            let w = weights.get(i).copied().unwrap_or(1.0);
            *c = match mode.as_str() {
                "IDF" if *c > 0.0 => w,
                "IDF" => 0.0,
                "TFIDF" => w * *c,
                _ => *c,
            };
        }
    }
    let shape = match x.shape.len() {
        1 => vec![width],
        _ => vec![rows, width],
    };
    Ok(Value::f32(shape, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{Attr, NodeProto};

    #[test]
    fn counts_pool_ngrams_with_skips_and_refuses_strings() {
        let mut proto = NodeProto {
            op_type: "TfIdfVectorizer".into(),
            attrs: vec![
                ("pool_int64s".into(), Attr::Ints(vec![7, 8, 7, 9])),
                ("ngram_counts".into(), Attr::Ints(vec![0, 2])),
                ("ngram_indexes".into(), Attr::Ints(vec![0, 1, 2])),
                ("min_gram_length".into(), Attr::Int(1)),
                ("max_gram_length".into(), Attr::Int(2)),
                ("max_skip_count".into(), Attr::Int(1)),
            ],
            ..Default::default()
        };
        let node = Node {
            proto: &proto,
            opset: 9,
        };
        // Unigrams 7 and 8, the bigram (7, 9): 7 _ 9 counts with a skip.
        let x = Value::i64(vec![5], vec![7, 8, 9, 7, 9]);
        let y = tfidf(node, &[Some(&x)]).unwrap();
        assert_eq!(y.to_f32(), [2.0, 1.0, 2.0]);
        proto
            .attrs
            .push(("pool_strings".into(), Attr::Strings(vec![b"a".to_vec()])));
        let node = Node {
            proto: &proto,
            opset: 9,
        };
        let err = tfidf(node, &[Some(&x)]).unwrap_err();
        assert!(
            err.message.contains("map the tokens to ids first"),
            "{}",
            err.message
        );
    }
}
