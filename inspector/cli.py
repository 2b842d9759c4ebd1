"""The `inspector` command: small commands that parse input and call the library."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import importlib
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

import click
import yaml

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from inspector import health
    from inspector.detector import Checkpoint
    from inspector.models import ModelConfig
    from inspector.pipeline.registry import Promotion
    from inspector.store.models import ModelChange

from inspector.config import AUTO, MODES, ConfigError, FrameSpec, Settings, load_settings

CHECKOUT = Path(__file__).resolve().parents[1]  # the source checkout, when installed from one
F = TypeVar("F", bound=Callable[..., object])


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
    """The config of the family that scores with ``method`` (or is named so), from the YAML file."""
    from inspector.models import FAMILIES, family_of, make_config

    values = {}
    if config_file:
        data = yaml.safe_load(Path(config_file).read_text()) or {}
        values = data.get("model", data)
    try:
        family = FAMILIES[method] if method in FAMILIES else family_of(method)
        config = make_config(family.name, values)
    except ValueError as exc:
        where = f"{config_file}: " if config_file else ""
        raise click.ClickException(where + str(exc)) from exc
    return dataclasses.replace(config, image_size=image_size, channels=channels)


def _frame_shape_of(paths: Sequence[Path], spec: FrameSpec) -> FrameSpec:
    """The spec with the shape ``selection.frame_shape`` chooses from the files' own sizes (read
    from their headers; an unreadable file is left to the loading, which reports it)."""
    from inspector.frames import FrameError, stored_shape
    from inspector.selection import frame_shape

    shapes = []
    for path in paths:
        try:
            shapes.append(stored_shape(path, spec))
        except FrameError:
            continue
    if not shapes:
        return spec
    height, width = frame_shape(shapes)
    return dataclasses.replace(spec, image_size=height, width=width)


def _measured_range(paths: Sequence[Path], spec: FrameSpec) -> FrameSpec:
    """The depth spec with the working range's ends not set taken from the training files
    (``frames.measured_depth_range``). Where the end set and the one measured leave no range, the default
    end is taken (frames beyond the end set then read blank, and the loading says why); refused
    where even that leaves none."""
    from inspector.frames import measured_depth_range

    measured, why = measured_depth_range(paths, spec)
    if measured is None:
        return spec
    click.echo(why)
    near = measured[0] if spec.near_mm is None else spec.near_mm
    far = measured[1] if spec.far_mm is None else spec.far_mm
    if far <= near:
        near, far = spec.depth_range
    if far <= near:
        raise click.BadParameter(f"--far-mm ({far:g}) must lie beyond --near-mm ({near:g})")
    return dataclasses.replace(spec, near_mm=near, far_mm=far)


def _report_choice(checkpoint: Checkpoint) -> None:
    """What the label-free choice chose, its estimate, and a warning when the estimate is low."""
    from inspector.selection import WARN_BELOW

    selection = checkpoint.metadata["selection"]
    estimate = selection["estimate"]
    click.echo(
        f"chose {selection.get('candidate') or checkpoint.family.name}, scoring method "
        f"{checkpoint.default_method}: validation ROC-AUC "
        f"{estimate:.3f} (held-out normal frames against synthetic anomalies made from them)"
    )
    if estimate < WARN_BELOW:
        click.echo(
            f"warning: the validation estimate {estimate:.3f} is low: the detector may miss defects like "
            "the synthetic ones. Check it on a few real anomalies (the estimate can be pessimistic), or "
            "train more normal frames, or choose a --method.",
            err=True,
        )


def depth_unit_options(command: Callable[..., None]) -> Callable[..., None]:
    """--depth-unit-mm, --near-mm and --far-mm: a depth frame's units and working range, over the
    settings (train) or the checkpoint's (score); see ``units``."""
    options = (
        ("--depth-unit-mm", "Millimetres per raw depth unit (an SR305 writes 0.125)."),
        ("--near-mm", "Nearest depth of the working range, in mm."),
        ("--far-mm", "Farthest depth of the working range, in mm (beyond it: blank)."),
    )
    for name, help_text in reversed(options):
        command = click.option(
            name, type=click.FloatRange(min=0, min_open=name == "--depth-unit-mm"), help=help_text
        )(command)
    return command


