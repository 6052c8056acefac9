//! A decoder's shape from its GGUF metadata, and the check that a file is
//! a decoder weft-nn runs (what an upload checks, without reading weights).

use crate::gpu::{FfnAct, Xielu};

mod archs;
mod check;
mod conv;
mod families;
mod mla;
mod read;
mod rope;
mod ssm;
mod xielu;

pub use archs::ARCHITECTURES;
pub(crate) use check::check;
pub(crate) use conv::ShortConv;
pub(crate) use families::Yarn;
pub(crate) use mla::Mla;
pub(crate) use ssm::Mamba2;

/// A LongRoPE file's (Phi-3 128k, Phi-3.5) rotary factors for its original
/// window, which weft-nn runs, and for the extended one, which it does not.
pub(crate) const LONGROPE_SHORT: &str = "rope_factors_short.weight";
const LONGROPE_LONG: &str = "rope_factors_long.weight";

/// A decoder's shape, from the GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HParams {
    pub vocab: usize,
    pub embd: usize,
    /// Width of the feed-forward (of each expert's, in a mixture).
    pub ffn: usize,
    /// A mixture of experts' (Mixtral's, Qwen2-MoE's, Qwen3-MoE's, Granite
    /// MoE's, ERNIE 4.5 MoE's): experts per layer, and how many of them a
    /// token is routed to; 0 for a dense model.
    pub experts: usize,
    pub experts_used: usize,
    /// Whether a token's routed experts are weighted by their
    /// probabilities renormalised to sum to 1 (llama.cpp's `norm_w`), or
    /// (Qwen2-MoE) as they are.
    pub experts_renormalised: bool,
    /// What the picked experts' weights are multiplied by (after any
    /// renormalisation): Nemotron 3 Nano's, GLM-4.5's and DeepSeek-V2's
    /// `expert_weights_scale`; 1 elsewhere.
    pub experts_scale: f32,
    /// LFM2-MoE's, Nemotron 3 Nano's, GLM-4.5's and (as the file says)
    /// DeepSeek-V3's: a token's experts are picked and weighted by the
    /// sigmoid of their router scores
    /// (llama.cpp's `expert_gating_func` 2), not their softmax.
    pub experts_sigmoid: bool,
    /// ERNIE 4.5 MoE's: its first `dense_lead` layers are dense, the
    /// others mixtures (0 elsewhere).
    pub dense_lead: usize,
    /// The width of a mixture's dense layers (ERNIE 4.5 MoE's
    /// `feed_forward_length`); `ffn` elsewhere.
    pub dense_ffn: usize,
    /// ERNIE 4.5 MoE's, LFM2-MoE's, Nemotron 3 Nano's, GLM-4.5's and
    /// DeepSeek-V2's: a layer's router has a bias (`exp_probs_b.bias`,
    /// optional in ERNIE's and DeepSeek-V2's)
    /// added to its probabilities to pick the experts.
    pub expert_bias: bool,
    /// Qwen2-MoE's and Granite MoE Shared's: the width of the expert every
    /// token goes through beside its routed ones
    /// (`expert_shared_feed_forward_length`); 0 for none.
    pub shared_ffn: usize,
    /// gpt-oss's: each head's softmax has a learned logit of its own in
    /// its denominator (`attn_sinks`), a mixture's router and experts have
    /// biases.
    pub gpt_oss: bool,
    /// gpt-oss's and GLM-4.5's: the feed-forward's norm is named
    /// `post_attention_norm`.
    pub ffn_norm_post_attention: bool,
    /// GLM-4.5's multi-token prediction blocks (`nextn_predict_layers`),
    /// after the layers: read by the check, not run (as llama.cpp's
    /// forward pass does not).
    pub mtp_blocks: usize,
    /// Qwen2-MoE's: the shared expert's output is gated per token, by the
    /// sigmoid of `ffn_gate_inp_shexp`'s product with its input.
    pub shared_gate: bool,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// Width of a query, key or value head (Qwen3's `heads × head_dim`
    /// is wider than `embd`).
    pub head_dim: usize,
    pub rope_dims: usize,
    pub rope_base: f32,
    /// Multiplies every rotary angle: `1 / rope.scaling.factor` (or the
    /// older `rope.scale_linear`), 1 without one or under scaling `none`.
    pub rope_freq_scale: f32,
    /// Multiplies each rotation's cosine and sine (so a rotated query-key
    /// product by its square): the file's `rope.scaling.attn_factor`
    /// (LongRoPE's), under YaRN times YaRN's attention factor, as
    /// llama.cpp applies them; 1 without either.
    pub rope_mscale: f32,
    /// OLMo 3's sliding-window layers rotate plainly (no scale, no YaRN
    /// ramp, no attention factor), as llama.cpp's OLMo graph runs them.
    pub swa_plain: bool,
    /// YaRN's interpolation (`rope.scaling.type` `yarn`): the angles of
    /// the low-frequency pairs scaled, the high ones not, a ramp between.
    pub yarn: Option<Yarn>,
    /// Rotary pairs are `(i, i + dims/2)` (ggml's NeoX mode: Qwen), not
    /// adjacent values (Llama, whose GGUF weights are permuted for it).
    pub rope_neox: bool,
    /// SmolLM3's: every `no_rope_every`th layer has no rotary embedding
    /// (its queries and keys carry no position); 0 for none, 1 for no
    /// layer rotating (Granite's `rope.scaling.finetuned` false).
    pub no_rope_every: usize,
    /// EXAONE 4's with 64 layers (the one llama.cpp gives sliding windows):
    /// only the sliding-window layers rotate; its global layers have no
    /// rotary embedding.
    pub rope_swa_only: bool,
    /// Whether a LayerNorm adds a bias (`*_norm.bias`): all but Command
    /// R's, whose norms have a weight alone (a zero bias here), and OLMo
    /// 1's.
    pub norm_bias: bool,
    /// Whether the norms have weights: all but OLMo 1's LayerNorms, which
    /// have neither weight nor bias (ones and zeros here).
    pub norm_weights: bool,
    /// The norms' epsilon: RMSNorm's (`attention.layer_norm_rms_epsilon`),
    /// or with `layer_norm` LayerNorm's (`attention.layer_norm_epsilon`).
    pub norm_eps: f32,
    /// StarCoder 2's, StableLM's, Phi-2's, GPT-2's, StarCoder's,
    /// GPT-NeoX's, Command R's, Falcon's, Nemotron's and OLMo 1's norms:
    /// LayerNorm (the row less its mean, over its standard deviation, times
    /// the weight, plus a bias), not RMSNorm.
    pub layer_norm: bool,
    /// Phi-2's, StableLM 2 12B's, Command R's, Falcon's and (most)
    /// GPT-NeoX's blocks: the
    /// feed-forward reads the block's input, not the stream after the
    /// attention (through its `ffn_norm`, GPT-NeoX's, else the attention's
    /// norm), and both outputs are added to the stream.
    pub parallel: bool,
    /// The window: the file's `context_length`, or for LongRoPE its
    /// `rope.scaling.original_context_length` (the short factors' window:
    /// llama.cpp runs those for a context no longer, HF transformers for
    /// sequences no longer).
    pub context: usize,
    /// Granite's and MiniCPM's multipliers, 1 elsewhere: of the token
    /// embeddings, of each block's attention and feed-forward output
    /// before its residual add, and of the logits (their `1 /
    /// logit_scale`; Command R's `logit_scale` itself).
    pub embd_scale: f32,
    pub residual_scale: f32,
    pub logit_scale: f32,
    /// Multiplies attention scores: `1/√head_dim` unless the file says.
    pub attn_scale: f32,
    /// Mistral 3's attention temperature (Llama 4's), `(scale, every)`: a
    /// query at `pos` is multiplied by `1 + scale · ln(1 + ⌊pos / every⌋)`
    /// ([`HParams::attn_temperature`]); `None` for none.
    pub attn_temp: Option<(f32, usize)>,
    /// OLMo 1's bound on the Q, K and V products' values
    /// (`attention.clamp_kqv`), each clamped to ±it before the rotation;
    /// 0 for none.
    pub clamp_kqv: f32,
    /// Phi-3's, GPT-2's, StarCoder's, GPT-NeoX's and old Phi-2 files'
    /// layout: Q, K and V in one `attn_qkv` matrix.
    pub fused_qkv: bool,
    /// Phi-3's and GLM-4's: gate and up in one `ffn_up` of twice the rows
    /// (gate first).
    pub fused_gate_up: bool,
    /// The feed-forward's activation: SiLU of the gate (SwiGLU), Gemma's
    /// GELU (tanh form) of the gate, or without a gate, Arcee's squared
    /// ReLU of the up product and StarCoder 2's GELU of it.
    pub act: FfnAct,
    /// Apertus's xIELU constants, a set per layer ([`HParams::act_of`]);
    /// empty elsewhere.
    pub xielu: Vec<Xielu>,
    /// Whether a feed-forward has a gate: all but Arcee's, Nemotron's,
    /// Nemotron-H's (its experts' and shared expert's too) and those with
    /// `ffn_biases`, whose activation is of the up product alone.
    pub gated: bool,
    /// StarCoder 2's, Phi-2's, GPT-2's, StarCoder's and GPT-NeoX's biases of
    /// the feed-forward's up and down products (and of the attention's
    /// output, required of them).
    pub ffn_biases: bool,
    /// Phi-2's bias of the logits (`output.bias`).
    pub output_bias: bool,
    /// GPT-2's and StarCoder's learned position embeddings
    /// (`position_embd`, a row per position of the window, added to the
    /// token's), with no rotary embedding.
    pub positions: bool,
    /// Gemma 2 and 3, OLMo 2, EXAONE 4, GLM-4: each block's attention and
    /// feed-forward outputs are normalised (`post_attention_norm`,
    /// `post_ffw_norm`) before their residual adds.
    pub post_norms: bool,
    /// Whether each block's input is normalised first (`attn_norm`,
    /// `ffn_norm`): all but OLMo 2 and EXAONE 4, whose blocks read the
    /// residual stream as it is.
    pub pre_norms: bool,
    /// OLMo 2's Q and K norms: over all heads' queries (keys) of a token at
    /// once, not head by head.
    pub qk_norms_whole: bool,
    /// Hunyuan's Q and K norms: after the rotary embedding, not before.
    pub qk_norms_after_rope: bool,
    /// Gemma 2's soft caps, `cap · tanh(x / cap)`, of the attention scores
    /// and of the logits; 0 for none.
    pub attn_softcap: f32,
    pub final_softcap: f32,
    /// Sliding-window attention (Gemma 2 and 3, OLMo 3, EXAONE 4 32B): in
    /// the layers `swa` marks, a query sees the last `window` positions
    /// (itself included) only.
    pub window: usize,
    pub swa: Vec<bool>,
    /// The rotary base and angle scale of the sliding-window layers (Gemma
    /// 3's local layers: 10000 and 1, while its global ones run the file's
    /// base and scaling).
    pub rope_base_swa: f32,
    pub rope_freq_scale_swa: f32,
    /// LFM2's short convolutions, in the layers that do not attend.
    pub short_conv: Option<ShortConv>,
    /// Granite 4.0-H's and Nemotron-H's Mamba-2 state spaces, in the
    /// layers that do not attend; pure Mamba-2's and Mamba-1's, in every
    /// layer.
    pub ssm: Option<Mamba2>,
    /// Nemotron-H's: per layer, the file's blocks of its mixer and its
    /// feed-forward ([`HParams::blocks_of`]); empty elsewhere.
    pub blocks: ssm::Blocks,
    /// DeepSeek-V2's (and MiniCPM3's) latent attention ([`Mla`]): its heads' keys
    /// (`head_dim` wide, as many as the queries) and values decompressed
    /// from a latent.
    pub mla: Option<Mla>,
}

