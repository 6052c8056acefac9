#!/usr/bin/env python3
"""Regenerates src/tables.rs: the General Category ranges the tokenizers need.

The categories are Unicode 15.1's, the version of llama.cpp's own table (its
unicode-data.cpp; `tok`'s unit tests compare every code point against that
table, host/nn/tests/data/llama_cpp_unicode.json). Rust's std answers
`is_alphabetic` and `is_numeric` in its own, newer version, so the letters and
numbers are tables here too. Python's `unicodedata` is the Unicode of the
Python that runs it, so this reads `unicodedata2`, pinned:

    pip install unicodedata2==15.1.0 && python3 tables.py && cargo fmt
"""
import sys

try:
    import unicodedata2 as unicodedata
except ImportError:
    sys.exit("needs unicodedata2: pip install unicodedata2==15.1.0")

VERSION = "15.1.0"
if unicodedata.unidata_version != VERSION:
    sys.exit(f"unicodedata2 has Unicode {unicodedata.unidata_version}; "
             f"pip install unicodedata2=={VERSION}")


def ranges(pred):
    out, start = [], None
    for cp in range(0x110000):
        ok = pred(cp)
        if ok and start is None:
            start = cp
        if not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, 0x10FFFF))
    return out


def category(cp):
    return unicodedata.category(chr(cp))


def table(name, doc, pred):
    flat = ", ".join(f"0x{a:X}, 0x{b:X}" for a, b in ranges(pred))
    return f"/// {doc}\npub(crate) const {name}: &[u32] = &[{flat}];\n"


HEADER = f"""//! Unicode General Category tables in llama.cpp's Unicode version, as sorted
//! inclusive `[first, last, first, last, ...]` code point ranges.
//!
//! Generated from `unicodedata2` (Unicode {unicodedata.unidata_version}, llama.cpp's) by `tables.py`
//! beside this crate's `Cargo.toml`; regenerate rather than edit.

"""

tables = [
    table("LETTER", "Category L (Lu, Ll, Lt, Lm, Lo): `\\p{L}`.",
          lambda c: category(c).startswith("L")),
    table("NUMBER", "Category N (Nd, Nl, No): `\\p{N}`.",
          lambda c: category(c).startswith("N")),
    table("MARK", "Category M (Mn, Mc, Me): `\\p{M}`.",
          lambda c: category(c).startswith("M")),
    table("PUNCTUATION", "Category P (Pc, Pd, Ps, Pe, Pi, Pf, Po).",
          lambda c: category(c).startswith("P")),
    table("SYMBOL", "Category S (Sm, Sc, Sk, So): llama.cpp's `\\p{S}`.",
          lambda c: category(c).startswith("S")),
    table("NONSPACING_MARK", "Category Mn: what BERT's accent stripping drops after NFD.",
          lambda c: category(c) == "Mn"),
    table("FORMAT", "Category Cf (zero-width joiners, bidi controls, soft hyphen, ...).",
          lambda c: category(c) == "Cf"),
]
with open("src/tables.rs", "w") as f:
    f.write(HEADER + "\n".join(tables))
