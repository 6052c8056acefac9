//! `Einsum`. An equation of two f32 operands that is one batched product
//! ([`Product`]: attention's `bhqd,bhkd->bhqk`, say) runs on the matmul
//! kernel; any other is evaluated directly, one loop in f64 over every
//! combination of the equation's indices, which suits the small
//! contractions graphs spell with it. (The kernel sums in f32, as
//! `MatMul` does, where the loop sums in f64.)

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::Node;
use super::matmul::batched;
use super::nn::to_f32;
use super::shape::{transpose_perm, unpermuted};
use crate::NnError;
use crate::onnx::value::{DType, Data, Value, fail, numel};

/// The label standing for the `i`th dimension under `...`: Greek letters,
/// which no equation spells (its labels are ASCII letters), so they never
/// meet a label of the user's.
fn ellipsis_label(i: usize) -> char {
    char::from_u32(0x3b1 + i as u32).expect("a few dozen dims at most")
}

/// Operand labels with any `...` expanded to [`ellipsis_label`]s, aligned
/// right across operands as numpy broadcasts them.
fn labels(term: &str, rank: usize, ell: usize) -> Result<Vec<char>, NnError> {
    let letters: Vec<char> = term.replace("...", "").chars().collect();
    if !term.contains("...") {
        return Ok(letters);
    }
    let e = rank
        .checked_sub(letters.len())
        .ok_or_else(|| fail("einsum term longer than its operand"))?;
    let (head, tail) = term.split_once("...").expect("checked");
    let mut out: Vec<char> = head.chars().collect();
    out.extend((ell - e..ell).map(ellipsis_label));
    out.extend(tail.chars());
    Ok(out)
}

/// Each operand's labels and the output's, for an equation over operands
/// of `ranks`: `...` expanded (see [`labels`]), and an implicit output
/// (no `->`) made as numpy makes it: the `...` labels, then the labels
/// that occur once, in alphabetical (ASCII) order.
pub(crate) fn terms(eq: &str, ranks: &[usize]) -> Result<(Vec<Vec<char>>, Vec<char>), NnError> {
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq, None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if let Some(c) = terms
        .iter()
        .chain(rhs.as_ref())
        .flat_map(|t| t.replace("...", "").chars().collect::<Vec<_>>())
        .find(|c| !c.is_ascii_alphabetic())
    {
        return Err(fail(format!(
            "equation `{eq}`: `{c}` is not a label (labels are ASCII letters; `...` stands for \
             the dims no label names)"
        )));
    }
    if terms.len() != ranks.len() {
        return Err(fail(format!(
            "equation `{eq}` names {} operands, got {}",
            terms.len(),
            ranks.len()
        )));
    }
    let ell = terms
        .iter()
        .zip(ranks)
        .filter(|(t, _)| t.contains("..."))
        .map(|(t, r)| (r + 3).saturating_sub(t.len()))
        .max()
        .unwrap_or(0);
    let mut count: BTreeMap<char, usize> = BTreeMap::new();
    let mut op_labels = Vec::new();
    for (t, &rank) in terms.iter().zip(ranks) {
        let l = labels(t, rank, ell)?;
        if l.len() != rank {
            return Err(fail(format!(
                "term `{t}` does not match its operand's rank {rank}"
            )));
        }
        for &c in &l {
            *count.entry(c).or_default() += 1;
        }
        op_labels.push(l);
    }
    let out: Vec<char> = match rhs {
        Some(r) => labels(r, r.replace("...", "").len() + ell, ell)?,
        None => {
            let mut o: Vec<char> = (0..ell).map(ellipsis_label).collect();
            o.extend(
                count
                    .iter()
                    .filter(|(c, n)| **n == 1 && c.is_ascii_alphabetic())
                    .map(|(c, _)| *c),
            );
            o
        }
    };
    if let Some(c) = out.iter().find(|c| !count.contains_key(c)) {
        return Err(fail(format!(
            "equation `{eq}`: output label `{c}` is in no operand's term"
        )));
    }
    Ok((op_labels, out))
}

