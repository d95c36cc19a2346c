"""Generation mode: an (instruction-tuned) LLM reads a prompt listing the labels and answers with label names.

    kagglemlc zero-shot configs/x.yaml --sample 500    # model.kind: generative, before any training
    kagglemlc train configs/x.yaml --fold 0             # SFT on prompt + answer, loss on the answer only

Prompts: `generation.prompt` (default: the task, the allowed labels and the answer format) goes through
the tokenizer's chat template when it has one (a plain "...\\nAnswer:" template otherwise). The template
is rendered once around a placeholder, so every row's prompt is prefix + the row's text (truncated to
`model.max_length` tokens) + suffix, and the instructions are never truncated away.

Answers list labels in the competition's label order, "joy, fear" (or "none"), then the token that
ends the assistant's turn. Each piece ("joy", ", fear", "none", the end) is tokenised once, so training,
generation and scoring see the same token sequences.

Per-label probabilities (what thresholds, ensembles and reports read): label ℓ's probability is the
probability the model gives to writing ℓ at the place it would stand in the answer, teacher-forced on
the model's own greedy answer S (its labels sorted in label order). With S = (a, c), label b is scored
after "a", label d after "a, c", label a at the start (against every other label and "none"). Only the
tokens that tell ℓ apart from the other candidates at that place are scored (the rest of the name is
then determined), multiplied. Cost: one forward pass per row over prompt + greedy answer (the same
length as a training row), plus one short pass per place where the candidates share a leading token
the greedy answer did not take (", " before the next label, or labels with a common first token) —
about 2-3 passes per row, on top of the greedy generation. For multiclass the probabilities at the
start of the answer are renormalised over the labels.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from transformers import GenerationConfig as HFGenerationConfig
from transformers import PreTrainedTokenizerBase

from kagglemlc.config import Config
from kagglemlc.data.competition import CompetitionData
from kagglemlc.engine.batching import Encodings, collate
from kagglemlc.engine.inference import gather_results, process_batches
from kagglemlc.scoring.metrics import PROB_METRICS, score
from kagglemlc.tasks.answers import AnswerParser, ParsedAnswer, answer_labels, answer_summary, parsed_matrix
from kagglemlc.tasks.base import Predictions
from kagglemlc.tasks.prompts import Prompter

ANSWER_SLACK = 4  # default max_new_tokens: the longest training answer plus this


# --- the generative task: what the training loop and prediction need ----------------------------
@dataclass
class GenerativeTask:
    """Prompts, SFT encodings and the parser for one competition; built once per fold (a `tasks.base.Task`)."""

    selection = "metric of the parsed generated answers (metric_at_0.5: of the label probabilities)"

    cfg: Config
    tokenizer: PreTrainedTokenizerBase
    data: CompetitionData
    prompter: Prompter = field(init=False)
    parser: AnswerParser = field(init=False)
    max_new_tokens: int = field(init=False)
    _prompts: dict[str, list[list[int]]] = field(init=False, default_factory=dict)
    _sft: Encodings | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        data, gen = self.data, self.cfg.generation
        self.prompter = Prompter(self.cfg, self.tokenizer, data.label_names, data.task)
        self.parser = AnswerParser(data.label_names, gen.synonyms, gen.fuzzy_cutoff)
        longest = max(len(self.prompter.answer_ids(answer_labels(row, data.task))) for row in data.y)
        self.max_new_tokens = gen.max_new_tokens or longest + ANSWER_SLACK

    def prompts(self, split: str) -> list[list[int]]:
        """Token ids of every train or test row's prompt (built on first use)."""
        if split not in self._prompts:
            texts = self.data.train_texts if split == "train" else self.data.test_texts
            self._prompts[split] = self.prompter.prompts(texts or [])
        return self._prompts[split]

    def sft_encodings(self) -> Encodings:
        """Prompt + answer of every training row, right-padded when collated (see `loss_labels`)."""
        task, prompts = self.data.task, self.prompts("train")
        ids = [p + self.prompter.answer_ids(answer_labels(y, task)) for p, y in zip(prompts, self.data.y)]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        return Encodings(ids, lengths, self.tokenizer.pad_token_id, "right")

    def train_encodings(self) -> Encodings:
        if self._sft is None:
            self._sft = self.sft_encodings()
        return self._sft

    def loss(self, model: torch.nn.Module, rows: np.ndarray, device: torch.device, pad_to: int | None) -> torch.Tensor:
        """The causal-LM loss on the answer tokens of these training rows."""
        batch = collate(self.train_encodings(), rows, pad_to)
        batch["labels"] = self.loss_labels(batch, rows)
        return model(**{k: v.to(device) for k, v in batch.items()}).loss

    def loss_labels(self, batch: dict[str, torch.Tensor], rows: np.ndarray) -> torch.Tensor:
        """Next-token targets on the answer tokens only: prompt and padding are -100."""
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        prompts = self.prompts("train")
        prompt = torch.as_tensor([len(prompts[r]) for r in rows])
        return labels.masked_fill(torch.arange(labels.shape[1])[None, :] < prompt[:, None], -100)

    def predict(
        self, model: torch.nn.Module, split: str, rows: np.ndarray, accelerator: Accelerator, batch_size: int
    ) -> Predictions:
        """Greedy answers, parsed, and per-label probabilities for `rows` of the train or test prompts.

        Returns:
            probabilities (n, L), the answers (answer, labels, unknown_words, parse_failed) and the parsed answers.
        """
        prompts = self.prompts(split)
        selected = [prompts[r] for r in rows]
        answers = generate_answers(model, self.prompter, selected, accelerator, batch_size, self.max_new_tokens)
        parsed = [self.parser.parse(a) for a in answers]
        probs = label_probabilities(model, self.prompter, selected, parsed, accelerator, batch_size)
        frame = pd.DataFrame(
            {
                "answer": answers,
                "labels": [self.prompter.answer_text(list(p.labels)) if p.labels else "" for p in parsed],
                "unknown_words": [len(p.unknown) for p in parsed],
                "parse_failed": [p.failed for p in parsed],
            }
        )
        return Predictions(probs, frame, parsed)

    def selection_metric(self, y: np.ndarray, predicted: Predictions) -> float:
        """The competition metric of the parsed answers (of the probabilities for AUC / log-loss metrics).

        Multiclass rows whose answer names no label fall back to the most probable label.
        """
        metric, task = self.cfg.competition.metric, self.data.task
        probs, parsed = predicted.probs, predicted.decided
        if metric in PROB_METRICS:
            return score(metric, y, probs, task)
        hard = parsed_matrix(parsed, y.shape[1], task).astype(np.float32)
        if task == "multiclass":
            empty = hard.sum(axis=1) == 0
            hard[empty] = np.eye(y.shape[1], dtype=np.float32)[probs[empty].argmax(axis=1)]
        return score(metric, y, hard, task)

    def summary(self, predicted: Predictions) -> dict[str, Any]:
        return {"answers": answer_summary(predicted.answers)}

    def describe(self, entry: dict[str, Any]) -> str:
        return f"parsed ({entry['answers']['parse_failures']} parse failures)"


