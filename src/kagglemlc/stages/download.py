"""`kagglemlc download`: every config's model fetched ahead of time, for a machine that will be offline.

    kagglemlc download configs/deberta.yaml configs/qwen.yaml   # then offline: model.offline: true, or HF_HUB_OFFLINE=1

A `model.name` that is a Hugging Face Hub id is downloaded exactly as `train` would fetch it: at `model.revision`,
into `model.cache_dir` (default: huggingface_hub's cache), the files from_pretrained reads. `model.offline` is not
read here: it is the setting of the machine that will use the cache. Local folders and the bundled `minilm` need
nothing and send nothing; with HF_HUB_OFFLINE=1 the cache is only checked.
"""

from __future__ import annotations

from kagglemlc.config import Config
from kagglemlc.core.console import info
from kagglemlc.models.build import local_model_path
from kagglemlc.models.hub import hub_offline, hub_snapshot


def download(cfgs: list[Config]) -> list[str]:
    """Fetches each config's model (what the cache lacks of it) and prints where it is.

    Returns:
        The folder from_pretrained will read for each config, in order.

    Raises:
        KaggleMLCError: a model that cannot be had (not on the Hub, gated, unreachable ...), as one line.
    """
    folders = []
    for cfg in cfgs:
        m = cfg.model
        folder = local_model_path(cfg)
        if folder is not None:
            info(f"{m.name}: a local folder, nothing to download ({folder})")
        else:
            snapshot = hub_snapshot(m.name, m.revision, m.cache_dir, offline=hub_offline())
            folder = snapshot.folder
            info(f"{m.name}: commit {snapshot.commit} in the cache ({folder})")
        folders.append(folder)
    return folders
