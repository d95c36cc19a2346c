"""kagglemlc: Kaggle text-classification competitions from one YAML.

kagglemlc prepare configs/demo.yaml      # K-fold multilabel-stratified splits
"""

import logging
from importlib.metadata import PackageNotFoundError, version

# bitsandbytes (imported by peft) warns on every CPU start that the optional `kernels` package, which
# would fetch a kernel from the hub, is absent; its built-in CPU path works without it
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

try:
    __version__ = version("kagglemlc")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
