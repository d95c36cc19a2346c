"""The experiment config: YAML → typed pydantic sections, with dotted command-line overrides.

    cfg = load_config("configs/demo.yaml", ["train.lr=3e-5", "cv.folds=3"])
    cfg.train.lr  # 3e-05

Unknown keys and wrong types are errors naming the key and the allowed values. Relative paths in
the YAML resolve against the YAML file's folder; relative paths given as overrides resolve against
the current directory (where the user typed them). `save_resolved` writes what a run used.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined, to_jsonable_python

from kagglemlc.config.schema import DEFAULT_CONFIG, Config, _resolve_path, _sections
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.core.files import write_yaml
from kagglemlc.core.paths import CONFIG_FILE


def _is_path_field(annotation: Any, metadata: list[Any]) -> bool:
    """True for ResolvedPath fields, optional ones (`ResolvedPath | None`) included."""
    found = list(metadata) + [m for arg in get_args(annotation) for m in getattr(arg, "__metadata__", ())]
    return any(getattr(m, "func", None) is _resolve_path for m in found)


def _path_keys(model: type[BaseModel]) -> set[str]:
    return {name for name, field in model.model_fields.items() if _is_path_field(field.annotation, field.metadata)}


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
        names = {field.alias or name: name for name, field in section.model_fields.items()}  # YAML key → field
        if len(parts) != 2 or parts[1] not in names:
            allowed = ", ".join(f"{parts[0]}.{k}" for k in names)
            raise KaggleMLCError(f"override '{override}': unknown key '{key}'; allowed: {allowed}")
        is_path = names[parts[1]] in _path_keys(section)
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
    return cfg.model_dump(mode="json", exclude={"meta"}, by_alias=True)  # YAML keys: submission.from


def _fields() -> list[tuple[str, Any]]:
    """(dotted YAML key, pydantic FieldInfo) of every setting, in schema order."""
    fields = []
    for name, field in Config.model_fields.items():
        section = _sections().get(name)
        if section is None:
            fields.append((name, field))
        else:
            fields += [(f"{name}.{sub.alias or key}", sub) for key, sub in section.model_fields.items()]  # YAML keys
    return fields


def field_marks() -> list[tuple[str, dict[str, Any]]]:
    """(dotted key, `affects` mark) of every setting, in schema order: which stages each one changes."""
    return [(key, field.json_schema_extra) for key, field in _fields()]


def field_defaults() -> dict[str, Any]:
    """{dotted key: default} of every setting that has one, as plain data (what `settings_dict` holds for a field
    left alone). A setting added to the schema must default to what kagglemlc did before it existed: a record made
    by an older kagglemlc, which lacks the key, then counts as having had the default (`experiment.setting_changes`).
    """
    defaults = {}
    for key, field in _fields():
        default = field.get_default(call_default_factory=True)
        if default is not PydanticUndefined:
            defaults[key] = to_jsonable_python(default)
    return defaults


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
    return write_yaml(cfg.run_dir / CONFIG_FILE, {**settings_dict(cfg), "meta": meta})
