//! The AVX-512 f32 path: [`row_block_avx512`] and its `MR512 x NR512`
//! register tile.

use super::{Ends, Init, KC, MR512, NR512};

/// [`super::row_block`] on AVX-512 with intrinsics (LLVM's autovectoriser keeps
/// to 256-bit vectors, which halves the throughput of these cores). A is
/// not packed into panels: each k block of the rows is copied together,
/// and the tile broadcasts each row's value from that copy. The first k
/// block writes C from `init` (adds to it for `Keep`), the rest add to it
/// in place, with masks for a ragged edge.
#[target_feature(enable = "avx512f")]
pub(super) fn row_block_avx512(
    a: &[f32],
    packed: &[f32],
    c: &mut [f32],
    (rows, k, n): (usize, usize, usize),
    (init, finish): Ends<'_>,
) {
    assert!(
        a.len() >= rows * k && c.len() >= rows * n && packed.len() >= n.div_ceil(NR512) * k * NR512,
        "row block operands too short"
    );
    thread_local! {
        static A_BLOCK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut ablock = A_BLOCK.take();
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        // This k block of A's rows, copied together first: one streaming
        // pass brings them into cache, where the tiles then read them
        // once per panel (reading A in place, the first panel's tiles
        // waited on eight rows' misses at a time).
        ablock.clear();
        for row in a[..rows * k].chunks_exact(k) {
            ablock.extend_from_slice(&row[k0..k0 + kc]);
        }
        for (p, panel) in packed.chunks_exact(k * NR512).enumerate() {
            let j0 = p * NR512;
            let w = NR512.min(n - j0);
            // The first k block writes C from zero or the bias; the rest
            // add to it.
            let (bias, overwrite) = match (k0, init.cols(j0, w)) {
                (0, Init::Zero) => (None, true),
                (0, Init::Bias(b)) => (Some(b), true),
                _ => (None, false),
            };
            for r0 in (0..rows).step_by(MR512) {
                // SAFETY: rows `r0..r0 + MR512` (clamped to `rows`) of
                // `ablock` hold `kc` values each, the panel slice holds
                // `kc x NR512`, and C's rows hold `j0 + w` columns: all
                // inside the slices checked above.
                unsafe {
                    tile_avx512(
                        ablock.as_ptr().add(r0 * kc),
                        kc,
                        MR512.min(rows - r0),
                        panel.as_ptr().add(k0 * NR512),
                        kc,
                        c.as_mut_ptr().add(r0 * n + j0),
                        n,
                        w,
                        bias,
                        overwrite,
                    );
                }
                if k0 + kc == k {
                    finish.apply(c, n, (r0, MR512.min(rows - r0)), (j0, w));
                }
            }
        }
    }
    A_BLOCK.set(ablock);
}

/// `C[..rows][..w] += A[..rows][..kc] · Bp` for an `MR512 x NR512` tile:
/// `a` with row stride `lda`, `bp` a packed `kc x NR512` panel slice, `c`
/// with row stride `ldc`. Rows past `rows` repeat the last one and are not
/// stored. With `overwrite`, C is set to `bias + A · Bp` instead (`bias`,
/// `w` values, or zero) and not read.
///
/// # Safety
///
/// AVX-512F must be present, and the pointers valid for those extents.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512(
    a: *const f32,
    lda: usize,
    rows: usize,
    bp: *const f32,
    kc: usize,
    c: *mut f32,
    ldc: usize,
    w: usize,
    bias: Option<&[f32]>,
    overwrite: bool,
) {
    use std::arch::x86_64::*;
    let row = |r: usize| unsafe { a.add(r.min(rows - 1) * lda) };
    let pa = [
        row(0),
        row(1),
        row(2),
        row(3),
        row(4),
        row(5),
        row(6),
        row(7),
    ];
    let (m0, m1) = tile_masks(w);
    let start = match bias {
        // SAFETY: the bias holds `w` values; the masks keep to them.
        Some(b) => unsafe {
            [
                _mm512_maskz_loadu_ps(m0, b.as_ptr()),
                _mm512_maskz_loadu_ps(m1, b.as_ptr().wrapping_add(16)),
            ]
        },
        None => [_mm512_setzero_ps(); 2],
    };
    let mut acc = [start; MR512];
    let mut pb = bp;
    for p in 0..kc {
        // SAFETY: step `p` reads `a[r * lda + p]` for the tile's rows and
        // `bp[p * NR512..][..NR512]`, in bounds by the caller's contract.
        // Straight-line code over constant indices keeps the 16
        // accumulators in registers (a loop over rows spilled them).
        unsafe {
            let (b0, b1) = (_mm512_loadu_ps(pb), _mm512_loadu_ps(pb.add(16)));
            macro_rules! row {
                ($($r:literal)*) => {$(
                    let av = _mm512_set1_ps(*pa[$r].add(p));
                    acc[$r][0] = _mm512_fmadd_ps(av, b0, acc[$r][0]);
                    acc[$r][1] = _mm512_fmadd_ps(av, b1, acc[$r][1]);
                )*};
            }
            row!(0 1 2 3 4 5 6 7);
            pb = pb.add(NR512);
        }
    }
    for (r, acc) in acc.iter().enumerate().take(rows) {
        // SAFETY: row `r < rows` of C holds `w` values from `c + r * ldc`;
        // the masks keep to them.
        unsafe {
            let cr = c.add(r * ldc);
            if overwrite {
                _mm512_mask_storeu_ps(cr, m0, acc[0]);
                _mm512_mask_storeu_ps(cr.wrapping_add(16), m1, acc[1]);
                continue;
            }
            let lo = _mm512_maskz_loadu_ps(m0, cr);
            _mm512_mask_storeu_ps(cr, m0, _mm512_add_ps(lo, acc[0]));
            let hi = _mm512_maskz_loadu_ps(m1, cr.wrapping_add(16));
            _mm512_mask_storeu_ps(cr.wrapping_add(16), m1, _mm512_add_ps(hi, acc[1]));
        }
    }
}

/// The lane masks of a 32-wide tile's two 16-lane halves that keep to its
/// first `w` columns.
pub(crate) fn tile_masks(w: usize) -> (u16, u16) {
    let m0 = if w >= 16 { 0xffff } else { (1u16 << w) - 1 };
    let m1 = if w >= 32 {
        0xffff
    } else {
        ((1u32 << w.saturating_sub(16)) - 1) as u16
    };
    (m0, m1)
}
