"""Checkpoints of format 1 (up to 0502fcc): one flat ModelConfig for every family, read as today's.

Format 1 stored the family ("vae", "anogan", "vaegan", "vaegan+") and all 27 fields of one
config class, used or not. A "vaegan" with ``standardise`` set scored with maps measured
against normal frames under the paper's method names; that computation is the family
"vaegan-z" now, with methods of its own, so such a checkpoint loads as one (same weights,
same buffers, same scores) and its default thresholds move to the new names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from inspector.models import family_named
from inspector.models.base import ModelConfig

# The flat config as format 1 last wrote it; fields a file lacks took these values.
DEFAULTS: dict[str, Any] = {
    "family": "vaegan",
    "image_size": 84,
    "channels": 1,
    "latent_dim": 64,
    "width": 32,
    "lr": 2e-4,
    "batch_size": 64,
    "kl_weight": 1.0,
    "pixel_weight": 1.0,
    "feature_weight": 1.0,
    "gan_weight": 1.0,
    "feature_layer": -1,
    "attention_layer": -1,
    "standardise": False,
    "region_blur": 0.0,
    "neighbours": 0,
    "attention_cap": 0.0,
    "glimpse_size": 28,
    "glimpse_blur": 1.0,
    "glimpse_threshold": 0.25,
    "glimpse_fill": 20 / 28,
    "error_blur": 1.0,
    "attended_fraction": 0.05,
    "vae_samples": 10,
    "anogan_steps": 100,
    "anogan_lambda": 0.1,
    "anogan_lr": 0.05,
}
RENAMED = {
    "vae_samples": "samples",
    "anogan_steps": "search_steps",
    "anogan_lambda": "search_lambda",
    "anogan_lr": "search_lr",
}
STANDARDISED_METHODS = {"vaegan": "vaegan-z", "vaegan-attn": "vaegan-attn-z"}


def read_config(stored: dict[str, Any]) -> tuple[dict[str, Any], ModelConfig, dict[str, str]]:
    """The whole format-1 config (what its version hashes), today's config of its family,
    and the new name of each of its method names."""
    flat = {**DEFAULTS, **stored}
    family = flat["family"]
    if family == "vaegan" and flat["standardise"]:
        family = "vaegan-z"
    config_class = family_named(family).config
    fields = {f.name for f in dataclasses.fields(config_class)}
    # The fields a family's computation did not read (another family's) are dropped.
    values = {RENAMED.get(k, k): v for k, v in flat.items()}
    config = config_class(**{k: v for k, v in values.items() if k in fields})
    methods = STANDARDISED_METHODS if family == "vaegan-z" else {}
    return flat, config, methods
