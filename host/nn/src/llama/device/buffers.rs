//! A session's buffers on the device: its KV cache (and LFM2's
//! convolution state, Mamba-2's convolution and scan states), grown as its
//! positions need, and the activations of a pass.

use super::mixture::MixtureWork;
use super::{LatentWork, OnDevice, Work};
use crate::NnError;
use crate::gpu::Buffer;
use crate::llama::HParams;

impl OnDevice {
    /// The capacity a cache grows to for `positions`.
    pub(super) fn capacity_for(&self, hp: &HParams, positions: usize) -> usize {
        positions
            .next_power_of_two()
            .max(self.first_capacity)
            .min(hp.context.max(positions))
    }

    /// Room in the cache for `positions`, and attention scores for
    /// `tokens` new ones.
    pub(super) fn reserve(
        &mut self,
        hp: &HParams,
        positions: usize,
        tokens: usize,
    ) -> Result<(), NnError> {
        let gpu = &self.gpu;
        // (Zeroed, as a session starts.)
        let state = |floats: Option<usize>, label| -> Result<Vec<Option<Buffer>>, NnError> {
            (0..hp.layers)
                .map(|l| match (hp.convolves(l) || hp.scans(l), floats) {
                    (true, Some(floats)) => gpu.buffer(floats, label).map(Some),
                    _ => Ok(None),
                })
                .collect()
        };
        if self.conv.is_empty() {
            let conv = match (&hp.short_conv, &hp.ssm) {
                (Some(c), _) => Some((c.taps - 1) * hp.embd),
                (_, Some(m)) => Some((m.taps - 1) * m.conv_dim()),
                _ => None,
            };
            let scan = hp.ssm.as_ref().map(|m| m.inner * m.state);
            self.conv = state(conv, "weft-nn convolution state")?;
            self.ssm = state(scan, "weft-nn scan state")?;
        }
        if positions > self.capacity {
            let capacity = self.capacity_for(hp, positions);
            let grow = |old: &[Buffer], label| -> Result<Vec<Buffer>, NnError> {
                (0..hp.layers)
                    .map(|l| {
                        // (A layer that convolves or scans keeps no keys: a
                        // float.)
                        let kvd = if hp.attends(l) { hp.kv_dim() } else { 0 };
                        let b = gpu.buffer((capacity * kvd).max(1), label)?;
                        if let (Some(o), true) = (old.get(l), kvd > 0) {
                            gpu.copy(o, &b, self.capacity * kvd)?;
                        }
                        Ok(b)
                    })
                    .collect()
            };
            // Both grown before either is kept: a failure leaves the
            // cache as it was.
            let k = grow(&self.k, "weft-nn kv cache (k)")?;
            let v = grow(&self.v, "weft-nn kv cache (v)")?;
            (self.k, self.v, self.capacity) = (k, v, capacity);
        }
        // This pass's scores over the whole cache: regrown with the cache,
        // and shrunk once passes get far smaller (after a long prompt).
        let need = tokens * hp.heads * self.capacity;
        let have = self.scores.as_ref().map_or(0, |(_, floats)| *floats);
        if need > have || need * 4 < have {
            self.scores = None;
            self.scores = Some((gpu.buffer(need, "weft-nn attention scores")?, need));
        }
        Ok(())
    }

    /// Activation buffers for a pass of `tokens` rows giving `outputs`
    /// sessions' logits.
    pub(super) fn reserve_work(
        &mut self,
        hp: &HParams,
        tokens: usize,
        outputs: usize,
    ) -> Result<(), NnError> {
        let gpu = &self.gpu;
        let kvd = hp.kv_dim();
        if self
            .work
            .as_ref()
            .is_none_or(|w| w.tokens < tokens || w.outputs < outputs)
        {
            // Never fewer than before: a prompt, then one at a time.
            let (n, outputs) = self.work.take().map_or((tokens, outputs), |w| {
                (w.tokens.max(tokens), w.outputs.max(outputs))
            });
            let b = |floats: usize| gpu.buffer(floats, "weft-nn decoder activations");
            let (d, qd) = (hp.embd, hp.q_dim());
            // (A shared expert runs in the dense layers' buffers.)
            let ffn = hp.dense_ffn.max(hp.shared_ffn);
            self.work = Some(Work {
                tokens: n,
                outputs,
                x: b(n * d)?,
                h: b(n * d)?,
                // (LFM2's convolution layers: `in_proj`'s rows of 3 d, and
                // their outputs, `d`; Mamba-2's: `ssm_in`'s, and `inner`.)
                qkv: b(n
                    * (qd + 2 * kvd)
                        .max(hp.short_conv.as_ref().map_or(0, |_| 3 * d))
                        .max(hp.ssm.as_ref().map_or(0, |m| m.in_dim())))?,
                att: b(n * qd.max(d).max(hp.ssm.as_ref().map_or(0, |m| m.inner)))?,
                o: b(n * d)?,
                gu: b(n * 2 * ffn)?,
                g: b(n * ffn)?,
                table: b(n * hp.rope_dims)?,
                table_swa: hp.swa_angles().then(|| b(n * hp.rope_dims)).transpose()?,
                post: hp.post_norms.then(|| b(n * d)).transpose()?,
                logits: b(outputs * hp.vocab)?,
                mixture: match hp.experts {
                    0 => None,
                    _ => Some(MixtureWork::new(gpu, hp, n)?),
                },
                xbc: hp.ssm.as_ref().map(|m| b(n * m.conv_dim())).transpose()?,
                latent: LatentWork::new(gpu, hp, n)?,
                selective: super::SelectiveWork::new(gpu, hp, n)?,
            });
        }
        Ok(())
    }
}
