// The kernels an ONNX transformer encoder needs between its weight
// products (`matmul.wgsl`), so that a call keeps its activations on the
// device: element-wise arithmetic with a broadcast operand, activations,
// layer normalisation, softmax over rows, exact GELU and multi-head
// attention with an additive mask (the last two as the fused nodes of
// `onnx/fuse.rs`). Each writes a new buffer; none writes over its inputs.
//
// Bindings as in `ops.wgsl`: storage buffers from 0, then eight u32
// parameters (floats as their bits). Row-major f32 throughout.


// The row a workgroup of a row kernel handles (rows spread over x and y:
// one dispatch dimension holds at most 65535 workgroups).
fn row_of(wg: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wg.y * groups.x + wg.x;
}

// ---- binary: out[i] = a[i] op b[i % period], op 0 add, 1 sub, 2 mul,
// 3 div, 4 pow, 5 max, 6 min, 7 PRelu (b the slope) (b a same-shaped
// operand, a row broadcast or a scalar).

struct BinaryParams {
    count: u32,
    period: u32,
    op: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
    _p4: u32,
}

@group(0) @binding(0) var<storage, read> bin_a: array<f32>;
@group(0) @binding(1) var<storage, read> bin_b: array<f32>;
@group(0) @binding(2) var<storage, read_write> bin_out: array<f32>;
@group(0) @binding(3) var<uniform> bin_p: BinaryParams;

@compute @workgroup_size(64, 1, 1)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let period = bin_p.period;
    for (var i = gid.x; i < bin_p.count; i = i + groups.x * THREADS) {
        let a = bin_a[i];
        // No division where none is needed (it is slow on CPU devices).
        var at = i;
        if (period == 1u) {
            at = 0u;
        } else if (period != bin_p.count) {
            at = i % period;
        }
        let b = bin_b[at];
        var r = a + b;
        switch bin_p.op {
            case 1u: { r = a - b; }
            case 2u: { r = a * b; }
            case 3u: { r = a / b; }
            case 4u: { r = power(a, b); }
            // Max and Min: NaN if either is (its bits tell it: WGSL's
            // `max`, `min` and comparisons may ignore NaN).
            case 5u: { r = max(a, b); }
            case 6u: { r = min(a, b); }
            case 7u: { r = select(a, a * b, a < 0.0); }
            // Comparisons and logic give bools as the device holds them:
            // 1 or 0.
            case 8u: { r = select(0.0, 1.0, a == b); }
            case 9u: { r = select(0.0, 1.0, a < b); }
            case 10u: { r = select(0.0, 1.0, a <= b); }
            case 11u: { r = select(0.0, 1.0, a > b); }
            case 12u: { r = select(0.0, 1.0, a >= b); }
            case 13u: { r = select(0.0, 1.0, a != 0.0 && b != 0.0); }
            case 14u: { r = select(0.0, 1.0, a != 0.0 || b != 0.0); }
            case 15u: { r = select(0.0, 1.0, (a != 0.0) != (b != 0.0)); }
            default: {}
        }
        let either_nan = is_nan_bits(a) || is_nan_bits(b);
        if ((bin_p.op == 5u || bin_p.op == 6u) && either_nan) {
            r = nan();
        }
        // A comparison with NaN is false.
        if (bin_p.op >= 8u && bin_p.op <= 12u && either_nan) {
            r = 0.0;
        }
        bin_out[i] = r;
    }
}

