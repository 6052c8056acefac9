// C = A · B, row-major f32, tiled: each workgroup of 16 x 16 threads
// computes a 64 x 64 tile of C, each thread a 4 x 4 block of it held in
// four vec4 registers, walking k in steps of 16 through workgroup memory.
//
// A is `m x k`, B is `k x n` (one column panel of the weights), and the
// result goes to columns `c_col0 .. c_col0 + n` of C, whose rows are `ldc`
// floats apart (the full width when the weights are split into panels).
// Every load and store is bounds checked against m, k and n, so any shape
// works; out-of-range tile entries are zeros.
//
// B is read through `weight(b0, kk, col)`, B[kk][col] of the matrix that
// starts `b0` values into binding 1, which the module is compiled with
// (`weights.wgsl`): f32 values, or a GGUF decoder's quantised blocks.
//
// Batched (`tiles_m` > 0, the row tiles of one product): workgroup row
// `y` computes row tile `y % tiles_m` of product `y / tiles_m`, whose A
// starts `a_batch` floats further per product, B `b_batch` (0: one B for
// all) and C `m * ldc`. Used for the products of two activations
// (attention's scores and mix) in `onnx/device.rs`.

struct Params {
    m: u32,
    k: u32,
    n: u32,
    ldc: u32,
    c_col0: u32,
    a_batch: u32,
    b_batch: u32,
    tiles_m: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const THREADS: u32 = 256u;

// A tile transposed ([kk][row], 4 rows per vec4) and B tile ([kk][col],
// 4 columns per vec4): the inner loop reads one vec4 of each per step.
var<workgroup> ta: array<vec4<f32>, 256>;
var<workgroup> tb: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    var tile = wg.y;
    var batch = 0u;
    if (p.tiles_m > 0u) {
        tile = wg.y % p.tiles_m;
        batch = wg.y / p.tiles_m;
    }
    let a0 = batch * p.a_batch;
    let b0 = batch * p.b_batch;
    let c0 = batch * p.m * p.ldc;
    let row0 = tile * TILE_M;
    let col0 = wg.x * TILE_N;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var t = 0u; t < p.k; t = t + TILE_K) {
        for (var e = 0u; e < 4u; e = e + 1u) {
            let idx = li + e * THREADS;
            // A: 64 rows x 16 k; neighbouring threads read along a row.
            let r = idx / TILE_K;
            let kk = idx % TILE_K;
            let gr = row0 + r;
            let gk = t + kk;
            var av = 0.0;
            if (gr < p.m && gk < p.k) {
                av = a[a0 + gr * p.k + gk];
            }
            ta[kk * (TILE_M / 4u) + r / 4u][r % 4u] = av;
            // B: 16 k x 64 columns; neighbouring threads read along a row.
            let kb = idx / TILE_N;
            let cb = idx % TILE_N;
            let gkb = t + kb;
            let gc = col0 + cb;
            var bv = 0.0;
            if (gkb < p.k && gc < p.n) {
                bv = weight(b0, gkb, gc);
            }
            tb[kb * (TILE_N / 4u) + cb / 4u][cb % 4u] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            let av = ta[kk * (TILE_M / 4u) + lid.y];
            let bv = tb[kk * (TILE_N / 4u) + lid.x];
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }

    let r = row0 + lid.y * 4u;
    let cc = col0 + lid.x * 4u;
    store_row(c0, r, cc, acc0);
    store_row(c0, r + 1u, cc, acc1);
    store_row(c0, r + 2u, cc, acc2);
    store_row(c0, r + 3u, cc, acc3);
}

fn store_row(c0: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    let base = c0 + row * p.ldc + p.c_col0 + col;
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (col + j < p.n) {
            c[base + j] = v[j];
        }
    }
}

