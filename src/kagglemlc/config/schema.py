"""The experiment config's schema: typed pydantic sections, each field's default, doc and the stages whose outputs
it changes (`affects`). Loading and overrides are in `kagglemlc.config.load`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from kagglemlc.config.metric_names import METRIC_NAMES, metric_problem
from kagglemlc.core.paths import DEFAULT_CONFIG_FILE

DEFAULT_CONFIG = Path(DEFAULT_CONFIG_FILE)


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
# more. "file": the setting names a file whose *content* counts, not its path. "kinds" / "tasks": only for these model
# kinds / competition tasks (elsewhere the setting is read by nothing, so an edit of it redoes nothing).
STAGES = ("prepare", "train", "full-fit", "predict", "tune-thresholds", "submit")


def affects(
    *stages: str, file: bool = False, kinds: tuple[str, ...] | None = None, tasks: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """A field's `json_schema_extra`: the stages whose outputs change when the field's value does."""
    assert set(stages) <= set(STAGES), stages
    narrow = {"kinds": list(kinds) if kinds else None, "tasks": list(tasks) if tasks else None}
    return {"stages": list(stages), "file": file, **narrow}


NO_OUTPUT = affects()  # where to look, how fast, what to log: nothing on disk changes
PREPARE, PREPARE_FILE = affects("prepare"), affects("prepare", file=True)
TRAIN = affects("train")
# an `auto` setting whose rule can choose other than what kagglemlc did before the setting existed: "before" is that
# value, what a record made then (which lacks the key) counts as (`experiment.setting_changes`)
TRAIN_BEFORE_NULL = {**TRAIN, "before": None}
FULL_FIT = affects("full-fit")  # adds a model beside the folds: never invalidates them
GENERATIVE_TRAIN = affects("train", kinds=("generative",))
PREDICT, PREDICT_FILE = affects("predict"), affects("predict", file=True)
THRESHOLDS = affects("tune-thresholds")
SUBMIT, SUBMIT_FILE = affects("submit"), affects("submit", file=True)
GENERATIVE_SUBMIT = affects("submit", kinds=("generative",))
SPAN_PREPARE, SPAN_TRAIN = affects("prepare", tasks=("span",)), affects("train", tasks=("span",))


# `auto`: chosen by `kagglemlc.models.defaults` from the model kind, the checkpoint and the data (the rules are in the
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
    text_pair_column: str | list[str] | None = Field(None, json_schema_extra=TRAIN)
    """A second text per row, encoded as a real pair with text_column ([CLS] text [SEP] pair [SEP], segment ids where
    the model has them; a decoder: <s> text </s> pair): a column, or a list of columns joined by the separator token
    (prompt + two responses)."""
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
    task: Literal["multilabel", "multiclass", "binary", "regression", "span"] = Field(
        "multilabel", json_schema_extra=PREPARE
    )
    """multilabel (any number of labels per row), multiclass (exactly one), binary (one 0/1 target), regression (one
    or more numeric targets, e.g. scores or grades: `labels` are the target columns), span (the answer is a substring
    of `context_column`: question answering, "which words say it")."""
    context_column: str = Field("context", json_schema_extra=SPAN_PREPARE)
    """task span: the column holding the text the answer is taken from."""
    question_column: str | None = Field(None, json_schema_extra=SPAN_PREPARE)
    """task span: a column holding each row's question (or a per-row cue such as the sentiment), read before the
    context; null: the context alone, or the fixed `competition.question`."""
    question: str | None = Field(None, json_schema_extra=SPAN_PREPARE)
    """task span: one question for every row (with no question_column)."""
    answer_column: str = Field("answer", json_schema_extra=SPAN_PREPARE)
    """task span: the answer's text, located in the context (the first occurrence, or at answer_start_column)."""
    answer_start_column: str | None = Field(None, json_schema_extra=SPAN_PREPARE)
    """task span: the answer's character offset in the context, where the data gives it (SQuAD's answer_start)."""
    allow_no_answer: bool = Field(False, json_schema_extra=SPAN_PREPARE)
    """task span: rows whose answer is empty or not in the context are kept as "no answer" rows (the model learns to
    answer "") instead of being an error."""
    soft_labels: bool = Field(False, json_schema_extra=PREPARE)
    """Wide label columns hold probabilities in [0, 1] (soft targets), learned as they are; scored rounded at 0.5."""
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
    """A local folder, a Hugging Face Hub id (downloaded into the cache unless offline; see model.revision), or the
    bundled alias `minilm`."""
    kind: Literal["encoder", "decoder", "generative"] = Field("encoder", json_schema_extra=TRAIN)
    """encoder (classification head), decoder (LLM + classification head), generative (text out, parsed)."""
    max_length: Annotated[int, Field(ge=8)] | Auto = Field(AUTO, json_schema_extra=TRAIN)
    """Longest input in tokens; longer texts are truncated. auto: see Defaults."""
    truncation: Literal["right", "left", "head_tail"] = Field("right", json_schema_extra=TRAIN)
    """Which tokens of a longer text are kept: first (right), last (left) or both ends; generative prompts: right."""
    segment_budgets: list[Annotated[int, Field(ge=1)]] | None = Field(None, json_schema_extra=TRAIN)
    """Text pairs: the most tokens each segment keeps (text_column first, then each text_pair_column); default:
    longest_first, the longest segment cut until the pair fits max_length."""
    head_fraction: float = Field(0.25, ge=0, le=1, json_schema_extra=TRAIN)
    """head_tail: the share of max_length given to the text's first tokens; the rest goes to its last tokens."""
    revision: str | None = Field(None, json_schema_extra=TRAIN)
    """Hub id only: the branch, tag or commit to use (default: main); the commit used is recorded in config.yaml."""
    offline: bool = Field(False, json_schema_extra=NO_OUTPUT)
    """Never download: read a hub id from the cache only (as HF_HUB_OFFLINE=1 does); `kagglemlc download` fills the
    cache beforehand."""
    cache_dir: ResolvedPath | None = Field(None, json_schema_extra=NO_OUTPUT)
    """Hugging Face cache that hub models are downloaded into and read from (default: huggingface_hub's,
    $HF_HUB_CACHE or $HF_HOME/hub)."""
    trust_remote_code: bool = Field(False, json_schema_extra=TRAIN)
    """Run Python code shipped with the model. Off unless you trust the model's source."""
    pooling: Literal["cls", "mean", "max", "attention"] | None | Auto = Field(AUTO, json_schema_extra=TRAIN_BEFORE_NULL)
    """Encoders: null = the checkpoint's own classification head (it reads the first token, through BERT's pooler,
    RoBERTa's and ELECTRA's dense layer or DeBERTa's context pooler); cls | mean | max | attention = kagglemlc's head
    instead: the last hidden states pooled (the first token; mean or max over the real tokens; a learned softmax
    weighting of them), then dropout and one linear layer. auto: the pooling a sentence-transformers checkpoint was
    trained with (its 1_Pooling/config.json; mean when it has none), else null (see Defaults)."""
    head_dropouts: int = Field(1, ge=1, json_schema_extra=TRAIN)
    """Multi-sample dropout (with model.pooling set): in training the head's linear layer reads the pooled vector
    under this many dropout masks and the logits are averaged; prediction is unchanged."""
    reinit_layers: int = Field(0, ge=0, json_schema_extra=TRAIN)
    """Encoders, adapter.method none: re-initialise the top N layers (the model's own initialisation) before
    training."""
    doc_stride: int = Field(64, ge=1, json_schema_extra=SPAN_TRAIN)
    """task span: a context longer than max_length is read in windows that share this many tokens."""
    max_answer_tokens: int = Field(30, ge=1, json_schema_extra=SPAN_TRAIN)
    """task span: the longest answer decoded, in tokens (start ≤ end within it)."""
    freeze_layers: int | None = Field(None, ge=0, json_schema_extra=TRAIN)
    """Encoders, adapter.method none: freeze the embeddings and the bottom N layers (0: the embeddings only; null:
    nothing frozen)."""


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


