"""Which stages `run` redoes after an edit: every config field changed in turn, against a table written here.

The stage functions are replaced by recorders that write their outputs instantly, so `kagglemlc run`'s own
skipping logic (fingerprints from the schema's `affects` marks, stages.json) is what is tested, for every
field, in seconds. The table is the specification: a new config field fails `test_every_field_has_an_entry`
until someone states here which stages it changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_competition
from kagglemlc.config import STAGES, Config, field_defaults, field_marks, load_config
from kagglemlc.data.experiment import changed_settings, record_settings
from kagglemlc.models.defaults import resolve_defaults
from kagglemlc.stages import run as pipeline

ALL = set(STAGES)
FROM_TRAIN = {"train", "full-fit", "predict", "tune-thresholds", "submit"}
FROM_PREDICT = {"predict", "submit"}
FROM_THRESHOLDS = {"tune-thresholds", "submit"}
NOTHING: set[str] = set()

# field → (another valid value, the stages `run` must redo). "FILE" = the same path with other content.
EDITS: dict[str, tuple[object, set[str]]] = {
    "competition.slug": ("other-competition", NOTHING),
    "competition.train": ("FILE", ALL),
    "competition.test": ("FILE", FROM_PREDICT),
    "competition.sample_submission": ("FILE", {"submit"}),
    "competition.id_column": ("row_id", ALL),
    "competition.text_column": ("body", FROM_TRAIN),
    "competition.labels": (["joy", "anger", "fear"], ALL),
    "competition.label_format": ("list", ALL),
    "competition.label_column": ("tags", ALL),
    "competition.label_separator": (";", ALL),
    "competition.label_names_file": ("FILE", ALL),
    "competition.task": ("binary", ALL),
    "competition.metric": ("f1_micro", FROM_TRAIN),
    "competition.encoding": ("latin-1", ALL),
    "competition.delimiter": (";", ALL),
    "cv.folds": (4, ALL),
    "cv.seed": (7, ALL),
    "cv.group_column": ("group", ALL),
    "model.name": ("other-model", FROM_TRAIN),
    "model.kind": ("decoder", FROM_TRAIN),
    "model.max_length": (64, FROM_TRAIN),
    "model.truncation": ("head_tail", FROM_TRAIN),
    "competition.soft_labels": (True, ALL),
    # task span's settings (SPAN_ONLY): the stages they redo on a span config; on any other task, nothing
    "competition.context_column": ("passage", ALL),
    "competition.question_column": ("query", ALL),
    "competition.question": ("Which words carry the emotion?", ALL),
    "competition.answer_column": ("selected_text", ALL),
    "competition.answer_start_column": ("answer_start", ALL),
    "competition.allow_no_answer": (True, ALL),
    "model.head_fraction": (0.5, FROM_TRAIN),
    # pairs need an explicit max_length and a pair column, which one edit cannot give: marked train, checked in
    # tests/test_pairs.py through a pair config
    "competition.text_pair_column": ("NOT-EDITED", FROM_TRAIN),
    "model.segment_budgets": ("NOT-EDITED", FROM_TRAIN),
    "export.wheels": (["six"], NOTHING),
    "export.dataset": ("someone/minilm-bundle", NOTHING),
    "export.kernel": ("someone/minilm-inference", NOTHING),
    "model.revision": ("v1", FROM_TRAIN),
    "model.offline": (True, NOTHING),
    "model.cache_dir": ("hf-cache", NOTHING),
    "model.trust_remote_code": (True, FROM_TRAIN),
    "model.pooling": ("max", FROM_TRAIN),  # the default model (MiniLM) is already read through mean pooling
    # needs model.pooling, which one edit cannot give: marked train, checked in tests/test_encoder_switches.py
    "model.head_dropouts": ("NOT-EDITED", FROM_TRAIN),
    "model.reinit_layers": (1, FROM_TRAIN),
    "model.freeze_layers": (1, FROM_TRAIN),
    "model.doc_stride": (16, FROM_TRAIN),
    "model.max_answer_tokens": (12, FROM_TRAIN),
    "adapter.method": ("lora", FROM_TRAIN),
    "adapter.r": (8, FROM_TRAIN),
    "adapter.alpha": (8, FROM_TRAIN),
    "adapter.dropout": (0.1, FROM_TRAIN),
    "adapter.target_modules": (["query"], FROM_TRAIN),
    "adapter.use_rslora": (True, FROM_TRAIN),
    "adapter.use_dora": (True, FROM_TRAIN),
    "adapter.gradient_checkpointing": (True, NOTHING),
    "train.epochs": (5, FROM_TRAIN),
    "train.max_steps": (10, FROM_TRAIN),
    "train.lr": (1e-3, FROM_TRAIN),
    "train.head_lr": (1e-3, FROM_TRAIN),
    "train.llrd": (0.9, FROM_TRAIN),
    "train.weight_decay": (0.1, FROM_TRAIN),
    "train.batch_size": (8, FROM_TRAIN),
    "train.eval_batch_size": (16, NOTHING),
    "train.grad_accum": (2, FROM_TRAIN),
    "train.max_grad_norm": (0.5, FROM_TRAIN),
    "train.scheduler": ("cosine", FROM_TRAIN),
    "train.warmup_ratio": (0.2, FROM_TRAIN),
    "train.optimizer": ("adamw_8bit", FROM_TRAIN),
    "train.precision": ("no", FROM_TRAIN),
    "train.loss": ("focal", FROM_TRAIN),
    "train.class_weights": ("balanced", FROM_TRAIN),
    "train.focal_gamma": (1.0, FROM_TRAIN),
    "train.asl_gamma_neg": (2.0, FROM_TRAIN),
    "train.asl_gamma_pos": (1.0, FROM_TRAIN),
    "train.asl_clip": (0.1, FROM_TRAIN),
    "train.label_smoothing": (0.1, FROM_TRAIN),
    "train.eval_every": (5, FROM_TRAIN),
    "train.checkpoint_every": (7, NOTHING),
    "train.early_stopping_patience": (5, FROM_TRAIN),
    "train.group_by_length": (False, FROM_TRAIN),
    "train.seed": (1, FROM_TRAIN),
    "train.seeds": ([1, 2], FROM_TRAIN),
    "train.full_fit": (True, {"full-fit", "submit"}),  # a model beside the folds: they stay
    "train.distill": ({"teacher": "teacher-run"}, FROM_TRAIN),
    "train.pseudo_labels": ({"source": "teacher-run"}, FROM_TRAIN),
    "train.report_to": ("tensorboard", NOTHING),
    "train.tracker_project": ("my-project", NOTHING),
    "train.log_every": (5, NOTHING),
    "train.log_every_seconds": (5.0, NOTHING),
    "thresholds.strategy": ("global", FROM_THRESHOLDS),
    "thresholds.value": (0.3, FROM_THRESHOLDS),
    "thresholds.multiclass_bias": (True, FROM_THRESHOLDS),
    "predict.max_length": (64, FROM_PREDICT),  # the test rows are read again by the saved models
    "predict.stride": (8, FROM_PREDICT),
    "predict.pooling": ("max", FROM_PREDICT),
    "submission.kind": ("probabilities", {"submit"}),
    "submission.dir": ("other-submissions", {"submit"}),
    "submission.use": ("both", {"submit"}),
    "submission.from": ("answers", {"submit"}),  # generative only: an encoder config refuses it
    # generation settings change what a generative model learns and answers; an encoder never reads them
    "generation.prompt": ("Labels for: {text}\nChoose from {labels}.", NOTHING),
    "generation.system": ("You label texts.", NOTHING),
    "generation.synonyms": ({"joy": ["happy"]}, NOTHING),
    "generation.fuzzy_cutoff": (0.9, NOTHING),
    "generation.max_new_tokens": (12, NOTHING),
    "output_dir": ("NOT-EDITED", NOTHING),  # another output_dir is another experiment
    "name": ("renamed", {"submit"}),
    "meta": ("NOT-EDITED", NOTHING),  # written by kagglemlc, ignored on load
}
GENERATIVE_ONLY = {"submission.from"}  # keys an encoder config refuses to set
SPAN_ONLY = {  # read by task span alone: an edit on another task's config redoes nothing
    "competition.context_column",
    "competition.question_column",
    "competition.question",
    "competition.answer_column",
    "competition.answer_start_column",
    "competition.allow_no_answer",
    "model.doc_stride",
    "model.max_answer_tokens",
}
GENERATIVE_EDITS = [key for key in EDITS if key.startswith("generation.") or key in GENERATIVE_ONLY]


def test_every_field_has_an_entry_and_a_mark():
    keys = [key for key, _ in field_marks()]
    assert sorted(keys) == sorted(EDITS), set(keys) ^ set(EDITS)
    for key, mark in field_marks():
        assert set(mark) - {"before"} == {"stages", "file", "kinds", "tasks"} and set(mark["stages"]) <= ALL, key
        assert (mark["tasks"] == ["span"]) == (key in SPAN_ONLY), key
        if "before" in mark:  # only an `auto` setting says what kagglemlc did before it (a record lacking it)
            assert field_defaults()[key] == "auto", key


@pytest.fixture
def recorded(monkeypatch):
    """Replaces the five stage functions by recorders that write the stage's outputs at once."""
    calls: list[str] = []

    def stage(name: str, output: str | None):
        def work(cfg: Config, *args, **kwargs):
            calls.append(name)
            if output is None:
                return None
            path = (cfg.submission.dir if name == "submit" else cfg.run_dir) / output
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(name)
            return path

        return work

    # the defaults that need no data (max_length: auto stays auto): edits here need not make valid files
    monkeypatch.setattr("kagglemlc.stages.run._choose_defaults", resolve_defaults)
    monkeypatch.setattr("kagglemlc.stages.prepare.prepare", stage("prepare", "folds.parquet"))
    monkeypatch.setattr("kagglemlc.stages.train.train", stage("train", "oof.parquet"))
    monkeypatch.setattr("kagglemlc.stages.train.train_full", stage("full-fit", "full/metrics.json"))
    monkeypatch.setattr("kagglemlc.stages.predict.predict", stage("predict", "test.parquet"))
    monkeypatch.setattr("kagglemlc.stages.tune_thresholds.tune_thresholds", stage("tune-thresholds", "thresholds.json"))
    monkeypatch.setattr("kagglemlc.stages.submit.submit", stage("submit", "sub.csv"))
    return calls


