//! The decision-tree ensembles of the `ai.onnx.ml` domain: `TreeEnsemble`
//! (opset 5) and `TreeEnsembleRegressor` (opsets 1 and 3) read into one
//! [`Forest`], checked when the model loads, and run by it.

use super::super::Node;
use crate::NnError;
use crate::onnx::value::{Value, fail, numel};

/// How a split compares a feature with its value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Branch {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    /// The feature is one of these.
    Member(Vec<f64>),
}

/// Where a branch goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Next {
    Node(usize),
    Leaf(usize),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Split {
    feature: usize,
    value: f64,
    branch: Branch,
    /// A missing feature (NaN) takes the true branch.
    missing_true: bool,
    yes: Next,
    no: Next,
}

impl Split {
    fn holds(&self, x: f64) -> bool {
        if x.is_nan() && self.missing_true {
            return true;
        }
        let v = self.value;
        match &self.branch {
            Branch::Leq => x <= v,
            Branch::Lt => x < v,
            Branch::Gte => x >= v,
            Branch::Gt => x > v,
            Branch::Eq => x == v,
            Branch::Neq => x != v,
            Branch::Member(set) => set.contains(&x),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Aggregate {
    Average,
    Sum,
    Min,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Post {
    None,
    Softmax,
    Logistic,
    SoftmaxZero,
    Probit,
}

/// A tree ensemble: the splits of all its trees, each tree's root, and
/// each leaf's (target, weight) pairs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Forest {
    splits: Vec<Split>,
    roots: Vec<Next>,
    leaves: Vec<Vec<(usize, f64)>>,
    targets: usize,
    aggregate: Aggregate,
    pub(super) post: Post,
    /// Added to each target after aggregation (the legacy operators').
    base: Vec<f64>,
}

/// The outputs of a [`Forest`]: `[rows, targets]`.
pub(super) struct Scores {
    pub(super) shape: Vec<usize>,
    pub(super) values: Vec<f64>,
}

fn bad(op: &str, what: impl std::fmt::Display) -> NnError {
    fail(format!("{op}: {what}"))
}

/// Refuses `nodes_*` attributes of other `lengths` than the `n` nodes
/// (the optional `missing` may be empty).
fn per_node(op: &str, n: usize, lengths: &[usize], missing: &[i64]) -> Result<(), NnError> {
    if lengths.iter().any(|&l| l != n) || !(missing.is_empty() || missing.len() == n) {
        return Err(bad(
            op,
            "the `nodes_*` attributes must all have one value per node",
        ));
    }
    Ok(())
}

/// `n_targets`, checked to be a count weft-nn can hold (a model's bad
/// value fails its load, never the allocation).
fn target_count(op: &str, n: i64) -> Result<usize, NnError> {
    let n = usize::try_from(n).map_err(|_| bad(op, format!("n_targets is {n}")))?;
    numel(&[n], "a tree ensemble's n_targets")
}

/// One value of an index attribute as a `usize` below `limit`.
fn index(op: &str, name: &str, v: i64, limit: usize) -> Result<usize, NnError> {
    usize::try_from(v)
        .ok()
        .filter(|&i| i < limit)
        .ok_or_else(|| bad(op, format!("`{name}` holds {v}, outside 0..{limit}")))
}

/// An index attribute's values as `usize`s, each below `limit`.
fn indices(op: &str, name: &str, v: &[i64], limit: usize) -> Result<Vec<usize>, NnError> {
    v.iter().map(|&i| index(op, name, i, limit)).collect()
}

impl Forest {
    /// `TreeEnsemble` (ai.onnx.ml opset 5): nodes and leaves by index,
    /// each branch saying whether it leads to a node or a leaf.
    pub(super) fn from_v5(node: Node<'_>) -> Result<Self, NnError> {
        let op = "TreeEnsemble";
        let ints = |name: &str| node.ints(name).unwrap_or_default();
        let tensor = |name: &str| node.tensor(name).map(Value::to_f64).unwrap_or_default();
        let features = ints("nodes_featureids");
        let n = features.len();
        let splits = tensor("nodes_splits");
        let modes = node
            .tensor("nodes_modes")
            .map(Value::to_i64)
            .unwrap_or_default();
        let (yes, yes_leaf) = (ints("nodes_truenodeids"), ints("nodes_trueleafs"));
        let (no, no_leaf) = (ints("nodes_falsenodeids"), ints("nodes_falseleafs"));
        let missing = ints("nodes_missing_value_tracks_true");
        let lengths = [
            splits.len(),
            modes.len(),
            yes.len(),
            yes_leaf.len(),
            no.len(),
            no_leaf.len(),
        ];
        per_node(op, n, &lengths, &missing)?;
        let leaf_targets = ints("leaf_targetids");
        let leaf_weights = tensor("leaf_weights");
        if leaf_targets.len() != leaf_weights.len() {
            return Err(bad(
                op,
                "`leaf_targetids` and `leaf_weights` must have one value per leaf",
            ));
        }
        let targets = target_count(op, node.int("n_targets", 0))?;
        let target_ids = indices(op, "leaf_targetids", &leaf_targets, targets)?;
        let leaves: Vec<_> = target_ids
            .into_iter()
            .zip(leaf_weights)
            .map(|p| vec![p])
            .collect();
        let next = |id: i64, leaf: i64, name: &str| -> Result<Next, NnError> {
            Ok(if leaf != 0 {
                Next::Leaf(index(op, name, id, leaves.len())?)
            } else {
                Next::Node(index(op, name, id, n)?)
            })
        };
        // The sets of the member splits, in node order, each ended by a
        // NaN (the last one's may be left out).
        let members = tensor("membership_values");
        let body = match members.last() {
            Some(v) if v.is_nan() => &members[..members.len() - 1],
            _ => &members[..],
        };
        let mut sets = body.split(|v| v.is_nan());
        if members.is_empty() {
            sets.next();
        }
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let branch = match modes[i] {
                0 => Branch::Leq,
                1 => Branch::Lt,
                2 => Branch::Gte,
                3 => Branch::Gt,
                4 => Branch::Eq,
                5 => Branch::Neq,
                6 => Branch::Member(
                    sets.next()
                        .ok_or_else(|| {
                            bad(op, "`membership_values` has fewer sets than member splits")
                        })?
                        .to_vec(),
                ),
                m => return Err(bad(op, format!("node {i}'s mode {m} is not one of 0..=6"))),
            };
            out.push(Split {
                feature: index(op, "nodes_featureids", features[i], usize::MAX)?,
                value: splits[i],
                branch,
                missing_true: missing.get(i).is_some_and(|&m| m != 0),
                yes: next(yes[i], yes_leaf[i], "nodes_truenodeids")?,
                no: next(no[i], no_leaf[i], "nodes_falsenodeids")?,
            });
        }
        if sets.next().is_some() {
            return Err(bad(
                op,
                "`membership_values` has more sets than member splits",
            ));
        }
        let roots = indices(op, "tree_roots", &ints("tree_roots"), n)?;
        let aggregate = match node.int("aggregate_function", 1) {
            0 => Aggregate::Average,
            1 => Aggregate::Sum,
            2 => Aggregate::Min,
            3 => Aggregate::Max,
            a => {
                return Err(bad(
                    op,
                    format!("aggregate_function {a} is not one of 0..=3"),
                ));
            }
        };
        let post = match node.int("post_transform", 0) {
            0 => Post::None,
            1 => Post::Softmax,
            2 => Post::Logistic,
            3 => Post::SoftmaxZero,
            4 => Post::Probit,
            p => return Err(bad(op, format!("post_transform {p} is not one of 0..=4"))),
        };
        Self {
            splits: out,
            roots: roots.into_iter().map(Next::Node).collect(),
            leaves,
            targets,
            aggregate,
            post,
            base: vec![0.0; targets],
        }
        .checked(op)
    }

    /// `TreeEnsembleRegressor` (ai.onnx.ml opsets 1 and 3): nodes named by
    /// (tree, node) ids, leaves marked `LEAF`, their targets listed apart.
    /// A tree's root is its one node no branch leads to: a tree with a
    /// node nothing reaches is refused (onnxruntime takes its lowest id).
    pub(super) fn from_regressor(node: Node<'_>) -> Result<Self, NnError> {
        let op = "TreeEnsembleRegressor";
        let ints = |name: &str| node.ints(name).unwrap_or_default();
        let floats = |name: &str| -> Vec<f64> {
            match node.tensor(&format!("{name}_as_tensor")) {
                Some(t) => t.to_f64(),
                None => node
                    .floats(name)
                    .unwrap_or_default()
                    .into_iter()
                    .map(f64::from)
                    .collect(),
            }
        };
        let (trees, ids) = (ints("nodes_treeids"), ints("nodes_nodeids"));
        let n = trees.len();
        let features = ints("nodes_featureids");
        let values = floats("nodes_values");
        let modes = node.strings("nodes_modes").unwrap_or_default();
        let (yes, no) = (ints("nodes_truenodeids"), ints("nodes_falsenodeids"));
        let missing = ints("nodes_missing_value_tracks_true");
        let lengths = [
            ids.len(),
            features.len(),
            values.len(),
            modes.len(),
            yes.len(),
            no.len(),
        ];
        per_node(op, n, &lengths, &missing)?;
        let key: std::collections::HashMap<(i64, i64), usize> = trees
            .iter()
            .zip(&ids)
            .enumerate()
            .map(|(i, (&t, &d))| ((t, d), i))
            .collect();
        if key.len() != n {
            return Err(bad(op, "two nodes have the same (tree, node) ids"));
        }
        // Leaves get indices of their own, splits theirs.
        let (mut leaf_of, mut split_of) = (vec![None; n], vec![None; n]);
        let (mut leaves, mut count) = (Vec::new(), 0);
        for (i, mode) in modes.iter().enumerate() {
            if mode == "LEAF" {
                leaf_of[i] = Some(leaves.len());
                leaves.push(Vec::new());
            } else {
                split_of[i] = Some(count);
                count += 1;
            }
        }
        let targets = target_count(op, node.int("n_targets", 1))?;
        let (t_trees, t_nodes, t_ids) = (
            ints("target_treeids"),
            ints("target_nodeids"),
            ints("target_ids"),
        );
        let weights = floats("target_weights");
        if [t_nodes.len(), t_ids.len(), weights.len()]
            .iter()
            .any(|&l| l != t_trees.len())
        {
            return Err(bad(
                op,
                "the `target_*` attributes must all have one value per weight",
            ));
        }
        let t_ids = indices(op, "target_ids", &t_ids, targets)?;
        for (((&t, &d), target), w) in t_trees.iter().zip(&t_nodes).zip(t_ids).zip(weights) {
            let leaf = key.get(&(t, d)).and_then(|&i| leaf_of[i]).ok_or_else(|| {
                bad(
                    op,
                    format!("a target weight names tree {t}'s node {d}, which is not a leaf"),
                )
            })?;
            leaves[leaf].push((target, w));
        }
        let at = |i: usize| match leaf_of[i] {
            Some(l) => Next::Leaf(l),
            None => Next::Node(split_of[i].expect("a split")),
        };
        let child = |i: usize, to: i64| -> Result<Next, NnError> {
            key.get(&(trees[i], to)).map(|&c| at(c)).ok_or_else(|| {
                bad(
                    op,
                    format!(
                        "tree {}'s node {} branches to node {to}, which it does not have",
                        trees[i], ids[i]
                    ),
                )
            })
        };
        let mut splits = Vec::with_capacity(count);
        let mut referenced = vec![false; n];
        for i in (0..n).filter(|&i| split_of[i].is_some()) {
            let branch = match modes[i].as_str() {
                "BRANCH_LEQ" => Branch::Leq,
                "BRANCH_LT" => Branch::Lt,
                "BRANCH_GTE" => Branch::Gte,
                "BRANCH_GT" => Branch::Gt,
                "BRANCH_EQ" => Branch::Eq,
                "BRANCH_NEQ" => Branch::Neq,
                m => {
                    return Err(bad(
                        op,
                        format!("node mode `{m}` is not a BRANCH_* mode or LEAF"),
                    ));
                }
            };
            for to in [yes[i], no[i]] {
                if let Some(&c) = key.get(&(trees[i], to)) {
                    referenced[c] = true;
                }
            }
            splits.push(Split {
                feature: index(op, "nodes_featureids", features[i], usize::MAX)?,
                value: values[i],
                branch,
                missing_true: missing.get(i).is_some_and(|&m| m != 0),
                yes: child(i, yes[i])?,
                no: child(i, no[i])?,
            });
        }
        // Each tree's root: its one node no branch leads to.
        let mut roots: Vec<(i64, Next)> = Vec::new();
        for i in (0..n).filter(|&i| !referenced[i]) {
            if roots.iter().any(|(t, _)| *t == trees[i]) {
                return Err(bad(op, format!("tree {} has more than one root", trees[i])));
            }
            roots.push((trees[i], at(i)));
        }
        let aggregate = match node.string("aggregate_function", "SUM").as_str() {
            "AVERAGE" => Aggregate::Average,
            "SUM" => Aggregate::Sum,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            a => {
                return Err(bad(
                    op,
                    format!("aggregate_function `{a}` is not AVERAGE, SUM, MIN or MAX"),
                ));
            }
        };
        let post = match node.string("post_transform", "NONE").as_str() {
            "NONE" => Post::None,
            "SOFTMAX" => Post::Softmax,
            "LOGISTIC" => Post::Logistic,
            "SOFTMAX_ZERO" => Post::SoftmaxZero,
            "PROBIT" => Post::Probit,
            p => return Err(bad(op, format!("post_transform `{p}` is not a known one"))),
        };
        let mut base = floats("base_values");
        if base.is_empty() {
            base = vec![0.0; targets];
        } else if base.len() != targets {
            return Err(bad(
                op,
                format!(
                    "`base_values` has {} values for {targets} targets",
                    base.len()
                ),
            ));
        }
        Self {
            splits,
            roots: roots.into_iter().map(|(_, r)| r).collect(),
            leaves,
            targets,
            aggregate,
            post,
            base,
        }
        .checked(op)
    }

    /// Refuses a forest with a loop (a walk that would never end): a
    /// depth-first walk from every split, without recursion, in time
    /// linear in the splits.
    fn checked(self, op: &str) -> Result<Self, NnError> {
        // 0: not seen; 1: on the walk's path; 2: every path from it ends.
        let mut state = vec![0u8; self.splits.len()];
        for start in 0..self.splits.len() {
            if state[start] != 0 {
                continue;
            }
            // (split, branches of it visited so far)
            let mut path = vec![(start, 0u8)];
            state[start] = 1;
            while let Some((i, k)) = path.pop() {
                if k == 2 {
                    state[i] = 2;
                    continue;
                }
                path.push((i, k + 1));
                let s = &self.splits[i];
                if let Next::Node(j) = if k == 0 { s.yes } else { s.no } {
                    match state[j] {
                        0 => {
                            state[j] = 1;
                            path.push((j, 0));
                        }
                        1 => {
                            return Err(bad(
                                op,
                                format!("the branches from node {j} lead back to it"),
                            ));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(self)
    }

    /// The leaf tree `root` sends `row` to.
    fn leaf(&self, mut at: Next, row: &[f64]) -> Result<usize, NnError> {
        loop {
            match at {
                Next::Leaf(l) => return Ok(l),
                Next::Node(i) => {
                    let s = &self.splits[i];
                    let x = *row.get(s.feature).ok_or_else(|| {
                        fail(format!(
                            "a tree splits on feature {}, but the input has {} per row",
                            s.feature,
                            row.len()
                        ))
                    })?;
                    at = if s.holds(x) { s.yes } else { s.no };
                }
            }
        }
    }

    /// Runs on `x` (`[rows, features]`, or one row of features).
    pub(super) fn run(&self, x: &Value) -> Result<Scores, NnError> {
        let (rows, width) = match x.shape[..] {
            [f] => (1, f),
            [n, f] => (n, f),
            _ => {
                return Err(fail(format!(
                    "a tree ensemble takes [rows, features], got {:?}",
                    x.shape
                )));
            }
        };
        let shape = vec![rows, self.targets];
        numel(&shape, "a tree ensemble's output")?;
        let values = x.to_f64();
        let mut out = Vec::with_capacity(rows * self.targets);
        let mut score = vec![None::<f64>; self.targets];
        for r in 0..rows {
            let row = &values[r * width..(r + 1) * width];
            score.fill(None);
            for &root in &self.roots {
                for &(t, w) in &self.leaves[self.leaf(root, row)?] {
                    score[t] = Some(match (score[t], self.aggregate) {
                        (None, _) => w,
                        (Some(s), Aggregate::Sum | Aggregate::Average) => s + w,
                        (Some(s), Aggregate::Min) => s.min(w),
                        (Some(s), Aggregate::Max) => s.max(w),
                    });
                }
            }
            let trees = self.roots.len().max(1) as f64;
            let start = out.len();
            out.extend(
                score
                    .iter()
                    .zip(&self.base)
                    .map(|(s, b)| match (s, self.aggregate) {
                        (Some(s), Aggregate::Average) => s / trees + b,
                        (Some(s), _) => s + b,
                        // A target no leaf reached: its base, as onnxruntime.
                        (None, _) => *b,
                    }),
            );
            self.finish(&mut out[start..]);
        }
        Ok(Scores { shape, values: out })
    }

    /// The post-transform, on one row's scores. With one target only
    /// PROBIT applies, as onnxruntime does it (the ONNX reference refuses
    /// the others there). SOFTMAX_ZERO leaves exact zeros out, and a row
    /// of zeros as it is (onnxruntime counts |v| < 1e-7 as zero, and
    /// gives NaN for such a row).
    pub(super) fn finish(&self, y: &mut [f64]) {
        if y.len() == 1 && self.post != Post::Probit {
            return;
        }
        match self.post {
            Post::None => {}
            Post::Logistic => y.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Post::Probit => y
                .iter_mut()
                .for_each(|v| *v = std::f64::consts::SQRT_2 * erfinv(2.0 * *v - 1.0)),
            Post::Softmax | Post::SoftmaxZero => {
                let zero = self.post == Post::SoftmaxZero;
                let kept = |v: f64| !(zero && v == 0.0);
                let max = y
                    .iter()
                    .copied()
                    .filter(|&v| kept(v))
                    .fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for v in y.iter_mut().filter(|v| kept(**v)) {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                for v in y.iter_mut().filter(|v| **v != 0.0 || !zero) {
                    *v /= sum;
                }
            }
        }
    }
}

/// The inverse error function: an initial guess refined by Newton's
/// method on [`erf`](super::super::elementwise::erf) (to double precision).
fn erfinv(y: f64) -> f64 {
    if !(-1.0..=1.0).contains(&y) {
        return f64::NAN;
    }
    if y.abs() == 1.0 {
        return y * f64::INFINITY;
    }
    // Winitzki's approximation, then Newton steps.
    let a = 0.147;
    let ln = (1.0 - y * y).ln();
    let t = 2.0 / (std::f64::consts::PI * a) + ln / 2.0;
    let mut x = y.signum() * ((t * t - ln / a).sqrt() - t).sqrt();
    for _ in 0..4 {
        let err = super::super::elementwise::erf(x) - y;
        x -= err / (2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp());
    }
    x
}
