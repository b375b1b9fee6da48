"""evaluate for image generators against known answers, with fake generators whose outputs are known: one that
returns the real images of the class asked for (unlearning accuracy is exactly the judge's error on those images,
Fréchet distances to the real images are 0, and against itself every gap is 0), one that always draws class 0,
fake membership scores that separate members perfectly or not at all, and a differentiable fake whose erased class
lies near its conditioning embedding (the attack finds it within the ball, not without one). A tiny real diffusion
model and GAN go through the same door, deterministically."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import expunge
from expunge.data import ArrayDataset, digits, for_generation
from expunge.gen import attacks as A
from expunge.gen.base import GenerativeModel
from expunge.gen.evaluate import _reference_cache, evaluate_generation
from expunge.gen.judge import JudgeNet, _MEMORY, judge

PER_CLASS = 40          # real training images per class: the fakes return exactly these


@pytest.fixture(scope="module", autouse=True)
def judge_cache(tmp_path_factory):
    """Judges cached on disk under a directory of this module's own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EXPUNGE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def data():
    train, test = digits(seed=0)
    keep = torch.cat([torch.nonzero(train.y == c).squeeze(1)[:PER_CLASS] for c in range(10)]).sort().values
    small = ArrayDataset(train.x[keep], train.y[keep], class_names=train.class_names, name="digits-400")
    g, gt = for_generation(small), for_generation(test)
    forget, retain = expunge.split_forget(g, classes=[3])
    return g, gt, forget, retain


@pytest.fixture(scope="module")
def the_judge(data):
    g, gt, _, _ = data
    return judge(g, test=gt)


class Bank(GenerativeModel):
    """Returns, for class k, the real training images of class ``source[k]`` in order (cycled): a perfect
    generator when ``source`` is the identity."""

    kind = "fake"

    def __init__(self, data: ArrayDataset, source: dict[int, int] | None = None):
        super().__init__()
        self.n_classes = 10
        self.image_shape = tuple(data.x.shape[1:])
        self.bank = {c: data.x[data.y == c] for c in range(10)}
        self.source = source or {c: c for c in range(10)}

    def sample(self, labels, *, seed=0, **kw):
        out, used = [], {}
        for c in torch.as_tensor(labels).tolist():
            rows = self.bank[self.source[c]]
            i = used.get(c, 0)
            used[c] = i + 1
            out.append(rows[i % len(rows)])
        return torch.stack(out)


def real_accuracy(j, data, c):
    x = data.x[data.y == c]
    return 100.0 * float((j.predict(x) == c).double().mean())


def test_a_generator_of_real_images_scores_the_judge_s_own_accuracy_and_frechet_zero(data, the_judge):
    g, gt, forget, retain = data
    s = evaluate_generation(Bank(g), forget=forget, retain=retain, judge=the_judge, samples_per_class=PER_CLASS,
                            attack=False)
    assert the_judge.accuracy >= 0.9
    for c in range(10):
        assert s[f"gen_acc_class_{c}"] == pytest.approx(real_accuracy(the_judge, g, c))
        assert s[f"frechet_class_{c}"] == pytest.approx(0.0, abs=1e-6)       # the samples are the real images
    assert s["unlearning_accuracy"] == pytest.approx(100.0 - real_accuracy(the_judge, g, 3))
    assert s["unlearning_accuracy"] <= 5.0                                   # it still draws the class: ~0
    assert s["retain_generation_accuracy"] == pytest.approx(
        np.mean([real_accuracy(the_judge, g, c) for c in range(10) if c != 3]))
    assert s["frechet_retain"] == pytest.approx(0.0, abs=1e-6)
    assert s["judge_accuracy"] == pytest.approx(100 * the_judge.accuracy) and s["n_samples"] == 10 * PER_CLASS
    assert s["evidence_tier"] == 0.0
    for absent in ("mia_auc", "attack_success", "avg_gap", "frechet_to_reference"):
        assert absent not in s               # no test set, no attack, no reference: not guessed