class DistillConfig(Section):
    teacher: ResolvedPath
    """The teacher experiment's output_dir (the same folds.parquet as this one; `kagglemlc predict --train-rows`
    run on it first): fold k learns from teacher fold k's predictions of fold k's training rows."""
    weight: float = Field(0.5, ge=0, le=1)
    """Share of the teacher in the targets: (1 - weight) · labels + weight · teacher probabilities."""
    temperature: float = Field(1.0, gt=0)
    """Softens the teacher's probabilities (logits divided by it) before they are mixed in; 1 = as they are."""


class PseudoLabelsConfig(Section):
    source: ResolvedPath
    """The experiment whose test predictions label the added rows (the same folds.parquet as this one): fold k adds
    the test rows with source fold k's probabilities, from a model that never saw fold k's validation rows."""
    rows: Literal["test"] | ResolvedPath = "test"
    """Which unlabelled rows are added: `test` (the competition's test rows, from source fold k's test predictions)
    or a CSV/TSV of unlabelled texts (the competition's text column(s)), which source fold k's models predict."""
    min_confidence: float = Field(0.0, ge=0, lt=1)
    """Keep a row only when the source is this sure of every label (max(p, 1 - p); multiclass: its top class)."""
    weight: float = Field(1.0, gt=0)
    """Weight of a pseudo-labelled row's loss against a labelled row's (1)."""


