"""What a run is: the config sections (schema), their validation, and loading from YAML and overrides.

`from gcpo_lite.config import Config, load_config` is the interface; the modules below hold the parts.
"""

from gcpo_lite.config.loading import (  # noqa: F401 (the package's interface)
    apply_overrides,
    describe_options,
    from_dict,
    load_config,
    options_markdown,
    save_config,
)
from gcpo_lite.config.schema import Config  # noqa: F401
from gcpo_lite.config.sections import (  # noqa: F401
    DataConfig,
    GCPOSection,
    LoraConfig,
    MemoryConfig,
    ModelConfig,
    RewardConfig,
    RolloutConfig,
    TrainConfig,
)
from gcpo_lite.errors import ConfigError  # noqa: F401
