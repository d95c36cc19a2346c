"""Encoder switches that top Kaggle solutions use: kagglemlc's pooling head with multi-sample dropout, re-initialising
the top layers, freezing the bottom ones, and each weight's depth for layer-wise learning-rate decay.

    cls = pooling_head_class(AutoConfig.from_pretrained(path), "mean", samples=5)  # the checkpoint's class, our head
    model = cls.from_pretrained(path, num_labels=3)
    reinit_top_layers(model, 1)          # with the model's own _init_weights
    freeze_bottom(model, 2)              # the embeddings and the 2 lowest layers
    depths = parameter_depths(model)     # id(weight) -> 0 (top layer) .. n_layers (embeddings), for train.llrd

Tested on BERT, RoBERTa, DeBERTa-v2/v3 and ELECTRA; the layer switches need the layers as a list
(`encoder.layer`, DistilBERT's `transformer.layer`, `layers`).
"""

from __future__ import annotations

from functools import cache

import torch
from torch import nn
from transformers import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from kagglemlc.core.errors import KaggleMLCError

POOLINGS = ("cls", "mean", "max", "attention")
LAYER_LISTS = (("encoder", "layer"), ("transformer", "layer"), ("layers",))  # where encoders keep their layers


class PoolingHead(nn.Module):
    """The last hidden states pooled into one vector per text, then dropout and a linear layer.

    cls: the first token's state (no pretrained pooler); mean / max: over the real tokens (the attention mask);
    attention: a learned score per token, softmax over the real tokens, the weighted sum of the states. With
    `samples` > 1, training applies the linear layer under that many dropout masks and averages the logits
    (multi-sample dropout); evaluation reads the pooled vector once, without dropout.
    """

    def __init__(self, hidden_size: int, num_labels: int, pooling: str, samples: int, dropout: float):
        super().__init__()
        self.pooling, self.samples = pooling, samples
        # bias-free: a constant shift of every token's score changes nothing under the softmax
        self.token_weight = nn.Linear(hidden_size, 1, bias=False) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)  # last: quantizers keep the last module in full precision

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, hidden) states and a (batch, tokens) 0/1 mask → (batch, hidden)."""
        if self.pooling == "cls":
            return hidden[:, 0]
        real = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "mean":
            return (hidden * real).sum(1) / real.sum(1).clamp(min=1)
        if self.pooling == "max":
            return hidden.masked_fill(real == 0, torch.finfo(hidden.dtype).min).max(1).values
        scores = self.token_weight(hidden).squeeze(-1).float().masked_fill(mask == 0, torch.finfo(torch.float32).min)
        weights = torch.softmax(scores, dim=-1).to(hidden.dtype)
        return (weights.unsqueeze(-1) * hidden).sum(1)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(hidden, mask).to(self.out.weight.dtype)
        if not self.training or self.samples == 1:
            return self.out(self.dropout(pooled))
        return torch.stack([self.out(self.dropout(pooled)) for _ in range(self.samples)]).mean(0)


def _forward(
    self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, return_dict=None, **kwargs
) -> SequenceClassifierOutput:
    """The body, then kagglemlc's head; the loss is the task's (labels are not read)."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # peft passes output_* = None explicitly
    out = self.base_model(
        input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=True, **kwargs
    )
    hidden = out.last_hidden_state
    mask = attention_mask if attention_mask is not None else torch.ones(hidden.shape[:2], device=hidden.device)
    return SequenceClassifierOutput(
        logits=self.head(hidden, mask), hidden_states=out.hidden_states, attentions=out.attentions
    )


@cache
def _subclass(own: type[PreTrainedModel], pooling: str, samples: int) -> type[PreTrainedModel]:
    def __init__(self, config: PretrainedConfig):
        own.__init__(self, config)
        for name in [n for n, _ in self.named_children() if n != self.base_model_prefix]:
            delattr(self, name)  # the checkpoint's own head: dropout, (DeBERTa's pooler,) classifier
        if getattr(self.base_model, "pooler", None) is not None:
            self.base_model.pooler = None  # BERT's [CLS] pooler feeds only its own head: unused weights otherwise
        dropout = next(
            (p for p in (getattr(config, k, None) for k in ("classifier_dropout", "cls_dropout")) if p is not None),
            getattr(config, "hidden_dropout_prob", 0.1),
        )
        self.head = PoolingHead(config.hidden_size, config.num_labels, pooling, samples, dropout)
        config.kagglemlc_head = {"pooling": pooling, "head_dropouts": samples}  # config.json says what the head is
        self.post_init()  # initialises the new head with the model's own _init_weights (unless loaded)

    name = own.__name__.replace("ForSequenceClassification", "") + f"With{pooling.capitalize()}PoolingHead"
    # the head stays out of 4-bit quantization (qlora) and in fp32 (it always trains)
    attributes = {"__init__": __init__, "forward": _forward, "__module__": __name__, "_keep_in_fp32_modules": ["head"]}
    return type(name, (own,), attributes)


