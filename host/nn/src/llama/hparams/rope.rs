//! The rotary embedding's angles and the attention temperature, from a
//! decoder's shape.

use super::HParams;

impl HParams {
    /// Whether sliding-window layers rotate by angles of their own (a
    /// base or scale of their own, or OLMo 3's plain rotation beside YaRN
    /// or an attention factor): a second table of angles.
    pub fn swa_angles(&self) -> bool {
        self.swa.iter().any(|&s| s)
            && ((self.rope_base_swa, self.rope_freq_scale_swa)
                != (self.rope_base, self.rope_freq_scale)
                || (self.swa_plain && (self.yarn.is_some() || self.rope_mscale != 1.0)))
    }

    /// What the query at `pos` is multiplied by: Mistral 3's attention
    /// temperature, computed as llama.cpp's `llm_graph_input_attn_temp`
    /// does (1 below the first step, and for other architectures).
    pub fn attn_temperature(&self, pos: usize) -> f32 {
        match self.attn_temp {
            Some((scale, every)) => {
                ((((pos / every) as f64) + 1.0).ln() * f64::from(scale) + 1.0) as f32
            }
            None => 1.0,
        }
    }

    /// `(cos, sin)` of each rotated pair's angle at `pos`, appended to
    /// `out`, computed as ggml's rope cache does (`freqs`: the file's
    /// `rope_freqs.weight`, which divides each pair's angle).
    /// `swa`: the angles of the sliding-window layers
    /// ([`HParams::swa_angles`]).
    pub(crate) fn rope_angles(
        &self,
        freqs: Option<&[f32]>,
        pos: usize,
        swa: bool,
        out: &mut Vec<f32>,
    ) {
        let (base, scale) = match swa {
            true => (self.rope_base_swa, self.rope_freq_scale_swa),
            false => (self.rope_base, self.rope_freq_scale),
        };
        let theta_scale = base.powf(-2.0 / self.rope_dims as f32);
        let mut theta = pos as f32;
        // (ggml's `rope_yarn`: the ramp's pairs, and the magnitude.)
        // OLMo 3's sliding-window layers rotate plainly: no YaRN there.
        let plain = swa && self.swa_plain;
        let yarn = self.yarn.as_ref().filter(|y| !plain && y.ext_factor != 0.0);
        let corr = yarn.map(|y| y.corr_dims(self.rope_dims, base));
        let mscale = match plain {
            true => 1.0,
            false => self.rope_mscale * yarn.map_or(1.0, |_| 1.0 + 0.1 * (1.0 / scale).ln()),
        };
        for i in 0..self.rope_dims / 2 {
            let factor = freqs.map_or(1.0, |f| f[i]);
            let extrap = theta / factor;
            let mut angle = extrap * scale;
            if let (Some(y), Some((low, high))) = (yarn, corr) {
                let ramp = 1.0 - ((i as f32 - low) / (high - low).max(0.001)).clamp(0.0, 1.0);
                let mix = ramp * y.ext_factor;
                angle = angle * (1.0 - mix) + extrap * mix;
            }
            let (sin, cos) = angle.sin_cos();
            out.extend([cos * mscale, sin * mscale]);
            theta *= theta_scale;
        }
    }
}
