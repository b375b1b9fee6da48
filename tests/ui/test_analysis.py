"""The comparator's views: linear CKA's known answers, class-wise accuracies that agree with expunge.evaluate,
prediction matrices, projections sharing one sample across models, thumbnails, attack values checked against an
independent computation, the audit's per-example evidence, and the cache."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from expunge import evaluate, load_model
from expunge.data.datasets import features, targets
from expunge.ui import analysis as A
from expunge.ui.sources import Workspace, cache_dir
from tests.ui.builders import small_workspace


@pytest.fixture(scope="module")
def ws():
    return Workspace([small_workspace().root])


def _row(ws, method, scenario="random 10%", kind="bench"):
    return next(r for r in ws.experiments() if r["kind"] == kind and r["method"] == method
                and (kind != "bench" or r["scenario"] == scenario))


# ---------------------------------------------------------------------------------------------------------- CKA
@pytest.mark.parametrize("p", [8, 700])       # features fewer and more than examples: both formulas
def test_linear_cka_known_answers(p):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, p))
    assert A.linear_cka(x, x) == pytest.approx(1.0)
    q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    assert A.linear_cka(x, 3.5 * x @ q + 2.0) == pytest.approx(1.0)     # orthogonal, isotropic scale, shift
    if p < 50:      # unrelated features: near 0 when there are far more examples than features
        assert A.linear_cka(x, rng.normal(size=(500, p))) < 0.05
    assert A.linear_cka(x[:, :1], x[:, :1] ** 3) < 1.0
    assert np.isnan(A.linear_cka(x, np.ones((500, 3))))


def test_linear_cka_formulas_agree_and_match_the_definition():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 30)), rng.normal(size=(40, 60))
    h = np.eye(40) - 1.0 / 40
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    hsic = lambda a, b: np.trace(a @ b)
    want = hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))
    assert A.linear_cka(x, y) == pytest.approx(want)                   # example-space formula (60 > 40)
    small = x[:, :20]
    padded = np.concatenate([small, np.zeros((40, 50))], axis=1)      # zero columns change nothing
    assert A.linear_cka(small, y) == pytest.approx(A.linear_cka(padded, y))   # feature- vs example-space


def test_cka_of_a_model_with_itself_is_one_and_the_original_differs(ws):
    oracle = A.cka(ws, _row(ws, "oracle")["id"])
    assert oracle["layers"] == ["features.1", "head"]
    assert oracle["vs_oracle"] == pytest.approx([1.0, 1.0])
    assert all(0 < v < 0.999 for v in oracle["vs_original"])
    ft = A.cka(ws, _row(ws, "finetune")["id"])
    assert ft["splits"]["forget"]["vs_original"] is not None and ft["n"] == {"forget": 144, "retain": 356}


def test_activations_cover_linear_convolution_and_block_outputs_once_each():
    from expunge.models import build_model

    torch.manual_seed(0)
    resnet = build_model("resnet18", sample_shape=(3, 32, 32), num_outputs=10, width=8)
    acts = A.activations(resnet, torch.randn(6, 3, 32, 32))
    blocks = [n for n, m in resnet.named_modules() if type(m).__name__ == "BasicBlock"]
    assert set(blocks) <= set(acts) and "head" in acts and "features.0" in acts
    assert all(len(a) == 6 and a.shape[1] <= A.CKA_MAX_FEATURES for a in acts.values())
    big = build_model("cnn", sample_shape=(3, 64, 64), num_outputs=10, width=32)
    first = A.activations(big, torch.randn(4, 3, 64, 64))["features.0"]      # 32 x 64 x 64 values, pooled
    assert first.shape == (4, 32 * 11 * 11)
    shared = torch.nn.Linear(5, 5)
    twice = torch.nn.Sequential(shared, torch.nn.ReLU(), shared, torch.nn.Linear(5, 2))
    assert list(A.activations(twice, torch.randn(3, 5))) == ["3"]      # a layer run twice has no one output


# ------------------------------------------------------------------------------------------ class-wise, matrix
def test_classwise_accuracies_agree_with_evaluate(ws):
    row = _row(ws, "finetune")
    data = ws.data(row["id"])
    view = A.classwise(ws, row["id"])
    assert view["classes"] == [str(c) for c in range(10)]
    for role in ("model", "oracle", "original"):
        scores = evaluate(ws.model(row["id"], role), forget=data.forget, retain=data.retain, test=data.test)
        for split, key in (("forget", "forget_acc"), ("retain", "retain_acc"), ("test", "test_acc")):
            acc, n = view["splits"][split][role], view["counts"][split]
            mean = sum(a * c for a, c in zip(acc, n) if a is not None) / sum(n)
            assert mean == pytest.approx(scores[key], abs=1e-4), (role, split)
    one = A.classwise(ws, _row(ws, "finetune", "class 3")["id"])
    assert one["counts"]["forget"][3] == sum(one["counts"]["forget"])
    assert [a is None for a in one["splits"]["forget"]["model"]] == [c != 3 for c in range(10)]


def test_prediction_matrix_counts_true_against_predicted(ws):
    row = _row(ws, "gradient_ascent")
    data = ws.data(row["id"])
    m = A.matrix(ws, row["id"], split="test")
    pred = ws.model(row["id"], "oracle")(features(data.test)).argmax(-1)
    y = targets(data.test)
    want = [[int(((y == i) & (pred == j)).sum()) for j in range(10)] for i in range(10)]
    assert m["oracle"] == want and m["split"] == "test"
    assert sum(map(sum, m["model"])) == len(data.test)
    with pytest.raises(ValueError, match="split"):
        A.matrix(ws, row["id"], split="train")


# -------------------------------------------------------------------------------------------------- projection
def test_projection_shares_its_sample_across_models_and_holds_every_forget_example(ws):
    a, b = _row(ws, "finetune"), _row(ws, "gradient_ascent")
    pa = A.projection(ws, a["id"], method="pca", n=300)
    pb = A.projection(ws, b["id"], method="pca", n=300)
    po = A.projection(ws, a["id"], method="pca", n=300, role="oracle")
    assert pa["index"] == pb["index"] == po["index"] and len(pa["index"]) == 300
    assert np.asarray(pa["points"]).shape == (300, 2)
    for key in ("label", "forget", "predicted"):
        assert len(pa[key]) == 300
    forget = set(ws.data(a["id"]).forget_index)
    assert sum(pa["forget"]) == len(forget) == 144 and forget <= set(pa["index"])
    assert [i in forget for i in pa["index"]] == pa["forget"] and pa["images"] is True
    assert pa["points"] != pb["points"]
    t = A.projection(ws, a["id"], method="tsne", n=120)
    assert np.asarray(t["points"]).shape == (120, 2) and np.isfinite(t["points"]).all()
    assert sum(t["forget"]) == 90            # at most three quarters of the sample when the forget set is larger
    with pytest.raises(ValueError, match="method"):
        A.projection(ws, a["id"], method="lda")
    with pytest.raises(ValueError, match="from 2 to 2000"):
        A.projection(ws, a["id"], n=2001)


def test_thumbnails_are_pngs_of_the_training_images(ws):
    from PIL import Image

    row = _row(ws, "finetune")
    data = ws.data(row["id"])
    png = A.thumb(ws, row["id"], 7)
    img = np.asarray(Image.open(io.BytesIO(png)))
    assert img.shape == (32, 32)
    x = features(data.train)[7, 0]
    want = ((x - x.min()) / (x.max() - x.min()) * 255).round().to(torch.uint8).numpy()
    assert (img[::4, ::4] == want).all()
    assert A.thumb(ws, row["id"], len(data.train)) is None and A.thumb(ws, row["id"], -1) is None
    from expunge import split_forget
    from expunge.data import generated_classification

    tab, tab_test = generated_classification(n=50, seed=0)
    forget, retain = split_forget(tab, fraction=0.2, seed=0)
    stub = _Stub(_experiment_data(tab, tab_test, forget, retain, "classification"), {})
    assert A.thumb(stub, "table", 3) is None                          # not images
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert (np.asarray(Image.open(io.BytesIO(A.png(rgb)))) == rgb).all()


# ------------------------------------------------------------------------------------------------------ attack
def test_attack_values_are_finite_and_the_oracles_match_an_independent_computation(ws):
    row = _row(ws, "finetune")
    view = A.attack(ws, row["id"])
    data = ws.data(row["id"])
    assert view["index"] == data.forget_index and view["audit"] is None
    for role in ("model", "oracle"):
        for key in ("entropy", "confidence"):
            values = np.asarray(view["forget"][role][key])
            assert values.shape == (144,) and np.isfinite(values).all()
    oracle_file = small_workspace().bench / "cache" / "oracle" / (_row(ws, "oracle")["id"].split(":")[-1]
                                                                  + ".safetensors")
    with torch.no_grad():
        p = torch.softmax(load_model(oracle_file)(features(data.forget)).double(), -1)
    y = targets(data.forget).long()
    assert view["label"] == y.tolist()
    # confidence is p_y, the true class's probability (expunge.metrics.scores.confidence), not the highest one
    assert view["forget"]["oracle"]["confidence"] == pytest.approx(p[torch.arange(len(y)), y].tolist(), abs=1e-6)
    wrong = p.argmax(-1) != y
    assert wrong.any() and (np.asarray(view["forget"]["oracle"]["confidence"])[wrong.numpy()]
                            < p.max(-1).values[wrong].numpy() - 1e-6).all()
    assert view["forget"]["oracle"]["entropy"] == pytest.approx((-(p * p.log()).sum(-1)).tolist(), abs=1e-6)
    assert view["forget"]["model"]["entropy"] != view["forget"]["oracle"]["entropy"]


def test_attack_shows_the_audit_of_the_same_request(ws):
    import json

    run = _row(ws, "finetune", kind="run")
    view = A.attack(ws, run["id"])
    audit = json.loads((small_workspace().audit / "audit.json").read_text())
    assert [e["index"] for e in view["audit"]["examples"]] == audit["examples"]["index"]
    assert sorted(e["index"] for e in view["audit"]["examples"]) == sorted(view["index"])
    assert [e["epsilon"] for e in view["audit"]["examples"]] == audit["examples"]["epsilon"]
    assert view["audit"]["most_exposed"] == [d["index"] for d in audit["most_exposed"]]


# ------------------------------------------------------------------------------------------------------- cache
def test_views_are_cached_in_memory_and_on_disk(ws, monkeypatch, tmp_path):
    monkeypatch.setenv("EXPUNGE_CACHE", str(tmp_path / "cache"))     # nothing computed before, by any test
    A.clear_memory()
    row = _row(ws, "gradient_ascent", "class 3")
    first = A.classwise(ws, row["id"])
    assert A.classwise(ws, row["id"]) is first
    assert any((cache_dir() / "views").glob("*.json"))
    points = A.projection(ws, row["id"], method="pca", n=200)
    A.clear_memory()
    monkeypatch.setattr(A, "_predictions", lambda *a: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert A.classwise(ws, row["id"]) == first          # read back from disk
    monkeypatch.setattr(ws, "data", lambda id: (_ for _ in ()).throw(AssertionError("data rebuilt")))
    assert A.projection(ws, row["id"], method="pca", n=200) == points     # no sample drawn before the lookup
    with pytest.raises(AssertionError, match="recomputed|data rebuilt"):
        A.matrix(ws, row["id"], split="retain")


def test_parallel_requests_compute_each_view_once_and_agree(ws, monkeypatch, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("EXPUNGE_CACHE", str(tmp_path / "cache"))
    A.clear_memory()
    row = _row(ws, "finetune", "class 3")
    calls = []
    activations = A.activations
    monkeypatch.setattr(A, "activations", lambda *a, **k: calls.append(1) or activations(*a, **k))
    views = [lambda: A.cka(ws, row["id"]), lambda: A.classwise(ws, row["id"])] * 4
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda view: view(), views))
    ckas, classwises = results[0::2], results[1::2]
    assert ckas[0]["layers"] == ["features.1", "head"] and all(c == ckas[0] for c in ckas)
    assert all(c == classwises[0] for c in classwises) and classwises[0]["splits"]["forget"]["model"]
    assert len(calls) == 3          # the model, the original and the oracle, once: later requests read the cache


def test_an_empty_view_is_not_cached(tmp_path, monkeypatch):
    from expunge import split_forget
    from expunge.data import generated_classification

    class Matmul(torch.nn.Module):          # no layer CKA looks at
        def __init__(self, seed):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(20, 4, generator=torch.Generator().manual_seed(seed)))

        def forward(self, x):
            return x.flatten(1) @ self.w

    monkeypatch.setenv("EXPUNGE_CACHE", str(tmp_path / "cache"))
    train, test = generated_classification(n=60, seed=0)        # 20 features, 4 classes
    forget, retain = split_forget(train, fraction=0.2, seed=0)
    stub = _Stub(_experiment_data(train, test, forget, retain, "classification"),
                 {"model": Matmul(0), "original": Matmul(1), "oracle": Matmul(2)})
    calls = []
    activations = A.activations
    monkeypatch.setattr(A, "activations", lambda *a, **k: calls.append(1) or activations(*a, **k))
    assert A.cka(stub, "no-layers")["layers"] == []
    assert A.cka(stub, "no-layers")["layers"] == [] and len(calls) == 6      # computed again, not cached
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_a_prediction_beyond_the_datas_classes_keeps_its_own_column(tmp_path, monkeypatch):
    from expunge import split_forget
    from expunge.data import generated_classification

    monkeypatch.setenv("EXPUNGE_CACHE", str(tmp_path / "cache"))
    train, test = generated_classification(n=60, seed=0)        # 20 features, 4 classes
    forget, retain = split_forget(train, fraction=0.2, seed=0)
    wide = torch.nn.Linear(20, 6)                 # two outputs more than the data's classes
    with torch.no_grad():
        wide.weight.zero_()
        wide.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0]))     # always predicts class 5
    stub = _Stub(_experiment_data(train, test, forget, retain, "classification"), {"model": wide})
    m = A.matrix(stub, "wide", split="retain")
    y = targets(retain).long()
    assert m["classes"] == ["0", "1", "2", "3", "4", "5"] and np.asarray(m["model"]).shape == (6, 6)
    assert [r[5] for r in m["model"]] == [int((y == c).sum()) for c in range(4)] + [0, 0]
    assert sum(map(sum, m["model"])) == len(retain) and m["oracle"] is None


def test_the_attack_view_follows_a_rewritten_audit(ws, monkeypatch, tmp_path):
    import json
    import shutil

    monkeypatch.setenv("EXPUNGE_CACHE", str(tmp_path / "cache"))
    A.clear_memory()
    run = _row(ws, "finetune", kind="run")
    audit = tmp_path / "audit.json"
    shutil.copyfile(ws.audit_file(run["id"]), audit)
    monkeypatch.setattr(ws._entry(run["id"]), "audit", audit)
    before = [e["epsilon"] for e in A.attack(ws, run["id"])["audit"]["examples"]]
    record = json.loads(audit.read_text())
    record["examples"]["epsilon"] = [0.25] * len(before)
    audit.write_text(json.dumps(record))              # the same path, other contents
    after = [e["epsilon"] for e in A.attack(ws, run["id"])["audit"]["examples"]]
    assert after == [0.25] * len(before) != before


class _Trap:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_replaced_model_file_is_checked_again_not_served_from_the_cache(tmp_path, monkeypatch):
    import pickle
    import shutil

    monkeypatch.setenv("EXPUNGE_CACHE", str(tmp_path / "cache"))
    A.clear_memory()
    shutil.copytree(small_workspace().bench, tmp_path / "bench")
    ws = Workspace([tmp_path / "bench"])
    row = next(r for r in ws.experiments() if r["method"] == "finetune")
    assert A.classwise(ws, row["id"])["splits"]["forget"]["model"]        # computed and cached
    model = tmp_path / "bench" / "cache" / "unlearn" / (row["id"].split(":")[-1] + ".safetensors")
    marker = tmp_path / "unpickled"
    model.write_bytes(pickle.dumps(_Trap(marker)))     # its sidecar, and the checksum it records, unchanged
    with pytest.raises(ValueError, match="pickle"):
        A.classwise(ws, row["id"])
    assert not marker.exists()


# ----------------------------------------------------------------------------------------- language, generation
class _Stub:
    """A workspace of one experiment given as models and data (the views read nothing else)."""

    def __init__(self, data, models):
        self._data, self._models = data, models

    def data(self, id):
        return self._data

    def model(self, id, role="model"):
        return self._models[role]

    def has(self, id, role):
        return role in self._models

    def fingerprint(self, id, role="model"):
        return f"{id}-{role}"

    def key(self, id):
        return id

    def audit_file(self, id):
        return None


def _experiment_data(train, test, forget, retain, task):
    from expunge.ui.sources import ExperimentData

    return ExperimentData(train, test, forget, retain, list(forget.indices), list(retain.indices), task)


def test_facts_show_each_models_answers_and_the_models_tofu_scores(tmp_path):
    pytest.importorskip("transformers")
    from expunge.lm.evaluate import evaluate_language
    from expunge.lm.metrics import truth_score_forget
    from tests.lm_helpers import tiny_qa_task

    t = tiny_qa_task()
    ws = _Stub(_experiment_data(t.data, t.holdout, t.forget, t.retain, "language"),
               {"model": t.original, "original": t.original, "oracle": t.oracle})
    view = A.facts(ws, "lm-facts-test")
    rows = view["facts"]
    assert [r["question"] for r in rows] == [r["question"] for r in t.forget.dataset.records
                                            if r["author"] in (0, 1, 2)]
    assert [r["model"] for r in rows] == [r["original"] for r in rows]      # the model is the original here
    assert sum(r["model"] == r["answer"] for r in rows) > sum(r["oracle"] == r["answer"] for r in rows)
    scores = evaluate_language(t.original, forget=t.forget, retain=t.retain)
    assert np.mean([r["probability"] for r in rows]) == pytest.approx(scores["forget_prob"], rel=1e-6)
    assert truth_score_forget([r["truth_ratio"] for r in rows]) == pytest.approx(scores["forget_truth_ratio"])
    assert all(np.isfinite(r["mink_pp"]) for r in rows)


def test_sample_grids_draw_every_class_from_the_same_noise():
    pytest.importorskip("diffusers")
    import base64

    from PIL import Image

    from expunge import gen
    from expunge.data import digits, for_generation, split_forget
    from expunge.gen.report import grid_pixels

    train, test = digits()
    train, test = for_generation(train), for_generation(test)
    forget, retain = split_forget(train, classes=[1])
    a, b = gen.gan(10, seed=0), gen.gan(10, seed=1)
    ws = _Stub(_experiment_data(train, test, forget, retain, "generation"), {"model": a, "original": a, "oracle": b})
    view = A.samples(ws, "gen-samples-test", per_class=2)
    assert view["classes"] == [str(c) for c in range(10)]
    images = {}
    for role in ("model", "original", "oracle"):
        uri = view["grids"][role]
        assert uri.startswith("data:image/png;base64,")
        images[role] = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
        assert images[role].shape[:2][::-1] == grid_pixels(1, 10, 2)
    from expunge.gen.report import CELL_PX, LABEL_PX, TITLE_PX

    cells = {r: im[TITLE_PX:TITLE_PX + 10 * CELL_PX, LABEL_PX:LABEL_PX + 2 * CELL_PX] for r, im in images.items()}
    assert (cells["model"] == cells["original"]).all()       # the same model and the same noise
    assert not (cells["model"] == cells["oracle"]).all()
