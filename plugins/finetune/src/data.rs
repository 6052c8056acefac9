//! The labelled data: rows parsed from JSON lines, their label set, the
//! train/eval split, per-epoch shuffles, and the embedded features packed as
//! one object so that a resumed job does not embed them again.

use std::collections::BTreeSet;

use serde_json::Value;
use weft_sdk::StageError;

/// One labelled example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) text: String,
    pub(crate) label: String,
}

/// Parses JSON lines of `{"text": "...", "label": "..."}` (a number label is
/// taken as its text). Blank lines are skipped; anything else wrong is
/// `bad-input` naming the line.
pub(crate) fn parse_jsonl(bytes: &[u8]) -> Result<Vec<Row>, StageError> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| bad(format!("the data is not UTF-8 ({e})")))?;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| bad(format!("line {}: not JSON ({e})", n + 1)))?;
        rows.push(row(&value).map_err(|m| bad(format!("line {}: {m}", n + 1)))?);
    }
    Ok(rows)
}

/// One row from a JSON value.
pub(crate) fn row(value: &Value) -> Result<Row, String> {
    let text = match value.get("text") {
        Some(Value::String(t)) => t.clone(),
        Some(other) => return Err(format!("`text` is {other}, not a string")),
        None => return Err("missing `text`".into()),
    };
    let label = match value.get("label") {
        Some(Value::String(l)) if !l.is_empty() => l.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(format!("`label` is {other}, not a non-empty string")),
        None => return Err("missing `label`".into()),
    };
    Ok(Row { text, label })
}

/// The sorted distinct labels: class `i` is `labels[i]`.
pub(crate) fn labels(rows: &[Row]) -> Vec<String> {
    let set: BTreeSet<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    set.into_iter().map(str::to_string).collect()
}

/// Whether row `index` is held out for evaluation: a hash of the index, so
/// the split is stable and does not follow any order in the file.
pub(crate) fn held_out(index: usize, fraction: f64) -> bool {
    ((mix(index as u64) % 10_000) as f64) < fraction * 10_000.0
}

/// `0..n` shuffled by `seed` (Fisher–Yates over splitmix64).
pub(crate) fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed;
    for i in (1..n).rev() {
        state = state.wrapping_add(1);
        let j = (mix(state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Embedded examples: `dim` features per row and a class index per row.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Split {
    pub(crate) features: Vec<f32>,
    pub(crate) classes: Vec<f32>,
}

impl Split {
    pub(crate) fn rows(&self) -> usize {
        self.classes.len()
    }

    /// Features and targets of the rows at `indices`.
    pub(crate) fn gather(&self, indices: &[usize], dim: usize) -> (Vec<f32>, Vec<f32>) {
        let mut features = Vec::with_capacity(indices.len() * dim);
        for &i in indices {
            features.extend_from_slice(&self.features[i * dim..(i + 1) * dim]);
        }
        let classes = indices.iter().map(|&i| self.classes[i]).collect();
        (features, classes)
    }
}

/// The training and evaluation sets with their width.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Features {
    pub(crate) dim: usize,
    pub(crate) train: Split,
    pub(crate) eval: Split,
}

impl Features {
    /// Little-endian: `dim`, train rows, eval rows (u32 each), then each
    /// split's features and classes as f32.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for n in [self.dim, self.train.rows(), self.eval.rows()] {
            out.extend((n as u32).to_le_bytes());
        }
        for split in [&self.train, &self.eval] {
            for v in split.features.iter().chain(&split.classes) {
                out.extend(v.to_le_bytes());
            }
        }
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let word = |i: usize| {
            bytes
                .get(i * 4..i * 4 + 4)
                .map(|b| [b[0], b[1], b[2], b[3]])
        };
        let (dim, train, eval) = (
            u32::from_le_bytes(word(0)?) as usize,
            u32::from_le_bytes(word(1)?) as usize,
            u32::from_le_bytes(word(2)?) as usize,
        );
        if bytes.len() != 12 + (train + eval) * (dim + 1) * 4 {
            return None;
        }
        let mut at = 3;
        let mut take = |n: usize| {
            let v: Vec<f32> = (at..at + n)
                .map(|i| f32::from_le_bytes(word(i).expect("length checked")))
                .collect();
            at += n;
            v
        };
        let train = Split {
            features: take(train * dim),
            classes: take(train),
        };
        let eval = Split {
            features: take(eval * dim),
            classes: take(eval),
        };
        Some(Self { dim, train, eval })
    }
}

fn bad(message: String) -> StageError {
    StageError::bad_input(format!("finetune: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_and_names_the_bad_line() {
        let rows =
            parse_jsonl(b"{\"text\":\"a\",\"label\":\"x\"}\n\n{\"text\":\"b\",\"label\":2}\n")
                .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].label, "2");
        for (data, says) in [
            (&b"{\"text\":\"a\"}\n"[..], "line 1: missing `label`"),
            (
                b"{\"text\":\"a\",\"label\":\"x\"}\nnope\n",
                "line 2: not JSON",
            ),
            (b"{\"text\":1,\"label\":\"x\"}", "`text` is 1"),
            (b"{\"text\":\"a\",\"label\":\"\"}", "not a non-empty string"),
        ] {
            let err = parse_jsonl(data).unwrap_err();
            assert!(
                matches!(&err, StageError::BadInput(m) if m.contains(says)),
                "{err:?} should say {says}"
            );
        }
    }

    #[test]
    fn labels_are_sorted_and_distinct() {
        let rows: Vec<Row> = ["b", "a", "b", "c"]
            .iter()
            .map(|l| Row {
                text: String::new(),
                label: l.to_string(),
            })
            .collect();
        assert_eq!(labels(&rows), ["a", "b", "c"]);
    }

    #[test]
    fn the_split_holds_out_about_the_fraction_and_is_stable() {
        let held = (0..10_000).filter(|&i| held_out(i, 0.2)).count();
        assert!((1_800..2_200).contains(&held), "{held}");
        assert_eq!(held_out(17, 0.2), held_out(17, 0.2));
        assert_eq!((0..100).filter(|&i| held_out(i, 0.0)).count(), 0);
    }

    #[test]
    fn shuffles_are_permutations_that_depend_on_the_seed() {
        let a = shuffled(50, 1);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(a, shuffled(50, 2));
        assert_eq!(a, shuffled(50, 1));
    }

    #[test]
    fn features_round_trip() {
        let f = Features {
            dim: 2,
            train: Split {
                features: vec![1.0, 2.0, 3.0, 4.0],
                classes: vec![0.0, 1.0],
            },
            eval: Split {
                features: vec![5.0, 6.0],
                classes: vec![1.0],
            },
        };
        let bytes = f.to_bytes();
        assert_eq!(Features::from_bytes(&bytes), Some(f.clone()));
        assert_eq!(Features::from_bytes(&bytes[..bytes.len() - 1]), None);
        assert_eq!(f.train.gather(&[1], 2), (vec![3.0, 4.0], vec![1.0]));
    }
}
