"""Agreement of a parser's first relation with ComVG's gold triplets.

    python benchmarks/parse_comvg.py [--csv ../shared/data/comvg/comvg-dev.csv] [--parser spacy] [--show-misses]

Prints the percentage of distinct sentences whose first relation's subject head, predicate and
object head agree with ``pos_triplet`` (see comclip.parsing.agreement for the comparison).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from comclip.parsing import create_parser
from comclip.parsing.agreement import first_relation_agreement

DEFAULT_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "comvg" / "comvg-dev.csv"


def distinct_sentences(csv_path: Path) -> dict[str, tuple[str, str, str]]:
    with open(csv_path, newline="", encoding="utf-8") as handle:
        sentences: dict[str, tuple[str, str, str]] = {}
        for row in csv.DictReader(handle):
            sentences.setdefault(row["sentence"], tuple(row["pos_triplet"].split(",")))
    return sentences


def measure(csv_path: Path, parser_name: str = "spacy") -> dict:
    gold = distinct_sentences(csv_path)
    parser = create_parser(parser_name)
    graphs = parser.parse_many(list(gold))
    agreements = [first_relation_agreement(g, gold[g.text]) for g in graphs]
    n = len(agreements)
    misses = [
        {
            "sentence": g.text,
            "gold": gold[g.text],
            "parse": g.to_dict()["relations"][:1],
            "entities": [e.phrase for e in g.entities],
        }
        for g, a in zip(graphs, agreements)
        if not (a.subject and a.predicate and a.object)
    ]
    return {
        "parser": parser.describe(),
        "sentences": n,
        "subject_pct": 100.0 * sum(a.subject for a in agreements) / n,
        "predicate_pct": 100.0 * sum(a.predicate for a in agreements) / n,
        "object_pct": 100.0 * sum(a.object for a in agreements) / n,
        "misses": misses,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--parser", default="spacy")
    ap.add_argument("--show-misses", action="store_true")
    args = ap.parse_args()
    result = measure(args.csv, args.parser)
    if args.show_misses:
        for miss in result["misses"]:
            print(json.dumps(miss))
    print(
        f"{result['sentences']} sentences: subject {result['subject_pct']:.1f}%  "
        f"predicate {result['predicate_pct']:.1f}%  object {result['object_pct']:.1f}%"
    )
    print(json.dumps({k: v for k, v in result.items() if k != "misses"}))


if __name__ == "__main__":
    main()
