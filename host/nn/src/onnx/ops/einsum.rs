//! `Einsum`, evaluated directly: one loop over every combination of the
//! equation's indices. Meant for the small contractions graphs spell with
//! it; large products should be `MatMul`s.

use std::collections::BTreeMap;

use super::Node;
use crate::NnError;
use crate::onnx::value::{DType, Data, Value, fail};

/// Operand labels with any `...` expanded to upper-case labels, aligned
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
    out.extend((ell - e..ell).map(|i| (b'A' + i as u8) as char));
    out.extend(tail.chars());
    Ok(out)
}

/// Each operand's labels and the output's, for an equation over operands
/// of `ranks`: `...` expanded (see [`labels`]), and an implicit output
/// (no `->`) made as numpy makes it: the `...` labels, then the lower-case
/// labels that occur once, in order.
pub(crate) fn terms(eq: &str, ranks: &[usize]) -> Result<(Vec<Vec<char>>, Vec<char>), NnError> {
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq, None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
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
            let mut o: Vec<char> = (0..ell).map(|i| (b'A' + i as u8) as char).collect();
            o.extend(
                count
                    .iter()
                    .filter(|(c, n)| **n == 1 && c.is_ascii_lowercase())
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

pub(super) fn einsum(node: Node<'_>, inputs: &[Option<&Value>]) -> Result<Value, NnError> {
    let eq = equation(node);
    let ops: Vec<&Value> = inputs.iter().flatten().copied().collect();
    let ranks: Vec<usize> = ops.iter().map(|o| o.shape.len()).collect();
    let (op_labels, out) = terms(&eq, &ranks)?;
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
    let out_size: usize = sizes[..out.len()].iter().product();
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
    Ok(Value {
        dtype: DType::F64,
        shape,
        data: Data::F64(res),
    }
    .cast(ops[0].dtype))
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
        assert_eq!(ops, [labels("ABij"), labels("Bjk")]);
        assert_eq!(out, labels("ABik"));
        // Implicit: the ellipsis, then each label seen once, in order.
        let (ops, out) = terms("kj,ji", &[2, 2]).unwrap();
        assert_eq!(ops, [labels("kj"), labels("ji")]);
        assert_eq!(out, labels("ik"));
        let (_, out) = terms("...j", &[3]).unwrap();
        assert_eq!(out, labels("ABj"));
    }

    #[test]
    fn bad_equations_say_what_is_wrong() {
        let e = |eq: &str, ranks: &[usize]| terms(eq, ranks).unwrap_err().message;
        assert!(e("ij,jk->ik", &[2]).contains("names 2 operands, got 1"));
        assert!(e("ijk->i", &[2]).contains("does not match its operand's rank 2"));
        assert!(e("ij->k", &[2]).contains("output label `k` is in no operand's term"));
    }
}