// `a` to the power `b` as the CPU computes it: WGSL's `pow` is undefined
// for a negative base, which an integer exponent allows (and squares, the
// common case, are one product); any other exponent of one is NaN.
fn power(a: f32, b: f32) -> f32 {
    if (b == 2.0) {
        return a * a;
    }
    if (b == 0.0) {
        return 1.0;
    }
    let integer = b == floor(b);
    // An odd exponent keeps the sign (exponents past 2^24 are all even).
    let odd = integer && abs(b) < 16777216.0 && (i32(abs(b)) & 1) == 1;
    if (a == 0.0) {
        // WGSL's `pow` is undefined here too: 0 to a positive power is 0,
        // to a negative one infinite (signed as `a` for odd powers).
        var m = 0.0;
        if (b < 0.0) {
            m = bitcast<f32>(0x7f800000u);
        }
        return select(m, -m, odd && (bitcast<u32>(a) >> 31u) == 1u);
    }
    if (a > 0.0) {
        return pow(a, b);
    }
    if (!integer) {
        return nan();
    }
    let m = pow(-a, b);
    return select(m, -m, odd);
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// ---- layer_norm: out[r] = (x[r] - mean) / sqrt(var + eps) * w + b over
// rows of `d`, one workgroup per row (the CPU kernel's order).

struct NormParams {
    d: u32,
    eps: u32,
    rows: u32,
    // 0: no bias (`ln_b` is bound to something else and not read).
    has_bias: u32,
    // 1: a weight and bias per channel, not per element: element i of
    // row r is channel (r % groups) * (d / inner) + i / inner.
    per_channel: u32,
    groups: u32,
    inner: u32,
    _p4: u32,
}

@group(0) @binding(0) var<storage, read> ln_x: array<f32>;
@group(0) @binding(1) var<storage, read> ln_w: array<f32>;
@group(0) @binding(2) var<storage, read> ln_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> ln_out: array<f32>;
@group(0) @binding(4) var<uniform> ln_p: NormParams;

@compute @workgroup_size(64, 1, 1)
fn layer_norm(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_of(wg, groups);
    if (row >= ln_p.rows) {
        return;
    }
    let d = ln_p.d;
    let at = row * d;
    var sum = 0.0;
    for (var i = lid; i < d; i = i + THREADS) {
        sum = sum + ln_x[at + i];
    }
    let mean = workgroup_sum(lid, sum) / f32(d);
    var sq = 0.0;
    for (var i = lid; i < d; i = i + THREADS) {
        let c = ln_x[at + i] - mean;
        sq = fma(c, c, sq);
    }
    let q = sqrt(workgroup_sum(lid, sq) / f32(d) + bitcast<f32>(ln_p.eps));
    for (var i = lid; i < d; i = i + THREADS) {
        var wi = i;
        if (ln_p.per_channel != 0u) {
            wi = (row % ln_p.groups) * (d / ln_p.inner) + i / ln_p.inner;
        }
        var bias = 0.0;
        if (ln_p.has_bias != 0u) {
            bias = ln_b[wi];
        }
        ln_out[at + i] = (ln_x[at + i] - mean) / q * ln_w[wi] + bias;
    }
}

// ---- softmax: each row of `d` floats, one workgroup per row (or its
// log-softmax).

@group(0) @binding(0) var<storage, read> sm_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> sm_out: array<f32>;
@group(0) @binding(2) var<uniform> sm_p: NormParams;

@compute @workgroup_size(64, 1, 1)
fn softmax(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_of(wg, groups);
    if (row >= sm_p.rows) {
        return;
    }
    let d = sm_p.d;
    let at = row * d;
    var best = -3.40282347e38;
    for (var i = lid; i < d; i = i + THREADS) {
        best = max(best, sm_x[at + i]);
    }
    let top = workgroup_max(lid, best);
    var sum = 0.0;
    for (var i = lid; i < d; i = i + THREADS) {
        sum = sum + exp(sm_x[at + i] - top);
    }
    let total = workgroup_sum(lid, sum);
    // (`has_bias` says log-softmax here: x - top - log(sum).)
    if (sm_p.has_bias != 0u) {
        let lse = log(total);
        for (var i = lid; i < d; i = i + THREADS) {
            sm_out[at + i] = (sm_x[at + i] - top) - lse;
        }
        return;
    }
    let inv = 1.0 / total;
    for (var i = lid; i < d; i = i + THREADS) {
        sm_out[at + i] = exp(sm_x[at + i] - top) * inv;
    }
}

// ---- unary: out[i] = f(x[i]), f by `op`: 0 Relu, 1 Sigmoid, 2 Tanh,
// 3 Erf, 4 Gelu (exact), 5 Gelu (tanh), 6 Exp, 7 Sqrt, 8 Neg,
// 9 Reciprocal, 10 Abs, 11 Log, 12 Clip (to [lo, hi]; NaN stays NaN),
// 13 Cos, 14 Sin, 15 LeakyRelu, 16 Elu, 17 Selu, 18 HardSigmoid,
// 19 HardSwish, 20 Softplus, 21 Softsign, 22 Mish, 23 Celu,
// 24 ThresholdedRelu, 25 Floor, 26 Ceil, 27 Round, 28 Sign, 29 Swish:
// ONNX's formulas, with its attributes as `a` and `b`.

struct UnaryParams {
    count: u32,
    op: u32,
    // Clip's bounds, as bits.
    lo: u32,
    hi: u32,
    _p2: u32,
    _p3: u32,
    _p4: u32,
    _p5: u32,
}

@group(0) @binding(0) var<storage, read> un_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> un_out: array<f32>;
@group(0) @binding(2) var<uniform> un_p: UnaryParams;

// tanh for any x (the built-in may give inf / inf past ~±44).
fn tanh_any(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

// sin(x) when `quarter` is 0, cos(x) when 1: x reduced to r in
// [-pi/4, pi/4] by quarter turns (pi/2 in three parts, exact products
// for |x| up to ~1e4), then Cephes' sinf/cosf polynomials on r. The
// built-ins are only required to be accurate to 2^-11 in [-pi, pi]
// (rotary angles reach thousands of radians). Within 1e-6 of the CPU
// path for |x| up to ~1e4.
fn sin_cos(x: f32, quarter: i32) -> f32 {
    let q = round(x * 0.63661977236758134);
    let r = ((x - q * 1.5703125) - q * 4.837512969970703125e-4) - q * 7.54978995489188216e-8;
    let z = r * r;
    let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
    let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
    // The quadrant of x (+1 for cos): sin r, cos r, -sin r, -cos r.
    let k = (i32(q) + quarter) & 3;
    var v = select(s, c, (k & 1) == 1);
    v = select(v, -v, k >= 2);
    // NaN for infinities and NaN (told by their exponent bits: a compiler
    // may fold x - x to 0).
    return select(v, nan(), (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u);
}

// log(1 + exp(x)) as the CPU computes it: x itself past 30; where
// exp(x) is tiny, 1 + exp(x) would round its digits away.
fn softplus(x: f32) -> f32 {
    if (x > 30.0) {
        return x;
    }
    let e = exp(x);
    return select(log(1.0 + e), e * (1.0 - 0.5 * e), e < 1e-4);
}

@compute @workgroup_size(64, 1, 1)
fn unary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < un_p.count; i = i + groups.x * THREADS) {
        let x = un_x[i];
        // The op's parameters (alpha, beta or gamma), or Clip's bounds.
        let a = bitcast<f32>(un_p.lo);
        let b = bitcast<f32>(un_p.hi);
        var r = x;
        switch un_p.op {
            case 0u: { r = select(x, 0.0, x < 0.0); }
            case 1u: {
                // No overflow to infinity for very negative x.
                let e = exp(-abs(x));
                r = select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
            }
            case 2u: { r = tanh_any(x); }
            case 3u: { r = erf(x); }
            case 4u: { r = 0.5 * x * (1.0 + erf(x * 0.70710678118654752)); }
            case 5u: { r = 0.5 * x * (1.0 + tanh_any(0.79788456080286536 * (x + 0.044715 * x * x * x))); }
            case 6u: { r = exp(x); }
            // (WGSL leaves `sqrt` and `log` of a negative undefined.)
            case 7u: { r = select(sqrt(x), nan(), x < 0.0); }
            case 8u: { r = -x; }
            case 9u: { r = 1.0 / x; }
            case 10u: { r = abs(x); }
            case 11u: {
                r = log(x);
                if (x == 0.0) {
                    r = bitcast<f32>(0xff800000u);
                } else if (x < 0.0) {
                    r = nan();
                }
            }
            case 12u: {
                r = select(x, bitcast<f32>(un_p.lo), x < bitcast<f32>(un_p.lo));
                r = select(r, bitcast<f32>(un_p.hi), r > bitcast<f32>(un_p.hi));
            }
            case 13u: { r = sin_cos(x, 1); }
            case 14u: { r = sin_cos(x, 0); }
            case 15u: { r = select(x, a * x, x < 0.0); }
            case 16u: { r = select(x, a * (exp(x) - 1.0), x < 0.0); }
            case 17u: { r = select(b * x, b * (a * exp(x) - a), x <= 0.0); }
            case 18u: { r = clamp(a * x + b, 0.0, 1.0); }
            case 19u: { r = x * clamp(x / 6.0 + 0.5, 0.0, 1.0); }
            case 20u: { r = softplus(x); }
            case 21u: { r = x / (1.0 + abs(x)); }
            case 22u: { r = x * tanh_any(softplus(x)); }
            case 23u: { r = max(x, 0.0) + min(a * (exp(x / a) - 1.0), 0.0); }
            case 24u: { r = select(0.0, x, x > a); }
            case 25u: { r = floor(x); }
            case 26u: { r = ceil(x); }
            // (Halfway cases to even, as the CPU's `round_ties_even`.)
            case 27u: { r = round(x); }
            case 28u: { r = select(select(x, -1.0, x < 0.0), 1.0, x > 0.0); }
            case 29u: {
                let e = exp(-abs(a * x));
                r = x * select(e / (1.0 + e), 1.0 / (1.0 + e), a * x >= 0.0);
            }
            // Bools out (1 or 0): Not, IsNaN, IsInf (`a`: negative ones,
            // `b`: positive ones), and a cast to bool (NaN is true).
            case 30u: { r = select(0.0, 1.0, x == 0.0); }
            case 31u: { r = select(0.0, 1.0, is_nan_bits(x)); }
            case 32u: {
                let bits = bitcast<u32>(x);
                r = select(0.0, 1.0, (bits == 0xff800000u && a != 0.0) || (bits == 0x7f800000u && b != 0.0));
            }
            case 33u: { r = select(0.0, 1.0, x != 0.0 || is_nan_bits(x)); }
            default: {}
        }
        // NaN in, NaN out, as on the CPU (WGSL's `clamp`, `max` and
        // comparisons may drop it), but for ThresholdedRelu (0) and the
        // ops that give bools.
        if (un_p.op >= 15u && un_p.op != 24u && un_p.op < 30u && is_nan_bits(x)) {
            r = x;
        }
        un_out[i] = r;
    }
}

// ---- gelu: out[i] = (x * (erf(x / root2) + one)) * half, the exact GELU
// in the graph's order, with the CPU path's rational erf.

struct GeluParams {
    count: u32,
    root2: u32,
    one: u32,
    half: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<storage, read> gelu_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gelu_out: array<f32>;
@group(0) @binding(2) var<uniform> gelu_p: GeluParams;

fn erf(v: f32) -> f32 {
    let x = clamp(v, -4.0, 4.0);
    let x2 = x * x;
    var p = -2.72614225801306e-10;
    p = p * x2 + 2.77068142495902e-08;
    p = p * x2 - 2.10102402082508e-06;
    p = p * x2 - 5.69250639462346e-05;
    p = p * x2 - 7.34990630326855e-04;
    p = p * x2 - 2.95459980854025e-03;
    p = p * x2 - 1.60960333262415e-02;
    var q = -1.45660718464996e-05;
    q = q * x2 - 2.13374055278905e-04;
    q = q * x2 - 1.68282697438203e-03;
    q = q * x2 - 7.37332916720468e-03;
    q = q * x2 - 1.42647390514189e-02;
    return x * p / q;
}

@compute @workgroup_size(64, 1, 1)
fn gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let root2 = bitcast<f32>(gelu_p.root2);
    let one = bitcast<f32>(gelu_p.one);
    let half = bitcast<f32>(gelu_p.half);
    for (var i = gid.x; i < gelu_p.count; i = i + groups.x * THREADS) {
        let x = gelu_x[i];
        gelu_out[i] = (x * (erf(x / root2) + one)) * half;
    }
}

// ---- attention: softmax(q·kᵀ / scale + mask)·v for each batch row, head
// and query, one invocation per (head, query row), each walking its keys
// in turn: no barriers (encoder sequences are short). Q, K and V are
// [B, S, H, D]; the mask is read at `b·mb + h·mh + i·mi + j·mj` (strides of
// 0 where it broadcasts; `mj`, 0 or 1, is the low bit of `mj_batch`, B the
// rest).
// Scores go through `scores`, S floats per (row, head).

struct AttnParams {
    s: u32,
    heads: u32,
    d: u32,
    scale: u32,
    mb: u32,
    mh: u32,
    mi: u32,
    mj_batch: u32,
}

@group(0) @binding(0) var<storage, read> at_q: array<f32>;
@group(0) @binding(1) var<storage, read> at_k: array<f32>;
@group(0) @binding(2) var<storage, read> at_v: array<f32>;
@group(0) @binding(3) var<storage, read> at_mask: array<f32>;
@group(0) @binding(4) var<storage, read_write> at_scores: array<f32>;
@group(0) @binding(5) var<storage, read_write> at_out: array<f32>;
@group(0) @binding(6) var<uniform> at_p: AttnParams;

@compute @workgroup_size(64, 1, 1)
fn attention(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let s = at_p.s;
    let d = at_p.d;
    let heads = at_p.heads;
    let width = heads * d;
    let inv_scale = 1.0 / bitcast<f32>(at_p.scale);
    let mj = at_p.mj_batch & 1u;
    let rows = (at_p.mj_batch >> 1u) * s;
    let total = rows * heads;
    for (var t = gid.x; t < total; t = t + groups.x * THREADS) {
        // Neighbouring invocations take neighbouring queries of one head,
        // so they read the same keys and values at the same time.
        let head = t / rows;
        // Query row `i` of batch row `b`.
        let row = t % rows;
        let b = row / s;
        let i = row % s;
        let q0 = row * width + head * d;
        let m0 = b * at_p.mb + head * at_p.mh + i * at_p.mi;
        let scores = t * s;
        // f32::MIN, not -3e38: a row masked with f32::MIN throughout is
        // then uniform, as on the CPU, not 0 / 0 (and no infinity, which
        // WGSL lets a compiler assume away).
        var best = -3.40282347e38;
        for (var j = 0u; j < s; j = j + 1u) {
            let k0 = (b * s + j) * width + head * d;
            var dot = 0.0;
            for (var c = 0u; c < d; c = c + 1u) {
                dot = fma(at_q[q0 + c], at_k[k0 + c], dot);
            }
            let v = dot * inv_scale + at_mask[m0 + j * mj];
            at_scores[scores + j] = v;
            best = max(best, v);
        }
        var sum = 0.0;
        for (var j = 0u; j < s; j = j + 1u) {
            let e = exp(at_scores[scores + j] - best);
            at_scores[scores + j] = e;
            sum = sum + e;
        }
        let inv = 1.0 / sum;
        for (var c = 0u; c < d; c = c + 1u) {
            var acc = 0.0;
            for (var j = 0u; j < s; j = j + 1u) {
                acc = fma(at_scores[scores + j], at_v[(b * s + j) * width + head * d + c], acc);
            }
            at_out[q0 + c] = acc * inv;
        }
    }
}

// ---- strided: a copy between two layouts, for `Transpose`, `Slice`,
// `Expand` and each part of a `Concat`. For every multi-index i of
// `dims` (`count` of them, row-major),
//   out[out_offset + Σ i[a]·out_stride[a]] = x[in_offset + Σ i[a]·in_stride[a]]
// Strides are signed (a slice stepping backwards). `st_meta` holds rank,
// in_offset, out_offset, then dims, in strides and out strides (rank each).

struct StridedParams {
    count: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
    _p4: u32,
    _p5: u32,
    _p6: u32,
}

@group(0) @binding(0) var<storage, read> st_x: array<f32>;
@group(0) @binding(1) var<storage, read> st_meta: array<i32>;
@group(0) @binding(2) var<storage, read_write> st_out: array<f32>;
@group(0) @binding(3) var<uniform> st_p: StridedParams;

@compute @workgroup_size(64, 1, 1)
fn strided(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let rank = u32(st_meta[0]);
    for (var i = gid.x; i < st_p.count; i = i + groups.x * THREADS) {
        var rem = i;
        var src = st_meta[1];
        var dst = st_meta[2];
        for (var a = rank; a > 0u; a = a - 1u) {
            let n = u32(st_meta[2u + a]);
            let at = i32(rem % n);
            rem = rem / n;
            src = src + at * st_meta[2u + rank + a];
            dst = dst + at * st_meta[2u + 2u * rank + a];
        }
        st_out[u32(dst)] = st_x[u32(src)];
    }
}

// ---- pad_edges: a `Pad` whose new elements come from x: out[i] is x at
// i's index mapped back into x axis by axis, `edge` (mode 0) clamped,
// `reflect` (1) mirrored about x's first and last elements (periodically,
// as the CPU does), `wrap` (2) repeated. `pe_meta` (i32s): rank, mode,
// then per axis the output's extent, x's, the pad before it (negative: a
// crop) and x's stride.

@group(0) @binding(0) var<storage, read> pe_x: array<f32>;
@group(0) @binding(1) var<storage, read> pe_meta: array<i32>;
@group(0) @binding(2) var<storage, read_write> pe_out: array<f32>;
@group(0) @binding(3) var<uniform> pe_p: StridedParams;

// a mod m in [0, m).
fn rem_euclid(a: i32, m: i32) -> i32 {
    let r = a % m;
    return select(r, r + m, r < 0);
}

@compute @workgroup_size(64, 1, 1)
fn pad_edges(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let rank = pe_meta[0];
    let mode = pe_meta[1];
    for (var i = gid.x; i < pe_p.count; i = i + groups.x * THREADS) {
        var rem = i32(i);
        var src = 0;
        for (var a = rank - 1; a >= 0; a = a - 1) {
            let at = 2 + 4 * a;
            let n = pe_meta[at];
            let d = pe_meta[at + 1];
            var j = rem % n - pe_meta[at + 2];
            rem = rem / n;
            if (j < 0 || j >= d) {
                if (mode == 0) {
                    j = clamp(j, 0, d - 1);
                } else if (mode == 1) {
                    if (d > 1) {
                        let period = 2 * (d - 1);
                        let m = rem_euclid(j, period);
                        j = select(m, period - m, m >= d);
                    } else {
                        j = 0;
                    }
                } else {
                    j = rem_euclid(j, d);
                }
            }
            src = src + j * pe_meta[at + 3];
        }
        pe_out[i] = pe_x[src];
    }
}

// ---- reduce_rows: out[r] = a reduction of row r of `d` floats, one
// workgroup per row: sum, mean or max (ops 0, 1, 2; 3 a max that skips
// NaN), min (4), sum of squares (5), L1 and L2 norms (6, 7), log of the
// sum (8), log-sum-exp (9) and product (10).

@group(0) @binding(0) var<storage, read> red_x: array<f32>;
@group(0) @binding(1) var<storage, read_write> red_out: array<f32>;
@group(0) @binding(2) var<uniform> red_p: NormParams;

fn is_nan_bits(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(64, 1, 1)
fn reduce_rows(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = row_of(wg, groups);
    if (row >= red_p.rows) {
        return;
    }
    let d = red_p.d;
    let at = row * d;
    // (`eps` holds the op here.)
    let op = red_p.eps;
    if (op == 2u || op == 3u || op == 4u || op == 9u) {
        // The largest value that is not NaN (-inf if none; of the
        // negated values for a min), and whether there was a NaN (found
        // by its bits: WGSL's `max` and comparisons may ignore NaN).
        // Ops 2 and 4 (ReduceMax, ReduceMin) give NaN then, op 3
        // (GlobalMaxPool) skips it, op 9 sums it in below.
        let sign = select(1.0, -1.0, op == 4u);
        var best = bitcast<f32>(0xff800000u);
        var nans = 0.0;
        for (var i = lid; i < d; i = i + THREADS) {
            let v = red_x[at + i];
            if (is_nan_bits(v)) {
                nans = nans + 1.0;
            } else {
                best = max(best, sign * v);
            }
        }
        let top = workgroup_max(lid, best);
        let any_nan = workgroup_sum(lid, nans);
        if (op != 9u) {
            if (lid == 0u) {
                red_out[row] = select(sign * top, nan(), op != 3u && any_nan > 0.0);
            }
            return;
        }
        // log-sum-exp: the largest value plus the log of the sum of the
        // exponentials of what each is short of it (an infinite largest
        // value is the answer itself).
        var sum = 0.0;
        for (var i = lid; i < d; i = i + THREADS) {
            sum = sum + exp(red_x[at + i] - top);
        }
        let total = workgroup_sum(lid, sum);
        if (lid == 0u) {
            var r = top;
            if ((bitcast<u32>(top) & 0x7fffffffu) < 0x7f800000u) {
                r = top + log(total);
            }
            red_out[row] = select(r, nan(), any_nan > 0.0);
        }
        return;
    }
    if (op == 10u) {
        var prod = 1.0;
        for (var i = lid; i < d; i = i + THREADS) {
            prod = prod * red_x[at + i];
        }
        let total = workgroup_prod(lid, prod);
        if (lid == 0u) {
            red_out[row] = total;
        }
        return;
    }
    var sum = 0.0;
    for (var i = lid; i < d; i = i + THREADS) {
        let v = red_x[at + i];
        if (op == 5u || op == 7u) {
            sum = sum + v * v;
        } else if (op == 6u) {
            sum = sum + abs(v);
        } else {
            sum = sum + v;
        }
    }
    let total = workgroup_sum(lid, sum);
    if (lid == 0u) {
        var r = total;
        if (op == 1u) {
            r = total / f32(d);
        } else if (op == 7u) {
            r = sqrt(total);
        } else if (op == 8u) {
            r = log(total);
        }
        red_out[row] = r;
    }
}

// ---- window: convolution (mode 0), max / average pooling (modes 1,
// 2), transposed convolution (mode 3; weights `[c, mg, kd, kh, kw]`) or
// Lp pooling (mode 4, p = meta 22: 1 or 2) over NCDHW (2-D as a depth of
// 1, 1-D as a height of 1 too), one output element per thread.
// `win_meta` (i32s): 0 n, 1 c, 2 h, 3 w, 4 m (output channels), 5 cg
// (input channels per group), 6 mg (output channels per group), 7 kh,
// 8 kw, 9 oh, 10 ow, 11 sh, 12 sw (strides), 13 dh, 14 dw (dilations),
// 15 ph, 16 pw (pads before), 17 h_end, 18 w_end (h and w plus the pads
// after: where count_include_pad stops counting), 19 mode, 20 has_bias,
// 21 count_include_pad, 22 p (LpPool), and the depth's: 23 d, 24 kd,
// 25 od, 26 sd, 27 dd, 28 pd, 29 d_end. Weights `[m, cg, kd, kh, kw]`,
// bias `[m]`.

@group(0) @binding(0) var<storage, read> win_x: array<f32>;
@group(0) @binding(1) var<storage, read> win_w: array<f32>;
@group(0) @binding(2) var<storage, read> win_bias: array<f32>;
@group(0) @binding(3) var<storage, read> win_meta: array<i32>;
@group(0) @binding(4) var<storage, read_write> win_out: array<f32>;
@group(0) @binding(5) var<uniform> win_p: StridedParams;

@compute @workgroup_size(64, 1, 1)
fn window(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = win_meta[1];
    let h = win_meta[2];
    let w = win_meta[3];
    let m = win_meta[4];
    let cg = win_meta[5];
    let mg = win_meta[6];
    let kh = win_meta[7];
    let kw = win_meta[8];
    let oh = win_meta[9];
    let ow = win_meta[10];
    let mode = win_meta[19];
    let depth = win_meta[23];
    let kd = win_meta[24];
    let od = win_meta[25];
    let sd = win_meta[26];
    let dd = win_meta[27];
    let pd = win_meta[28];
    for (var i = gid.x; i < win_p.count; i = i + groups.x * THREADS) {
        let o = i32(i);
        let ox = o % ow;
        let oy = (o / ow) % oh;
        let oz = (o / (ow * oh)) % od;
        let oc = (o / (ow * oh * od)) % m;
        let b = o / (ow * oh * od * m);
        let z0 = oz * sd - pd;
        let y0 = oy * win_meta[11] - win_meta[15];
        let x0 = ox * win_meta[12] - win_meta[16];
        let dh = win_meta[13];
        let dw = win_meta[14];
        if (mode == 3) {
            // Transposed: input (iz, iy, ix) and tap (kz, ky, kx) add to
            // output (iz · sd + kz · dd − pd, ...), so an output gathers
            // the taps whose distance back from it the stride divides.
            let g = oc / mg;
            let mo = oc - g * mg;
            let sh = win_meta[11];
            let sw = win_meta[12];
            var acc = 0.0;
            for (var ci = 0; ci < cg; ci = ci + 1) {
                let cin = g * cg + ci;
                let volume = (b * c + cin) * depth;
                let taps = (cin * mg + mo) * kd;
                for (var kz = 0; kz < kd; kz = kz + 1) {
                    let tz = oz + pd - kz * dd;
                    if (tz < 0 || tz % sd != 0 || tz / sd >= depth) {
                        continue;
                    }
                    let plane = (volume + tz / sd) * h;
                    let ztaps = (taps + kz) * kh;
                    for (var ky = 0; ky < kh; ky = ky + 1) {
                        let ty = oy + win_meta[15] - ky * dh;
                        if (ty < 0 || ty % sh != 0 || ty / sh >= h) {
                            continue;
                        }
                        let row = (plane + ty / sh) * w;
                        let wrow = (ztaps + ky) * kw;
                        for (var kx = 0; kx < kw; kx = kx + 1) {
                            let tx = ox + win_meta[16] - kx * dw;
                            if (tx >= 0 && tx % sw == 0 && tx / sw < w) {
                                acc = acc + win_x[row + tx / sw] * win_w[wrow + kx];
                            }
                        }
                    }
                }
            }
            if (win_meta[20] != 0) {
                acc = acc + win_bias[oc];
            }
            win_out[i] = acc;
            continue;
        }
        if (mode == 0) {
            let g = oc / mg;
            var acc = 0.0;
            for (var ci = 0; ci < cg; ci = ci + 1) {
                let volume = (b * c + g * cg + ci) * depth;
                let taps = (oc * cg + ci) * kd;
                for (var kz = 0; kz < kd; kz = kz + 1) {
                    let iz = z0 + kz * dd;
                    if (iz < 0 || iz >= depth) {
                        continue;
                    }
                    let plane = (volume + iz) * h;
                    let ztaps = (taps + kz) * kh;
                    for (var ky = 0; ky < kh; ky = ky + 1) {
                        let iy = y0 + ky * dh;
                        if (iy < 0 || iy >= h) {
                            continue;
                        }
                        let row = (plane + iy) * w;
                        let wrow = (ztaps + ky) * kw;
                        for (var kx = 0; kx < kw; kx = kx + 1) {
                            let ix = x0 + kx * dw;
                            if (ix >= 0 && ix < w) {
                                acc = acc + win_x[row + ix] * win_w[wrow + kx];
                            }
                        }
                    }
                }
            }
            if (win_meta[20] != 0) {
                acc = acc + win_bias[oc];
            }
            win_out[i] = acc;
            continue;
        }
        let volume = (b * c + oc) * depth;
        // -inf: a window of NaNs (never greater) or of padding only.
        var best = bitcast<f32>(0xff800000u);
        var sum = 0.0;
        var inside = 0;
        var padded = 0;
        for (var kz = 0; kz < kd; kz = kz + 1) {
            let iz = z0 + kz * dd;
            let in_pads_z = iz >= -pd && iz < win_meta[29];
            let in_z = iz >= 0 && iz < depth;
            let plane = (volume + iz) * h;
            for (var ky = 0; ky < kh; ky = ky + 1) {
                let iy = y0 + ky * dh;
                let in_pads_y = in_pads_z && iy >= -win_meta[15] && iy < win_meta[17];
                let in_y = in_z && iy >= 0 && iy < h;
                for (var kx = 0; kx < kw; kx = kx + 1) {
                    let ix = x0 + kx * dw;
                    if (in_pads_y && ix >= -win_meta[16] && ix < win_meta[18]) {
                        padded = padded + 1;
                    }
                    if (in_y && ix >= 0 && ix < w) {
                        let v = win_x[(plane + iy) * w + ix];
                        best = select(best, v, v > best);
                        if (mode == 4) {
                            // LpPool: |v|^p, p 1 or 2.
                            let a = abs(v);
                            sum = sum + select(a, a * a, win_meta[22] == 2);
                        } else {
                            sum = sum + v;
                        }
                        inside = inside + 1;
                    }
                }
            }
        }
        if (mode == 1) {
            win_out[i] = best;
        } else if (mode == 4) {
            win_out[i] = select(sum, sqrt(sum), win_meta[22] == 2);
        } else if (win_meta[21] != 0) {
            win_out[i] = sum / f32(padded);
        } else {
            win_out[i] = sum / f32(max(inside, 1));
        }
    }
}

// ---- batch_norm: inference BatchNormalization over channels cycling
// every `inner` elements: out[i] = (x[i] - mean[ch]) * k + b[ch] with
// k = scale[ch] / sqrt(var[ch] + eps) (the mean subtracted first, as the
// CPU does: no cancellation where it is large and the variance small).

struct ChannelParams {
    count: u32,
    inner: u32,
    channels: u32,
    eps: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<storage, read> bn_x: array<f32>;
@group(0) @binding(1) var<storage, read> bn_scale: array<f32>;
@group(0) @binding(2) var<storage, read> bn_bias: array<f32>;
@group(0) @binding(3) var<storage, read> bn_mean: array<f32>;
@group(0) @binding(4) var<storage, read> bn_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> bn_out: array<f32>;
@group(0) @binding(6) var<uniform> bn_p: ChannelParams;

@compute @workgroup_size(64, 1, 1)
fn batch_norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let eps = bitcast<f32>(bn_p.eps);
    for (var i = gid.x; i < bn_p.count; i = i + groups.x * THREADS) {
        let ch = (i / bn_p.inner) % bn_p.channels;
        let k = bn_scale[ch] / sqrt(bn_var[ch] + eps);
        bn_out[i] = (bn_x[i] - bn_mean[ch]) * k + bn_bias[ch];
    }
}

// ---- pick: out[i] = x[i] where c[i] != 0, else y[i] (ONNX `Where`, its
// operands broadcast to the output's shape first).

@group(0) @binding(0) var<storage, read> pick_c: array<f32>;
@group(0) @binding(1) var<storage, read> pick_x: array<f32>;
@group(0) @binding(2) var<storage, read> pick_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> pick_out: array<f32>;
@group(0) @binding(4) var<uniform> pick_p: StridedParams;

@compute @workgroup_size(64, 1, 1)
fn pick(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < pick_p.count; i = i + groups.x * THREADS) {
        pick_out[i] = select(pick_y[i], pick_x[i], pick_c[i] != 0.0);
    }
}

// ---- gather: ONNX `Gather` of x seen as [outer, axis, inner] by `k`
// indices (i32s, already in range): out[o, j, r] = x[o, idx[j], r].

struct GatherParams {
    count: u32,
    k: u32,
    inner: u32,
    axis: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<storage, read> ga_x: array<f32>;
@group(0) @binding(1) var<storage, read> ga_idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> ga_out: array<f32>;
@group(0) @binding(3) var<uniform> ga_p: GatherParams;

@compute @workgroup_size(64, 1, 1)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < ga_p.count; i = i + groups.x * THREADS) {
        let r = i % ga_p.inner;
        let j = (i / ga_p.inner) % ga_p.k;
        let o = i / (ga_p.inner * ga_p.k);
        ga_out[i] = ga_x[(o * ga_p.axis + u32(ga_idx[j])) * ga_p.inner + r];
    }
}