// Few rows of A (a decoder's one token, a batch of a few): a 64 x 64
// tile would compute 60+ rows of zeros, so one of two kernels runs,
// chosen per device (`Gemv` in `gpu/mod.rs`). Both: neighbouring threads
// read neighbouring floats of B, each load of B serves every row of A, and
// batched, workgroup row `y` is product `y` (strides as above; one
// product: y = 0 and the strides unused).
//
// The `gemv` kernels below run products of at most 4 rows, and of more
// in groups of 4 rows: workgroup row `y` is then rows `4y ..` (its A
// starts `a_batch` = 4 k floats further, and its C 4 rows further, as a
// batch would), and `tiles_m`, unused by these kernels otherwise, holds
// the total rows, so that the last group runs only the rows there are.
// In a batched product (`tiles_m` 0) row `y` is batch `y`, of `m` rows.
fn gemv_rows(y: u32) -> u32 {
    if (p.tiles_m == 0u) {
        return p.m;
    }
    return min(p.m, p.tiles_m - y * p.m);
}

// `gemv_columns`: one thread per column of C walks all of k. Best where
// the "GPU" is the CPU (llvmpipe runs a workgroup as SIMD lanes of one
// core, and barriers cost it).
@compute @workgroup_size(64, 1, 1)
fn gemv_columns(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    if (col >= p.n) {
        return;
    }
    let a0 = gid.y * p.a_batch;
    let b0 = gid.y * p.b_batch;
    let c0 = gid.y * p.m * p.ldc;
    let m = gemv_rows(gid.y);
    for (var r = 0u; r < m; r = r + 1u) {
        var acc = 0.0;
        let row = a0 + r * p.k;
        // Four values of k at a time (a word of quantised blocks), summed
        // in order.
        var kk = 0u;
        for (; kk + 3u < p.k; kk = kk + 4u) {
            let w = weight4(b0, kk, col);
            acc = fma(a[row + kk], w.x, acc);
            acc = fma(a[row + kk + 1u], w.y, acc);
            acc = fma(a[row + kk + 2u], w.z, acc);
            acc = fma(a[row + kk + 3u], w.w, acc);
        }
        for (; kk < p.k; kk = kk + 1u) {
            acc = fma(a[row + kk], weight(b0, kk, col), acc);
        }
        c[c0 + r * p.ldc + p.c_col0 + col] = acc;
    }
}

// `gemv_split`: each workgroup computes 16 columns of C, its 16 x 16
// threads splitting k into 16 interleaved slices (thread (x, y) walks
// k = y, y + 16, ... of column x), then summing the slices' partial sums
// through workgroup memory. A decoder's products are 192-1536 columns:
// one thread per column leaves a GPU too few threads to hide the latency
// of their loads, and splitting k gives it 16 times as many.
const GEMV_COLS: u32 = 16u;
const GEMV_SLICES: u32 = 16u;
// At most this many rows of A (`GEMV_ROWS` in `gpu/mod.rs`).
const GEMV_MAX_ROWS: u32 = 4u;
var<workgroup> partial: array<f32, 1024>; // GEMV_MAX_ROWS x GEMV_SLICES x GEMV_COLS

@compute @workgroup_size(16, 16, 1)
fn gemv_split(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wg.x * GEMV_COLS + lid.x;
    let slice = lid.y;
    let a0 = wg.y * p.a_batch;
    let b0 = wg.y * p.b_batch;
    let c0 = wg.y * p.m * p.ldc;
    let m = gemv_rows(wg.y);
    // One accumulator per row, each named (an array indexed by a loop
    // bound only known at run time may be kept in memory, not registers);
    // the row tests are uniform across the workgroup.
    var acc0 = 0.0;
    var acc1 = 0.0;
    var acc2 = 0.0;
    var acc3 = 0.0;
    if (col < p.n) {
        for (var kk = slice; kk < p.k; kk = kk + GEMV_SLICES) {
            let w = weight(b0, kk, col);
            let at = a0 + kk;
            if (m > 0u) { acc0 = fma(a[at], w, acc0); }
            if (m > 1u) { acc1 = fma(a[at + p.k], w, acc1); }
            if (m > 2u) { acc2 = fma(a[at + 2u * p.k], w, acc2); }
            if (m > 3u) { acc3 = fma(a[at + 3u * p.k], w, acc3); }
        }
    }
    gemv_sum(vec4<f32>(acc0, acc1, acc2, acc3), vec2<u32>(lid.x, slice), GEMV_COLS, GEMV_SLICES, col < p.n, m, c0 + p.c_col0 + col);
}

