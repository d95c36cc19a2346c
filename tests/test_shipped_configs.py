"""Every YAML shipped in configs/ loads and validates (torchtune's test_configs.py idea)."""

from pathlib import Path

import pytest

from kagglemlc.config import Config, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("**/*.yaml"))


def test_configs_are_shipped():
    assert CONFIGS, "configs/ holds no YAML"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_validates(path: Path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.competition.train.is_absolute()
    assert cfg.run_dir.is_absolute()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_says_how_to_run_it(path: Path):
    header = path.read_text(encoding="utf-8").splitlines()[:6]
    assert header[0].startswith("#"), "a config opens with a comment saying what it is for"
    assert any("kagglemlc" in line for line in header if line.startswith("#")), "and the command that runs it"