// ---- resample: one axis of a `Resize`, x seen as [outer, len_in,
// inner]: out[o, j, r] = the sum over the `taps` taps t of output
// position j of w[j, t] · x[o, idx[j, t], r]. The table holds the
// indices (i32 bits) then the weights, `len_out · taps` each; an index
// of -1 makes its weight the value (outside a crop), one of -2 ends the
// position's taps.

struct ResampleParams {
    count: u32,
    len_in: u32,
    len_out: u32,
    inner: u32,
    taps: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> rs_x: array<f32>;
@group(0) @binding(1) var<storage, read> rs_table: array<f32>;
@group(0) @binding(2) var<storage, read_write> rs_out: array<f32>;
@group(0) @binding(3) var<uniform> rs_p: ResampleParams;

@compute @workgroup_size(64, 1, 1)
fn resample(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let weights = rs_p.len_out * rs_p.taps;
    for (var i = gid.x; i < rs_p.count; i = i + groups.x * THREADS) {
        let r = i % rs_p.inner;
        let j = (i / rs_p.inner) % rs_p.len_out;
        let o = i / (rs_p.inner * rs_p.len_out);
        var acc = 0.0;
        for (var t = 0u; t < rs_p.taps; t = t + 1u) {
            let at = j * rs_p.taps + t;
            let idx = bitcast<i32>(rs_table[at]);
            let w = rs_table[weights + at];
            if (idx < 0) {
                if (idx == -1) {
                    acc = w;
                }
                break;
            }
            acc = acc + w * rs_x[(o * rs_p.len_in + u32(idx)) * rs_p.inner + r];
        }
        rs_out[i] = acc;
    }
}
