"""The detectors' neural networks, one module per family: pure torch, no files, no SQL.

A family is a config, networks with their scoring methods, and a trainer (see base.Family).
The paper's: ``vae`` (vae.py), ``anogan`` (anogan.py), ``vaegan`` (vaegan.py). Ours:
``vaegan-z`` (fixed_camera.py), ``vaegan+`` (glimpse_vaegan.py), and the memories of normal
patches of a pretrained backbone (memory.py): ``patch-memory`` (patch_memory.py) and
``glimpse-memory`` (glimpse_memory.py). Each scoring method belongs to exactly one family,
and names one computation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from inspector.models import (
    anogan,
    fixed_camera,
    glimpse_memory,
    glimpse_vaegan,
    patch_memory,
    vae,
    vaegan,
)
from inspector.models.base import AnomalyModel, Family, ModelConfig, Scores, Trainer

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        vae.FAMILY,
        anogan.FAMILY,
        vaegan.FAMILY,
        fixed_camera.FAMILY,
        glimpse_vaegan.FAMILY,
        patch_memory.FAMILY,
        glimpse_memory.FAMILY,
    )
}
METHODS: dict[str, Family] = {method: family for family in FAMILIES.values() for method in family.methods}


def family_of(method: str) -> Family:
    """The family whose checkpoints a scoring method needs."""
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}") from None


def family_named(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; choose from {sorted(FAMILIES)}") from None


def family_of_config(config: ModelConfig) -> Family:
    """The family a config belongs to: each family has a config class of its own."""
    for family in FAMILIES.values():
        if type(config) is family.config:
            return family
    raise ValueError(f"{type(config).__name__} is no registered family's config")


def make_config(family: str, values: Mapping[str, Any]) -> ModelConfig:
    """A family's config from settings (a checkpoint's, a YAML file's), refusing unknown ones."""
    config = family_named(family).config
    known = {f.name for f in dataclasses.fields(config)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown settings for a {family} model: {sorted(unknown)} (known: {sorted(known)})")
    return config(**values)


__all__ = [
    "FAMILIES",
    "METHODS",
    "AnomalyModel",
    "Family",
    "ModelConfig",
    "Scores",
    "Trainer",
    "family_named",
    "family_of",
    "family_of_config",
    "make_config",
]
