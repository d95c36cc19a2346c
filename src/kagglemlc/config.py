"""The experiment config: YAML → typed pydantic sections, with dotted command-line overrides.

    cfg = load_config("configs/demo.yaml", ["train.lr=3e-5", "cv.folds=3"])
    cfg.train.lr  # 3e-05

Unknown keys and wrong types are errors naming the key and the allowed values. Relative paths in
the YAML resolve against the YAML file's folder; relative paths given as overrides resolve against
the current directory (where the user typed them).
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kagglemlc.errors import KaggleMLCError
from kagglemlc.files import write_yaml
from kagglemlc.metrics import METRIC_NAMES, metric_problem

DEFAULT_CONFIG = Path("kagglemlc.yaml")


def _resolve_path(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    base = Path((info.context or {}).get("base_dir", "."))
    return (base / value.expanduser()).resolve()


ResolvedPath = Annotated[Path, AfterValidator(_resolve_path)]


def name_problem(value: str) -> str | None:
    """Why `value` cannot be a name kagglemlc turns into a file or folder name; None when it can.

    Paths the user writes are taken as written; names (the experiment `name` → submissions/<name>-<time>.csv,
    `ensemble --name` → blend-<name>/) must stay one plain file name inside the folder the user named.
    """
    if value and not value.startswith(".") and "/" not in value and "\\" not in value and value.isprintable():
        return None
    return f"{value!r} is not a plain name: it becomes a file name, so no '/', '\\', leading '.' or control characters"


# Which stages' outputs each setting changes: every field is marked, and `run` fingerprints a stage from
# exactly the settings marked for it (plus its upstream stages), so an edit redoes what it changes and nothing
# more. "file": the setting names a file whose *content* counts, not its path. "kinds": only for these model kinds.
STAGES = ("prepare", "train", "predict", "tune-thresholds", "submit")


def affects(*stages: str, file: bool = False, kinds: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A field's `json_schema_extra`: the stages whose outputs change when the field's value does."""
    assert set(stages) <= set(STAGES), stages
    return {"stages": list(stages), "file": file, "kinds": list(kinds) if kinds else None}


NO_OUTPUT = affects()  # where to look, how fast, what to log: nothing on disk changes
PREPARE, PREPARE_FILE = affects("prepare"), affects("prepare", file=True)
TRAIN = affects("train")
GENERATIVE_TRAIN = affects("train", kinds=("generative",))
PREDICT_FILE = affects("predict", file=True)
THRESHOLDS = affects("tune-thresholds")
SUBMIT, SUBMIT_FILE = affects("submit"), affects("submit", file=True)


# `auto`: chosen by `kagglemlc.defaults` from the model kind, the checkpoint and the data (the rules are in the
# README's config reference); whatever the config sets instead is used as it is.
AUTO = "auto"
Auto = Literal["auto"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)


class CompetitionConfig(Section):
    slug: str | None = Field(None, json_schema_extra=NO_OUTPUT)
    """Kaggle competition slug, used by `submit --upload`."""
    train: ResolvedPath = Field(json_schema_extra=PREPARE_FILE)
    """Training file (CSV or TSV, by extension or sniffed)."""
    test: ResolvedPath | None = Field(None, json_schema_extra=PREDICT_FILE)
    """Test file: the rows to predict."""
    sample_submission: ResolvedPath | None = Field(None, json_schema_extra=SUBMIT_FILE)
    """The competition's sample submission: fixes the ids, their order and the columns."""
    id_column: str = Field("id", json_schema_extra=PREPARE)
    """Column holding the row id (kept as a string end to end: leading zeros survive)."""
    text_column: str | list[str] = Field("text", json_schema_extra=TRAIN)
    """One column, a list of columns (joined with a space), or a template such as "{title} [SEP] {body}"."""
    labels: Literal["auto"] | list[str] = Field("auto", json_schema_extra=PREPARE)
    """`auto` = the sample submission's columns except the id; or an explicit list of label names."""
    label_format: Literal["wide", "list"] = Field("wide", json_schema_extra=PREPARE)
    """`wide`: one 0/1 column per label; `list`: one column (`label_column`) holding "anger,joy" or "3,27"."""
    label_column: str = Field("labels", json_schema_extra=PREPARE)
    """With `label_format: list`: the column holding the labels."""
    label_separator: str = Field(",", json_schema_extra=PREPARE)
    """With `label_format: list`: the separator between labels."""
    label_names_file: ResolvedPath | None = Field(None, json_schema_extra=PREPARE_FILE)
    """With `label_format: list` and integer labels: a text file with one label name per line (line i = id i)."""
    task: Literal["multilabel", "multiclass", "binary"] = Field("multilabel", json_schema_extra=PREPARE)
    """multilabel (any number of labels per row), multiclass (exactly one), binary (one 0/1 target)."""
    metric: Literal[METRIC_NAMES] = Field("f1_macro", json_schema_extra=TRAIN)  # type: ignore[valid-type]
    """The competition metric, used for early stopping, thresholds and blends."""
    encoding: str = Field("utf-8", json_schema_extra=PREPARE)
    """Encoding of the competition files (utf-8 also accepts a BOM); e.g. latin-1 or cp1252 for legacy files."""
    delimiter: str | None = Field(None, json_schema_extra=PREPARE)
    """Field delimiter; default: `,` for .csv, tab for .tsv, sniffed otherwise."""