def _edit(folder, key: str, value: object) -> list[str]:
    """The override for `key` (file fields: the same path, its content changed on disk)."""
    if value == "FILE":
        files = {
            "competition.train": "train.csv",
            "competition.test": "test.csv",
            "competition.sample_submission": "sample_submission.csv",
            "competition.label_names_file": "label_names.txt",
        }
        path = folder / files[key]
        path.write_text(path.read_text() + ("\n" if key.endswith("label_names_file") else "") + "extra\n")
        return []
    if isinstance(value, list | dict):
        import json

        return [f"{key}={json.dumps(value)}"]
    return [f"{key}={value}"]


@pytest.mark.parametrize("kind", ["encoder", "generative"])
def test_each_field_edit_redoes_exactly_its_stages(tmp_path, recorded, kind):
    keys = [k for k in EDITS if EDITS[k][0] != "NOT-EDITED" and k not in GENERATIVE_ONLY]
    if kind == "generative":
        keys = GENERATIVE_EDITS
    failures = []
    for key in keys:
        folder = tmp_path / key.replace(".", "_")
        path = make_competition(folder, n_train=12, n_test=4, config={"model": {"kind": kind}})
        (folder / "label_names.txt").write_text("joy\nanger\nfear\n")
        base = [f"competition.label_names_file={folder / 'label_names.txt'}", f"submission.dir={folder / 'subs'}"]
        pipeline.run(load_config(path, base))
        assert recorded == list(STAGES), recorded
        recorded.clear()
        pipeline.run(load_config(path, base))
        assert recorded == [], f"an unedited rerun redid {recorded}"
        value, expected = EDITS[key]
        if kind == "generative" and key not in GENERATIVE_ONLY:
            expected = FROM_TRAIN
        if key in SPAN_ONLY:  # the toy competition is multilabel
            expected = NOTHING
        if key == "submission.dir":
            value = folder / "other-submissions"
        pipeline.run(load_config(path, base + _edit(folder, key, value)))
        if set(recorded) != expected:
            failures.append(f"{key}: redid {sorted(recorded)}, expected {sorted(expected)}")
        recorded.clear()
    assert not failures, "\n".join(failures)


