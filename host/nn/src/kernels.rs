//! Dense f32 kernels shared by the engines: a cache-blocked, register-tiled
//! matrix multiply, parallel over row blocks with rayon.
//!
//! The design is the classic GotoBLAS one, written so LLVM vectorises it:
//! B is packed once into column panels `NR` wide (so the inner loop reads
//! one contiguous `NR`-float row per step of k), A is packed per k block
//! into `MR`-row panels, and a micro-kernel keeps an `MR x NR` tile of C in
//! registers while it walks a `KC`-long slice of k.
//! On x86-64 the same code is compiled a second time with AVX2+FMA enabled
//! and picked at run time, since the default target only guarantees SSE2.

use rayon::prelude::*;

/// Rows and columns of C per micro-tile on AVX2 (and the portable path):
/// 6 x 16 floats is 12 AVX registers of accumulators, leaving room for the
/// B row and the broadcast A value.
const MR: usize = 6;
const NR: usize = 16;
/// The same on AVX-512: 8 x 32 floats is 16 of the 32 ZMM registers (at
/// 12 rows LLVM shuffles and spills them).
#[cfg(target_arch = "x86_64")]
const MR512: usize = 8;
#[cfg(target_arch = "x86_64")]
const NR512: usize = 32;
/// Depth of one k block: an `MR x KC` slice of A and a `KC x NR` panel of B
/// stay in L1/L2 while a tile is computed.
const KC: usize = 256;
/// Rows of C per parallel task (a multiple of every `MR`).
const MB: usize = 48;
/// The most rows of C per task: each task streams all of B once per k
/// block, so taller blocks read B (often larger than L2) fewer times.
const MB_MAX: usize = 192;
/// Below this many multiply-adds, packing and threads cost more than they save.
const SMALL: usize = 32 * 32 * 32;
/// A single block of rows is split by columns over the threads from this
/// many multiply-adds (about 0.1 ms of work).
const SPLIT_COLUMNS: usize = 1 << 21;

/// `c = a · b` for row-major `a` (`m x k`), `b` (`k x n`) and `c` (`m x n`),
/// overwriting `c`; parallel over rows of `c` on rayon's global pool.
///
/// This is the kernel behind ONNX `MatMul`/`Gemm`; it is public so that
/// benchmarks can measure it directly.
///
/// # Panics
///
/// When a slice is shorter than its dimensions say.
///
/// ```
/// let (a, b) = ([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]);
/// let mut c = [0.0; 4];
/// weft_nn::kernels::matmul(&a, &b, &mut c, 2, 2, 2);
/// assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
/// ```
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    gemm(a, b, c, m, k, n, true, Init::Zero, Finish::NONE);
}

/// C = A·B + bias: [`matmul`] with `bias` (`n` values) broadcast down the
/// rows, written in the same pass, then `finish` on each finished stretch.
pub(crate) fn matmul_bias(
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    c: &mut [f32],
    (m, k, n): (usize, usize, usize),
    finish: Finish<'_>,
) {
    assert!(bias.len() >= n, "bias shorter than the product's columns");
    gemm(a, b, c, m, k, n, true, Init::Bias(bias), finish);
}

/// A step applied to C's values once their sums are complete, while they
/// are still in cache (an activation, a residual added): called as
/// `f(row, first column, values)` on stretches of rows, the row and
/// column counted in the whole of C.
pub(crate) type Post<'a> = &'a (dyn Fn(usize, usize, &mut [f32]) + Sync);

/// A [`Post`] step, or none, and where the part of C at hand starts.
#[derive(Clone, Copy)]
pub(crate) struct Finish<'a> {
    post: Option<Post<'a>>,
    row0: usize,
    col0: usize,
}

impl<'a> Finish<'a> {
    pub(crate) const NONE: Self = Self {
        post: None,
        row0: 0,
        col0: 0,
    };

    pub(crate) fn new(post: Post<'a>) -> Self {
        Self {
            post: Some(post),
            row0: 0,
            col0: 0,
        }
    }

    /// The same step for the part of C from row `r`, column `j` on.
    fn at(self, r: usize, j: usize) -> Self {
        Self {
            row0: self.row0 + r,
            col0: self.col0 + j,
            ..self
        }
    }

    /// Applies the step to rows `r0..r0 + rows` of `c` (rows `n` long),
    /// columns `j0..j0 + w`.
    fn apply(self, c: &mut [f32], n: usize, (r0, rows): (usize, usize), (j0, w): (usize, usize)) {
        let Some(post) = self.post else { return };
        for r in r0..r0 + rows {
            post(
                self.row0 + r,
                self.col0 + j0,
                &mut c[r * n + j0..r * n + j0 + w],
            );
        }
    }
}

