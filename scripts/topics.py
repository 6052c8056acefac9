#!/usr/bin/env python3
"""Writes a small labelled text-classification task as JSON lines:
{"text": "...", "label": "sports|science|business|food"}.

Sentences are built from per-topic subjects, verbs and objects under a fixed
seed, so the file is the same on every machine. It is the training data of
the `finetune` example (examples/data/topics.jsonl was made with the
defaults):

    python3 scripts/topics.py --rows 240 --seed 7 > examples/data/topics.jsonl
"""

import argparse
import json
import random

TOPICS = {
    "sports": (
        ["The striker", "Our goalkeeper", "The home team", "The veteran coach",
         "A young sprinter", "The tennis champion", "The relay squad", "The captain"],
        ["scored in", "trained hard for", "celebrated after", "was injured before",
         "prepared tactics for", "won the final of", "lost narrowly in", "warmed up for"],
        ["the league match", "the championship game", "the penalty shootout",
         "the Olympic heats", "the derby on Sunday", "the cup semi-final",
         "the marathon", "the season opener"],
    ),
    "science": (
        ["The researchers", "A physicist", "The lab team", "An astronomer",
         "The biologist", "A chemistry student", "The telescope", "The study"],
        ["measured", "discovered", "published a paper on", "simulated",
         "observed", "tested a hypothesis about", "sequenced", "analysed"],
        ["a distant galaxy", "the protein structure", "quantum entanglement",
         "the bacterial genome", "climate data from ice cores", "a new particle",
         "the reaction rate", "neurons in the brain"],
    ),
    "business": (
        ["The company", "Investors", "The startup", "The central bank",
         "Shareholders", "The retailer", "A hedge fund", "The board"],
        ["reported profits from", "raised capital for", "cut costs in",
         "announced a merger with", "warned about", "invested heavily in",
         "lowered forecasts for", "negotiated a deal over"],
        ["the quarterly earnings", "interest rates", "the stock market",
         "its supply chain", "a rival firm", "the annual budget",
         "overseas markets", "the new product line"],
    ),
    "food": (
        ["The chef", "My grandmother", "The bakery", "A food critic",
         "The restaurant", "The home cook", "The pastry team", "Our waiter"],
        ["baked", "seasoned", "recommended", "slowly roasted",
         "served", "simmered", "tasted", "garnished"],
        ["fresh sourdough bread", "a spicy tomato soup", "the chocolate cake",
         "garlic and rosemary lamb", "a bowl of ramen", "the seasonal salad",
         "homemade pasta", "grilled vegetables with herbs"],
    ),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=240)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    labels = sorted(TOPICS)
    for i in range(args.rows):
        label = labels[rng.randrange(len(labels))]
        subjects, verbs, objects = TOPICS[label]
        text = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}."
        print(json.dumps({"text": text, "label": label}))


if __name__ == "__main__":
    main()
