"""Paired comparison of two adherence runs, clip by clip.

`bench/adherence.py` writes one record per generated clip (`--records`). Two
runs over the same scenes (two checkpoints, or two sampler settings) generate
from the same captions and seeds, so their clips pair up, and a difference is
better judged on the pairs than on two rates each known to about +-6 points:
for each attribute this prints both rates over the paired clips, the clips
gained and lost going from A to B, and the exact McNemar p-value (two-sided
binomial test on the discordant pairs).

    python bench/adherence_compare.py A.jsonl B.jsonl [--held-out]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

ATTRIBUTES = ("colour", "shape", "motion", "size")


def read_records(path: str, held_out: bool) -> dict[tuple, dict]:
    """(seed, caption) -> record, seen compositions only unless held_out."""
    records = {}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        if record["held_out"] == held_out:
            records[(record["seed"], record["caption"])] = record
    return records


def mcnemar_p(gained: int, lost: int) -> float:
    """Exact two-sided McNemar p-value: the chance of a split at least this uneven of gained + lost
    discordant pairs under a fair coin."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(gained, lost) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def compare(a: dict[tuple, dict], b: dict[tuple, dict]) -> dict:
    """Per caption kind ("short", "long", "all") and attribute: n, rate_a, rate_b, gained, lost, p."""
    keys = sorted(a.keys() & b.keys())
    if not keys:
        raise ValueError("the two runs share no (seed, caption) clips: were they run over the same scenes?")
    result = {}
    for caption in ("short", "long", "all"):
        chosen = [k for k in keys if caption in ("all", k[1])]
        result[caption] = {}
        for attribute in ATTRIBUTES:
            pairs = [(a[k]["ok"][attribute], b[k]["ok"][attribute]) for k in chosen
                     if attribute in a[k]["ok"] and attribute in b[k]["ok"]]
            if not pairs:
                continue
            gained = sum(1 for x, y in pairs if y and not x)
            lost = sum(1 for x, y in pairs if x and not y)
            n = len(pairs)
            result[caption][attribute] = dict(n=n, rate_a=sum(x for x, _ in pairs) / n,
                                              rate_b=sum(y for _, y in pairs) / n,
                                              gained=gained, lost=lost, p=mcnemar_p(gained, lost))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="records of run A (JSON lines from bench/adherence.py --records)")
    parser.add_argument("b", help="records of run B, over the same scenes")
    parser.add_argument("--held-out", action="store_true", help="compare the held-out compositions instead")
    args = parser.parse_args()
    result = compare(read_records(args.a, args.held_out), read_records(args.b, args.held_out))
    print(f"{'captions':8s} {'attribute':9s} {'n':>4s} {'A':>6s} {'B':>6s} {'gained':>6s} {'lost':>5s} {'p':>6s}")
    for caption, attributes in result.items():
        for attribute, r in attributes.items():
            print(f"{caption:8s} {attribute:9s} {r['n']:4d} {100 * r['rate_a']:5.1f}% {100 * r['rate_b']:5.1f}% "
                  f"{r['gained']:6d} {r['lost']:5d} {r['p']:6.3f}")


if __name__ == "__main__":
    main()
