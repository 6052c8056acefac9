#!/usr/bin/env python3
"""Regenerates src/tables.rs: the General Category ranges the tokenizers need
and Rust's std does not expose. Run from this directory: python3 tables.py
(then `cargo fmt`)."""
import unicodedata


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


HEADER = f"""//! Unicode General Category tables that `std` does not expose, as sorted
//! inclusive `[first, last, first, last, ...]` code point ranges.
//!
//! Generated from Python's `unicodedata` (Unicode {unicodedata.unidata_version}) by `tables.py` beside
//! this crate's `Cargo.toml`; regenerate rather than edit.

"""

tables = [
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