def units(
    spec: FrameSpec, depth_unit_mm: float | None, near_mm: float | None, far_mm: float | None
) -> FrameSpec:
    """The frame spec with the depth flags given on the command line."""
    given = {"depth_unit_mm": depth_unit_mm, "near_mm": near_mm, "far_mm": far_mm}
    spec = dataclasses.replace(spec, **{k: v for k, v in given.items() if v is not None})
    if spec.near_mm is not None and spec.far_mm is not None and spec.far_mm <= spec.near_mm:
        raise click.BadParameter(f"--far-mm ({spec.far_mm:g}) must lie beyond --near-mm ({spec.near_mm:g})")
    return spec


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
    default=None,
    help="Model family (vae, anogan, vaegan, vaegan-z, vaegan+, patch-memory, glimpse-memory) or one "
    "of its scoring methods. Default: chosen from the frames, label-free (see the README).",
)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Checkpoint file to write.")
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option(
    "--image-size",
    type=click.IntRange(min=1),
    default=None,
    help="Model input rows (and columns unless --width). Default: frames.image_size with --method; "
    "without, from the frames' own size (aspect kept, at most 256×256 pixels).",
)
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=None,
    help="Model input columns, for elongated frames (default: frames.width, or square).",
)
@click.option(
    "--mode",
    type=click.Choice([AUTO, *MODES]),
    default=None,
    help="Frame kind (default: frames.mode, auto: colour where the training files hold colour, else "
    "grey; depth where a depth unit or range is given, never guessed from the files).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--model-config",
    "model_config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML of the family's hyper-parameters (see its config in inspector/models/).",
)
@click.option("--patience", type=int, default=0, help="Early stopping on held-out normals (0 = off).")
@click.option("--shift", type=int, default=0, help="Augment by random shifts of up to this many pixels.")
@click.option("--hflip/--no-hflip", default=False, help="Augment with mirror images.")
@click.option("--gain", type=float, default=0.0, help="Augment by exposure gains of 1 ± up to this.")
@click.option(
    "--min-epoch-frames",
    type=int,
    default=256,
    show_default=True,
    help="Each epoch shows at least this many (re-augmented) frames, for small training sets.",
)
@depth_unit_options
@pass_context
def train(
    ctx: Context,
    data_dir: str,
    method: str,
    out: str,
    epochs: int,
    image_size: int | None,
    width: int | None,
    mode: str | None,
    seed: int,
    model_config_file: str | None,
    patience: int,
    shift: int,
    hflip: bool,
    gain: float,
    min_epoch_frames: int,
    depth_unit_mm: float | None,
    near_mm: float | None,
    far_mm: float | None,
) -> None:
    """Train a detector on a folder of normal frames.

    Without --method (and --model-config) the frame shape, the model family and its scoring
    method are chosen from the normal frames alone, validated on synthetic anomalies made
    from held-out ones (inspector/selection.py); the estimate is printed and kept."""
    from tqdm import tqdm

    from inspector.frames import detect_mode, find_frames, measured_raw_range
    from inspector.models import family_of_config
    from inspector.training import TrainingError, TrainOptions, load_training_frames
    from inspector.training import train as fit

    if method is None and model_config_file:
        raise click.UsageError("--model-config needs --method: the family its settings belong to")
    base = ctx.settings.frames
    spec = dataclasses.replace(
        base,
        image_size=image_size or base.image_size,
        width=width or (0 if image_size else base.width),
        mode=mode or base.mode,
    )
    spec = units(spec, depth_unit_mm, near_mm, far_mm)
    paths = find_frames(data_dir)  # listed once: the mode, the shape and the loading read the same files
    if spec.mode == AUTO and any(given is not None for given in (depth_unit_mm, near_mm, far_mm)):
        spec = dataclasses.replace(spec, mode="depth")  # a depth unit or range says what the frames are
    elif spec.mode == AUTO:
        detected, why = detect_mode(paths, spec)
        click.echo(why)
        spec = dataclasses.replace(spec, mode=detected)
    if spec.raw_range is None:
        raw_range, why = measured_raw_range(paths, spec)
        if why:
            click.echo(why)
        spec = dataclasses.replace(spec, raw_range=raw_range)
    if spec.mode == "depth" and None in (spec.near_mm, spec.far_mm):
        spec = _measured_range(paths, spec)
    options = TrainOptions(
        epochs=epochs,
        seed=seed,
        patience=patience,
        shift=shift,
        hflip=hflip,
        gain=gain,
        min_epoch_frames=min_epoch_frames,
        device=ctx.settings.device,
    )
    try:
        if method is None and image_size is None:
            spec = _frame_shape_of(paths, spec)
        frames, records, skipped = load_training_frames(data_dir, spec, paths)
        for line in skipped:
            click.echo(f"skipped {line}", err=True)
        shown = f"{spec.mode} {spec.shape[0]}×{spec.shape[1]} px"
        with tqdm(total=epochs, unit="epoch", file=sys.stderr) as bar:

            def progress(epoch: int, losses: dict[str, float]) -> None:
                bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()})
                bar.update(1)

            if method is None:
                from inspector.selection import train_default

                click.echo(f"choosing a detector for {len(frames)} frames of {shown}")
                checkpoint = train_default(frames, spec, options, progress, records, note=bar.write)
            else:
                config = _model_config(method, spec.image_size, spec.channels, model_config_file)
                click.echo(f"training {family_of_config(config).name} on {len(frames)} frames of {shown}")
                checkpoint = fit(frames, config, spec, options, progress, records=records)
    except TrainingError as exc:
        raise click.ClickException(str(exc)) from exc
    if "selection" in checkpoint.metadata:
        _report_choice(checkpoint)
    checkpoint.save(out)
    thresholds = ", ".join(f"{m} {t:.4g}" for m, t in checkpoint.thresholds.items())
    click.echo(f"wrote {out} (version {checkpoint.version}; thresholds: {thresholds})")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--method",
    default=None,
    help="Scoring method (default: the one training chose, else the family's; vaegan models: vaegan-attn).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option(
    "--maps",
    "maps_dir",
    type=click.Path(file_okay=False),
    help="Write heat-map PNGs here, as MAPS/<path under the scored folders>.<kind>.png, at each "
    "file's own resolution (its region of interest's).",
)
@click.option("--threshold", type=float, default=None, help="Override the model's default threshold.")
@depth_unit_options
@pass_context
def score(
    ctx: Context,
    model: str,
    inputs: tuple[str, ...],
    method: str | None,
    fmt: str,
    maps_dir: str | None,
    threshold: float | None,
    depth_unit_mm: float | None,
    near_mm: float | None,
    far_mm: float | None,
) -> None:
    """Score frames (files or folders) and print a verdict per frame."""
    import os

    import numpy as np

    from inspector.detector import CheckpointError, Detector, map_arrays
    from inspector.frames import FrameError, check_frames_vary, file_resolution, find_frames, load_frame
    from inspector.maps import at_resolution, write_maps
    from inspector.pipeline.thresholds import is_anomaly

    try:
        detector = Detector.load(model, method=method, device=ctx.settings.device)
    except (CheckpointError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    paths = [p for item in inputs for p in find_frames(item)]
    if not paths:
        raise click.ClickException("no image files among the inputs")
    spec = units(detector.frame_spec, depth_unit_mm, near_mm, far_mm)
    loaded: dict[Path, np.ndarray] = {}
    errors: dict[Path, FrameError] = {}
    for path in paths:
        try:
            loaded[path] = load_frame(path, spec, ctx.settings.watch.max_decoded_bytes)
        except FrameError as exc:
            errors[path] = exc
    # Each file is read once: the same pixels are scored and drawn into the maps.
    frames = list(loaded.values())
    if frames and (problem := check_frames_vary(np.stack(frames), spec)):
        click.echo(f"warning: {problem}", err=True)
    detections = dict(zip(loaded, detector.score_arrays(frames) if frames else [], strict=True))
    threshold = detector.threshold if threshold is None else threshold
    # Maps are named by the frame's path under the folder holding every input, so same-named
    # frames of different folders (or suffixes) never overwrite each other's maps.
    scored_root = Path(os.path.commonpath([p.absolute().parent for p in paths]))
    rows = []
    for path in paths:
        row = {"frame": str(path), "score": None, "threshold": threshold, "verdict": "error", "error": ""}
        if path in errors:
            row["error"] = str(errors[path])
        else:
            result = detections[path]
            verdict = "anomaly" if is_anomaly(result.score, threshold) else "normal"
            row.update(score=result.score, verdict=verdict)
            if maps_dir:
                name = path.absolute().relative_to(scored_root)
                maps = map_arrays(loaded[path][None], [result])
                if (own := file_resolution(path, spec, ctx.settings.watch.max_decoded_bytes)) is not None:
                    maps = at_resolution(maps, own[None])
                written = write_maps(Path(maps_dir) / name.parent, name.name, maps)
                row["maps"] = {k: str(v) for k, v in written.items()}
        rows.append(row)
    _print_rows(rows, fmt)
    if errors:
        click.echo(f"{len(errors)} of {len(paths)} frames could not be read", err=True)
        sys.exit(1)


@main.command("sample-data")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--normal-digit", type=click.IntRange(0, 9), default=1, show_default=True)
@click.option(
    "--incoming",
    type=click.IntRange(2, 500),
    default=40,
    show_default=True,
    help="Frames to put in OUT/incoming, half normal, half other digits.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def sample_data(out: str, normal_digit: int, incoming: int, seed: int) -> None:
    """Write a small noisy-MNIST dataset (bundled digits, no download) for a first run."""
    from inspector.sample_data import write_sample_data

    try:
        counts = write_sample_data(Path(out), normal_digit, incoming, seed)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"wrote {counts['train']} normal training frames (digit {normal_digit}) to {out}/train and "
        f"{incoming} incoming frames ({counts['incoming_anomalous']} other digits, one damaged file) "
        f"to {out}/incoming"
    )


def _log_to_stderr(fmt: str = "text") -> None:
    from inspector import logs

    logs.configure("INFO", fmt)


log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as text or as JSON objects, one a line (default: log_format, text).",
)
metrics_port_option = click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Also serve this process's Prometheus metrics on this port (at metrics.host).",
)


