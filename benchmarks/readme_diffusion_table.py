"""The README's digits-diffusion and digits-GAN tables, written from ``benchmarks/results/digits_diffusion.json``
and ``benchmarks/results/digits_gan.json``.

    python benchmarks/readme_diffusion_table.py              # prints the diffusion table (Markdown)
    python benchmarks/readme_diffusion_table.py digits_gan   # prints the GAN table

Each cell: the Avg. Gap to the oracle (mean ± std over seeds: unlearning accuracy, retained-class generation
accuracy, membership AUC and the embedding attack's success, in points), its multiple of the noise floor (two
oracles of different seeds), the verdict mark as in the digits table, and the unlearning accuracy (UA, % of the
forgotten digit's samples the judge does not read as it). The first rows are doing nothing (the original) and the
noise floor. ``tests/test_docs.py`` checks that README holds exactly this table.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location("readme_digits_table", Path(__file__).with_name("readme_digits_table.py"))
_digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_digits)

import sys

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("class 1", "class 3", "class 8")
FLOOR = "oracle, other seed (floor)"    # the noise-floor oracle's row (its own row below, not a method's)
HEADER = "| method | forget digit 1 | forget digit 3 | forget digit 8 | seconds (digit 3) |"


def table(results: dict) -> list[str]:
    setup = next(iter({r["setup"] for r in results["rows"]}))
    rows = {(r["scenario"], r["method"]): r for r in results["rows"] if r["setup"] == setup}
    sections = {v["scenario"]: v for v in results["verdicts"] if v["setup"] == setup}
    methods = sorted({m for _, m in rows} - {"original", "oracle", FLOOR})

    def cell(scenario: str, method: str) -> str:
        row = rows.get((scenario, method))
        text = _digits.gap_cell(row, sections.get(scenario), method, digits=1)
        return text if row is None or text == "–" else f"{text}, UA {row['mean']['unlearning_accuracy']:.0f}"

    lines = [HEADER, "|---|" + "---:|" * (len(SCENARIOS) + 1)]
    lines.append("| do nothing (the original) | " + " | ".join(cell(s, "original") for s in SCENARIOS) + " | – |")
    floor = [f"{sections[s]['noise_floor']['avg_gap']:.1f}" if s in sections else "–" for s in SCENARIOS]
    lines.append("| noise floor (oracle vs oracle) | " + " | ".join(floor) + " | – |")
    oracle = [f"UA {rows[(s, 'oracle')]['mean']['unlearning_accuracy']:.0f}" if (s, "oracle") in rows else "–"
              for s in SCENARIOS]
    lines.append("| the oracle (retrained without the digit) | " + " | ".join(oracle) + " | – |")
    for method in methods:
        row = rows.get(("class 3", method))
        seconds = "–" if row is None else f"{row['mean']['seconds']:.1f}"
        lines.append(f"| `{method}` | " + " | ".join(cell(s, method) for s in SCENARIOS) + f" | {seconds} |")
    return lines


if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else "digits_diffusion"
    print("\n".join(table(json.loads((RESULTS / f"{name}.json").read_text()))))
