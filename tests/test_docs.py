"""README and the architecture page stay true to the code."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

import expunge

ROOT = Path(__file__).resolve().parents[1]


def test_readme_has_a_row_for_every_registered_method():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in expunge.methods() if f"| `{name}` |" not in readme]
    assert not missing, f"README's method tables lack rows for {missing}"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()
    assert any("expunge demo" in c and "constraints.txt" in c for c in commands)


def test_architecture_page_names_existing_modules():
    page = (ROOT / "docs" / "architecture.md").read_text()
    src = ROOT / "src" / "expunge"
    named = {n for n in re.findall(r"`((?:[a-z_]+/)?[a-z_]+(?:\.py|/))`", page) if not n.startswith("src/")}
    assert named, "the architecture page names no modules"
    # a bare file name (``scores.py`` in the metrics row) may live in any sub-package
    missing = sorted(n for n in named if not (src / n).exists() and not any(src.rglob(n.rstrip("/"))))
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def _results(name: str) -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())


def test_readme_digits_benchmark_table_is_the_committed_result():
    readme = (ROOT / "README.md").read_text()
    results = _results("digits")
    spec = importlib.util.spec_from_file_location("readme_digits_table", ROOT / "benchmarks" / "readme_digits_table.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    lines = tables.table(results)
    assert len(lines) == 2 + 2 + 16          # header, rule, do nothing, noise floor, every classification method
    assert "\n".join(lines) in readme, "README's digits table disagrees with digits.json; " \
        "rewrite it with python benchmarks/readme_digits_table.py"
    assert f"{results['jobs']['total']} jobs in {results['wall_seconds']:.0f} s" in readme


def test_readme_audit_table_is_the_committed_result():
    readme = (ROOT / "README.md").read_text()
    data = _results("digits_audit")
    s = data["summary"]
    f = lambda key, digits: f"{s[key]:.{digits}f}"
    both = lambda a, b, digits: f"{f(a, digits)} / {f(b, digits)}"
    expected = [
        f"| challenge F | {f('challenge_forget_quality', 3)} | {f('challenge_baseline_forget_quality', 3)} |",
        f"| KLoM forget, mean / p95 | {both('klom_forget_mean', 'klom_forget_p95', 2)} | "
        f"{both('klom_baseline_forget_mean', 'klom_baseline_forget_p95', 2)} |",
        f"| U-LiRA accuracy / AUC | {both('ulira_accuracy', 'ulira_auc', 3)} | "
        f"{both('ulira_baseline_accuracy', 'ulira_baseline_auc', 3)} |",
        f"| U-LiRA TPR at 1% / 0.1% FPR | {f('ulira_tpr_at_1pct', 2)} / {f('ulira_tpr_at_0_1pct', 3)} | "
        f"{both('ulira_baseline_tpr_at_1pct', 'ulira_baseline_tpr_at_0_1pct', 3)} |",
        f"| challenge F, NeurIPS 2023 protocol | {f('challenge_neurips2023_forget_quality', 3)} | "
        f"{f('challenge_baseline_forget_quality', 3)} |",
        f"| retain leakage AUC, unlearned − oracles (band) | {f('retain_leakage_auc_difference', 3)} | "
        f"{f('retain_leakage_auc_band_low', 3)} to {f('retain_leakage_auc_band_high', 3)} |",
        f"| SWAP advantage (95% interval) | {f('swap_advantage', 3)} ({f('swap_advantage_ci_low', 3)} to "
        f"{f('swap_advantage_ci_high', 3)}) | {f('swap_advantage_baseline', 3)} "
        f"({f('swap_advantage_baseline_ci_low', 3)} to {f('swap_advantage_baseline_ci_high', 3)}) |",
        f"| SWAP advantage scaled (0 = retraining, 1 = kept the data) | {f('swap_advantage_scaled', 2)} "
        f"({f('swap_advantage_scaled_ci_low', 2)} to {f('swap_advantage_scaled_ci_high', 2)}) | – |",
        f"{data['meta']['wall seconds']:.0f} s on one core",
        f"F is about {s['challenge_baseline_forget_quality']:.2f} even for exact retraining at K = {data['n_models']}",
    ]
    for text in expected:
        assert text in readme, f"README's audit numbers disagree with digits_audit.json: {text}"
    assert data["meta"]["config"] == "examples/digits_audit.yaml" and data["method"] == "finetune"


def test_readme_task_audit_table_is_the_committed_results():
    readme = (ROOT / "README.md").read_text()
    lm, gan = _results("authors_audit"), _results("digits_gan_audit")
    a, g = lm["summary"], gan["summary"]
    f = lambda s, key, digits: f"{s[key]:.{digits}f}"
    pair = lambda s, x, y: f"{f(s, x, 3)} / {f(s, y, 3)}"
    expected = [
        f"| challenge F | {f(a, 'challenge_forget_quality', 3)} | {f(a, 'challenge_baseline_forget_quality', 3)} | "
        f"{f(g, 'challenge_forget_quality', 3)} | {f(g, 'challenge_baseline_forget_quality', 3)} |",
        f"| U-LiRA accuracy / AUC | {pair(a, 'ulira_accuracy', 'ulira_auc')} | "
        f"{pair(a, 'ulira_baseline_accuracy', 'ulira_baseline_auc')} | {pair(g, 'ulira_accuracy', 'ulira_auc')} | "
        f"{pair(g, 'ulira_baseline_accuracy', 'ulira_baseline_auc')} |",
        f"| LiRA AUC of the audited model (target: held-out oracle) | {f(a, 'lira_auc', 3)} | "
        f"{f(a, 'lira_oracle_auc', 3)} | {f(g, 'lira_auc', 3)} | {f(g, 'lira_oracle_auc', 3)} |",
        f"| SWAP advantage scaled (0 = retraining, 1 = kept the data) | {f(a, 'swap_advantage_scaled', 2)} "
        f"({f(a, 'swap_advantage_scaled_ci_low', 2)} to {f(a, 'swap_advantage_scaled_ci_high', 2)}) | – | – | – "
        f"|",
        f"| U-LiRA AUC: permutation band over models (95%) | – | {f(a, 'ulira_band_low', 3)} to "
        f"{f(a, 'ulira_band_high', 3)} | – | {f(g, 'ulira_band_low', 3)} to {f(g, 'ulira_band_high', 3)} |",
        f"| challenge F: permutation band's low edge | – | {f(a, 'challenge_band_low', 3)} | – | "
        f"{f(g, 'challenge_band_low', 3)} |",
        f"{lm['meta']['wall seconds']:.0f} s wall on 2 cores", f"{gan['meta']['wall seconds']:.0f} s\nwall on 2 cores",
        f"accuracy to {f(a, 'unlearned_retain_acc', 1)}% against {f(a, 'oracle_retain_acc', 1)}%",
        f"(0.5 expected) shows how far", f"correspondingly wide ({f(g, 'ulira_band_low', 3)} to "
        f"{f(g, 'ulira_band_high', 3)}), and the method's U-LiRA\nAUC of {f(g, 'ulira_auc', 3)} lies inside it",
        f"F ({f(g, 'challenge_forget_quality', 3)}) lies just above its band's low edge "
        f"({f(g, 'challenge_band_low', 3)})",
        f"falls to {f(a, 'unlearned_forget_acc', 1)}% against the oracles' {f(a, 'oracle_forget_acc', 1)}% (the "
        f"originals' {f(a, 'original_forget_acc', 1)}%)",
        f"the oracles' AUC is {f(a, 'retain_leakage_oracle_auc', 3)}",
        f"16 × {gan['sizes']['forget']} model-image pairs",
        f"(unlearning accuracy {f(g, 'unlearning_accuracy', 1)}% against the oracle's "
        f"{f(g, 'reference_unlearning_accuracy', 1)}%)",
        f"SWAP advantage is {f(g, 'swap_advantage_original', 3)}",
        f"the U-LiRA baseline of {f(g, 'ulira_baseline_auc', 3)}",
    ]
    for text in expected:
        assert text in readme, f"README's language/generation audit numbers disagree with the committed results: {text}"
    assert lm["meta"]["config"] == "examples/authors_audit.yaml" and lm["method"] == "npo" and lm["task"] == "language"
    assert gan["meta"]["config"] == "examples/digits_gan_audit.yaml" and gan["task"] == "generation"
    assert lm["n_models"] == gan["n_models"] == 16 and "swap_advantage_scaled" not in g
    assert lm["verdict"].startswith("Verdict (tier 1): DISTINGUISHABLE") and "U-LiRA AUC" in lm["verdict"]
    assert gan["verdict"].startswith("Verdict (tier 1): not distinguishable") and 'the verdict says "not ' in readme
    samples = gan["verdict"].split("; ")[-1].rstrip(".").split(" (tier 0)")[0]
    assert samples.startswith("its samples are another matter") and f'("{samples}")' in " ".join(readme.split())
    # the configs' comments state the same wall time as README
    for data, config in ((lm, "authors_audit"), (gan, "digits_gan_audit")):
        comment = (ROOT / "examples" / f"{config}.yaml").read_text()
        assert f"({data['meta']['wall seconds']:.0f} s wall on 2 cores shared with other jobs)" in comment


def test_readme_measured_table_is_the_committed_results():
    readme = (ROOT / "README.md").read_text()
    sci = lambda x, digits: f"{x:.{digits}e}".replace("e-0", "e-")
    grads, ens, sisa = _results("per_sample_grads"), _results("ensembles"), _results("sisa")
    ens2 = _results("ensembles_threads2")
    acc = {s["shards"]: s["test_accuracy"] for s in sisa["accuracy"]["sisa"]}
    expected = [
        f"{grads['speedup']:.1f}× faster, largest relative difference {sci(grads['max_rel_diff'], 1)}",
        f"{ens['cost_ratio']:.1f}× the time of one (64 one after another: {ens['sequential_ratio']:.1f}×)",
        f"within {sci(ens['max_abs_diff'], 0)} (median {sci(ens['median_abs_diff'], 0)})",
        f"{ens2['cost_ratio']:.1f}× the time of one (64 one after another: {ens2['sequential_ratio']:.1f}×;",
        f"the CNN {grads['models']['cnn']['matrix']['speedup']:.1f}×, the summed squares (Fisher) "
        f"{grads['models']['mlp']['streamed']['speedup']:.1f}×",
        f"{sisa['deletion']['speedup_measured']:.1f}× faster ({sisa['deletion']['speedup_predicted']:.1f}× predicted",
        f"test accuracy {acc[1]:.3f} at S=1, {acc[5]:.3f} at S=5, {acc[10]:.3f} at S=10 vs "
        f"{sisa['accuracy']['single_model_test_accuracy']:.3f} for one model",
    ]
    for text in expected:
        assert text in readme, f"README's measured table disagrees with benchmarks/results: {text}"


def _files_in_a_clone() -> set[str] | None:
    """Paths a clone would hold (tracked, or new and not ignored); None outside a git checkout."""
    import subprocess

    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return None
    files = {f for f in listed if f and (ROOT / f).exists()}
    return files | {str(Path(f).parent) + "/" for f in files} | {
        str(parent) + "/" for f in files for parent in Path(f).parents if str(parent) != "."}


def readme_pointers(readme: str) -> set[str]:
    """Repository paths README points to: paths under the repository's folders, Markdown links and root files;
    not places a command writes to (after ``--out``, or said to be not committed)."""
    pattern = r"(?<![\w/.-])((?:examples|benchmarks|docs|src|tests|\.ci)/[\w./-]*[\w/])"
    pointed = {m.group(1) for m in re.finditer(pattern, readme)
               if not readme[:m.start()].endswith("--out ") and "not committed" not in readme[m.end():m.end() + 20]}
    pointed |= set(re.findall(r"\]\(([^)#]+)\)", readme))                      # Markdown links
    pointed |= set(re.findall(r"`([\w-]+\.(?:txt|toml|cfg))`", readme))          # root files (constraints.txt)
    return pointed


def test_every_file_readme_points_to_exists_in_a_clone():
    pointed = readme_pointers((ROOT / "README.md").read_text())
    assert {"constraints.txt", "docs/architecture.md", "examples/digits_finetune.yaml"} <= pointed
    clone = _files_in_a_clone()
    exists = (lambda p: p in clone) if clone is not None else (lambda p: (ROOT / p).exists())
    missing = sorted(p for p in pointed if not exists(p))
    assert not missing, f"README points to files a clone does not have: {missing}"
    # the check tells a committed file from one a command writes and git ignores
    assert "benchmarks/results/digits/" not in pointed
    assert clone is None or "benchmarks/results/digits/report.md" not in clone


def test_readme_authors_benchmark_table_is_the_committed_result():
    readme = (ROOT / "README.md").read_text()
    results = _results("authors")
    spec = importlib.util.spec_from_file_location("readme_authors_table", ROOT / "benchmarks" / "readme_authors_table.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    lines = tables.table(results)
    assert len(lines) == 2 + 3 * (3 + 12)     # header, rule; per forget share: 3 reference rows and 12 method entries
    assert "\n".join(lines) in readme, "README's authors table disagrees with authors.json; " \
        "rewrite it with python benchmarks/readme_authors_table.py"
    assert f"{results['jobs']['total']} jobs in {results['wall_seconds']:.0f} s" in readme


def test_readme_fashion_mnist_benchmark_table_is_the_committed_result():
    readme = (ROOT / "README.md").read_text()
    results = _results("fashion_mnist")
    spec = importlib.util.spec_from_file_location("readme_fashion_table", ROOT / "benchmarks" / "readme_fashion_table.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    lines = tables.table(results)
    assert len(lines) == 2 + 2 + 15          # header, rule, do nothing, noise floor, the 15 methods it ran
    assert all("| – | – | – |" not in line for line in lines[4:]), "a method has no result in any scenario"
    assert "\n".join(lines) in readme, "README's Fashion-MNIST table disagrees with fashion_mnist.json; " \
        "rewrite it with python benchmarks/readme_fashion_table.py"
    assert f"{results['jobs']['total']} jobs in {results['wall_seconds']:.0f} s" in readme
    assert results["jobs"]["failed"] == 0


@pytest.mark.parametrize("name, methods, command", [
    ("digits_diffusion", 7, "python benchmarks/readme_diffusion_table.py"),
    ("digits_gan", 2, "python benchmarks/readme_diffusion_table.py digits_gan"),
])
def test_readme_generation_benchmark_tables_are_the_committed_results(name, methods, command):
    readme = (ROOT / "README.md").read_text()
    results = _results(name)
    spec = importlib.util.spec_from_file_location("readme_diffusion_table",
                                                  ROOT / "benchmarks" / "readme_diffusion_table.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    lines = tables.table(results)
    assert len(lines) == 2 + 3 + methods     # header, rule, do nothing, noise floor, oracle, the methods
    assert "\n".join(lines) in readme, f"README's table disagrees with {name}.json; rewrite it with {command}"
    assert f"{results['jobs']['total']} jobs in {results['wall_seconds']:.0f} s" in readme
    assert results["jobs"]["failed"] == 0


def test_readme_evidence_tables_are_the_committed_results():
    """The meta-evaluation's tables (benchmarks/evidence.py --table) as README shows them, and what they rest on:
    the four methods, retraining with no arguments (exact retraining), several repetitions, both datasets."""
    import sys

    readme = (ROOT / "README.md").read_text()
    spec = importlib.util.spec_from_file_location("benchmarks_evidence", ROOT / "benchmarks" / "evidence.py")
    evidence = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = evidence
    spec.loader.exec_module(evidence)
    flat = " ".join(readme.split())
    for name, label in (("digits", "digits"), ("fashion", "Fashion-MNIST")):
        results = _results(f"evidence_{name}")
        assert list(results["methods"]) == list(evidence.METHODS) and results["methods"]["retrain"] is None
        assert results["repetitions"] >= 2 and len(results["rows"]) == results["repetitions"]
        assert set(results["scores"]) == {s.key for s in evidence.SCORES}
        assert f"python benchmarks/evidence.py {name} --models {results['n_models']} --repeats " \
               f"{results['repetitions']}" in flat                               # the command, however wrapped
        assert f"{results['sharing']['separate_over_shared']:.1f} ({label})" in flat    # the measured saving
    minutes = [_results(f"evidence_{name}")["seconds"] / 60 for name in ("digits", "fashion")]
    assert f"in {minutes[0]:.0f} and {minutes[1]:.0f} minutes" in flat
    lines = evidence.tables()
    assert "\n".join(lines) in readme, "README's meta-evaluation tables disagree with benchmarks/results/" \
        "evidence_*.json; rewrite them with python benchmarks/evidence.py --table"


def _evidence_module():
    import sys

    spec = importlib.util.spec_from_file_location("benchmarks_evidence", ROOT / "benchmarks" / "evidence.py")
    evidence = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = evidence
    spec.loader.exec_module(evidence)
    return evidence


@pytest.mark.parametrize("name", ["digits", "fashion"])
def test_evidence_scores_are_those_of_the_stored_rows(name):
    """The stored scores are the meta-evaluation of the stored rows, and the rows' re-derived numbers (IAM's band,
    the verdict by the current rule) are what is stored: a stale JSON asks for --rescore."""
    evidence = _evidence_module()
    results = _results(f"evidence_{name}")
    again = lambda x: json.loads(json.dumps(evidence._clean(x)))      # as the JSON stores it
    assert again(evidence.rederive(results)) == results["rows"], \
        f"evidence_{name}.json's rows are stale (IAM band or verdict rule changed): run python " \
        f"benchmarks/evidence.py --rescore and --table"
    assert again(evidence.meta_evaluate(evidence.rederive(results))) == results["scores"], \
        f"evidence_{name}.json's scores are stale: run python benchmarks/evidence.py --rescore and --table"


def test_readme_evidence_reading_matches_the_results():
    """What README's reading of the meta-evaluation says, checked against the stored scores."""
    d, f = (_results(f"evidence_{n}")["scores"] for n in ("digits", "fashion"))
    leakage = {"retain_leakage", "retain_leakage_audited"}
    games = {"vulnerable_efficacy_auc", "vulnerable_privacy_auc", "population_efficacy_auc",
             "population_privacy_auc"}
    for scores in (d, f):                              # power: everything flags doing nothing but retain leakage
        assert all(s["power"] == 1.0 for k, s in scores.items() if k not in leakage)
        assert scores["retain_leakage_audited"]["power"] == 0.0
        assert scores["retain_leakage"]["flagged"]["random_label"] == 1.0
        assert all(s["retrain_closest"] for s in scores.values() if s["ranking"] is not None)
        assert scores["iam_completeness"]["nominal"] == pytest.approx(1 / 17)
        assert scores["iam_completeness"]["calibration"] == scores["iam_completeness"]["calibration_below"] == 0.0
        for k in ("ulira_auc", "lira_auc", "challenge_f", "challenge_f_neurips2023", "swap_advantage",
                  "klom_forget"):                    # the bands that state no rate never missed retraining
            assert scores[k]["nominal"] is None and scores[k]["calibration"] == scores[k]["calibration_below"] == 0
    assert d["retain_leakage"]["power"] == 0.0 and round(f["retain_leakage"]["power"] * 5) == 4
    assert all(s["calibration"] == 0.0 for s in d.values())
    below = {k: round(s["calibration_below"] * 10) for k, s in d.items() if s["calibration_below"]}
    assert below == {"vulnerable_efficacy_auc": 3, "vulnerable_privacy_auc": 1, "retain_leakage_audited": 1}
    above = {k: round(s["calibration"] * 5) for k, s in f.items() if s["calibration"]}
    assert above == {"vulnerable_efficacy_auc": 1, "vulnerable_privacy_auc": 1, "population_privacy_auc": 1}
    assert set(above) <= games and not any(s["calibration_below"] for s in f.values())
    ranked = {"challenge_f_neurips2023", "swap_advantage", "vulnerable_privacy_auc"}
    assert {k for k, s in d.items() if s["ranking"]} == ranked
    assert {k for k, s in f.items() if s["ranking"]} == ranked | {"lira_auc", "vulnerable_efficacy_auc",
                                                                   "population_privacy_auc"}
    two_sided = ("ulira_auc", "challenge_f", "klom_forget", "population_efficacy_auc")
    assert all(d[k]["values"]["random_label"] > d[k]["values"]["identity"] for k in two_sided)   # overshoot
    assert all(d[k]["below"]["random_label"] > 0.5 for k in ("lira_auc", "population_privacy_auc",
                                                              "iam_completeness"))
    assert all(d[k]["values"]["finetune"] > d[k]["values"]["identity"] for k in (*two_sided, "lira_auc"))
