"""Experiment configs on the language task: text data (the authors corpus, a JSONL file) and language models (a
configuration built here, a local transformers directory) through ``expunge run``; forget requests by group; the
language training defaults; errors that name the key path."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from expunge.cli import main  # noqa: E402
from expunge.config import ConfigError, parse_config  # noqa: E402
from expunge.training import TASK_DEFAULTS  # noqa: E402

from tests.lm_helpers import facts, tokenizer  # noqa: E402

AUTHORS = {"name": "authors", "args": {"n_authors": 10, "attributes": 1, "world_facts": 3, "vocab_size": 300}}


@pytest.fixture(scope="module")
def local_files(tmp_path_factory):
    """A tiny Llama model and its tokenizer saved by transformers' own save_pretrained, and a JSONL file of facts
    with a string author key."""
    import transformers

    root = tmp_path_factory.mktemp("own")
    records = facts()
    tok = tokenizer(records)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    transformers.set_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    with (root / "facts.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps({**r, "author": f"person {r['author']}"}) + "\n")
    return root


def config(**changes):
    raw = {"data": dict(AUTHORS), "forget": {"group_fraction": 0.2}, "method": "grad_ascent"}
    raw.update(changes)
    return raw


@pytest.mark.parametrize("changes, path", [
    ({"model": {"name": "mlp"}}, "model.name"),
    ({"model": {"name": "llama", "args": {"width": 3}}}, "model.args.width"),
    ({"model": {"path": "no/such/dir"}}, "model.path"),
    ({"model": {"path": ".", "name": "llama"}}, "model.name"),
    ({"data": {"name": "authors", "args": {"writers": 3}}}, "data.args.writers"),
    ({"data": {"name": "authors", "test_fraction": 0.1}}, "data.test_fraction"),
    ({"data": {"jsonl": "facts.jsonl"}}, "data.tokenizer"),
    ({"data": {"jsonl": "missing.jsonl", "tokenizer": "model"}}, "data.jsonl"),
    ({"data": {"jsonl": "facts.jsonl", "tokenizer": "model", "max_length": 1}}, "data.max_length"),
    ({"data": {"jsonl": "facts.jsonl", "tokenizer": "model", "target": "y"}}, "data.target"),
    ({"data": {"name": "digits", "tokenizer": "model"}}, "data.tokenizer"),
    ({"data": {"name": "digits"}, "model": {"name": "llama"}}, "model.name"),
    ({"forget": {"group_fraction": 1.5}}, "forget.group_fraction"),
    ({"train": {"optimizer": "lion"}}, "train.optimizer"),
    ({"args": {"lora": {"rank": 4}}}, "args.lora"),
])
def test_errors_name_the_key_path(local_files, changes, path):
    with pytest.raises(ConfigError) as e:
        parse_config(config(**changes), base_dir=local_files)
    assert e.value.path == path, str(e.value)


def test_text_data_takes_a_language_model_and_the_language_recipe_by_default():
    cfg = parse_config(config(train={"epochs": 3}))
    assert cfg.model == {"name": "llama", "args": {}}
    defaults = TASK_DEFAULTS["language"]
    assert cfg.train.epochs == 3                                   # given
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.warmup) == (defaults["optimizer"], defaults["lr"],
                                                                      defaults["warmup"])
    classification = parse_config({"data": {"name": "digits"}, "forget": {"fraction": 0.1}, "train": {"epochs": 3}})
    assert classification.train.optimizer == "sgd"                 # other tasks keep their defaults


def test_group_fraction_forgets_whole_authors_never_the_world_facts():
    from expunge.experiment import draw_groups, load_data, make_split

    train, holdout = load_data(dict(AUTHORS), 0)
    groups = np.asarray(train.groups)
    forget, retain = make_split(train, {"group_fraction": 0.2, "seed": 3}, 0)
    gone = set(groups[forget.indices].tolist())
    assert len(gone) == 2 and -1 not in gone                       # 20% of 10 authors; world facts kept
    assert set(groups[retain.indices].tolist()).isdisjoint(gone)   # every row of a forgotten author goes
    assert (groups == -1).sum() > 0 and set(holdout.groups.tolist()).isdisjoint(groups.tolist())
    again, _ = make_split(train, {"group_fraction": 0.2, "seed": 3}, 0)
    assert again.indices == forget.indices                         # seeded
    other = set(draw_groups(train, 0.2, 9, avoid=[[0.2, 3]]).tolist())
    assert other.isdisjoint(gone) and len(other) == 2
    with pytest.raises(ValueError, match="only 0 of 10 are left"):
        draw_groups(train, 0.5, 0, avoid=[[0.5, 1], [0.5, 2], [0.5, 4], [0.5, 5]])


def test_local_model_and_jsonl_through_expunge_run(local_files, tmp_path, store, capsys):
    import expunge
    from expunge.lm import CausalLM

    cfg = {"data": {"jsonl": str(local_files / "facts.jsonl"), "tokenizer": str(local_files / "model"),
                    "group_key": "author", "test_fraction": 0.15},
           "model": {"path": str(local_files / "model")},
           "train": {"epochs": 8, "lr": 0.01, "batch_size": 24},
           "forget": {"groups": ["person 0", "person 1"]}, "method": "grad_ascent", "args": {"epochs": 1}}
    path = tmp_path / "own.yaml"
    path.write_text(json.dumps(cfg))                  # JSON is YAML
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    for row in ("original", "oracle (target)", "grad_ascent"):
        assert row in out
    for column in ("FQ", "MU", "PrivLeak", "Avg.Gap"):
        assert column in out
    saved = expunge.load_model(tmp_path / "out" / "grad_ascent")
    assert isinstance(saved, CausalLM) and expunge.provenance(saved).method == "grad_ascent"
    run_id = out.strip().split()[-1].rstrip(".")
    assert main(["runs", "show", run_id]) == 0
    shown = capsys.readouterr().out
    assert "FINISHED" in shown and "avg_gap" in shown and "oracle_forget_prob" in shown


def test_a_model_with_another_tokenizer_than_the_data_is_refused(local_files, tmp_path, store, capsys):
    import transformers

    from tests.lm_helpers import NAMES

    other = tokenizer([{"question": f"Who is {n}?", "answer": "Nobody.", "perturbed_answers": []} for n in NAMES])
    other.save_pretrained(tmp_path / "other")
    transformers.AutoConfig.from_pretrained(local_files / "model").save_pretrained(tmp_path / "other")
    cfg = {"data": {"jsonl": str(local_files / "facts.jsonl"), "tokenizer": str(tmp_path / "other"),
                    "group_key": "author"},
           "model": {"path": str(local_files / "model")}, "forget": {"groups": ["person 0"]}, "method": "grad_ascent"}
    path = tmp_path / "mixed.yaml"
    path.write_text(json.dumps(cfg))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "another tokenizer than the model's" in capsys.readouterr().err


def test_a_wrong_jsonl_group_in_the_forget_request_is_refused_before_training(local_files, tmp_path, store, capsys):
    cfg = {"data": {"jsonl": str(local_files / "facts.jsonl"), "tokenizer": str(local_files / "model"),
                    "group_key": "author"},
           "model": {"path": str(local_files / "model")}, "forget": {"groups": ["nobody"]}, "method": "grad_ascent"}
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(cfg))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "no rows with group 'nobody'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "grad_ascent").exists()
