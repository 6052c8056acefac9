// The element-wise and row kernels a decoder's forward pass needs between
// its weight products (`matmul.wgsl`), so that a whole pass runs on the
// device with no round trip: RMSNorm or LayerNorm (alone, per head, or
// after a residual add), rotary embeddings, causal attention (which stores the new keys and
// values into the KV cache), the residual add and SwiGLU.
//
// Every kernel binds its storage buffers from 0 and its parameters (eight
// u32s; floats as their bits) at the next binding. Row-major f32
// throughout. Element-wise kernels walk their range in a grid-stride loop,
// so any dispatch width covers any length.

// Rounds through f16, as llama.cpp's f16 KV cache and its f16 attention
// operands do.
fn f16r(x: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x;
}

// ---- rms_norm: out[r] = x[r] / rms(x[r]) * w, one workgroup per row of
// `d` floats; x's rows from float `src`, out's from `dst`. With `layer`,
// LayerNorm: out[r] = (x[r] - mean) / sqrt(var + eps) * w + b, the bias b
// after the weight in `w` (StarCoder 2's). With `per` > 1, rows are groups
// of a wider row, each with its own `d` weights (row r's the (r % per)-th:
// Mamba-2's grouped norm).

struct NormParams {
    d: u32,
    eps: u32,
    src: u32,
    dst: u32,
    // head_norm: rows per token, and floats from one token's to the next.
    per: u32,
    stride: u32,
    // add_rms_norm: what multiplies y.
    scale: u32,
    // rms_norm and add_rms_norm: 1 for LayerNorm.
    layer: u32,
}

// 1 / rms of a row of `d` floats whose squares' sums the workgroup's
// threads hold (`ss`), with `eps` (bits) added to the mean square.
fn rms_scale(lid: u32, ss: f32, d: u32, eps: u32) -> f32 {
    return inverseSqrt(workgroup_sum(lid, ss) / f32(d) + bitcast<f32>(eps));
}

// The mean of a row of `d` floats whose sums the workgroup's threads hold
// (`s`) where `layer` (LayerNorm's, which it subtracts), else 0.
fn row_mean(lid: u32, s: f32, d: u32, layer: u32) -> f32 {
    if (layer == 0u) {
        return 0.0;
    }
    return workgroup_sum(lid, s) / f32(d);
}

@group(0) @binding(0) var<storage, read> norm_x: array<f32>;
@group(0) @binding(1) var<storage, read> norm_w: array<f32>;
@group(0) @binding(2) var<storage, read_write> norm_out: array<f32>;
@group(0) @binding(3) var<uniform> norm_p: NormParams;

@compute @workgroup_size(64, 1, 1)
fn rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let d = norm_p.d;
    let src = norm_p.src + wg.x * d;
    // (A pass over the row for its mean: LayerNorm's alone.)
    var s = 0.0;
    if (norm_p.layer != 0u) {
        for (var i = lid; i < d; i = i + THREADS) {
            s = s + norm_x[src + i];
        }
    }
    let mean = row_mean(lid, s, d, norm_p.layer);
    var ss = 0.0;
    for (var i = lid; i < d; i = i + THREADS) {
        let v = norm_x[src + i] - mean;
        ss = fma(v, v, ss);
    }
    let scale = rms_scale(lid, ss, d, norm_p.eps);
    let dst = norm_p.dst + wg.x * d;
    let w0 = (wg.x % norm_p.per) * d;
    for (var i = lid; i < d; i = i + THREADS) {
        var o = (norm_x[src + i] - mean) * scale * norm_w[w0 + i];
        if (norm_p.layer != 0u) {
            o = o + norm_w[d + i];
        }
        norm_out[dst + i] = o;
    }
}

// ---- head_norm: rms_norm in place of `per` heads of `d` floats a token,
// token t's first at `src + t * stride` (Qwen3's per-head norms of the
// queries or the keys in a fused Q/K/V product's rows). Each thread
// rewrites only the floats it read.

@group(0) @binding(0) var<storage, read_write> hn_x: array<f32>;
@group(0) @binding(1) var<storage, read> hn_w: array<f32>;
@group(0) @binding(2) var<uniform> hn_p: NormParams;

