//! Tiny synthetic models, well-formed byte for byte, for tests and examples:
//! a GGUF file with chosen tensors and an ONNX model with chosen operators.
//! Their data is zeros; they exercise the readers and the registry, not
//! inference.
//!
//! ```
//! let onnx = weft_nn::fixtures::onnx(&["MatMul", "Relu"]);
//! assert!(weft_nn::inspect(&onnx, weft_nn::Encoding::Onnx).is_ok());
//! let gguf = weft_nn::fixtures::decoder();
//! assert!(weft_nn::inspect(&gguf, weft_nn::Encoding::Ggml).is_ok());
//! let parts = weft_nn::fixtures::gguf("llama", &[("output.weight", &[32, 2], 8)]);
//! assert!(weft_nn::inspect(&parts, weft_nn::Encoding::Ggml).is_err());
//! ```

/// A GGUF v3 file with `general.architecture = arch` and `tensors`
/// (name, dims, type id), data zeroed: the parts of a model, for the
/// readers' checks (not a decoder weft-nn runs: see [`decoder`]).
pub fn gguf(arch: &str, tensors: &[(&str, &[u64], u32)]) -> Vec<u8> {
    gguf_with(arch, &[], tensors)
}

/// The smallest Llama decoder weft-nn runs: one block, width 32, two
/// heads, a vocabulary of 8, F32 weights all zero (its logits are zeros).
pub fn decoder() -> Vec<u8> {
    decoder_with(&[])
}

/// [`decoder`] with more `u32` metadata (keys it does not set already).
pub(crate) fn decoder_with(more: &[(&str, u32)]) -> Vec<u8> {
    let block = [
        ("attn_norm.weight", vec![32]),
        ("attn_q.weight", vec![32, 32]),
        ("attn_k.weight", vec![32, 32]),
        ("attn_v.weight", vec![32, 32]),
        ("attn_output.weight", vec![32, 32]),
        ("ffn_norm.weight", vec![32]),
        ("ffn_gate.weight", vec![32, 64]),
        ("ffn_up.weight", vec![32, 64]),
        ("ffn_down.weight", vec![64, 32]),
    ];
    let mut names: Vec<(String, Vec<u64>)> = vec![
        ("token_embd.weight".into(), vec![32, 8]),
        ("output_norm.weight".into(), vec![32]),
    ];
    names.extend(block.map(|(n, d)| (format!("blk.0.{n}"), d)));
    let tensors: Vec<(&str, &[u64], u32)> = names
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice(), 0))
        .collect();
    let mut hparams = vec![
        ("llama.embedding_length", 32),
        ("llama.feed_forward_length", 64),
        ("llama.block_count", 1),
        ("llama.attention.head_count", 2),
        ("llama.context_length", 64),
    ];
    hparams.extend_from_slice(more);
    gguf_with("llama", &hparams, &tensors)
}

