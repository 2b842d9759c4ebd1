"""One settings object for every face of inspector (CLI, watcher, workers, dashboard).

Settings come from, in rising priority: the defaults below (the embedded mode), a YAML
file (``--config`` or ``INSPECTOR_CONFIG``), then ``INSPECTOR_*`` environment variables.
Nested keys use a double underscore: ``INSPECTOR_WATCH__RESCAN_SECONDS=10``; a list takes
comma-separated items or a YAML list: ``INSPECTOR_WATCH__IGNORE='*.txt,*.json'``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "INSPECTOR_"
MAX_DECODED_BYTES = 256 << 20  # the default limit of a frame's decoded pixels (watch.max_decoded_bytes)


class ConfigError(ValueError):
    """A settings file or variable that cannot be used."""


MODES = ("grey", "colour", "depth")  # what a frame is
# A setting for training only (the default there): grey or colour, by what the training files
# hold (``frames.detect_mode``); a checkpoint always keeps one of MODES.
AUTO = "auto"


DEFAULT_RANGE_MM = (0.0, 1500.0)  # a depth frame's working range where none was set or measured


@dataclass
class FrameSpec:
    """How a file on disk becomes a model input: the one definition of "a frame"."""

    mode: str = "grey"  # grey | colour | depth (settings: auto, the default, as well)
    image_size: int = 84  # the model input's rows, and its columns unless ``width`` is set
    width: int = 0  # the model input's columns (0 = image_size: square); keeps elongated frames' aspect
    depth_unit_mm: float = 1.0  # millimetres per raw depth unit (SR305: 0.125)
    # Working range in mm; outside is clipped. None: training sets it from its frames' depths
    # (``frames.measured_depth_range``), so any sensor's unit and any distance work untold; a frame read
    # with no training behind it uses DEFAULT_RANGE_MM.
    near_mm: float | None = None
    far_mm: float | None = None
    fill_holes: bool = False  # inpaint zero-depth pixels instead of leaving them at "far"
    roi: tuple[int, int, int, int] | None = None  # x, y, width, height crop before resizing
    # Flat-field: divide a grey/colour frame by its own blur of this σ (model pixels; 0 = off),
    # so uneven lighting is gone and what is left is the surface's local contrast.
    flatten: float = 0.0
    # Levels of 8- or 16-bit grey or colour files read as black and white, on the 16-bit scale (an
    # 8-bit level counts 65535/255; None: each type's full scale). Training sets them from its files
    # (``frames.measured_raw_range``): a 12-bit camera's frames, depth maps read as grey or an 8-bit
    # camera's dim frames fill a sliver of their scale, too dark to find an object in.
    raw_range: tuple[float, float] | None = None
    max_pixels: int = 50_000_000  # refuse larger images (decompression bombs)

    @property
    def channels(self) -> int:
        return 3 if self.mode == "colour" else 1

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of a model input."""
        return self.image_size, self.width or self.image_size

    @property
    def depth_range(self) -> tuple[float, float]:
        """(near, far) mm of the working range, DEFAULT_RANGE_MM's where not set."""
        near, far = DEFAULT_RANGE_MM
        return (near if self.near_mm is None else self.near_mm, far if self.far_mm is None else self.far_mm)


@dataclass
class WatchSettings:
    rescan_seconds: float = 30.0
    settle_seconds: float = 0.5  # a file must keep its size and mtime this long
    # A file closed after writing or renamed into the folder is complete: read it at once.
    # Off for writers that close and reopen a file while writing it: every file then settles.
    ready_on_close: bool = True
    source: str = "default"  # source/camera name given to frames of this watcher
    archive: bool = True  # move a frame to the archive once its result is stored
    batch_size: int = 32  # frames claimed, scored and committed together
    scorers: int = 1  # inline: scorers pulling batches side by side; more than 1 = processes (one per core)
    # An embedded scorer waits at most this long for a forward pass's worth of frames
    # (inference_batch) before it scores fewer: a pass over a few frames costs the model up to
    # twice the CPU a frame of a full one.
    gather_seconds: float = 0.1
    stale_seconds: float = 600.0  # a frame queued this long (its message lost somehow) is sent again
    # Distributed: a worker renews the claim on the frames it scores every third of this; a claim
    # not renewed this long (its worker died with its host) is handed out again by the watcher,
    # which looks for such claims, and for a broker that restarted, as often as this.
    claim_lease_seconds: float = 10.0
    max_attempts: int = 3  # a frame that lost its worker this often is quarantined
    # A frame that cannot be read is quarantined only once its file has not changed for this
    # long (and no process holds it open for writing): until then its writer may only have
    # paused, and it is handed back to be read again.
    quiet_seconds: float = 10.0
    # File names (glob patterns, any case) the watcher leaves alone: a camera's sidecar files.
    ignore: tuple[str, ...] = ("*.txt", "*.json", "*.csv", "*.xml", "*.md", "*.error.txt")
    # A frame whose pixels would take more bytes once decoded (width x height x channels x bytes
    # per sample, read from its header first) is refused: a small file cannot cost gigabytes.
    max_decoded_bytes: int = MAX_DECODED_BYTES


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str = ""  # reviewers log in with it; empty = writes refused
    # Signs session cookies; empty: a random key made once and kept in data_dir (session.key).
    secret: str = ""
    # Proxies whose X-Forwarded-For names the client (addresses or networks); none by default,
    # so a client can never choose the address the login throttle counts its tries under.
    trusted_proxies: tuple[str, ...] = ()


