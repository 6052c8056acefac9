//! Weight matrices with their rows interleaved 16 at a time, for CPUs
//! with 512-bit VNNI: each of a `vpdpbusd`'s 16 lanes then works for its
//! own weight row, so a block's products end as one exact integer per
//! row and the scales are applied once per block for 16 outputs, where
//! the row-at-a-time kernels ([`super::avx2`]) scale 8 partial sums per
//! output. The same bytes as the GGUF rows, laid out differently, packed
//! once at load.
//!
//! Layout: the rows in tiles of 16 (the last one padded with zero rows),
//! each tile block by block; a tile's block holds the 16 rows' f16
//! scales, then (Q4_1) their f16 minimums, then their quantised bytes in
//! planes of 4 bytes: plane `j` is every row's bytes `4j..4j + 4`. Q8_0's
//! bytes are stored + 128 (unsigned, as `vpdpbusd` reads them).

use crate::GgmlType;

/// Weight rows per tile: one per 32-bit lane of a 512-bit register.
pub(crate) const LANES: usize = 16;

/// Bytes before a block's quantised values: the scale, and Q4_1's minimum.
fn head(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q4_1 => 4,
        _ => 2,
    }
}

/// Bytes of one row's block.
fn block_bytes(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q4_0 => 18,
        GgmlType::Q4_1 => 20,
        _ => 34,
    }
}

/// Whether the matrices of `ty` are packed, and multiplied, this way on
/// this CPU.
pub(crate) fn used_for(ty: GgmlType) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0) && super::avx2::wide()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ty;
        false
    }
}

/// Where row `r`'s block `b` lies, as (the tile block's offset, the row's
/// lane): the tile block holds 16 blocks' bytes.
fn at(ty: GgmlType, row_bytes: usize, r: usize, b: usize) -> (usize, usize) {
    let size = block_bytes(ty);
    let blocks = row_bytes / size;
    let (tile, lane) = (r / LANES, r % LANES);
    ((tile * blocks + b) * LANES * size, lane)
}

/// `data`'s rows (`row_bytes` each, whole blocks of `ty`) interleaved.
pub(crate) fn pack(ty: GgmlType, data: &[u8], row_bytes: usize) -> Vec<u8> {
    let (size, head) = (block_bytes(ty), head(ty));
    let rows = data.len() / row_bytes;
    let blocks = row_bytes / size;
    let tiles = rows.div_ceil(LANES);
    let mut out = vec![0u8; tiles * LANES * row_bytes];
    for r in 0..rows {
        for b in 0..blocks {
            let blk = &data[r * row_bytes + b * size..][..size];
            let (o, lane) = at(ty, row_bytes, r, b);
            let tile = &mut out[o..o + LANES * size];
            for (k, &byte) in blk[..head].iter().enumerate() {
                // The scales (and minimums) of the 16 rows side by side.
                let half = k / 2;
                tile[half * 2 * LANES + lane * 2 + k % 2] = byte;
            }
            let planes = &mut tile[head * LANES..];
            for (i, &byte) in blk[head..].iter().enumerate() {
                let (plane, k) = (i / 4, i % 4);
                planes[plane * 4 * LANES + lane * 4 + k] = match ty {
                    GgmlType::Q8_0 => byte ^ 0x80,
                    _ => byte,
                };
            }
        }
    }
    out
}

/// Row `r` of a packed matrix, as its GGUF bytes (into `out`, `row_bytes`).
pub(crate) fn row(ty: GgmlType, packed: &[u8], row_bytes: usize, r: usize, out: &mut [u8]) {
    let (size, head) = (block_bytes(ty), head(ty));
    for (b, blk) in out[..row_bytes].chunks_exact_mut(size).enumerate() {
        let (o, lane) = at(ty, row_bytes, r, b);
        let tile = &packed[o..o + LANES * size];
        for (k, byte) in blk[..head].iter_mut().enumerate() {
            *byte = tile[(k / 2) * 2 * LANES + lane * 2 + k % 2];
        }
        let planes = &tile[head * LANES..];
        for (i, byte) in blk[head..].iter_mut().enumerate() {
            let v = planes[(i / 4) * 4 * LANES + lane * 4 + i % 4];
            *byte = match ty {
                GgmlType::Q8_0 => v ^ 0x80,
                _ => v,
            };
        }
    }
}

