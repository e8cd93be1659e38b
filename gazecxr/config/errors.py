"""The one exception of configuration problems (loading, overrides, schema)."""


class ConfigError(ValueError):
    """A configuration that cannot be loaded or does not fit the schema."""