SPAN = {"competition": {"task": "span", "metric": "jaccard"}, "model": {"max_length": 160}}


def test_span_settings_redo_their_stages_on_a_span_config(tmp_path, recorded):
    failures = []
    for key in sorted(SPAN_ONLY):
        folder = tmp_path / key.replace(".", "_")
        path = make_competition(folder, n_train=12, n_test=4, config=SPAN)
        pipeline.run(load_config(path))
        assert recorded == list(STAGES), recorded
        recorded.clear()
        value, expected = EDITS[key]
        pipeline.run(load_config(path, _edit(folder, key, value)))
        if set(recorded) != expected:
            failures.append(f"{key}: redid {sorted(recorded)}, expected {sorted(expected)}")
        recorded.clear()
    assert not failures, "\n".join(failures)


def test_a_record_from_when_span_settings_were_marked_for_every_task_redoes_nothing(tmp_path, recorded):
    """Before span settings were narrowed to task span, every config recorded them: such a record, rerun now, redoes
    nothing and the guard sees no change; a change of task still redoes everything."""
    path = make_competition(tmp_path, n_train=12, n_test=4, config={"model": {"max_length": 64}})
    wide = [(key, {**mark, "tasks": None}) for key, mark in field_marks()]
    with pytest.MonkeyPatch.context() as m:
        m.setattr("kagglemlc.data.experiment.field_marks", lambda: wide)
        pipeline.run(load_config(path, ["model.doc_stride=16"]))
        trained = load_config(path, ["model.doc_stride=16"])
        resolve_defaults(trained)
        record_settings(trained)  # what train writes beside trained folds
    stamps = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert stamps["train"]["inputs"]["model.doc_stride"] == 16  # recorded then, whatever the task
    recorded.clear()
    cfg = load_config(path)
    pipeline.run(cfg)
    assert recorded == [], f"narrowing the span marks redid {recorded}"
    assert changed_settings(cfg, ("prepare", "train")) == []
    edited = load_config(path, ["model.max_length=48"])
    resolve_defaults(edited)
    assert changed_settings(edited, ("train",)) == ["model.max_length 64 → 48"]
    pipeline.run(load_config(path, ["competition.task=span", "competition.metric=jaccard", "model.doc_stride=16"]))
    assert recorded == list(STAGES)


