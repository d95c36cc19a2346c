"""data: the files of a competition and an experiment — competition tables, folds, prediction files,
thresholds.json, the submissions log, which settings made what is on disk. No torch.
"""
