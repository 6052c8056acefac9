//! [`Padded`]: a batch of encodings as the three `int64` model inputs.
//!
//! The sequence length is rounded up to a bucket (a multiple of
//! `pad_to_multiple_of`, at most `max_tokens`) rather than left at the
//! longest text's: the host merges concurrent `compute` calls from different
//! instances only when their inputs agree in every dimension but the first,
//! so one-text calls of 19 and 23 tokens can share an engine call only once
//! both are padded to 32. Padding is masked out (attention mask 0) and
//! skipped by the pooling, so it does not change the embeddings.

use tok::Encoding;
use weft_sdk::nn::tensor::{Tensor, TensorType};

/// Encodings padded to a common bucketed length, row-major `[batch, seq]`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Padded {
    pub(crate) batch: usize,
    pub(crate) seq: usize,
    pub(crate) input_ids: Vec<i64>,
    pub(crate) attention_mask: Vec<i64>,
    pub(crate) token_type_ids: Vec<i64>,
}

impl Padded {
    /// Pads with `pad_id`, attention mask 0 and type 0, to [`bucket`] of
    /// the longest encoding.
    pub(crate) fn new(encodings: &[Encoding], pad_id: u32, multiple: usize, cap: usize) -> Self {
        let longest = encodings.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let seq = bucket(longest, multiple, cap);
        let mut padded = Padded {
            batch: encodings.len(),
            seq,
            input_ids: Vec::with_capacity(encodings.len() * seq),
            attention_mask: Vec::with_capacity(encodings.len() * seq),
            token_type_ids: Vec::with_capacity(encodings.len() * seq),
        };
        for e in encodings {
            let pad = seq - e.ids.len();
            padded.input_ids.extend(row(&e.ids, pad_id, pad));
            padded.attention_mask.extend(row(&e.attention_mask, 0, pad));
            padded.token_type_ids.extend(row(&e.type_ids, 0, pad));
        }
        padded
    }

    /// The named input tensors, shape `[batch, seq]`.
    pub(crate) fn tensors(&self) -> Vec<(String, Tensor)> {
        let dims = [self.batch as u32, self.seq as u32];
        let tensor = |values: &[i64]| {
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Tensor::new(&dims, TensorType::I64, &bytes)
        };
        vec![
            ("input_ids".to_string(), tensor(&self.input_ids)),
            ("attention_mask".to_string(), tensor(&self.attention_mask)),
            ("token_type_ids".to_string(), tensor(&self.token_type_ids)),
        ]
    }
}

/// `len` rounded up to a multiple of `multiple` (1 or 0: `len` itself), but
/// no further than `cap` (the most tokens a text is cut to) and never below
/// `len`.
pub(crate) fn bucket(len: usize, multiple: usize, cap: usize) -> usize {
    if len == 0 {
        return 0;
    }
    len.next_multiple_of(multiple.max(1)).min(cap).max(len)
}

/// `values` then `pad` copies of `fill`, widened to `i64`.
fn row(values: &[u32], fill: u32, pad: usize) -> impl Iterator<Item = i64> + '_ {
    values
        .iter()
        .copied()
        .chain(std::iter::repeat_n(fill, pad))
        .map(i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(ids: &[u32]) -> Encoding {
        Encoding {
            ids: ids.to_vec(),
            attention_mask: vec![1; ids.len()],
            type_ids: vec![0; ids.len()],
            dropped: 0,
        }
    }

    #[test]
    fn pads_to_the_longest() {
        let padded = Padded::new(&[enc(&[101, 7, 102]), enc(&[101, 102])], 0, 1, 128);
        assert_eq!((padded.batch, padded.seq), (2, 3));
        assert_eq!(padded.input_ids, [101, 7, 102, 101, 102, 0]);
        assert_eq!(padded.attention_mask, [1, 1, 1, 1, 1, 0]);
        assert_eq!(padded.token_type_ids, [0; 6]);
    }

    #[test]
    fn pads_up_to_the_bucket() {
        let padded = Padded::new(&[enc(&[101, 7, 102]), enc(&[101, 102])], 0, 4, 128);
        assert_eq!((padded.batch, padded.seq), (2, 4));
        assert_eq!(padded.input_ids, [101, 7, 102, 0, 101, 102, 0, 0]);
        assert_eq!(padded.attention_mask, [1, 1, 1, 0, 1, 1, 0, 0]);
        assert_eq!(padded.token_type_ids, [0; 8]);
    }

    #[test]
    fn buckets_round_up_within_the_cap() {
        assert_eq!(bucket(9, 16, 128), 16);
        assert_eq!(bucket(16, 16, 128), 16);
        assert_eq!(bucket(17, 16, 128), 32);
        assert_eq!(bucket(120, 16, 128), 128);
        assert_eq!(bucket(100, 16, 100), 100, "capped at max_tokens");
        assert_eq!(bucket(9, 1, 128), 9);
        assert_eq!(bucket(9, 0, 128), 9);
        assert_eq!(bucket(0, 16, 128), 0);
    }

    #[test]
    fn tensors_are_int64_little_endian() {
        let tensors = Padded::new(&[enc(&[101, 258])], 0, 1, 128).tensors();
        let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["input_ids", "attention_mask", "token_type_ids"]);
        let ids = &tensors[0].1;
        assert_eq!(ids.dimensions(), vec![1, 2]);
        assert_eq!(ids.ty(), TensorType::I64);
        assert_eq!(ids.data()[..10], [101, 0, 0, 0, 0, 0, 0, 0, 2, 1]);
    }
}