// The split-k kernels' ending: thread (x, slice) of a workgroup of
// `cols` x `slices` leaves its partial sums of up to four rows in
// `partial`; then thread (x, r) sums row r's slices of column x into C
// (`at`: the column's place in C's first row of the group).
fn gemv_sum(acc: vec4<f32>, lid: vec2<u32>, cols: u32, slices: u32, live: bool, m: u32, at: u32) {
    let mine = lid.y * cols + lid.x;
    let row = slices * cols;
    partial[mine] = acc.x;
    partial[row + mine] = acc.y;
    partial[2u * row + mine] = acc.z;
    partial[3u * row + mine] = acc.w;
    workgroupBarrier();
    let r = lid.y;
    if (live && r < m) {
        var sum = 0.0;
        for (var s = 0u; s < slices; s = s + 1u) {
            sum = sum + partial[(r * slices + s) * cols + lid.x];
        }
        c[at + r * p.ldc] = sum;
    }
}

// `gemv_deep`: each workgroup computes 8 columns of C, its 8 x 32 threads
// splitting k into 32 interleaved slices, and each thread loads four
// weights before it uses any. `gemv_split`'s threads each wait on one
// load at a time, so a product of k = 1536 is a chain of 96 memory
// latencies; here it is 12 rounds of four loads in flight.
const DEEP_COLS: u32 = 8u;
const DEEP_SLICES: u32 = 32u;

@compute @workgroup_size(8, 32, 1)
fn gemv_deep(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = wg.x * DEEP_COLS + lid.x;
    let slice = lid.y;
    let a0 = wg.y * p.a_batch;
    let b0 = wg.y * p.b_batch;
    let c0 = wg.y * p.m * p.ldc;
    let m = gemv_rows(wg.y);
    let n = p.n;
    var acc0 = 0.0;
    var acc1 = 0.0;
    var acc2 = 0.0;
    var acc3 = 0.0;
    if (col < n) {
        let s = DEEP_SLICES;
        var kk = slice;
        for (; kk + 3u * s < p.k; kk = kk + 4u * s) {
            let w0 = weight(b0, kk, col);
            let w1 = weight(b0, kk + s, col);
            let w2 = weight(b0, kk + 2u * s, col);
            let w3 = weight(b0, kk + 3u * s, col);
            var r0 = a0 + kk;
            acc0 = fma(a[r0 + 3u * s], w3, fma(a[r0 + 2u * s], w2, fma(a[r0 + s], w1, fma(a[r0], w0, acc0))));
            if (m > 1u) {
                r0 = r0 + p.k;
                acc1 = fma(a[r0 + 3u * s], w3, fma(a[r0 + 2u * s], w2, fma(a[r0 + s], w1, fma(a[r0], w0, acc1))));
            }
            if (m > 2u) {
                r0 = r0 + p.k;
                acc2 = fma(a[r0 + 3u * s], w3, fma(a[r0 + 2u * s], w2, fma(a[r0 + s], w1, fma(a[r0], w0, acc2))));
            }
            if (m > 3u) {
                r0 = r0 + p.k;
                acc3 = fma(a[r0 + 3u * s], w3, fma(a[r0 + 2u * s], w2, fma(a[r0 + s], w1, fma(a[r0], w0, acc3))));
            }
        }
        for (; kk < p.k; kk = kk + s) {
            let w = weight(b0, kk, col);
            let at = a0 + kk;
            if (m > 0u) { acc0 = fma(a[at], w, acc0); }
            if (m > 1u) { acc1 = fma(a[at + p.k], w, acc1); }
            if (m > 2u) { acc2 = fma(a[at + 2u * p.k], w, acc2); }
            if (m > 3u) { acc3 = fma(a[at + 3u * p.k], w, acc3); }
        }
    }
    gemv_sum(vec4<f32>(acc0, acc1, acc2, acc3), vec2<u32>(lid.x, slice), DEEP_COLS, DEEP_SLICES, col < n, m, c0 + p.c_col0 + col);
}
