"""Preset files: one TOML file per paper protocol, plus quick variants."""
