"""Config loading, dotted overrides, path resolution and the resolved config.yaml written by prepare."""

from pathlib import Path

import pytest
import yaml

from conftest import make_competition
from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError


def test_override_changes_value_with_the_fields_type(tmp_path):
    path = make_competition(tmp_path)
    cfg = load_config(
        path, ["train.lr=3e-5", "cv.folds=4", "train.max_grad_norm=null", "competition.labels=[joy,fear]"]
    )
    assert cfg.train.lr == pytest.approx(3e-5) and isinstance(cfg.train.lr, float)
    assert cfg.cv.folds == 4 and isinstance(cfg.cv.folds, int)
    assert cfg.train.max_grad_norm is None
    assert cfg.competition.labels == ["joy", "fear"]


def test_override_of_wrong_type_names_key(tmp_path):
    path = make_competition(tmp_path)
    with pytest.raises(KaggleMLCError, match=r"cv\.folds") as exc:
        load_config(path, ["cv.folds=many"])
    assert "'many'" in str(exc.value)


def test_override_out_of_range_names_key(tmp_path):
    path = make_competition(tmp_path)
    with pytest.raises(KaggleMLCError, match=r"cv\.folds"):
        load_config(path, ["cv.folds=1"])


def test_override_of_wrong_literal_lists_allowed_values(tmp_path):
    path = make_competition(tmp_path)
    with pytest.raises(KaggleMLCError) as exc:
        load_config(path, ["competition.task=multi"])
    message = str(exc.value)
    assert "competition.task" in message
    for allowed in ("multilabel", "multiclass", "binary"):
        assert allowed in message


def test_unknown_override_key_names_it_and_lists_allowed(tmp_path):
    path = make_competition(tmp_path)
    with pytest.raises(KaggleMLCError) as exc:
        load_config(path, ["train.lrr=1e-4"])
    message = str(exc.value)
    assert "train.lrr" in message
    assert "train.lr," in message and "train.epochs" in message


def test_unknown_override_section_lists_sections(tmp_path):
    path = make_competition(tmp_path)
    with pytest.raises(KaggleMLCError) as exc:
        load_config(path, ["trian.lr=1e-4"])
    assert "'trian'" in str(exc.value) and "train" in str(exc.value) and "competition" in str(exc.value)


def test_override_without_equals_is_an_error(tmp_path):
    path = make_competition(tmp_path)
    with pytest.raises(KaggleMLCError, match="section.key=value"):
        load_config(path, ["train.lr"])


def test_unknown_key_in_yaml_names_it_and_lists_allowed(tmp_path):
    path = make_competition(tmp_path, config={"train": {"epoch": 2}})
    with pytest.raises(KaggleMLCError) as exc:
        load_config(path)
    message = str(exc.value)
    assert str(path) in message and "train.epoch" in message and "epochs" in message


def test_wrong_literal_in_yaml_lists_allowed_values(tmp_path):
    path = make_competition(tmp_path, config={"adapter": {"method": "loar"}})
    with pytest.raises(KaggleMLCError) as exc:
        load_config(path)
    message = str(exc.value)
    assert "adapter.method" in message and "'loar'" in message and "qlora" in message


def test_multiclass_needs_ce_loss(tmp_path):
    path = make_competition(tmp_path, config={"competition": {"task": "multiclass"}})
    with pytest.raises(KaggleMLCError, match=r"train\.loss"):
        load_config(path)