class CVConfig(Section):
    folds: int = Field(5, ge=2, le=100, json_schema_extra=PREPARE)
    """Number of folds (K)."""
    seed: int = Field(42, json_schema_extra=PREPARE)
    """Seed of the split: the same seed gives the same folds."""
    group_column: str | None = Field(None, json_schema_extra=PREPARE)
    """Optional train column: rows sharing a value always land in the same fold."""


class ModelConfig(Section):
    name: str = Field("minilm", json_schema_extra=TRAIN)
    """A local path, a hub id already in the local cache, or the bundled alias `minilm`."""
    kind: Literal["encoder", "decoder", "generative"] = Field("encoder", json_schema_extra=TRAIN)
    """encoder (classification head), decoder (LLM + classification head), generative (text out, parsed)."""
    max_length: Annotated[int, Field(ge=8)] | Auto = Field(AUTO, json_schema_extra=TRAIN)
    """Longest input in tokens; longer texts are truncated. auto: see Defaults."""
    cache_dir: ResolvedPath | None = Field(None, json_schema_extra=NO_OUTPUT)
    """Hugging Face cache to look in (default: $HF_HOME / the usual cache). Nothing is downloaded."""
    trust_remote_code: bool = Field(False, json_schema_extra=TRAIN)
    """Run Python code shipped with the model. Off unless you trust the model's source."""


class AdapterConfig(Section):
    method: Literal["none", "lora", "qlora", "ia3", "head"] = Field("none", json_schema_extra=TRAIN)
    """none (full fine-tune) | lora | qlora (4-bit base + LoRA) | ia3 | head (frozen base, head only)."""
    r: int = Field(16, ge=1, json_schema_extra=TRAIN)
    """LoRA rank."""
    alpha: int = Field(32, ge=1, json_schema_extra=TRAIN)
    """LoRA alpha."""
    dropout: float = Field(0.05, ge=0, lt=1, json_schema_extra=TRAIN)
    """LoRA dropout."""
    target_modules: Literal["all-linear"] | list[str] = Field("all-linear", json_schema_extra=TRAIN)
    """Modules that get adapters: `all-linear` or a list of module names."""
    use_rslora: bool = Field(False, json_schema_extra=TRAIN)
    """Rank-stabilised LoRA scaling (passed to peft)."""
    use_dora: bool = Field(False, json_schema_extra=TRAIN)
    """DoRA (passed to peft)."""
    gradient_checkpointing: bool = Field(False, json_schema_extra=NO_OUTPUT)
    """Trade compute for memory on large models."""