@main.command()
@click.option("--host", default=None, help="Address to bind (default: server.host, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default: server.port, 8000).")
@log_format_option
@pass_context
def serve(ctx: Context, host: str | None, port: int | None, log_format: str | None) -> None:
    """Run the review dashboard (and the JSON API, /metrics and the probes) over the configured database."""
    import uvicorn

    from inspector.web import create_app
    from inspector.web.security import is_loopback, uvicorn_proxy_options

    settings = ctx.settings
    _database(ctx)
    fmt = log_format or settings.log_format
    _log_to_stderr(fmt)
    host, port = host or settings.server.host, port or settings.server.port
    settings.server.host = host  # beyond loopback, every page needs a login
    if not settings.server.token:
        if not is_loopback(host):
            raise click.ClickException(
                f"binding to {host} needs server.token: beyond loopback, every page needs a login"
            )
        click.echo("no server.token configured: the dashboard is read-only", err=True)
    click.echo(f"dashboard on http://{host}:{port}/")
    options = uvicorn_proxy_options(settings.server)
    if fmt == "json":
        options["log_config"] = None  # uvicorn logs through the root logger's JSON handler
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", **options)


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


# --- the pipeline: database, watcher, workers, thresholds, report -----------------------------


@main.group()
def db() -> None:
    """Database schema migrations (Alembic) for the configured database."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_context
def db_upgrade(ctx: Context, revision: str) -> None:
    """Migrate the database up to REVISION (default: the latest)."""
    from inspector.store import migrate

    migrate.upgrade(ctx.settings.db_url, revision)
    click.echo(f"database at revision {migrate.current_revision(ctx.settings.db_url)}")


@db.command("downgrade")
@click.argument("revision", default="-1")
@pass_context
def db_downgrade(ctx: Context, revision: str) -> None:
    """Migrate the database down to REVISION (default: one step; 'base' empties it)."""
    from inspector.store import migrate

    migrate.downgrade(ctx.settings.db_url, revision)
    click.echo(f"database at revision {migrate.current_revision(ctx.settings.db_url) or 'base'}")


@db.command("current")
@pass_context
def db_current(ctx: Context) -> None:
    """Show the database's schema revision and the latest one."""
    from inspector.store import migrate

    current = migrate.current_revision(ctx.settings.db_url)
    click.echo(f"current {current or 'base'} (latest {migrate.head_revision()})")


