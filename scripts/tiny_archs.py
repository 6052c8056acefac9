"""The tiny random decoders `models.py` writes, one per architecture weft-nn reads
besides SmolLM2's plain Llama, as data: what each adds (`ARCHS`), and the layouts,
chat templates and added tokens some of them carry. `models.py`'s `task_archs`
writes them; `reference.py --only archs` checks each against llama.cpp.

Appending keeps every earlier file byte for byte: each is seeded by its place.
"""

# Tiny random decoders, one per architecture weft-nn reads besides SmolLM2's plain
# Llama: what each adds, checked against llama.cpp (scripts/reference.py --only archs).
# name -> (architecture, tokenizer.ggml.pre, extra metadata, what the file exercises)
ARCHS = {
    "qwen2": ("qwen2", "qwen2", {}, "Q/K/V biases, NeoX rotary pairs, tied output"),
    "qwen3": ("qwen3", "qwen2", {"attention.key_length": 32, "attention.value_length": 32},
              "per-head Q/K RMSNorm, heads wider than the model, NeoX rotary pairs"),
    "granite": ("granite", "smollm", {"embedding_scale": 12.0, "residual_scale": 0.22,
                                      "logit_scale": 8.0, "attention.scale": 0.0078125},
                "embedding, residual, attention and logit multipliers, an attention output bias"),
    "llama3": ("llama", "llama-bpe", {"rope.scaling.type": "linear", "rope.scaling.factor": 4.0},
               "rope_freqs.weight, linear rope scaling (on the GPU too)"),
    "tinyllama": ("llama", None, {},
                  "a SentencePiece vocabulary (tokenizer.ggml.model llama: Llama 2, Mistral, "
                  "TinyLlama) and TinyLlama's Zephyr chat template"),
    "phi3": ("phi3", None, {},
             "fused Q/K/V and gate/up products, NeoX rotary pairs, a SentencePiece "
             "vocabulary with Phi-3's special tokens, no BOS, Phi-3's chat template"),
    # As convert_hf_to_gguf writes Phi-3 128k / Phi-3.5 files: a 4x window over
    # the original, attn_factor sqrt(1 + ln 4 / ln 256), both factor tensors.
    "phi3long": ("phi3", None, {"context_length": 1024,
                                "rope.scaling.original_context_length": 256,
                                "rope.scaling.attn_factor": 1.1180340},
                 "LongRoPE (Phi-3 128k, Phi-3.5): rope_factors_short/long.weight and an "
                 "attention factor, run in the original window (the short factors)"),
    "gemma": ("gemma", None, {"attention.key_length": 32, "attention.value_length": 32},
              "GELU feed-forward, embeddings scaled by the root of the width, heads wider "
              "than the model, NeoX pairs, tied output, Gemma's vocabulary and chat format"),
    # Small caps and window, so that both show in the logits.
    "gemma2": ("gemma2", None, {"attention.sliding_window": 8, "attn_logit_softcapping": 4.0,
                                "final_logit_softcapping": 6.0},
               "post-norms, soft caps of the scores and logits, a sliding window in every "
               "other layer"),
    "gemma3": ("gemma3", None, {"attention.key_length": 32, "attention.value_length": 32,
                                "attention.sliding_window": 8, "block_count": 6,
                                "rope.scaling.type": "linear", "rope.scaling.factor": 8.0},
               "per-head Q/K norms, post-norms, five sliding-window layers rotated at base "
               "10000 unscaled, then a global one at the file's base, linearly scaled"),
    "mixtral": ("llama", None, {"expert_count": 4, "expert_used_count": 2},
                "a mixture of 4 SwiGLU experts, 2 a token (Mixtral), a SentencePiece vocabulary "
                "and Mistral's [INST] format"),
    "qwen3moe": ("qwen3moe", "qwen2", {"attention.key_length": 32, "attention.value_length": 32,
                                       "expert_count": 8, "expert_used_count": 2,
                                       "expert_feed_forward_length": 32},
                 "a mixture of 8 narrow experts, 2 a token, per-head Q/K norms (Qwen3-MoE)"),
    "smollm3": ("smollm3", "smollm", {"block_count": 4},
                "no rotary embedding in every fourth layer (SmolLM3)"),
    # As DeepSeek-R1-0528-Qwen3-8B's file: YaRN over a 4x window (of 64 here,
    # so that the ramp between scaled and unscaled pairs shows).
    "qwen3yarn": ("qwen3", "qwen2", {"attention.key_length": 32, "attention.value_length": 32,
                                     "rope.scaling.type": "yarn", "rope.scaling.factor": 4.0,
                                     "rope.scaling.original_context_length": 64},
                  "YaRN rotary scaling (Qwen3 and its distils with a 4x window)"),
    # OLMo 3's layout (an olmo2 file with a window): OLMo 2's, three of four
    # layers sliding.
    "olmo3": ("olmo2", "dbrx", {"block_count": 4, "attention.sliding_window": 8},
              "no pre-norms, post-norms, Q/K norms over all heads, NeoX pairs, sliding "
              "windows in three layers of four (OLMo 2 and 3)"),
    # As OLMo 3's files: YaRN in the global layers, the sliding ones plain.
    "olmo3yarn": ("olmo2", "dbrx", {"block_count": 4, "attention.sliding_window": 8,
                                    "rope.scaling.type": "yarn", "rope.scaling.factor": 4.0,
                                    "rope.scaling.original_context_length": 64},
                  "OLMo 3 with YaRN: scaled global layers, plain sliding-window ones"),
    # As Phi-4-mini's file: a phi3 with GPT-4o's pre-tokenizer, rotary on
    # three quarters of each head (LongRoPE factors for those), the output
    # tied to the embeddings.
    "phi4mini": ("phi3", "gpt-4o", {"rope.dimension_count": 12, "context_length": 1024,
                                    "rope.scaling.original_context_length": 256,
                                    "rope.scaling.attn_factor": 1.1180340},
                 "GPT-4o's pre-tokenizer, partial rotary with LongRoPE, a tied output "
                 "(Phi-4-mini)"),
    "nemo": ("llama", "tekken", {},
             "Mistral's Tekken pre-tokenizer and [INST] control tokens, Mistral NeMo's chat "
             "format (v3-tekken: no spaces around the turns)"),
    "r1qwen": ("qwen2", "deepseek-r1-qwen", {},
               "DeepSeek-R1-Distill-Qwen's pre-tokenizer name, <｜User｜>/<｜Assistant｜> "
               "control tokens and chat format"),
    "granite3": ("granite", "refact", {"embedding_scale": 12.0, "residual_scale": 0.22,
                                       "logit_scale": 8.0, "attention.scale": 0.0078125},
                 "IBM Granite 3's pre-tokenizer name, <|start_of_role|>/<|end_of_role|> "
                 "control tokens and chat format"),
    "mistralv3": ("llama", None, {},
                  "a SentencePiece vocabulary with Mistral v0.3's [INST]/[/INST] control "
                  "tokens and its chat format (v3: no space before [/INST])"),
    # As Ministral 3's files: YaRN with the file's betas and mscale_all_dim,
    # and Llama 4's attention temperature, in steps of the original window
    # (small here, so that it shows within the prompt; the betas small
    # enough that they move YaRN's ramp, pairs 1 to 3 of 8, from its
    # defaults' 0 to 1).
    "ministral": ("mistral3", "tekken", {"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0,
                                         "rope.scaling.original_context_length": 8,
                                         "rope.scaling.yarn_beta_fast": 0.25,
                                         "rope.scaling.yarn_beta_slow": 0.05,
                                         "rope.scaling.yarn_log_multiplier": 1.0,
                                         "attention.temperature_scale": 0.5},
                  "Mistral 3: YaRN with the file's betas and log multiplier, the attention "
                  "temperature, Mistral Small 3's chat format (v7-tekken)"),
    # As Granite 3 MoE's files (granite-3.x-*-a*m), with Granite MoE
    # Shared's expert of its own width beside the routed ones.
    "granitemoe": ("granitemoe", "refact", {"embedding_scale": 12.0, "residual_scale": 0.22,
                                            "logit_scale": 8.0, "attention.scale": 0.0078125,
                                            "expert_count": 4, "expert_used_count": 2,
                                            "expert_shared_feed_forward_length": 48},
                   "Granite MoE: Granite's multipliers, 4 experts, 2 a token, and a shared "
                   "expert every token goes through (Granite MoE Shared)"),
    # Granite's switch for the rotary embedding off (`rope.scaling.finetuned`
    # false, which llama.cpp reads as "no rotation" for Granite alone), and
    # no `tokenizer.ggml.pre` (pre "": as files converted before llama.cpp
    # named pre-tokenizers, which it runs with its `default` regexes).
    "granitenope": ("granite", "", {"embedding_scale": 12.0, "residual_scale": 0.22,
                                          "logit_scale": 8.0, "rope.scaling.finetuned": False},
                    "Granite without a rotary embedding (rope.scaling.finetuned false), "
                    "its file without a pre-tokenizer name"),
    # As Qwen1.5-MoE-A2.7B's and Qwen2-57B-A14B's files: narrow experts, their
    # top two weighted as the softmax gave them (not renormalised), and a
    # wider shared expert gated per token.
    "qwen2moe": ("qwen2moe", "qwen2", {"expert_count": 4, "expert_used_count": 2,
                                       "expert_feed_forward_length": 32,
                                       "expert_shared_feed_forward_length": 80},
                 "Qwen2-MoE: Q/K/V biases, 4 narrow experts, 2 a token, unrenormalised "
                 "weights, a shared expert gated by a sigmoid"),
    # As ERNIE-4.5-0.3B's file: Llama's blocks and pairs, the output tied
    # (SmolLM2's vocabulary here: ERNIE's own is SentencePiece, as tinyllama's).
    "ernie": ("ernie4_5", "smollm", {}, "ERNIE 4.5 (dense): Llama's layout, a tied output"),
    # As EXAONE 3.5's files: NeoX pairs with Llama 3's rope frequencies, its
    # pre-tokenizer name, [|...|] control tokens and chat format.
    "exaone": ("exaone", "exaone", {},
               "EXAONE 3 and 3.5: NeoX pairs with rope_freqs.weight, EXAONE's pre-tokenizer "
               "name, control tokens and chat format"),
    # As EXAONE 4.0 32B's layout (llama.cpp gives sliding windows to a 64-layer
    # exaone4 alone; a small window here, so that it shows): OLMo 2's norms
    # after each block, per-head Q/K norms, global layers without rotation.
    "exaone4": ("exaone4", "exaone4", {"block_count": 64, "attention.sliding_window": 8},
                "EXAONE 4: no pre-norms, post-norms, per-head Q/K norms, three sliding-window "
                "layers of four rotating and the fourth, global, not"),
    # As ERNIE-4.5-21B-A3B's file: a dense first layer, then mixtures with a
    # shared expert, their experts picked by the router's probabilities plus a
    # bias (large enough here to change the pick) and weighted without it.
    "erniemoe": ("ernie4_5-moe", "smollm", {"block_count": 3, "expert_count": 4,
                                            "expert_used_count": 2,
                                            "expert_feed_forward_length": 32,
                                            "expert_shared_feed_forward_length": 64,
                                            "leading_dense_block_count": 1,
                                            "interleave_moe_layer_step": 1},
                 "ERNIE 4.5 MoE: a dense first layer, then 4 experts, 2 a token, picked with "
                 "the router's bias, and a shared expert"),
    # As GLM-4-0414's files: norms before and after each block, Q/K/V biases,
    # gate and up in one product, rotary on half of each head (pairs adjacent).
    "glm4": ("glm4", "glm4", {"rope.dimension_count": 8},
             "GLM-4: pre- and post-norms, Q/K/V biases, a fused gate/up product, partial "
             "rotary, GLM-4's pre-tokenizer name, control tokens and chat format"),
    # As MiniCPM's files: Llama's layout under Granite's multipliers (its
    # scale_emb, scale_depth / sqrt(layers) and hidden_size / dim_model_base),
    # the output tied.
    # (Values apart from MiniCPM's defaults at this width, 12, 1.4 / sqrt(2) and
    # 64 / 256, so that a key read wrong or not at all shows.)
    "minicpm": ("minicpm", "smollm", {"embedding_scale": 10.0, "residual_scale": 0.35,
                                      "logit_scale": 0.5},
                "MiniCPM: embedding, residual and logit multipliers, a tied output"),
    # As Arcee AFM-4.5B's file: a feed-forward without a gate (the up
    # product's ReLU squared), YaRN over a 4x window.
    "arcee": ("arcee", "smollm", {"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0,
                                  "rope.scaling.original_context_length": 64},
              "Arcee: a feed-forward of squared ReLU without a gate, YaRN"),
    # As InternLM2 and 2.5's files (their fused wqkv split by the converter):
    # Llama's layout and graph under another name, the output required.
    "internlm2": ("internlm2", "smollm", {}, "InternLM2: Llama's layout, its own name"),
    # As StarCoder2's files: LayerNorms with biases (their epsilon under its
    # own key), Q/K/V and output biases, a GELU feed-forward without a
    # gate, its products with biases, NeoX pairs. (An output head of its
    # own: tied, a LayerNorm'd stream this small greedily repeats a token.)
    "starcoder2": ("starcoder2", "starcoder", {"attention.layer_norm_epsilon": 1e-4},
                   "StarCoder 2: LayerNorm with biases, biases on every product, a GELU "
                   "feed-forward without a gate"),
    # As StableLM 2 1.6B's files: LayerNorms with biases, Q/K/V biases, a
    # quarter of each head rotated (NeoX pairs), SwiGLU, the output its own
    # (required), StableLM 2's pre-tokenizer name (Qwen2's regex).
    "stablelm": ("stablelm", "stablelm2", {"attention.layer_norm_epsilon": 1e-5,
                                           "rope.dimension_count": 4},
                 "StableLM 2: LayerNorm with biases, Q/K/V biases, partial rotary"),
    # As Phi-2's files converted from its first release: Q, K and V fused
    # with their bias, the attention and a GELU feed-forward without a gate
    # reading one LayerNorm in parallel, biases on every product and on the
    # logits, 40% of each head rotated (NeoX pairs).
    "phi2": ("phi2", "phi-2", {"attention.layer_norm_epsilon": 1e-5,
                               "rope.dimension_count": 6},
             "Phi-2: parallel attention and feed-forward, fused Q/K/V with a bias, "
             "biases on every product and the logits, partial rotary"),
    # As GPT-2's files: learned position embeddings and no rotation, StarCoder
    # 2's LayerNorms, biases and GELU feed-forward, Q/K/V fused with a bias,
    # the output tied; and StarCoder's (gpt_bigcode): the same with one
    # key/value head (multi-query attention) and an output of its own.
    "gpt2": ("gpt2", "gpt-2", {"attention.layer_norm_epsilon": 1e-5},
             "GPT-2: learned position embeddings, LayerNorm, fused Q/K/V with a bias, "
             "GELU, the output tied"),
    "starcoder": ("starcoder", "starcoder", {"attention.layer_norm_epsilon": 1e-5,
                                             "attention.head_count_kv": 1},
                  "StarCoder: GPT-2's blocks with one key/value head"),
    # As Pythia's files (GPT-NeoX): GPT-2's blocks rotating a quarter of each
    # head (NeoX pairs), the attention and the feed-forward each reading its
    # own norm of the block's input in parallel, the output its own.
    "gptneox": ("gptneox", "gpt-2", {"attention.layer_norm_epsilon": 1e-5,
                                     "rope.dimension_count": 4,
                                     "use_parallel_residual": True},
                "GPT-NeoX: parallel blocks with a norm each, partial rotary, fused Q/K/V "
                "with a bias"),
    # As OLMoE-1B-7B's file: norms before each block, OLMo 2's Q/K norms over
    # all heads (its keys as wide: no grouped heads), NeoX pairs, a mixture
    # weighted as the softmax gave it.
    "olmoe": ("olmoe", "olmo", {"attention.head_count_kv": 4, "expert_count": 4,
                                "expert_used_count": 2},
              "OLMoE: Q/K norms over all heads, 4 experts, 2 a token, weighted as the "
              "softmax gave them"),
    # As DeepSeek-MoE-16B's file: a dense first layer, then narrow experts
    # weighted as the softmax gave them, beside two shared ones run as one.
    # (Its pre-tokenizer is DeepSeek Coder's, whose files are `llama` ones:
    # deepseek2 below has DeepSeek-MoE's own, `deepseek-llm`.)
    "deepseek": ("deepseek", "deepseek-coder", {
        "block_count": 3, "leading_dense_block_count": 1, "expert_count": 4,
        "expert_used_count": 2, "expert_feed_forward_length": 32, "expert_shared_count": 2,
        "expert_weights_scale": 1.0},
                 "DeepSeek-MoE: a dense first layer, 4 narrow experts, 2 a token, "
                 "unrenormalised, 2 shared experts"),
    # As Command R's (and Aya's) files: one LayerNorm without a bias, read
    # by the attention and the feed-forward in parallel, adjacent rotary
    # pairs, the logits scaled, the output always the embeddings.
    "commandr": ("command-r", "command-r", {"attention.layer_norm_epsilon": 1e-5,
                                            "logit_scale": 0.25},
                 "Command R: parallel blocks under a LayerNorm without a bias, scaled "
                 "logits, a tied output"),
    # As Command R7B's files: Command R's blocks, three sliding-window layers
    # of four rotating and the fourth, global, not.
    "cohere2": ("cohere2", "command-r", {"attention.layer_norm_epsilon": 1e-5,
                                         "logit_scale": 0.25, "block_count": 4,
                                         "attention.sliding_window": 8},
                "Command R7B: Command R's blocks, sliding windows in three layers of four, "
                "the global one unrotated"),
    # As Falcon-7B's files: one LayerNorm read in parallel by the attention
    # and a GELU feed-forward without a gate or biases, Q/K/V fused with one
    # key/value head, NeoX pairs, the output tied.
    "falcon": ("falcon", "falcon", {"attention.layer_norm_epsilon": 1e-5,
                                    "attention.head_count_kv": 1},
               "Falcon 7B: parallel blocks under one LayerNorm, fused Q/K/V, one key/value "
               "head, a tied output"),
    # As Falcon-40B's files: the attention's own norm (attn_norm_2), the
    # feed-forward reading attn_norm, and an output of its own.
    "falcon40b": ("falcon", "smollm", {"attention.layer_norm_epsilon": 1e-5},
                  "Falcon 40B: the attention and the feed-forward reading norms of their own"),
    # As Nemotron-Mini-4B's and Minitron's files: LayerNorms with biases, a
    # squared-ReLU feed-forward without a gate, half of each head rotated
    # (NeoX pairs), the output its own; an up bias alone (llama.cpp reads
    # each bias as optional).
    "nemotron": ("nemotron", "smollm", {"attention.layer_norm_epsilon": 1e-5,
                                        "rope.dimension_count": 8},
                 "Nemotron: LayerNorm with biases, squared ReLU without a gate, partial "
                 "rotary, an up bias alone"),
    # As gpt-oss-20b's file: biases on Q/K/V/O, a sink logit per head, every
    # other layer (the first too) over a sliding window, YaRN, a router with
    # a bias picking 2 of 4 experts weighted by a softmax over their logits,
    # the experts in MXFP4 with biases under the clamped SwiGLU (gate and up
    # large enough that the clamps at ±7 act), GPT-4o's pre-tokenizer.
    "gptoss": ("gpt-oss", "gpt-4o", {"attention.key_length": 16,
                                     "attention.value_length": 16, "block_count": 4,
                                     "expert_count": 4, "expert_used_count": 2,
                                     "expert_feed_forward_length": 32,
                                     "attention.sliding_window": 8,
                                     "rope.scaling.type": "yarn", "rope.scaling.factor": 4.0,
                                     "rope.scaling.original_context_length": 64},
               "gpt-oss: attention sinks, biases everywhere, sliding windows in every other "
               "layer, YaRN, biased routing, MXFP4 experts with the clamped SwiGLU"),
    # A plain Llama quantised as the i-quant files most published GGUFs
    # offer: IQ4_NL products, and IQ4_XS for the down one (its rows of 256).
    "iq4": ("llama", "smollm", {"feed_forward_length": 256},
            "a Llama in IQ4_NL, its down products in IQ4_XS"),
    # As OLMo-7B-0424's file: LayerNorms without weight or bias, adjacent
    # rotary pairs, Q/K/V clamped (at a bound the products pass often).
    "olmo1": ("olmo", "olmo", {"attention.layer_norm_epsilon": 1e-5,
                               "attention.clamp_kqv": 1.5},
              "OLMo 1: LayerNorms without weights, Q/K/V clamped"),
    # The lattice i-quants (IQ1_*/IQ2_*/IQ3_*, as IQ2_M or IQ3_XS files
    # hold): each layer's down product (rows of 256) a different one.
    "iq2": ("llama", "smollm", {"feed_forward_length": 256, "block_count": 7},
            "a Llama whose down products are, layer by layer, IQ2_XXS, IQ2_XS, IQ2_S, "
            "IQ3_XXS, IQ3_S, IQ1_S and IQ1_M"),
    # LFM2's hybrid: gated short convolutions (3 taps) in the layers whose KV
    # head count is 0, attention with per-head Q/K norms in the others; its
    # final norm named `token_embd_norm`, its output tied.
    "lfm2": ("lfm2", "lfm2", {"block_count": 5, "shortconv.l_cache": 3},
             "LFM2: short-convolution layers (conv, attn, conv, conv, attn), per-head "
             "Q/K norms, NeoX rotary pairs"),
    # LFM2-MoE (LFM2-8B-A1B): the same hybrid, a dense first layer, then
    # mixtures routed by the sigmoid of the router's scores, picked with its
    # bias, weighted renormalised.
    "lfm2moe": ("lfm2moe", "lfm2", {"block_count": 4, "shortconv.l_cache": 3,
                                    "expert_count": 4, "expert_used_count": 2,
                                    "expert_feed_forward_length": 48,
                                    "leading_dense_block_count": 1, "expert_gating_func": 2},
                "LFM2-MoE: LFM2's convolutions (conv, attn, conv, attn), a dense first "
                "layer, then sigmoid-routed experts with a router bias"),
    # Qwen2-VL / Qwen2.5-VL's, Qwen3-VL's and Qwen3-VL-MoE's language models:
    # their multimodal rotary sections, which text alone rotates as one.
    "qwen2vl": ("qwen2vl", "qwen2", {"rope.dimension_sections": [4, 2, 2, 0]},
                "Qwen2.5-VL's language model: Qwen2's, M-RoPE sections (text)"),
    "qwen3vl": ("qwen3vl", "qwen2", {"attention.key_length": 32, "attention.value_length": 32,
                                     "rope.dimension_sections": [6, 5, 5, 0],
                                     "n_deepstack_layers": 2},
                "Qwen3-VL's language model: Qwen3's, interleaved M-RoPE sections, deepstack "
                "layers (images only)"),
    "qwen3vlmoe": ("qwen3vlmoe", "qwen2", {"attention.key_length": 32,
                                           "attention.value_length": 32,
                                           "expert_count": 8, "expert_used_count": 2,
                                           "expert_feed_forward_length": 32,
                                           "rope.dimension_sections": [6, 5, 5, 0],
                                           "n_deepstack_layers": 2},
                   "Qwen3-VL-MoE's language model: Qwen3-MoE's, M-RoPE sections"),
    # Apertus: per-head Q/K norms, NeoX pairs, and a feed-forward without a
    # gate under xIELU, whose constants (APERTUS_XIELU) differ by layer.
    "apertus": ("apertus", "llama-bpe", {},
                "Apertus: xIELU of the up product alone, its constants per layer, per-head "
                "Q/K norms"),
    # Granite 4.0-H (granite-4.0-h-micro, -350m, -1b): Mamba-2 layers where
    # the KV head count is 0 (MAMBA_ATTENTION), attention without a rotation
    # elsewhere, Granite's multipliers; B and C in two groups of heads.
    "granitehybrid": ("granitehybrid", "refact", {
        "block_count": 4, "embedding_scale": 12.0, "residual_scale": 0.22, "logit_scale": 8.0,
        "attention.scale": 0.0078125, "rope.scaling.finetuned": False,
        "ssm.conv_kernel": 4, "ssm.inner_size": 128, "ssm.state_size": 16,
        "ssm.time_step_rank": 8, "ssm.group_count": 2},
        "Granite 4.0-H: Mamba-2 layers (scan, scan, attn, scan), two groups of heads, "
        "no rotation, Granite's multipliers"),
    # Granite 4.0-H-Tiny's and -Small's: the same layers over Granite MoE
    # Shared's mixtures, rotating (rope.scaling.finetuned absent), one group.
    "granitehybridmoe": ("granitehybrid", "refact", {
        "block_count": 4, "embedding_scale": 12.0, "residual_scale": 0.22, "logit_scale": 8.0,
        "expert_count": 4, "expert_used_count": 2, "expert_shared_feed_forward_length": 48,
        "ssm.conv_kernel": 4, "ssm.inner_size": 128, "ssm.state_size": 16,
        "ssm.time_step_rank": 4, "ssm.group_count": 1},
        "Granite 4.0-H MoE: Mamba-2 layers (scan, attn, scan, scan), 4 experts, 2 a "
        "token, a shared expert, rotating attention"),
    # Nemotron-H (Nemotron-H 8B, Nemotron Nano 9B/12B v2): blocks of one kind
    # each, NEMOTRON_BLOCKS: Mamba-2 (M), attention without a rotation (*) and
    # squared-ReLU feed-forwards without a gate (-), each under its own norm.
    "nemotronh": ("nemotron_h", "llama-bpe", {
        "block_count": 8, "ssm.conv_kernel": 4, "ssm.inner_size": 128, "ssm.state_size": 16,
        "ssm.time_step_rank": 8, "ssm.group_count": 2},
        "Nemotron-H: Mamba-2, attention and feed-forward blocks (M-*M-MM-), two groups "
        "of heads, no rotation, squared-ReLU feed-forwards"),
    # Nemotron 3 Nano (30B-A3B): Nemotron-H's blocks, its feed-forwards mixtures
    # of squared-ReLU experts without a gate, picked by the sigmoid of the
    # router's scores plus its bias, weighted renormalised and scaled, beside
    # a shared expert.
    "nemotronhmoe": ("nemotron_h_moe", "llama-bpe", {
        "block_count": 7, "ssm.conv_kernel": 4, "ssm.inner_size": 128, "ssm.state_size": 16,
        "ssm.time_step_rank": 4, "ssm.group_count": 1, "expert_count": 4,
        "expert_used_count": 2, "expert_feed_forward_length": 32,
        "expert_shared_feed_forward_length": 48, "expert_weights_norm": True,
        "expert_weights_scale": 2.5},
        "Nemotron 3 Nano: Nemotron-H's blocks (M-*-MM-), sigmoid-routed squared-ReLU "
        "experts with a router bias, renormalised and scaled, a shared expert"),
    # GLM-4.5 / 4.5-Air / 4.6 / 4.7: Q/K/V biases, half of each head rotated in
    # NeoX pairs, a dense first layer, then sigmoid-routed experts with a router
    # bias, renormalised and scaled, beside a shared expert; the feed-forward's
    # norm named post_attention_norm; a last block for multi-token prediction.
    "glm4moe": ("glm4moe", "glm4", {
        "block_count": 4, "nextn_predict_layers": 1, "rope.dimension_count": 8,
        "expert_count": 4, "expert_used_count": 2, "expert_feed_forward_length": 32,
        "expert_shared_count": 1, "leading_dense_block_count": 1,
        "expert_weights_scale": 2.5, "expert_weights_norm": True, "expert_gating_func": 2},
        "GLM-4.5: Q/K/V biases, partial NeoX rotation, a dense first layer, sigmoid-routed "
        "experts with a router bias, renormalised and scaled, a shared expert, an MTP block"),
    # DeepSeek-V2-Lite (as older converters wrote it): multi-head latent
    # attention (mla() below), its queries one product (llama.cpp reads a 26-
    # or 27-layer file as a "lite" one), keys and values from the normed latent
    # in one product (attn_kv_b), values narrower than keys; a dense first
    # layer, then experts weighted as the softmax gave them beside two shared.
    "deepseek2": ("deepseek2", "deepseek-llm", {
        "block_count": 26, "attention.head_count_kv": 4, "attention.key_length": 24,
        "attention.value_length": 16, "rope.dimension_count": 8,
        "attention.kv_lora_rank": 32, "leading_dense_block_count": 1, "expert_count": 4,
        "expert_used_count": 2, "expert_feed_forward_length": 32, "expert_shared_count": 2,
        "expert_weights_scale": 1.0},
        "DeepSeek-V2-Lite: latent attention, queries in one product, attn_kv_b, a dense "
        "first layer, softmax-routed experts, 2 shared"),
    # DeepSeek-V3 / Kimi K2 / GLM-4.7-Flash (as llama.cpp's converter writes
    # them now): queries through a normed latent too, attn_kv_b split per head
    # (attn_k_b, attn_v_b; the K/V widths then the latent's, the heads' in the
    # *_mla keys), YaRN with its attention scale; sigmoid-routed experts with a
    # router bias, renormalised and scaled, beside a shared one.
    "deepseek3": ("deepseek2", "deepseek-v3", {
        "block_count": 3, "attention.head_count_kv": 1, "attention.key_length": 40,
        "attention.value_length": 32, "attention.key_length_mla": 24,
        "attention.value_length_mla": 16, "rope.dimension_count": 8,
        "attention.q_lora_rank": 48, "attention.kv_lora_rank": 32,
        "rope.scaling.type": "yarn", "rope.scaling.factor": 4.0,
        "rope.scaling.original_context_length": 64,
        "rope.scaling.yarn_log_multiplier": 0.0707, "leading_dense_block_count": 1,
        "expert_count": 4, "expert_used_count": 2, "expert_feed_forward_length": 32,
        "expert_shared_count": 1, "expert_weights_scale": 2.5, "expert_weights_norm": True,
        "expert_gating_func": 2},
        "DeepSeek-V3: latent attention, queries through a latent, attn_k_b/attn_v_b, YaRN, "
        "a dense first layer, sigmoid-routed experts with a router bias, a shared expert"),
    # Mamba-2 (130m to 2.7b) and Codestral Mamba: Mamba-2 layers alone (mamba()
    # below), each under its norm; no attention, no feed-forward, no rotation.
    "mamba2": ("mamba2", "gpt-2", {
        "block_count": 3, "ssm.conv_kernel": 4, "ssm.inner_size": 128, "ssm.state_size": 16,
        "ssm.time_step_rank": 8, "ssm.group_count": 2},
        "Mamba-2: Mamba-2 layers alone, two groups of heads"),
    # Mamba-1 (mamba-130m to 2.8b): each block under its norm a Mamba-1
    # layer (mamba1() below), x and z from one product, dt, B and C from x's
    # convolution, a dt and a decay per state for every channel.
    "mamba": ("mamba", "gpt-2", {
        "block_count": 3, "ssm.conv_kernel": 4, "ssm.inner_size": 128, "ssm.state_size": 16,
        "ssm.time_step_rank": 4},
        "Mamba-1: Mamba-1 layers alone"),
    # Falcon-Mamba 7B: Mamba-1 with dt, B and C RMS-normed (no weights).
    "falconmamba": ("mamba", "falcon", {
        "block_count": 3, "ssm.conv_kernel": 4, "ssm.inner_size": 128, "ssm.state_size": 16,
        "ssm.time_step_rank": 4, "ssm.dt_b_c_rms": True},
        "Falcon-Mamba: Mamba-1 layers with dt, B and C normed"),
    # Hunyuan-Dense (Hunyuan 0.5B-7B Instruct, Hunyuan-MT): Llama's blocks with
    # per-head Q/K RMSNorm after the rotation (Qwen3's come before it), NeoX
    # pairs, its own chat turns.
    "hunyuan": ("hunyuan-dense", "hunyuan-dense", {},
                "Hunyuan-Dense: per-head Q/K RMSNorm after the rotary embedding"),
    # MiniCPM3-4B: DeepSeek-V2's latent attention (queries through a latent,
    # attn_kv_b whole; no value width, the width over the heads as llama.cpp
    # reads it), NeoX pairs, LongRoPE factors without an original window,
    # MiniCPM's fixed multipliers (8 blocks: a residual scale of 1.4 / sqrt(8),
    # far from 1), a dense feed-forward.
    "minicpm3": ("minicpm3", "smollm", {
        "block_count": 8, "attention.head_count_kv": 4, "attention.key_length": 24,
        "rope.dimension_count": 8,
        "attention.q_lora_rank": 48, "attention.kv_lora_rank": 32},
        "MiniCPM3: latent attention, NeoX pairs, LongRoPE, MiniCPM's multipliers"),
}
# The Granite 4.0-H files' layers with attention (the others scan), as their
# head counts say.
MAMBA_ATTENTION = {"granitehybrid": (2,), "granitehybridmoe": (1,)}
# The Nemotron-H file's blocks: M Mamba-2, * attention, - feed-forward.
NEMOTRON_BLOCKS = {"nemotronh": "M-*M-MM-", "nemotronhmoe": "M-*-MM-"}
# Apertus's xIELU constants as its files hold them (before softplus), a value
# per layer of the tiny model: alpha_n, alpha_p, beta, eps.
APERTUS_XIELU = {"alpha_n": [0.2, 0.9], "alpha_p": [0.3, -0.4], "beta": [0.5, 0.3],
                 "eps": [-1e-6, -1e-6]}
