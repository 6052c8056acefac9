"""numpy quantisers of the ggml block formats scripts/models.py writes test
models in (layouts as ggml-quants.c; each caller checks its blocks as gguf-py
reads them back): Q5_0/Q5_1, the K-quants Q4_K/Q5_K/Q6_K, IQ4_NL and IQ4_XS.
Simple scales, not llama.cpp's searches: the files test reading, not quality."""


def _f16(x):
    import numpy as np

    return np.asarray(x, dtype=np.float32).astype(np.float16)


def quant_q5(x, with_min: bool):
    """Q5_0 (scale from the signed largest magnitude, q - 16) or Q5_1 (min..max)."""
    import numpy as np

    b = x.reshape(-1, 32)
    if with_min:
        mn, mx = b.min(1), b.max(1)
        d = _f16((mx - mn) / 31)
        inv = np.divide(1, d.astype(np.float32), out=np.zeros_like(mn), where=d != 0)
        q = np.clip(np.trunc((b - mn[:, None]) * inv[:, None] + 0.5), 0, 31).astype(np.uint32)
        head = np.concatenate([d.view(np.uint8).reshape(-1, 2), _f16(mn).view(np.uint8).reshape(-1, 2)], 1)
    else:
        idx = np.abs(b).argmax(1)
        mx = b[np.arange(len(b)), idx]
        d = _f16(mx / -16)
        inv = np.divide(1, mx / -16, out=np.zeros_like(mx), where=mx != 0)
        q = np.clip(np.trunc(b * inv[:, None] + 16.5), 0, 31).astype(np.uint32)
        head = d.view(np.uint8).reshape(-1, 2)
    qh = (((q >> 4) & 1) << np.arange(32, dtype=np.uint32)).sum(1).astype(np.uint32)
    qs = ((q[:, :16] & 0xF) | ((q[:, 16:] & 0xF) << 4)).astype(np.uint8)
    return np.concatenate([head, qh.view(np.uint8).reshape(-1, 4), qs], 1)


def quant_k_min(x, bits: int):
    """Q4_K (bits=4) or Q5_K (bits=5): 8 sub-blocks of 32, each with a 6-bit scale and min."""
    import numpy as np

    levels = (1 << bits) - 1
    sb = x.reshape(-1, 8, 32)
    mn = np.minimum(sb.min(2), 0)
    mx = np.maximum(sb.max(2), mn + 1e-12)
    scale, minv = (mx - mn) / levels, -mn
    d = _f16(scale.max(1) / 63).astype(np.float32)
    dmin = _f16(minv.max(1) / 63).astype(np.float32)
    sc = np.clip(np.rint(np.divide(scale, d[:, None], out=np.zeros_like(scale), where=d[:, None] != 0)), 0, 63)
    m = np.clip(np.rint(np.divide(minv, dmin[:, None], out=np.zeros_like(minv), where=dmin[:, None] != 0)), 0, 63)
    step = d[:, None] * sc
    q = np.divide(sb + (dmin[:, None] * m)[..., None], step[..., None],
                  out=np.zeros_like(sb), where=step[..., None] != 0)
    q = np.clip(np.rint(q), 0, levels).astype(np.uint8)
    sc, m = sc.astype(np.uint8), m.astype(np.uint8)
    scales = np.concatenate([
        sc[:, :4] | ((sc[:, 4:] >> 4) << 6),
        m[:, :4] | ((m[:, 4:] >> 4) << 6),
        (sc[:, 4:] & 0xF) | ((m[:, 4:] & 0xF) << 4),
    ], 1)
    low = q & 0xF
    qs = (low[:, 0::2, :] | (low[:, 1::2, :] << 4)).reshape(-1, 128)
    parts = [_f16(d).view(np.uint8).reshape(-1, 2), _f16(dmin).view(np.uint8).reshape(-1, 2), scales]
    if bits == 5:
        qh = (((q >> 4) & 1) << np.arange(8, dtype=np.uint8)[None, :, None]).sum(1).astype(np.uint8)
        parts.append(qh)
    parts.append(qs)
    return np.concatenate(parts, 1)


def quant_q6_k(x):
    """Q6_K: 16 sub-blocks of 16 with int8 scales, values q - 32."""
    import numpy as np

    sb = x.reshape(-1, 16, 16)
    idx = np.abs(sb).argmax(2)
    mx = np.take_along_axis(sb, idx[..., None], 2)[..., 0]
    scale = mx / -32
    big = np.abs(scale).max(1)
    d = _f16(big / 127).astype(np.float32)
    sc = np.clip(np.rint(np.divide(scale, d[:, None], out=np.zeros_like(scale), where=d[:, None] != 0)), -128, 127)
    step = d[:, None] * sc
    q = np.divide(sb, step[..., None], out=np.zeros_like(sb), where=step[..., None] != 0)
    q = (np.clip(np.rint(q), -32, 31) + 32).astype(np.uint8).reshape(-1, 2, 128)
    low, high = q & 0xF, q >> 4
    ql = (low[:, :, :64] | (low[:, :, 64:] << 4)).reshape(-1, 128)
    qh = (high[:, :, 0:32] | (high[:, :, 32:64] << 2) | (high[:, :, 64:96] << 4)
          | (high[:, :, 96:128] << 6)).reshape(-1, 64)
    return np.concatenate([ql, qh, sc.astype(np.int8).view(np.uint8), _f16(d).view(np.uint8).reshape(-1, 2)], 1)


