from conftest import make_competition


def test_prepare_writes_folds(tmp_path, cli):
    cfg = make_competition(tmp_path)
    code, out, err = cli("prepare", cfg)
    assert code == 0, err
    assert (tmp_path / "run" / "folds.parquet").is_file()
