"""Comparison tables: reference rows, methods by Avg. Gap with the best marked, gaps in floors, verdicts, marks for
an unstable MIA, a loud warning for a degenerate original, the forget-set size."""
from __future__ import annotations

import json

import pytest

from expunge.experiment import Comparison, MethodResult
from expunge.report import aggregate, format_sizes, table_rows, text_table, write_reports
from expunge.verdict import FLOOR, ORACLE

ORACLE_SCORES = {"forget_acc": 92.0, "ua": 8.0, "retain_acc": 99.0, "test_acc": 95.0, "mia_efficacy": 20.0}


def scored(**values) -> dict[str, float]:
    s = dict(ORACLE_SCORES, **values)
    s["ua"] = 100 - s["forget_acc"]
    for k in ("ua", "retain_acc", "test_acc", "mia_efficacy"):
        s[f"gap_{k}"] = abs(s[k] - ORACLE_SCORES[k])
    s["avg_gap"] = sum(s[f"gap_{k}"] for k in ("ua", "retain_acc", "test_acc", "mia_efficacy")) / 4
    s["majority_acc"], s["top_class_share"] = 11.0, 12.0
    s.setdefault("seconds", 1.0)
    return s


def comparison(original=None, **methods) -> Comparison:
    return Comparison("s", original or scored(forget_acc=100.0, mia_efficacy=5.0), dict(ORACLE_SCORES),
                      [MethodResult(name, scores) for name, scores in methods.items()],
                      floor=scored(forget_acc=91.0, retain_acc=98.6, test_acc=94.2, mia_efficacy=22.0),
                      sizes={"train": 1437, "forget": 144, "retain": 1293, "test": 360})


def test_rows_sorted_by_avg_gap_best_marked_gaps_in_floors():
    rows = aggregate([comparison(nothing=scored(forget_acc=100.0, mia_efficacy=5.0),
                                 close=scored(forget_acc=91.0, mia_efficacy=21.0),
                                 costly=scored(forget_acc=92.0, test_acc=85.0))])
    header, body = table_rows(rows)
    assert header[-1] == "verdict" and "x floor" in header
    names = [r[0] for r in body]
    assert names == ["original", ORACLE, FLOOR, "close (best)", "costly", "nothing"]
    cells = {r[0]: dict(zip(header, r)) for r in body}
    assert cells[FLOOR]["x floor"] == "1.0x" and cells[ORACLE]["x floor"] == "–"
    assert cells["close (best)"]["verdict"] == "forgot, kept"
    assert cells["costly"]["verdict"] == "forgot, did not keep"
    assert cells["nothing"]["verdict"] == "did not forget, kept"
    assert cells["original"]["verdict"] == "do nothing" and cells[ORACLE]["verdict"] == "target"
    floor = rows[FLOOR][0]["avg_gap"]
    assert cells["original"]["x floor"] == f"{rows['original'][0]['avg_gap'] / floor:.1f}x"
    text = text_table(rows)
    assert "nothing: did not forget, kept (forget accuracy exactly the original's)" in text
    assert f"Noise floor (Avg.Gap between oracles of different seeds): {floor:.2f}" in text


def test_an_unstable_mia_leaves_every_avg_gap_without_it():
    flip = dict(scored(forget_acc=91.0, mia_efficacy=100.0), mia_unstable=1.0, avg_gap_without_mia=1.0)
    rows = aggregate([comparison(flip=flip, steady=scored(forget_acc=93.0, mia_efficacy=30.0))])
    header, body = table_rows(rows)
    cells = {r[0].replace(" (best)", ""): dict(zip(header, r)) for r in body}
    assert cells["flip"]["MIA"].endswith("~") and not cells["steady"]["MIA"].endswith("~")
    # both Avg. Gaps are over UA, RA and TA (marked), so the rows stay comparable
    assert cells["steady"]["Avg.Gap"] == "0.33†" and cells["flip"]["Avg.Gap"] == "0.33†"
    assert "an unstable MIA is left out of every Avg.Gap" in text_table(rows)


def test_a_degenerate_original_is_announced():
    one_class = dict(scored(forget_acc=60.0, retain_acc=61.0, test_acc=60.0), majority_acc=60.0,
                     top_class_share=100.0)
    text = text_table(aggregate([comparison(one_class, m=scored())]))
    assert "WARNING: the original model is degenerate" in text and "one class for 100%" in text
    assert "oracle (retrained model) is degenerate" not in text


def test_reports_state_sizes_floor_and_verdicts(tmp_path):
    paths = write_reports(tmp_path, "t", {"s": [comparison(m=scored(forget_acc=91.0, mia_efficacy=21.0))]}, {})
    md = paths["md"].read_text()
    assert "forget set: 144 of 1437 training examples (10.0%); retain 1293; test 360" in md
    assert "- m: forgot, kept" in md and "| m (best) |" in md
    html = paths["html"].read_text()
    assert "<figcaption>" in html and "class='best'" in html and "log scale" in html
    data = json.loads(paths["json"].read_text())["scenarios"]["s"]
    assert data["best"] == "m" and data["verdicts"]["m"]["forgot"] is True and data["verdicts"]["m"]["kept"] is True
    assert data["noise_floor"]["avg_gap"] == pytest.approx(data["mean"][FLOOR]["avg_gap"])
    assert format_sizes([{"forget": 30, "retain": 270}, {"forget": 31, "retain": 269}]) == \
        "forget set: 30–31 of 300 training examples (10.2%); retain 269–270"


def test_iam_columns_and_note_appear_only_for_rows_scored_with_iam():
    iam = lambda mean, rel: {"iam_completeness_mean": mean, "iam_relative_completeness": rel,
                             "iam_incomplete_share": 1 - mean, "iam_n_measured": 40.0, "iam_n_forget": 144.0}
    plain = aggregate([comparison(close=scored(forget_acc=91.0, mia_efficacy=21.0))])
    assert "IAM" not in " ".join(table_rows(plain)[0]) and "IAM" not in text_table(plain)
    with_iam = Comparison("s", {**scored(forget_acc=100.0, mia_efficacy=5.0), **iam(0.36, 0.68)},
                          {**ORACLE_SCORES, **iam(0.49, 0.94)},
                          [MethodResult("close", {**scored(forget_acc=91.0, mia_efficacy=21.0), **iam(0.47, 0.9)})])
    rows = aggregate([with_iam])
    header, body = table_rows(rows, tier=True)
    assert header[-5:] == ["IAM", "IAM rel.", "IAM incompl.", "tier", "verdict"]
    by_name = {r[0].split(" (")[0]: r for r in body}
    assert by_name["original"][header.index("IAM rel.")] == "0.68"
    assert by_name["oracle"][header.index("IAM")] == "0.49" and by_name["close"][header.index("IAM incompl.")] == "0.53"
    text = text_table(rows)
    assert "IAM (Wang et al., USENIX Security 2025; scoring: {evidence: iam})" in text
    assert "Measured on 40 of 144 forget examples" in text