@compute @workgroup_size(64, 1, 1)
fn head_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let d = hn_p.d;
    let src = hn_p.src + (wg.x / hn_p.per) * hn_p.stride + (wg.x % hn_p.per) * d;
    var ss = 0.0;
    for (var i = lid; i < d; i = i + THREADS) {
        let v = hn_x[src + i];
        ss = fma(v, v, ss);
    }
    let scale = rms_scale(lid, ss, d, hn_p.eps);
    for (var i = lid; i < d; i = i + THREADS) {
        hn_x[src + i] = hn_x[src + i] * scale * hn_w[i];
    }
}

// ---- add_rms_norm: x[r] += scale * y[r], then out[r] = x[r] / rms(x[r])
// * w (or with `layer` LayerNorm, as `rms_norm`): a residual add and the
// norm after it in one dispatch (x's and y's rows from `src`, out's from
// `dst`; the same sums as `add` then `rms_norm`).

@group(0) @binding(0) var<storage, read_write> addn_x: array<f32>;
@group(0) @binding(1) var<storage, read> addn_y: array<f32>;
@group(0) @binding(2) var<storage, read> addn_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> addn_out: array<f32>;
@group(0) @binding(4) var<uniform> addn_p: NormParams;

@compute @workgroup_size(64, 1, 1)
fn add_rms_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let d = addn_p.d;
    let src = addn_p.src + wg.x * d;
    let by = bitcast<f32>(addn_p.scale);
    var s = 0.0;
    for (var i = lid; i < d; i = i + THREADS) {
        var y = addn_y[src + i];
        if (by != 1.0) {
            y = y * by;
        }
        let v = addn_x[src + i] + y;
        addn_x[src + i] = v;
        s = s + v;
    }
    // (Each thread reads back only the floats it wrote.)
    let mean = row_mean(lid, s, d, addn_p.layer);
    var ss = 0.0;
    for (var i = lid; i < d; i = i + THREADS) {
        let v = addn_x[src + i] - mean;
        ss = fma(v, v, ss);
    }
    let scale = rms_scale(lid, ss, d, addn_p.eps);
    let dst = addn_p.dst + wg.x * d;
    for (var i = lid; i < d; i = i + THREADS) {
        var o = (addn_x[src + i] - mean) * scale * addn_w[i];
        if (addn_p.layer != 0u) {
            o = o + addn_w[d + i];
        }
        addn_out[dst + i] = o;
    }
}

// ---- rope: rotates pairs of the first `dims` of every head of the
// queries (`q_count` pairs: `heads` heads a token) and then of the keys
// (`kv_heads` heads a token), adjacent ones (ggml's normal mode) or,
// `neox`, ones `dims / 2` apart, by the angles in `table` ([token][dims /
// 2] of (cos, sin), computed on the host exactly as the CPU path does).
// Token t's queries start at `t * stride` in `x`, its keys right after
// them (a fused Q/K/V product's rows). One dispatch for both: a decoder
// pass has one per layer.

struct RopeParams {
    count: u32,
    heads: u32,
    head_dim: u32,
    half: u32,
    neox: u32,
    kv_heads: u32,
    q_count: u32,
    stride: u32,
}

@group(0) @binding(0) var<storage, read_write> rope_x: array<f32>;
@group(0) @binding(1) var<storage, read> rope_table: array<vec2<f32>>;
@group(0) @binding(2) var<uniform> rope_p: RopeParams;

@compute @workgroup_size(64, 1, 1)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var idx = gid.x; idx < rope_p.count; idx = idx + groups.x * THREADS) {
        let keys = idx >= rope_p.q_count;
        let j = select(idx, idx - rope_p.q_count, keys);
        let heads = select(rope_p.heads, rope_p.kv_heads, keys);
        let per_token = heads * rope_p.half;
        let t = j / per_token;
        let head = (j % per_token) / rope_p.half;
        let i = j % rope_p.half;
        let cs = rope_table[t * rope_p.half + i];
        let first = select(0u, rope_p.heads * rope_p.head_dim, keys);
        let base = t * rope_p.stride + first + head * rope_p.head_dim;
        var at = base + 2u * i;
        var partner = at + 1u;
        if (rope_p.neox != 0u) {
            at = base + i;
            partner = at + rope_p.half;
        }
        let a = rope_x[at];
        let b = rope_x[partner];
        rope_x[at] = a * cs.x - b * cs.y;
        rope_x[partner] = a * cs.y + b * cs.x;
    }
}