class TrainConfig(Section):
    epochs: Annotated[int, Field(ge=1)] | Auto = Field(AUTO, json_schema_extra=TRAIN)
    """Passes over the fold's training rows. auto: by model kind and data size (see Defaults)."""
    max_steps: int | None = Field(None, ge=1, json_schema_extra=TRAIN)
    """Stop after this many optimiser steps (debugging, smoke runs)."""
    lr: Annotated[float, Field(gt=0)] | Auto = Field(AUTO, json_schema_extra=TRAIN)
    """Peak learning rate. auto: by model kind and adapter (see Defaults)."""
    head_lr: Annotated[float, Field(gt=0)] | None | Auto = Field(AUTO, json_schema_extra=TRAIN)
    """Peak learning rate of the new classification head (null: `lr`). auto: by checkpoint type (see Defaults)."""
    llrd: float | None = Field(None, gt=0, le=1, json_schema_extra=TRAIN)
    """Encoders: layer-wise learning-rate decay. The top layer learns at `lr`, each layer below at `llrd` times the
    one above, the embeddings lowest (lr · llrd^n_layers); the head keeps head_lr. null: one rate for the body."""
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

    loss: Literal["bce", "focal", "asl", "ce", "mse", "huber", "smooth_l1"] = Field("bce", json_schema_extra=TRAIN)
    """bce / focal / asl (asymmetric) for multilabel and binary; ce for multiclass; mse / huber / smooth_l1 for
    regression (mse when unset)."""
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
    seeds: list[int] | None = Field(None, json_schema_extra=TRAIN)
    """Train every fold once per seed (fold{k}/seed{s}/); OOF and test probabilities are the seeds' mean."""
    full_fit: bool = Field(False, json_schema_extra=FULL_FIT)
    """After CV, one model on every training row for the steps CV chose (the folds' median best step, scaled to
    the larger set), predicting the test set into full/; `submission.use` decides what is submitted."""
    distill: DistillConfig | None = Field(None, json_schema_extra=TRAIN)
    """Learn from a teacher experiment's probabilities too: {teacher: <output_dir>, weight: 0.5, temperature: 1}."""
    pseudo_labels: PseudoLabelsConfig | None = Field(None, json_schema_extra=TRAIN)
    """Add the test rows, labelled by another experiment: {source: <output_dir>, min_confidence: 0, weight: 1}."""
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


class PredictConfig(Section):
    max_length: int | None = Field(None, ge=8, json_schema_extra=PREDICT)
    """Longest test input in tokens (default: model.max_length); reading more than training did often helps."""
    stride: int | None = Field(None, ge=1, json_schema_extra=PREDICT)
    """Sliding windows: a test text longer than the max_length is read in windows starting every `stride` tokens,
    every token covered; the windows' probabilities are pooled per text."""
    pooling: Literal["mean", "max"] = Field("mean", json_schema_extra=PREDICT)
    """How the windows of one text are pooled."""


class SubmissionConfig(Section):
    model_config = ConfigDict(**Section.model_config, validate_by_name=True)  # `from` is a Python keyword: from_

    kind: Literal["labels", "probabilities"] = Field("labels", json_schema_extra=SUBMIT)
    """labels (thresholded 0/1 or class names) or probabilities (for AUC / log-loss metrics). Regression scored by
    qwk: labels = the integer grades of the tuned cut points, probabilities = the raw scores."""
    dir: ResolvedPath | None = Field(None, json_schema_extra=SUBMIT)
    """Where submissions are written; default: ./submissions in the current directory."""
    use: Literal["folds", "full", "both"] = Field("folds", json_schema_extra=SUBMIT)
    """Test probabilities submitted: the folds' mean, the full fit's (train.full_fit), or the mean of the two."""
    from_: Literal["probabilities", "answers"] = Field(
        "probabilities", alias="from", json_schema_extra=GENERATIVE_SUBMIT
    )
    """model.kind generative: submit the label probabilities with the tuned thresholds, or the parsed answers (a
    label where at least half of the models named it; multiclass: the class named most often)."""


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