def test_a_copy_of_the_training_file_elsewhere_changes_nothing(tmp_path, recorded):
    path = make_competition(tmp_path, n_train=12, n_test=4)
    pipeline.run(load_config(path))
    recorded.clear()
    copy = tmp_path / "copy" / "train.csv"
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "train.csv").read_bytes())
    pipeline.run(load_config(path, [f"competition.train={copy}"]))
    assert recorded == []
    pd.read_csv(copy)  # the copy is a real competition file


NEWER = {"model.reinit_layers", "train.llrd", "thresholds.strategy", "submission.kind"}  # settings "added later"


def test_an_upgrade_that_adds_settings_at_their_defaults_redoes_nothing(tmp_path, recorded):
    """An experiment run by a kagglemlc from before some settings existed (simulated: the schema's marks without
    them), rerun after the upgrade: nothing is redone, and setting one of them away from its default redoes its
    stages as any edit does."""
    path = make_competition(tmp_path, n_train=12, n_test=4)
    older = [(key, mark) for key, mark in field_marks() if key not in NEWER]
    with pytest.MonkeyPatch.context() as m:
        m.setattr("kagglemlc.data.experiment.field_marks", lambda: older)
        pipeline.run(load_config(path))
    assert recorded == list(STAGES)
    stamps = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert not NEWER & set(stamps["submit"]["inputs"]) and "train.lr" in stamps["submit"]["inputs"]
    recorded.clear()
    pipeline.run(load_config(path))
    assert recorded == [], f"an upgrade redid {recorded}"
    pipeline.run(load_config(path, ["model.reinit_layers=1"]))
    assert set(recorded) == FROM_TRAIN


def test_a_recorded_value_other_than_today_s_default_redoes_its_stages(tmp_path, recorded):
    """A default that changed between versions is a change: the record holds the value the outputs were made with."""

    def as_if_the_default_was_0_3(stamps: dict) -> dict:
        for stage in ("tune-thresholds", "submit"):
            stamps[stage]["inputs"]["thresholds.value"] = 0.3
        return stamps

    path = _run_and_rewrite_stamps(tmp_path, recorded, as_if_the_default_was_0_3)
    pipeline.run(load_config(path))
    assert set(recorded) == FROM_THRESHOLDS


def test_stages_an_earlier_kagglemlc_stamped_with_fingerprints_stay_done(tmp_path, recorded):
    def as_an_earlier_kagglemlc_stamped(stamps: dict) -> dict:
        cfg = load_config(tmp_path / "config.yaml")
        pipeline._choose_defaults(cfg)  # as `run` does before it compares
        prints = pipeline.fingerprints(cfg)
        return {
            stage: {"fingerprint": prints[stage], **({"output": s["output"]} if "output" in s else {})}
            for stage, s in stamps.items()
        }

    path = _run_and_rewrite_stamps(tmp_path, recorded, as_an_earlier_kagglemlc_stamped)
    pipeline.run(load_config(path))
    assert recorded == []
    pipeline.run(load_config(path, ["thresholds.value=0.3"]))
    assert set(recorded) == FROM_THRESHOLDS


def _run_and_rewrite_stamps(tmp_path, recorded: list[str], rewrite) -> Path:
    """A whole run of a fresh competition, then its stages.json passed through `rewrite`; returns the config."""
    path = make_competition(tmp_path, n_train=12, n_test=4)
    pipeline.run(load_config(path))
    stamps_file = tmp_path / "run" / "stages.json"
    stamps_file.write_text(json.dumps(rewrite(json.loads(stamps_file.read_text()))))
    recorded.clear()
    return path