impl HParams {
    /// The widths of the Q and K norms' weights: a head's, or (OLMo 2)
    /// all heads' of a token.
    pub fn qk_norm_widths(&self) -> (usize, usize) {
        match self.qk_norms_whole {
            true => (self.q_dim(), self.kv_dim()),
            false => (self.head_dim, self.head_dim),
        }
    }

    /// Whether layer `l`'s feed-forward is a mixture of experts.
    pub fn is_moe(&self, l: usize) -> bool {
        self.experts > 0 && l >= self.dense_lead
    }

    /// Whether layer `l` rotates its queries and keys.
    pub fn ropes(&self, l: usize) -> bool {
        if self.rope_swa_only {
            return self.is_swa(l);
        }
        self.no_rope_every == 0 || !(l + 1).is_multiple_of(self.no_rope_every)
    }

    /// Whether layer `l` attends over a sliding window.
    pub fn is_swa(&self, l: usize) -> bool {
        self.swa.get(l).copied().unwrap_or(false)
    }

    /// The window layer `l` attends over: `Some(positions)` for a
    /// sliding-window layer, `None` for one that sees every position.
    pub fn window_of(&self, l: usize) -> Option<usize> {
        self.is_swa(l).then_some(self.window)
    }

    /// Width of all heads' queries (and of the attention's output).
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Width of all heads' keys (and values).
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Width of all heads' values, the output product's input: the
    /// queries' but in latent attention ([`Mla`]), whose values are
    /// narrower than its keys.
    pub fn o_dim(&self) -> usize {
        match &self.mla {
            Some(m) => self.heads * m.value,
            None => self.q_dim(),
        }
    }
}
