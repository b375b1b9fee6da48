"""Experiment configs: one YAML file names the data, model, training recipe, forget request, method and seed.

```yaml
name: digits-finetune            # optional
seed: 0
data: {name: digits, test_fraction: 0.2}     # or {npz: f.npz} / {csv: f.csv, target: label} / {images: dir}
                                             # standardise: features | targets | both (fitted on the training split)
model: {name: mlp, args: {hidden: [128, 64]}}
train: {epochs: 30, lr: 0.05}                # fields of expunge.Recipe
forget: {fraction: 0.1}                      # or {classes: [3]} / {indices: [1, 2]} / {groups: [17]}
                                             # / {group_fraction: 0.05}: a seeded share of the data's groups
method: finetune
args: {epochs: 5, lr: 0.01}                  # the method's arguments; or auto: a quick tuning (expunge.tuning)
tuning: {trials: 8}                          # optional, with args: auto: its budget
scoring: {evidence: iam}                     # optional: IAM of every row from one shadow model (classifiers)
```

Language models (task ``language``): ``data: {name: authors, args: {n_authors: 200}}`` (the fictitious-authors
corpus; the holdout authors are the test set) or ``data: {jsonl: f.jsonl, tokenizer: dir, group_key: author,
test_fraction: 0.1, max_length: 128}`` (question/answer or text records; a seeded ``test_fraction`` of the groups,
or of the rows without ``group_key``, is held out); ``model: {name: llama, args: {hidden: 128}}`` (or ``moe``; the
default on text data) or ``model: {path: dir}`` (a transformers causal LM saved in a local directory, trained from
its weights by ``train``). ``train`` fills what it leaves out with the language task's defaults
(``training.TASK_DEFAULTS["language"]``). Forget whole authors with ``forget: {group_fraction: 0.05}`` or
``forget: {groups: [...]}``.

Image generators (task ``generation``): ``data: {name: digits, generation: true}`` (labelled images made ready by
``expunge.data.for_generation``; ``generation: {size: 16}`` resizes them to 16x16) with ``model: {name: unet, args:
{widths: [32, 64]}}`` (``expunge.gen.unet``, the default on generation data) or ``{name: gan}`` (``expunge.gen.gan``);
the classes, image size and channels come from the data. ``train`` fills what it leaves out with the model's own
``recipe_defaults`` over ``training.TASK_DEFAULTS["generation"]`` (as ``expunge.train`` does). Forget a class with
``forget: {classes: [3]}``; ``scoring: {samples_per_class: 20}`` sets how many images per class are drawn to score
and ``scoring: {attack: false}`` skips the embedding-space attack.

Errors name the key path (``config error at train.lr: ...``). ``key.sub=value`` overrides (values parsed as YAML)
are applied before validation. Numbers read the way they are written (``1e-3`` is a float, as in YAML 1.2). A file
is at most ``MAX_YAML_BYTES`` long, nested at most ``MAX_YAML_DEPTH`` deep and expands (aliases included) to at most
``MAX_YAML_NODES`` values, so a small hostile file cannot cost minutes or gigabytes.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.builtin import BUILTIN, FIXED_TEST_SPLIT
from .models import MODELS
from .training import MAX_EPOCHS, Recipe

DATA_SOURCES = ("name", "npz", "csv", "images", "jsonl")
LANGUAGE_DATA = ("authors",)           # built-in text corpora (expunge.data.authors)
LANGUAGE_MODELS = ("llama", "moe")     # language-model configurations built from scratch (expunge.lm)
GENERATION_MODELS = ("unet", "gan")    # image generators built from scratch (expunge.gen.unet, expunge.gen.gan)
GENERATION_KINDS = {"unet": "diffusion", "gan": "gan"}   # GenerativeModel.kind of each
GENERATION_DATA = ("digits", "fashion_mnist")   # built-in labelled images (data.generation)
STANDARDISE = ("none", "features", "targets", "both")
MAX_YAML_BYTES = 1_000_000
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 100_000
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+=-]{0,127}")
FORGET_KINDS = ("fraction", "classes", "indices", "groups", "group_fraction")
TOP_KEYS = ("name", "seed", "data", "model", "train", "forget", "method", "args", "tuning", "out", "scoring")


class ConfigError(ValueError):
    """A config value is missing, unknown or ill-typed; the message names its key path."""

    def __init__(self, path: str, message: str):
        super().__init__(f"config error at {path}: {message}")
        self.path = path


@dataclass
class ExperimentConfig:
    data: dict[str, Any]
    model: dict[str, Any]
    train: Recipe
    forget: dict[str, Any]
    method: str = "finetune"
    args: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    name: str = ""
    out: str | None = None
    tune_trials: int | None = None     # args: auto -> a quick tuning of this many trials (expunge.tuning)
    scoring: dict[str, Any] = field(default_factory=dict)   # extra expunge.evaluate arguments (samples_per_class)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"] = self.train.to_dict()
        return d


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate an experiment config file (:func:`check_method_override` for ``method=``)."""
    given = read_yaml(path)
    raw = apply_overrides(given, overrides)
    cfg = parse_config(raw, base_dir=Path(path).parent)
    check_method_override(given, raw, overrides)
    return cfg