// ---- add: x[start + i] += scale * y[i % period] (a residual add, scaled
// where the model says; or a bias, `period` its length, added to every
// row from `start` on).

struct AddParams {
    count: u32,
    period: u32,
    scale: u32,
    start: u32,
    _p1: u32,
    _p2: u32,
    _p3: u32,
    _p4: u32,
}

@group(0) @binding(0) var<storage, read_write> add_x: array<f32>;
@group(0) @binding(1) var<storage, read> add_y: array<f32>;
@group(0) @binding(2) var<uniform> add_p: AddParams;

@compute @workgroup_size(64, 1, 1)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let scale = bitcast<f32>(add_p.scale);
    for (var i = gid.x; i < add_p.count; i = i + groups.x * THREADS) {
        let y = add_y[i % add_p.period];
        let at = add_p.start + i;
        if (scale == 1.0) {
            add_x[at] = add_x[at] + y;
        } else {
            add_x[at] = add_x[at] + y * scale;
        }
    }
}

// ---- clamp_values: x[i] = clamp(x[i], -bound, bound) (OLMo 1's Q, K
// and V, as ggml_clamp).

struct ClampParams {
    count: u32,
    bound: u32,
    _p2: u32,
    _p3: u32,
    _p4: u32,
    _p5: u32,
    _p6: u32,
    _p7: u32,
}

@group(0) @binding(0) var<storage, read_write> clamp_x: array<f32>;
@group(0) @binding(1) var<uniform> clamp_p: ClampParams;

@compute @workgroup_size(64, 1, 1)
fn clamp_values(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let bound = bitcast<f32>(clamp_p.bound);
    for (var i = gid.x; i < clamp_p.count; i = i + groups.x * THREADS) {
        clamp_x[i] = min(max(clamp_x[i], -bound), bound);
    }
}

// ---- swiglu: out[t][i] = silu(gu[t][i]) * gu[t][ffn + i], for rows of
// a fused gate/up product (`2 * ffn` floats: the gate's, then the up's);
// `act` 1: GELU's tanh form for SiLU (Gemma's GEGLU), of the gate rounded
// through f16 and rounded itself, as llama.cpp's table gives it; `act` 2:
// relu(x)²; `act` 3: gpt-oss's clamped SwiGLU, x · σ(1.702 x) · (y + 1)
// with x the gate capped at 7 and y the up within ±7 (llama.cpp's
// `swiglu_oai`); `act` 4: Apertus's xIELU of the up product alone (ggml's
// `xielu`, exp(m) - 1 for its expm1). Not `gated`: act(gu[t][i]) of rows of an up product alone
// (`ffn` floats: Arcee's squared ReLU, StarCoder 2's GELU).

struct GluParams {
    count: u32,
    ffn: u32,
    act: u32,
    gated: u32,
    // xIELU's constants (`act` 4), as f32 bits.
    alpha_n: u32,
    alpha_p: u32,
    beta: u32,
    eps: u32,
}

@group(0) @binding(0) var<storage, read> glu_gu: array<f32>;
@group(0) @binding(1) var<storage, read_write> glu_out: array<f32>;
@group(0) @binding(2) var<uniform> glu_p: GluParams;

@compute @workgroup_size(64, 1, 1)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for (var i = gid.x; i < glu_p.count; i = i + groups.x * THREADS) {
        var g = glu_gu[i];
        var up = 1.0;
        if (glu_p.gated != 0u) {
            let at = i + (i / glu_p.ffn) * glu_p.ffn;
            g = glu_gu[at];
            up = glu_gu[at + glu_p.ffn];
        }
        if (glu_p.act == 4u) {
            // xIELU (Apertus): its constants in the last four words.
            let an = bitcast<f32>(glu_p.alpha_n);
            let ap = bitcast<f32>(glu_p.alpha_p);
            let beta = bitcast<f32>(glu_p.beta);
            if (g > 0.0) {
                glu_out[i] = ap * g * g + beta * g;
            } else {
                let m = min(g, bitcast<f32>(glu_p.eps));
                glu_out[i] = (exp(m) - 1.0 - g) * an + beta * g;
            }
        } else if (glu_p.act == 3u) {
            let x = min(g, 7.0);
            glu_out[i] = x / (1.0 + exp(-1.702 * x)) * (clamp(up, -7.0, 7.0) + 1.0);
        } else if (glu_p.act == 2u) {
            let r = max(g, 0.0);
            glu_out[i] = r * r * up;
        } else if (glu_p.act == 0u) {
            glu_out[i] = g / (1.0 + exp(-g)) * up;
        } else if (g <= -10.0) {
            glu_out[i] = 0.0;
        } else if (g >= 10.0) {
            glu_out[i] = g * up;
        } else {
            let x = f16r(g);
            let inner = clamp(0.7978846 * x * (1.0 + 0.044715 * x * x), -15.0, 15.0);
            glu_out[i] = f16r(0.5 * x * (1.0 + tanh(inner))) * up;
        }
    }
}

