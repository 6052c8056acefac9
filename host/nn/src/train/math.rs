//! The trainer's arithmetic apart from the products: losses and their
//! gradients, the optimisers' updates, and the initial weights' generator.

pub(super) fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

pub(super) fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// Mean softmax cross-entropy of `logits` rows against class indices; when
/// `grad` is given, writes d(loss)/d(logits) into it.
pub(super) fn cross_entropy(
    logits: &[f32],
    targets: &[f32],
    width: usize,
    mut grad: Option<&mut Vec<f32>>,
) -> f32 {
    let rows = targets.len();
    let mut total = 0.0f64;
    for (r, (row, &t)) in logits.chunks(width).zip(targets).enumerate() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        let log_sum = sum.ln() + max;
        total += f64::from(log_sum - row[t as usize]);
        if let Some(g) = grad.as_deref_mut() {
            for (j, v) in row.iter().enumerate() {
                let p = (v - log_sum).exp();
                let hot = if j == t as usize { 1.0 } else { 0.0 };
                g[r * width + j] = (p - hot) / rows as f32;
            }
        }
    }
    (total / rows as f64) as f32
}

/// Mean squared error over every value; when `grad` is given, writes
/// d(loss)/d(outputs) into it.
pub(super) fn mse(out: &[f32], targets: &[f32], grad: Option<&mut Vec<f32>>) -> f32 {
    let n = out.len() as f32;
    if let Some(g) = grad {
        for ((g, o), t) in g.iter_mut().zip(out).zip(targets) {
            *g = 2.0 * (o - t) / n;
        }
    }
    let sum: f64 = out
        .iter()
        .zip(targets)
        .map(|(o, t)| f64::from(o - t).powi(2))
        .sum();
    (sum / f64::from(n)) as f32
}

pub(super) fn sgd(p: &mut [f32], g: &[f32], m: &mut [f32], lr: f32, momentum: f32) {
    for ((p, g), m) in p.iter_mut().zip(g).zip(m) {
        *m = momentum * *m + g;
        *p -= lr * *m;
    }
}

pub(super) struct Adam {
    pub(super) lr: f32,
    pub(super) beta1: f32,
    pub(super) beta2: f32,
    pub(super) epsilon: f32,
    /// Bias corrections, `1 - beta^t`.
    pub(super) c1: f32,
    pub(super) c2: f32,
}

impl Adam {
    pub(super) fn update(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        for (((p, g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            let (mh, vh) = (*m / self.c1, *v / self.c2);
            *p -= self.lr * mh / (vh.sqrt() + self.epsilon);
        }
    }
}

/// splitmix64, good enough and reproducible: the trainer's initial
/// weights, training-mode `Dropout`'s masks.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 24 bits.
    pub(crate) fn next_f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [0, 1), 53 bits.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
