"""kagglemlc: Kaggle text-classification competitions from one YAML.

kagglemlc prepare configs/demo.yaml      # K-fold multilabel-stratified splits
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kagglemlc")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"