/// [`matmul`] on the calling thread only, for callers that parallelise
/// over many small products themselves.
pub(crate) fn matmul_serial(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    gemm(a, b, c, m, k, n, false, Init::Zero, Finish::NONE);
}

/// What a product starts C from: what it holds, zeros, or a bias row
/// broadcast down it. The kernels write the first k block's sums over C
/// for the last two, so C is neither filled before nor read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Init<'a> {
    Keep,
    Zero,
    /// One value per column of C.
    Bias(&'a [f32]),
}

impl<'a> Init<'a> {
    /// The same start for C's columns `j0..j0 + w`.
    fn cols(self, j0: usize, w: usize) -> Init<'a> {
        match self {
            Self::Bias(b) => Self::Bias(&b[j0..j0 + w]),
            other => other,
        }
    }

    /// Sets `c` (rows of `n`) to this start, for paths that only add.
    fn fill(self, c: &mut [f32], n: usize) {
        if n == 0 {
            return;
        }
        match self {
            Self::Keep => {}
            Self::Zero => c.fill(0.0),
            Self::Bias(b) => c
                .chunks_exact_mut(n)
                .for_each(|r| r.copy_from_slice(&b[..n])),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn gemm(
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
    parallel: bool,
    init: Init<'_>,
    finish: Finish<'_>,
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "matmul operands too short"
    );
    let c = &mut c[..m * n];
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 || m * k * n <= SMALL {
        init.fill(c, n);
        if k > 0 {
            naive_axpy(a, b, c, k, n);
        }
        finish.apply(c, n, (0, m), (0, n));
        return;
    }
    let packed = PackedB::new(&b[..k * n], k, n);
    packed.run(a, c, m, parallel, (init, finish));
}

/// Which micro-kernel the CPU runs; it fixes the panel width B is packed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

impl Kernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Self::Avx512;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Self::Avx2;
        }
        Self::Portable
    }

    fn nr(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => NR512,
            _ => NR,
        }
    }

    /// `c += a · B` for `rows` rows of `a` (`rows x k`) and B's packed
    /// panels `bp` (`n` columns), on the calling thread.
    /// C starts from `init` and ends with `finish`.
    fn rows(
        self,
        a: &[f32],
        bp: &[f32],
        c: &mut [f32],
        (rows, k, n): (usize, usize, usize),
        ends: Ends<'_>,
    ) {
        if k == 0 {
            ends.0.fill(&mut c[..rows * n], n);
            return ends.1.apply(c, n, (0, rows), (0, n));
        }
        let dims = (rows, k, n);
        match self {
            // SAFETY: `detect` (and the tests' `kernels`) pick this kernel
            // only when the CPU has AVX-512F.
            #[cfg(target_arch = "x86_64")]
            Self::Avx512 => unsafe { row_block_avx512(a, bp, c, dims, ends) },
            #[cfg(target_arch = "x86_64")]
            Self::Avx2 => row_block::<MR, NR>(a, bp, c, dims, ends, micro_avx2_entry),
            Self::Portable => row_block::<MR, NR>(a, bp, c, dims, ends, micro::<false>),
        }
    }

    /// Packs B (`k x n`) into `out` as this kernel's zero-padded panels:
    /// `fill(kk, j0, dst)` writes row `kk` of B from column `j0` on into
    /// `dst` (as many columns as `dst` is long).
    fn pack(
        self,
        k: usize,
        n: usize,
        mut fill: impl FnMut(usize, usize, &mut [f32]),
        out: &mut Vec<f32>,
    ) {
        let nr = self.nr();
        out.clear();
        out.resize(n.div_ceil(nr) * k * nr, 0.0);
        if k == 0 {
            return;
        }
        for (p, panel) in out.chunks_exact_mut(k * nr).enumerate() {
            let j0 = p * nr;
            let w = nr.min(n - j0);
            for (kk, dst) in panel.chunks_exact_mut(nr).enumerate() {
                fill(kk, j0, &mut dst[..w]);
            }
        }
    }
}

/// Many small products on one thread (attention's per-head products),
/// reusing one packing buffer instead of allocating one per product.
#[derive(Debug)]
pub(crate) struct SmallProducts {
    kernel: Kernel,
    packed: Vec<f32>,
}

impl SmallProducts {
    pub(crate) fn new() -> Self {
        Self {
            kernel: Kernel::detect(),
            packed: Vec::new(),
        }
    }