def check_method_override(given: dict[str, Any], raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> None:
    """Refuse ``method=NAME`` on the command line that would keep any of the file's ``args``, written for another
    method (``expunge run`` or ``expunge audit`` of a finetune config with ``method=retrain`` would otherwise retrain
    with finetune's epochs and learning rate, which is not exact retraining; ``method=retrain args.epochs=5`` would
    still keep finetune's learning rate and schedule): the arguments must be given whole with it, ``args={}`` for
    the method's defaults (for ``retrain``: the oracles' recipe) or ``args={KEY: VALUE, ...}``."""
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    if "method" not in keys or "args" in keys or raw.get("method") == given.get("method"):
        return
    file_args = given.get("args") if isinstance(given.get("args"), dict) else {}
    replaced = {k[len("args."):].split(".", 1)[0] for k in keys if k.startswith("args.")}
    kept = {k: v for k, v in file_args.items() if k not in replaced}
    if kept:
        raise ValueError(f"method={raw.get('method')} replaces the config's method {given.get('method')} but would "
                         f"keep its args {kept}; give {raw.get('method')}'s arguments whole: args={{}} for its "
                         f"defaults (for retrain: exact retraining with the oracles' recipe) or args={{KEY: VALUE, "
                         f"...}}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"config file {p} is a directory; expected a YAML file")
    if not p.is_file():
        raise ValueError(f"config file not found: {p}")
    try:
        size = p.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ValueError(f"config file {p} is {size:,} bytes; at most {MAX_YAML_BYTES:,} are allowed")
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"config file {p} is not UTF-8 text (byte {e.start}); expected a YAML file") from None
    except OSError as e:
        raise ValueError(f"config file {p} cannot be read ({e.strerror})") from None
    raw = load_yaml(text, where=str(p))
    if raw is None:
        raise ValueError(f"config file {p} is empty; expected a mapping of settings (data, forget, method, ...)")
    if not isinstance(raw, dict):
        raise ConfigError("<top>", f"expected a mapping of settings; got {type(raw).__name__}")
    return raw


_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                      |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                      |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                      |[-+]?\.(?:inf|Inf|INF)
                      |\.(?:nan|NaN|NAN))$""", re.X)


class _Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 floats (``1e-3``) and a bounded nesting depth."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooLarge(f"is nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


class _TooLarge(Exception):
    pass


def _expanded_size(node: Any) -> None:
    """Count the values ``node`` expands to (aliases counted each time they are used); stop past the limit."""
    count, stack = 0, [node]
    while stack:
        n = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise _TooLarge(f"expands to more than {MAX_YAML_NODES:,} values (aliases counted at each use)")
        if isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                stack.extend((k, v))


def _check_flow_depth(text: str, where: str) -> None:
    """Bracket nesting, counted in one linear pass (the YAML scanner's cost grows with the square of the depth)."""
    import numpy as np

    b = np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(b, (ord("["), ord("{"))).astype(np.int32) - np.isin(b, (ord("]"), ord("}"))).astype(np.int32)
    if len(step) and int(np.cumsum(step).max()) > MAX_YAML_DEPTH:
        raise ValueError(f"{where} is refused: it is nested more than {MAX_YAML_DEPTH} levels deep")


def load_yaml(text: str, *, where: str = "YAML") -> Any:
    """Parse YAML text safely and within bounds; ValueError naming ``where`` on bad or oversized input."""
    if len(text) > MAX_YAML_BYTES:
        raise ValueError(f"{where} is {len(text):,} characters; at most {MAX_YAML_BYTES:,} are allowed")
    _check_flow_depth(text, where)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _TooLarge as e:
        raise ValueError(f"{where} is refused: it {e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{where} is not valid YAML: {e.problem or e.context}{at}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{where} is not valid YAML: {' '.join(str(e).split())[:300]}") from None
    except RecursionError:
        raise ValueError(f"{where} is refused: it is nested too deeply") from None
    finally:
        loader.dispose()


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides to a copy of ``raw``."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. train.lr=0.01)")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"override {item!r} has an empty key part")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[:i + 1]), f"holds the value {child!r}, not a mapping; cannot set "
                                                            f"{key.strip()}")
            node = child
        try:
            node[parts[-1]] = load_yaml(value, where=f"override {item!r}")
        except ValueError as e:
            if "refused" in str(e):
                raise
            node[parts[-1]] = value
    return out


