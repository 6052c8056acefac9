//! Integer products for int8 models: u8 (or i8) activations times an i8
//! weight, with exact i32 sums.
//!
//! A dynamically quantised transformer (onnxruntime's `quantize_dynamic`)
//! multiplies 8-bit activations by 8-bit weights. On a CPU with AVX-512
//! VNNI one `vpdpbusd` does 64 such multiply-adds (u8 × i8, summed four at
//! a time into i32 lanes, without saturation), four times what one f32
//! FMA does; this is the kernel for it (and, on CPUs with AVX-VNNI but not
//! AVX-512, the same instruction on 256-bit registers). It has the shape of the f32 one
//! (`kernels`): the weight is packed once at load into panels `NR` columns
//! wide, here as groups of four rows (the four bytes each i32 lane sums),
//! and a micro-kernel keeps an `MR x NR` tile of i32 sums in registers.
//!
//! An i8 activation is read as u8 by adding 128, and the zero points are
//! taken out after: `Σ (a - za)·b = Σ (a + o)·b - (za + o)·Σ b`, with the
//! weight's column sums `Σ b` kept beside it. Every sum is exact: a
//! product is at most 255 · 128, and `MAX_K` of them fit an i32.

use rayon::prelude::*;

/// Columns of C per micro-tile: two ZMM registers of i32 lanes.
const NR: usize = 32;
/// Rows of C per micro-tile: 8 x 2 = 16 of the 32 ZMM registers hold sums.
const MR: usize = 8;
/// The same with 256-bit AVX-VNNI: 3 x 4 = 12 of the 16 YMM registers
/// (three more hold A's broadcasts; B's halves are read from memory).
const MR256: usize = 3;
/// Groups of four k per k block: a `KG x NR x 4`-byte panel slice (32 KiB)
/// stays in L1/L2 while the rows of a block pass over it.
const KG: usize = 256;
/// Rows of C per parallel task (a multiple of every tile's rows).
const MB: usize = 48;
/// The longest shared dimension whose sums cannot overflow an i32:
/// `MAX_K · 255 · 128 < 2^31`.
pub(crate) const MAX_K: usize = 65_536;
/// Bytes of one group of a panel: `NR` columns of four k.
const GROUP: usize = NR * 4;

/// Which micro-kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Vnni,
    /// AVX-VNNI (`vpdpbusd` on YMM registers): CPUs with VNNI but not
    /// AVX-512 (Intel's client cores from Alder Lake on).
    #[cfg(target_arch = "x86_64")]
    Vnni256,
    /// Plain Rust on the same packed layout: the reference the VNNI
    /// kernel is tested against, and what the crate's tests run where the
    /// CPU lacks VNNI (too slow to beat the f32 kernels, so it is not used
    /// to serve).
    Portable,
}

impl Kernel {
    /// The fast kernel, if this CPU has it.
    fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            return Some(Self::Vnni);
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("avxvnni")
        {
            return Some(Self::Vnni256);
        }
        None
    }

    /// Rows of C per micro-tile.
    fn rows(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Vnni256 => MR256,
            _ => MR,
        }
    }
}