# --- inference -------------------------------------------------------------------------------
def _encodings(seqs: list[list[int]], pad_id: int, padding_side: str) -> Encodings:
    return Encodings(seqs, np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs)), pad_id, padding_side)


def generate_answers(
    model: torch.nn.Module,
    prompter: Prompter,
    prompts: list[list[int]],
    accelerator: Accelerator,
    batch_size: int,
    max_new_tokens: int,
) -> list[str]:
    """Greedy answers to `prompts`, batched by length with left padding, stopped at the end of the turn."""
    if not prompts:
        return []
    pad = prompter.tokenizer.pad_token_id
    config = HFGenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, eos_token_id=prompter.stop_ids, pad_token_id=pad
    )
    generator = accelerator.unwrap_model(model)
    generator.eval()
    enc = _encodings(prompts, pad, "left")
    results = []
    with torch.inference_mode(), accelerator.autocast():
        for positions in process_batches(enc.lengths, batch_size, accelerator):
            batch = {k: v.to(accelerator.device) for k, v in collate(enc, positions).items()}
            out = generator.generate(**batch, generation_config=config)
            new = out[:, batch["input_ids"].shape[1] :].tolist()
            results.append((positions, [prompter.decode(seq) for seq in new]))
    answers = [""] * len(prompts)
    for positions, texts in gather_results(results, accelerator):
        for p, text in zip(positions, texts):
            answers[p] = text
    return answers


@dataclass
class _Reads:
    """Token log-probabilities to read: sequence → [(position, token, row, label)]."""

    seqs: list[list[int]] = field(default_factory=list)
    reads: list[list[tuple[int, int, int, int]]] = field(default_factory=list)
    extra: dict[tuple[int, int, tuple[int, ...]], int] = field(default_factory=dict)

    def add_seq(self, seq: list[int]) -> int:
        self.seqs.append(seq)
        self.reads.append([])
        return len(self.seqs) - 1


