#!/usr/bin/env python3
"""A deterministic text corpus for benches/compare_ray_data.sh.

Usage: python3 benches/gen_corpus.py OUT.txt [--rows N] [--seed S] [--jsonl OUT.jsonl]

Writes N lines (default 200000) of 8-40 words each, with work for a
normaliser: mixed case, runs of spaces and tabs, leading and trailing
whitespace, no-break / em / ideographic spaces, full-width letters, accented
letters both precomposed and decomposed (e + U+0301), ligatures, superscripts,
and upper-case Greek words (final sigma). Same seed, same bytes.

Lines never contain a character that Python's str.splitlines() treats as a
line break (\\v \\f \\r \\x1c-\\x1e \\x85 U+2028 U+2029): Ray's read_text splits
with splitlines(), weft's datasets split on \\n only, so such a character
would make the two sides count different rows. No line is blank.

--jsonl also writes the same lines as {"text": line} JSON lines: weft's
`normalize` stage takes JSON items, so that is what the weft side uploads.
"""
import argparse
import json
import random
import sys

BASE = (
    "the of and to in is was for on that with as by at from it an be this are "
    "or have not had but which were their one all there been has when who will "
    "more no if out so said what up its about into than them can only other new "
    "some could time these two may then do first any my now such like our over "
    "data model stage pipeline batch token vector embed query answer node cluster "
    "memory stream block job worker actor replica latency throughput request "
    "river mountain garden window harbour lantern meadow orchard thunder velvet"
).split()
ACCENTED = (
    "café naïve résumé über straße façade jalapeño crème brûlée piñata señor "
    "école élève déjà vu smörgåsbord fjörð Ångström Øresund Zürich São Paulo "
    "coöperate garçon Müller Dvořák Łódź"
).split()
GREEK = "ΟΔΟΣ ΣΑΣ ΚΟΣΜΟΣ ΛΟΓΟΣ Σοφία ΘΕΟΣ".split()
SPECIAL = ["ﬁle", "ﬂow", "x²", "m³", "½", "№5", "™", "ℌello", "①", "ｶﾀｶﾅ", "Ⅻ"]
# Whitespace both sides agree on (Rust char::is_whitespace and Python str.split),
# none of it a line break for str.splitlines().
SPACES = [" ", "  ", "   ", "\t", " \t ", "\u00a0", "\u2003", "\u3000", " \u202f "]


def fullwidth(word: str) -> str:
    """ASCII letters and digits as their full-width forms (NFKC folds them back)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in word)


def decompose_e(word: str) -> str:
    """Precomposed é as e + combining acute (NFKC composes it again)."""
    return word.replace("é", "e\u0301")


def recase(rng: random.Random, word: str) -> str:
    r = rng.random()
    if r < 0.55:
        return word
    if r < 0.75:
        return word.capitalize()
    if r < 0.88:
        return word.upper()
    return "".join(c.upper() if rng.random() < 0.5 else c for c in word)


def word(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.78:
        w = recase(rng, rng.choice(BASE))
    elif r < 0.88:
        w = recase(rng, rng.choice(ACCENTED))
        if rng.random() < 0.3:
            w = decompose_e(w)
    elif r < 0.94:
        w = fullwidth(recase(rng, rng.choice(BASE)))
    elif r < 0.97:
        w = rng.choice(GREEK)
    else:
        w = rng.choice(SPECIAL)
    if rng.random() < 0.06:
        w += rng.choice([",", ".", ";", ":", "!", "?"])
    return w


def line(rng: random.Random) -> str:
    n = rng.randint(8, 40)
    parts = []
    if rng.random() < 0.3:
        parts.append(rng.choice(SPACES))
    for i in range(n):
        if i:
            parts.append(" " if rng.random() < 0.7 else rng.choice(SPACES))
        parts.append(word(rng))
    if rng.random() < 0.3:
        parts.append(rng.choice(SPACES))
    return "".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--jsonl", help="also write {\"text\": line} JSON lines here")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    jf = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for _ in range(args.rows):
            text = line(rng)
            assert len(text.splitlines()) == 1 and text.strip(), repr(text)
            f.write(text + "\n")
            if jf:
                jf.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    if jf:
        jf.close()
    print(f"wrote {args.rows} lines to {args.out}" + (f" and {args.jsonl}" if jf else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
