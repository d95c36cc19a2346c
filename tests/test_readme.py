"""The README says what the code does: its config reference is the one generated from the models."""

from pathlib import Path

from kagglemlc.config import reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_readme_config_reference_is_generated_from_the_models():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
    block = readme[readme.index(start) + len(start) : readme.index(end)]
    assert block.strip() == reference_markdown().strip(), (
        "README config reference is stale: regenerate it from kagglemlc.config.reference_markdown()"
    )


def test_readme_opens_with_the_two_fresh_machine_commands():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    commands = [ln for ln in lines[:8] if ln.startswith("python3 -m venv")]
    assert len(commands) == 2
    assert "kagglemlc run configs/demo.yaml" in commands[0] and "pytest" in commands[1]
    assert all("pip install torch==2.13.0" in c for c in commands)