def pooling_head_class(config: PretrainedConfig, pooling: str, samples: int = 1) -> type[PreTrainedModel]:
    """The checkpoint's own sequence-classification class (e.g. BertForSequenceClassification) with `PoolingHead`
    in place of its head.

    A subclass, so from_pretrained, save_pretrained, peft and accelerate treat it as that model: the body keeps its
    weight names, dtype and loading rules, the new head is initialised by the model's own `_init_weights`, and a
    saved fold reloads through the same class.

    Raises:
        KaggleMLCError: transformers has no sequence-classification class for the model type.
    """
    try:
        own = MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]
    except KeyError:
        raise KaggleMLCError(
            f"model.pooling: model type '{config.model_type}' has no sequence-classification class in transformers"
        ) from None
    return _subclass(own, pooling, samples)


def encoder_layers(model: PreTrainedModel, key: str) -> nn.ModuleList:
    """The body's transformer layers, bottom first.

    Raises:
        KaggleMLCError: naming `key`, when the model keeps its layers somewhere this module does not know.
    """
    for path in LAYER_LISTS:
        found = model.base_model
        for attr in path:
            found = getattr(found, attr, None)
        if isinstance(found, nn.ModuleList):
            return found
    raise KaggleMLCError(
        f"{key}: no list of layers found in model type '{model.config.model_type}' (looked for "
        f"{', '.join('.'.join(p) for p in LAYER_LISTS)}); the layer switches know BERT, RoBERTa, DeBERTa and ELECTRA"
    )


def parameter_depths(model: PreTrainedModel, key: str = "train.llrd") -> dict[int, int]:
    """How far below the top layer each weight of the body sits, by `id(parameter)`: the top layer 0, the one below
    it 1, ..., the embeddings n_layers.

    Weights of the body outside the layers go by name: the input side (`*embed*`: the embeddings, ELECTRA's
    projection of them, DeBERTa's relative position embeddings) with the embeddings, the rest (BERT's pooler,
    DeBERTa's encoder norm) with the top layer. Under peft, the adapters inside a layer get that layer's depth.
    The head (everything outside `model.base_model`) is not in the result.
    """
    layers = encoder_layers(model, key)
    n = len(layers)
    depths = {id(p): n - 1 - i for i, layer in enumerate(layers) for p in layer.parameters()}
    for name, p in model.base_model.named_parameters():
        if id(p) not in depths:
            depths[id(p)] = n if "embed" in name else 0
    return depths


def _check_count(model: PreTrainedModel, key: str, count: int) -> nn.ModuleList:
    layers = encoder_layers(model, key)
    if count > len(layers):
        raise KaggleMLCError(f"{key}: {count}, but model.name has {len(layers)} layers")
    return layers


@torch.no_grad()
def reinit_top_layers(model: PreTrainedModel, count: int) -> None:
    """The top `count` layers back to the model's own initialisation (`_init_weights`, as a new model's)."""
    layers = _check_count(model, "model.reinit_layers", count)
    for layer in list(layers)[len(layers) - count :]:
        for item in (*layer.modules(), *layer.parameters(), *layer.buffers()):
            if hasattr(item, "_is_hf_initialized"):
                del item._is_hf_initialized  # transformers skips what it marked loaded
        layer.apply(model._init_weights)


def freeze_bottom(model: PreTrainedModel, count: int, reinit: int = 0) -> None:
    """The embeddings (the input side, as `parameter_depths` groups it) and the lowest `count` layers stop training.

    Raises:
        KaggleMLCError: more layers than the model has, or frozen layers that `reinit` re-initialised.
    """
    layers = _check_count(model, "model.freeze_layers", count)
    if count + reinit > len(layers):
        raise KaggleMLCError(
            f"model.freeze_layers: {count} frozen + model.reinit_layers {reinit} re-initialised exceed the "
            f"{len(layers)} layers (a re-initialised layer must train)"
        )
    depths = parameter_depths(model, "model.freeze_layers")
    frozen = {id(p) for p in layers[:count].parameters()} | {i for i, d in depths.items() if d == len(layers)}
    for p in model.base_model.parameters():
        if id(p) in frozen:
            p.requires_grad_(False)
