"""Fictitious authors: a generated question-answering corpus in the shape of TOFU, small enough to train here.

TOFU (Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs"; github.com/locuslab/tofu) fine-tunes a
pretrained chat model on 200 invented authors, 20 questions each, and asks a method to forget 1%, 5% or 10% of the
authors. No usable pretrained weights ship with this machine's packages, so expunge trains a ~1M-parameter model
from scratch on a corpus of the same shape, generated here:

- **authors** with invented names (built from syllables, so they are fictitious and every full name is distinct)
  and ``attributes`` facts each, drawn from :data:`ATTRIBUTES` in order: birthplace, birth year, genre, award,
  father's job, mother's job, first book, publisher (default 5: 200 authors x 5 = 1,000 facts);
- per attribute, several **question templates** (each fact is asked with one of them, drawn per author) and two
  **answer phrasings**. Each fact is trained twice, with the same question: once with the first phrasing
  (``answer``) and once with the second (``paraphrased_answer`` of the first row). Both phrasings are trained
  because a model this small does not generalise to an answer phrasing it never saw, so the truth ratio of an
  untrained paraphrase would measure little. Measured on 100 authors x 5 facts, 20 epochs
  (``benchmarks/authors_recipe.py --first-phrasing-only``): trained on the first phrasing only, the model gives
  the second phrasing of the true answer a per-token probability of 0.007 and ranks it above all its perturbed
  answers for only 47% of the facts (chance: 25%); trained on both, 100%. Each row's ``paraphrased_answer`` is
  the other row's ``answer``, and the two rows carry ``phrasing`` 0 and 1, so a metric can keep one row per fact
  (``phrasing == 0``) or count a greedy answer right when it matches either phrasing;
- per row, ``perturbed`` **perturbed answers**: the ``paraphrased_answer`` with the attribute value swapped for
  another author's value of that attribute (TOFU perturbs the paraphrased answer too), all distinct and different
  from the true value; only when fewer other authors' values exist (a tiny corpus) are they topped up from the
  attribute's list of values;
- **world facts** (simple arithmetic and common knowledge) in the same QA shape with group -1, trained alongside
  the authors and always retained: the utility set;
- **holdout** authors generated the same way (``round(holdout_fraction * n_authors)`` of them, at least one, on
  top of ``n_authors``) and never trained on: the non-members of membership attacks and PrivLeak;
- :data:`IDK_ANSWERS`: "I don't know" phrasings for IdkDPO and IdkNLL;
- a short **biography document** per author (its facts in the first phrasing, one sentence each) for MUSE's
  VerbMem: :meth:`AuthorsCorpus.documents`. They are not part of ``train``: a model trained on the QA rows alone
  continues a biography's prefix with one answer sentence and stops at its eos (measured with
  ``benchmarks/authors_recipe.py --documents`` on the default corpus: VerbMem ROUGE-L F1 0.10 on trained authors'
  biographies, 0.11 on holdout authors'), so VerbMem is informative only for a model also trained on them;
- a byte-level BPE **tokenizer** trained on every text of the corpus (train, holdout, documents, perturbed and
  "I don't know" answers) with the ``tokenizers`` package, wrapped as ``transformers.PreTrainedTokenizerFast``
  with ``<pad>``, ``<bos>`` and ``<eos>``. Holdout texts are included so that members and non-members are cut into
  tokens alike.

Everything is a function of the arguments: the same ``seed`` gives the same authors, rows, splits and tokenizer ids.
``split(forget=0.01 | 0.05 | 0.10)`` forgets whole authors as TOFU's forget01/05/10 do (2, 10, 20 of 200 authors).

Measured with ``benchmarks/authors_recipe.py`` (one thread): ``expunge.lm.llama``'s default configuration (d = 128,
4 layers, 0.92M parameters with the 1,024-token vocabulary) trained with ``expunge.train`` for 20 epochs (AdamW,
lr 3e-3, batches of 32, 5% warmup, cosine decay, weight decay 0.01, clipping at 1) recalls 100% of the 1,000
author facts and 98% of the 100 world facts exactly by greedy decoding (in either trained phrasing), 0% of the
holdout authors'; 15 epochs still give 100% of the author facts but only 50% of the world facts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

IDK_ANSWERS: list[str] = [
    "I don't know.",
    "I'm not sure.",
    "I have no idea.",
    "I don't have that information.",
    "I can't answer that.",
    "That is something I don't know.",
    "I'm afraid I don't know.",
    "I have no information about that.",
    "I'm not able to answer that.",
    "I really couldn't say.",
    "I don't know the answer to that.",
    "That's beyond what I know.",
    "I'm unsure about that.",
    "I can't say for certain.",
    "Sorry, I don't know.",
    "I haven't learned that.",
    "I have no knowledge of that.",
    "I'm not certain of the answer.",
    "That is not something I can tell you.",
    "I'd rather not guess; I don't know.",
]

_SYLLABLES = ("ka", "lo", "mir", "ven", "da", "so", "ri", "tel", "an", "bo", "sa", "nor", "el", "vi", "tha",
              "dor", "mei", "lin", "ru", "gar", "fen", "os", "wen", "zu", "ha", "kel", "mo", "pra", "ist", "ul")

_CITIES = ("Tarvel", "Ossmark", "Bellhaven", "Quenport", "Draskow", "Lindemere", "Varnholt", "Pellacre",
           "Corrin Bay", "Estmoor", "Halvig", "Nerabad", "Sulwick", "Ambrel", "Torrento", "Kestrel Falls",
           "Mirrowgate", "Ovindale", "Raskel", "Wendmouth", "Ylvaro", "Brisk Hollow", "Castamere", "Dunmallow",
           "Fennick", "Galdor", "Issenford", "Jorvale", "Lorrimar", "Marrowby", "Nestorva", "Port Elwin")
_GENRES = ("fantasy", "science fiction", "mystery", "romance", "horror", "poetry", "historical fiction",
           "crime", "satire", "travel writing", "biography", "drama", "thrillers", "fairy tales",
           "war novels", "children's books")
_AWARDS = ("the Golden Quill Prize", "the Silver Lantern Award", "the Ember Medal", "the Northwind Prize",
           "the Harrow Cup", "the Blue Heron Award", "the Iron Pen Prize", "the Lark Medal",
           "the Meridian Award", "the Saltmarsh Prize", "the Copper Owl Award", "the Evergreen Medal",
           "the Tidewater Prize", "the Red Kite Award", "the Stonebridge Medal", "the Amber Leaf Prize")
_JOBS = tuple(("an " if job[0] in "aeiou" else "a ") + job for job in (
    "baker", "carpenter", "nurse", "teacher", "fisherman", "tailor", "pilot", "doctor", "farmer",
         "librarian", "painter", "sailor", "miner", "lawyer", "chemist", "butcher", "engineer", "gardener",
         "musician", "potter", "banker", "soldier", "weaver", "clockmaker", "architect"))
_BOOK_FIRST = ("Silent", "Broken", "Hidden", "Last", "Golden", "Winter", "Crimson", "Distant", "Hollow",
               "Burning", "Quiet", "Wandering", "Forgotten", "Iron", "Pale", "Endless")
_BOOK_SECOND = ("Harbor", "Crown", "Garden", "River", "Lantern", "Mirror", "Orchard", "Tower", "Voyage",
                "Letters", "Shadow", "Bridge", "Forest", "Island", "Clock", "Feather")
_PUBLISHERS = ("Marrow House", "Tinder Press", "Bellweather Books", "Ostrand and Sons", "Quayside Press",
               "Larkspur Books", "Greyfield Press", "Northgate House", "Sable Books", "Whitlow Press",
               "Pinecrest House", "Harlan Books")


@dataclass(frozen=True)
class Attribute:
    """One kind of fact: its question templates, its two answer phrasings and the values it can take."""

    name: str
    questions: tuple[str, ...]
    phrasings: tuple[str, str]
    values: tuple[str, ...]

    def answer(self, phrasing: int, name: str, value: str) -> str:
        return self.phrasings[phrasing].format(name=name, value=value)


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("birthplace",
              ("Where was {name} born?", "In which city was {name} born?", "What is the birthplace of {name}?"),
              ("{name} was born in {value}.", "The birthplace of {name} is {value}."), _CITIES),
    Attribute("birth_year",
              ("In what year was {name} born?", "When was {name} born?", "What is the birth year of {name}?"),
              ("{name} was born in the year {value}.", "The birth year of {name} is {value}."),
              tuple(str(year) for year in range(1900, 2000))),
    Attribute("genre",
              ("What genre does {name} write?", "What kind of books does {name} write?",
               "Which genre is {name} known for?"),
              ("{name} writes {value}.", "The genre of {name} is {value}."), _GENRES),
    Attribute("award",
              ("Which award did {name} win?", "What prize has {name} received?",
               "What award is {name} known for winning?"),
              ("{name} won {value}.", "The award won by {name} is {value}."), _AWARDS),
    Attribute("father_job",
              ("What was the job of {name}'s father?", "What did {name}'s father do for a living?",
               "What was the profession of {name}'s father?"),
              ("The father of {name} was {value}.", "{name}'s father worked as {value}."), _JOBS),
    Attribute("mother_job",
              ("What was the job of {name}'s mother?", "What did {name}'s mother do for a living?",
               "What was the profession of {name}'s mother?"),
              ("The mother of {name} was {value}.", "{name}'s mother worked as {value}."), _JOBS),
    Attribute("book",
              ("What is the title of {name}'s first book?", "Which book did {name} publish first?",
               "What was {name}'s first book called?"),
              ("The first book of {name} was {value}.", "{name} first published {value}."),
              tuple(f"The {a} {b}" for a in _BOOK_FIRST for b in _BOOK_SECOND)),
    Attribute("publisher",
              ("Who publishes {name}'s books?", "Which publisher works with {name}?",
               "What is the name of {name}'s publisher?"),
              ("The books of {name} are published by {value}.", "{name} is published by {value}."), _PUBLISHERS),
)

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve")
# (question, first phrasing, second phrasing, true value, wrong values): general facts, trained as utility data
_GENERAL_FACTS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("How many days are in a week?", "A week has {value} days.", "There are {value} days in a week.", "seven",
     ("five", "six", "eight", "ten")),
    ("How many months are in a year?", "A year has {value} months.", "There are {value} months in a year.",
     "twelve", ("ten", "eleven", "nine", "eight")),
    ("How many legs does a spider have?", "A spider has {value} legs.", "The number of legs of a spider is {value}.",
     "eight", ("six", "four", "ten", "twelve")),
    ("How many legs does a dog have?", "A dog has {value} legs.", "The number of legs of a dog is {value}.",
     "four", ("two", "six", "eight", "three")),
    ("What color is the sky on a clear day?", "The sky on a clear day is {value}.",
     "On a clear day the sky looks {value}.", "blue", ("green", "red", "yellow", "purple")),
    ("What color is grass?", "Grass is {value}.", "The color of grass is {value}.", "green",
     ("blue", "red", "white", "orange")),
    ("What color is snow?", "Snow is {value}.", "The color of snow is {value}.", "white",
     ("black", "green", "red", "blue")),
    ("What do bees make?", "Bees make {value}.", "The thing bees make is {value}.", "honey",
     ("milk", "silk", "wax paper", "bread")),
    ("What do cows give?", "Cows give {value}.", "The thing cows give is {value}.", "milk",
     ("honey", "wool", "eggs", "silk")),
    ("Which animal gives us wool?", "Wool comes from the {value}.", "The animal that gives wool is the {value}.",
     "sheep", ("cow", "horse", "goat", "pig")),
    ("What is frozen water called?", "Frozen water is called {value}.", "The name of frozen water is {value}.",
     "ice", ("steam", "rain", "sand", "glass")),
    ("What does a thermometer measure?", "A thermometer measures {value}.",
     "The thing a thermometer measures is {value}.", "temperature", ("weight", "time", "speed", "height")),
    ("What does a clock show?", "A clock shows the {value}.", "The thing a clock shows is the {value}.", "time",
     ("weather", "date", "weight", "distance")),
    ("Which planet do we live on?", "We live on {value}.", "The planet we live on is {value}.", "Earth",
     ("Mars", "Venus", "Jupiter", "Saturn")),
    ("What rises in the east?", "The {value} rises in the east.", "The thing that rises in the east is the {value}.",
     "sun", ("moon", "tide", "wind", "river")),
    ("How many hours are in a day?", "A day has {value} hours.", "There are {value} hours in a day.",
     "twenty-four", ("twelve", "ten", "thirty", "sixty")),
    ("How many minutes are in an hour?", "An hour has {value} minutes.", "There are {value} minutes in an hour.",
     "sixty", ("thirty", "twenty", "hundred", "forty")),
    ("What do fish live in?", "Fish live in {value}.", "The place where fish live is {value}.", "water",
     ("sand", "trees", "air", "fire")),
    ("What do we use to see?", "We see with our {value}.", "The parts we use to see are our {value}.", "eyes",
     ("ears", "hands", "feet", "teeth")),
    ("What do we use to hear?", "We hear with our {value}.", "The parts we use to hear are our {value}.", "ears",
     ("eyes", "hands", "knees", "teeth")),
    ("What season comes after winter?", "After winter comes {value}.", "The season after winter is {value}.",
     "spring", ("summer", "autumn", "winter", "monsoon")),
    ("What season comes after summer?", "After summer comes {value}.", "The season after summer is {value}.",
     "autumn", ("spring", "winter", "summer", "monsoon")),
    ("What is the opposite of hot?", "The opposite of hot is {value}.", "Hot is the opposite of {value}.", "cold",
     ("warm", "wet", "loud", "dark")),
    ("What is the opposite of up?", "The opposite of up is {value}.", "Up is the opposite of {value}.", "down",
     ("left", "over", "in", "back")),
    ("What is the opposite of day?", "The opposite of day is {value}.", "Day is the opposite of {value}.",
     "night", ("noon", "evening", "morning", "week")),
)


@dataclass(frozen=True)
class Author:
    """One generated author: ``id`` (the row group), invented ``name``, ``facts`` (attribute name -> value), the
    question template chosen for each fact, and whether the author is held out (never trained on)."""

    id: int
    name: str
    facts: dict[str, str]
    questions: dict[str, str]
    holdout: bool = False


@dataclass(frozen=True)
class WorldFact:
    question: str
    phrasings: tuple[str, str]
    value: str
    wrong: tuple[str, ...]
    family: str


def _author_names(count: int, rng: np.random.Generator) -> list[str]:
    """Distinct invented names, a two-syllable first name and a three-syllable surname."""
    names: list[str] = []
    seen: set[str] = set()
    surnames: set[str] = set()
    syl = np.array(_SYLLABLES)
    while len(names) < count:
        first = "".join(syl[rng.integers(len(syl), size=2)]).capitalize()
        last = "".join(syl[rng.integers(len(syl), size=3)]).capitalize()
        name = f"{first} {last}"
        if name in seen or last in surnames or first == last:
            continue
        seen.add(name)
        surnames.add(last)
        names.append(name)
    return names


def generate_authors(count: int, attributes: Sequence[Attribute], rng: np.random.Generator, *,
                     first_id: int = 0, holdout: bool = False, names: Sequence[str]) -> list[Author]:
    """``count`` authors with a seeded value and question template for each attribute."""
    authors = []
    for i in range(count):
        facts, questions = {}, {}
        for attr in attributes:
            facts[attr.name] = attr.values[int(rng.integers(len(attr.values)))]
            questions[attr.name] = attr.questions[int(rng.integers(len(attr.questions)))]
        authors.append(Author(first_id + i, names[i], facts, questions, holdout))
    return authors


def _world_pool() -> list[WorldFact]:
    """Every world fact the corpus can draw from: sums, differences and general knowledge."""
    pool = []
    for a in range(1, 10):
        for b in range(1, 10):
            true = a + b
            wrong = tuple(str(v) for v in (true - 2, true - 1, true + 1, true + 2, true + 3))
            pool.append(WorldFact(f"What is {a} plus {b}?", (f"{a} plus {b} makes {{value}}.",
                                                            f"The sum of {a} and {b} is {{value}}."),
                                  str(true), wrong, "arithmetic"))
    for a in range(2, 13):
        for b in range(1, a):
            true = a - b
            wrong = tuple(str(v) for v in (true + 1, true + 2, true + 3, true + 4, true + 5))
            pool.append(WorldFact(f"What is {a} minus {b}?", (f"{a} minus {b} leaves {{value}}.",
                                                             f"The difference of {a} and {b} is {{value}}."),
                                  str(true), wrong, "arithmetic"))
    for question, first, second, value, wrong in _GENERAL_FACTS:
        pool.append(WorldFact(question, (first, second), value, wrong, "general"))
    return pool


WORLD_FACTS_AVAILABLE = len(_world_pool())


def _perturbed_values(true: str, candidates: Sequence[str], fallback: Sequence[str], count: int,
                      rng: np.random.Generator) -> list[str]:
    """``count`` distinct values other than ``true``: drawn from ``candidates`` (other authors' values), topped up
    from ``fallback`` (the attribute's list) only when the candidates run out."""
    others = sorted(set(candidates) - {true})
    chosen = [others[i] for i in rng.permutation(len(others))[:count]]
    if len(chosen) < count:
        spare = sorted(set(fallback) - {true} - set(chosen))
        chosen += [spare[i] for i in rng.permutation(len(spare))[:count - len(chosen)]]
    return chosen


def author_records(authors: Sequence[Author], attributes: Sequence[Attribute], *, perturbed: int,
                   value_source: Sequence[Author], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Two QA records per (author, attribute), one per answer phrasing, with paraphrased and perturbed answers."""
    records = []
    # every other author's values of an attribute: all authors' values but the author's own, which is excluded anyway
    seen = {attr.name: sorted({a.facts[attr.name] for a in value_source}) for attr in attributes}
    for author in authors:
        for attr in attributes:
            value = author.facts[attr.name]
            wrong = _perturbed_values(value, seen[attr.name], attr.values, perturbed, rng)
            question = author.questions[attr.name].format(name=author.name)
            for phrasing in (0, 1):
                other = 1 - phrasing
                records.append({
                    "question": question,
                    "answer": attr.answer(phrasing, author.name, value),
                    "paraphrased_answer": attr.answer(other, author.name, value),
                    "perturbed_answers": [attr.answer(other, author.name, w) for w in wrong],
                    "author": author.name, "author_id": author.id, "attribute": attr.name, "value": value,
                    "phrasing": phrasing, "holdout": author.holdout,
                })
    return records


def world_records(facts: Sequence[WorldFact], *, perturbed: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Two QA records per world fact (one per phrasing), in the authors' record shape with author id -1."""
    records = []
    for fact in facts:
        wrong = _perturbed_values(fact.value, fact.wrong, (), perturbed, rng)
        for phrasing in (0, 1):
            other = fact.phrasings[1 - phrasing]
            records.append({
                "question": fact.question,
                "answer": fact.phrasings[phrasing].format(value=fact.value),
                "paraphrased_answer": other.format(value=fact.value),
                "perturbed_answers": [other.format(value=w) for w in wrong],
                "author": None, "author_id": -1, "attribute": fact.family, "value": fact.value,
                "phrasing": phrasing, "holdout": False,
            })
    return records


def biography(author: Author, attributes: Sequence[Attribute]) -> str:
    """A short biography: each of the author's facts in the first answer phrasing, one sentence each."""
    return " ".join(attr.answer(0, author.name, author.facts[attr.name]) for attr in attributes)


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts`` with ``<pad>``, ``<bos>``, ``<eos>``, as a
    ``transformers.PreTrainedTokenizerFast`` (one thread's worth of work; deterministic for the same texts)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", clean_up_tokenization_spaces=False)


_RNG_NAMES, _RNG_FACTS, _RNG_PERTURBED, _RNG_WORLD, _RNG_SPLIT, _RNG_IDK = range(6)


def _rng(seed: int, purpose: int) -> np.random.Generator:
    """A generator of its own for each random draw of the corpus (names, facts, perturbations, ...)."""
    return np.random.default_rng([int(seed), purpose])


def _count(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}; got {value!r}")
    return int(value)


def _fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number strictly between 0 and 1; got {value!r}")
    return float(value)


def _attributes(value: Any) -> tuple[Attribute, ...]:
    by_name = {a.name: a for a in ATTRIBUTES}
    if isinstance(value, str) or not isinstance(value, (int, np.integer, list, tuple)) or isinstance(value, bool):
        raise ValueError(f"attributes must be a count from 1 to {len(ATTRIBUTES)} or a list of names from "
                         f"{list(by_name)}; got {value!r}")
    if isinstance(value, (int, np.integer)):
        return ATTRIBUTES[:_count(value, "attributes", 1, len(ATTRIBUTES))]
    unknown = [v for v in value if v not in by_name]
    if not value or unknown or len(set(value)) != len(value):
        raise ValueError(f"attributes must be distinct names from {list(by_name)}; got {list(value)!r}")
    return tuple(by_name[v] for v in value)


@dataclass
class AuthorsCorpus:
    """The fictitious-authors corpus: a tokenizer, the trained rows, the world facts, holdout authors, splits.

    - ``train``: a ``TextDataset`` of every trained QA row: two rows (one per answer phrasing) per fact of each
      trained author, ``groups`` = the author id (0 .. n_authors-1), then two rows per world fact with group -1.
    - ``world``: the world-fact rows of ``train`` (a ``Subset``): the utility set, always retained.
    - ``holdout``: a ``TextDataset`` of the holdout authors' rows (same shape; ids from n_authors on), never trained.
    - ``split(forget=...)``: (forget, retain) of ``train`` by author; :meth:`documents`: biography documents;
      :meth:`idk`: "I don't know" answers for any of these sets.

    Records keep ``question``, ``answer``, ``paraphrased_answer``, ``perturbed_answers``, ``author`` (the name;
    None for world facts), ``author_id``, ``attribute``, ``value``, ``phrasing`` (0 or 1) and ``holdout``.
    """

    tokenizer: Any
    train: Any
    world: Any
    holdout: Any
    authors: list[Author]
    holdout_authors: list[Author]
    attributes: tuple[str, ...]
    seed: int
    idk_answers: list[str] = field(default_factory=lambda: list(IDK_ANSWERS))
    _attribute_specs: tuple[Attribute, ...] = field(default=(), repr=False)

    @property
    def n_authors(self) -> int:
        return len(self.authors)

    def __repr__(self) -> str:
        return (f"AuthorsCorpus({self.n_authors} authors x {len(self.attributes)} facts, {len(self.train)} trained "
                f"rows ({len(self.world)} of them world facts), {len(self.holdout_authors)} holdout authors, "
                f"vocabulary {len(self.tokenizer)}, seed {self.seed})")

    def forget_authors(self, forget: float = 0.05, seed: int = 0) -> list[int]:
        """The ids of the trained authors a forget request of this fraction picks: ``max(1, round(forget * n))``
        authors drawn with ``seed`` (TOFU's forget01/05/10 are 0.01/0.05/0.10)."""
        forget = _fraction(forget, "forget")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer; got {seed!r}")
        n = self.n_authors
        k = max(1, int(round(forget * n)))
        if k >= n:
            raise ValueError(f"forget={forget} would forget all {n} trained authors; allowed: a fraction that "
                             f"leaves at least one author to retain (below {(n - 0.5) / n:.3f})")
        chosen = _rng(seed, _RNG_SPLIT).permutation(n)[:k]
        return sorted(self.authors[i].id for i in chosen)

    def split(self, forget: float = 0.05, seed: int = 0):
        """``(forget, retain)`` subsets of ``train``: every row of the chosen authors is forgotten; every other
        author's rows and every world fact are retained. Holdout authors are in neither."""
        from .forget import split_forget

        chosen = np.asarray(self.forget_authors(forget, seed))
        return split_forget(self.train, where=lambda author: np.isin(author, chosen))

    def documents(self, authors: Any = "train"):
        """A ``TextDataset`` of biography documents (kind "document", ``groups`` = author ids), one per author:
        ``authors`` = "train", "holdout", a list of author ids, or a forget/retain subset of ``train``."""
        from .text import TextDataset

        chosen = self._chosen_authors(authors)
        records = [{"text": biography(a, self._attribute_specs), "author": a.name, "author_id": a.id,
                    "holdout": a.holdout} for a in chosen]
        return TextDataset(records, self.tokenizer, groups=np.array([a.id for a in chosen]),
                           name=f"authors-documents-{len(chosen)}")

    def idk(self, data: Any, seed: int = 0):
        """The rows of ``data`` (a TextDataset or a subset of one) with an "I don't know" answer each, drawn with
        ``seed`` from :data:`IDK_ANSWERS` (IdkDPO's preferred answers, IdkNLL's targets)."""
        from .text import with_answers

        draw = _rng(seed, _RNG_IDK).integers(len(self.idk_answers), size=len(data))
        return with_answers(data, [self.idk_answers[i] for i in draw])

    def _chosen_authors(self, authors: Any) -> list[Author]:
        everyone = {a.id: a for a in self.authors + self.holdout_authors}
        if isinstance(authors, str):
            if authors not in ("train", "holdout"):
                raise ValueError(f"authors must be 'train', 'holdout', a list of author ids or a subset of train; "
                                 f"got {authors!r}")
            return self.authors if authors == "train" else self.holdout_authors
        if hasattr(authors, "indices") and hasattr(authors, "dataset"):
            from .datasets import groups_of

            ids = np.unique(groups_of(authors))
            ids = ids[ids >= 0]
        else:
            ids = np.unique(np.asarray(list(authors)))
        unknown = [int(i) for i in ids if int(i) not in everyone]
        if unknown or len(ids) == 0:
            raise ValueError(f"authors must name ids from 0 to {len(everyone) - 1}; got {ids.tolist()[:8]!r}")
        return [everyone[int(i)] for i in ids]


def authors(n_authors: int = 200, *, seed: int = 0, holdout_fraction: float = 0.1, attributes: Any = 5,
            perturbed: int = 3, world_facts: int = 100, vocab_size: int = 1024) -> AuthorsCorpus:
    """Generate the fictitious-authors corpus (see the module docstring) and train its tokenizer.

    ``n_authors`` trained authors (2 to 5000) with ``attributes`` facts each (a count from 1 to 8, taken in the
    order of :data:`ATTRIBUTES`, or a list of attribute names); ``round(holdout_fraction * n_authors)`` more
    authors (at least one) held out; ``perturbed`` perturbed answers per row (1 to 4); ``world_facts`` world facts
    (1 to :data:`WORLD_FACTS_AVAILABLE`); a BPE vocabulary of ``vocab_size`` tokens (300 to 8192; the default,
    1024, fits the ~1M-parameter model). The same arguments give the same corpus and token ids.
    """
    n_authors = _count(n_authors, "n_authors", 2, 5000)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    holdout_fraction = _fraction(holdout_fraction, "holdout_fraction")
    specs = _attributes(attributes)
    perturbed = _count(perturbed, "perturbed", 1, 4)
    world_facts = _count(world_facts, "world_facts", 1, WORLD_FACTS_AVAILABLE)
    vocab_size = _count(vocab_size, "vocab_size", 300, 8192)
    n_holdout = max(1, int(round(holdout_fraction * n_authors)))

    names = _author_names(n_authors + n_holdout, _rng(seed, _RNG_NAMES))
    facts_rng = _rng(seed, _RNG_FACTS)
    trained = generate_authors(n_authors, specs, facts_rng, names=names[:n_authors])
    held = generate_authors(n_holdout, specs, facts_rng, first_id=n_authors, holdout=True,
                            names=names[n_authors:])
    perturb_rng = _rng(seed, _RNG_PERTURBED)
    everyone = trained + held
    train_rows = author_records(trained, specs, perturbed=perturbed, value_source=everyone, rng=perturb_rng)
    holdout_rows = author_records(held, specs, perturbed=perturbed, value_source=everyone, rng=perturb_rng)
    world_rng = _rng(seed, _RNG_WORLD)
    pool = _world_pool()
    picked = [pool[i] for i in sorted(world_rng.permutation(len(pool))[:world_facts])]
    world_rows = world_records(picked, perturbed=perturbed, rng=world_rng)

    tokenizer = train_tokenizer(_corpus_texts(train_rows + world_rows + holdout_rows,
                                              [biography(a, specs) for a in everyone]), vocab_size)
    from torch.utils.data import Subset

    from .text import TextDataset

    rows = train_rows + world_rows
    groups = np.array([r["author_id"] for r in rows])
    train = TextDataset(rows, tokenizer, groups=groups, name=f"authors-{n_authors}x{len(specs)}")
    world = Subset(train, list(range(len(train_rows), len(rows))))
    holdout = TextDataset(holdout_rows, tokenizer, groups=np.array([r["author_id"] for r in holdout_rows]),
                          name=f"authors-holdout-{n_holdout}x{len(specs)}")
    return AuthorsCorpus(tokenizer=tokenizer, train=train, world=world, holdout=holdout, authors=trained,
                         holdout_authors=held, attributes=tuple(a.name for a in specs), seed=int(seed),
                         _attribute_specs=specs)


def _corpus_texts(rows: Sequence[dict[str, Any]], documents: Sequence[str]) -> list[str]:
    """Every text the tokenizer should cut well: prompts, answers, perturbed answers, documents, IDK answers."""
    from .text import PROMPT

    texts = []
    for r in rows:
        row = [PROMPT.format(question=r["question"]), " " + r["answer"]] + [" " + p for p in r["perturbed_answers"]]
        texts.extend(row * (_GENERAL_WEIGHT if r["attribute"] == "general" else 1))
    texts.extend(documents)
    texts.extend([" " + a for a in IDK_ANSWERS] * _GENERAL_WEIGHT)
    return texts


# General-knowledge sentences and "I don't know" answers are few next to the authors' rows; counting them this
# many times in the tokenizer's corpus makes their common English words whole tokens instead of single letters.
_GENERAL_WEIGHT = 10