# The LFM2 files' layers with attention (the others convolve), as their head
# counts say.
LFM2_ATTENTION = {"lfm2": (1, 4), "lfm2moe": (1, 3)}

# TinyLlama-1.1B-Chat's chat template (Zephyr's format), as its GGUF carries it.
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)


# Phi-3-mini-instruct's chat template, as its GGUF carries it.
PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
    "{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
# Gemma's chat template, as its GGUF carries it.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
# The SentencePiece files' tokenizers: (added tokens with their types, EOS,
# tokenizer.ggml.add_bos_token or None to leave llama.cpp's default, template,
# tokenizer.ggml.add_space_prefix or None).
SPM_TOKENIZERS = {
    "tinyllama": ([], "</s>", None, ZEPHYR_TEMPLATE, None),
    "phi3": ([("<|endoftext|>", 3), ("<|assistant|>", 4), ("<|system|>", 4), ("<|end|>", 4),
              ("<|user|>", 4)], "<|endoftext|>", False, PHI3_TEMPLATE, None),
    # Gemma's: <bos> and <eos> (renamed below), no space prefix.
    "gemma": ([("<start_of_turn>", 3), ("<end_of_turn>", 3)], "<eos>", True, GEMMA_TEMPLATE,
              False),
}
# Mistral-7B-Instruct's chat template (llama.cpp's `llama2` format).
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}"
    "{{ message['content'] + eos_token}}{% endif %}{% endfor %}"
)
SPM_TOKENIZERS["mixtral"] = ([], "</s>", None, MISTRAL_TEMPLATE, None)
# Mistral-7B-Instruct-v0.3's chat template (llama.cpp's `mistral-v3`), shortened
# to its turns and the tools marker llama.cpp tells it by.
MISTRAL_V3_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{%- if tools is not none and loop.last %}{{- '[AVAILABLE_TOOLS]' + tools|tojson }}"
    "{%- endif %}{{- '[INST] ' + message['content'] + '[/INST]' }}"
    "{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content']|trim + eos_token }}"
    "{%- endif %}{%- endfor %}"
)
SPM_TOKENIZERS["mistralv3"] = ([("[INST]", 3), ("[/INST]", 3), ("[AVAILABLE_TOOLS]", 3)], "</s>",
                               None, MISTRAL_V3_TEMPLATE, None)
