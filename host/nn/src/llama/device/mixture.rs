//! A mixture-of-experts layer in a decoder's pass on the device (see
//! [`mixture`]).

use super::{Work, on_gpu};
use crate::NnError;
use crate::gpu::{Buffer, Gpu, GpuMatrix, Program, Reuse};
use crate::llama::{Expert, HParams, Layer, QMatrix, rows};

/// A mixture layer's feed-forward on the device: each expert's Wgateᵀ
/// and Wupᵀ side by side, one product (the down projections and the
/// router are products alone: their `QMatrix`es hold them).
#[derive(Debug)]
pub(super) struct DeviceMixture {
    experts: Vec<GpuMatrix>,
    /// gpt-oss's experts' biases: each one's gate and up biases in one
    /// row, as its `experts` product's rows are, and its down bias.
    biases: Option<Vec<[GpuMatrix; 2]>>,
    shared: Option<GpuMatrix>,
    /// Qwen2-MoE's gate of the shared expert, a column.
    shared_gate: Option<GpuMatrix>,
}

impl DeviceMixture {
    /// Uploads `layer`'s experts (its router is uploaded with the
    /// products that run alone).
    pub(super) fn upload(gpu: &Gpu, hp: &HParams, layer: &Layer) -> Result<Self, NnError> {
        let side_by_side = |e: &Expert| QMatrix::upload_side_by_side(gpu, &e.gate_up());
        let vector = |v: &[f32]| gpu.upload(v, 1, v.len());
        let biased = |e: &Expert| e.gate_bias.is_some() || e.biases.is_some();
        let biases = match layer.experts.iter().any(biased) {
            false => None,
            true => Some(
                (layer.experts.iter())
                    .map(|e| {
                        let (ffn, d) = (hp.ffn, hp.embd);
                        let zeros = |len| vec![0.0; len];
                        let [up, down] =
                            (e.biases.clone()).unwrap_or_else(|| [zeros(ffn), zeros(d)]);
                        let mut gate_up = e.gate_bias.clone().unwrap_or_else(|| zeros(ffn));
                        gate_up.extend(up);
                        Ok([vector(&gate_up)?, vector(&down)?])
                    })
                    .collect::<Result<_, NnError>>()?,
            ),
        };
        Ok(Self {
            experts: (layer.experts.iter())
                .map(side_by_side)
                .collect::<Result<_, _>>()?,
            biases,
            shared: layer.shared.as_ref().map(side_by_side).transpose()?,
            shared_gate: (layer.shared_gate.as_deref())
                .map(|g| gpu.upload(g, g.len(), 1))
                .transpose()?,
        })
    }

    /// What it holds on the device.
    pub(super) fn all(&self) -> impl Iterator<Item = &GpuMatrix> {
        (self.experts.iter())
            .chain(self.biases.iter().flatten().flatten())
            .chain([&self.shared, &self.shared_gate].into_iter().flatten())
    }
}

/// A mixture's buffers: the router's scores (and Qwen2-MoE's shared
/// gate's), and `rows` rows grouped by expert, each group from a row a
/// binding may start at (a multiple of `align`): their inputs, gate and
/// up, SwiGLU's outputs, and each expert's outputs (the shared expert's
/// after the routed ones'). And the tables of the kernels that gather the
/// rows and sum the outputs, written each pass (no buffer made per layer).
#[derive(Debug)]
pub(super) struct MixtureWork {
    scores: Buffer,
    shared_gate: Buffer,
    align: usize,
    rows: usize,
    x: Buffer,
    gu: Buffer,
    g: Buffer,
    y: Buffer,
    gathered: Buffer,
    taps: Buffer,
}

/// A factor on the rows a mixture's groups are aligned to (tests: the
/// padding between groups, which llvmpipe's alignment never needs).
#[cfg(test)]
pub(in crate::llama) static PAD_GROUPS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(1);

impl MixtureWork {
    /// For passes of up to `tokens` tokens.
    pub(super) fn new(gpu: &Gpu, hp: &HParams, tokens: usize) -> Result<Self, NnError> {
        let b = |floats: usize| gpu.buffer(floats, "weft-nn decoder mixture");
        // Rows whose offsets are multiples of the alignment at every width
        // bound at one (powers of two, as wgpu's alignments are).
        let a = gpu.offset_alignment();
        let align = [hp.embd, hp.ffn]
            .map(|w| a / a.min(1 << w.trailing_zeros()))
            .into_iter()
            .max()
            .unwrap_or(1);
        // (Tests pad the groups where the device's alignment would not.)
        #[cfg(test)]
        let align = align * PAD_GROUPS.load(std::sync::atomic::Ordering::Relaxed);
        // Each expert's group (and the shared expert's) starts at most
        // `align - 1` rows after the last one ends.
        let rows = tokens * (hp.experts_used + 1) + (hp.experts + 1) * (align - 1);
        Ok(Self {
            scores: b(tokens * hp.experts)?,
            shared_gate: b(tokens)?,
            align,
            rows,
            x: b(rows * hp.embd)?,
            gu: b(rows * 2 * hp.ffn)?,
            g: b(rows * hp.ffn)?,
            y: b(rows * hp.embd)?,
            gathered: b(rows)?,
            // Each token's experts and the shared one: an index and a
            // weight each.
            taps: b(2 * tokens * (hp.experts_used + 1))?,
        })
    }
}