/// The equation of an `Einsum` node, without its whitespace.
pub(crate) fn equation(node: Node<'_>) -> String {
    (node.string("equation", "").chars())
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// Whether no label of `t` comes twice.
pub(crate) fn distinct(t: &[char]) -> bool {
    t.iter().enumerate().all(|(i, c)| !t[..i].contains(c))
}

/// How an equation of two operands (labelled `ta` and `tb`, of shapes
/// `sa` and `sb`, into `to`) is one batched product: labels in both
/// operands and the output are its batch, those in both and not the
/// output are summed over, the rest are A's rows and B's columns.
pub(crate) struct Product {
    /// A's axes in `[batch, rows, summed]` order.
    pub(crate) order_a: Vec<usize>,
    /// B's axes in `[batch, summed, columns]` order.
    pub(crate) order_b: Vec<usize>,
    /// How many batches, rows, summed and columns (each the product of
    /// its labels' sizes).
    pub(crate) dims: [usize; 4],
    /// The product's shape, `[batch.., rows.., columns..]`.
    pub(crate) mid_shape: Vec<usize>,
    /// The output's axes from the product's.
    pub(crate) order_out: Vec<usize>,
}

impl Product {
    /// The plan, or `None` where the equation is not one product: a label
    /// twice in a term, sizes that differ (a size-1 broadcast among
    /// them), a label summed in one operand alone, or nothing to compute.
    pub(crate) fn of(
        (ta, sa): (&[char], &[usize]),
        (tb, sb): (&[char], &[usize]),
        to: &[char],
    ) -> Option<Self> {
        if ![ta, tb, to].iter().all(|t| distinct(t)) || ta.len() != sa.len() || tb.len() != sb.len()
        {
            return None;
        }
        let size = |c: char| -> Option<usize> {
            let x = ta.iter().position(|&l| l == c).map(|i| sa[i]);
            let y = tb.iter().position(|&l| l == c).map(|i| sb[i]);
            match (x, y) {
                (Some(x), Some(y)) if x != y => None,
                (x, y) => x.or(y),
            }
        };
        let (in_a, in_b, in_out) = (
            |c: &char| ta.contains(c),
            |c: &char| tb.contains(c),
            |c: &char| to.contains(c),
        );
        let batch: Vec<char> = to.iter().copied().filter(|c| in_a(c) && in_b(c)).collect();
        let summed: Vec<char> = ta
            .iter()
            .copied()
            .filter(|c| in_b(c) && !in_out(c))
            .collect();
        let rows: Vec<char> = ta.iter().copied().filter(|c| !in_b(c)).collect();
        let cols: Vec<char> = tb.iter().copied().filter(|c| !in_a(c)).collect();
        // Every label of the output from an operand; none summed alone.
        if !to.iter().all(|c| in_a(c) || in_b(c)) || !rows.iter().chain(&cols).all(in_out) {
            return None;
        }
        let sizes = |labels: &[char]| labels.iter().map(|&c| size(c)).collect::<Option<Vec<_>>>();
        let count = |labels: &[char]| Some(sizes(labels)?.iter().product::<usize>());
        let dims = [
            count(&batch)?,
            count(&rows)?,
            count(&summed)?,
            count(&cols)?,
        ];
        if dims.contains(&0) {
            return None;
        }
        let at = |term: &[char], labels: Vec<&char>| -> Vec<usize> {
            let pos = |c: &char| {
                term.iter()
                    .position(|l| l == c)
                    .expect("a label of the term")
            };
            labels.into_iter().map(pos).collect()
        };
        let mid: Vec<char> = batch.iter().chain(&rows).chain(&cols).copied().collect();
        Some(Self {
            order_a: at(ta, batch.iter().chain(&rows).chain(&summed).collect()),
            order_b: at(tb, batch.iter().chain(&summed).chain(&cols).collect()),
            dims,
            mid_shape: sizes(&mid)?,
            order_out: at(&mid, to.iter().collect()),
        })
    }

    /// The output's shape.
    pub(crate) fn out_shape(&self) -> Vec<usize> {
        self.order_out.iter().map(|&i| self.mid_shape[i]).collect()
    }

    /// The product of f32 `a` and `b` on the CPU's matmul kernel: each
    /// permuted into place (where it is not already), the batched
    /// products, the result permuted to the output's order (where it is
    /// not already).
    fn run(&self, a: &Value, b: &Value) -> Result<Value, NnError> {
        fn in_order<'v>(x: &'v Value, order: &[usize]) -> Cow<'v, [f32]> {
            if unpermuted(order) {
                return to_f32(x);
            }
            match transpose_perm(x, order).data {
                Data::F32(v) => Cow::Owned(v),
                _ => unreachable!("the operands are f32"),
            }
        }
        let [nb, nm, nk, nn] = self.dims;
        let (af, bf) = (in_order(a, &self.order_a), in_order(b, &self.order_b));
        let (_, y) = batched(&af, &[nb], &bf, &[nb], (nm, nk, nn))?;
        let y = Value::f32(self.mid_shape.clone(), y);
        Ok(match unpermuted(&self.order_out) {
            true => y,
            false => transpose_perm(&y, &self.order_out),
        })
    }
}

