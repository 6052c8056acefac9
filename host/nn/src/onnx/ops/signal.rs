//! Signal-processing helpers: the window generators and `Det`.

use super::{Node, req};
use crate::NnError;
use crate::onnx::value::{DType, Value, fail, numel};

/// `HannWindow`, `HammingWindow`, `BlackmanWindow`.
pub(super) fn window(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let n =
        usize::try_from(req(inputs, 0)?.to_i64()[0]).map_err(|_| fail("negative window size"))?;
    numel(&[n], &node.proto.op_type)?;
    let periodic = node.int("periodic", 1) != 0;
    let denom = if periodic { n as f64 } else { n as f64 - 1.0 };
    let tau = 2.0 * std::f64::consts::PI;
    let f = |i: f64| -> f64 {
        let x = tau * i / denom;
        match node.proto.op_type.as_str() {
            "HannWindow" => 0.5 - 0.5 * x.cos(),
            "HammingWindow" => 25.0 / 46.0 - 21.0 / 46.0 * x.cos(),
            _ => 0.42 - 0.5 * x.cos() + 0.08 * (2.0 * x).cos(),
        }
    };
    let v: Vec<f64> = (0..n).map(|i| f(i as f64)).collect();
    let code = node.int("output_datatype", 1);
    let dtype = DType::from_onnx(code)
        .ok_or_else(|| fail(format!("output_datatype {code} is not supported")))?;
    Ok(Value::f64_as(dtype, vec![n], v))
}

/// Determinants of the trailing `[M, M]` matrices (LU, partial pivoting).
pub(super) fn det(inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let r = x.shape.len();
    if r < 2 || x.shape[r - 1] != x.shape[r - 2] {
        return Err(fail(format!(
            "Det needs square matrices, got {:?}",
            x.shape
        )));
    }
    let m = x.shape[r - 1];
    let v = x.to_f64();
    let out: Vec<f64> = v
        .chunks(m * m)
        .map(|a| {
            let mut a = a.to_vec();
            let mut det = 1.0;
            for col in 0..m {
                let p = (col..m)
                    .max_by(|&i, &j| a[i * m + col].abs().total_cmp(&a[j * m + col].abs()))
                    .unwrap_or(col);
                if a[p * m + col] == 0.0 {
                    return 0.0;
                }
                if p != col {
                    for j in 0..m {
                        a.swap(p * m + j, col * m + j);
                    }
                    det = -det;
                }
                det *= a[col * m + col];
                for i in col + 1..m {
                    let f = a[i * m + col] / a[col * m + col];
                    for j in col..m {
                        a[i * m + j] -= f * a[col * m + j];
                    }
                }
            }
            det
        })
        .collect();
    Ok(Value::f64_as(x.dtype, x.shape[..r - 2].to_vec(), out))
}