def _database(ctx: Context) -> str:
    """The database URL, its schema checked (an embedded SQLite file is brought up to date)."""
    from inspector.store.migrate import SchemaError, ensure_schema

    try:
        ensure_schema(ctx.settings.db_url)
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from exc
    return ctx.settings.db_url


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--once", is_flag=True, help="Process what is there now, then exit (cron, tests).")
@click.option("--source", default=None, help="Source/camera name of these frames (default: watch.source).")
@log_format_option
@metrics_port_option
@pass_context
def watch(
    ctx: Context,
    folder: str,
    once: bool,
    source: str | None,
    log_format: str | None,
    metrics_port: int | None,
) -> None:
    """Register frames landing in FOLDER and score them (inline) or queue them (celery).

    Beside it: a heartbeat, the alert dispatcher (alerts.dispatch_in_watcher), the retention
    policy (retention.every_minutes) and the drift monitor (drift.every_seconds; --once: at the end)."""
    import signal
    import threading
    from concurrent.futures.process import BrokenProcessPool

    from inspector.detector import CheckpointError
    from inspector.pipeline import alerts, drift, housekeeping
    from inspector.pipeline.watcher import Watcher

    settings = ctx.settings
    _database(ctx)
    _log_to_stderr(log_format or settings.log_format)
    watcher = Watcher(folder, settings, source=source)
    dispatcher = alerts.Dispatcher(settings) if settings.alerts.dispatch_in_watcher else None
    doing = f"watching {watcher.root} as {watcher.source}"
    companions = housekeeping.alongside(
        settings,
        "watcher",
        watcher.source,
        lambda: f"{doing}: {_counts(watcher.stats)}",
        metrics_port,
        pipeline_metrics=True,
        dispatcher=None if once else dispatcher,
        prune=not once,
        drift_checks=not once,
    )
    try:
        with companions:
            if once:
                watcher.run_once()
                drift.check(settings)  # before the delivery, so a drift found now is sent now
                if dispatcher is not None:
                    dispatcher.dispatch_once()
            else:
                stop = threading.Event()
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                watcher.run(stop)
    except CheckpointError as exc:
        raise click.ClickException(f"{exc} (frames stay queued for the next run)") from exc
    except BrokenProcessPool as exc:
        raise click.ClickException(
            "a scorer process died; the frames it held are scored again at the next run "
            f"(each up to watch.max_attempts = {ctx.settings.watch.max_attempts} times, then quarantined)"
        ) from exc
    except KeyboardInterrupt:
        pass
    click.echo(f"{folder}: {_counts(watcher.stats)}")