// ---- attention: causal attention of a session's `n` new queries over
// its cache, one workgroup per (head, new token). The new tokens' rows of
// a fused Q/K/V product (`q_stride` floats: its query heads, then its key
// heads, then its value heads) start at row `row0` of `attn_q`; query `t`
// sees positions `0 ..= past + t`, the first `past` from the cache, the
// rest from those rows (`window` > 0: the last `window` of those only, a
// sliding-window layer's). The first query head of each KV head's group
// stores its token's key and value into the cache at `past + t` (no
// workgroup of the dispatch reads the cache there). Scores go through
// `scores` (a row of `stride` floats per workgroup); keys and values are
// rounded through f16 as the cache holds them, and the query and the
// softmax weights as llama.cpp's kernel does. Scores are scaled, then
// soft-capped (`softcap` > 0, Gemma 2's: cap * tanh(s / cap)). With
// `sinks` (gpt-oss's), each head's softmax has `sinks[head]` as one more
// logit in its denominator alone.

struct AttnParams {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    past: u32,
    stride: u32,
    scale: u32,
    // The first row of this session's tokens in `attn_q` (and in `attn_out`).
    row0: u32,
    // Floats from one row of `attn_q` to the next.
    q_stride: u32,
    softcap: u32,
    window: u32,
    // Mistral 3's attention temperature: a query at `pos` is multiplied by
    // 1 + temp_scale * ln(1 + pos / temp_every) (integer division) before
    // rounding; temp_scale 0 for none.
    temp_scale: u32,
    temp_every: u32,
    // Whether `attn_sinks` holds a sink per head (else it is another
    // buffer, never read). (64 bytes, as the step binds.)
    sinks: u32,
    _p13: u32,
    _p14: u32,
    _p15: u32,
}

@group(0) @binding(0) var<storage, read> attn_q: array<f32>;
@group(0) @binding(1) var<storage, read_write> attn_k: array<f32>;
@group(0) @binding(2) var<storage, read_write> attn_v: array<f32>;
@group(0) @binding(3) var<storage, read_write> attn_scores: array<f32>;
@group(0) @binding(4) var<storage, read_write> attn_out: array<f32>;
@group(0) @binding(5) var<storage, read> attn_sinks: array<f32>;
@group(0) @binding(6) var<uniform> attn_p: AttnParams;

// The query, rounded (heads of up to 256 floats).
var<workgroup> query: array<f32, 256>;

// s + query[j ..][.. 4] · k, in the order of single fmas.
fn qk4(s: f32, j: u32, k: vec4<f32>) -> f32 {
    return fma(query[j + 3u], k.w, fma(query[j + 2u], k.z, fma(query[j + 1u], k.y, fma(query[j], k.x, s))));
}