def test_a_generator_that_always_draws_zero_forgets_and_fails_the_other_classes(data, the_judge):
    g, gt, forget, retain = data
    zeros = Bank(g, {c: 0 for c in range(10)})
    s = evaluate_generation(zeros, forget=forget, retain=retain, judge=the_judge, samples_per_class=PER_CLASS,
                            reference=Bank(g), attack=False)
    zero_acc = real_accuracy(the_judge, g, 0)
    assert s["gen_acc_class_0"] == pytest.approx(zero_acc)
    judged_three = 100 * float((the_judge.predict(g.x[g.y == 0]) == 3).double().mean())
    assert s["unlearning_accuracy"] == pytest.approx(100.0 - judged_three) and s["unlearning_accuracy"] >= 95
    assert s["retain_generation_accuracy"] <= (zero_acc + 8 * 5) / 9            # only class 0 comes out right
    assert s["frechet_retain"] > 100 and s["frechet_to_reference"] == pytest.approx(s["frechet_retain"])
    assert s["frechet_to_reference_forgotten"] > 100
    assert s["gap_unlearning_accuracy"] == pytest.approx(abs(s["unlearning_accuracy"]
                                                             - s["reference_unlearning_accuracy"]))
    assert s["avg_gap"] == pytest.approx(np.mean([s["gap_unlearning_accuracy"],
                                                  s["gap_retain_generation_accuracy"]]))
    assert s["avg_gap_terms"] == 2.0


def test_against_itself_every_gap_is_zero(data, the_judge):
    g, gt, forget, retain = data
    s = evaluate_generation(Bank(g), forget=forget, retain=retain, judge=the_judge, samples_per_class=PER_CLASS,
                            reference=Bank(g), attack=False)
    assert s["avg_gap"] == 0.0 and s["frechet_to_reference"] == pytest.approx(0.0, abs=1e-6)
    assert all(v == 0.0 for k, v in s.items() if k.startswith("gap_"))


class Memoriser(Bank):
    """A fake diffusion model: denoising error 0 on the images it "trained" on, 1 elsewhere, plus a term that
    depends only on the noise (so models are comparable only on the same draws)."""

    kind = "diffusion"
    T = 100

    def __init__(self, data, members=None, memorises=True):
        super().__init__(data)
        self.members = members
        self.memorises = memorises
        self.seen_t: list[int] = []

    def denoising_loss(self, x0, labels, *, t=None, noise=None, reduction="mean"):
        self.seen_t.append(int(t[0]))
        base = noise.pow(2).flatten(1).mean(1) * 1e-3
        if not self.memorises:
            return base
        known = (x0.flatten(1)[:, None, :] == self.members.flatten(1)[None]).all(-1).any(-1)
        return base + (~known).double().float()


def test_membership_reads_denoising_error_on_the_same_noise(data, the_judge):
    g, gt, forget, retain = data
    fx = forget.dataset.x[forget.indices]
    m = Memoriser(g, members=fx)
    s = evaluate_generation(m, forget=forget, retain=retain, test=gt, judge=the_judge, samples_per_class=PER_CLASS,
                            attack=False)
    assert s["mia_auc"] == 1.0 and s["mia_tpr_at_1fpr"] == 1.0
    assert s["mia_n_members"] == PER_CLASS and s["mia_n_nonmembers"] == int((gt.y == 3).sum())
    assert sorted(set(m.seen_t)) == [10, 30, 50]                         # 10%, 30% and 50% of T
    blind = [Memoriser(g, memorises=False) for _ in range(2)]
    scores = [A.membership_scores(b, gt.x[:20], gt.y[:20], seed=0) for b in blind]
    assert np.array_equal(scores[0], scores[1])                          # fixed noise: the same draws
    assert not np.array_equal(scores[0], A.membership_scores(blind[0], gt.x[:20], gt.y[:20], seed=1))


