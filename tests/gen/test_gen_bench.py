"""Image generators through experiment configs and the bench: a tiny diffusion grid runs through ``expunge bench``
(original, oracle, the noise-floor oracle, tuning, two methods, verdicts), ``expunge run`` runs one generation
experiment, and configs that mix generators with other data or models are refused with one line naming the key."""
from __future__ import annotations

import copy
import json

import pytest

pytest.importorskip("diffusers")

from expunge.bench import expand, parse_bench  # noqa: E402
from expunge.bench.report import GRID_PER_CLASS, collect, sample_grid_plot  # noqa: E402
from expunge.bench.runner import ModelCache  # noqa: E402
from expunge.cli import main  # noqa: E402
from expunge.config import ConfigError, parse_config  # noqa: E402
from expunge.gen.diffusion import DiffusionModel  # noqa: E402
from expunge.gen.gan import ConditionalGAN  # noqa: E402
from expunge.gen.report import grid_pixels  # noqa: E402
from expunge.methods import registered  # noqa: E402
from expunge.verdict import FLOOR  # noqa: E402

TINY_UNET = {"name": "unet", "args": {"widths": [8, 16], "T": 50}}
TINY = {
    "name": "tiny-gen",
    "seeds": 1,
    "data": {"name": "digits", "generation": True},
    "model": TINY_UNET,
    "train": {"epochs": 2, "batch_size": 64},
    "scenarios": [{"name": "class 3", "classes": [3], "tune_on": {"classes": [5]}}],
    "methods": {"gen_rl": {"epochs": 1}, "esd": {"epochs": 1}},
    "tuning": {"trials": 1, "methods": ["gen_rl"], "space": {"gen_rl": {"lr": [1e-4]}}},
    "scoring": {"samples_per_class": 3},
}
RUN = {"name": "tiny-gen-run", "data": {"name": "digits", "generation": True}, "model": TINY_UNET,
       "train": {"epochs": 2, "batch_size": 64}, "forget": {"classes": [3]}, "method": "gen_rl",
       "args": {"epochs": 1}, "scoring": {"samples_per_class": 3}}


def tiny(base=TINY, **changes):
    cfg = copy.deepcopy(base)
    cfg.update(copy.deepcopy(changes))
    return cfg


def write(path, cfg):
    path.write_text(json.dumps(cfg))     # JSON is YAML
    return path