@dataclass
class MetricsSettings:
    """Prometheus metrics: each long-running command (and its scorer or Celery child processes)
    writes its counters under ``dir``; the dashboard's /metrics adds up every process there."""

    enabled: bool = True
    dir: str = ""  # empty: <data_dir>/metrics (a folder of its own per process group inside)
    host: str = "127.0.0.1"  # where --metrics-port listens (0.0.0.0 in a container)
    stale_seconds: float = 3600.0  # a process group on another host silent this long is forgotten
    # Upper bounds of the score histogram's buckets (scores are the model's own units).
    score_buckets: tuple[float, ...] = (
        0.001,
        0.002,
        0.005,
        0.01,
        0.02,
        0.05,
        0.1,
        0.2,
        0.5,
        1,
        2,
        5,
        10,
        20,
        50,
        100,
    )


@dataclass
class HealthSettings:
    heartbeat_seconds: float = 10.0  # watchers, workers and dispatchers record that they live this often
    down_after_seconds: float = 60.0  # a process whose last beat is older (and that did not stop) is down
    max_backlog_seconds: float = 300.0  # `inspector status` fails when a frame or alert waits longer
    require_watcher: bool = False  # /readyz and `inspector status` also need a live watcher


@dataclass
class AlertSettings:
    """Messages about flagged frames; a channel is on when its address is set."""

    public_url: str = ""  # the dashboard as receivers reach it, for links (e.g. https://inspect.example)
    webhook_url: str = ""  # POST a JSON body here
    webhook_secret: str = ""  # HMAC-SHA256 key of the X-Inspector-Signature header
    webhook_timeout: float = 5.0
    mqtt_host: str = ""  # publish to this broker
    mqtt_port: int = 1883
    mqtt_topic: str = "inspector/flagged"  # + /<source>
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_tls: bool = False
    cooldown_seconds: float = (
        60.0  # per source and channel: after a message, later flags wait and go as one digest
    )
    digest_items: int = 10  # frames listed in a digest (highest scores); the count covers all
    retry_seconds: float = 2.0  # first back-off after a failed delivery, doubling each time
    max_retry_seconds: float = 300.0
    poll_seconds: float = 0.5  # how often the dispatcher looks for new flags
    dispatch_in_watcher: bool = True  # `inspector watch` delivers them; off: run `inspector alerts dispatch`

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(name for name, on in (("webhook", self.webhook_url), ("mqtt", self.mqtt_host)) if on)


@dataclass
class RetentionSettings:
    """What `inspector prune` deletes: archive files and stored maps (frame and result rows stay)."""

    max_age_days: float = 0.0  # prune frames that landed longer ago (0: no age limit)
    max_gb: float = 0.0  # and the oldest beyond this total of archive files and maps (0: no limit)
    keep_flagged: bool = True  # frames any model flagged keep their file and maps
    keep_reviewed: bool = True  # and so do frames an operator labelled
    keep_normal_fraction: float = 0.01  # a fixed sample of the others (chosen by content hash)
    every_minutes: float = 0.0  # `inspector watch` applies the policy this often (0: only `inspector prune`)
    alerts_days: float = 7.0  # delivered alerts are forgotten after this


@dataclass
class RegistrySettings:
    """The model registry (`inspector model ...`): each source's live model and its candidate."""

    # Scorers (the watcher's, Celery workers) read the registry again this often, so a promotion
    # or rollback reaches them without a restart.
    poll_seconds: float = 5.0