@compute @workgroup_size(64, 1, 1)
fn attention(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let head = wg.x;
    let t = wg.y;
    let hd = attn_p.head_dim;
    let d = attn_p.heads * hd;
    let kvd = attn_p.kv_heads * hd;
    let group = attn_p.heads / attn_p.kv_heads;
    let kv_col = (head / group) * hd;
    let past = attn_p.past;
    let seen = past + t + 1u;
    var first = 0u;
    if (attn_p.window > 0u && seen > attn_p.window) {
        first = seen - attn_p.window;
    }
    let cap = bitcast<f32>(attn_p.softcap);
    let qs = attn_p.q_stride;
    // The first new token's key for this head, in `attn_q` (its value
    // `kvd` further on).
    let new_k = attn_p.row0 * qs + d + kv_col;
    let row = (t * attn_p.heads + head) * attn_p.stride;
    let scale = bitcast<f32>(attn_p.scale);
    let temp = bitcast<f32>(attn_p.temp_scale);
    var warm = 1.0;
    if (temp != 0.0) {
        warm = log(f32((past + t) / attn_p.temp_every) + 1.0) * temp + 1.0;
    }
    for (var j = lid; j < hd; j = j + THREADS) {
        query[j] = f16r(attn_q[(attn_p.row0 + t) * qs + head * hd + j] * warm);
    }
    if (head % group == 0u) {
        let src = new_k + t * qs;
        let to = (past + t) * kvd + kv_col;
        for (var j = lid; j < hd; j = j + THREADS) {
            attn_k[to + j] = f16r(attn_q[src + j]);
            attn_v[to + j] = f16r(attn_q[src + kvd + j]);
        }
    }
    workgroupBarrier();

    var best = -3.0e38;
    // The loops below load four operands before using them (in the same
    // order of sums): a GPU thread waits on its loads one at a time.
    for (var p = first + lid; p < seen; p = p + THREADS) {
        var s = 0.0;
        var j = 0u;
        if (p < past) {
            let k0 = p * kvd + kv_col;
            for (; j + 4u <= hd; j = j + 4u) {
                let k = vec4<f32>(attn_k[k0 + j], attn_k[k0 + j + 1u], attn_k[k0 + j + 2u], attn_k[k0 + j + 3u]);
                s = qk4(s, j, k);
            }
            for (; j < hd; j = j + 1u) {
                s = fma(query[j], attn_k[k0 + j], s);
            }
        } else {
            let k0 = new_k + (p - past) * qs;
            for (; j + 4u <= hd; j = j + 4u) {
                let k = vec4<f32>(attn_q[k0 + j], attn_q[k0 + j + 1u], attn_q[k0 + j + 2u], attn_q[k0 + j + 3u]);
                s = qk4(s, j, vec4<f32>(f16r(k.x), f16r(k.y), f16r(k.z), f16r(k.w)));
            }
            for (; j < hd; j = j + 1u) {
                s = fma(query[j], f16r(attn_q[k0 + j]), s);
            }
        }
        s = s * scale;
        if (cap > 0.0) {
            s = cap * tanh(clamp(s / cap, -15.0, 15.0));
        }
        attn_scores[row + p] = s;
        best = max(best, s);
    }
    var top = workgroup_max(lid, best);
    var sink = 0.0;
    if (attn_p.sinks != 0u) {
        sink = attn_sinks[head];
        top = max(top, sink);
    }
    var sum = 0.0;
    for (var p = first + lid; p < seen; p = p + THREADS) {
        let e = exp(attn_scores[row + p] - top);
        attn_scores[row + p] = e;
        sum = sum + e;
    }
    var total = workgroup_sum(lid, sum);
    if (attn_p.sinks != 0u) {
        total = total + exp(sink - top);
    }
    let inv = 1.0 / total;
    storageBarrier();

    for (var j = lid; j < hd; j = j + THREADS) {
        var acc = 0.0;
        var p = first;
        for (; p + 4u <= past; p = p + 4u) {
            let at = p * kvd + kv_col + j;
            let v1 = attn_v[at];
            let v2 = attn_v[at + kvd];
            let v3 = attn_v[at + 2u * kvd];
            let v4 = attn_v[at + 3u * kvd];
            acc = fma(f16r(attn_scores[row + p] * inv), v1, acc);
            acc = fma(f16r(attn_scores[row + p + 1u] * inv), v2, acc);
            acc = fma(f16r(attn_scores[row + p + 2u] * inv), v3, acc);
            acc = fma(f16r(attn_scores[row + p + 3u] * inv), v4, acc);
        }
        for (; p < past; p = p + 1u) {
            acc = fma(f16r(attn_scores[row + p] * inv), attn_v[p * kvd + kv_col + j], acc);
        }
        for (; p < seen; p = p + 1u) {
            let v = f16r(attn_q[new_k + kvd + (p - past) * qs + j]);
            acc = fma(f16r(attn_scores[row + p] * inv), v, acc);
        }
        attn_out[(attn_p.row0 + t) * d + head * hd + j] = acc;
    }
}