def _counts(stats: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "nothing new"


@main.command()
@click.option("--gpu", type=int, default=None, help="Use only this GPU (host index); one worker per GPU.")
@click.option("--pool", type=click.Choice(["prefork", "solo"]), default="prefork", show_default=True)
@click.option("--loglevel", default="INFO", show_default=True)
@log_format_option
@metrics_port_option
@pass_context
def worker(
    ctx: Context, gpu: int | None, pool: str, loglevel: str, log_format: str | None, metrics_port: int | None
) -> None:
    """A Celery worker on the `gpu` queue (settings.queue): one process, model loaded once, CPU fallback."""
    import os

    from inspector.pipeline.distributed import run_worker

    _database(ctx)  # its heartbeat is a row there
    if gpu is not None:  # before torch is imported, in the worker's pool process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    name = f"inspector-{'worker' if gpu is None else f'gpu{gpu}'}@%h"
    run_worker(ctx.settings, name, pool, loglevel, log_format or ctx.settings.log_format, metrics_port)


@main.group()
def threshold() -> None:
    """Per-source thresholds: each source may override its model's default."""


@threshold.command("set")
@click.argument("value", type=float)
@click.option("--source", default=None, help="Source/camera (default: watch.source).")
@click.option(
    "--model", "model_version", default=None, help="Model version (default: the source's live model)."
)
@click.option("--method", default=None, help="Scoring method (needed where the model has several).")
@click.option("--by", "who", default=None, help="Who makes the change (default: your login).")
@click.option("--reason", default=None, help="Why, for the audit trail.")
@pass_context
def threshold_set(
    ctx: Context,
    value: float,
    source: str | None,
    model_version: str | None,
    method: str | None,
    who: str | None,
    reason: str | None,
) -> None:
    """Set the threshold of a source for a model version and method (recorded in the audit trail)."""
    import getpass

    from inspector.pipeline.thresholds import ThresholdError, resolve_model, set_threshold
    from inspector.store.db import session_scope

    source = source or ctx.settings.watch.source
    try:
        with session_scope(_database(ctx)) as session:
            model = resolve_model(session, model_version, method, source)
            version, method = model.version, model.method
            change, flipped = set_threshold(
                session, source, version, method, value, who or getpass.getuser(), reason
            )
            old = f"{change.old_value:.5g}"
    except ThresholdError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{source} on {version} ({method}): {old} -> {value:.5g}; {flipped} stored verdicts changed")


@threshold.command("show")
@click.option("--model", "model_version", default=None, help="Only this model version.")
@pass_context
def threshold_show(ctx: Context, model_version: str | None) -> None:
    """Each model's (version and method) default threshold and the per-source overrides."""
    from inspector.pipeline.thresholds import ThresholdError, threshold_table
    from inspector.store.db import session_scope

    try:
        with session_scope(_database(ctx)) as session:
            views = threshold_table(session, model_version)
    except ThresholdError as exc:
        raise click.ClickException(str(exc)) from exc
    if not views:
        click.echo("no model registered yet")
    for v in views:
        who = f"  (set by {v.updated_by})" if v.updated_by else "  (model default)"
        click.echo(f"{v.model_version}  {v.method:<14}  {v.source:<16}  {v.value:.5g}{who}")


def _since(text: str | None) -> datetime.datetime | None:
    from inspector.pipeline.report import parse_since

    try:
        return None if text is None else parse_since(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc


@main.command()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="A new (or empty) folder.")
@click.option(
    "--reviewed/--all",
    default=True,
    show_default=True,
    help="Reviewed frames (reviewed since --since), or every frame scored since --since.",
)
@click.option("--since", default=None, help="2h, 30m, 7d, or UTC 2026-11-27T10:00 (default: from the start).")
@click.option("--source", default=None, help="Only this source/camera.")
@pass_context
def export(ctx: Context, out: str, reviewed: bool, since: str | None, source: str | None) -> None:
    """Write frames and a manifest (OUT/manifest.csv and .json: path, source, label, score, model
    version, reviewer, ...) from which a data set can be rebuilt and audited."""
    from inspector.pipeline.dataset import DatasetError
    from inspector.pipeline.dataset import export as write

    _database(ctx)
    try:
        done = write(ctx.settings, Path(out), _since(since), source, reviewed)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from exc
    labels = ", ".join(f"{n} {label}" for label, n in sorted(done.by_label.items())) or "none"
    click.echo(f"exported {done.written} of {done.rows} frames to {out} ({labels})")
    for line in done.missing:
        click.echo(f"not exported: {line}", err=True)


@main.command()
@click.option(
    "--from",
    "live_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The live model's checkpoint: its training frames, family and options.",
)
@click.option(
    "--out", required=True, type=click.Path(dir_okay=False), help="The candidate checkpoint to write."
)
@click.option(
    "--reviewed-from",
    "export_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="An `inspector export` folder instead of the database's reviews.",
)
@click.option("--since", default=None, help="Only reviews since then (default: all).")
@click.option("--source", default=None, help="Only reviews of this source; its live threshold is compared.")
@click.option(
    "--method",
    default=None,
    help="The candidate's scoring method, compared with the live model's at it (default: the family's "
    "method that ranks the held-out reviewed frames best, where it beats the live model's by more "
    "than one standard error; else the live model's).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Default: as the live model trained."
)
@pass_context
def retrain(
    ctx: Context,
    live_path: str,
    out: str,
    export_dir: str | None,
    since: str | None,
    source: str | None,
    method: str | None,
    epochs: int | None,
) -> None:
    """Train a candidate on the live model's normal frames plus frames reviewed as normal (never
    those reviewed as anomalies), and compare it with the live model on held-out reviewed frames."""
    from tqdm import tqdm

    from inspector.detector import Checkpoint, CheckpointError
    from inspector.pipeline import dataset
    from inspector.pipeline.retrain import RetrainError
    from inspector.pipeline.retrain import retrain as fit
    from inspector.pipeline.thresholds import ThresholdError, effective_threshold
    from inspector.store.db import session_scope
    from inspector.training import TrainingError

    settings = ctx.settings
    _database(ctx)
    try:
        if export_dir is not None:
            reviewed = dataset.read_manifest(Path(export_dir))
        else:
            reviewed = dataset.from_database(settings, _since(since), source)
        live = Checkpoint.load(live_path)
        threshold = None  # where the live model scores, its threshold there
        with session_scope(settings.db_url) as session:
            try:
                threshold = effective_threshold(session, live.version, method or live.default_method, source)
            except ThresholdError:
                pass
        total = epochs or live.metadata.get("options", {}).get("epochs", 0)
        with tqdm(total=total, unit="epoch", file=sys.stderr) as bar:
            report = fit(
                settings,
                Path(live_path),
                Path(out),
                reviewed,
                method=method,
                live_threshold=threshold,
                epochs=epochs,
                progress=lambda *_: bar.update(1),
            )
    except (dataset.DatasetError, RetrainError, CheckpointError, TrainingError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {out}")
    click.echo("\n".join(report.lines()))
    click.echo(f"try it beside the live model: inspector model register {out}")


@main.group()
def model() -> None:
    """The model registry: each source's live model, the candidate scored beside it, retired ones."""


source_option = click.option(
    "--source", default=None, help="Source/camera, or * for every source (default: watch.source)."
)
who_options = [
    click.option("--by", "who", default=None, help="Who makes the change (default: your login)."),
    click.option("--reason", default=None, help="Why, for the audit trail."),
]


def _with_who(command: F) -> F:
    for option in reversed(who_options):
        command = option(command)
    return command


def _registry_change(ctx: Context, change: Callable[[Session], ModelChange | Promotion]) -> None:
    """Run a registry change in one transaction and say what it did (a promotion: also the
    promoted model's thresholds); its errors are the user's."""
    from inspector.pipeline.registry import Promotion, RegistryError
    from inspector.store.db import session_scope

    try:
        with session_scope(_database(ctx)) as session:
            done = change(session)
            if isinstance(done, Promotion):
                click.echo("\n".join([_change_text(done.change), *done.lines()]))
            else:
                click.echo(_change_text(done))
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc


def _model_name(version: str | None, method: str | None) -> str:
    return "the configured model (model_path)" if version is None else f"{version} ({method})"


def _change_text(change: ModelChange) -> str:
    subject = _model_name(change.model_version, change.method)
    text = f"{change.source}: {change.action} {subject} -> {change.role}"
    if change.action in ("promote", "rollback"):
        text += f" (live before: {_model_name(change.previous_version, change.previous_method)})"
    return text


def _user(who: str | None) -> str:
    import getpass

    return who or getpass.getuser()


@model.command("compare")
@source_option
@click.option(
    "--last", type=click.IntRange(min=1), default=500, show_default=True, help="Recent frames compared."
)
@pass_context
def model_compare(ctx: Context, source: str | None, last: int) -> None:
    """Live against candidate on the frames both scored: on reviewed ones, ROC-AUC and false alarms
    and misses at matched recall; on the last N, flag counts and the frames where they disagree."""
    from inspector.pipeline.compare import compare
    from inspector.pipeline.registry import RegistryError
    from inspector.pipeline.thresholds import ThresholdError
    from inspector.store.db import session_scope

    try:
        with session_scope(_database(ctx)) as session:
            result = compare(session, source or ctx.settings.watch.source, last)
    except (RegistryError, ThresholdError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("\n".join(result.lines(ctx.settings.dashboard_url)))


@model.command("list")
@click.option("--source", default=None, help="Only this source (and *).")
@pass_context
def model_list(ctx: Context, source: str | None) -> None:
    """Each source's models by role, and the latest registry changes."""
    from inspector.store import registry
    from inspector.store.db import session_scope

    with session_scope(_database(ctx)) as session:
        rows = registry.assignments(session, source)
        changes = registry.changes(session, source)
    if not rows:
        click.echo(f"no model registered: every source is scored by {ctx.settings.model_path} (model_path)")
    for row in rows:
        click.echo(f"{row.source:<16} {row.role:<10} {row.version}  {row.method:<14} {row.path}")
    if changes:
        click.echo("\nchanges (newest first):")
    for change in changes:
        reason = f": {change.reason}" if change.reason else ""
        click.echo(
            f"  {change.changed_at:%Y-%m-%d %H:%M:%S}  {change.changed_by:<12} {_change_text(change)}{reason}"
        )


@model.command("register")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@source_option
@click.option("--method", default=None, help="Scoring method (default: the model's recommended one).")
@click.option("--live", is_flag=True, help="Make it the live model at once (a promotion), not a candidate.")
@_with_who
@pass_context
def model_register(
    ctx: Context,
    path: str,
    source: str | None,
    method: str | None,
    live: bool,
    who: str | None,
    reason: str | None,
) -> None:
    """Register a checkpoint as a source's candidate: it scores beside the live model, in shadow."""
    from inspector.detector import CheckpointError, Detector
    from inspector.pipeline import registry

    try:
        detector = Detector.load(path, method=method, device="cpu")
    except (CheckpointError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    where = source or ctx.settings.watch.source
    _registry_change(
        ctx, lambda session: registry.register_file(session, detector, path, where, _user(who), reason, live)
    )


@model.command("promote")
@click.argument("version", required=False)
@source_option
@click.option("--method", default=None, help="Scoring method (needed where the version has several).")
@click.option(
    "--threshold",
    type=click.Choice(["carry-over", "keep"]),
    default="carry-over",
    show_default=True,
    help="carry-over: judge the promoted model at the live model's operating point (its recall on "
    "reviewed anomalies both scored, else its flag rate on recent frames both scored); keep: at its "
    "own threshold (its checkpoint's default unless one was set).",
)
@_with_who
@pass_context
def model_promote(
    ctx: Context,
    version: str | None,
    source: str | None,
    method: str | None,
    threshold: str,
    who: str | None,
    reason: str | None,
) -> None:
    """Make VERSION (default: the source's candidate) the live model; the live one is retired, its
    thresholds untouched. Scorers take it up within registry.poll_seconds, without a restart."""
    from inspector.pipeline import registry

    where = source or ctx.settings.watch.source
    carry = registry.THRESHOLD_CHOICES[threshold]
    _registry_change(
        ctx,
        lambda session: registry.promote(
            session, where, version, method, who=_user(who), reason=reason, carry=carry
        ),
    )


@model.command("rollback")
@source_option
@_with_who
@pass_context
def model_rollback(ctx: Context, source: str | None, who: str | None, reason: str | None) -> None:
    """Undo the promotion of the source's live model: the one live before is live again."""
    from inspector.pipeline import registry

    where = source or ctx.settings.watch.source
    _registry_change(ctx, lambda session: registry.rollback(session, where, _user(who), reason))


@model.command("retire")
@click.argument("version")
@source_option
@click.option("--method", default=None, help="Scoring method (needed where the version has several).")
@_with_who
@pass_context
def model_retire(
    ctx: Context, version: str, source: str | None, method: str | None, who: str | None, reason: str | None
) -> None:
    """Stop scoring a candidate beside the live model (it stays registered, for the record)."""
    from inspector.pipeline import registry

    where = source or ctx.settings.watch.source
    _registry_change(
        ctx, lambda session: registry.retire(session, where, version, method, _user(who), reason)
    )


@main.command()
@click.option("--since", default="24h", show_default=True, help="2h, 30m, 1d, or UTC 2026-11-27T10:00.")
@click.option("--flagged", is_flag=True, help="Only frames judged anomalous (the summary covers all).")
@click.option("--source", default=None, help="Only this source/camera.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many rows.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@pass_context
def report(ctx: Context, since: str, flagged: bool, source: str | None, limit: int | None, fmt: str) -> None:
    """Results since a time, frame by frame, with a summary (frames, flagged, rate, percentiles)."""
    from inspector.pipeline.report import build_report, parse_since, render, summary_line
    from inspector.store.db import session_scope

    try:
        start = parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    with session_scope(_database(ctx)) as session:
        result = build_report(
            session, ctx.settings.data_path, start, flagged=flagged, source=source, limit=limit
        )
    click.echo(render(result, fmt))
    if fmt == "csv":
        click.echo(summary_line(result.summary), err=True)


@main.group()
def quarantine() -> None:
    """Frames set aside with their reason: list them, and retry those worth another try."""


@quarantine.command("list")
@click.option("--since", default="7d", show_default=True, help="2h, 30m, 1d, or UTC 2026-11-27T10:00.")
@click.option("--source", default=None, help="Only this source/camera.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@pass_context
def quarantine_list(ctx: Context, since: str, source: str | None, fmt: str) -> None:
    """Quarantined frames: when, the file where it lies now, where it landed, and why."""
    from inspector.pipeline.quarantine import Quarantined, quarantined
    from inspector.pipeline.report import parse_since

    _database(ctx)
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from exc
    found = quarantined(ctx.settings, start, source)
    rows = [
        dataclasses.asdict(q) | {"quarantined_at": f"{q.quarantined_at:%Y-%m-%dT%H:%M:%S}Z"} for q in found
    ]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if fmt == "csv":
        fields = [field.name for field in dataclasses.fields(Quarantined)]
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    for row in rows:
        click.echo(f"{row['frame_id']:>7}  {row['quarantined_at']}  {row['source']:<12.12}  {row['file']}")
        click.echo(f"         landed as {row['path']}: {row['reason']}")
    click.echo(f"{len(rows)} quarantined frames since {start:%Y-%m-%d %H:%M} UTC")


@quarantine.command("retry")
@click.argument("frame_ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every frame quarantined within --since.")
@click.option("--since", default="7d", show_default=True, help="With --all: quarantined since.")
@pass_context
def quarantine_retry(ctx: Context, frame_ids: tuple[int, ...], every: bool, since: str) -> None:
    """Put quarantined frames back where they landed, pending: the watcher scores them at its next
    rescan (or start). Their attempts are forgotten; a damaged file comes back with its reason."""
    from inspector.pipeline.quarantine import quarantined, retry
    from inspector.pipeline.report import parse_since

    _database(ctx)
    if every:
        frame_ids += tuple(q.frame_id for q in quarantined(ctx.settings, parse_since(since)))
    if not frame_ids:
        raise click.UsageError("name the frames to retry (ids from `inspector quarantine list`), or --all")
    outcome = retry(ctx.settings, list(dict.fromkeys(frame_ids)))
    for frame_id, what in outcome.items():
        click.echo(f"{frame_id:>7}  {what}")
    pending = sum(what == "pending" for what in outcome.values())
    click.echo(
        f"{pending} of {len(outcome)} frames pending again: the watcher scores them at its next rescan"
    )
    if pending < len(outcome):
        sys.exit(1)


def bench_module(name: str) -> ModuleType:
    """A benchmark of the source checkout's bench package, which the installed product does not
    ship: the checkout's root goes on the import path, as for ``python -m bench.<name>``."""
    if not (CHECKOUT / "bench" / "__init__.py").is_file():
        raise click.ClickException(f"benchmarks run from a source checkout; {CHECKOUT / 'bench'} is missing")
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    return importlib.import_module(f"bench.{name}")


@main.group()
def bench() -> None:
    """Reproduce the published benchmarks (writes bench/results/)."""


@bench.command("magnetic-tile")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="The magnetic-tile folder (MT_* inside).",
)
@click.option("--quick", is_flag=True, help="Tiny models, one epoch: a smoke run.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="Torch threads.")
@click.option("--families", default="vaegan-z,vae,anogan", show_default=True, help="Model families to run.")
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Results folder (default bench/results)."
)
@click.option(
    "--device", default="cpu", show_default=True, help="Where models train and score: cpu, cuda, auto."
)
def bench_magnetic_tile(
    data: str, quick: bool, threads: int, families: str, out: str | None, device: str
) -> None:
    """Image and pixel ROC-AUC on the magnetic-tile surface defects (fixed protocol split)."""
    module = bench_module("magnetic_tile")
    budget = module.Budget.quick() if quick else module.Budget()
    chosen = families.split(",")
    unknown = set(chosen) - set(budget.model)
    if unknown:
        raise click.ClickException(f"unknown families {sorted(unknown)}; choose from {sorted(budget.model)}")
    name = "magnetic_tile_quick" if quick else "magnetic_tile"
    command = shlex.join(["inspector", *sys.argv[1:]])
    results = Path(out) if out else module.RESULTS
    click.echo(module.run_benchmark(data, budget, chosen, threads, results, name, command, device))


@bench.command("paper", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def bench_paper(ctx: click.Context) -> None:
    """The paper's Table 1 on noisy MNIST, resumable; takes the arguments of ``python -m
    bench.paper_table`` (--data, --shard i/n, --job DIGIT SEED METHOD, --status, --device).
    The table and figures: ``python -m bench.paper_report``."""
    bench_module("paper_table").main(ctx.args)


# --- operations: status, prune, alerts ------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object (what /api/v1/status returns).")
@click.option(
    "--process",
    "kind",
    type=click.Choice(["watcher", "worker", "dispatcher"]),
    default=None,
    help="Only ask whether a process of this kind beats (a container's healthcheck).",
)
@click.option("--host", default=None, help='With --process: on this host (e.g. "$HOSTNAME").')
@pass_context
def status(ctx: Context, as_json: bool, kind: str | None, host: str | None) -> None:
    """Is the pipeline well: its processes, backlogs and schema. Exits 1 when a watcher or worker is
    down, the oldest frame or alert waits longer than health.max_backlog_seconds, or the schema lags."""
    from inspector import health

    report = health.summary(ctx.settings)
    if kind is not None:
        mine = [p for p in report.processes if p.kind == kind and (host is None or p.host == host)]
        alive = [p for p in mine if p.state == "up"]
        where = f" on {host}" if host else ""
        report.problems = [] if alive else [f"no {kind} beats{where}"]
    if as_json:
        click.echo(json.dumps(report.as_dict(), default=str, indent=2))
    else:
        click.echo(_status_text(report))
    sys.exit(0 if report.ok else 1)


def _status_text(report: health.HealthReport) -> str:
    from inspector.health import ago

    lines = [f"schema     {report.schema or 'none'} (code expects {report.schema_expected})"]
    for p in report.processes:
        lines.append(
            f"{p.kind:<10} {p.state:<8} {p.name}  {p.host}:{p.pid}  beat {ago(p.beat_age)} ago  {p.doing}"
        )
    if not report.processes:
        lines.append("processes  none has beaten yet")
    backlog, alerts = report.backlog, report.alerts
    counts = ", ".join(f"{n} {status}" for status, n in backlog.by_status.items())
    lines.append(f"backlog    {counts}; oldest {ago(backlog.oldest_seconds)}")
    lines.append(f"alerts     {alerts.total} undelivered, oldest {ago(alerts.oldest_seconds)}")
    lines.append(f"review     {report.to_review} flagged frames without a review")
    model = report.model
    lines.append(
        f"model      {model.version} ({model.method})" if model else "model      none registered yet"
    )
    lines.append("ok" if report.ok else "problems:\n" + "\n".join(f"  - {p}" for p in report.problems))
    return "\n".join(lines)


@main.command("drift")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per source.")
@pass_context
def drift_command(ctx: Context, as_json: bool) -> None:
    """Check now whether each source's latest scores still look like its live model's held-out normal
    frames, and its frames' levels like its training frames' (drift.*), record it (banner, metric,
    alert) and print it. Exits 1 while a source drifts."""
    from inspector.pipeline import drift

    _database(ctx)
    states = drift.check(ctx.settings)
    rows = [
        {
            "source": s.source,
            "watched": s.watched,
            "model_version": s.model_version,
            "method": s.method,
            "drifting": s.drifting,
            "statistic": s.statistic,
            "p_value": s.p_value,
            "frames": s.frames,
            "since": s.since,
            "note": s.note,
        }
        for s in states
    ]
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
    for s in [] if as_json else states:
        if s.statistic is None:
            click.echo(f"{s.source:<16} {s.watched:<6} not tested: {s.note}")
            continue
        state = f"DRIFTING since {s.since:%Y-%m-%d %H:%M} UTC" if s.drifting else "ok"
        click.echo(
            f"{s.source:<16} {s.watched:<6} {state}: latest {s.frames} {s.values} of {s.model_version} "
            f"against its {s.reference}: KS D {s.statistic:.3f}, p {s.p_value:.2g}"
        )
    if not rows and not as_json:
        click.echo("no source has live results yet")
    sys.exit(1 if any(row["drifting"] for row in rows) else 0)


@main.command()
@click.option("--apply", "do_apply", is_flag=True, help="Delete; without it, only say what would go.")
@pass_context
def prune(ctx: Context, do_apply: bool) -> None:
    """Apply the retention policy (retention.*): archive files and maps of old frames that are
    neither flagged nor reviewed nor in the kept sample. A dry run unless --apply."""
    from inspector.pipeline import retention

    settings = ctx.settings
    _database(ctx)
    policy = settings.retention
    if not (policy.max_age_days > 0 or policy.max_gb > 0):
        click.echo("no retention limit set (retention.max_age_days, retention.max_gb): nothing to prune")
    chosen = retention.plan(settings)
    held = chosen.stored_files + chosen.stored_maps
    verb = "pruned" if do_apply else "would prune"
    click.echo(
        f"held now: {_mb(chosen.stored_files)} of archive files, {_mb(chosen.stored_maps)} of maps "
        f"({_mb(held)}); {chosen.kept} frames kept by the policy (flagged, reviewed, sampled)"
    )
    click.echo(
        f"{verb} {len(chosen.frames)} frames ({chosen.by_age} by age, {chosen.by_size} by size): "
        f"{_mb(chosen.file_bytes)} of archive files, {_mb(chosen.map_bytes)} of maps; "
        f"{len(chosen.duplicates)} duplicate files ({_mb(chosen.duplicate_bytes)})"
    )
    if do_apply:
        done = retention.apply(settings, chosen)
        click.echo(
            f"done in {done.seconds:.1f} s: {done.frames} frames, {done.files} files, "
            f"{done.duplicates} duplicates, {done.alerts} delivered alerts forgotten"
        )
    elif chosen.frames or chosen.duplicates:
        click.echo("dry run: nothing deleted (use --apply)")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@main.group()
def alerts() -> None:
    """Alerts on flagged frames (webhook, MQTT): see alerts.* in the config."""


@alerts.command("dispatch")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@log_format_option
@metrics_port_option
@pass_context
def alerts_dispatch(ctx: Context, once: bool, log_format: str | None, metrics_port: int | None) -> None:
    """Deliver queued alerts (instead of, or beside, the watchers: alerts.dispatch_in_watcher)."""
    import signal
    import threading

    from inspector.pipeline import housekeeping
    from inspector.pipeline.alerts import Dispatcher

    settings = ctx.settings
    _database(ctx)
    _log_to_stderr(log_format or settings.log_format)
    if not settings.alerts.channels:
        raise click.ClickException("no alert channel configured (alerts.webhook_url, alerts.mqtt_host)")
    dispatcher = Dispatcher(settings)
    if once:
        click.echo(f"{dispatcher.dispatch_once()} messages delivered")
        dispatcher.close()
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def doing() -> str:
        return f"delivering {'+'.join(settings.alerts.channels)}: {dispatcher.delivered} messages"

    with housekeeping.alongside(settings, "dispatcher", "alerts", doing, metrics_port):
        try:
            dispatcher.run(stop)
        except KeyboardInterrupt:
            pass