def test_tiny_diffusion_bench_runs_through_the_cli_to_rows_and_verdicts(tmp_path, store, capsys):
    out, summary = tmp_path / "out", tmp_path / "summary.json"
    config = write(tmp_path / "bench.yaml", tiny(out=str(out), summary=str(summary),
                                                 scoring={"samples_per_class": 3, "attack": False}))
    assert main(["bench", str(config), "--workers", "1"]) == 0
    grid = json.loads((out / "grid.json").read_text())
    # original; oracle and tuning oracle; 1 tuning; 2 methods + the second oracle of the noise floor
    assert sorted(j["kind"] for j in grid["jobs"]) == ["oracle", "oracle", "original", "tune", "unlearn",
                                                       "unlearn", "unlearn"]
    results = json.loads(summary.read_text())
    assert results["jobs"]["failed"] == 0
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == {"original", "oracle", FLOOR, "gen_rl", "esd"}
    for name in ("original", FLOOR, "gen_rl", "esd"):
        scores = rows[name]["mean"]
        assert 0.0 <= scores["unlearning_accuracy"] <= 100.0 and "avg_gap" in scores
        assert scores["n_samples"] == 30           # scoring.samples_per_class x 10 classes
        assert "attack_success" not in scores     # scoring.attack: false
    assert rows["gen_rl"]["tuned"]["best_args"]["lr"] == 1e-4
    from expunge.ui.sources import Workspace     # the comparator lists the cells: UA and RA are the generator's
    listed = {r["method"]: r for r in Workspace([out]).experiments()}
    assert listed["gen_rl"]["views"] == ["samples"] and listed["gen_rl"]["has_model"]
    assert listed["gen_rl"]["scores"]["ua"] == pytest.approx(rows["gen_rl"]["mean"]["unlearning_accuracy"])
    assert listed["gen_rl"]["scores"]["ra"] == pytest.approx(rows["gen_rl"]["mean"]["retain_generation_accuracy"])
    (section,) = results["verdicts"]
    assert set(section["verdicts"]) == {"gen_rl", "esd"} and section["noise_floor"]["oracle_pairs"] == 1
    md = (out / "report.md").read_text()
    assert "| UA | retain gen acc |" in md and "oracle, other seed (floor)" in md
    # the HTML splits the wide table in two and shows the seed-0 models' samples: original, methods, oracle
    page = (out / "report.html").read_text()
    assert page.count("<table>") == 2 and "<h3>Forgetting</h3>" in page and "alt='samples: digits: class 3'" in page
    grid = next((out / "plots").glob("*-samples.png")).read_bytes()
    assert png_size(grid) == grid_pixels(4, 10, GRID_PER_CLASS) and "plots/" in md.split("samples: digits")[1][:40]
    results = collect(out)                       # a model gone from the cache is left out and named
    (sec,), (cell,) = results.sections, results.grid.cells
    ModelCache(out / "cache").discard(results.grid.jobs[cell.unlearn["esd"]])
    png, caption = sample_grid_plot(results, sec, out)
    assert png_size(png) == grid_pixels(3, 10, GRID_PER_CLASS) and caption.endswith("Not in the model cache: esd.")


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_a_generation_experiment_runs_through_expunge_run(tmp_path, store, capsys):
    config = write(tmp_path / "run.yaml", RUN)
    assert main(["run", str(config), "--out", str(tmp_path / "models")]) == 0
    printed = capsys.readouterr().out
    assert "retain gen acc" in printed and "gen_rl" in printed and "oracle (target)" in printed
    assert (tmp_path / "models" / "gen_rl.safetensors").is_file()
    # the original and the oracle are saved beside it, so that the run's report shows their samples
    run_id = printed.split("Recorded as run ")[1].split(".")[0]
    report = tmp_path / "report"
    (tmp_path / "models" / "original.safetensors").unlink()
    assert main(["report", run_id, "--out", str(report)]) == 0
    page = (report / "report.html").read_text()
    assert "alt='sample grid: gen_rl, oracle'" in page and "Files gone: original." in page
    assert png_size((report / "samples.png").read_bytes()) == grid_pixels(2, 10, 8)


def test_the_original_recipe_is_the_models_own_under_the_configs_settings():
    unet = parse_bench(tiny()).setups[0]
    assert unet.task == "generation"
    expected = {**DiffusionModel.recipe_defaults, "epochs": 2, "batch_size": 64}
    assert {k: unet.recipe[k] for k in expected} == expected
    gan = parse_bench(tiny(model={"name": "gan"}, methods="all", tuning=None)).setups[0]
    assert {k: gan.recipe[k] for k in ConditionalGAN.recipe_defaults if k not in ("epochs", "batch_size")} == \
        {k: v for k, v in ConditionalGAN.recipe_defaults.items() if k not in ("epochs", "batch_size")}
    run = parse_config(tiny(RUN, train={"epochs": 3}))
    assert run.train.to_dict()["lr"] == DiffusionModel.recipe_defaults["lr"] and run.train.epochs == 3
    assert run.model["name"] == "unet" and run.scoring == {"samples_per_class": 3}
    assert parse_config(tiny(RUN, model=None)).model["name"] == "unet"      # the default on generation data


def test_methods_all_runs_the_methods_of_the_models_kind():
    known = registered()
    for model, kind in ((TINY_UNET, "diffusion"), ({"name": "gan"}, "gan")):
        spec = parse_bench(tiny(model=model, methods="all", tuning=None))
        chosen = spec.methods_for(spec.setups[0])
        expected = {n for n, cls in known.items() if "generation" in cls.tasks
                    and kind in getattr(cls, "kinds", ()) and n != "retrain"}
        assert set(chosen) == expected and chosen
        unlearns = {j.spec["method"] for j in expand(spec).jobs.values() if j.kind == "unlearn"}
        assert unlearns == expected | {"retrain"}     # retrain: the noise-floor oracle