def _plan_reads(prompter: Prompter, prompts: list[list[int]], parsed: list[ParsedAnswer]) -> _Reads:
    """Which token probabilities score each label of each row (see the module docstring)."""
    plan = _Reads()
    n_labels = len(prompter.names)
    for row, (prompt, answer) in enumerate(zip(prompts, parsed)):
        chosen = sorted(answer.labels) if prompter.task != "multiclass" else []
        main = prompt + prompter.answer_ids(chosen)
        main_id = plan.add_seq(main)
        starts = [len(prompt)]  # where each slot of the answer begins in `main`
        for i, label in enumerate(chosen):
            starts.append(starts[-1] + len((prompter.first_ids if i == 0 else prompter.next_ids)[label]))
        for label in range(n_labels):
            slot = sum(1 for c in chosen if c < label)
            after = chosen[slot - 1] if slot else None
            cand = prompter.candidates(after)[label]
            for t in range(prompter.distinct_lengths(after)[label]):
                start = starts[slot]
                if main[start : start + t] == cand[:t]:  # on the greedy answer's path: read from its pass
                    seq_id, pos = main_id, start + t - 1
                else:  # the greedy answer went elsewhere: score from the slot's context + the candidate's prefix
                    key = (row, slot, tuple(cand[:t]))
                    if key not in plan.extra:
                        plan.extra[key] = plan.add_seq(main[:start] + cand[:t])
                    seq_id = plan.extra[key]
                    pos = len(plan.seqs[seq_id]) - 1
                plan.reads[seq_id].append((pos, cand[t], row, label))
    return plan


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def label_probabilities(
    model: torch.nn.Module,
    prompter: Prompter,
    prompts: list[list[int]],
    parsed: list[ParsedAnswer],
    accelerator: Accelerator,
    batch_size: int,
    chunk: int = 4096,
) -> np.ndarray:
    """(n, L) probability of each label as (part of) the answer, by teacher forcing (module docstring)."""
    n_labels = len(prompter.names)
    total = np.zeros((len(prompts), n_labels), dtype=np.float64)
    net = accelerator.unwrap_model(model)
    net.eval()
    keep_some = _accepts_logits_to_keep(net)
    for start in range(0, len(prompts), chunk):  # the plan copies prompts: bounded memory on large sets
        stop = min(start + chunk, len(prompts))
        plan = _plan_reads(prompter, prompts[start:stop], parsed[start:stop])
        for rows, labels, values in gather_results(
            _read_log_probs(net, plan, prompter.tokenizer.pad_token_id, keep_some, accelerator, batch_size), accelerator
        ):
            np.add.at(total, (rows + start, labels), values)
    probs = np.exp(total)
    if prompter.task == "multiclass":
        probs /= probs.sum(axis=1, keepdims=True)
    return np.clip(probs, 0.0, 1.0).astype(np.float32)


def _read_log_probs(
    net: torch.nn.Module, plan: _Reads, pad: int, keep_some: bool, accelerator: Accelerator, batch_size: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """This process's share of the plan's sequences through the model: (rows, labels, log-probabilities)."""
    enc = _encodings(plan.seqs, pad, "right")
    results = []
    with torch.inference_mode(), accelerator.autocast():
        for batch in process_batches(enc.lengths, batch_size, accelerator):
            reads = [r for s in batch for r in plan.reads[s]]
            if not reads:
                continue
            positions = sorted({pos for s in batch for pos, *_ in plan.reads[s]})
            kwargs = {"logits_to_keep": torch.as_tensor(positions)} if keep_some else {}
            inputs = {k: v.to(accelerator.device) for k, v in collate(enc, batch).items()}
            logits = net(**inputs, **kwargs).logits
            if not keep_some:
                logits = logits[:, positions]
            logp = torch.log_softmax(logits.float(), dim=-1)
            column = {pos: j for j, pos in enumerate(positions)}
            b = [i for i, s in enumerate(batch) for _ in plan.reads[s]]
            cols = [column[pos] for s in batch for pos, *_ in plan.reads[s]]
            tokens = [tok for s in batch for _, tok, *_ in plan.reads[s]]
            values = logp[b, cols, tokens].cpu().numpy()
            results.append((np.array([r[2] for r in reads]), np.array([r[3] for r in reads]), values))
    return results
