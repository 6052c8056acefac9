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
