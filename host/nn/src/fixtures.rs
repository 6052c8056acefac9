//! Tiny synthetic models, well-formed byte for byte, for tests and examples:
//! a GGUF file with chosen tensors and an ONNX model with chosen operators.
//! Their data is zeros; they exercise the readers and the registry, not
//! inference.
//!
//! ```
//! let onnx = weft_nn::fixtures::onnx(&["MatMul", "Relu"]);
//! assert!(weft_nn::inspect(&onnx, weft_nn::Encoding::Onnx).is_ok());
//! let gguf = weft_nn::fixtures::gguf("llama", &[("output.weight", &[32, 2], 8)]);
//! assert!(weft_nn::inspect(&gguf, weft_nn::Encoding::Ggml).is_ok());
//! ```

/// A GGUF v3 file with `general.architecture = arch` and `tensors`
/// (name, dims, type id), data zeroed.
pub fn gguf(arch: &str, tensors: &[(&str, &[u64], u32)]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend(2u64.to_le_bytes());
    let s = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    s(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes());
    s(&mut b, arch);
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

/// Writes a protobuf field key (for tests that build ONNX bytes by hand).
pub(crate) fn key(n: u64, wire: u64, out: &mut Vec<u8>) {
    var(n << 3 | wire, out);
}
/// Writes a protobuf varint.
pub(crate) fn var(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
/// Writes a length-delimited protobuf field.
pub(crate) fn bytes(n: u64, b: &[u8], out: &mut Vec<u8>) {
    key(n, 2, out);
    var(b.len() as u64, out);
    out.extend_from_slice(b);
}

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
    let mut graph = Vec::new();
    for (op, ins, out, name) in [
        ("MatMul", ["x", "w"], "xw", "matmul"),
        ("Add", ["xw", "b"], "y", "add"),
    ] {
        let mut node = Vec::new();
        for i in ins {
            bytes(1, i.as_bytes(), &mut node);
        }
        bytes(2, out.as_bytes(), &mut node);
        bytes(3, name.as_bytes(), &mut node);
        bytes(4, op.as_bytes(), &mut node);
        bytes(1, &node, &mut graph);
    }
    bytes(2, b"linear", &mut graph);
    for (name, dims, data) in [
        ("w", &[2u64, 3][..], &[1f32, 2., 3., 4., 5., 6.][..]),
        ("b", &[3u64][..], &[0.5f32, -0.5, 1.][..]),
    ] {
        let mut t = Vec::new();
        for &d in dims {
            key(1, 0, &mut t);
            var(d, &mut t);
        }
        key(2, 0, &mut t);
        var(1, &mut t); // FLOAT
        bytes(8, name.as_bytes(), &mut t);
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes(9, &raw, &mut t);
        bytes(5, &t, &mut graph);
    }
    for (field, name, dims) in [(11, "x", ["batch", "2"]), (12, "y", ["batch", "3"])] {
        let mut shape = Vec::new();
        for d in dims {
            let mut dim = Vec::new();
            match d.parse::<u64>() {
                Ok(v) => {
                    key(1, 0, &mut dim);
                    var(v, &mut dim);
                }
                Err(_) => bytes(2, d.as_bytes(), &mut dim),
            }
            bytes(1, &dim, &mut shape);
        }
        let mut tensor_type = Vec::new();
        key(1, 0, &mut tensor_type);
        var(1, &mut tensor_type);
        bytes(2, &shape, &mut tensor_type);
        let mut ty = Vec::new();
        bytes(1, &tensor_type, &mut ty);
        let mut vi = Vec::new();
        bytes(1, name.as_bytes(), &mut vi);
        bytes(2, &ty, &mut vi);
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