class Prototypes(GenerativeModel):
    """A differentiable fake: the image is a softmax-weighted blend of the class mean images, weights from the
    conditioning embedding. Class 3's embedding mostly points at class 5 (so it draws 5s), with class 3 a little
    behind: a search within 0.5 ||e|| of it can bring 3s back; a search of radius 0 cannot."""

    kind = "fake"

    def __init__(self, data):
        super().__init__()
        self.n_classes, self.image_shape = 10, tuple(data.x.shape[1:])
        self.register_buffer("means", torch.stack([data.x[data.y == c].mean(0) for c in range(10)]))
        table = torch.eye(10) * 8.0
        table[3] = torch.zeros(10)
        table[3, 5], table[3, 3] = 8.0, 5.0
        self.register_buffer("table", table)

    def embed(self, labels):
        return self.table[torch.as_tensor(labels)]

    def sample(self, labels, *, seed=0, embeddings=None, grad=False):
        emb = self.embed(labels) if embeddings is None else embeddings
        with torch.set_grad_enabled(grad):
            w = torch.softmax(emb, -1)
            return torch.einsum("nk,kchw->nchw", w, self.means)


def test_the_embedding_attack_finds_the_erased_class_near_its_embedding(data, the_judge):
    g, gt, forget, retain = data
    fake = Prototypes(g)
    plain = evaluate_generation(fake, forget=forget, retain=retain, judge=the_judge, samples_per_class=8,
                                attack={"radius": 0.0})
    assert plain["unlearning_accuracy"] == 100.0 and plain["attack_success"] == 0.0
    s = evaluate_generation(fake, forget=forget, retain=retain, judge=the_judge, samples_per_class=8,
                            attack={"radius": 0.5, "iterations": 20})
    assert s["attack_success"] == 100.0
    assert torch.equal(fake.table[3, :4], torch.tensor([0.0, 0.0, 0.0, 5.0]))   # the model itself is untouched
    assert "attack_success" not in evaluate_generation(Bank(g), forget=forget, retain=retain, judge=the_judge,
                                                       samples_per_class=8)          # no embed: no attack, no number


def test_the_attack_climbs_the_search_judge_and_is_scored_by_the_other(data, the_judge):
    g, _, _, _ = data

    class Searcher:
        calls = 0

        def log_probs(self, images):
            Searcher.calls += 1
            return the_judge.log_probs(images)

    class Scorer:
        predict = staticmethod(the_judge.predict)

        def log_probs(self, images):
            raise AssertionError("the scoring judge was searched against")

    success = A.embedding_attack(Prototypes(g), Scorer(), 3, search_judge=Searcher(), iterations=3, n_samples=8)
    assert Searcher.calls == 3 and 0.0 <= success <= 100.0


def test_bad_requests_are_refused_with_one_line(data, the_judge):
    g, gt, forget, retain = data
    with pytest.raises(TypeError, match="generative model"):
        evaluate_generation(torch.nn.Linear(2, 2), forget=forget, retain=retain)
    with pytest.raises(ValueError, match="samples_per_class"):
        evaluate_generation(Bank(g), forget=forget, retain=retain, samples_per_class=1)
    with pytest.raises(ValueError, match="forgotten class 12"):
        evaluate_generation(Bank(g), forget=forget, retain=retain, forgotten_classes=[12])
    with pytest.raises(ValueError, match="unknown attack setting"):
        evaluate_generation(Bank(g), forget=forget, retain=retain, attack={"radius": 0.1, "iters": 3})
    with pytest.raises(ValueError, match="attack radius"):
        evaluate_generation(Bank(g), forget=forget, retain=retain, attack={"radius": -1.0})
    train, _ = digits(seed=0)
    cf, cr = expunge.split_forget(train, classes=[3])
    with pytest.raises(ValueError, match="for_generation"):
        evaluate_generation(Bank(g), forget=cf, retain=cr)
    with pytest.raises(ValueError, match="generation data"):
        expunge.evaluate(Bank(g), forget=cf, retain=cr)                  # the front door too
    with pytest.raises(ValueError, match="max_examples"):
        expunge.evaluate(Bank(g), forget=forget, retain=retain, max_examples=3)
    noisy = copy.deepcopy(the_judge)
    noisy.accuracy = 0.5
    with pytest.raises(ValueError, match="held-out real images"):
        evaluate_generation(Bank(g), forget=forget, retain=retain, judge=noisy)


