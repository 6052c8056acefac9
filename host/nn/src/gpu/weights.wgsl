// How `matmul.wgsl`'s kernels read B: one section per `WeightFormat`
// (`gpu/matmul.rs`), each a binding 1, `weight(b0, kk, col)`, B[kk][col]
// of the matrix starting `b0` values in, and `weight4`, B[kk .. kk + 4][col]
// for kk a multiple of 4 (one word of quants). A module is compiled from one
// section (the 4-bit ones with `nibbles`) and `matmul.wgsl`.
//
// The packed formats hold a GGUF decoder's weight W (`n` rows of `k`,
// blocks of 32 along k) as it is in the file, re-laid for the kernels:
// B = Wᵀ, block (j, col) (values 32j .. 32j + 31 of W's row `col`) at
// (j * p.n + col) * WORDS words, its scales first as f32 (widened from
// the file's f16, exactly), then its quants as they are, 4 bytes a word
// (F16 and BF16: no scale, two values a word).
// Neighbouring columns are neighbouring blocks, as neighbouring floats
// are in f32. Each value is the CPU's dequantisation of it (`quant.rs`),
// the same f32, so a product sums the same terms in the same order as
// with the f32 matrix (a driver may fuse Q4_1's `d * q + m` into one
// rounding; llvmpipe does not). The packed formats ignore `b0`: only f32
// operands are batched (`Program::batched_product`).

//# f32
@group(0) @binding(1) var<storage, read> b: array<f32>;

fn weight(b0: u32, kk: u32, col: u32) -> f32 {
    return b[b0 + kk * p.n + col];
}

fn weight4(b0: u32, kk: u32, col: u32) -> vec4<f32> {
    let at = b0 + kk * p.n + col;
    return vec4<f32>(b[at], b[at + p.n], b[at + 2u * p.n], b[at + 3u * p.n]);
}

//# f16
// Two halves a word, the lower first.
@group(0) @binding(1) var<storage, read> b: array<u32>;

// An f16 as f32, exactly (subnormals too, which a driver's conversion
// may flush to zero).
fn widen(h: u32) -> f32 {
    let s = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 31u;
    let m = h & 1023u;
    if (e == 0u) {
        // 0 or m * 2^-24.
        return bitcast<f32>(bitcast<u32>(f32(m) * 5.9604645e-8) | s);
    }
    if (e == 31u) {
        // Infinity, or a quiet NaN (as `quant::f16_to_f32` makes it).
        return bitcast<f32>(s | select(0x7fc00000u | (m << 13u), 0x7f800000u, m == 0u));
    }
    return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}

fn weight(b0: u32, kk: u32, col: u32) -> f32 {
    let word = b[((kk >> 5u) * p.n + col) * 16u + ((kk & 31u) >> 1u)];
    return widen((word >> (16u * (kk & 1u))) & 0xffffu);
}

fn weight4(b0: u32, kk: u32, col: u32) -> vec4<f32> {
    let at = ((kk >> 5u) * p.n + col) * 16u + ((kk & 31u) >> 1u);
    let w0 = b[at];
    let w1 = b[at + 1u];
    return vec4<f32>(widen(w0 & 0xffffu), widen(w0 >> 16u), widen(w1 & 0xffffu), widen(w1 >> 16u));
}

//# bf16
// Two halves a word, the lower first: each an f32's upper 16 bits.
@group(0) @binding(1) var<storage, read> b: array<u32>;

fn weight(b0: u32, kk: u32, col: u32) -> f32 {
    let word = b[((kk >> 5u) * p.n + col) * 16u + ((kk & 31u) >> 1u)];
    return bitcast<f32>(((word >> (16u * (kk & 1u))) & 0xffffu) << 16u);
}

fn weight4(b0: u32, kk: u32, col: u32) -> vec4<f32> {
    let at = ((kk >> 5u) * p.n + col) * 16u + ((kk & 31u) >> 1u);
    let w0 = b[at];
    let w1 = b[at + 1u];
    return bitcast<vec4<f32>>(vec4<u32>(w0 << 16u, w0 & 0xffff0000u, w1 << 16u, w1 & 0xffff0000u));
}

//# q8_0
// d, then 32 signed bytes: d * q.
@group(0) @binding(1) var<storage, read> b: array<u32>;

fn weight(b0: u32, kk: u32, col: u32) -> f32 {
    let at = ((kk >> 5u) * p.n + col) * 9u;
    let i = kk & 31u;
    let word = b[at + 1u + (i >> 2u)];
    // Byte i % 4 of the word, sign-extended.
    let q = bitcast<i32>(word << (24u - 8u * (i & 3u))) >> 24u;
    return bitcast<f32>(b[at]) * f32(q);
}

fn weight4(b0: u32, kk: u32, col: u32) -> vec4<f32> {
    let at = ((kk >> 5u) * p.n + col) * 9u;
    let word = b[at + 1u + ((kk & 31u) >> 2u)];
    let q = vec4<i32>(
        bitcast<i32>(word << 24u) >> 24u,
        bitcast<i32>(word << 16u) >> 24u,
        bitcast<i32>(word << 8u) >> 24u,
        bitcast<i32>(word) >> 24u,
    );
    return bitcast<f32>(b[at]) * vec4<f32>(q);
}

//# q4_0
// d, then nibbles (the `nibbles` section): d * (q - 8).
@group(0) @binding(1) var<storage, read> b: array<u32>;

fn weight(b0: u32, kk: u32, col: u32) -> f32 {
    let at = ((kk >> 5u) * p.n + col) * 5u;
    return bitcast<f32>(b[at]) * f32(i32(nibble(at + 1u, kk)) - 8);
}

fn weight4(b0: u32, kk: u32, col: u32) -> vec4<f32> {
    let at = ((kk >> 5u) * p.n + col) * 5u;
    return bitcast<f32>(b[at]) * vec4<f32>(vec4<i32>(nibbles4(at + 1u, kk)) - vec4<i32>(8));
}

//# q4_1
// d and m, then nibbles (the `nibbles` section): d * q + m.
@group(0) @binding(1) var<storage, read> b: array<u32>;

fn weight(b0: u32, kk: u32, col: u32) -> f32 {
    let at = ((kk >> 5u) * p.n + col) * 6u;
    return bitcast<f32>(b[at]) * f32(nibble(at + 2u, kk)) + bitcast<f32>(b[at + 1u]);
}

fn weight4(b0: u32, kk: u32, col: u32) -> vec4<f32> {
    let at = ((kk >> 5u) * p.n + col) * 6u;
    return bitcast<f32>(b[at]) * vec4<f32>(nibbles4(at + 2u, kk)) + bitcast<f32>(b[at + 1u]);
}

//# nibbles
// Q4_0's and Q4_1's quants, appended to both sections: 16 bytes from
// word `q` of `b`, value i < 16 the low nibble of byte i, value 16 + i
// its high one.

// Value kk % 32 of the block.
fn nibble(q: u32, kk: u32) -> u32 {
    let i = kk & 31u;
    let byte = (b[q + ((i & 15u) >> 2u)] >> (8u * (i & 3u))) & 0xffu;
    return select(byte & 15u, byte >> 4u, i >= 16u);
}

// Values kk .. kk + 3 (kk a multiple of 4): one word's four bytes' low
// nibbles, or high ones.
fn nibbles4(q: u32, kk: u32) -> vec4<u32> {
    let s = select(0u, 4u, (kk & 31u) >= 16u);
    let word = b[q + ((kk & 15u) >> 2u)];
    return (vec4<u32>(word) >> vec4<u32>(s, s + 8u, s + 16u, s + 24u)) & vec4<u32>(15u);
}
