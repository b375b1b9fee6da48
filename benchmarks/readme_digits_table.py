"""The README's digits table, written from ``benchmarks/results/digits.json``.

    python benchmarks/readme_digits_table.py          # prints the Markdown table

Each cell is the Avg. Gap to the oracle (mean ± std over seeds), its multiple of the noise floor (the Avg. Gap
between oracles of different seeds) and a mark for the verdict of ``expunge.verdict``. The first two rows are doing
nothing (the original) and the noise floor. ``tests/test_docs.py`` checks that README holds exactly this table.
"""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "digits.json"
COLUMNS = [(f"digits/{model}", scenario) for model in ("mlp", "cnn")
           for scenario in ("random 10%", "class 3", "worst-case 10%")]
HEADER = ("| method | MLP random 10% | MLP class 3 | MLP worst-case 10% | CNN random 10% | CNN class 3 "
          "| CNN worst-case 10% | seconds (MLP, random) |")
MARKS = (("nothing to forget", "○"), ("did not forget", "✗"), ("partly forgot", "◐"), ("forgot", ""))


def mark(verdict: str) -> str:
    """The forget mark, then ``!`` when the method did not keep retain/test accuracy."""
    forget = next(m for prefix, m in MARKS if verdict.startswith(prefix))
    return forget + ("!" if "did not keep" in verdict else "")


def gap_cell(row: dict | None, section: dict | None, method: str, digits: int = 2) -> str:
    """One table cell: Avg. Gap mean ± std, its multiple of the section's noise floor, the verdict mark."""
    if row is None or section is None:
        return "–"
    gap = f"{row['mean']['avg_gap']:.{digits}f} ± {row['std']['avg_gap']:.{digits}f}"
    floors = row["mean"]["avg_gap"] / section["noise_floor"]["avg_gap"]
    verdict = section["verdicts"].get(method)
    suffix = f" {mark(verdict['verdict'])}".rstrip() if verdict else ""
    return f"{gap} ({floors:.1f}×){suffix}"


def table(results: dict) -> list[str]:
    rows = {(r["setup"], r["scenario"], r["method"]): r for r in results["rows"]}
    sections = {(v["setup"], v["scenario"]): v for v in results["verdicts"]}
    methods = sorted({r["method"] for r in results["rows"]} - {"original", "oracle"})

    def cell(setup: str, scenario: str, method: str) -> str:
        return gap_cell(rows.get((setup, scenario, method)), sections.get((setup, scenario)), method)

    lines = [HEADER, "|---|" + "---:|" * 7]
    floor = [f"{sections[c]['noise_floor']['avg_gap']:.2f}" if c in sections else "–" for c in COLUMNS]
    lines.append("| do nothing (the original) | " + " | ".join(cell(*c, "original") for c in COLUMNS) + " | – |")
    lines.append("| noise floor (oracle vs oracle) | " + " | ".join(floor) + " | – |")
    for method in methods:
        mlp = rows.get(("digits/mlp", "random 10%", method))
        seconds = "–" if mlp is None else f"{mlp['mean']['seconds']:.2f}"
        lines.append(f"| `{method}` | " + " | ".join(cell(*c, method) for c in COLUMNS) + f" | {seconds} |")
    return lines


if __name__ == "__main__":
    print("\n".join(table(json.loads(RESULTS.read_text()))))