    /// `c = a · B` for `a` (`m x k`, row-major) and B given by element:
    /// `b(kk, j)` for `kk < k`, `j < n` (a transposed or strided view).
    pub(crate) fn product(
        &mut self,
        a: &[f32],
        (m, k, n): (usize, usize, usize),
        b: impl Fn(usize, usize) -> f32,
        c: &mut [f32],
    ) {
        assert!(
            a.len() >= m * k && c.len() >= m * n,
            "product operands too short"
        );
        let c = &mut c[..m * n];
        if m == 0 || n == 0 || k == 0 {
            return c.fill(0.0);
        }
        let fill = |kk: usize, j0: usize, dst: &mut [f32]| {
            for (jj, d) in dst.iter_mut().enumerate() {
                *d = b(kk, j0 + jj);
            }
        };
        self.kernel.pack(k, n, fill, &mut self.packed);
        let ends = (Init::Zero, Finish::NONE);
        self.kernel.rows(a, &self.packed, c, (m, k, n), ends);
    }
}

/// The B operand of a product (`k x n`, row-major) packed once into the
/// column panels the micro-kernel reads, so that a weight used by every
/// call is not repacked by each: for a batch of one, packing costs more
/// than the product.
#[derive(Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    kernel: Kernel,
    /// Empty when the weight is held as `int8` instead.
    data: Vec<f32>,
    int8: Option<crate::int8::PackedI8>,
}

impl PackedB {
    /// Packs `b` (`k x n`, row-major) for this CPU's kernel.
    ///
    /// # Panics
    ///
    /// When `b` holds fewer than `k * n` values.
    pub fn new(b: &[f32], k: usize, n: usize) -> Self {
        assert!(b.len() >= k * n, "matmul operand too short");
        let kernel = Kernel::detect();
        let mut data = Vec::new();
        kernel.pack(
            k,
            n,
            |kk, j0, dst| dst.copy_from_slice(&b[kk * n + j0..][..dst.len()]),
            &mut data,
        );
        Self {
            k,
            n,
            kernel,
            data,
            int8: None,
        }
    }

    /// An integer product's weight (whole numbers in i8's range, as f32):
    /// packed for the int8 kernel when this CPU has it (see `int8`), else
    /// as [`PackedB::new`].
    pub(crate) fn integer(b: &[f32], k: usize, n: usize) -> Self {
        match crate::int8::PackedI8::new(b, k, n) {
            Some(w) => Self {
                k,
                n,
                kernel: Kernel::detect(),
                data: Vec::new(),
                int8: Some(w),
            },
            None => Self::new(b, k, n),
        }
    }

    /// The int8 form, when the weight is held as one; it then has no f32
    /// form, and [`matmul_packed`] must not be given it.
    pub(crate) fn int8(&self) -> Option<&crate::int8::PackedI8> {
        self.int8.as_ref()
    }

    /// Rows of B (the shared dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of B (and of the product).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<f32>() + self.int8.as_ref().map_or(0, |w| w.bytes())
    }

    /// B as it was given (`k x n`, row-major), for the rare product the
    /// packed form does not suit.
    pub(crate) fn unpack(&self) -> Vec<f32> {
        if let Some(w) = &self.int8 {
            return w.unpack();
        }
        let (k, n, nr) = (self.k, self.n, self.kernel.nr());
        let mut b = vec![0.0; k * n];
        if k == 0 || n == 0 {
            return b;
        }
        for (p, panel) in self.data.chunks_exact(k * nr).enumerate() {
            let j0 = p * nr;
            let w = nr.min(n - j0);
            for (kk, src) in panel.chunks_exact(nr).enumerate() {
                b[kk * n + j0..kk * n + j0 + w].copy_from_slice(&src[..w]);
            }
        }
        b
    }

    /// `c = init + a · B` for `m` rows of `a` (`m x k`), then the finish;
    /// parallel over row blocks when `parallel` and there is more than one.
    fn run(&self, a: &[f32], c: &mut [f32], m: usize, parallel: bool, ends: Ends<'_>) {
        let (init, finish) = ends;
        let (k, n) = (self.k, self.n);
        assert!(
            a.len() >= m * k && c.len() >= m * n,
            "matmul operands too short"
        );
        if let Init::Bias(b) = init {
            assert!(b.len() >= n, "bias shorter than the product's columns");
        }
        let c = &mut c[..m * n];
        if m == 0 || n == 0 || k == 0 {
            init.fill(c, n);
            return finish.apply(c, n, (0, m), (0, n));
        }
        assert!(self.int8.is_none(), "an int8 weight has no f32 form");
        blocked(a, &self.data, c, (m, k, n), parallel, self.kernel, ends);
    }
}

