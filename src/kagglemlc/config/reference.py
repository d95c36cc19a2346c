"""The config reference in the README, generated from the schema: every key, type, default, doc and what an
edit of it redoes (tests/test_readme.py checks that the README holds exactly this)."""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic import BaseModel

from kagglemlc.config.schema import Config, _sections


def _redoes(mark: dict[str, Any]) -> str:
    """A field's mark in words: the first stage(s) `run` redoes after an edit (the later ones follow)."""
    if not mark["stages"]:
        return "nothing"
    said = " + ".join(mark["stages"]) + " →"
    if mark["file"]:
        said += " (when the file's content changes)"
    if mark["kinds"]:
        said += f" (model.kind: {', '.join(mark['kinds'])})"
    if mark["tasks"]:
        said += f" (task: {', '.join(mark['tasks'])})"
    return said


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


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
        fields = [(field.alias or name, field, field.json_schema_extra) for name, field in model.model_fields.items()]
        while fields:
            name, field, mark = fields.pop(0)
            if name == "meta" or (model is Config and name in _sections()):
                continue
            nested = next((a for a in get_args(field.annotation) if _is_section(a)), None)
            if nested is not None:  # a sub-section (train.distill): its keys follow it, with its mark
                fields[:0] = [(f"{name}.{key}", sub, mark) for key, sub in nested.model_fields.items()]
            kind = str(field.annotation).replace("typing.", "").replace("pathlib.", "").replace("<class '", "")
            kind = kind.replace("'>", "").replace("Annotated[Path, AfterValidator(func=<function _resolve_path", "Path")
            kind = re.sub(r" at 0x[0-9a-f]+>\)\]", "", kind)
            kind = re.sub(r"Annotated\[(\w+), FieldInfo\(.*?metadata=\[.*?\]\)\]", r"\1", kind)  # int ≥ 1 → int
            kind = re.sub(r"^Union\[(.*), Literal\['auto'\]\]$", r"\1 | auto", kind)
            kind = kind.replace(", NoneType |", " | None |")
            kind = re.sub(r"kagglemlc\.config\.schema\.(\w+)Config", "mapping", kind)
            kind = kind.replace("|", "\\|")
            default = (
                "required" if field.is_required() else f"`{field.default!r}`" if field.default is not None else "—"
            )
            doc = " ".join((field.description or "").split()).replace("|", "\\|")  # one table row
            lines.append(f"| `{name}` | {kind} | {default} | {_redoes(mark)} | {doc} |")
        lines.append("")
    return "\n".join(lines)
