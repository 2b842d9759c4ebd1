"""The detectors' neural networks: pure torch, no files, no SQL."""

from inspector.models.anogan import AnoGAN
from inspector.models.base import AnomalyModel, ModelConfig, Scores
from inspector.models.glimpse_vaegan import GlimpseVAEGAN
from inspector.models.vae import VAE
from inspector.models.vaegan import VAEGAN

FAMILIES: dict[str, type[AnomalyModel]] = {
    "vae": VAE,
    "anogan": AnoGAN,
    "vaegan": VAEGAN,
    "vaegan+": GlimpseVAEGAN,
}
METHODS: dict[str, str] = {m: family for family, cls in FAMILIES.items() for m in cls.scoring_methods}


def family_of(method: str) -> str:
    """The model family (checkpoint kind) that a scoring method needs."""
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}") from None


def default_method(family: str) -> str:
    """The scoring method a checkpoint of this family uses unless told otherwise."""
    return FAMILIES[family].scoring_methods[-1]


def build_model(config: ModelConfig) -> AnomalyModel:
    return FAMILIES[config.family](config)


__all__ = [
    "FAMILIES",
    "METHODS",
    "AnomalyModel",
    "ModelConfig",
    "Scores",
    "build_model",
    "default_method",
    "family_of",
]