pub(super) fn einsum(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let eq = equation(node);
    let ops: Vec<&Value> = inputs.iter().flatten().copied().collect();
    let ranks: Vec<usize> = ops.iter().map(|o| o.shape.len()).collect();
    let (op_labels, out) = terms(&eq, &ranks)?;
    // A product of f32s runs on the matmul kernel (the loop below, in f64,
    // is for what is not one).
    if let ([a, b], [ta, tb]) = (ops.as_slice(), op_labels.as_slice())
        && a.dtype == DType::F32
        && b.dtype == DType::F32
        && let Some(plan) = Product::of((ta, &a.shape), (tb, &b.shape), &out)
    {
        return plan.run(a, b);
    }
    let mut dims: BTreeMap<char, usize> = BTreeMap::new();
    for (l, o) in op_labels.iter().zip(&ops) {
        for (&c, &d) in l.iter().zip(&o.shape) {
            let e = dims.entry(c).or_insert(d);
            if *e == 1 {
                *e = d;
            }
        }
    }
    let summed: Vec<char> = dims.keys().copied().filter(|c| !out.contains(c)).collect();
    let all: Vec<char> = out.iter().chain(&summed).copied().collect();
    let sizes: Vec<usize> = all.iter().map(|c| dims[c]).collect();
    let vals: Vec<Vec<f64>> = ops.iter().map(|o| o.to_f64()).collect();
    // For each operand, its stride per entry of `all` (0 where absent or
    // broadcast).
    let strides: Vec<Vec<usize>> = op_labels
        .iter()
        .zip(&ops)
        .map(|(l, o)| {
            let st = crate::onnx::value::strides(&o.shape);
            all.iter()
                .map(|c| {
                    l.iter()
                        .enumerate()
                        .filter(|(i, x)| *x == c && o.shape[*i] != 1)
                        .map(|(i, _)| st[i])
                        .sum()
                })
                .collect()
        })
        .collect();
    let out_size = numel(&sizes[..out.len()], "Einsum")?;
    let inner: usize = sizes[out.len()..].iter().product();
    let mut res = vec![0.0; out_size];
    let mut idx = vec![0usize; all.len()];
    for (o, r) in res.iter_mut().enumerate() {
        let mut rem = o;
        for a in (0..out.len()).rev() {
            idx[a] = rem % sizes[a];
            rem /= sizes[a];
        }
        for s in 0..inner {
            let mut rem = s;
            for a in (out.len()..all.len()).rev() {
                idx[a] = rem % sizes[a];
                rem /= sizes[a];
            }
            let mut prod = 1.0;
            for (v, st) in vals.iter().zip(&strides) {
                prod *= v[idx.iter().zip(st).map(|(i, s)| i * s).sum::<usize>()];
            }
            *r += prod;
        }
    }
    let shape = sizes[..out.len()].to_vec();
    Ok(Value::f64_as(ops[0].dtype, shape, res))
}

#[cfg(test)]
mod tests {
    use super::terms;

    fn labels(t: &str) -> Vec<char> {
        t.chars().collect()
    }

    #[test]
    fn an_ellipsis_aligns_right_and_an_implicit_output_sorts_what_occurs_once() {
        // Two operands of ranks 4 and 3 under `...`: the longer's extra dim
        // is the first ellipsis label.
        let (ops, out) = terms("...ij,...jk->...ik", &[4, 3]).unwrap();
        assert_eq!(ops, [labels("αβij"), labels("βjk")]);
        assert_eq!(out, labels("αβik"));
        // Implicit: the ellipsis, then each label seen once, in order.
        let (ops, out) = terms("kj,ji", &[2, 2]).unwrap();
        assert_eq!(ops, [labels("kj"), labels("ji")]);
        assert_eq!(out, labels("ik"));
        let (_, out) = terms("...j", &[3]).unwrap();
        assert_eq!(out, labels("αβj"));
    }

