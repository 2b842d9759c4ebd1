"""The drift alarm on magnetic tile: does it fire when the camera's frames change, and never when
they do not? ``python -m bench.drift --data DIR``.

The model: the published magnetic-tile budget's vaegan-z (bench/magnetic_tile.py), trained on the
634 train-normal frames; its checkpoint records the scores of its held-out normal frames (10%)
and the levels of all its training frames (each frame's mean before flat-fielding), the two
references. The tests are the product's (``inspector.pipeline.drift``: ``judge_scores`` on the
scores, ``judge`` on the levels) with the default settings (``drift.*``: a window of the latest
200 frames, p < 1e-4 and KS distance ≥ 0.3), run after every frame: the strictest schedule (the
watcher checks every ``drift.every_seconds``, so a real alarm comes up to that much later). The
source drifts when either quantity does: that is the alarm. The same streams are also tested
with windows of 100 and 400, for the trade-off.

Streams, each frame a random test-normal image (the protocol's 318, seen by no training) with a
camera's ordinary variation (a ±1-pixel jitter, a ±2% exposure gain, sensor noise of σ 1% of
full scale), and at a rate of 2% a random defect image instead (real defects are not drift):
- **unshifted**: 10 000 frames, ordinary noise and all: the alarm must never fire;
- **shifted**: 200 unshifted frames (a full window), then the shift, up to 600 shifted frames;
  repeated with 5 seeds. The shifts, applied to the camera's raw image before preprocessing:
  brightness (+40 grey levels, glare), blur (Gaussian, σ of 2 model pixels: defocus) and a camera
  moved by 5 model pixels (the edge replicated), which must trip it; and beside them heavier
  noise (σ 5% of full scale: a failing sensor), a lamp that dies (×0.25) and a lamp 20% dimmer
  (a pure gain, which flat-fielding removes: the model cannot see it, and its scores do not
  move; its level does, by 20%). Plain noise as the issue names it is the ordinary noise
  every frame carries: it must not trip the alarm, and the unshifted stream is that test.

The peer, on the same scores: a flag-rate alarm (the window's flagged share against the 1% the
threshold lets through on held-out normals, binomial tail p < 1e-4), what a monitor of the
alerts alone would do. Results: bench/results/drift.md (and .json); the trained model and
every stream's scores are kept in ``--work`` (a rerun reuses them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from bench.magnetic_tile import Budget, protocol_split
from bench.provenance import git_commit, write_report

if TYPE_CHECKING:
    from inspector.frames import Prepared

RESULTS = Path(__file__).resolve().parent / "results"
UNSHIFTED = 10_000
WARM_UP = 200  # unshifted frames before a shift starts (a full window)
SHIFTED = 600
WINDOWS = (100, 400)  # other windows tested on the same scores, for the trade-off
SEEDS = 5
DEFECT_RATE = 0.02
METHOD = "vaegan-attn-z"

Raw = np.ndarray  # a decoded grey image, float32 in [0, 255]


def _model_px(raw: Raw) -> float:
    return raw.shape[1] / 128.0  # raw pixels per model pixel (width)


def brightness(raw: Raw) -> Raw:
    return raw + 40.0


def blur(raw: Raw) -> Raw:
    return cv2.GaussianBlur(raw, (0, 0), 2.0 * _model_px(raw))


def moved(raw: Raw) -> Raw:
    """The camera knocked 5 model pixels to the right (and down): the scene moves the other way."""
    shift = round(5 * _model_px(raw))
    padded = cv2.copyMakeBorder(raw, shift, 0, shift, 0, cv2.BORDER_REPLICATE)
    return padded[: raw.shape[0], : raw.shape[1]]


def noise(raw: Raw, rng: np.random.Generator) -> Raw:
    return raw + rng.normal(0, 0.05 * 255, raw.shape)


SHIFTS: dict[str, Callable[[Raw, np.random.Generator], Raw]] = {
    "brightness +40": lambda raw, rng: brightness(raw),
    "blur σ 2 px": lambda raw, rng: blur(raw),
    "camera moved 5 px": lambda raw, rng: moved(raw),
    "noise σ 5%": noise,
    "lamp dies ×0.25": lambda raw, rng: raw * 0.25,
    "lamp dimmer ×0.8 (flat-fielded away)": lambda raw, rng: raw * 0.8,
}
MUST_FIRE = ("brightness +40", "blur σ 2 px", "camera moved 5 px")


def ordinary(raw: Raw, rng: np.random.Generator) -> Raw:
    """A camera's everyday variation: a pixel of jitter, ±2% exposure, 1% sensor noise."""
    dx, dy = rng.integers(-1, 2, 2) * max(1, round(_model_px(raw)))
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    raw = cv2.warpAffine(raw, matrix, (raw.shape[1], raw.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    return raw * (1 + rng.uniform(-0.02, 0.02)) + rng.normal(0, 0.01 * 255, raw.shape)


class Frames:
    """Raw test images, and a stream's frames made from them as the camera would deliver them."""

    def __init__(self, data: Path, budget: Budget):
        from inspector.frames import decode

        split = protocol_split(data)
        self.spec = budget.frame_spec
        raw = [decode(p.read_bytes(), 10**8).astype(np.float32) for p in split.test]
        self.normal = [r for r, c in zip(raw, split.classes, strict=True) if c == "Free"]
        self.defects = [r for r, c in zip(raw, split.classes, strict=True) if c != "Free"]

    def frame(self, rng: np.random.Generator, shift: str | None) -> tuple[Prepared, bool]:
        from inspector.frames import prepare

        defect = rng.random() < DEFECT_RATE
        pool = self.defects if defect else self.normal
        raw = ordinary(pool[rng.integers(len(pool))], rng)
        if shift is not None:
            raw = SHIFTS[shift](raw, rng)
        camera = np.clip(np.round(raw), 0, 255).astype(np.uint8)  # what the camera writes
        return prepare(camera, self.spec), defect


def stream_scores(
    frames: Frames, detector: object, n: int, seed: int, shift: str | None, warm_up: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, levels and whether a defect, of a stream: ``warm_up`` unshifted frames, then ``n`` more."""
    rng = np.random.default_rng(seed)
    scores, levels, defects = [], [], []
    for start in range(0, warm_up + n, 256):
        batch = [
            frames.frame(rng, shift if i >= warm_up else None)
            for i in range(start, min(start + 256, warm_up + n))
        ]
        pixels = np.stack([prepared.pixels for prepared, _ in batch])
        scores += [d.score for d in detector.score_arrays(pixels)]  # type: ignore[attr-defined]
        levels += [prepared.level for prepared, _ in batch]
        defects += [defect for _, defect in batch]
    return np.array(scores), np.array(levels), np.array(defects)


class Alarm:
    """The product's tests with one window: each quantity's state after every frame (its
    hysteresis included), and the source's alarm, on while either is."""

    def __init__(self, reference: np.ndarray, levels: np.ndarray, threshold: float, settings: object):
        self.reference, self.levels, self.threshold, self.settings = reference, levels, threshold, settings

    def scores(self, scores: np.ndarray) -> np.ndarray:
        from inspector.pipeline.drift import judge_scores

        return self._after_every_frame(
            scores, lambda w, on: judge_scores(w, self.reference, self.threshold, self.settings, on)
        )

    def frame_levels(self, levels: np.ndarray) -> np.ndarray:
        from inspector.pipeline.drift import judge

        return self._after_every_frame(levels, lambda w, on: judge(w, self.levels, self.settings, on))

    def _after_every_frame(
        self, values: np.ndarray, test: Callable[[np.ndarray, bool], object]
    ) -> np.ndarray:
        state, out = False, np.zeros(len(values), bool)
        for i in range(len(values)):
            window = values[max(0, i + 1 - self.settings.window) : i + 1]  # type: ignore[attr-defined]
            state = test(window, state).drifting  # type: ignore[attr-defined]
            out[i] = state
        return out

    def both(self, scores: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(the alarm, the scores' state, the levels' state) per frame."""
        on_scores, on_levels = self.scores(scores), self.frame_levels(levels)
        return on_scores | on_levels, on_scores, on_levels


def flag_rate_alarms(
    scores: np.ndarray, threshold: float, window: int, rate: float, alpha: float
) -> np.ndarray:
    """The peer: the window's flagged share against the rate the threshold lets through (binomial)."""
    flagged = (scores > threshold).astype(int)
    out = np.zeros(len(scores), bool)
    needed = _binomial_needed(window, rate, alpha)
    sums = np.convolve(flagged, np.ones(window, int))[: len(scores)]
    out[window - 1 :] = sums[window - 1 :] >= needed
    return out


def _binomial_needed(n: int, rate: float, alpha: float) -> int:
    """The fewest flags among n whose upper tail probability is below alpha."""
    tail = 0.0
    for k in range(n, -1, -1):
        tail += math.comb(n, k) * rate**k * (1 - rate) ** (n - k)
        if tail >= alpha:
            return k + 1
    return 0


def first(mask: np.ndarray, start: int) -> int | None:
    """Frames after ``start`` until the first alarm (1 = the first shifted frame), or None."""
    hits = np.flatnonzero(mask[start:])
    return None if not len(hits) else int(hits[0]) + 1


def train_model(data: Path, budget: Budget, path: Path) -> None:
    """The budget's vaegan-z on the train-normal frames, their records (and levels) in its checkpoint."""
    from inspector.frames import read_frame
    from inspector.models import make_config
    from inspector.training import TrainOptions, frame_record, train

    paths = protocol_split(data).train
    prepared = [read_frame(p, budget.frame_spec) for p in paths]
    records = [{**frame_record(p), "level": f.level} for p, f in zip(paths, prepared, strict=True)]
    config = make_config(
        "vaegan-z", {"image_size": budget.image_size, "channels": 1, **budget.model["vaegan-z"]}
    )
    options = TrainOptions(
        epochs=budget.epochs["vaegan-z"], seed=budget.seed, device="cpu", **budget.train["vaegan-z"]
    )
    started = time.time()
    checkpoint = train(
        np.stack([f.pixels for f in prepared]),
        config,
        budget.frame_spec,
        options,
        lambda e, _: print(f"epoch {e} {time.time() - started:.0f} s", flush=True),
        records=records,
    )
    checkpoint.save(path)


def run(data: Path, work: Path, threads: int, quick: bool) -> dict:
    import torch

    from inspector.config import DriftSettings
    from inspector.detector import Detector
    from inspector.pipeline.drift import ks_two_sample

    torch.set_num_threads(threads)
    started, cpu = time.time(), time.process_time()
    budget = Budget.quick() if quick else Budget()
    work.mkdir(parents=True, exist_ok=True)
    model = work / ("drift-model-quick.pt" if quick else "drift-model.pt")
    trained = not model.is_file()
    if trained:
        train_model(data, budget, model)
    detector = Detector.load(model, method=METHOD, device="cpu", batch_size=64)
    reference = np.array(detector.checkpoint.metadata["heldout_scores"][METHOD])
    levels_reference = np.array(detector.checkpoint.metadata["frame_levels"])
    threshold = detector.threshold
    settings = DriftSettings()
    frames = Frames(data, budget)
    unshifted_n, shifted_n, seeds = (600, 150, 2) if quick else (UNSHIFTED, SHIFTED, SEEDS)

    kept: list[str] = []

    def cached(name: str, make: Callable[[], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
        path = work / f"{'quick-' if quick else ''}{name}.npz"
        if path.is_file():
            kept.append(name)
        else:
            scores, levels, defects = make()
            np.savez(path, scores=scores, levels=levels, defects=defects)
        stored = np.load(path)
        return stored["scores"], stored["levels"], stored["defects"]

    def distances(scores: np.ndarray, levels: np.ndarray) -> dict[str, tuple[float, float]]:
        """Each test's KS distance and p-value on a window of frames."""
        censored = np.minimum(scores, threshold), np.minimum(reference, threshold)
        return {"score": ks_two_sample(*censored), "level": ks_two_sample(levels, levels_reference)}

    out: dict = {
        "reference": len(reference),
        "levels_reference": len(levels_reference),
        "threshold": threshold,
        "settings": dataclasses.asdict(settings),
        "heldout_flag_rate": float(np.mean(reference > threshold)),
    }
    rate = max(out["heldout_flag_rate"], 0.01)
    alarm = Alarm(reference, levels_reference, threshold, settings)
    others = {
        w: Alarm(
            reference, levels_reference, threshold, dataclasses.replace(settings, window=w, min_frames=w // 2)
        )
        for w in WINDOWS
    }
    scores, levels, defects = cached(
        "unshifted", lambda: stream_scores(frames, detector, unshifted_n, 0, None)
    )
    on, on_scores, on_levels = alarm.both(scores, levels)
    peer = flag_rate_alarms(scores, threshold, settings.window, rate, settings.alpha)
    w = settings.window
    largest = {
        quantity: max(
            distances(scores[i - w : i], levels[i - w : i])[quantity][0]
            for i in range(w, len(scores) + 1, 10)
        )
        for quantity in ("score", "level")
    }
    out["unshifted"] = {
        "frames": len(scores),
        "defects": int(defects.sum()),
        "flagged": int((scores > threshold).sum()),
        "alarm_frames": int(on.sum()),
        "alarms": int(np.sum(on[1:] & ~on[:-1]) + on[0]),
        "score_alarm_frames": int(on_scores.sum()),
        "level_alarm_frames": int(on_levels.sum()),
        "largest_distance": largest,  # over the stream's windows, every 10th frame
        "peer_alarm_frames": int(peer.sum()),
    }
    out["windows"] = {
        w: {"unshifted_alarm_frames": int(o.both(scores, levels)[0].sum())} for w, o in others.items()
    }
    out["shifts"] = {}
    for shift in SHIFTS:
        runs = []
        for seed in range(seeds):
            name = f"{shift.split()[0]}-{shift.split()[1]}-{seed}"
            make = partial(stream_scores, frames, detector, shifted_n, 100 + seed, shift, WARM_UP)
            s, lv, _ = cached(name, make)
            on, on_scores, on_levels = alarm.both(s, lv)
            peer = flag_rate_alarms(s, threshold, settings.window, rate, settings.alpha)
            runs.append(
                {
                    "seed": seed,
                    "before_shift_alarm": bool(on[:WARM_UP].any()),
                    "frames_to_alarm": first(on, WARM_UP),
                    "score_frames_to_alarm": first(on_scores, WARM_UP),
                    "level_frames_to_alarm": first(on_levels, WARM_UP),
                    "peer_frames_to_alarm": first(peer, WARM_UP),
                    "median_score_shifted": float(np.median(s[WARM_UP:])),
                    "median_level_shifted": float(np.median(lv[WARM_UP:])),
                    "flagged_shifted": float(np.mean(s[WARM_UP:] > threshold)),
                    "last_window": distances(s[-w:], lv[-w:]),  # the last 200 shifted frames
                    "other_windows": {w: first(o.both(s, lv)[0], WARM_UP) for w, o in others.items()},
                }
            )
            print(shift, runs[-1], flush=True)
        out["shifts"][shift] = runs
    out["median_score_unshifted"] = float(np.median(scores))
    out["median_level_unshifted"] = float(np.median(levels))
    out["median_level_reference"] = float(np.median(levels_reference))
    out["median_score_reference"] = float(np.median(reference))
    out["redone"] = (
        f"the model {'trained here' if trained else 'kept from before, its training not included'}; "
        f"{len(kept)} of {1 + len(SHIFTS) * seeds} streams' scores kept from before"
    )
    out["seconds"] = time.time() - started
    out["cpu_seconds"] = time.process_time() - cpu
    out["model"] = detector.version
    return out


def _delay(values: list[int | None]) -> str:
    if all(v is None for v in values):
        return "never"
    fired = [v for v in values if v is not None]
    missed = len(values) - len(fired)
    text = f"{int(np.median(fired))} (max {max(fired)})" if len(fired) == len(values) else f"{sorted(fired)}"
    return text + (f", **{missed} of {len(values)} never**" if missed else "")


def render(out: dict) -> str:
    u = out["unshifted"]
    lines = ["# Drift alarm on magnetic tile (measured)", ""]
    lines += [f"- **{k}**: {v}" for k, v in out["header"].items()]
    fired = all(
        all(r["frames_to_alarm"] is not None for r in out["shifts"][s])
        for s in MUST_FIRE
        if s in out["shifts"]
    )
    largest = u["largest_distance"]
    lines += [
        f"- **goal**: the alarm fires on each shift within a stated number of frames: "
        f"{'met' if fired else '**not met**'}; never on the unshifted stream: "
        f"{'met' if u['alarm_frames'] == 0 else '**not met**'} "
        f"({u['alarm_frames']} alarm frames in {u['frames']})",
        "",
        f"References: the model's {out['reference']} held-out normal scores (median "
        f"{out['median_score_reference']:.3g}; threshold {out['threshold']:.4g}, "
        f"{out['heldout_flag_rate']:.1%} of them above it) and the levels of its "
        f"{out['levels_reference']} training frames (median {out['median_level_reference']:.3f}). "
        f"Test: {json.dumps(out['settings'])}, on each quantity after every frame; the alarm is on "
        "while either drifts.",
        "",
        "## Unshifted stream",
        "",
        f"{u['frames']} frames ({u['defects']} defects among them, {u['flagged']} flagged; median score "
        f"{out['median_score_unshifted']:.3g}, median level {out['median_level_unshifted']:.3f}): the "
        f"alarm was on for **{u['alarm_frames']}** frames ({u['alarms']} alarms; scores "
        f"{u['score_alarm_frames']}, levels {u['level_alarm_frames']}); the flag-rate peer for "
        f"{u['peer_alarm_frames']}. The largest KS distance of a window to its reference: scores "
        f"{largest['score']:.2f}, levels {largest['level']:.2f} (an alarm needs 0.3 and p < 1e-4).",
        "",
        "## Shifts: frames from the first shifted frame to the alarm (median of the seeds, and the largest)",
        "",
        "| shift | alarm (ours) | scores alone | levels alone | flag-rate peer | median score, shifted "
        f"(unshifted: {out['median_score_unshifted']:.3g}) | median level, shifted (unshifted: "
        f"{out['median_level_unshifted']:.3f}) | KS D of the last 200 frames: scores / levels | "
        "flagged while shifted | alarm before the shift |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for shift, runs in out["shifts"].items():
        last = {q: np.median([r["last_window"][q][0] for r in runs]) for q in ("score", "level")}
        lines.append(
            f"| {shift} | {_delay([r['frames_to_alarm'] for r in runs])} | "
            f"{_delay([r['score_frames_to_alarm'] for r in runs])} | "
            f"{_delay([r['level_frames_to_alarm'] for r in runs])} | "
            f"{_delay([r['peer_frames_to_alarm'] for r in runs])} | "
            f"{np.median([r['median_score_shifted'] for r in runs]):.3g} | "
            f"{np.median([r['median_level_shifted'] for r in runs]):.3f} | "
            f"{last['score']:.2f} / {last['level']:.2f} | "
            f"{np.mean([r['flagged_shifted'] for r in runs]):.0%} | "
            f"{sum(r['before_shift_alarm'] for r in runs)} of {len(runs)} |"
        )
    windows = out["windows"]
    lines += [
        "",
        "## The window's trade-off (the same frames; p and KS distance thresholds unchanged)",
        "",
        "| window | alarm frames, unshifted | " + " | ".join(s for s in out["shifts"]) + " |",
        "|---|---|" + "---|" * len(out["shifts"]),
        f"| {out['settings']['window']} (default) | {u['alarm_frames']} | "
        + " | ".join(_delay([r["frames_to_alarm"] for r in runs]) for runs in out["shifts"].values())
        + " |",
    ]
    for w, entry in windows.items():
        cells = [_delay([r["other_windows"][w] for r in runs]) for runs in out["shifts"].values()]
        lines.append(f"| {w} | {entry['unshifted_alarm_frames']} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the magnetic-tile folder (MT_* inside)")
    parser.add_argument("--work", type=Path, default=Path("drift-work"), help="the model and scores, kept")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny model, short streams: a smoke run")
    args = parser.parse_args(argv)
    out = run(args.data, args.work, args.threads, args.quick)
    out["header"] = {
        "command": f"`{shlex.join(['python', '-m', 'bench.drift', *sys.argv[1:]])}`",
        "git commit": git_commit(),
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()} CPU, torch threads {args.threads}, shared with other jobs",
        "wall time": f"{out['seconds'] / 60:.1f} min ({out['redone']})",
        "CPU time": f"{out['cpu_seconds'] / 60:.1f} min (this process)",
        "model": out["model"],
    }
    name = "drift_quick" if args.quick else "drift"
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(args.out / f"{name}.md", render(out))
    (args.out / f"{name}.json").write_text(json.dumps(out, indent=1, default=str))
    print(render(out))


if __name__ == "__main__":
    main()
