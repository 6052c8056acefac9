//! Sentence-transformers pooling: the mean of the token vectors under the
//! attention mask, then L2 normalisation.

/// Mean-pools a `[batch, seq, dim]` row-major `hidden` state over the positions
/// where `mask` (`[batch, seq]`) is 1, giving one `dim`-vector per sequence. As in
/// sentence-transformers, the count is clamped to 1e-9, so an all-zero mask gives
/// a zero vector rather than NaN.
pub(crate) fn mean_pool(hidden: &[f32], mask: &[i64], seq: usize, dim: usize) -> Vec<Vec<f32>> {
    mask.chunks(seq.max(1))
        .zip(hidden.chunks(seq * dim.max(1)))
        .map(|(mask, rows)| {
            let mut sum = vec![0f32; dim];
            let mut count = 0f32;
            for (&m, row) in mask.iter().zip(rows.chunks(dim)) {
                if m != 0 {
                    sum.iter_mut().zip(row).for_each(|(s, &x)| *s += x);
                    count += 1.0;
                }
            }
            let count = count.max(1e-9);
            sum.iter_mut().for_each(|s| *s /= count);
            sum
        })
        .collect()
}

/// Scales `v` to unit L2 norm, dividing by at least 1e-12 (PyTorch's
/// `F.normalize`), so a zero vector stays zero.
pub(crate) fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_only_unmasked_positions() {
        // Two sequences of 3 positions, dim 2; the second has one padding slot.
        let hidden = [1., 2., 3., 4., 5., 6., /**/ 2., 0., 4., 0., 100., 100.];
        let mask = [1, 1, 1, /**/ 1, 1, 0];
        let pooled = mean_pool(&hidden, &mask, 3, 2);
        assert_eq!(pooled, vec![vec![3., 4.], vec![3., 0.]]);
    }

    #[test]
    fn empty_mask_pools_to_zero() {
        assert_eq!(mean_pool(&[1., 1.], &[0], 1, 2), vec![vec![0., 0.]]);
    }

    #[test]
    fn normalises_to_unit_length() {
        let mut v = [3., 4.];
        l2_normalize(&mut v);
        assert_eq!(v, [0.6, 0.8]);
        let mut zero = [0., 0.];
        l2_normalize(&mut zero);
        assert_eq!(zero, [0., 0.]);
    }
}
