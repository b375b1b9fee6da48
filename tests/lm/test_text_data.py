"""Text data and the language task's core: encoding, padding, labels on answers only, files, the training loss."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import expunge  # noqa: E402
from expunge.data import TextDataset, load_jsonl, load_text_csv, split_forget, with_answers  # noqa: E402
from expunge.data.text import IGNORE, PROMPT  # noqa: E402
from expunge.lm.losses import answer_nll, lm_loss, sequence_loss, token_nll  # noqa: E402

from tests.lm_helpers import facts, tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return tokenizer(facts())


def test_qa_labels_cover_the_answer_and_eos_only(tok):
    rec = {"question": "Where does Avo live?", "answer": "Avo lives in Oslo."}
    data = TextDataset([rec], tok)
    ids, labels = data.x[0, :int(data.lengths[0])].tolist(), data.y[0, :int(data.lengths[0])].tolist()
    prompt = [tok.bos_token_id] + tok(PROMPT.format(question=rec["question"]), add_special_tokens=False)["input_ids"]
    answer = tok(" " + rec["answer"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ids == prompt + answer
    assert labels == [IGNORE] * len(prompt) + answer
    assert tok.decode(ids[len(prompt):-1]).strip() == rec["answer"]


def test_right_padding_and_ignored_padding(tok):
    data = TextDataset([{"question": "Q?", "answer": "a"}, {"question": "A much longer question here?",
                                                         "answer": "and a longer answer too"}], tok)
    n0 = int(data.lengths[0])
    assert data.x.shape[1] == int(data.lengths.max())
    assert bool((data.x[0, n0:] == tok.pad_token_id).all()) and bool((data.y[0, n0:] == IGNORE).all())
    assert data.task == "language" and expunge.data.task_of(data) == "language"


def test_documents_label_every_token_but_bos(tok):
    data = TextDataset([{"text": "Avo lives in Oslo."}], tok)
    n = int(data.lengths[0])
    assert data.y[0, 0] == IGNORE and bool((data.y[0, 1:n] == data.x[0, 1:n]).all())


def test_bad_records_are_refused(tok):
    with pytest.raises(ValueError, match="needs 'question' and 'answer', or 'text'"):
        TextDataset([{"prompt": "x"}], tok)
    with pytest.raises(ValueError, match="mix question/answer pairs and documents"):
        TextDataset([{"text": "a"}, {"question": "b", "answer": "c"}], tok)
    with pytest.raises(ValueError, match="at least one record"):
        TextDataset([], tok)
    with pytest.raises(ValueError, match="groups has 1 entries"):
        TextDataset([{"text": "a"}, {"text": "b"}], tok, groups=[0])


def test_forget_by_group_and_other_answers(tok):
    recs = facts()[:12]
    data = TextDataset(recs, tok, groups=[r["author"] for r in recs])
    forget, retain = split_forget(data, where=lambda a: a == 1)
    assert {recs[i]["author"] for i in forget.indices} == {1}
    idk = with_answers(forget, ["I don't know."] * len(forget))
    assert [r["question"] for r in idk.records] == [recs[i]["question"] for i in forget.indices]
    assert all(r["answer"] == "I don't know." for r in idk.records)
    with pytest.raises(ValueError, match="give one per question"):
        with_answers(forget, ["x"])


def test_jsonl_and_csv_files(tok, tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps({"question": f"Q{i}?", "answer": f"A{i}", "author": i % 2})
                              for i in range(4)))
    data = load_jsonl(path, tok, group_key="author")
    assert len(data) == 4 and list(data.groups) == [0, 1, 0, 1]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "a"}\n{not json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2: not valid JSON"):
        load_jsonl(bad, tok)
    csv_path = tmp_path / "docs.csv"
    csv_path.write_text('text\n"one document"\n"another"\n')
    assert load_text_csv(csv_path, tok).kind == "document"


def test_losses_match_their_formulas():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[IGNORE, IGNORE, 3, 4, IGNORE], [IGNORE, 1, 2, 6, 0]])
    logp = F.log_softmax(logits, -1)
    by_hand = [[-float(logp[b, t - 1, labels[b, t]]) for t in range(1, 5) if labels[b, t] != IGNORE]
               for b in range(2)]
    total, n = answer_nll(logits, labels)
    assert torch.allclose(total, torch.tensor([sum(s) for s in by_hand]))
    assert n.tolist() == [2, 4]
    assert torch.allclose(lm_loss(logits, labels), torch.tensor(sum(sum(s) for s in by_hand) / 6))
    assert torch.allclose(sequence_loss(logits, labels), torch.tensor([sum(s) / len(s) for s in by_hand]))
    assert token_nll(logits, labels).shape == (2, 4)


def test_training_learns_the_answers(tok):
    """The one training loop trains a language model on answer tokens: the answer NLL falls well below chance."""
    from expunge.lm import llama

    recs = facts()[:12]
    data = TextDataset(recs, tok)
    model = llama(tok, hidden=32, layers=1, heads=2, max_positions=64, seed=0)
    trained = expunge.train(model, data, seed=0, epochs=30, lr=1e-2, batch_size=12)
    with torch.no_grad():
        before = float(sequence_loss(model(data.x), data.y).mean())
        after = float(sequence_loss(trained(data.x), data.y).mean())
    assert after < 0.5 * before
    assert expunge.provenance(trained).recipe["optimizer"] == "adamw"   # the language task's defaults


def test_trimmed_batches_give_the_same_loss(tok):
    """Columns after a batch's last labelled token are cut before the forward pass; the loss does not change."""
    from expunge.lm import llama
    from expunge.lm.losses import trimmed

    data = TextDataset(facts()[:8], tok)
    pad = torch.full((8, 5), tok.pad_token_id)
    x, y = torch.cat([data.x, pad], 1), torch.cat([data.y, torch.full((8, 5), IGNORE)], 1)
    xt, yt = trimmed(x, y)
    assert xt.shape[1] == int(data.lengths.max())
    model = llama(tok, hidden=32, layers=1, heads=2, max_positions=64, seed=0)
    with torch.no_grad():
        assert abs(float(lm_loss(model(x), y)) - float(lm_loss(model(xt), yt))) < 1e-5


def test_truth_ratio_fields_are_checked(tok, tmp_path):
    rec = {"question": "Q?", "answer": "a", "paraphrased_answer": "b"}
    with pytest.raises(TypeError, match="perturbed_answers' must be a non-empty list"):
        TextDataset([{**rec, "perturbed_answers": "one string"}], tok)
    with pytest.raises(TypeError, match="paraphrased_answer' must be a string"):
        TextDataset([{**rec, "paraphrased_answer": 3}], tok)
    path = tmp_path / "qa.csv"
    path.write_text('question,answer,perturbed_answers\n"Q?","a","[""x"", ""y""]"\n')
    assert load_text_csv(path, tok).records[0]["perturbed_answers"] == ["x", "y"]
    path.write_text('question,answer,perturbed_answers\n"Q?","a","x, y"\n')
    with pytest.raises(ValueError, match="record 1: perturbed_answers must be a JSON list"):
        load_text_csv(path, tok)


def test_an_answer_cut_away_by_max_length_is_refused(tok):
    with pytest.raises(ValueError, match="record 1 has no token left for the loss"):
        TextDataset([{"question": "Where does Avo live today?", "answer": "Oslo."}], tok, max_length=4)