/// A's values as the product reads them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Activations<'a> {
    /// u8 values (held as i64, as the interpreter holds them).
    U8(&'a [i64]),
    /// i8 values.
    I8(&'a [i64]),
    /// f32 values quantised to u8 on the way in ([`quantize_u8`]): what
    /// `DynamicQuantizeLinear` would give for this scale and zero point.
    Quantized { x: &'a [f32], scale: f32, zp: f32 },
}

impl Activations<'_> {
    fn len(&self) -> usize {
        match self {
            Self::U8(a) | Self::I8(a) => a.len(),
            Self::Quantized { x, .. } => x.len(),
        }
    }

    /// What is added to a value to read it as u8.
    fn offset(&self) -> i64 {
        match self {
            Self::I8(_) => 128,
            _ => 0,
        }
    }

    /// Values `from..` of A as u8 into `dst`.
    fn widen(&self, from: usize, dst: &mut [u8]) {
        match *self {
            Self::U8(a) | Self::I8(a) => {
                let o = self.offset();
                for (d, &v) in dst.iter_mut().zip(&a[from..]) {
                    *d = (v + o) as u8;
                }
            }
            Self::Quantized { x, scale, zp } => {
                for (d, &v) in dst.iter_mut().zip(&x[from..]) {
                    *d = quantize_u8(v, scale, zp);
                }
            }
        }
    }
}

/// `v` quantised to u8 with `scale` and zero point `zp` (a whole number in
/// 0..=255), rounding half to even and saturating, as
/// `DynamicQuantizeLinear` does.
#[inline]
pub(crate) fn quantize_u8(v: f32, scale: f32, zp: f32) -> u8 {
    // Adding and taking away 1.5 * 2^23 rounds half to even (as
    // `round_ties_even` does, without the library call where SSE4.1's
    // rounding instruction is not assumed) for |v / scale| < 2^22; a
    // larger one saturates either way.
    const ROUND: f32 = 12_582_912.0;
    // Comparisons rather than `clamp`, so that this vectorises (a NaN
    // passes them and converts to 0).
    let q = v / scale;
    let q = if q < -1024.0 { -1024.0 } else { q };
    let q = if q > 1024.0 { 1024.0 } else { q };
    let q = q + ROUND - ROUND + zp;
    let q = if q < 0.0 { 0.0 } else { q };
    let q = if q > 255.0 { 255.0 } else { q };
    q as i32 as u8
}

/// An integer weight (`k x n`) packed for the int8 product, with its
/// column sums.
#[derive(Debug)]
pub(crate) struct PackedI8 {
    k: usize,
    n: usize,
    kernel: Kernel,
    /// `n.div_ceil(NR)` panels of `k.div_ceil(4)` groups of `GROUP` bytes:
    /// byte `4j + t` of group g is `B[4g + t][panel's column j]` (zero past
    /// the edges).
    data: Vec<i8>,
    /// `Σ_k B[k][j]` for every column j.
    colsum: Vec<i32>,
}

impl PackedI8 {
    /// Packs `b` (`k x n`, row-major) when this CPU has the int8 kernel and
    /// every value of `b` is an integer in i8's range; `None` otherwise
    /// (the f32 kernels then multiply it).
    pub(crate) fn new(b: &[f32], k: usize, n: usize) -> Option<Self> {
        // The crate's tests run the int8 paths on every CPU: with the
        // portable kernel where the fast one is missing.
        let kernel = Kernel::detect().or(cfg!(test).then_some(Kernel::Portable))?;
        Self::with(b, k, n, kernel)
    }

    fn with(b: &[f32], k: usize, n: usize, kernel: Kernel) -> Option<Self> {
        let b = &b[..k * n];
        let fits = |v: f32| v == v.round() && (-128.0..=127.0).contains(&v);
        if k > MAX_K || !b.iter().all(|&v| fits(v)) {
            return None;
        }
        let groups = k.div_ceil(4);
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * groups * GROUP];
        for (p, panel) in data.chunks_exact_mut((groups * GROUP).max(1)).enumerate() {
            let j0 = p * NR;
            for (g, group) in panel.chunks_exact_mut(GROUP).enumerate() {
                for t in 0..4.min(k - 4 * g) {
                    let row = &b[(4 * g + t) * n..][..n];
                    for (j, &v) in row[j0..].iter().take(NR).enumerate() {
                        group[4 * j + t] = v as i8;
                    }
                }
            }
        }
        let mut colsum = vec![0i32; n];
        for row in b.chunks_exact(n.max(1)) {
            for (s, &v) in colsum.iter_mut().zip(row) {
                *s += v as i32;
            }
        }
        Some(Self {
            k,
            n,
            kernel,
            data,
            colsum,
        })
    }

    /// Rows of B (the shared dimension).
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Columns of B (and of the product).
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len() + self.colsum.len() * std::mem::size_of::<i32>()
    }

    /// B as it was given (`k x n`, row-major), as f32.
    pub(crate) fn unpack(&self) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        let mut b = vec![0.0; k * n];
        let groups = k.div_ceil(4);
        for (p, panel) in self.data.chunks_exact((groups * GROUP).max(1)).enumerate() {
            let j0 = p * NR;
            for kk in 0..k {
                let group = &panel[kk / 4 * GROUP..][..GROUP];
                for j in 0..NR.min(n - j0) {
                    b[kk * n + j0 + j] = f32::from(group[4 * j + kk % 4]);
                }
            }
        }
        b
    }

    /// `(A - za) · B` for `m` rows of A (`m x k`), `za` one zero point or
    /// one per row; `out` turns each exact result into the element stored.
    /// Parallel over blocks of rows (or, for one block, over B's panels).
    ///
    /// # Panics
    ///
    /// When `a` holds fewer than `m x k` values or `za` is neither one nor
    /// `m` long.
    pub(crate) fn product<T: Copy + Default + Send + Sync>(
        &self,
        a: Activations<'_>,
        m: usize,
        za: &[i64],
        out: impl Fn(i32) -> T + Sync,
    ) -> Vec<T> {
        let (k, n) = (self.k, self.n);
        assert!(a.len() >= m * k, "int8 product: A too short");
        assert!(za.len() == 1 || za.len() == m, "int8 product: zero points");
        let offset = a.offset();
        let kp = k.div_ceil(4) * 4;
        let panels = n.div_ceil(NR);
        let mut c = vec![T::default(); m * n];
        if m == 0 || n == 0 {
            return c;
        }
        // Rows `i0..` of A as u8, padded to whole groups (the padding
        // multiplies B's zero padding).
        let widen = |i0: usize, au: &mut [u8]| {
            for (r, dst) in au.chunks_exact_mut(kp.max(1)).enumerate() {
                a.widen((i0 + r) * k, &mut dst[..k]);
            }
        };
        // Rows `i0..` of C from their sums, the zero points taken out.
        let finish = |i0: usize, sums: &[i32], dst: &mut [T]| {
            for (r, (row, s)) in dst
                .chunks_exact_mut(n)
                .zip(sums.chunks_exact(n))
                .enumerate()
            {
                let z = (za[if za.len() == 1 { 0 } else { i0 + r }] + offset) as i32;
                for ((d, &s), &cs) in row.iter_mut().zip(s).zip(&self.colsum) {
                    // The result is a sum of `k` products of at most
                    // 255 · 128 each, so it fits an i32, and arithmetic
                    // modulo 2^32 gives it exactly (in vector lanes).
                    *d = out(s.wrapping_sub(z.wrapping_mul(cs)));
                }
            }
        };
        if m <= MB && panels > 1 && rayon::current_num_threads() > 1 {
            // One block of rows (a batch of one): split B's panels instead,
            // each task computing a run of them into a tile copied back
            // after.
            let mut au = vec![0u8; m * kp];
            widen(0, &mut au);
            // Two runs of panels per thread: few tasks, evenly loaded.
            let per = panels.div_ceil(2 * rayon::current_num_threads());
            let tiles: Vec<(usize, usize, Vec<i32>)> = (0..panels)
                .step_by(per)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|p0| {
                    let p1 = (p0 + per).min(panels);
                    let w = (p1 * NR).min(n) - p0 * NR;
                    let mut tile = vec![0i32; m * w];
                    self.block(&au, m, kp, p0..p1, &mut tile, w);
                    (p0 * NR, w, tile)
                })
                .collect();
            let mut sums = vec![0i32; m * n];
            for (j0, w, tile) in tiles {
                for (row, t) in sums.chunks_exact_mut(n).zip(tile.chunks_exact(w)) {
                    row[j0..j0 + w].copy_from_slice(t);
                }
            }
            finish(0, &sums, &mut c);
            return c;
        }
        // Each block of rows widened, multiplied and finished by one task,
        // while it is in cache.
        c.par_chunks_mut(MB * n).enumerate().for_each(|(blk, cb)| {
            let (i0, rows) = (blk * MB, cb.len() / n);
            let mut au = vec![0u8; rows * kp];
            widen(i0, &mut au);
            let mut sums = vec![0i32; rows * n];
            self.block(&au, rows, kp, 0..panels, &mut sums, n);
            finish(i0, &sums, cb);
        });
        c
    }

    /// `c += A · B` over `panels` for `rows` rows of `au` (row stride `kp`),
    /// into `c` (row stride `ldc`, column 0 being the first panel's).
    fn block(
        &self,
        au: &[u8],
        rows: usize,
        kp: usize,
        panels: std::ops::Range<usize>,
        c: &mut [i32],
        ldc: usize,
    ) {
        let groups = kp / 4;
        let p0 = panels.start;
        if rows == 0 || groups == 0 {
            return;
        }
        for g0 in (0..groups).step_by(KG) {
            let gc = KG.min(groups - g0);
            for p in panels.clone() {
                let w = NR.min(self.n - p * NR);
                let bp = &self.data[(p * groups + g0) * GROUP..][..gc * GROUP];
                let mr = self.kernel.rows();
                for r0 in (0..rows).step_by(mr) {
                    let tile = Tile {
                        a: &au[r0 * kp + g0 * 4..],
                        lda: kp,
                        rows: mr.min(rows - r0),
                        bp,
                        groups: gc,
                    };
                    let at = r0 * ldc + (p - p0) * NR;
                    tile.run(self.kernel, &mut c[at..], ldc, w);
                }
            }
        }
    }
}