def test_the_judge_is_trained_once_per_content_and_read_back_from_disk(data, the_judge):
    g, gt, _, _ = data
    assert judge(g, test=gt) is the_judge                               # memory
    _MEMORY.clear()
    again = judge(g, test=gt)                                           # disk
    assert again is not the_judge and again.accuracy == the_judge.accuracy
    assert all(torch.equal(a, b) for a, b in zip(again.net.state_dict().values(),
                                                 the_judge.net.state_dict().values()))
    assert again.features(g.x[:5]).shape == (5, 64) and again.probs(g.x[:5]).sum(1).allclose(torch.ones(5))
    with pytest.raises(ValueError, match="min_accuracy"):
        judge(g, test=gt, min_accuracy=1.01)
    with pytest.raises(ValueError, match=r"held-out real images"):
        judge(g, test=gt, min_accuracy=1.0)


def test_the_judge_reaches_97_percent_on_digits():
    train, test = digits(seed=0)
    assert judge(for_generation(train), test=for_generation(test), cache=False).accuracy >= 0.97


def test_the_judge_is_deterministic_and_holds_out_a_fifth_without_a_test_set(data):
    g, _, _, _ = data
    a = judge(g, cache=False)
    _MEMORY.clear()
    b = judge(g, cache=False)
    assert a.n_heldout == 80                                            # 20% of each class's 40 images
    assert all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()))
    assert isinstance(a.net, JudgeNet) and a.accuracy == b.accuracy


TINY = dict(samples_per_class=4, attack={"iterations": 2, "batch": 4, "n_samples": 4, "steps": 2})


def test_a_tiny_diffusion_model_is_scored_deterministically_through_the_front_door(data, the_judge):
    pytest.importorskip("diffusers")
    g, gt, forget, retain = data
    model = expunge.gen.unet(seed=0, widths=(8, 16), T=20)
    model.sample_steps = 2
    oracle = expunge.gen.unet(seed=1, widths=(8, 16), T=20)
    oracle.sample_steps = 2
    before = copy.deepcopy(model.state_dict())
    _reference_cache.clear()
    rng = torch.random.get_rng_state()
    a = evaluate_generation(model, forget=forget, retain=retain, test=gt, reference=oracle, judge=the_judge, **TINY)
    assert len(_reference_cache) == 1
    b = evaluate_generation(model, forget=forget, retain=retain, test=gt, reference=oracle, judge=the_judge, **TINY)
    assert a == b and len(_reference_cache) == 1                        # repeatable; the oracle scored once
    assert torch.equal(torch.random.get_rng_state(), rng)               # the caller's RNG was not drawn from
    for key in ("unlearning_accuracy", "retain_generation_accuracy", "frechet_retain", "frechet_to_reference",
                "mia_auc", "mia_tpr_at_1fpr", "attack_success", "reference_mia_auc", "gap_attack_success",
                "avg_gap", "judge_accuracy"):
        assert key in a and isinstance(a[key], float) and np.isfinite(a[key])
    assert a["avg_gap_terms"] == 4.0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())   # the caller's model untouched