/// [`gguf`] with `u32` metadata.
fn gguf_with(arch: &str, ints: &[(&str, u32)], tensors: &[(&str, &[u64], u32)]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((2 + ints.len() as u64).to_le_bytes());
    let s = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    s(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes());
    s(&mut b, arch);
    for (key, value) in ints {
        s(&mut b, key);
        b.extend(4u32.to_le_bytes());
        b.extend(value.to_le_bytes());
    }
    s(&mut b, "tokenizer.ggml.tokens");
    b.extend(9u32.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend(2u64.to_le_bytes());
    s(&mut b, "<s>");
    s(&mut b, "</s>");
    let mut offset = 0u64;
    let mut sizes = Vec::new();
    for (name, dims, ty) in tensors {
        s(&mut b, name);
        b.extend((dims.len() as u32).to_le_bytes());
        for d in *dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(ty.to_le_bytes());
        b.extend(offset.to_le_bytes());
        let n: u64 = dims.iter().product();
        let size = match crate::GgmlType::from_id(*ty) {
            Some(t) => n / t.block().0 * t.block().1,
            None => n,
        };
        sizes.push(size);
        offset += size.div_ceil(32) * 32;
    }
    b.resize(b.len().div_ceil(32) * 32, 0);
    b.resize(b.len() + offset as usize, 0);
    b
}

use crate::onnx::write::GraphWriter;
pub(crate) use crate::onnx::write::{bytes, key, var};

/// A model: `ops` chained, one float input `x`, one initializer `w`,
/// output `y`.
pub fn onnx(ops: &[&str]) -> Vec<u8> {
    let mut graph = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let mut node = Vec::new();
        bytes(1, b"x", &mut node);
        bytes(2, b"y", &mut node);
        bytes(3, format!("n{i}").as_bytes(), &mut node);
        bytes(4, op.as_bytes(), &mut node);
        bytes(1, &node, &mut graph);
    }
    let mut init = Vec::new();
    key(1, 0, &mut init);
    var(4, &mut init);
    bytes(8, b"w", &mut init);
    bytes(5, &init, &mut graph);
    for (field, name) in [(11, "x"), (11, "w"), (12, "y")] {
        let mut vi = Vec::new();
        bytes(1, name.as_bytes(), &mut vi);
        bytes(field, &vi, &mut graph);
    }
    let mut m = Vec::new();
    key(1, 0, &mut m);
    var(8, &mut m);
    let mut opset = Vec::new();
    key(2, 0, &mut opset);
    var(17, &mut opset);
    bytes(8, &opset, &mut m);
    bytes(7, &graph, &mut m);
    m
}

/// A small runnable model: `y = x · w + b` with `x` a float `[batch, 2]`
/// input, `w = [[1, 2, 3], [4, 5, 6]]` and `b = [0.5, -0.5, 1]`, giving
/// `y` of shape `[batch, 3]`. For tests of execution and batching.
///
/// ```
/// use weft_nn::{Encoding, Engine, Target, Tensor};
/// let model = Engine::default()
///     .load(&weft_nn::fixtures::onnx_linear(), Encoding::Onnx, Target::Cpu)
///     .unwrap();
/// let x = Tensor::from_f32(vec![1, 2], &[1.0, 1.0]);
/// let out = model.session().compute(&[("x".into(), x)]).unwrap();
/// assert_eq!(out[0].1.to_f32().unwrap(), vec![5.5, 6.5, 10.0]);
/// ```
pub fn onnx_linear() -> Vec<u8> {
    let mut g = GraphWriter::new("linear");
    g.node("MatMul", &["x", "w"], &["xw"], "matmul", &[]);
    g.node("Add", &["xw", "b"], &["y"], "add", &[]);
    g.initializer("w", &[2, 3], &[1., 2., 3., 4., 5., 6.]);
    g.initializer("b", &[3], &[0.5, -0.5, 1.]);
    g.input("x", &["batch", "2"]);
    g.output("y", &["batch", "3"]);
    g.finish("weft-nn fixtures", 17)
}

/// Attention's scores of float inputs `q` and `k` (`[batch, heads, seq,
/// dim]`), as an `Einsum` (`bhqd,bhkd->bhqk`) when `einsum`, else as
/// the `MatMul` of `q` by `k` transposed: the same values two ways, for
/// benchmarks of one against the other.
pub fn onnx_scores(einsum: bool) -> Vec<u8> {
    let mut g = GraphWriter::new("scores");
    if einsum {
        let attrs = [("equation", "bhqd,bhkd->bhqk")];
        g.node_strings("Einsum", &["q", "k"], &["y"], "scores", (&[], &[]), &attrs);
    } else {
        let perm: &[i64] = &[0, 1, 3, 2];
        g.node_ints("Transpose", &["k"], &["kt"], "kt", &[], &[("perm", perm)]);
        g.node("MatMul", &["q", "kt"], &["y"], "scores", &[]);
    }
    for x in ["q", "k"] {
        g.input(x, &["b", "h", "s", "d"]);
    }
    g.output("y", &["b", "h", "s", "s"]);
    g.finish("weft-nn fixtures", 17)
}