/// The kernel that reads the packed matrices (x86-64 with 512-bit VNNI).
#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::LANES;
    use crate::GgmlType;
    use crate::quant::avx2::{Q4_0, Q4_1, Q8_0, block_bytes};
    use crate::quant::{BLOCK, Q8Row};

    /// How far ahead of the block in hand its weights are prefetched, in
    /// bytes: measured on a 16-row pass over matrices not in cache (2 KiB
    /// took a third off its time; 1 and 4 KiB did no better).
    const PREFETCH: usize = 2048;

    /// The products of rows `first ..` of a matrix packed in tiles of 16
    /// rows ([`super`]; `first` a multiple of 16) with every row of `xs`:
    /// weight row `first + r` by `xs[t]` into `out[t][r]`.
    ///
    /// # Safety
    /// The CPU has what `avx2::wide` checks; `packed` holds the rows asked for,
    /// in whole tiles of blocks of `ty`, and each row of `xs` as many blocks.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vnni,avx512vl")]
    pub(crate) unsafe fn dot(
        ty: GgmlType,
        packed: &[u8],
        row_bytes: usize,
        first: usize,
        xs: &[Q8Row],
        out: &mut [&mut [f32]],
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            match ty {
                GgmlType::Q4_0 => lanes_rows::<Q4_0>(packed, row_bytes, first, xs, out),
                GgmlType::Q4_1 => lanes_rows::<Q4_1>(packed, row_bytes, first, xs, out),
                _ => lanes_rows::<Q8_0>(packed, row_bytes, first, xs, out),
            }
        }
    }

    /// [`lanes_body`] tile by tile, on the rows of `xs` in groups of a
    /// constant size (8, 4, 2, 1) whose accumulators stay in registers (16
    /// rows at once measured no faster: their accumulators spill).
    #[inline(always)]
    unsafe fn lanes_rows<const TY: u8>(
        packed: &[u8],
        row_bytes: usize,
        first: usize,
        xs: &[Q8Row],
        out: &mut [&mut [f32]],
    ) {
        assert!(first.is_multiple_of(LANES) && !xs.is_empty());
        let n = xs.len();
        assert_eq!(out.len(), n);
        let k = out[0].len();
        for tile_first in (0..k).step_by(LANES) {
            let tile = (first + tile_first) / LANES;
            let tile = &packed[tile * LANES * row_bytes..][..LANES * row_bytes];
            let mut done = 0;
            for c in [8, 4, 2, 1] {
                while n - done >= c {
                    let (x, o) = (&xs[done..done + c], &mut out[done..done + c]);
                    // SAFETY: the caller's contract, for a tile and some rows.
                    unsafe {
                        match c {
                            8 => lanes_body::<TY, 8>(tile, row_bytes, x, o, tile_first),
                            4 => lanes_body::<TY, 4>(tile, row_bytes, x, o, tile_first),
                            2 => lanes_body::<TY, 2>(tile, row_bytes, x, o, tile_first),
                            _ => lanes_body::<TY, 1>(tile, row_bytes, x, o, tile_first),
                        }
                    }
                    done += c;
                }
            }
        }
    }

    /// One tile of 16 weight rows, one per lane, by `N` activation rows.
    /// Per block, `vpdpbusd` multiplies each lane's 4 weights of a plane
    /// (unsigned: Q4's nibbles as they are, Q8_0's bytes + 128) by the
    /// activation's matching 4 values, broadcast; the block's integer sum
    /// (exact; the unsigned reading corrected by the activation's block sum)
    /// is then scaled once: `acc += (dw × dx) × sum`, and for Q4_1
    /// `acc += m × s`. The tile's row `r` by `xs[t]` goes to
    /// `out[t][at + r]`, for the rows the outputs hold from `at` (at most
    /// 16: the rest are padding, or another caller's); 16 lanes stored at
    /// once.
    #[inline(always)]
    unsafe fn lanes_body<const TY: u8, const N: usize>(
        tile: &[u8],
        row_bytes: usize,
        xs: &[Q8Row],
        out: &mut [&mut [f32]],
        at: usize,
    ) {
        let size = block_bytes::<TY>();
        let blocks = row_bytes / size;
        assert!(tile.len() == LANES * row_bytes);
        let xs: &[Q8Row; N] = xs.try_into().expect("N rows");
        for x in xs {
            assert!(x.q.len() >= blocks * BLOCK && x.d.len() >= blocks);
            assert!(x.s.len() >= blocks && x.sums.len() >= blocks);
        }
        assert!(out.len() == N && out.iter().all(|o| o.len() > at));
        let rows = (out[0].len() - at).min(LANES);
        assert!(out.iter().all(|o| o.len() >= at + rows));
        // The lanes of the rows held.
        let held: __mmask16 = if rows == LANES { !0 } else { (1 << rows) - 1 };
        // Scales (and Q4_1's minimums), then the planes.
        let planes_at = if TY == Q4_1 { 4 * LANES } else { 2 * LANES };
        // SAFETY: the callers enable AVX2, FMA, F16C and AVX-512
        // F/BW/DQ/VNNI/VL; each tile block read lies within `tile` and each
        // activation block within its row (asserted).
        unsafe {
            let mut acc = [_mm512_setzero_ps(); N];
            for b in 0..blocks {
                let blk = tile.as_ptr().add(b * LANES * size);
                // The weights stream from memory once per pass: asked for
                // ahead, they arrive while this block computes for several
                // rows (for one or two, the hardware's prefetcher keeps up).
                if N >= 4 {
                    for line in (0..LANES * size).step_by(64) {
                        _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(PREFETCH + line) as *const i8);
                    }
                }
                let dw = _mm512_cvtph_ps(_mm256_loadu_si256(blk as *const __m256i));
                let m = if TY == Q4_1 {
                    _mm512_cvtph_ps(_mm256_loadu_si256(blk.add(2 * LANES) as *const __m256i))
                } else {
                    _mm512_setzero_ps()
                };
                let planes = blk.add(planes_at);
                // w[j] multiplies the activation's values 4j..4j+3: Q4's byte
                // i holds value i (low nibble) and i + 16 (high).
                let mut w = [_mm512_setzero_si512(); 8];
                if TY == Q8_0 {
                    for (j, w) in w.iter_mut().enumerate() {
                        *w = _mm512_loadu_si512(planes.add(64 * j) as *const __m512i);
                    }
                } else {
                    let low = _mm512_set1_epi8(0x0f);
                    for j in 0..4 {
                        let q = _mm512_loadu_si512(planes.add(64 * j) as *const __m512i);
                        w[j] = _mm512_and_si512(q, low);
                        w[4 + j] = _mm512_and_si512(_mm512_srli_epi16::<4>(q), low);
                    }
                }
                for (x, acc) in xs.iter().zip(&mut acc) {
                    let q = x.q.as_ptr().add(b * BLOCK) as *const i32;
                    let sum = *x.sums.get_unchecked(b);
                    // What reading the weights unsigned added, taken back.
                    let start = match TY {
                        Q4_0 => _mm512_set1_epi32(-8 * sum),
                        Q4_1 => _mm512_setzero_si512(),
                        _ => _mm512_set1_epi32(-128 * sum),
                    };
                    // Two chains of four, then their sum: integers, so exact.
                    let (mut even, mut odd) = (start, _mm512_setzero_si512());
                    for j in (0..8).step_by(2) {
                        let a = _mm512_set1_epi32(q.add(j).read_unaligned());
                        even = _mm512_dpbusd_epi32(even, w[j], a);
                        let a = _mm512_set1_epi32(q.add(j + 1).read_unaligned());
                        odd = _mm512_dpbusd_epi32(odd, w[j + 1], a);
                    }
                    let sum = _mm512_cvtepi32_ps(_mm512_add_epi32(even, odd));
                    let d = _mm512_mul_ps(dw, _mm512_set1_ps(*x.d.get_unchecked(b)));
                    *acc = _mm512_fmadd_ps(d, sum, *acc);
                    if TY == Q4_1 {
                        *acc = _mm512_fmadd_ps(m, _mm512_set1_ps(*x.s.get_unchecked(b)), *acc);
                    }
                }
            }
            for (o, acc) in out.iter_mut().zip(&acc) {
                _mm512_mask_storeu_ps(o.as_mut_ptr().add(at), held, *acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_keeps_every_row() {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            // 19 rows of 3 blocks: a whole tile and a padded one.
            let row_bytes = 3 * block_bytes(ty);
            let data: Vec<u8> = (0..19 * row_bytes).map(|i| (i * 31 % 253) as u8).collect();
            let packed = pack(ty, &data, row_bytes);
            assert_eq!(packed.len(), 32 * row_bytes);
            let mut back = vec![0u8; row_bytes];
            for (r, want) in data.chunks_exact(row_bytes).enumerate() {
                row(ty, &packed, row_bytes, r, &mut back);
                assert_eq!(back, want, "{ty:?} row {r}");
            }
        }
    }
}
