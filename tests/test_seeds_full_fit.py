"""`train.seeds` (every fold once per seed, probabilities averaged), `train.full_fit` (one model on every row for
the steps CV chose) and `submission.use` (what is submitted): each changes what it should and nothing else."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from conftest import make_competition
from kagglemlc.config import load_config
from kagglemlc.core.errors import KaggleMLCError
from kagglemlc.data.competition import load_competition
from kagglemlc.scoring.metrics import score
from kagglemlc.stages.report import report
from kagglemlc.stages.run import run
from kagglemlc.stages.submit import submit
from kagglemlc.stages.train import train
from kagglemlc.stages.tune_thresholds import tune_thresholds
from tiny_models import make_encoder

TRAIN = {"epochs": 2, "eval_every": 2, "batch_size": 16, "precision": "no", "lr": 1e-3, "early_stopping_patience": None}


@pytest.fixture(scope="module")
def competition(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    model = make_encoder(root / "bert", "bert")
    return make_competition(root / "comp", config={"model": {"name": str(model)}, "train": TRAIN})


def _out(competition, name: str) -> str:
    return f"output_dir={competition.parent / name}"


def _probs(path) -> pd.DataFrame:
    return pd.read_parquet(path).set_index("id")


def _weights(folder) -> dict[str, np.ndarray]:
    return load_file(str(folder / "model" / "model.safetensors"))


def test_seeds_train_one_model_per_seed_and_average_them(competition):
    cfg = load_config(competition, [_out(competition, "seeds"), "train.seeds=[3, 4, 5]"])
    train(cfg)
    fold = cfg.run_dir / "fold0"
    seeds = [fold / f"seed{s}" for s in (3, 4, 5)]
    weights = [_weights(s) for s in seeds]
    name = next(k for k in weights[0] if k.endswith("classifier.weight"))
    assert not np.allclose(weights[0][name], weights[1][name]) and not np.allclose(weights[1][name], weights[2][name])
    mean = sum(_probs(s / "oof.parquet") for s in seeds) / 3
    pd.testing.assert_frame_equal(_probs(fold / "oof.parquet"), mean.astype(np.float32), atol=1e-6, rtol=0)
    test_mean = sum(_probs(s / "test.parquet") for s in seeds) / 3
    pd.testing.assert_frame_equal(_probs(fold / "test.parquet"), test_mean.astype(np.float32), atol=1e-6, rtol=0)
    metrics = json.loads((fold / "metrics.json").read_text())
    assert [s["seed"] for s in metrics["seeds"]] == [3, 4, 5]
    # a seed's model is exactly what a plain run with train.seed = that seed trains: nothing else changed
    plain = load_config(competition, [_out(competition, "seed4"), "train.seed=4"])
    train(plain, fold=0)
    pd.testing.assert_frame_equal(_probs(plain.run_dir / "fold0" / "oof.parquet"), _probs(seeds[1] / "oof.parquet"))


def test_full_fit_trains_on_every_row_for_the_steps_cv_chose(competition):
    cfg = load_config(competition, [_out(competition, "full"), "train.full_fit=true"])
    train(cfg)
    folds = [json.loads((cfg.run_dir / f"fold{k}" / "metrics.json").read_text()) for k in range(3)]
    full = json.loads((cfg.run_dir / "full" / "metrics.json").read_text())
    best = [m["best_step"] for m in folds]
    assert full["train_rows"] == 120 and full["val_rows"] == 0 and full["fold"] == "full"
    assert full["steps"] == round(np.median(best) * 120 / folds[0]["train_rows"])
    assert full["chosen"]["fold_best_steps"] == best
    fold_weights = [_weights(cfg.run_dir / f"fold{k}") for k in range(3)]
    full_weights = _weights(cfg.run_dir / "full")
    name = next(k for k in full_weights if k.endswith("classifier.weight"))
    assert all(not np.allclose(full_weights[name], w[name]) for w in fold_weights)
    assert (cfg.run_dir / "full" / "test.parquet").is_file() and not (cfg.run_dir / "full" / "oof.parquet").exists()


def test_submission_use_chooses_folds_full_or_their_mean(competition, tmp_path):
    base = [_out(competition, "full"), "train.full_fit=true", "submission.kind=probabilities"]
    base.append(f"submission.dir={tmp_path}")
    cfg = load_config(competition, base)
    train(cfg)  # complete already (the test above): skipped
    subs = {use: pd.read_csv(submit(load_config(competition, [*base, f"submission.use={use}"]))).set_index("id")
            for use in ("folds", "full", "both")}  # fmt: skip
    folds, full = _probs(cfg.run_dir / "test.parquet"), _probs(cfg.run_dir / "full" / "test.parquet")
    np.testing.assert_allclose(subs["folds"].to_numpy(), folds.loc[subs["folds"].index].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(subs["full"].to_numpy(), full.loc[subs["full"].index].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(subs["both"].to_numpy(), (subs["folds"] + subs["full"]).to_numpy() / 2, atol=1e-6)


def test_submission_use_full_without_a_full_fit_is_one_line(competition, cli):
    code, _, err = cli("submit", competition, _out(competition, "nofull"), "submission.use=full")
    assert code == 2 and "submission.use: full needs" in err and "train.full_fit: true" in err
    assert len(err.strip().splitlines()) == 1


def test_turning_full_fit_on_keeps_the_trained_folds(competition):
    cfg = load_config(competition, [_out(competition, "later")])
    run(cfg)
    models = {k: _weights(cfg.run_dir / f"fold{k}") for k in range(3)}
    run(load_config(competition, [_out(competition, "later"), "train.full_fit=true"]))  # no --restart needed
    assert (cfg.run_dir / "full" / "metrics.json").is_file()
    for k in range(3):
        after = _weights(cfg.run_dir / f"fold{k}")
        assert all(np.array_equal(after[n], models[k][n]) for n in after)


def test_seeds_and_full_fit_refuse_what_they_cannot_do(competition):
    with pytest.raises(KaggleMLCError, match="repeats a seed"):
        load_config(competition, ["train.seeds=[1, 1]"])
    with pytest.raises(KaggleMLCError, match="generative models answer in words"):
        load_config(competition, ["train.seeds=[1, 2]", "model.kind=generative"])


def test_report_shows_each_seeds_cv_the_averaged_cv_and_the_full_fit(competition):
    seeds = load_config(competition, [_out(competition, "seeds"), "train.seeds=[3, 4, 5]"])  # trained above
    tune_thresholds(seeds)
    summary = report([seeds.run_dir / "config.yaml"], as_json=True)["experiments"][0]
    assert [r["seed"] for r in summary["seeds"]] == [3, 4, 5]
    data = load_competition(seeds.competition)
    y, ids = data.y, data.train_ids.astype(str)
    for row in summary["seeds"]:  # seed s alone: its three fold models' out-of-fold probabilities, pooled
        folds = [seeds.run_dir / f"fold{k}" / f"seed{row['seed']}" / "oof.parquet" for k in range(3)]
        pooled = pd.concat([_probs(path) for path in folds])
        probs = pooled.loc[ids].to_numpy()
        assert row["at_0.5"] == pytest.approx(score("f1_macro", y, (probs >= 0.5).astype(float), "multilabel"))
    md = report([seeds.run_dir / "config.yaml"]).read_text()
    assert "seeds averaged" in md and "seed 4" in md
    full = load_config(competition, [_out(competition, "full"), "train.full_fit=true"])  # trained above
    md = report([full.run_dir / "config.yaml"]).read_text()
    assert "Full fit: 120 rows" in md