/// `c = a · B` (or `c += a · B` when `accumulate`) for `m` rows of `a`
/// against a pre-packed B, parallel over rows of `c` on rayon's pool.
///
/// # Panics
///
/// When `a` or `c` is shorter than `m` rows.
///
/// ```
/// use weft_nn::kernels::{PackedB, matmul_packed};
/// let b = PackedB::new(&[5.0, 6.0, 7.0, 8.0], 2, 2);
/// let mut c = [1.0; 4];
/// matmul_packed(&[1.0, 2.0, 3.0, 4.0], &b, &mut c, 2, true);
/// assert_eq!(c, [20.0, 23.0, 44.0, 51.0]);
/// ```
pub fn matmul_packed(a: &[f32], b: &PackedB, c: &mut [f32], m: usize, accumulate: bool) {
    let init = if accumulate { Init::Keep } else { Init::Zero };
    b.run(a, c, m, true, (init, Finish::NONE));
}

/// `c = a · B + bias` (the bias broadcast down the rows) for `m` rows of
/// `a`, then `finish`, in one pass over `c`, whose contents are ignored.
pub(crate) fn matmul_packed_bias(
    a: &[f32],
    b: &PackedB,
    bias: &[f32],
    c: &mut [f32],
    m: usize,
    finish: Finish<'_>,
) {
    b.run(a, c, m, true, (Init::Bias(bias), finish));
}

/// How a product starts C and what it does to C's finished values.
type Ends<'a> = (Init<'a>, Finish<'a>);

/// A micro-kernel: the `MR x NR` tile of A·B over one k block, from an A
/// panel (`kc x MR`) and a B panel (`kc x NR`).
type Micro<const MR: usize, const NR: usize> = fn(&[f32], &[f32]) -> [[f32; NR]; MR];

/// `c = init + a · B`, then the finish, over blocks of [`block_rows`] rows
/// (or, for a single block, runs of B's panels), each computed by `kernel`
/// on its slice of the operands.
fn blocked(
    a: &[f32],
    packed: &[f32],
    c: &mut [f32],
    (m, k, n): (usize, usize, usize),
    parallel: bool,
    kernel: Kernel,
    (init, finish): Ends<'_>,
) {
    let nr = kernel.nr();
    let threads = rayon::current_num_threads();
    let panels = n.div_ceil(nr);
    if parallel && m <= MB && threads > 1 && panels > 1 && m * k * n >= SPLIT_COLUMNS {
        // One block of rows (a batch of one, say): split the columns
        // instead, each task computing a run of B's panels into its own
        // tile of C, which is copied back after.
        let per = panels.div_ceil(threads * 2);
        let cr: &[f32] = c;
        let tiles: Vec<(usize, usize, Vec<f32>)> = (0..panels)
            .step_by(per)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|p0| {
                let (j0, np) = (p0 * nr, per.min(panels - p0));
                let w = (np * nr).min(n - j0);
                let mut tile = Vec::with_capacity(m * w);
                if let Init::Keep = init {
                    for row in cr.chunks_exact(n) {
                        tile.extend_from_slice(&row[j0..j0 + w]);
                    }
                } else {
                    tile.resize(m * w, 0.0);
                }
                let bp = &packed[p0 * k * nr..(p0 + np) * k * nr];
                let ends = (init.cols(j0, w), finish.at(0, j0));
                kernel.rows(a, bp, &mut tile, (m, k, w), ends);
                (j0, w, tile)
            })
            .collect();
        for (j0, w, tile) in tiles {
            for (row, t) in c.chunks_exact_mut(n).zip(tile.chunks_exact(w)) {
                row[j0..j0 + w].copy_from_slice(t);
            }
        }
        return;
    }
    let mb = block_rows(m, if parallel { threads } else { 1 });
    let block = |(blk, cb): (usize, &mut [f32])| {
        let rows = cb.len() / n;
        let ab = &a[blk * mb * k..(blk * mb + rows) * k];
        kernel.rows(ab, packed, cb, (rows, k, n), (init, finish.at(blk * mb, 0)));
    };
    if parallel && m > mb {
        c.par_chunks_mut(mb * n).enumerate().for_each(block);
    } else {
        c.chunks_mut(mb * n).enumerate().for_each(block);
    }
}

