"""The README's Fashion-MNIST table, written from ``benchmarks/results/fashion_mnist.json``.

    python benchmarks/readme_fashion_table.py          # prints the Markdown table

Cells as in the digits table (``readme_digits_table.py``): Avg. Gap to the oracle (mean ± std over seeds), its
multiple of the noise floor and the verdict mark; the first two rows are doing nothing and the noise floor.
``tests/test_docs.py`` checks that README holds exactly this table.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location("readme_digits_table", Path(__file__).with_name("readme_digits_table.py"))
_digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_digits)

RESULTS = Path(__file__).resolve().parent / "results" / "fashion_mnist.json"
SETUP = "fashion_mnist"
SCENARIOS = ("random 10%", "class 6 (shirt)", "worst-case 10%")
HEADER = "| method | random 10% | class 6 (shirt) | worst-case 10% | seconds (random) |"


def table(results: dict) -> list[str]:
    rows = {(r["setup"], r["scenario"], r["method"]): r for r in results["rows"]}
    sections = {(v["setup"], v["scenario"]): v for v in results["verdicts"]}
    methods = sorted({r["method"] for r in results["rows"]} - {"original", "oracle"})

    def cell(scenario: str, method: str) -> str:
        return _digits.gap_cell(rows.get((SETUP, scenario, method)), sections.get((SETUP, scenario)), method)

    lines = [HEADER, "|---|" + "---:|" * (len(SCENARIOS) + 1)]
    floor = [f"{sections[(SETUP, s)]['noise_floor']['avg_gap']:.2f}" if (SETUP, s) in sections else "–"
             for s in SCENARIOS]
    lines.append("| do nothing (the original) | " + " | ".join(cell(s, "original") for s in SCENARIOS) + " | – |")
    lines.append("| noise floor (oracle vs oracle) | " + " | ".join(floor) + " | – |")
    for method in methods:
        row = rows.get((SETUP, "random 10%", method))
        seconds = "–" if row is None else f"{row['mean']['seconds']:.2f}"
        lines.append(f"| `{method}` | " + " | ".join(cell(s, method) for s in SCENARIOS) + f" | {seconds} |")
    return lines


if __name__ == "__main__":
    print("\n".join(table(json.loads(RESULTS.read_text()))))