/// One micro-tile's operands: `rows` rows of A (u8, stride `lda`, each
/// holding at least `4 · groups` bytes) and a panel slice of `groups`
/// groups.
struct Tile<'a> {
    a: &'a [u8],
    lda: usize,
    rows: usize,
    bp: &'a [i8],
    groups: usize,
}

impl Tile<'_> {
    /// `c[r * ldc + j] += Σ A[r][..] · B[..][j]` for the tile's rows and
    /// `j < w`.
    fn run(&self, kernel: Kernel, c: &mut [i32], ldc: usize, w: usize) {
        let last = (self.rows - 1) * self.lda + 4 * self.groups;
        assert!(
            self.rows >= 1
                && self.rows <= kernel.rows()
                && self.a.len() >= last
                && self.bp.len() >= self.groups * GROUP
                && c.len() >= (self.rows - 1) * ldc + w
                && w <= NR,
            "int8 tile operands too short"
        );
        match kernel {
            // SAFETY: `Vnni` is only detected on CPUs with AVX-512F and
            // VNNI, and the operands hold the extents asserted above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe { self.vnni(c.as_mut_ptr(), ldc, w) },
            // SAFETY: as above, for AVX2 and AVX-VNNI.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni256 => unsafe { self.vnni256(c, ldc, w) },
            Kernel::Portable => self.portable(c, ldc, w),
        }
    }

    fn portable(&self, c: &mut [i32], ldc: usize, w: usize) {
        for r in 0..self.rows {
            let a = &self.a[r * self.lda..][..4 * self.groups];
            let mut acc = [0i32; NR];
            for (a4, group) in a.chunks_exact(4).zip(self.bp.chunks_exact(GROUP)) {
                for (j, b4) in group.chunks_exact(4).enumerate() {
                    acc[j] += a4
                        .iter()
                        .zip(b4)
                        .map(|(&x, &y)| i32::from(x) * i32::from(y))
                        .sum::<i32>();
                }
            }
            for (d, s) in c[r * ldc..][..w].iter_mut().zip(acc) {
                *d += s;
            }
        }
    }

    /// The VNNI micro-kernel. Rows past `rows` repeat the last one and are
    /// not stored.
    ///
    /// # Safety
    ///
    /// AVX-512F and AVX-512 VNNI must be present, and `c` valid for the
    /// extents [`Tile::run`] checks.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn vnni(&self, c: *mut i32, ldc: usize, w: usize) {
        use std::arch::x86_64::*;
        let row = |r: usize| self.a[r.min(self.rows - 1) * self.lda..].as_ptr();
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
        let mut acc = [[_mm512_setzero_si512(); 2]; MR];
        let mut pb = self.bp.as_ptr();
        for g in 0..self.groups {
            // SAFETY: group g reads four bytes at `4g` of each row and
            // `GROUP` bytes of the panel, inside the extents checked by
            // `run`. Straight-line code over constant indices keeps the 16
            // sums in registers.
            unsafe {
                let b0 = _mm512_loadu_si512(pb.cast());
                let b1 = _mm512_loadu_si512(pb.add(64).cast());
                macro_rules! row {
                    ($($r:literal)*) => {$(
                        let av = _mm512_set1_epi32(pa[$r].add(4 * g).cast::<i32>().read_unaligned());
                        acc[$r][0] = _mm512_dpbusd_epi32(acc[$r][0], av, b0);
                        acc[$r][1] = _mm512_dpbusd_epi32(acc[$r][1], av, b1);
                    )*};
                }
                row!(0 1 2 3 4 5 6 7);
                pb = pb.add(GROUP);
            }
        }
        let (m0, m1) = crate::kernels::tile_masks(w);
        for (r, acc) in acc.iter().enumerate().take(self.rows) {
            // SAFETY: row `r < rows` of C holds `w` values from
            // `c + r * ldc`; the masks keep to them.
            unsafe {
                let cr = c.add(r * ldc);
                let lo = _mm512_maskz_loadu_epi32(m0, cr);
                _mm512_mask_storeu_epi32(cr, m0, _mm512_add_epi32(lo, acc[0]));
                let hi = _mm512_maskz_loadu_epi32(m1, cr.wrapping_add(16));
                _mm512_mask_storeu_epi32(cr.wrapping_add(16), m1, _mm512_add_epi32(hi, acc[1]));
            }
        }
    }

    /// The AVX-VNNI micro-kernel: `MR256` rows, each of `NR` sums in four
    /// YMM registers, B's group loaded in halves. Rows past `rows` repeat
    /// the last one and are not stored.
    ///
    /// # Safety
    ///
    /// AVX2 and AVX-VNNI must be present, and `c` valid for the extents
    /// [`Tile::run`] checks.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,avxvnni")]
    unsafe fn vnni256(&self, c: &mut [i32], ldc: usize, w: usize) {
        use std::arch::x86_64::*;
        let row = |r: usize| self.a[r.min(self.rows - 1) * self.lda..].as_ptr();
        let pa = [row(0), row(1), row(2)];
        let mut acc = [[_mm256_setzero_si256(); 4]; MR256];
        let mut pb = self.bp.as_ptr();
        for g in 0..self.groups {
            // SAFETY: group g reads four bytes at `4g` of each row and
            // `GROUP` bytes of the panel, inside the extents `run` checked.
            unsafe {
                let av = [0, 1, 2]
                    .map(|r| _mm256_set1_epi32(pa[r].add(4 * g).cast::<i32>().read_unaligned()));
                macro_rules! half {
                    ($($h:literal)*) => {$(
                        let b0 = _mm256_loadu_si256(pb.add(64 * $h).cast());
                        let b1 = _mm256_loadu_si256(pb.add(64 * $h + 32).cast());
                        for r in 0..MR256 {
                            acc[r][2 * $h] = _mm256_dpbusd_avx_epi32(acc[r][2 * $h], av[r], b0);
                            acc[r][2 * $h + 1] =
                                _mm256_dpbusd_avx_epi32(acc[r][2 * $h + 1], av[r], b1);
                        }
                    )*};
                }
                half!(0 1);
                pb = pb.add(GROUP);
            }
        }
        for (r, acc) in acc.iter().enumerate().take(self.rows) {
            let mut sums = [0i32; NR];
            for (q, v) in acc.iter().enumerate() {
                // SAFETY: `sums` holds eight i32s from `8q` on.
                unsafe { _mm256_storeu_si256(sums.as_mut_ptr().add(8 * q).cast(), *v) };
            }
            for (d, s) in c[r * ldc..][..w].iter_mut().zip(sums) {
                *d += s;
            }
        }
    }
}

#[cfg(test)]
mod tests;
