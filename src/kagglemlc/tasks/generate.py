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

import difflib
import inspect
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from jinja2 import TemplateError
from transformers import GenerationConfig as HFGenerationConfig
from transformers import PreTrainedTokenizerBase

from kagglemlc.config import Config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import write_parquet
from kagglemlc.core.paths import TEST_ANSWERS_FILE, TEST_FILE, fold_dir
from kagglemlc.data.competition import CompetitionData
from kagglemlc.data.predictions import probability_frame
from kagglemlc.engine.batching import Encodings, collate
from kagglemlc.engine.inference import gather_results, process_batches
from kagglemlc.scoring.metrics import PROB_METRICS, score

DEFAULT_PROMPTS = {
    "multilabel": "Classify the text below. Allowed labels: {labels}.\n"
    "Answer with every label that applies, comma-separated, or none if no label applies.\n\nText: {text}",
    "multiclass": "Classify the text below into exactly one of these labels: {labels}.\n"
    "Answer with the label only.\n\nText: {text}",
    "binary": "Does the label {labels} apply to the text below?\n"
    "Answer with {labels} if it applies, or none if it does not.\n\nText: {text}",
}
NONE = "none"
SEPARATOR = ", "
_TEXT = "\x00TEXT\x00"  # placeholders: rendered through the chat template, then split on
_ANSWER = "\x00ANSWER\x00"
ANSWER_SLACK = 4  # default max_new_tokens: the longest training answer plus this


# --- parsing ---------------------------------------------------------------------------------
NONE_WORDS = frozenset({"none", "nothing", "n/a", "na"})
FILLER_WORDS = frozenset({"and", "or", "the", "a", "an", "label", "labels", "answer", "is", "are", "of", "no"})
_SEPARATORS = re.compile(r"[,;|/&\n\r\t•·*+]|\band\b|\bor\b")
_NOT_WORD = re.compile(r"[^\w\s'/]")


def normalize(text: str) -> str:
    """Lower case, unicode-normalised, `_` and `-` as spaces: how label names and answers are compared."""
    text = unicodedata.normalize("NFKC", text).lower().replace("_", " ").replace("-", " ")
    return " ".join(text.split())


@dataclass(frozen=True)
class ParsedAnswer:
    labels: tuple[int, ...]
    """Label indices in the order the answer mentions them (each once)."""
    unknown: tuple[str, ...] = ()
    """Words that are neither a label, a synonym, a near-miss, "none" nor filler: ignored, counted."""
    said_none: bool = False

    @property
    def failed(self) -> bool:
        """No label and no explicit "none": the answer could not be read as an answer."""
        return not self.labels and not self.said_none


class AnswerParser:
    """Reads label names out of free text.

    Survives case, spacing, punctuation, bullets and numbering, "and"/"or", prose around the labels,
    synonyms (`generation.synonyms`) and near-misses (difflib similarity ≥ `cutoff`); other words are
    ignored and counted. Multi-word labels match as phrases, longest first.

        AnswerParser(["joy", "anger"], {"anger": ["mad"]}).parse("- Joy\\n- MAD.").labels   # (0, 1)
    """

    def __init__(self, label_names: list[str], synonyms: dict[str, list[str]] | None = None, cutoff: float = 0.85):
        self.label_names, self.cutoff = label_names, cutoff
        self.phrases: dict[str, int] = {}
        for i, name in enumerate(label_names):
            self._add(normalize(name), i, f"label '{name}'")
        index = {name: i for i, name in enumerate(label_names)}
        for label, words in (synonyms or {}).items():
            if label not in index:
                raise KaggleMLCError(
                    f"generation.synonyms: '{label}' is not a label; labels are: {', '.join(label_names[:30])}"
                )
            for word in words:
                self._add(normalize(word), index[label], f"generation.synonyms.{label}: '{word}'")
        self.max_words = max(len(p.split()) for p in self.phrases)

    def _add(self, phrase: str, label: int, what: str) -> None:
        if not phrase:
            raise KaggleMLCError(f"{what} is empty once normalised; give it letters or digits")
        if self.phrases.get(phrase, label) != label:
            other = self.label_names[self.phrases[phrase]]
            raise KaggleMLCError(f"{what} reads the same as label '{other}'; answers could not tell them apart")
        self.phrases[phrase] = label

    def _fuzzy(self, phrase: str) -> int | None:
        if self.cutoff >= 1:
            return None
        close = difflib.get_close_matches(phrase, list(self.phrases), n=1, cutoff=self.cutoff)
        return self.phrases[close[0]] if close else None

    def parse(self, text: str) -> ParsedAnswer:
        found: list[int] = []
        unknown: list[str] = []
        said_none = False
        for chunk in _SEPARATORS.split(normalize(text)):
            words = [w.strip("'/") for w in _NOT_WORD.sub(" ", chunk).split()]
            words = [w for w in words if w and not w.isdigit()]  # numbering "1." "2)"
            leftover: list[str] = []
            i = 0
            while i < len(words):
                for n in range(min(self.max_words, len(words) - i), 0, -1):
                    label = self.phrases.get(" ".join(words[i : i + n]))
                    if label is not None:
                        found.append(label)
                        i += n
                        break
                else:
                    leftover.append(words[i])
                    i += 1
            if not leftover:
                continue
            label = self._fuzzy(" ".join(leftover)) if len(leftover) <= self.max_words else None
            if label is not None:
                found.append(label)
                continue
            for word in leftover:
                if word in NONE_WORDS:
                    said_none = True
                elif word in FILLER_WORDS:
                    continue
                elif (label := self._fuzzy(word)) is not None:
                    found.append(label)
                else:
                    unknown.append(word)
        labels = tuple(dict.fromkeys(found))
        return ParsedAnswer(labels, tuple(unknown), said_none and not labels)