def parse_config(raw: dict[str, Any], *, base_dir: Path = Path(".")) -> ExperimentConfig:
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key; allowed: {', '.join(TOP_KEYS)}")
    data = _section(raw, "data", required=True)
    _parse_data(data, base_dir)
    task = data_task(data)
    model = _section(raw, "model", default={"name": DEFAULT_MODELS.get(task, "mlp")})
    _parse_model(model, base_dir)
    check_model_for_data(model, task)
    train = _parse_train(_section(raw, "train", default={}), task, model_recipe_defaults(model))
    scoring = parse_scoring(raw.get("scoring"), task)
    forget = _section(raw, "forget", required=True)
    _parse_forget(forget)
    method = raw.get("method", "finetune")
    if not isinstance(method, str):
        raise ConfigError("method", f"expected a method name; got {method!r}")
    args, tune_trials = _parse_args_and_tuning(raw, method)
    _check_method(method, args)
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", f"expected an integer >= 0; got {seed!r}")
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name):
        raise ConfigError("name", f"{name!r} is not allowed; expected up to 128 letters, digits, spaces or ._+=- "
                                  "(no '/', no '..'), starting with a letter or digit")
    name = name or f"{data.get('name') or Path(str(_source(data)[1])).stem}-{method}"
    out = raw.get("out")
    if out is not None and not isinstance(out, str):
        raise ConfigError("out", f"expected a directory path; got {out!r}")
    return ExperimentConfig(data=data, model=model, train=train, forget=forget, method=method, args=args,
                            seed=seed, name=str(name), out=None if out is None else str(out),
                            tune_trials=tune_trials, scoring=scoring)


DEFAULT_MODELS = {"language": "llama", "generation": "unet"}   # the model a config without one gets
SCORING_KEYS = {"max_examples": "language", "samples_per_class": "generation",
                "attack": "generation", "evidence": "classification"}   # and the task each applies to
SCORING_EVIDENCE = ("iam",)


