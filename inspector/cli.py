"""The `inspector` command: small commands that parse input and call the library."""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path

import click
import yaml

from inspector.config import ConfigError, Settings, load_settings
from inspector.frames import FrameError, find_frames, load_frame
from inspector.models import FAMILIES, ModelConfig, family_of


class Context:
    """Settings loaded once per invocation, from --config and the environment."""

    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_path)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from exc
        return self._settings


pass_context = click.make_pass_decorator(Context)


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="INSPECTOR_CONFIG",
    help="Settings YAML (default: built-in embedded settings).",
)
@click.version_option(package_name="inspector")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Visual anomaly inspection: train, watch a folder, report and review."""
    ctx.obj = Context(config_path)


def _model_config(method: str, image_size: int, channels: int, config_file: str | None) -> ModelConfig:
    family = family_of(method)
    values = {}
    if config_file:
        data = yaml.safe_load(Path(config_file).read_text()) or {}
        values = data.get("model", data)
        known = {f.name for f in dataclasses.fields(ModelConfig)}
        unknown = set(values) - known
        if unknown:
            raise click.ClickException(f"{config_file}: unknown model settings {sorted(unknown)}")
    return dataclasses.replace(ModelConfig(**values), family=family, image_size=image_size, channels=channels)


@main.command()
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(exists=True),
    help="Folder of normal frames (recursive).",
)
@click.option(
    "--method",
    type=click.Choice(sorted(FAMILIES) + ["vaegan-attn"]),
    default="vaegan",
    show_default=True,
)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Checkpoint file to write.")
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--image-size", type=int, default=None, help="Model resolution (default: frames.image_size).")
@click.option(
    "--mode",
    type=click.Choice(["grey", "colour", "depth"]),
    default=None,
    help="Frame kind (default: frames.mode).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--model-config",
    "model_config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML of model hyper-parameters (see ModelConfig).",
)
@click.option("--patience", type=int, default=0, help="Early stopping on held-out normals (0 = off).")
@click.option("--shift", type=int, default=0, help="Augment by random shifts of up to this many pixels.")
@click.option("--hflip/--no-hflip", default=False, help="Augment with mirror images.")
@pass_context
def train(
    ctx: Context,
    data_dir: str,
    method: str,
    out: str,
    epochs: int,
    image_size: int | None,
    mode: str | None,
    seed: int,
    model_config_file: str | None,
    patience: int,
    shift: int,
    hflip: bool,
) -> None:
    """Train a detector on a folder of normal frames."""
    from tqdm import tqdm

    from inspector.training import TrainingError, TrainOptions, load_training_frames
    from inspector.training import train as fit

    base = ctx.settings.frames
    spec = dataclasses.replace(base, image_size=image_size or base.image_size, mode=mode or base.mode)
    try:
        frames, skipped = load_training_frames(data_dir, spec)
        for line in skipped:
            click.echo(f"skipped {line}", err=True)
        config = _model_config(method, spec.image_size, spec.channels, model_config_file)
        options = TrainOptions(
            epochs=epochs,
            seed=seed,
            patience=patience,
            shift=shift,
            hflip=hflip,
            device=ctx.settings.device,
        )
        click.echo(f"training {config.family} on {len(frames)} frames of {spec.mode} {spec.image_size}px")
        with tqdm(total=epochs, unit="epoch", file=sys.stderr) as bar:

            def progress(epoch: int, losses: dict[str, float]) -> None:
                bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()})
                bar.update(1)

            checkpoint = fit(frames, config, spec, options, progress)
    except TrainingError as exc:
        raise click.ClickException(str(exc)) from exc
    checkpoint.save(out)
    thresholds = ", ".join(f"{m} {t:.4g}" for m, t in checkpoint.thresholds.items())
    click.echo(f"wrote {out} (version {checkpoint.version}; thresholds: {thresholds})")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--method",
    default=None,
    help="Scoring method (default: the model's own; vaegan models: vaegan-attn).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--maps", "maps_dir", type=click.Path(file_okay=False), help="Write heat-map PNGs here.")
@click.option("--threshold", type=float, default=None, help="Override the model's default threshold.")
@pass_context
def score(
    ctx: Context,
    model: str,
    inputs: tuple[str, ...],
    method: str | None,
    fmt: str,
    maps_dir: str | None,
    threshold: float | None,
) -> None:
    """Score frames (files or folders) and print a verdict per frame."""
    from inspector.detector import CheckpointError, Detector
    from inspector.maps import write_maps

    try:
        detector = Detector.load(model, method=method, device=ctx.settings.device)
    except (CheckpointError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    paths = [p for item in inputs for p in find_frames(item)]
    if not paths:
        raise click.ClickException("no image files among the inputs")
    rows, failed = [], 0
    if threshold is None:
        threshold = detector.threshold
    for path, result in zip(paths, detector.score_files(paths), strict=True):
        if isinstance(result, FrameError):
            failed += 1
            rows.append(
                {
                    "frame": str(path),
                    "score": None,
                    "threshold": threshold,
                    "verdict": "error",
                    "error": str(result),
                }
            )
            continue
        verdict = "anomaly" if result.score > threshold else "normal"
        row = {
            "frame": str(path),
            "score": result.score,
            "threshold": threshold,
            "verdict": verdict,
            "error": "",
        }
        if maps_dir:
            frame = load_frame(path, detector.frame_spec)
            row["maps"] = {k: str(v) for k, v in write_maps(Path(maps_dir), path.stem, frame, result).items()}
        rows.append(row)
    _print_rows(rows, fmt)
    if failed:
        click.echo(f"{failed} of {len(paths)} frames could not be read", err=True)
        sys.exit(1)


def _print_rows(rows: list[dict], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        fields = ["frame", "score", "threshold", "verdict", "error"]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    else:
        width = max(len(r["frame"]) for r in rows)
        for r in rows:
            shown = "-" if r["score"] is None else f"{r['score']:.5g}"
            detail = f"  {r['error']}" if r["error"] else ""
            click.echo(f"{r['frame']:<{width}}  {shown:>10}  {r['verdict']}{detail}")
