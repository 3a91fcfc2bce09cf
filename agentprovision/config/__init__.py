"""Admin configuration: schema, YAML loading with positions, and cross-file checks."""

from agentprovision.config.loader import LoadResult, config_fingerprint, load_config_dir
from agentprovision.config.schema import AdminConfig
from agentprovision.config.source import ConfigIssue

__all__ = ["AdminConfig", "ConfigIssue", "LoadResult", "config_fingerprint", "load_config_dir"]