SPM_TOKENIZERS["phi3long"] = SPM_TOKENIZERS["phi3"]
SPM_TOKENIZERS["gemma2"] = SPM_TOKENIZERS["gemma3"] = SPM_TOKENIZERS["gemma"]
# Mistral-Nemo-Instruct-2407's chat template (v3-tekken), shortened to its turns.
NEMO_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{{- '[INST]' + message['content'] + '[/INST]' }}{%- elif message['role'] == 'assistant' %}"
    "{{- message['content'] + eos_token }}{%- endif %}{%- endfor %}"
)
# DeepSeek-R1-Distill-Qwen's chat template, shortened to its turns.
R1_TEMPLATE = (
    "{{ bos_token }}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{{ '<｜User｜>' + message['content'] }}{%- elif message['role'] == 'assistant' %}"
    "{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}{%- endif %}"
    "{%- endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif %}"
)
# Mistral-Small-3's chat template (v7-tekken), shortened to its turns.
MISTRAL_V7_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{{- '[SYSTEM_PROMPT]' + message['content'] + '[/SYSTEM_PROMPT]' }}"
    "{%- elif message['role'] == 'user' %}{{- '[INST]' + message['content'] + '[/INST]' }}"
    "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}{%- endif %}"
    "{%- endfor %}"
)
# IBM Granite 3.x Instruct's chat template, shortened to its turns.
GRANITE_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] "
    "+ '<|end_of_text|>\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_of_role|>assistant<|end_of_role|>' }}{%- endif %}"
)
# Byte-level files with control tokens of their own after SmolLM2's: (tokens,
# EOS, chat template).
BPE_ADDED = {
    "nemo": (["</s>", "[INST]", "[/INST]"], "</s>", NEMO_TEMPLATE),
    "r1qwen": (["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"],
               "<｜end▁of▁sentence｜>", R1_TEMPLATE),
    "granite3": (["<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>"], "<|end_of_text|>",
                 GRANITE_TEMPLATE),
    "ministral": (["</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"], "</s>",
                  MISTRAL_V7_TEMPLATE),
}
BPE_ADDED["granitemoe"] = BPE_ADDED["granitenope"] = BPE_ADDED["granite3"]
# EXAONE 3.5 and 4.0 Instruct's chat templates, shortened to their turns (4.0's
# also has a tool role, which llama.cpp tells the two apart by).
EXAONE_TURNS = (
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{{- '[|system|]' + message['content'] + '[|endofturn|]\n' }}"
    "{%- elif message['role'] == 'user' %}{{- '[|user|]' + message['content'] + '\n' }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '[|assistant|]' + message['content'] + '[|endofturn|]\n' }}"
)
EXAONE_TEMPLATE = (EXAONE_TURNS + "{%- endif %}{%- endfor %}"
                   "{%- if add_generation_prompt %}{{- '[|assistant|]' }}{%- endif %}")