# What a Kaggle image lacks, or holds older than kagglemlc's floors, going by Kaggle's published image
# requirements (github.com/Kaggle/docker-python, kaggle_requirements.txt): no iterative-stratification or
# bitsandbytes, scikit-learn pinned at 1.2.2, matplotlib below 3.8.
KAGGLE_MISSING = ["iterative-stratification", "bitsandbytes", "scikit-learn", "matplotlib"]


class ExportConfig(Section):
    wheels: list[str] = Field(KAGGLE_MISSING, json_schema_extra=NO_OUTPUT)
    """`kagglemlc export`: packages shipped in the bundle as wheels besides kagglemlc (each at the version installed
    here, built with `pip wheel --no-deps`): what the Kaggle image lacks or holds too old. Add any package that the
    notebook's offline `pip install` names as missing; binary wheels are for this machine's Python version."""
    dataset: str | None = Field(None, json_schema_extra=NO_OUTPUT)
    """`export --push`: the Kaggle dataset OWNER/SLUG the bundle is uploaded to (created, then a new version on each
    push); default: <your Kaggle user>/<name>-kagglemlc."""
    kernel: str | None = Field(None, json_schema_extra=NO_OUTPUT)
    """`export --push`: the notebook OWNER/SLUG pushed with the bundle and the competition attached; default:
    <your Kaggle user>/<name>-inference."""