    #[test]
    fn only_ascii_letters_are_labels() {
        for eq in ["αi,i->", "i.j->ij", "ij->i.."] {
            let err = terms(eq, &[2, 2]).unwrap_err();
            assert!(
                err.message.contains("is not a label"),
                "{eq}: {}",
                err.message
            );
        }
    }

    #[test]
    fn upper_case_labels_are_labels_like_any_other() {
        // `...` once expanded to `A`, `B`..., so `...A` read as a diagonal.
        let (ops, out) = terms("...A,...A->...", &[2, 2]).unwrap();
        assert_eq!(ops, [labels("αA"), labels("αA")]);
        assert_eq!(out, labels("α"));
        // An implicit output keeps upper-case labels seen once, sorted as
        // numpy sorts them (ASCII: upper case first).
        let (_, out) = terms("bA,bc", &[2, 2]).unwrap();
        assert_eq!(out, labels("Ac"));
    }

    /// An f32 product on the matmul kernel gives what the f64 loop gives
    /// (the same values as f64 take the loop), whatever its layout.
    #[test]
    fn f32_products_on_the_matmul_kernel_match_the_loop() {
        use crate::onnx::exec::OnnxModel;
        use crate::onnx::write::GraphWriter;
        use crate::{ElementType, Model, Tensor};
        let cases: [(&str, &[usize], &[usize]); 8] = [
            ("bij,bjk->bik", &[2, 3, 4], &[2, 4, 5]),
            ("bqd,bkd->bqk", &[2, 3, 4], &[2, 5, 4]),
            ("bsd,de->ebs", &[2, 3, 4], &[4, 6]),
            ("...d,...d->...", &[2, 3, 4], &[2, 3, 4]),
            ("ij,jk", &[3, 4], &[4, 2]),
            // Summed labels in another order in B; the batch, rows and
            // columns in another order in the output.
            ("bxy,byx->b", &[2, 3, 4], &[2, 4, 3]),
            ("xbi,bjx->jbi", &[4, 2, 3], &[2, 5, 4]),
            // Not a product (`j` summed in one operand alone): the loop.
            ("ij,ik->k", &[3, 4], &[3, 2]),
        ];
        for (eq, sa, sb) in cases {
            let mut g = GraphWriter::new("einsum");
            let attrs = [("equation", eq)];
            g.node_strings("Einsum", &["a", "b"], &["y"], "e", (&[], &[]), &attrs);
            g.input("a", &vec!["?"; sa.len()]);
            g.input("b", &vec!["?"; sb.len()]);
            g.output("y", &[]);
            let model = OnnxModel::load(&g.finish("weft-nn tests", 17)).unwrap();
            let values = |shape: &[usize], phase: f32| -> Vec<f32> {
                let n = shape.iter().product::<usize>();
                (0..n).map(|i| (i as f32 * 0.61 + phase).sin()).collect()
            };
            let (va, vb) = (values(sa, 0.3), values(sb, 1.7));
            let f64s = |shape: &[usize], v: &[f32]| {
                let bytes = v.iter().flat_map(|&x| f64::from(x).to_le_bytes()).collect();
                Tensor::new(shape.to_vec(), ElementType::F64, bytes).unwrap()
            };
            let run = |a: Tensor, b: Tensor| {
                let out = model.session().compute(&[("a".into(), a), ("b".into(), b)]);
                out.unwrap().remove(0).1
            };
            let fast = run(
                Tensor::from_f32(sa.to_vec(), &va),
                Tensor::from_f32(sb.to_vec(), &vb),
            );
            let slow = run(f64s(sa, &va), f64s(sb, &vb));
            assert_eq!(
                (fast.ty, &fast.shape),
                (ElementType::F32, &slow.shape),
                "{eq}"
            );
            for (x, y) in fast.to_f32().unwrap().iter().zip(slow.to_f32().unwrap()) {
                assert!((x - y).abs() <= 1e-5, "{eq}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn bad_equations_say_what_is_wrong() {
        let e = |eq: &str, ranks: &[usize]| terms(eq, ranks).unwrap_err().message;
        assert!(e("ij,jk->ik", &[2]).contains("names 2 operands, got 1"));
        assert!(e("ijk->i", &[2]).contains("does not match its operand's rank 2"));
        assert!(e("ij->k", &[2]).contains("output label `k` is in no operand's term"));
    }
}