def test_expunge_evaluate_dispatches_generation_data_with_the_defaults(data, the_judge):
    g, gt, forget, retain = data
    s = expunge.evaluate(Bank(g), forget=forget, retain=retain, test=gt, reference=Bank(g))
    assert s == evaluate_generation(Bank(g), forget=forget, retain=retain, test=gt, reference=Bank(g),
                                    judge=the_judge)                      # the judge of (data, test), remembered
    assert s["n_samples"] == 10 * 50 and s["avg_gap"] == 0.0


def test_expunge_evaluate_skips_the_embedding_attack_with_attack_false(data, the_judge):
    pytest.importorskip("diffusers")
    g, gt, forget, retain = data
    model, oracle = (expunge.gen.unet(seed=s, widths=(8, 16), T=20) for s in (0, 1))
    for m in (model, oracle):
        m.sample_steps = 2
    s = expunge.evaluate(model, forget=forget, retain=retain, reference=oracle, samples_per_class=4, attack=False)
    assert "attack_success" not in s and "gap_attack_success" not in s and s["avg_gap_terms"] == 2.0
    assert s == evaluate_generation(model, forget=forget, retain=retain, reference=oracle, judge=judge(g),
                                    samples_per_class=4, attack=False)
    with pytest.raises(TypeError, match="attack must be True or False"):
        expunge.evaluate(model, forget=forget, retain=retain, attack="no")
    train, _ = digits(seed=0)
    cf, cr = expunge.split_forget(train, classes=[3])
    with pytest.raises(ValueError, match="attack= applies to image generators"):
        expunge.evaluate(expunge.model("mlp", train), forget=cf, retain=cr, attack=False)


def test_a_tiny_gan_is_scored_by_its_discriminator_and_attacked_in_its_embedding(data, the_judge):
    from expunge.gen.gan import gan

    g, gt, forget, retain = data
    model = gan(seed=0, width=16)
    s = evaluate_generation(model, forget=forget, retain=retain, test=gt, judge=the_judge, **TINY)
    x = torch.cat([forget.dataset.x[forget.indices], gt.x[gt.y == 3]])
    y = torch.cat([forget.dataset.y[forget.indices], gt.y[gt.y == 3]])
    logits = model.discriminator(x, y).detach().double().numpy()
    from expunge.metrics.roc import roc_auc

    assert s["mia_auc"] == pytest.approx(roc_auc(logits[:PER_CLASS], logits[PER_CLASS:]))
    assert 0.0 <= s["attack_success"] <= 100.0


@pytest.fixture(scope="module")
def trained():
    """The shared tiny trained diffusion model (digits 0-3), its oracle without class 1, the test images of 0-3."""
    pytest.importorskip("diffusers")
    from tests.gen_helpers import N_CLASSES, tiny_generation_task

    task = tiny_generation_task()
    _, test = digits(seed=0)
    t = for_generation(test)
    keep = t.y < N_CLASSES
    held = ArrayDataset(t.x[keep], t.y[keep], task="generation", class_names=[str(c) for c in range(N_CLASSES)])
    return task, held


def test_a_trained_model_still_draws_the_class_its_oracle_never_learned(trained):
    task, held = trained
    small = dict(samples_per_class=12, attack=False, test=held)
    s = evaluate_generation(task.original, forget=task.forget, retain=task.retain, reference=task.oracle, **small)
    assert s["judge_accuracy"] >= 97
    assert s["unlearning_accuracy"] <= 10 and s["reference_unlearning_accuracy"] >= 90
    assert s["retain_generation_accuracy"] >= 90 and s["reference_retain_generation_accuracy"] >= 90
    assert s["gap_unlearning_accuracy"] >= 80 and s["avg_gap"] >= 20
    assert s["frechet_to_reference_forgotten"] > 3 * s["frechet_to_reference"]    # class 1 differs, the rest less
    assert 0 <= s["mia_auc"] <= 1 and s["gap_mia_auc"] == pytest.approx(100 * abs(s["mia_auc"]
                                                                                   - s["reference_mia_auc"]))