class Config(Section):
    competition: CompetitionConfig
    cv: CVConfig = CVConfig()
    model: ModelConfig = ModelConfig()
    adapter: AdapterConfig = AdapterConfig()
    train: TrainConfig = TrainConfig()
    thresholds: ThresholdsConfig = ThresholdsConfig()
    predict: PredictConfig = PredictConfig()
    submission: SubmissionConfig = SubmissionConfig()
    generation: GenerationConfig = GenerationConfig()
    export: ExportConfig = ExportConfig()
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
        regression_loss = train.loss in ("mse", "huber", "smooth_l1")
        if comp.task == "regression" and not regression_loss:
            if "loss" in train.model_fields_set:
                raise ValueError(f"train.loss: regression uses mse, huber or smooth_l1, not '{train.loss}'")
            train.loss = "mse"  # the default loss of a regression task
        if comp.task != "regression" and regression_loss:
            raise ValueError(f"train.loss: '{train.loss}' is for task: regression")
        if comp.task == "regression" and (comp.soft_labels or comp.label_format != "wide"):
            raise ValueError("competition.task: regression reads numeric wide target columns (label_format: wide)")
        if comp.task == "regression" and self.model.kind == "generative":
            raise ValueError("competition.task: regression needs a model with a head (model.kind encoder or decoder)")
        pairs = comp.text_pair_column
        n_pairs = 0 if pairs is None else 1 if isinstance(pairs, str) else len(pairs)
        budgets = self.model.segment_budgets
        if budgets is not None and len(budgets) != 1 + n_pairs:
            raise ValueError(
                f"model.segment_budgets: {len(budgets)} budgets for {1 + n_pairs} segment(s) (text_column, then each "
                "competition.text_pair_column)"
            )
        if n_pairs and self.model.kind == "generative":
            raise ValueError("competition.text_pair_column: generative prompts take one {text}; use a text template")
        if n_pairs and self.model.max_length == AUTO:
            raise ValueError("model.max_length: set it for text pairs (auto sizes one text, not the pair)")
        if n_pairs and self.model.truncation != "right":
            raise ValueError("model.truncation: text pairs keep each segment's first tokens (truncation: right)")
        if n_pairs and train.pseudo_labels is not None:
            raise ValueError("train.pseudo_labels: not with text pairs yet (the added rows have one text)")
        windows = self.predict.stride is not None or self.predict.max_length is not None
        if windows and (self.model.kind == "generative" or n_pairs):
            raise ValueError("predict: max_length and stride read one text with a classifier head (not pairs, prompts)")
        if comp.task == "span":
            self._check_span()
        if comp.task == "multiclass" and train.loss != "ce":
            raise ValueError(f"train.loss: multiclass tasks use 'ce', not '{train.loss}'")
        if comp.task != "multiclass" and train.loss == "ce":
            raise ValueError(f"train.loss: 'ce' is for multiclass; use bce, focal or asl for {comp.task}")
        if comp.soft_labels and comp.label_format != "wide":
            raise ValueError("competition.soft_labels: soft targets come from wide label columns (label_format: wide)")
        if comp.soft_labels and self.model.kind == "generative":
            raise ValueError("competition.soft_labels: generative models answer with label names, not probabilities")
        for key, value in (("seeds", train.seeds), ("distill", train.distill), ("pseudo_labels", train.pseudo_labels)):
            if value is not None and self.model.kind == "generative":
                raise ValueError(f"train.{key}: generative models answer in words, which are not averaged or mixed")
        if self.submission.from_ == "answers" and self.model.kind != "generative":
            raise ValueError("submission.from: answers are what generative models write; use probabilities")
        if self.submission.from_ == "answers" and self.submission.kind == "probabilities":
            raise ValueError("submission.from: answers are labels; submission.kind probabilities needs probabilities")
        if train.full_fit and (train.distill is not None or train.pseudo_labels is not None):
            raise ValueError("train.full_fit: not with distill or pseudo_labels (their targets are made per fold)")
        if train.seeds is not None and (not train.seeds or len(set(train.seeds)) != len(train.seeds)):
            raise ValueError(f"train.seeds: {train.seeds} repeats a seed or lists none; list each seed once")
        self._check_encoder_switches()
        if self.model.kind == "generative" and self.adapter.method == "head":
            raise ValueError(
                "adapter.method: 'head' trains a classification head; generative models use lora, qlora, ia3 or none"
            )
        return self

    def _check_span(self) -> None:
        comp, train = self.competition, self.train
        if comp.text_pair_column is not None:
            raise ValueError("competition.text_pair_column: task span reads question_column and context_column")
        if comp.question is not None and comp.question_column is not None:
            raise ValueError("competition.question: a fixed question or question_column, not both")
        if self.model.max_length == AUTO and self.model.kind != "generative":
            raise ValueError("model.max_length: set it for task span (question + context windows)")
        if self.model.kind != "generative" and self.model.doc_stride >= self.model.max_length // 2:
            raise ValueError(f"model.doc_stride: {self.model.doc_stride} must be under half of model.max_length")
        for key, value in (("seeds", train.seeds), ("distill", train.distill), ("pseudo_labels", train.pseudo_labels)):
            if value is not None:
                raise ValueError(f"train.{key}: not with task span yet")
        if train.full_fit:
            raise ValueError("train.full_fit: not with task span yet")
        windows = self.predict.stride is not None or self.predict.max_length is not None
        if self.model.pooling not in (None, AUTO) or windows:
            raise ValueError("task span reads windows itself (model.doc_stride); model.pooling and predict.* unset")
        if self.submission.kind != "labels":
            raise ValueError("submission.kind: task span submits the answer text (labels)")

    def _check_encoder_switches(self) -> None:
        m, method = self.model, self.adapter.method
        switched = {
            "model.pooling": m.pooling not in (None, AUTO),  # auto is null where a switch cannot be
            "model.head_dropouts": m.head_dropouts > 1,
            "model.reinit_layers": m.reinit_layers > 0,
            "model.freeze_layers": m.freeze_layers is not None,
            "train.llrd": self.train.llrd is not None,
        }
        on = [key for key, value in switched.items() if value]
        if on and m.kind != "encoder":
            raise ValueError(f"{on[0]}: an encoder switch (BERT, RoBERTa, DeBERTa, ELECTRA), not model.kind {m.kind}")
        if switched["model.head_dropouts"] and m.pooling is None:
            raise ValueError("model.head_dropouts: multi-sample dropout runs kagglemlc's head; set model.pooling")
        for key in ("model.reinit_layers", "model.freeze_layers"):
            if switched[key] and method != "none":
                raise ValueError(f"{key}: for full fine-tuning (adapter.method none); {method} freezes the body itself")
        if switched["train.llrd"] and method == "head":
            raise ValueError("train.llrd: adapter.method head trains the head alone; no layers to decay")

    @property
    def run_dir(self) -> Path:
        assert self.output_dir is not None  # filled by load_config
        return self.output_dir


def _sections() -> dict[str, type[BaseModel]]:
    return {
        name: field.annotation
        for name, field in Config.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