/// A mixture's feed-forward of the `n` rows of `h`, into `a.o`, as the
/// CPU's (`session::mixture`) runs it: the pass so far runs, to read the
/// router's scores back, and the rows are routed on the host as there
/// (`session::route`). Then, in a new program it returns, the rows are
/// gathered by expert, each expert runs over its group (gpt-oss's biases
/// added to its products, and its activation for SwiGLU), a shared expert
/// over all of them, and each row's outputs are summed by their weights
/// in the CPU's order: by expert, the shared one last. A pass makes a
/// round trip per mixture layer.
pub(super) fn mixture<'g>(
    (mut p, reuse): (Program<'g>, &mut Reuse),
    gpu: &'g Gpu,
    (layer, dm, hp): (&Layer, &DeviceMixture, &HParams),
    (h, n): (&Buffer, usize),
    a: &Work,
) -> Result<Program<'g>, NnError> {
    let DeviceMixture {
        experts,
        biases,
        shared,
        shared_gate,
    } = dm;
    let m = a.mixture.as_ref().expect("reserved");
    let router = layer.router.as_ref().expect("a mixture's router");
    p.product(h, n, on_gpu(router)?, &m.scores);
    let mut reads = vec![(&m.scores, n * hp.experts)];
    if let Some(gate) = shared_gate {
        p.product(h, n, gate, &m.shared_gate);
        reads.push((&m.shared_gate, n));
    }
    let mut read = p.run_reads_reusing(reuse, &reads)?;
    // (gpt-oss's router bias, added to the scores as the CPU adds it.)
    rows::add_bias(&mut read[0], layer.router_bias.as_deref());
    let routed = crate::llama::session::route(&read[0], hp, layer.expert_bias.as_deref());
    let mut p = gpu.program()?;
    // Each row's outputs as (row of `m.y`, weight), and the groups:
    // (expert, first row, rows).
    let mut taps: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    let (mut rows, mut groups) = (Vec::new(), Vec::new());
    for (e, list) in routed.iter().enumerate() {
        if list.is_empty() {
            continue;
        }
        let start = rows.len().next_multiple_of(m.align);
        rows.resize(start, 0);
        for &(row, weight) in list {
            taps[row].push((rows.len(), f64::from(weight)));
            rows.push(row);
        }
        groups.push((e, start, list.len()));
    }
    // (Rows of gate and up; of up alone where the experts have no gate,
    // Nemotron 3 Nano's.)
    let (d, gu) = (hp.embd, (1 + usize::from(hp.gated)) * hp.ffn);
    p.gather_through(h, &rows, (1, n, d), &m.x, Some(&m.gathered))?;
    for &(e, start, count) in &groups {
        p.product_at((&m.x, start), count, &experts[e], (&m.gu, start));
        if let Some(biases) = biases {
            p.add_bias_at((&m.gu, start * gu), &biases[e][0], count * gu);
        }
    }
    // (SwiGLU, gpt-oss's clamped one, or Nemotron 3 Nano's squared ReLU.)
    p.swiglu(&m.gu, (rows.len(), hp.ffn, hp.act, hp.gated), &m.g);
    for &(e, start, count) in &groups {
        let down = on_gpu(&layer.experts[e].down)?;
        p.product_at((&m.g, start), count, down, (&m.y, start));
        if let Some(biases) = biases {
            p.add_bias_at((&m.y, start * d), &biases[e][1], count * d);
        }
    }
    let mut used = rows.len();
    if let (Some(expert), Some(gate_up)) = (&layer.shared, shared) {
        let start = used.next_multiple_of(m.align);
        p.product(h, n, gate_up, &a.gu);
        p.swiglu(&a.gu, (n, hp.shared_ffn, hp.act, hp.gated), &a.g);
        p.product_at((&a.g, 0), n, on_gpu(&expert.down)?, (&m.y, start));
        for (row, taps) in taps.iter_mut().enumerate() {
            // (Qwen2-MoE's gate: the sigmoid of the row's score.)
            let gate = read.get(1).map_or(1.0, |g| 1.0 / (1.0 + (-g[row]).exp()));
            taps.push((start + row, f64::from(gate)));
        }
        used = start + n;
    }
    debug_assert!(used <= m.rows);
    p.resample_through(&m.y, (1, used, d), &taps, &a.o, Some(&m.taps))?;
    Ok(p)
}