def parse_scoring(value: Any, task: str | None) -> dict[str, Any]:
    """The ``scoring`` section: extra arguments of ``expunge.evaluate`` for every score: ``max_examples`` (language
    models: score at most this many rows of each set, a seeded sample), ``samples_per_class`` (image generators:
    images drawn per class, at least 2), ``attack`` (image generators: ``false`` skips the embedding-space
    attack, ``attack_success``) or ``evidence: iam`` (classifiers: IAM's per-example completeness of every row
    from one shadow model, :mod:`expunge.audit.iam`). ``task`` None: classification or regression, decided once
    the data is read (``evidence`` is checked against it then, by ``expunge.experiment.check_experiment``)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("scoring", f"expected a mapping; got {type(value).__name__} {value!r}")
    for key, v in value.items():
        if key not in SCORING_KEYS:
            raise ConfigError(f"scoring.{key}", f"unknown key; allowed: {', '.join(SCORING_KEYS)}")
        if key == "evidence" and task not in (None, "classification"):
            from .audit.iam import CLASSIFIERS_ONLY        # the wording of the run's check once data is read

            raise ConfigError("scoring.evidence", CLASSIFIERS_ONLY.format(task=task))
        if task != SCORING_KEYS[key] and not (task is None and SCORING_KEYS[key] == "classification"):
            raise ConfigError("scoring", f"{key} applies to {SCORING_KEYS[key]} data; this is "
                                         f"{task or 'classification or regression'} data")
        if key == "evidence":
            if v not in SCORING_EVIDENCE:
                raise ConfigError(f"scoring.{key}", f"expected {' or '.join(SCORING_EVIDENCE)} (IAM: per-example "
                                                    f"completeness from one shadow model); got {v!r}")
            continue
        if key == "attack":
            if not isinstance(v, bool):
                raise ConfigError(f"scoring.{key}", f"expected true or false; got {v!r}")
            continue
        low = 2 if key == "samples_per_class" else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"scoring.{key}", f"expected an integer >= {low}; got {v!r}")
    return dict(value)


def model_recipe_defaults(model: dict[str, Any]) -> dict[str, Any]:
    """The training settings an image generator of the config's ``model`` section brings (its class's
    ``recipe_defaults``, which ``expunge.train`` merges under the given recipe); empty for other models."""
    kind = GENERATION_KINDS.get(model.get("name"))
    if kind == "diffusion":
        from .gen.diffusion import DiffusionModel

        return dict(DiffusionModel.recipe_defaults)
    if kind == "gan":
        from .gen.gan import ConditionalGAN

        return dict(ConditionalGAN.recipe_defaults)
    return {}


def _section(raw: dict[str, Any], key: str, *, required: bool = False, default: Any = None) -> dict[str, Any]:
    if key not in raw or raw[key] is None:
        if required:
            raise ConfigError(key, "is required")
        return copy.deepcopy(default)
    value = raw[key]
    if not isinstance(value, dict):
        raise ConfigError(key, f"expected a mapping; got {type(value).__name__} {value!r}")
    return value


def _source(data: dict[str, Any]) -> tuple[str, Any]:
    given = [k for k in DATA_SOURCES if k in data]
    if len(given) != 1:
        raise ConfigError("data", f"give exactly one of {', '.join(DATA_SOURCES)}; got {given or 'none'}")
    return given[0], data[given[0]]


def data_task(data: dict[str, Any]) -> str | None:
    """``"language"`` for a text source (``name: authors``, ``jsonl``), ``"generation"`` for images made ready for
    image generators (``generation: true`` or ``{size: N}``); None when the data decides (tables, images)."""
    if data.get("name") in LANGUAGE_DATA or "jsonl" in data:
        return "language"
    return "generation" if data.get("generation") not in (None, False) else None


def check_model_for_data(model: dict[str, Any], task: str | None) -> None:
    """Text data needs a language model (``llama``, ``moe`` or a ``path``), and a language model needs text data;
    generation data needs an image generator (``unet``, ``gan``), and an image generator needs generation data."""
    language_model = "path" in model or model.get("name") in LANGUAGE_MODELS
    generator = model.get("name") in GENERATION_MODELS
    if task == "generation" and not generator:
        what = "model.path" if "path" in model else f"model.name {model.get('name')}"
        raise ConfigError("model.path" if "path" in model else "model.name",
                          f"generation data needs an image generator: {', '.join(GENERATION_MODELS)}; {what} is "
                          + ("a language model" if language_model else "not one"))
    if task != "generation" and generator:
        raise ConfigError("model.name", f"model.name {model['name']} is an image generator and needs generation data "
                                        "(data.generation: true, on labelled images)")
    if task == "language" and not language_model:
        raise ConfigError("model.name", f"text data needs a language model: {', '.join(LANGUAGE_MODELS)} or "
                                        f"model.path (a local transformers model directory); got {model.get('name')!r}")
    if task != "language" and language_model:
        what = f"model.name {model['name']}" if "name" in model else "model.path"
        raise ConfigError("model.path" if "path" in model else "model.name",
                          f"{what} is a language model and needs text data (data.name authors or data.jsonl)")


def _parse_language_data(data: dict[str, Any], kind: str, value: Any, base_dir: Path) -> None:
    """``name: authors`` (with ``args`` of ``expunge.data.authors``) or ``jsonl`` with ``tokenizer``, ``group_key``,
    ``test_fraction`` and ``max_length``."""
    if kind == "name":
        import inspect

        from .data.authors import authors

        allowed = [k for k in inspect.signature(authors).parameters]
        for bad in ("test_fraction", "tokenizer", "group_key", "max_length"):
            if bad in data:
                raise ConfigError(f"data.{bad}", f"does not apply to data.name {value} (its args are: "
                                                 f"{', '.join(allowed)})")
        args = data.get("args", {})
        if not isinstance(args, dict):
            raise ConfigError("data.args", "expected a mapping")
        for key in args:
            if key not in allowed:
                raise ConfigError(f"data.args.{key}", f"unknown argument of data.name {value}; allowed: "
                                                      f"{', '.join(allowed)}")
        return
    tok = data.get("tokenizer")
    if tok is None:
        raise ConfigError("data.tokenizer", "a JSONL source needs a tokenizer: a local directory written by "
                                            "save_pretrained (e.g. the model's directory)")
    if not isinstance(tok, str):
        raise ConfigError("data.tokenizer", f"expected a directory path; got {tok!r}")
    p = Path(tok) if Path(tok).is_absolute() else base_dir / tok
    if not p.is_dir():
        raise ConfigError("data.tokenizer", f"directory not found: {p}")
    data["tokenizer"] = str(p)
    if "group_key" in data and not isinstance(data["group_key"], str):
        raise ConfigError("data.group_key", f"expected the name of a record key (e.g. author); got "
                                            f"{data['group_key']!r}")
    ml = data.get("max_length")
    if ml is not None and (isinstance(ml, bool) or not isinstance(ml, int) or ml < 2):
        raise ConfigError("data.max_length", f"expected an integer >= 2; got {ml!r}")
    for key in ("args", "target", "groups", "size", "grayscale", "task", "standardise"):
        if key in data:
            raise ConfigError(f"data.{key}", "does not apply to data.jsonl (allowed: jsonl, tokenizer, group_key, "
                                             "test_fraction, max_length)")


def _parse_data(data: dict[str, Any], base_dir: Path) -> None:
    allowed = set(DATA_SOURCES) | {"test_fraction", "args", "target", "groups", "size", "grayscale", "task",
                                   "standardise", "tokenizer", "group_key", "max_length", "generation"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"data.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
    kind, value = _source(data)
    if data_task(data) == "language":
        if kind == "jsonl":
            p = Path(str(value))
            p = p if p.is_absolute() else base_dir / p
            if not p.is_file():
                raise ConfigError("data.jsonl", f"file not found: {p}")
            data["jsonl"] = str(p)
        if "generation" in data:
            raise ConfigError("data.generation", "applies to labelled images; this is text data")
        _parse_language_data(data, kind, value, base_dir)
        tf = data.get("test_fraction", 0.2)
        if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf < 1:
            raise ConfigError("data.test_fraction", f"expected a number strictly between 0 and 1; got {tf!r}")
        return
    for key in ("tokenizer", "group_key", "max_length"):
        if key in data:
            raise ConfigError(f"data.{key}", "applies to text data only (data.jsonl)")
    if kind == "name":
        if value not in BUILTIN:
            raise ConfigError("data.name", f"unknown built-in dataset {value!r}; allowed: "
                                           f"{', '.join(BUILTIN + LANGUAGE_DATA)}")
        if value in FIXED_TEST_SPLIT and "test_fraction" in data:
            raise ConfigError("data.test_fraction", f"{value} comes with its own test set (10,000 images); "
                                                    "remove test_fraction")
    else:
        p = Path(str(value))
        p = p if p.is_absolute() else base_dir / p
        if not p.exists():
            raise ConfigError(f"data.{kind}", f"file not found: {p}")
        data[kind] = str(p)
        if kind == "csv" and not isinstance(data.get("target"), str):
            raise ConfigError("data.target", "a CSV source needs the name of its target column")
    tf = data.get("test_fraction", 0.2)
    if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf < 1:
        raise ConfigError("data.test_fraction", f"expected a number strictly between 0 and 1; got {tf!r}")
    if not isinstance(data.get("args", {}), dict):
        raise ConfigError("data.args", "expected a mapping")
    if kind == "name" and isinstance(data.get("args"), dict):
        from .data.builtin import check_builtin_args

        try:
            check_builtin_args(value, data["args"])
        except ValueError as e:
            bad = next((k for k in data["args"] if f"'{k}'" in str(e) or f" {k}=" in str(e)), None)
            raise ConfigError(f"data.args.{bad}" if bad else "data.args", str(e)) from None
    if kind != "name" and data.get("args"):
        raise ConfigError("data.args", f"only built-in datasets (data.name) take args; data.{kind} does not")
    for key in ("target", "groups"):
        if key in data and data[key] is not None and (kind != "csv" or not isinstance(data[key], str)):
            raise ConfigError(f"data.{key}", "expected a CSV column name (data.csv only); "
                                             f"got {data[key]!r}" + ("" if kind == "csv" else f" with data.{kind}"))
    task = data.get("task")
    if task is not None and (kind not in ("npz", "csv") or task not in ("classification", "regression")):
        raise ConfigError("data.task", f"expected classification or regression (data.npz or data.csv only); "
                                       f"got {task!r}")
    if kind != "images" and ("size" in data or "grayscale" in data):
        bad = "size" if "size" in data else "grayscale"
        raise ConfigError(f"data.{bad}", f"applies to data.images only; this source is data.{kind}")
    size = data.get("size")
    if size is not None and (not isinstance(size, list) or len(size) != 2
                             or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4096
                                        for v in size)):
        raise ConfigError("data.size", f"expected [height, width], integers in 1..4096; got {size!r}")
    if not isinstance(data.get("grayscale", False), bool):
        raise ConfigError("data.grayscale", f"expected true or false; got {data['grayscale']!r}")
    std = data.get("standardise", "none")
    std = {True: "features", False: "none", None: "none"}.get(std, std) if isinstance(std, (bool, type(None))) else std
    if std not in STANDARDISE:
        raise ConfigError("data.standardise", f"expected one of {', '.join(STANDARDISE)} (or true for features); "
                                              f"got {data.get('standardise')!r}")
    if "standardise" in data:
        data["standardise"] = std
    if "generation" in data:
        _parse_generation(data, kind)


def _parse_generation(data: dict[str, Any], kind: str) -> None:
    """``generation: true`` or ``{size: N}``: the images made ready for image generators
    (``expunge.data.for_generation``; ``size`` resizes them to N x N)."""
    value = data["generation"]
    if value is False:
        data.pop("generation")
        return
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError("data.generation", f"expected true or a mapping such as {{size: 16}}; got {value!r}")
    extra = sorted(set(value) - {"size"})
    if extra:
        raise ConfigError(f"data.generation.{extra[0]}", "unknown key; allowed: size")
    size = value.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or not 4 <= size <= 256):
        raise ConfigError("data.generation.size", f"expected an integer in 4..256; got {size!r}")
    if kind in ("npz", "csv") or (kind == "name" and data["name"] not in GENERATION_DATA):
        raise ConfigError("data.generation", f"needs labelled images (data.images, or data.name "
                                             f"{' or '.join(GENERATION_DATA)}); this source is data.{kind}")
    if data.get("standardise", "none") != "none":
        raise ConfigError("data.standardise", "does not apply with data.generation (images are scaled to [-1, 1])")
    data["generation"] = dict(value)


def _parse_model(model: dict[str, Any], base_dir: Path = Path(".")) -> None:
    unknown = sorted(set(model) - {"name", "args", "path"})
    if unknown:
        raise ConfigError(f"model.{unknown[0]}", "unknown key; allowed: name, args, path")
    if "path" in model:
        if "name" in model or model.get("args"):
            bad = "name" if "name" in model else "args"
            raise ConfigError(f"model.{bad}", "give model.path (a local model directory) or model.name with args, "
                                              "not both")
        if not isinstance(model["path"], str):
            raise ConfigError("model.path", f"expected a directory path; got {model['path']!r}")
        p = Path(model["path"]) if Path(model["path"]).is_absolute() else base_dir / model["path"]
        if not (p / "config.json").is_file():
            raise ConfigError("model.path", f"{p} is not a model directory (no config.json; write one with "
                                            "save_pretrained)")
        model["path"] = str(p)
        model.pop("args", None)
        return
    if model.get("name") not in MODELS + LANGUAGE_MODELS + GENERATION_MODELS:
        raise ConfigError("model.name", f"unknown model {model.get('name')!r}; allowed: "
                                        f"{', '.join(MODELS + LANGUAGE_MODELS + GENERATION_MODELS)}, or model.path")
    if not isinstance(model.setdefault("args", {}), dict):
        raise ConfigError("model.args", "expected a mapping")
    if model["name"] in LANGUAGE_MODELS + GENERATION_MODELS:
        import inspect

        if model["name"] in GENERATION_MODELS:
            from .gen.diffusion import unet
            from .gen.gan import gan

            builder = unet if model["name"] == "unet" else gan
            fixed = ("n_classes", "size", "channels", "seed")    # from the data and the run
        else:
            from . import lm

            builder, fixed = getattr(lm, model["name"]), ("tokenizer", "seed")
        allowed = [k for k in inspect.signature(builder).parameters if k not in fixed]
        for key in model["args"]:
            if key not in allowed:
                raise ConfigError(f"model.args.{key}", f"unknown argument of {model['name']}; allowed: "
                                                       f"{', '.join(allowed)}")


def _parse_train(train: dict[str, Any], task: str | None = None,
                 defaults: dict[str, Any] | None = None) -> Recipe:
    names = [f.name for f in dataclasses.fields(Recipe)]
    for key, value in train.items():
        if key not in names:
            raise ConfigError(f"train.{key}", f"unknown setting; allowed: {', '.join(names)}")
    from .methods.base import parse_args

    try:
        recipe = parse_args(Recipe, train, where="training setting")
        if task in ("language", "generation"):   # what the config leaves out takes the task's defaults (and a
            recipe = Recipe.for_task(task, {**(defaults or {}),          # generator's own recipe_defaults)
                                            **{k: getattr(recipe, k) for k in train}})
        return recipe
    except (ValueError, TypeError) as e:
        bad = next((k for k in train if f" {k}=" in f" {e}"), None)
        raise ConfigError(f"train.{bad}" if bad else "train", str(e)) from None


def _parse_forget(forget: dict[str, Any]) -> None:
    given = [k for k in FORGET_KINDS if k in forget]
    extra = sorted(set(forget) - set(FORGET_KINDS) - {"seed"})
    if extra:
        raise ConfigError(f"forget.{extra[0]}", f"unknown key; allowed: {', '.join(FORGET_KINDS)}, seed")
    if len(given) != 1:
        raise ConfigError("forget", f"give exactly one of {', '.join(FORGET_KINDS)}; got {given or 'none'}")
    kind, value = given[0], forget[given[0]]
    seed = forget.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("forget.seed", f"expected an integer >= 0; got {seed!r}")
    if kind in ("fraction", "group_fraction") and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                   or not 0 < value < 1):
        raise ConfigError(f"forget.{kind}", f"expected a number strictly between 0 and 1; got {value!r}")
    if kind in ("classes", "indices") and (not isinstance(value, list) or not value
                                           or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"forget.{kind}", f"expected a non-empty list of integers; got {value!r}")
    if kind == "groups":
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError("forget.groups", f"expected a group value or a non-empty list of them (numbers or "
                                               f"strings); got {value!r}")
        forget["groups"] = values


def _parse_args_and_tuning(raw: dict[str, Any], method: Any) -> tuple[dict[str, Any], int | None]:
    """``args``: the method's arguments, or ``auto`` for a quick tuning whose budget ``tuning: {trials: N}`` sets."""
    from .tuning import MAX_TRIALS, QUICK_TRIALS

    value = raw.get("args")
    if isinstance(value, str) and value != "auto":
        raise ConfigError("args", f"expected a mapping of {method}'s arguments, or auto (a quick tuning); "
                                  f"got {value!r}")
    auto = value == "auto"
    args = {} if auto else _section(raw, "args", default={})
    tuning = raw.get("tuning")
    if tuning is None:
        return args, QUICK_TRIALS if auto else None
    if not auto:
        raise ConfigError("tuning", "sets the budget of a quick tuning and applies only with args: auto")
    if not isinstance(tuning, dict):
        raise ConfigError("tuning", f"expected a mapping such as {{trials: {QUICK_TRIALS}}}; got {tuning!r}")
    extra = sorted(set(tuning) - {"trials"})
    if extra:
        raise ConfigError(f"tuning.{extra[0]}", "unknown key; allowed: trials")
    trials = tuning.get("trials", QUICK_TRIALS)
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise ConfigError("tuning.trials", f"expected an integer in 1..{MAX_TRIALS}; got {trials!r}")
    return args, trials


def _check_method(method: str, args: dict[str, Any]) -> None:
    from .methods import get

    try:
        cls = get(method)
    except ValueError as e:
        raise ConfigError("method", str(e)) from None
    try:
        method_args = cls(**args).args
        if hasattr(method_args, "recipe"):
            method_args.recipe()        # training settings are checked now, not after the original is trained
        for key, value in dataclasses.asdict(method_args).items():
            if key.endswith("epochs") and isinstance(value, int) and value > MAX_EPOCHS:
                raise ValueError(f"method {method!r}: {key}={value} is not allowed; expected at most {MAX_EPOCHS}")
    except (ValueError, TypeError) as e:
        bad = next((k for k in args if f"argument {k}" in str(e) or f"{k}=" in str(e)
                    or f": {k} " in str(e)), None)
        raise ConfigError(f"args.{bad}" if bad else "args", str(e)) from None
