"""Configuration: YAML source with locations, the pydantic model and the validator."""
