//! The `ai.onnx.ml` operators on numbers: `Binarizer`,
//! `ArrayFeatureExtractor`, and the decision-tree ensembles `TreeEnsemble`
//! (opset 5) and `TreeEnsembleRegressor` (opsets 1 and 3, what
//! skl2onnx writes for scikit-learn's tree and boosting regressors). Both
//! ensembles are read into one [`Forest`] and run by it. The domain's
//! operators on strings and maps (`LabelEncoder`'s strings, `ZipMap`,
//! `DictVectorizer`) are refused at load as every string is.

use super::{Node, req, shape};
use crate::NnError;
use crate::onnx::value::{DType, Value, fail, numel};

mod trees;
pub(crate) use trees::Forest;

/// The operators of the `ai.onnx.ml` domain weft-nn runs.
pub(crate) const ML: &[&str] = &[
    "ArrayFeatureExtractor",
    "Binarizer",
    "TreeEnsemble",
    "TreeEnsembleRegressor",
];

pub(super) fn run(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    match node.proto.op_type.as_str() {
        "Binarizer" => {
            let x = req(inputs, 0)?;
            let t = f64::from(node.float("threshold", 0.0));
            let v = x
                .to_f64()
                .iter()
                .map(|&v| f64::from(u8::from(v > t)))
                .collect();
            Ok(Value::f64_as(x.dtype, x.shape.clone(), v))
        }
        "ArrayFeatureExtractor" => features(req(inputs, 0)?, req(inputs, 1)?),
        _ => {
            let forest = forest(node).expect("a tree ensemble")?;
            run_forest(node, inputs, &forest)
        }
    }
}

/// The forest of a tree-ensemble node (`None` for any other operator),
/// read once when the model loads: a malformed one is refused then.
pub(crate) fn forest(node: Node<'_>) -> Option<Result<Forest, NnError>> {
    match node.proto.op_type.as_str() {
        "TreeEnsemble" => Some(Forest::from_v5(node)),
        "TreeEnsembleRegressor" => Some(Forest::from_regressor(node)),
        _ => None,
    }
}

/// A tree-ensemble node on its input, by its `forest`: scores of the
/// input's type (`TreeEnsemble`), or f32 (`TreeEnsembleRegressor`).
pub(crate) fn run_forest(
    node: Node<'_>,
    inputs: &[Option<&Value>],
    forest: &Forest,
) -> Result<Value, NnError> {
    let x = req(inputs, 0)?;
    let y = forest.run(x)?;
    let dtype = match node.proto.op_type.as_str() {
        "TreeEnsemble" => x.dtype,
        _ => DType::F32,
    };
    Ok(Value::f64_as(dtype, y.shape, y.values))
}

/// `ArrayFeatureExtractor`: the last axis's elements at `indices` (a 1-D
/// input's as one row, as the ONNX reference gives them).
fn features(x: &Value, indices: &Value) -> Result<Value, NnError> {
    let last = *x
        .shape
        .last()
        .ok_or_else(|| fail("ArrayFeatureExtractor needs an input with at least one axis"))?;
    let idx = indices
        .to_i64()
        .iter()
        .map(|&i| {
            usize::try_from(i)
                .ok()
                .filter(|&i| i < last)
                .ok_or_else(|| {
                    fail(format!(
                        "ArrayFeatureExtractor index {i} is outside the last axis (0..{last})"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = x.len().checked_div(last).unwrap_or(0);
    let mut shape = match x.shape.len() {
        1 => vec![1],
        _ => x.shape[..x.shape.len() - 1].to_vec(),
    };
    shape.push(idx.len());
    numel(&shape, "ArrayFeatureExtractor")?;
    let at: Vec<usize> = (0..rows)
        .flat_map(|r| idx.iter().map(move |&i| r * last + i))
        .collect();
    Ok(x.with(shape, shape::take(&x.data, &at)))
}

#[cfg(test)]
mod tests;