// ---- short_conv: a causal convolution of one session's `tokens` rows,
// rows `row0 ..` of a product `conv_in` (rows of `stride` floats), into the
// same rows of `out` (`d` each): each channel ch convolved with its `taps`
// weights `w[ch]` over a window of the last `taps - 1` inputs (`state`,
// `[taps - 1][d]`, oldest first) then this row's, which joins the state.
// Summed oldest first, as ggml's ssm_conv. A thread per channel walks the
// rows in order. Mode 0, LFM2's gated convolution: a row holds b, c and x
// (`d` each), the input is b * x and the output c * sum. Mode 1, Mamba-2's:
// the input is the row's float `col + ch` (xBC after z), the output
// silu(sum + bias[ch]).

struct ConvParams {
    d: u32,
    taps: u32,
    tokens: u32,
    row0: u32,
    stride: u32,
    mode: u32,
    col: u32,
    _p7: u32,
}

@group(0) @binding(0) var<storage, read> conv_in: array<f32>;
@group(0) @binding(1) var<storage, read> conv_w: array<f32>;
@group(0) @binding(2) var<storage, read_write> conv_state: array<f32>;
@group(0) @binding(3) var<storage, read_write> conv_out: array<f32>;
@group(0) @binding(4) var<storage, read> conv_bias: array<f32>;
@group(0) @binding(5) var<uniform> conv_p: ConvParams;

@compute @workgroup_size(64, 1, 1)
fn short_conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let d = conv_p.d;
    let taps = conv_p.taps;
    for (var ch = gid.x; ch < d; ch = ch + groups.x * THREADS) {
        let w = ch * taps;
        for (var t = 0u; t < conv_p.tokens; t = t + 1u) {
            let row = conv_p.row0 + t;
            let at = row * conv_p.stride + conv_p.col + ch;
            var input = conv_in[at];
            if (conv_p.mode == 0u) {
                input = input * conv_in[at + 2u * d];
            }
            var sum = 0.0;
            for (var k = 0u; k + 1u < taps; k = k + 1u) {
                sum = sum + conv_state[k * d + ch] * conv_w[w + k];
            }
            sum = sum + input * conv_w[w + taps - 1u];
            for (var k = 0u; k + 2u < taps; k = k + 1u) {
                conv_state[k * d + ch] = conv_state[(k + 1u) * d + ch];
            }
            conv_state[(taps - 2u) * d + ch] = input;
            if (conv_p.mode == 0u) {
                conv_out[row * d + ch] = conv_in[at + d] * sum;
            } else {
                let v = sum + conv_bias[ch];
                conv_out[row * d + ch] = v / (1.0 + exp(-v));
            }
        }
    }
}

// ---- copy_rows: dst[dst0 + t * dst_t + h * dst_h + i] = src[src0 +
// t * src_t + h * src_h + i] for i < width, h < heads, `count` (tokens x
// heads x width) floats in all: parts of rows gathered (DeepSeek-V2's
// latent attention builds its heads' queries, keys and values from its
// products' rows, and cuts its output's heads to the values' width).

struct CopyParams {
    count: u32,
    width: u32,
    heads: u32,
    src0: u32,
    src_t: u32,
    src_h: u32,
    dst0: u32,
    dst_t: u32,
    dst_h: u32,
    _p9: u32,
    _p10: u32,
    _p11: u32,
    _p12: u32,
    _p13: u32,
    _p14: u32,
    _p15: u32,
}

@group(0) @binding(0) var<storage, read> copy_src: array<f32>;
@group(0) @binding(1) var<storage, read_write> copy_dst: array<f32>;
@group(0) @binding(2) var<uniform> copy_p: CopyParams;

@compute @workgroup_size(64, 1, 1)
fn copy_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) wgs: vec3<u32>) {
    for (var j = gid.x; j < copy_p.count; j = j + wgs.x * THREADS) {
        let i = j % copy_p.width;
        let h = (j / copy_p.width) % copy_p.heads;
        let t = j / (copy_p.width * copy_p.heads);
        let at = copy_p.src0 + t * copy_p.src_t + h * copy_p.src_h + i;
        copy_dst[copy_p.dst0 + t * copy_p.dst_t + h * copy_p.dst_h + i] = copy_src[at];
    }
}