@pytest.mark.parametrize("changes, path", [
    ({"model": {"name": "llama"}}, "model.name"),                                # a language model, generation data
    ({"data": {"name": "digits"}}, "model.name"),                                # a generator, classification data
    ({"model": {"name": "diffuser"}}, "model.name"),                             # unknown model
    ({"model": {"name": "unet", "args": {"size": 16}}}, "model.args.size"),      # size comes from the data
    ({"methods": ["adapt_unlearn"]}, "methods.adapt_unlearn"),                   # a GAN method on a diffusion model
    ({"methods": ["finetune"]}, "methods.finetune"),                             # a classification method
    ({"scoring": {"max_examples": 5}}, "scoring"),                               # language scoring
    ({"scoring": {"samples_per_class": 1}}, "scoring.samples_per_class"),
    ({"scoring": {"attack": "no"}}, "scoring.attack"),
    ({"data": {"name": "wine", "generation": True}}, "data.generation"),         # not images
    ({"data": {"name": "digits", "generation": {"size": 2}}}, "data.generation.size"),
    ({"data": {"name": "digits", "generation": {"colour": True}}}, "data.generation.colour"),
    ({"data": {"name": "digits", "generation": True, "standardise": "features"}}, "data.standardise"),
])
def test_bad_generation_benches_are_refused_naming_the_key(changes, path):
    with pytest.raises(ConfigError) as e:
        parse_bench(tiny(**changes))
    assert e.value.path == path and "\n" not in str(e.value)


@pytest.mark.parametrize("scoring", [{"samples_per_class": 3}, {"attack": False}])
def test_generation_scoring_is_refused_on_classification_data(scoring):
    with pytest.raises(ConfigError) as e:
        parse_bench(tiny(data={"name": "digits"}, model={"name": "mlp"}, methods=["finetune"], tuning=None,
                         scoring=scoring))
    assert e.value.path == "scoring" and "generation data" in str(e.value)


def test_scoring_attack_false_reaches_every_scoring_job_and_run():
    spec = parse_bench(tiny(scoring={"samples_per_class": 3, "attack": False}))
    scored = [j for j in expand(spec).jobs.values() if j.kind in ("oracle", "tune", "unlearn")]
    assert scored and all(j.spec["scoring"] == {"samples_per_class": 3, "attack": False} for j in scored)
    assert parse_config(tiny(RUN, scoring={"attack": False})).scoring == {"attack": False}


@pytest.mark.parametrize("command, changes, words", [
    ("run", {"model": {"name": "llama"}}, "generation data needs an image generator"),
    ("run", {"data": {"name": "digits"}}, "is an image generator and needs generation data"),
    ("run", {"model": {"name": "diffuser"}}, "unknown model 'diffuser'"),
    ("bench", {"model": {"name": "llama"}}, "generation data needs an image generator"),
    ("bench", {"data": {"name": "digits"}}, "is an image generator and needs generation data"),
    ("bench", {"model": {"name": "diffuser"}}, "unknown model 'diffuser'"),
])
def test_the_cli_refuses_bad_generation_configs_in_one_line(tmp_path, store, capsys, command, changes, words):
    config = write(tmp_path / "c.yaml", tiny(RUN if command == "run" else TINY, **changes,
                                             **({"out": str(tmp_path / "o")} if command == "bench" else {})))
    assert main([command, str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and err[0].startswith("error: config error at model.name")
    assert not (tmp_path / "o").exists()


def test_the_digits_diffusion_benchmark_config_is_valid():
    from pathlib import Path

    from expunge.bench import load_bench

    spec = load_bench(Path(__file__).parents[2] / "benchmarks" / "digits_diffusion.yaml")
    (setup,) = spec.setups
    assert setup.task == "generation" and setup.model["name"] == "unet" and spec.seeds == [0, 1, 2]
    assert [s.forget for s in spec.scenarios] == [{"classes": [1]}, {"classes": [3]}, {"classes": [8]}]
    known = registered()
    assert set(spec.methods_for(setup)) == {n for n, cls in known.items()
                                            if "diffusion" in getattr(cls, "kinds", ())}
    assert spec.floor_for(setup) and spec.scoring == {"samples_per_class": 20}
    grid = expand(spec)
    assert len(grid.by_stage("tune")) == len(spec.methods_for(setup))    # one tuning per method, shared by scenarios