def parsed_matrix(parsed: list[ParsedAnswer], n_labels: int, task: str) -> np.ndarray:
    """(n, L) 0/1 predictions from parsed answers; multiclass keeps the first label named."""
    hard = np.zeros((len(parsed), n_labels), dtype=np.int8)
    for i, answer in enumerate(parsed):
        labels = answer.labels[:1] if task == "multiclass" else answer.labels
        hard[i, list(labels)] = 1
    return hard


# --- prompts and answers ---------------------------------------------------------------------
def answer_labels(y_row: np.ndarray, task: str) -> list[int]:
    """The labels a training row's answer lists, in label order."""
    return [int(np.argmax(y_row))] if task == "multiclass" else np.flatnonzero(y_row).tolist()


class Prompter:
    """Token ids of prompts and answers for one tokenizer and config."""

    def __init__(self, cfg: Config, tokenizer: PreTrainedTokenizerBase, label_names: list[str], task: str):
        self.tokenizer, self.task, self.max_length = tokenizer, task, cfg.model.max_length
        self.names = label_names
        gen = cfg.generation
        template = gen.prompt or DEFAULT_PROMPTS[task]
        if template.count("{text}") != 1:
            raise KaggleMLCError("generation.prompt: must contain {text} exactly once (and may contain {labels})")
        user = template.replace("{labels}", ", ".join(label_names))
        if tokenizer.chat_template:
            prefix, suffix, end, self.lead = self._chat(user, gen.system)
        else:  # a base model: a plain template, the answer after "Answer:", ended by EOS
            system = f"{gen.system}\n\n" if gen.system else ""
            before, after = user.split("{text}")
            prefix, suffix, end, self.lead = system + before, after + "\nAnswer:", None, " "
        bos = [tokenizer.bos_token_id] if end is None and tokenizer.bos_token_id is not None else []
        self.prefix_ids, self.suffix_ids = bos + self.ids(prefix), self.ids(suffix)
        if end is None and tokenizer.eos_token_id is None:
            raise KaggleMLCError(
                f"model.name '{cfg.model.name}': the tokenizer has neither a chat template nor an eos token to end "
                "answers with; save it with one of them"
            )
        self.end_ids = self.ids(end) if end else [tokenizer.eos_token_id]
        self.stop_ids = list(dict.fromkeys(self.end_ids[:1] + [t for t in [tokenizer.eos_token_id] if t is not None]))
        self.first_ids = [self.ids(self.lead + name) for name in label_names]
        self.next_ids = [self.ids(SEPARATOR + name) for name in label_names]
        self.none_ids = self.ids(self.lead + NONE)
        self._distinct: dict[int, list[int]] = {}

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _chat(self, user: str, system: str | None) -> tuple[str, str, str, str]:
        """(prompt prefix, prompt suffix, end of the assistant's turn, answer lead) from the chat template."""
        tok = self.tokenizer
        messages = [{"role": "user", "content": user.replace("{text}", _TEXT)}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        try:
            prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            full = tok.apply_chat_template(messages + [{"role": "assistant", "content": _ANSWER}], tokenize=False)
        except TemplateError as exc:
            if not system:
                raise KaggleMLCError(f"the tokenizer's chat template failed: {exc}") from None
            # templates without a system role (Gemma): the system text opens the user message
            return self._chat(f"{system}\n\n{user}", None)
        if prompt.count(_TEXT) != 1 or _ANSWER not in full:
            raise KaggleMLCError(
                "the tokenizer's chat template drops the message text; set a chat template that keeps it"
            )
        prefix, suffix = prompt.split(_TEXT)
        end = full.split(_ANSWER, 1)[1].rstrip()
        return prefix, suffix, end, ""

    def prompts(self, texts: list[str], chunk: int = 4096) -> list[list[int]]:
        """prefix + text (truncated to model.max_length tokens) + suffix, for every text."""
        out = []
        for start in range(0, len(texts), chunk):
            enc = self.tokenizer(
                texts[start : start + chunk], add_special_tokens=False, truncation=True, max_length=self.max_length
            )
            out.extend(self.prefix_ids + ids + self.suffix_ids for ids in enc["input_ids"])
        return out

    def answer_ids(self, labels: list[int] | tuple[int, ...]) -> list[int]:
        """The answer's tokens: "a, b" in label order (or "none"), then the end of turn."""
        labels = sorted(labels)
        if not labels:
            return self.none_ids + self.end_ids
        out = list(self.first_ids[labels[0]])
        for label in labels[1:]:
            out += self.next_ids[label]
        return out + self.end_ids

    def answer_text(self, labels: list[int]) -> str:
        return SEPARATOR.join(self.names[i] for i in sorted(labels)) if labels else NONE

    def decode(self, new_tokens: list[int]) -> str:
        """Generated tokens up to the first stop token, as text."""
        stops = set(self.stop_ids)
        cut = next((i for i, t in enumerate(new_tokens) if t in stops), len(new_tokens))
        return self.tokenizer.decode(new_tokens[:cut], skip_special_tokens=True).strip()

    def candidates(self, after: int | None) -> list[list[int]]:
        """What may come next in an answer: after nothing, a label or "none"; after label a, a later label or the end.

        Index i < L is label i (None for labels that cannot come next), index L is "none" / the end.
        """
        if after is None:
            return [*self.first_ids, self.none_ids]
        return [ids if i > after else None for i, ids in enumerate(self.next_ids)] + [self.end_ids]

    def distinct_lengths(self, after: int | None) -> list[int]:
        """Per candidate: how many leading tokens tell it apart from every other candidate (all if none do)."""
        key = -1 if after is None else after
        if key not in self._distinct:
            cands = self.candidates(after)
            lengths = []
            for i, c in enumerate(cands):
                if c is None:
                    lengths.append(0)
                    continue
                others = [o for j, o in enumerate(cands) if j != i and o is not None]
                n = next((t for t in range(1, len(c) + 1) if all(o[:t] != c[:t] for o in others)), len(c))
                lengths.append(n)
            self._distinct[key] = lengths
        return self._distinct[key]


# --- the generative task: what the training loop and prediction need ----------------------------
@dataclass
class GenerativeTask:
    """Prompts, SFT encodings and the parser for one competition; built once per fold."""

    cfg: Config
    tokenizer: PreTrainedTokenizerBase
    data: CompetitionData
    prompter: Prompter = field(init=False)
    parser: AnswerParser = field(init=False)
    max_new_tokens: int = field(init=False)
    _prompts: dict[str, list[list[int]]] = field(init=False, default_factory=dict)

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

    def loss_labels(self, batch: dict[str, torch.Tensor], rows: np.ndarray) -> torch.Tensor:
        """Next-token targets on the answer tokens only: prompt and padding are -100."""
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        prompts = self.prompts("train")
        prompt = torch.as_tensor([len(prompts[r]) for r in rows])
        return labels.masked_fill(torch.arange(labels.shape[1])[None, :] < prompt[:, None], -100)

    def predict(
        self, model: torch.nn.Module, split: str, rows: np.ndarray, accelerator: Accelerator, batch_size: int
    ) -> tuple[np.ndarray, list[ParsedAnswer], pd.DataFrame]:
        """Greedy answers, parsed, and per-label probabilities for `rows` of the train or test prompts.

        Returns:
            (probabilities (n, L), parsed answers, a frame of answers: answer, labels, unknown, failed).
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
        return probs, parsed, frame

    def selection_metric(self, y: np.ndarray, probs: np.ndarray, parsed: list[ParsedAnswer]) -> float:
        """The competition metric of the parsed answers (of the probabilities for AUC / log-loss metrics).

        Multiclass rows whose answer names no label fall back to the most probable label.
        """
        metric, task = self.cfg.competition.metric, self.data.task
        if metric in PROB_METRICS:
            return score(metric, y, probs, task)
        hard = parsed_matrix(parsed, y.shape[1], task).astype(np.float32)
        if task == "multiclass":
            empty = hard.sum(axis=1) == 0
            hard[empty] = np.eye(y.shape[1], dtype=np.float32)[probs[empty].argmax(axis=1)]
        return score(metric, y, hard, task)


def predict_test_answers(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    cfg: Config,
    data: CompetitionData,
    accelerator: Accelerator,
    fold: int,
) -> dict:
    """Test probabilities and answers of one fold's generative model → fold{k}/test.parquet + test_answers.parquet.

    Returns:
        the answers' parse summary (`answer_summary`).
    """
    task = GenerativeTask(cfg, tokenizer, data)
    rows = np.arange(len(data.test_texts or []))
    probs, _, answers = task.predict(model, "test", rows, accelerator, cfg.train.eval_batch_size)
    if accelerator.is_main_process:
        folder = fold_dir(cfg.run_dir, fold)
        write_parquet(
            folder / TEST_ANSWERS_FILE, answers.assign(id=data.test_ids.astype(str))[["id", *answers.columns]]
        )
        write_parquet(folder / TEST_FILE, probability_frame(data.test_ids, probs, data.label_names))
    return answer_summary(answers)


def answer_summary(frame: pd.DataFrame) -> dict[str, float | int]:
    """Parse failures and unknown words of a frame of answers, for metrics.json."""
    n = len(frame)
    failed = int(frame["parse_failed"].sum())
    return {
        "rows": n,
        "parse_failures": failed,
        "parse_failure_rate": round(failed / max(n, 1), 4),
        "unknown_words": int(frame["unknown_words"].sum()),
    }


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


