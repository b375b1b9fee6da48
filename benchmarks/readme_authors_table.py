"""The README's fictitious-authors table, written from ``benchmarks/results/authors.json``.

    python benchmarks/readme_authors_table.py [results.json]     # prints the Markdown table

Per forget share: the do-nothing row (the original against the oracle), the oracle's own row, the noise-floor row
(a second oracle per seed, retrained under another seed and scored against the first), then the methods by Avg.
Gap, lowest first. Columns: forget quality (KS-test p-value of the truth ratios against the oracle's), model utility,
PrivLeak (%), Avg. Gap (points; mean ± std over seeds), its multiple of the noise floor's, seconds, and the verdict of
``expunge.verdict``.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "authors.json"
FLOOR = "oracle, other seed (floor)"
HEADER = "| forget | method | forget quality | model utility | PrivLeak % | Avg. Gap | x floor | seconds | verdict |"


def _number(row: dict, key: str, digits: int, spread: bool = False) -> str:
    mean = row["mean"].get(key)
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    std = row["std"].get(key)
    more = spread and row.get("finished", 0) > 1 and std is not None
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if more else "")


def table(results: dict) -> list[str]:
    """The Markdown lines of the table."""
    sections = {(v["setup"], v["scenario"]): v for v in results["verdicts"]}
    lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    order = list(dict.fromkeys((r["setup"], r["scenario"]) for r in results["rows"]))
    for setup, scenario in order:
        rows = [r for r in results["rows"] if (r["setup"], r["scenario"]) == (setup, scenario)]
        section = sections.get((setup, scenario), {})
        floor = (section.get("noise_floor") or {}).get("avg_gap")
        verdicts = section.get("verdicts") or {}
        reference = {"original": "do nothing", "oracle": "target", FLOOR: "noise floor"}
        ranked = [r for r in rows if r["method"] in reference]
        ranked.sort(key=lambda r: list(reference).index(r["method"]))
        methods = [r for r in rows if r["method"] not in reference]
        methods.sort(key=lambda r: (r["mean"].get("avg_gap") is None, r["mean"].get("avg_gap") or 0.0))
        for r in ranked + methods:
            gap = r["mean"].get("avg_gap")
            floors = f"{gap / floor:.1f}x" if gap is not None and floor and r["method"] != "oracle" else "–"
            verdict = reference.get(r["method"]) or (verdicts.get(r["method"]) or {}).get("verdict", "–")
            lines.append(f"| {scenario} | {r['method']} | {_number(r, 'forget_quality', 2)} | "
                         f"{_number(r, 'model_utility', 3)} | {_number(r, 'privleak', 1)} | "
                         f"{_number(r, 'avg_gap', 2, spread=True)} | {floors} | {_number(r, 'seconds', 1)} | "
                         f"{verdict.split(' (')[0]} |")
    return lines


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    print("\n".join(table(json.loads(path.read_text()))))