class TrainConfig(Section):
    epochs: Annotated[int, Field(ge=1)] | Auto = Field(AUTO, json_schema_extra=TRAIN)
    """Passes over the fold's training rows. auto: by model kind and data size (see Defaults)."""
    max_steps: int | None = Field(None, ge=1, json_schema_extra=TRAIN)
    """Stop after this many optimiser steps (debugging, smoke runs)."""
    lr: Annotated[float, Field(gt=0)] | Auto = Field(AUTO, json_schema_extra=TRAIN)
    """Peak learning rate. auto: by model kind and adapter (see Defaults)."""
    head_lr: Annotated[float, Field(gt=0)] | None | Auto = Field(AUTO, json_schema_extra=TRAIN)
    """Peak learning rate of the new classification head (null: `lr`). auto: by checkpoint type (see Defaults)."""
    weight_decay: float = Field(0.01, ge=0, json_schema_extra=TRAIN)
    """AdamW weight decay (not applied to biases and norms)."""
    batch_size: Annotated[int, Field(ge=1)] | Auto = Field(AUTO, json_schema_extra=TRAIN)
    """Training rows per device per step. auto: by model kind (see Defaults)."""
    eval_batch_size: int = Field(128, ge=1, json_schema_extra=NO_OUTPUT)
    """Rows per forward pass in evaluation and prediction."""
    grad_accum: int = Field(1, ge=1, json_schema_extra=TRAIN)
    """Gradient accumulation steps."""
    max_grad_norm: float | None = Field(1.0, gt=0, json_schema_extra=TRAIN)
    """Gradient clipping norm; null disables clipping."""
    scheduler: Literal["linear", "cosine", "constant", "reduce_on_plateau"] = Field("linear", json_schema_extra=TRAIN)
    """Learning-rate schedule after warmup."""
    warmup_ratio: Annotated[float, Field(ge=0, lt=1)] | Auto = Field(AUTO, json_schema_extra=TRAIN)
    """Fraction of the steps spent warming up. auto: by model kind (see Defaults)."""
    optimizer: Literal["adamw", "adamw_8bit", "paged_adamw_8bit"] = Field("adamw", json_schema_extra=TRAIN)
    """adamw (torch) or the bitsandbytes 8-bit variants."""
    precision: Literal["auto", "bf16", "fp16", "no"] = Field("auto", json_schema_extra=TRAIN)
    """auto = bf16 where supported (GPU or CPU with AVX512-BF16), else fp16 on GPU, else fp32."""

    @field_validator("precision", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        return "no" if value is False else value  # YAML 1.1 reads a bare `no` as false

    loss: Literal["bce", "focal", "asl", "ce"] = Field("bce", json_schema_extra=TRAIN)
    """bce / focal / asl (asymmetric) for multilabel and binary; ce for multiclass."""
    class_weights: Literal["auto", "none", "balanced", "sqrt"] = Field(AUTO, json_schema_extra=TRAIN)
    """Per-label positive weights from the fold's training rows. auto: by task and metric (see Defaults)."""
    focal_gamma: float = Field(2.0, ge=0, json_schema_extra=TRAIN)
    """Focal loss gamma."""
    asl_gamma_neg: float = Field(4.0, ge=0, json_schema_extra=TRAIN)
    """Asymmetric loss: focusing on negatives."""
    asl_gamma_pos: float = Field(0.0, ge=0, json_schema_extra=TRAIN)
    """Asymmetric loss: focusing on positives."""
    asl_clip: float = Field(0.05, ge=0, lt=1, json_schema_extra=TRAIN)
    """Asymmetric loss: probability margin shifted off easy negatives."""
    label_smoothing: float = Field(0.0, ge=0, lt=1, json_schema_extra=TRAIN)
    """Cross-entropy label smoothing (multiclass)."""
    eval_every: int | None = Field(None, ge=1, json_schema_extra=TRAIN)
    """Evaluate every N optimiser steps; default: once per epoch."""
    checkpoint_every: int = Field(200, ge=1, json_schema_extra=NO_OUTPUT)
    """Save resumable state every N optimiser steps (and at every evaluation)."""
    early_stopping_patience: int | None = Field(2, ge=1, json_schema_extra=TRAIN)
    """Stop after this many evaluations without improvement; null: never."""
    group_by_length: bool = Field(True, json_schema_extra=TRAIN)
    """Batch rows of similar length together (less padding, faster)."""
    seed: int = Field(42, json_schema_extra=TRAIN)
    """Seed of initialisation, shuffling and dropout."""
    report_to: Literal["none", "wandb", "tensorboard"] = Field("none", json_schema_extra=NO_OUTPUT)
    """Experiment tracker, through accelerate (install `kagglemlc[wandb]` or `kagglemlc[tensorboard]`)."""
    tracker_project: str | None = Field(None, json_schema_extra=NO_OUTPUT)
    """Tracker project shared by the competition's experiments (default: `competition.slug`, else its folder's name)."""
    log_every: int = Field(20, ge=1, json_schema_extra=NO_OUTPUT)
    """Log training loss, learning rate and samples/s to the tracker every N optimiser steps."""
    log_every_seconds: float = Field(30, gt=0, json_schema_extra=NO_OUTPUT)
    """Without a terminal (a notebook cell, a log file): a plain progress line at most this often."""


class ThresholdsConfig(Section):
    strategy: Literal["per_label", "global", "fixed"] = Field("per_label", json_schema_extra=THRESHOLDS)
    """per_label (tuned per label on OOF), global (one tuned threshold), fixed (`value`)."""
    value: float = Field(0.5, gt=0, lt=1, json_schema_extra=THRESHOLDS)
    """The threshold used with `strategy: fixed`."""
    multiclass_bias: bool = Field(False, json_schema_extra=THRESHOLDS)
    """Multiclass: tune an additive per-class bias on the OOF before the argmax."""


class SubmissionConfig(Section):
    kind: Literal["labels", "probabilities"] = Field("labels", json_schema_extra=SUBMIT)
    """labels (thresholded 0/1 or class names) or probabilities (for AUC / log-loss metrics)."""
    dir: ResolvedPath | None = Field(None, json_schema_extra=SUBMIT)
    """Where submissions are written; default: ./submissions in the current directory."""


class GenerationConfig(Section):
    prompt: str | None = Field(None, json_schema_extra=GENERATIVE_TRAIN)
    """`model.kind: generative`: the user message, with {labels} and {text} placeholders; default states the
    task, lists the allowed labels and asks for comma-separated labels, or none."""
    system: str | None = Field(None, json_schema_extra=GENERATIVE_TRAIN)
    """System message, for chat templates that take one."""
    synonyms: dict[str, list[str]] = Field({}, json_schema_extra=GENERATIVE_TRAIN)
    """Other words the answer parser accepts for a label, e.g. {anger: [angry, mad]}."""
    fuzzy_cutoff: float = Field(0.85, gt=0, le=1, json_schema_extra=GENERATIVE_TRAIN)
    """Near-misses ("admiraton") map to the closest label when difflib's similarity reaches this; 1 = exact only."""
    max_new_tokens: int | None = Field(None, ge=1, json_schema_extra=GENERATIVE_TRAIN)
    """Tokens generated per answer; default: the longest answer in the training data, plus a few."""


class Config(Section):
    competition: CompetitionConfig
    cv: CVConfig = CVConfig()
    model: ModelConfig = ModelConfig()
    adapter: AdapterConfig = AdapterConfig()
    train: TrainConfig = TrainConfig()
    thresholds: ThresholdsConfig = ThresholdsConfig()
    submission: SubmissionConfig = SubmissionConfig()
    generation: GenerationConfig = GenerationConfig()
    output_dir: ResolvedPath | None = Field(None, json_schema_extra=NO_OUTPUT)
    """The experiment's directory; default: runs/<config file name> next to the config."""
    name: str | None = Field(None, json_schema_extra=SUBMIT)
    """Experiment name (submission file names, reports); default: the output directory's name."""
    meta: dict[str, Any] = Field({}, json_schema_extra=NO_OUTPUT)
    """Written by kagglemlc into the resolved config.yaml (versions, git commit); ignored on load."""

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        problem = None if value is None else name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Config:
        comp, train = self.competition, self.train
        if problem := metric_problem(comp.metric, comp.task):
            raise ValueError(f"competition.metric: {problem}")
        if comp.task == "multiclass" and train.loss != "ce":
            raise ValueError(f"train.loss: multiclass tasks use 'ce', not '{train.loss}'")
        if comp.task != "multiclass" and train.loss == "ce":
            raise ValueError(f"train.loss: 'ce' is for multiclass; use bce, focal or asl for {comp.task}")
        if self.model.kind == "generative" and self.adapter.method == "head":
            raise ValueError(
                "adapter.method: 'head' trains a classification head; generative models use lora, qlora, ia3 or none"
            )
        return self

    @property
    def run_dir(self) -> Path:
        assert self.output_dir is not None  # filled by load_config
        return self.output_dir


def _is_path_field(annotation: Any, metadata: list[Any]) -> bool:
    """True for ResolvedPath fields, optional ones (`ResolvedPath | None`) included."""
    found = list(metadata) + [m for arg in get_args(annotation) for m in getattr(arg, "__metadata__", ())]
    return any(getattr(m, "func", None) is _resolve_path for m in found)


def _path_keys(model: type[BaseModel]) -> set[str]:
    return {name for name, field in model.model_fields.items() if _is_path_field(field.annotation, field.metadata)}


def _sections() -> dict[str, type[BaseModel]]:
    return {
        name: field.annotation
        for name, field in Config.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise KaggleMLCError(f"override '{override}': expected section.key=value, e.g. train.lr=3e-5")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    sections = _sections()
    top_keys = set(Config.model_fields) - {"meta"}
    if parts[0] not in top_keys:
        raise KaggleMLCError(
            f"override '{override}': unknown section '{parts[0]}'; allowed: {', '.join(sorted(top_keys))}"
        )
    if parts[0] in sections:
        section = sections[parts[0]]
        if len(parts) != 2 or parts[1] not in section.model_fields:
            allowed = ", ".join(f"{parts[0]}.{k}" for k in section.model_fields)
            raise KaggleMLCError(f"override '{override}': unknown key '{key}'; allowed: {allowed}")
        is_path = parts[1] in _path_keys(section)
        target = raw.setdefault(parts[0], {})
        if not isinstance(target, dict):
            raise KaggleMLCError(f"override '{override}': section '{parts[0]}' in the config is not a mapping")
    else:
        if len(parts) != 1:
            raise KaggleMLCError(f"override '{override}': '{parts[0]}' is a top-level key, write {parts[0]}=value")
        is_path, target = parts[0] in _path_keys(Config), raw
    if is_path and isinstance(value, str):
        value = str(Path(value).expanduser().resolve())
    target[parts[-1]] = value


def _setting_key(loc: tuple) -> str:
    """The dotted setting a pydantic error location names, without the union branch it tried ("constrained-float")."""
    depth = 2 if loc and str(loc[0]) in _sections() else 1
    return ".".join(str(p) for p in loc[:depth])


def _format_error(source: str, err: ValidationError) -> str:
    errors = err.errors()
    first = errors[0]
    key = _setting_key(first["loc"]) or "(top level)"
    # a setting that also takes `auto` fails once per union branch: one error, saying that auto is allowed
    same = [e for e in errors if _setting_key(e["loc"]) == key]
    if len(first["loc"]) > len(key.split(".")) and any("literal['auto']" in map(str, e["loc"]) for e in same):
        first = {**first, "msg": first["msg"] + " (or auto)"}
        errors = [first] + [e for e in errors if _setting_key(e["loc"]) != key]
    count = len(errors)
    more = f" (+{count - 1} more errors)" if count > 1 else ""
    if first["type"] == "extra_forbidden":
        parent = first["loc"][:-1]
        model: type[BaseModel] = Config
        for part in parent:
            model = _sections().get(str(part), model)
        allowed = ", ".join(k for k in model.model_fields if k != "meta")
        return f"{source}: unknown key '{key}'; allowed keys here: {allowed}{more}"
    if first["type"] == "missing":
        return f"{source}: missing required key '{key}'{more}"
    got = f" (got {first['input']!r})" if first["type"] not in ("value_error", "assertion_error") else ""
    msg = first["msg"].removeprefix("Value error, ")
    return f"{source}: {key}: {msg}{got}{more}" if not msg.startswith(key) else f"{source}: {msg}{more}"


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Reads, overrides and validates an experiment config.

    Args:
        path: the YAML file; default `./kagglemlc.yaml`.
        overrides: dotted `section.key=value` strings, type-checked like the YAML.

    Raises:
        KaggleMLCError: missing or unparsable file, unknown key, wrong type or value.
    """
    path = Path(path or DEFAULT_CONFIG)
    if not path.is_file():
        hint = (
            " (run in a competition folder with a kagglemlc.yaml, or name the config)" if path == DEFAULT_CONFIG else ""
        )
        raise KaggleMLCError(f"config file not found: {path}{hint}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise KaggleMLCError(f"{path}:{where} not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise KaggleMLCError(f"{path}: expected a mapping of sections (competition:, model:, ...) at the top")
    raw.pop("meta", None)
    for override in overrides or []:
        _apply_override(raw, override)
    raw.setdefault("output_dir", f"runs/{path.stem}")
    base_dir = path.resolve().parent
    try:
        cfg = Config.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise KaggleMLCError(_format_error(str(path), exc)) from None
    if cfg.submission.dir is None:
        cfg.submission.dir = Path("submissions").resolve()
    if cfg.name is None:
        cfg.name = cfg.run_dir.name
    cfg.meta = {"config_file": str(path.resolve())}
    return cfg


def _git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    versions = {}
    for pkg in ("kagglemlc", "torch", "transformers", "peft", "accelerate", "bitsandbytes", "scikit-learn", "pandas"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return versions


def settings_dict(cfg: Config) -> dict[str, Any]:
    """The config's settings as plain data, without the provenance in `meta` (what decides if outputs are current)."""
    return cfg.model_dump(mode="json", exclude={"meta"})


def field_marks() -> list[tuple[str, dict[str, Any]]]:
    """(dotted key, `affects` mark) of every setting, in schema order: which stages each one changes."""
    marks = []
    for name, field in Config.model_fields.items():
        section = _sections().get(name)
        if section is None:
            marks.append((name, field.json_schema_extra))
        else:
            marks += [(f"{name}.{key}", sub.json_schema_extra) for key, sub in section.model_fields.items()]
    return marks


def save_resolved(cfg: Config, stages: dict[str, dict[str, Any]] | None = None) -> Path:
    """Writes `output_dir/config.yaml`: the resolved settings plus versions, git commit, time and, when given,
    the settings each stage's outputs were made with (`meta.stages`, see `experiment.record_settings`)."""
    config_file = Path(cfg.meta.get("config_file", "."))
    meta = {
        **cfg.meta,
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "git_commit": _git_commit(config_file.parent),
        **({"stages": stages} if stages is not None else {}),
    }
    return write_yaml(cfg.run_dir / "config.yaml", {**settings_dict(cfg), "meta": meta})


def _redoes(mark: dict[str, Any]) -> str:
    """A field's mark in words: the first stage(s) `run` redoes after an edit (the later ones follow)."""
    if not mark["stages"]:
        return "nothing"
    said = " + ".join(mark["stages"]) + " →"
    if mark["file"]:
        said += " (when the file's content changes)"
    if mark["kinds"]:
        said += f" (model.kind: {', '.join(mark['kinds'])})"
    return said


def reference_markdown() -> str:
    """The config reference (every section, key, type, default and doc) as Markdown tables, for the README."""
    lines = []
    for section, model in [("(top level)", Config), *_sections().items()]:
        lines += [
            f"### `{section}`" if model is not Config else "### top level",
            "",
            "| key | type | default | an edit redoes | meaning |",
            "|---|---|---|---|---|",
        ]
        for name, field in model.model_fields.items():
            if name == "meta" or (model is Config and name in _sections()):
                continue
            kind = str(field.annotation).replace("typing.", "").replace("pathlib.", "").replace("<class '", "")
            kind = kind.replace("'>", "").replace("Annotated[Path, AfterValidator(func=<function _resolve_path", "Path")
            kind = re.sub(r" at 0x[0-9a-f]+>\)\]", "", kind)
            kind = re.sub(r"Annotated\[(\w+), FieldInfo\(.*?metadata=\[.*?\]\)\]", r"\1", kind)  # int ≥ 1 → int
            kind = re.sub(r"^Union\[(.*), Literal\['auto'\]\]$", r"\1 | auto", kind)
            kind = kind.replace(", NoneType |", " | None |")
            kind = kind.replace("|", "\\|")
            default = (
                "required" if field.is_required() else f"`{field.default!r}`" if field.default is not None else "—"
            )
            doc = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{name}` | {kind} | {default} | {_redoes(field.json_schema_extra)} | {doc} |")
        lines.append("")
    return "\n".join(lines)
