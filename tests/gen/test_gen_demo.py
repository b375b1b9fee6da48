"""``expunge demo --task diffusion`` end to end on a tiny configuration, and its refusals."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("diffusers")

from expunge.cli import main  # noqa: E402
from expunge.gen import demo  # noqa: E402
from expunge.store import RunStore  # noqa: E402

TINY = dict(model={"widths": (8, 16), "T": 50}, recipe={"epochs": 2, "lr": 2e-3, "batch_size": 32}, n_images=64,
            samples_per_class=4, grid_per_class=2, attack=False, sample_steps=4,
            method_args={"gen_finetune": {"epochs": 1}, "gen_ga": {"epochs": 1}})


def test_the_demo_runs_end_to_end_and_writes_the_table_and_the_grids(tmp_path, monkeypatch, store, capsys):
    full, seen = demo.run_demo, []

    def tiny(*args, **kwargs):
        on_result = kwargs.pop("on_result")
        kwargs["on_result"] = lambda title, seed, r: (seen.append((title, seed, r)), on_result(title, seed, r))
        result = full(*args, **kwargs, **TINY)
        seen.append(result)
        return result

    monkeypatch.setattr(demo, "run_demo", tiny)
    out = tmp_path / "out"
    assert main(["demo", "--task", "diffusion", "--out", str(out), "--methods", "gen_finetune,gen_ga"]) == 0
    printed = capsys.readouterr().out
    assert "diffusion model" in printed and "oracle (target)" in printed and "seconds per phase" in printed
    result = seen[-1]
    assert [(t, s, r.method) for t, s, r in seen[:-1]] == [("forget digit 3", 0, "gen_finetune"),
                                                          ("forget digit 3", 0, "gen_ga")]
    assert result["methods"] == ["gen_finetune", "gen_ga"] and result["skipped"] == {}
    assert {"data", "original", "oracle", "noise-floor oracle", "method gen_finetune", "method gen_ga", "scoring",
            "sample grids", "reports"} == set(result["phases"])
    assert result["wall_seconds"] >= sum(result["phases"].values()) * 0.99
    (comp,) = result["sections"]["forget digit 3"]
    assert comp.oracle["avg_gap"] == 0.0 and comp.floor is not None and "avg_gap" in comp.floor
    for r in comp.results:
        assert 0.0 <= r.scores["unlearning_accuracy"] <= 100.0 and r.scores["n_samples"] == 40
    md = (out / "report.md").read_text()
    assert "| UA | retain gen acc |" in md and "| gen_ga" in md and "![sample grids](samples.png)" in md
    html = (out / "report.html").read_text()
    assert "<h2>Samples</h2>" in html and "data:image/png;base64," in html.split("<h2>Samples</h2>")[1]
    assert "http" not in html.split("<body>")[1]
    assert (out / "samples.png").read_bytes().startswith(b"\x89PNG")
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["scenarios"]["forget digit 3"]["mean"]) == {"original", "oracle (target)",
                                                                   "oracle, other seed (floor)", "gen_finetune",
                                                                   "gen_ga"}
    assert set(saved["scenarios"]["forget digit 3"]["verdicts"]) == {"gen_finetune", "gen_ga"}
    assert "sample grids" in saved["meta"]["phase seconds"]
    assert all(r.model.sample_steps == 4 for r in comp.results)


def test_every_diffusion_method_is_chosen_and_gan_only_ones_are_skipped():
    names = demo.check_options()
    run, skipped = demo.runnable(names)
    assert "retrain" not in names and set(run) == set(demo.diffusion_methods())
    assert "adapt_unlearn" in skipped and "gan" in skipped["adapt_unlearn"]
    assert {"gen_finetune", "gen_ga", "esd"} <= set(run)


@pytest.mark.parametrize("kwargs, match", [
    (dict(methods="nope"), "unknown method 'nope'"),
    (dict(methods="retrain"), "retrain is the oracle"),
    (dict(methods="finetune"), "diffusion one"),
    (dict(methods="adapt_unlearn"), "demo trains a diffusion model"),
    (dict(methods="gen_ga,gen_ga"), "twice"),
    (dict(seeds=0), "seeds must be"),
    (dict(epochs=0), "epochs must be"),
    (dict(forget_class=10), "forget_class must be"),
])
def test_bad_options_are_refused_before_any_work(kwargs, match):
    with pytest.raises(ValueError, match=match):
        demo.check_options(**kwargs)


def test_without_diffusers_the_demo_is_refused_in_one_line(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name, *a))
    with pytest.raises(ValueError, match=r"needs the gen extra: pip install 'expunge\[gen\]'"):
        demo.check_options()


def test_bad_knobs_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="n_images must be"):
        demo.run_demo(tmp_path / "o", n_images=3)
    with pytest.raises(ValueError, match="method_args names 'esd'"):
        demo.run_demo(tmp_path / "o", methods="gen_ga", method_args={"esd": {}})
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, message", [
    (["--methods", "nope"], "unknown method 'nope'"),
    (["--methods", "adapt_unlearn"], "demo trains a diffusion model"),
    (["--seeds", "0"], "seeds must be"),
    (["--epochs", "0"], "epochs must be an integer in 1.."),
    (["--model", "cnn"], "--model applies to the digits demo"),
    (["--tune"], "--tune and --trials apply"),
])
def test_the_cli_refuses_bad_options_in_one_line_with_exit_2(tmp_path, store, capsys, argv, message):
    assert main(["demo", "--task", "diffusion", "--out", str(tmp_path / "d")] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "d").exists()
    with RunStore(store) as db:
        assert db.runs() == []


def test_the_cli_names_diffusion_among_the_tasks(tmp_path, store, capsys):
    assert main(["demo", "--task", "video", "--out", str(tmp_path / "d")]) == 2
    assert "expected digits, lm or diffusion" in capsys.readouterr().err