def test_missing_config_file_is_a_user_error(tmp_path):
    with pytest.raises(KaggleMLCError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_paths_resolve_against_the_yaml_folder(tmp_path, monkeypatch):
    path = make_competition(tmp_path / "comp")
    monkeypatch.chdir(tmp_path)  # elsewhere: the YAML's relative paths must not follow the cwd
    cfg = load_config(path)
    assert cfg.competition.train == (tmp_path / "comp" / "train.csv").resolve()
    assert cfg.competition.sample_submission == (tmp_path / "comp" / "sample_submission.csv").resolve()
    assert cfg.run_dir == (tmp_path / "comp" / "run").resolve()
    assert cfg.submission.dir == (tmp_path / "comp" / "submissions").resolve()


def test_override_path_resolves_against_the_cwd(tmp_path, monkeypatch):
    path = make_competition(tmp_path / "comp")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config(path, ["competition.train=data/train.csv"])
    assert cfg.competition.train == (tmp_path / "elsewhere" / "data" / "train.csv").resolve()


@pytest.mark.parametrize("key", ["output_dir", "competition.test", "competition.sample_submission", "submission.dir"])
def test_optional_path_override_resolves_against_the_cwd(tmp_path, monkeypatch, key):
    path = make_competition(tmp_path / "comp")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config(path, [f"{key}=out"])
    section, _, field = key.rpartition(".")
    value = getattr(getattr(cfg, section) if section else cfg, field)
    assert value == (tmp_path / "elsewhere" / "out").resolve()


def test_output_dir_defaults_to_runs_next_to_config(tmp_path):
    path = make_competition(tmp_path)
    raw = yaml.safe_load(path.read_text())
    del raw["output_dir"]
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert cfg.run_dir == (tmp_path / "runs" / "config").resolve()
    assert cfg.name == "config"


def test_prepare_writes_resolved_config(tmp_path, cli):
    path = make_competition(tmp_path)
    code, _, err = cli("prepare", path, "train.lr=1e-4")
    assert code == 0, err
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    for key in ("train", "test", "sample_submission"):
        assert Path(written["competition"][key]).is_absolute()
        assert Path(written["competition"][key]) == (tmp_path / f"{key}.csv").resolve()
    assert Path(written["output_dir"]) == (tmp_path / "run").resolve()
    assert written["train"]["lr"] == pytest.approx(1e-4)
    meta = written["meta"]
    assert "git_commit" in meta
    assert {"kagglemlc", "pandas", "scikit-learn"} <= set(meta["versions"])
    assert meta["config_file"] == str(path.resolve())
    # the resolved config is itself a valid config that names the same experiment
    again = load_config(tmp_path / "run" / "config.yaml")
    assert again.run_dir == (tmp_path / "run").resolve()
    assert again.train.lr == pytest.approx(1e-4)


def test_first_argument_with_equals_is_an_override(tmp_path, cli, monkeypatch):
    path = make_competition(tmp_path)
    path.rename(tmp_path / "kagglemlc.yaml")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("prepare", "cv.folds=4", "cv.seed=7")
    assert code == 0, err
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["cv"]["folds"] == 4 and written["cv"]["seed"] == 7
    assert Path(written["meta"]["config_file"]) == (tmp_path / "kagglemlc.yaml").resolve()


def test_config_defaults_to_kagglemlc_yaml_in_cwd(tmp_path, cli, monkeypatch):
    path = make_competition(tmp_path)
    path.rename(tmp_path / "kagglemlc.yaml")
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("prepare")
    assert code == 0, err
    assert (tmp_path / "run" / "folds.parquet").is_file()


def test_missing_default_config_is_one_line_error(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("prepare", "cv.folds=3")
    assert code == 2
    assert err.strip().startswith("error:") and "kagglemlc.yaml" in err and len(err.strip().splitlines()) == 1


def test_cli_override_error_exits_2_without_writing(tmp_path, cli):
    path = make_competition(tmp_path)
    code, _, err = cli("prepare", path, "cv.fold=3")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "cv.fold" in lines[0] and "cv.folds" in lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_yaml_bare_no_means_precision_no(tmp_path):
    path = make_competition(tmp_path / "comp")
    path.write_text(path.read_text() + "train:\n  precision: no\n")
    assert load_config(path).train.precision == "no"
    assert load_config(path, ["train.precision=no"]).train.precision == "no"
