"""Prompts and answers as token ids: the chat template rendered once around placeholders, each answer piece
("joy", ", fear", "none", the end of the turn) tokenised once, so training, generation and scoring read the
same token sequences (see `kagglemlc.tasks.generate` for how they are used)."""

from __future__ import annotations

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerBase

from kagglemlc.config import Config
from kagglemlc.core.errors import KaggleMLCError

DEFAULT_PROMPTS = {
    "multilabel": "Classify the text below. Allowed labels: {labels}.\n"
    "Answer with every label that applies, comma-separated, or none if no label applies.\n\nText: {text}",
    "multiclass": "Classify the text below into exactly one of these labels: {labels}.\n"
    "Answer with the label only.\n\nText: {text}",
    "binary": "Does the label {labels} apply to the text below?\n"
    "Answer with {labels} if it applies, or none if it does not.\n\nText: {text}",
    # task span (zero-shot): {text} is the question (when there is one) and the context
    "span": "Copy, word for word, the shortest part of the context that answers the question. Answer with the copied "
    "words only.\n\n{text}",
}


NONE = "none"


SEPARATOR = ", "


_TEXT = "\x00TEXT\x00"  # placeholders: rendered through the chat template, then split on


_ANSWER = "\x00ANSWER\x00"


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