@dataclass
class DriftSettings:
    """The drift alarm: per source, the live model's latest scores against the scores of its
    held-out normal frames, and the same frames' levels (means before flat-fielding) against its
    training frames' (both recorded in its checkpoint), each by a two-sample Kolmogorov-Smirnov
    test with these settings; scores above the threshold count as the threshold on both sides (a
    real defect moves the test by its share of the window at most, and a drift that flags
    everything still shows). pipeline/drift.py says why both."""

    enabled: bool = True
    window: int = 200  # the source's latest results tested
    min_frames: int = 100  # fewer results than this (since the live model changed): not tested
    alpha: float = 1e-4  # the window differs when the test's p-value is below this...
    min_effect: float = 0.3  # ...and the distance between the two distributions (KS D) is at least this
    clear_alpha: float = 0.01  # a drifting quantity is clear again once the p-value is above this
    every_seconds: float = 60.0  # how often the watcher checks every source


@dataclass
class ApiSettings:
    # JSON API reads and /metrics, as "Authorization: Bearer ...": like the pages, open on loopback
    # and beyond it a token (this or server.token); set, this token is needed on loopback too.
    # Writes always need server.token.
    read_token: str = ""


@dataclass
class Settings:
    database_url: str = ""  # empty: SQLite file inside data_dir
    data_dir: str = "inspector-data"  # archive/, quarantine/ (and the SQLite database by default)
    executor: str = "inline"  # inline | celery
    broker_url: str = "redis://127.0.0.1:6379/0"
    queue: str = "gpu"  # the Celery queue the watcher sends batches to and workers consume
    model_path: str = "model.pt"
    method: str = ""  # scoring method; empty = the one training chose, else the family's
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    inference_batch: int = 0  # frames per forward pass; 0 = by device: 16 on a CPU, 256 on a GPU
    # Torch threads of a process that scores; 0: torch's own choice (every core), except the
    # embedded scorer processes (cores ÷ watch.scorers). Several Celery workers on one machine's
    # CPU: cores ÷ workers, or each one's threads wait for the others' at every operation.
    torch_threads: int = 0
    frames: FrameSpec = field(default_factory=lambda: FrameSpec(mode=AUTO))
    watch: WatchSettings = field(default_factory=WatchSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    log_format: str = "text"  # text | json (one object per line) for long-running commands
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    drift: DriftSettings = field(default_factory=DriftSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def dashboard_url(self) -> str:
        """The dashboard as others reach it, for links: alerts.public_url, else where it listens."""
        return (self.alerts.public_url or f"http://{self.server.host}:{self.server.port}").rstrip("/")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_path / 'inspector.db').resolve()}"


def _coerce(value: str, current: Any) -> Any:
    """Parse an environment string into the type of the field it overrides."""
    if isinstance(current, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"not a boolean: {value!r}")
    if isinstance(current, int):
        return int(value)
    if isinstance(current, float):
        return float(value)
    if isinstance(current, tuple) and not value.lstrip().startswith("["):
        return tuple(item.strip() for item in value.split(",") if item.strip())  # a,b,c
    if current is None or isinstance(current, tuple):
        parsed = yaml.safe_load(value)
        return tuple(parsed) if isinstance(parsed, list) else parsed
    return value


def _apply(obj: Any, data: dict[str, Any], where: str) -> None:
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown setting {key!r} (known: {sorted(names)})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {key} must be a mapping")
            _apply(current, value, f"{where}.{key}")
        else:
            if isinstance(value, list):
                value = tuple(value)
            setattr(obj, key, value)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def _apply_env(obj: Any, tree: dict[str, Any], where: str) -> None:
    for key, value in tree.items():
        if not hasattr(obj, key):
            raise ConfigError(f"environment: unknown setting {where}{key}")
        current = getattr(obj, key)
        if isinstance(value, dict):
            _apply_env(current, value, f"{where}{key}.")
        else:
            try:
                setattr(obj, key, _coerce(value, current))
            except ValueError as exc:
                raise ConfigError(f"environment: {where}{key}: {exc}") from exc


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Build the settings: defaults, then the YAML file, then the environment."""
    environ = dict(os.environ if environ is None else environ)
    settings = Settings()
    path = path or environ.get(ENV_PREFIX + "CONFIG")
    if path:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}")
        data = yaml.safe_load(file.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: expected a mapping at the top level")
        _apply(settings, data, str(file))
    _apply_env(settings, _env_overrides(environ), "")
    if settings.executor not in ("inline", "celery"):
        raise ConfigError(f"executor must be 'inline' or 'celery', not {settings.executor!r}")
    if settings.frames.mode not in (AUTO, *MODES):
        raise ConfigError(f"frames.mode must be auto, grey, colour or depth, not {settings.frames.mode!r}")
    if settings.log_format not in ("text", "json"):
        raise ConfigError(f"log_format must be 'text' or 'json', not {settings.log_format!r}")
    return settings