# IQ4_NL's and IQ4_XS's 16 values (ggml's kvalues_iq4nl).
IQ4_VALUES = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]


def _iq4_indices(blocks, scale):
    """Each value's nearest table entry under its block's `scale`, as nibbles
    packed as ggml packs them: byte j holds value j (low) and j + 16 (high)."""
    import numpy as np
    table = np.array(IQ4_VALUES, dtype=np.float32)
    inv = np.where(scale != 0, 1.0 / np.where(scale != 0, scale, 1.0), 0.0)
    q = np.abs(blocks[..., None] * inv[..., None, None] - table).argmin(-1).astype(np.uint8)
    return q[..., :16] | (q[..., 16:] << 4)


def quant_iq4_nl(x):
    """Rows of `x` as IQ4_NL blocks: scale the value of largest size over
    -127, rounded to f16 (llama.cpp's first guess; its search does better)."""
    import numpy as np
    b = x.reshape(-1, 32)
    big = b[np.arange(len(b)), np.abs(b).argmax(1)]
    d = (big / -127.0).astype(np.float16)
    qs = _iq4_indices(b, d.astype(np.float32))
    return np.concatenate([d.view(np.uint8).reshape(-1, 2), qs], 1).reshape(x.shape[0], -1)


def quant_iq4_xs(x):
    """Rows of `x` as IQ4_XS super-blocks: each 32's own IQ4_NL scale, as a
    6-bit multiple (less 32) of the super-block's f16 one."""
    import numpy as np
    b = x.reshape(-1, 8, 32)
    big = np.take_along_axis(b, np.abs(b).argmax(2)[..., None], 2)[..., 0]
    want = big / -127.0
    d = (np.abs(want).max(1) / 31.0).astype(np.float16)
    df = d.astype(np.float32)[:, None]
    ls = np.clip(np.rint(np.where(df != 0, want / np.where(df != 0, df, 1.0), 0.0)) + 32, 0, 63)
    ls = ls.astype(np.uint16)
    qs = _iq4_indices(b, df * (ls.astype(np.float32) - 32.0)).reshape(len(b), 128)
    high = np.zeros(len(b), np.uint16)
    for ib in range(8):
        high |= (ls[:, ib] >> 4) << (2 * ib)
    low = (ls & 0xf).astype(np.uint8)
    low = low[:, 0::2] | (low[:, 1::2] << 4)
    out = np.concatenate([d.view(np.uint8).reshape(-1, 2), high.view(np.uint8).reshape(-1, 2),
                          low, qs], 1)
    return out.reshape(x.shape[0], -1)


# The lattice i-quants' block sizes (bytes per 256 values).
LATTICE_SIZES = {"IQ2_XXS": 66, "IQ2_XS": 74, "IQ2_S": 82, "IQ3_XXS": 98, "IQ3_S": 110,
                 "IQ1_S": 50, "IQ1_M": 56}


def set_scale(blocks, name, d):
    """Writes the f16 super-block scales `d` into `blocks` of type `name`:
    the first two bytes, or IQ1_M's four top nibbles of bytes 48..56."""
    import numpy as np
    h = d.astype(np.float16).view(np.uint16)
    if name != "IQ1_M":
        blocks[:, 0:2] = h.view(np.uint8).reshape(-1, 2)
        return
    words = blocks[:, 48:56].copy().view(np.uint16)
    for i in range(4):
        words[:, i] = (words[:, i] & 0x0FFF) | (((h >> (4 * i)) & 0xF) << 12)
    blocks[:, 48:56] = words.view(np.uint8)


def random_lattice(rng, name, rows, cols, rms):
    """`rows` rows of `cols` values as random blocks of the lattice i-quant
    `name` (IQ1_S … IQ3_S: random codebook entries, signs and sub-block
    scales), each super-block's scale set so its values' RMS is `rms`. Not
    a quantiser (llama.cpp's searches the lattice): the files test reading,
    and random entries reach every part of the codebooks."""
    import numpy as np
    from gguf import GGMLQuantizationType, quants
    size = LATTICE_SIZES[name]
    n = rows * cols // 256
    blocks = rng.integers(0, 256, (n, size), dtype=np.uint8)
    set_scale(blocks, name, np.ones(n, np.float32))
    qtype = GGMLQuantizationType[name]
    unit = quants.dequantize(blocks.reshape(-1), qtype).reshape(n, 256)
    have = np.sqrt((unit ** 2).mean(1))
    set_scale(blocks, name, np.where(have > 0, rms / np.where(have > 0, have, 1.0), 1.0))
    return blocks.reshape(rows, -1)