EXAONE4_TEMPLATE = (EXAONE_TURNS + "{%- elif message['role'] == 'tool' %}"
                    "{{- '[|tool|]' + message['content'] + '[|endofturn|]\n' }}"
                    "{%- endif %}{%- endfor %}"
                    "{%- if add_generation_prompt %}{{- '[|assistant|]' }}{%- endif %}")
EXAONE_TOKENS = ["[|system|]", "[|user|]", "[|assistant|]", "[|endofturn|]"]
BPE_ADDED["exaone"] = (EXAONE_TOKENS, "[|endofturn|]", EXAONE_TEMPLATE)
BPE_ADDED["exaone4"] = (EXAONE_TOKENS + ["[|tool|]"], "[|endofturn|]", EXAONE4_TEMPLATE)
# GLM-4-0414's chat template, shortened to its turns.
GLM4_TEMPLATE = (
    "[gMASK]<sop>{%- for message in messages %}"
    "{{- '<|' + message['role'] + '|>\n' + message['content'] }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\n' }}{%- endif %}"
)
# (SmolLM2's vocabulary has GLM-4's EOS, `<|endoftext|>`, already.)
# Hunyuan-Dense Instruct's chat turns (llama.cpp's `hunyuan-dense` for one turn;
# past it, each reply opens with its marker once), its EOS among its control tokens.
HUNYUAN_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{%- if message['role'] == 'system' and loop.first %}"
    "{{- message['content'] + '<｜hy_place▁holder▁no▁3｜>' }}"
    "{%- elif message['role'] == 'user' %}{{- '<｜hy_User｜>' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<｜hy_Assistant｜>' + message['content'] + '<｜hy_place▁holder▁no▁2｜>' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<｜hy_Assistant｜>' }}{%- endif %}"
)
BPE_ADDED["hunyuan"] = (["<｜hy_place▁holder▁no▁2｜>", "<｜hy_place▁holder▁no▁3｜>",
                         "<｜hy_User｜>", "<｜hy_Assistant｜>"],
                        "<｜hy_place▁holder▁no▁2｜>", HUNYUAN_TEMPLATE)
BPE_ADDED["glm4"] = (["[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>"],
                     "<|endoftext|>", GLM4_TEMPLATE)