/// Rows of C per task for `m` rows on `threads` threads: as tall as
/// [`MB_MAX`] allows while every thread still gets at least two blocks
/// (so an uneven last block costs little), never under [`MB`], and a
/// multiple of it (of every kernel's `MR`).
fn block_rows(m: usize, threads: usize) -> usize {
    let per = m.div_ceil(threads * 2).div_ceil(MB) * MB;
    per.clamp(MB, MB_MAX)
}

/// C += A·B one row of C at a time (axpy over contiguous rows of B): the
/// small-size path.
fn naive_axpy(a: &[f32], b: &[f32], c: &mut [f32], k: usize, n: usize) {
    for (ci, ai) in c.chunks_exact_mut(n).zip(a.chunks_exact(k)) {
        for (p, &av) in ai.iter().enumerate() {
            if av == 0.0 {
                continue;
            }
            for (cv, &bv) in ci.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                *cv += av * bv;
            }
        }
    }
}

fn row_block<const MR: usize, const NR: usize>(
    a: &[f32],
    packed: &[f32],
    c: &mut [f32],
    (rows, k, n): (usize, usize, usize),
    (init, finish): Ends<'_>,
    micro: Micro<MR, NR>,
) {
    let tiles = rows.div_ceil(MR);
    let mut apack = vec![0.0f32; tiles * MR * KC.min(k)];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        // A's rows for this k block as MR-row panels, k-major: one load of
        // MR consecutive floats per step of k. Rows past `rows` stay zero.
        for t in 0..tiles {
            let panel = &mut apack[t * MR * kc..(t + 1) * MR * kc];
            for r in 0..MR.min(rows - t * MR) {
                let src = &a[(t * MR + r) * k + k0..(t * MR + r) * k + k0 + kc];
                for (p, &v) in src.iter().enumerate() {
                    panel[p * MR + r] = v;
                }
            }
        }
        for (p, panel) in packed.chunks_exact(k * NR).enumerate() {
            let bp = &panel[k0 * NR..(k0 + kc) * NR];
            let j0 = p * NR;
            let w = NR.min(n - j0);
            let start = if k0 == 0 {
                init.cols(j0, w)
            } else {
                Init::Keep
            };
            for t in 0..tiles {
                let acc = micro(&apack[t * MR * kc..(t + 1) * MR * kc], bp);
                let r = t * MR;
                let tile_rows = MR.min(rows - r);
                store(&acc, &mut c[r * n..], tile_rows, (j0, w, n), start);
                if k0 + kc == k {
                    finish.apply(c, n, (r, tile_rows), (j0, w));
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn micro_avx2_entry(ap: &[f32], bp: &[f32]) -> [[f32; NR]; MR] {
    // SAFETY: `Kernel::detect` (and the tests' `kernels`) pick this kernel
    // only when the CPU has AVX2 and FMA.
    unsafe { micro_avx2(ap, bp) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn micro_avx2(ap: &[f32], bp: &[f32]) -> [[f32; NR]; MR] {
    micro::<true>(ap, bp)
}

/// An `MR x NR` tile of A·B over one k block: `ap` is an A panel
/// (`kc x MR`), `bp` a B panel (`kc x NR`). The fixed-size arrays let
/// LLVM keep the tile in registers and drop every bounds check.
#[inline(always)]
fn micro<const FMA: bool>(ap: &[f32], bp: &[f32]) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for (a, b) in ap.chunks_exact(MR).zip(bp.chunks_exact(NR)) {
        let a: &[f32; MR] = a.try_into().expect("MR wide");
        let b: &[f32; NR] = b.try_into().expect("NR wide");
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] = if FMA {
                    a[r].mul_add(b[j], acc[r][j])
                } else {
                    acc[r][j] + a[r] * b[j]
                };
            }
        }
    }
    acc
}

/// Adds a tile to `rows` rows of `c` (columns `j0..j0 + w` of rows `n`
/// long), or writes it over them from `start`'s zeros or bias.
#[inline(always)]
fn store<const MR: usize, const NR: usize>(
    acc: &[[f32; NR]; MR],
    c: &mut [f32],
    rows: usize,
    (j0, w, n): (usize, usize, usize),
    start: Init<'_>,
) {
    for (i, accr) in acc.iter().enumerate().take(rows) {
        let row = &mut c[i * n + j0..i * n + j0 + w];
        match start {
            Init::Keep => row.iter_mut().zip(accr).for_each(|(cv, av)| *cv += av),
            Init::Zero => row.copy_from_slice(&accr[..w]),
            Init::Bias(b) => {
                for ((cv, av), bv) in row.iter_mut().zip(accr).zip(b) {
                    *cv = av + bv;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
use avx512::row_block_avx512;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::tile_masks;

#[cfg(test)]
pub(crate) mod tests;
