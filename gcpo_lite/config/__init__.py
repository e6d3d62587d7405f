"""What a run is: the config sections (schema), their validation, and loading from YAML and overrides.

`from gcpo_lite.config import Config, load_config` is the interface; the modules below hold the parts.
"""

from gcpo_lite.config.schema import (  # noqa: F401 (the package's interface)
    Config,
    ConfigError,
    DataConfig,
    GCPOConfig,
    LoraConfig,
    ModelConfig,
    RewardConfig,
    RolloutConfig,
    SchedulerConfig,
    TrainConfig,
    apply_overrides,
    describe_options,
    from_dict,
    load_config,
    options_markdown,
    save_config,
)
