"""The language demo's functions at tiny size: the comparison against the oracle (the oracle's own row scores as
the oracle, a method that forgets closes the original's gap), the report's language columns, the end-to-end run
through the command line on a tiny corpus and model, the presets, and bad options refused before any work."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import expunge  # noqa: E402
from expunge.cli import main  # noqa: E402
from expunge.lm import demo  # noqa: E402
from expunge.methods import registered  # noqa: E402
from expunge.report import aggregate, table_rows, text_table, write_reports  # noqa: E402
from expunge.store import RunStore  # noqa: E402
from expunge.verdict import FLOOR, ORACLE, ORIGINAL  # noqa: E402
from tests.lm_helpers import tiny_qa_task  # noqa: E402

TINY_CORPUS = dict(n_authors=20, attributes=1, world_facts=2, vocab_size=300, seed=0)
TINY_MODEL = dict(hidden=16, layers=1, heads=2, max_positions=64)
TINY_RECIPE = dict(demo.RECIPE, epochs=2)
GRAD_DIFF = {"lr": 5e-3, "epochs": 3}          # forgets on the tiny task (see tests/lm/test_model_files.py)


@pytest.fixture(scope="module")
def comparison():
    t = tiny_qa_task()
    return demo.compare_language(t.original, t.forget, t.retain, t.holdout, {"grad_diff": GRAD_DIFF}, seed=0,
                                 scenario="tiny")


def test_comparison_scores_the_oracle_as_the_target_and_a_forgetting_method_against_it(comparison):
    c = comparison
    assert c.oracle["forget_quality"] == 1.0 and c.oracle["privleak"] == 0.0 and c.oracle["avg_gap"] == 0.0
    assert c.original["forget_prob"] > c.oracle["forget_prob"] + 0.5         # the original knows the forget facts
    assert c.floor is not None and c.floor["forget_prob"] < c.original["forget_prob"]
    assert c.sizes == {"train": 60, "forget": 9, "retain": 51, "test": 12}
    (result,) = c.results
    assert result.method == "grad_diff" and result.error is None
    assert result.scores["forget_prob"] < c.original["forget_prob"] - 0.3    # it forgot part of the way
    assert result.scores["gap_forget_prob"] < c.original["gap_forget_prob"]
    assert "rte" not in c.original and result.scores["rte"] > 0


def test_report_has_the_language_columns_and_verdicts(comparison, tmp_path):
    rows = aggregate([comparison])
    header, body = table_rows(rows, tier=True)
    assert header == ["Method", "FQ", "MU", "forget prob", "retain prob", "forget ROUGE", "retain ROUGE", "PrivLeak",
                      "Avg.Gap", "x floor", "RTE %", "seconds", "tier", "verdict"]
    names = [r[0] for r in body]
    assert names[:3] == [ORIGINAL, ORACLE, FLOOR] and names[3].startswith("grad_diff")
    oracle = body[1]
    assert oracle[header.index("FQ")] == "1" and oracle[header.index("Avg.Gap")] == "0.00"
    assert oracle[header.index("forget prob")] == f"{comparison.oracle['forget_prob']:.3f}"
    verdict = body[3][-1]
    assert "forgot" in verdict and "nothing to forget" not in verdict         # the gap was closed, read in floors
    text = text_table(rows)
    assert "Noise floor (Avg.Gap between oracles of different seeds)" in text and "grad_diff:" in text
    paths = write_reports(tmp_path, "tiny", {"tiny": [comparison]}, {"data": "tiny"})
    md = paths["md"].read_text()
    assert "FQ = forget quality" in md and "| FQ | MU |" in md and "UA = 100" not in md
    results = json.loads(paths["json"].read_text())
    mean = results["scenarios"]["tiny"]["mean"]
    assert mean[ORACLE]["forget_quality"] == 1.0 and "privleak" in mean["grad_diff"]
    assert results["scenarios"]["tiny"]["verdicts"]["grad_diff"]["forgot"] is not False
    assert "data:image/png;base64" in paths["html"].read_text()


def test_demo_end_to_end_on_a_tiny_corpus_through_the_command_line(tmp_path, store, capsys, monkeypatch):
    monkeypatch.setattr(demo, "CORPUS", TINY_CORPUS)
    monkeypatch.setattr(demo, "MODEL", TINY_MODEL)
    monkeypatch.setattr(demo, "RECIPE", TINY_RECIPE)
    monkeypatch.setattr(demo, "PRESETS", {"grad_ascent": {"epochs": 1}})
    out = tmp_path / "lm"
    assert main(["demo", "--task", "lm", "--methods", "grad_ascent,npo", "--seeds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "forget 5% of the authors" in printed and "oracle (target)" in printed and "npo" in printed
    assert "no preset for npo: paper defaults" in printed
    results = json.loads((out / "results.json").read_text())
    section = results["scenarios"]["forget 5% of the authors"]
    assert len(section["seeds"]) == 2 and set(section["seeds"][0]["methods"]) == {"grad_ascent", "npo"}
    assert section["seeds"][0]["sizes"]["forget"] == 1 * 1 * 2        # one author's one fact, in two phrasings
    assert results["meta"]["recipe"]["epochs"] == 2 and "grad_ascent: {'epochs': 1}" in \
        results["meta"]["method arguments"]
    assert "±" in (out / "report.md").read_text()                      # two seeds: mean ± std
    with RunStore(store) as db:
        (run,) = db.runs()
        assert db.get(run.run_id).params["task"] == "lm"


def test_presets_name_registered_language_methods_with_arguments_they_accept():
    for name, args in demo.PRESETS.items():
        cls = registered()[name]
        assert "language" in cls.tasks
        cls(**args)                                                   # unknown or bad arguments raise here
    assert set(demo.PRESETS) <= set(demo.language_methods())


@pytest.mark.parametrize("options, message", [
    (dict(methods="nope"), "unknown method 'nope'"),
    (dict(methods="retrain"), "retrain is the oracle"),
    (dict(methods="finetune"), "method 'finetune' unlearns classification"),
    (dict(methods="npo,npo"), "names 'npo' twice"),
    (dict(seeds=0), "seeds must be an integer in 1..100"),
    (dict(epochs=0), "epochs must be an integer in 1.."),
    (dict(trials=3), "give it together with tune"),
    (dict(max_examples=0), "max_examples must be an integer >= 1"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        demo.run_demo(tmp_path / "d", **options)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("argv, message", [
    (["demo", "--task", "lm", "--methods", "nope"], "unknown method 'nope'"),
    (["demo", "--task", "vision"], "--task 'vision' is not allowed; expected digits, lm or diffusion"),
    (["demo", "--task", "lm", "--model", "cnn"], "--model applies to the digits demo"),
    (["demo", "--task", "lm", "--seeds", "0"], "seeds must be"),
    (["demo", "--task", "lm", "--trials", "2"], "give it together with tune"),
])
def test_bad_command_lines_are_one_line_and_exit_2(tmp_path, store, capsys, argv, message):
    assert main(argv + ["--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "d").exists()
    with RunStore(store) as db:
        assert db.runs() == []


def test_methods_for_another_kind_of_model_are_skipped_with_the_reason():
    names, skipped = demo.runnable(["npo", "uoe", "rmu"])
    assert names == ["npo", "rmu"] and "mixture-of-experts" in skipped["uoe"]
    if "uoe" in registered():
        assert "uoe" in demo.language_methods()
        with pytest.raises(ValueError, match="mixture-of-experts"):
            demo.check_options(methods="uoe")


def test_language_verdicts_read_the_tofu_scores_in_points():
    from expunge.verdict import judge, noise_floor, oracle_pairs, task_of

    a = {"forget_prob": 0.10, "forget_rouge": 0.20, "forget_truth_ratio": 0.60, "retain_prob": 0.90,
         "retain_rouge": 0.80, "retain_truth_ratio": 0.40, "model_utility": 0.50}
    b = dict(a, forget_prob=0.12, retain_rouge=0.83)
    assert task_of(a) == "language"
    (pair,) = oracle_pairs([a, b])
    assert pair["gap_forget_prob"] == pytest.approx(2.0) and pair["gap_retain_rouge"] == pytest.approx(3.0)
    assert pair["avg_gap"] == pytest.approx(5.0 / 6)
    floor = noise_floor([pair], a)
    assert floor.of("forget_prob") == pytest.approx(2.0) and floor.of("forget_rouge") == 0.5   # at least 0.5 points
    gaps = lambda **g: {f"gap_{k}": v for k, v in g.items()} | {"forget_prob": 0.1}
    original = gaps(forget_prob=80.0, forget_rouge=70.0, forget_truth_ratio=30.0)
    forgot = judge(gaps(forget_prob=1.0, forget_rouge=0.5, forget_truth_ratio=0.5, retain_prob=0.5, retain_rouge=0.5,
                        model_utility=0.5), original, floor)
    assert forgot.short == "forgot, kept"
    broke = judge(gaps(forget_prob=1.0, forget_rouge=0.5, forget_truth_ratio=0.5, retain_prob=40.0,
                       retain_rouge=0.5, model_utility=0.5), original, floor)
    assert broke.short == "forgot, did not keep" and "retain answer probability" in broke.text
