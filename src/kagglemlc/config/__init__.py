"""The experiment config: the schema (`schema`), loading with overrides and the resolved copy (`load`), the README
reference (`reference`), the metric names the schema accepts (`metric_names`)."""

from kagglemlc.config.load import (
    field_defaults,
    field_marks,
    load_config,
    package_versions,
    save_resolved,
    settings_dict,
)
from kagglemlc.config.metric_names import METRIC_NAMES, metric_problem
from kagglemlc.config.reference import reference_markdown
from kagglemlc.config.schema import (
    AUTO,
    DEFAULT_CONFIG,
    STAGES,
    AdapterConfig,
    Auto,
    CompetitionConfig,
    Config,
    CVConfig,
    GenerationConfig,
    ModelConfig,
    SubmissionConfig,
    ThresholdsConfig,
    TrainConfig,
    affects,
    name_problem,
)

__all__ = [
    "AUTO",
    "DEFAULT_CONFIG",
    "METRIC_NAMES",
    "STAGES",
    "AdapterConfig",
    "Auto",
    "CVConfig",
    "CompetitionConfig",
    "Config",
    "GenerationConfig",
    "ModelConfig",
    "SubmissionConfig",
    "ThresholdsConfig",
    "TrainConfig",
    "affects",
    "field_defaults",
    "field_marks",
    "load_config",
    "metric_problem",
    "name_problem",
    "package_versions",
    "reference_markdown",
    "save_resolved",
    "settings_dict",
]
