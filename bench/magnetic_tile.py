"""The magnetic-tile benchmark (real surface defects): ``inspector bench magnetic-tile --data DIR``.

Protocol: ../shared/benchmarks/magnetic-tile.md. Sorted ``MT_Free`` images at positions
0, 3, 6, … are test-normal, the others train; the test set adds every defect image. Frames
are read by ``inspector.frames`` (grey, bilinear with antialiasing to 128×128, flat-fielded),
masks by nearest neighbour (pixel centres, as PIL) and > 127. Every family is trained on
the train-normal frames and scored with each of its methods; the report gives image-level
ROC-AUC (overall and per defect class against the test-normal frames) and pixel-level
ROC-AUC of each method's anomaly map (``vaegan-z``: the error's z; ``vaegan-attn-z``: plus
the attention's, see ``inspector.models.fixed_camera``), pooled over all test pixels at
128×128 and per class (that class's pixels plus the test-normal ones).
Results go to ``bench/results/magnetic_tile.md`` (and ``.json``), rewritten after every
family so a cut-short run still leaves true, partial numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.provenance import git_commit, gpu_name, write_report
from inspector.config import FrameSpec

RESULTS = Path(__file__).resolve().parent / "results"
CLASSES = ("Blowhole", "Break", "Crack", "Fray", "Uneven")
METRIC_SIZE = 128  # the protocol's resolution for pixel metrics
GOAL = 0.90  # issue 6: the attention method's image and pixel AUROC (vaegan-attn-z today)
GOAL_METHOD = "vaegan-attn-z"
PIXEL_MAPS = {  # the maps of the published budget (models/fixed_camera.py)
    "vaegan-z": "z of the error (vs its nearest training frames), fine or coarse",
    "vaegan-attn-z": "z of the error (vs its nearest training frames), fine or coarse, + z of the attention",
}
PEERS = [
    ("anomalib 2.7.0 GANomaly (from scratch, peer)", "0.605", "— (no map)", "60 epochs, 35 min"),
    ("anomalib 2.7.0 DRAEM (from scratch, peer)", "0.594", "0.581", "6 epochs, 29 min"),
]


@dataclass
class Budget:
    """Everything that sizes a run. The defaults are the published configuration."""

    image_size: int = 128  # the detectors' resolution (maps are resized to 128 for pixel metrics)
    # Frames are flat-fielded (divided by their blur of this σ): the tiles were lit in several
    # ways, and a defect is a change of local contrast, not of lighting.
    flatten: float = 8.0
    seed: int = 0
    epochs: dict[str, int] = field(default_factory=lambda: {"vaegan-z": 12, "vae": 8, "anogan": 8})
    model: dict[str, dict] = field(
        default_factory=lambda: {
            # Frames of a fixed camera: maps measured pixel by pixel against the normal
            # training frames, Grad-CAM at the discriminator's middle block (32×32 at 128 px).
            "vaegan-z": {
                "width": 32,
                "batch_size": 16,
                "lr": 5e-4,
                "attention_layer": 1,
                "region_blur": 8.0,  # error z also at σ 8 px: the large, faint defects
                # The tiles are of several shapes and finishes: the error's μ and σ come from
                # the 20 training frames nearest in latent space, not from all of them.
                "neighbours": 20,
                # The attention's z adds at most 2 to the error's: uncapped, attention spikes
                # on normal frames made the peaks in one of two trainings (image AUROC 0.84).
                "attention_cap": 2.0,
            },
            "vae": {"width": 32, "batch_size": 16, "lr": 5e-4},
            # AnoGAN's latent search costs anogan_steps passes per test frame: width 16 and
            # 20 steps keep its scoring within the hour's budget on two cores.
            "anogan": {"width": 16, "batch_size": 16, "lr": 2e-4, "search_steps": 20},
        }
    )
    # Patience keeps the epoch with the best validation loss (for VAEGAN, the reconstruction
    # error of held-out normals, as GAN losses wander). AnoGAN's validation loss is the
    # discriminator's opinion of real frames, no measure of its generator: its last epoch.
    train: dict[str, dict] = field(
        default_factory=lambda: {
            "vaegan-z": {"shift": 2, "gain": 0.05, "patience": 5},
            "vae": {"shift": 2, "gain": 0.05, "patience": 5},
            "anogan": {"shift": 2, "gain": 0.05, "patience": 0},
        }
    )

    @property
    def frame_spec(self) -> FrameSpec:
        return FrameSpec(mode="grey", image_size=self.image_size, flatten=self.flatten)

    @classmethod
    def quick(cls) -> Budget:
        """A smoke run in a couple of minutes: tiny models, one epoch."""
        small = {"width": 8, "latent_dim": 16, "batch_size": 32}
        return cls(
            image_size=64,
            flatten=4.0,
            epochs={"vaegan-z": 1, "vae": 1, "anogan": 1},
            model={
                "vaegan-z": {
                    **small,
                    "attention_layer": 1,
                    "region_blur": 4.0,
                    "neighbours": 10,
                    "attention_cap": 2.0,
                },
                "vae": small,
                "anogan": {**small, "search_steps": 3},
            },
        )


@dataclass
class Split:
    train: list[Path]
    test: list[Path]
    classes: list[str]  # per test image: "Free" or a defect class


def protocol_split(root: str | Path) -> Split:
    """The protocol's fixed split: every third sorted Free image (from the first) is test-normal."""
    root = Path(root)
    free = sorted((root / "MT_Free" / "Imgs").glob("*.jpg"), key=lambda p: p.name)
    if not free:
        raise FileNotFoundError(f"no MT_Free/Imgs/*.jpg under {root}")
    test = [p for i, p in enumerate(free) if i % 3 == 0]
    classes = ["Free"] * len(test)
    for name in CLASSES:
        images = sorted((root / f"MT_{name}" / "Imgs").glob("*.jpg"), key=lambda p: p.name)
        test += images
        classes += [name] * len(images)
    return Split(train=[p for i, p in enumerate(free) if i % 3 != 0], test=test, classes=classes)


def load_images(paths: Sequence[Path], spec: FrameSpec) -> np.ndarray:
    from inspector.frames import load_frame

    return np.stack([load_frame(p, spec) for p in paths])


def load_masks(images: Sequence[Path]) -> np.ndarray:
    """Binary masks (N, 128, 128): nearest neighbour at pixel centres, then > 127."""
    import torch
    from torch.nn import functional as F

    from inspector.frames import decode

    masks = []
    for image in images:
        raw = decode(image.with_suffix(".png").read_bytes(), 10**8)
        grey = raw if raw.ndim == 2 else raw[..., 0]
        t = torch.from_numpy(grey.astype(np.float32))[None, None]
        masks.append(
            F.interpolate(t, size=(METRIC_SIZE, METRIC_SIZE), mode="nearest-exact")[0, 0].numpy() > 127
        )
    return np.stack(masks)


def to_metric_size(maps: np.ndarray) -> np.ndarray:
    """Maps (N, h, w) at the detector's resolution, of any shape -> (N, 128, 128), bilinear."""
    if maps.shape[-2:] == (METRIC_SIZE, METRIC_SIZE):
        return maps
    import torch
    from torch.nn import functional as F

    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return F.interpolate(t, size=(METRIC_SIZE, METRIC_SIZE), mode="bilinear", align_corners=False)[
        :, 0
    ].numpy()


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def image_aurocs(scores: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Overall, and each defect class against the test-normal frames."""
    result = {"overall": auroc(classes != "Free", scores)}
    for name in CLASSES:
        keep = (classes == "Free") | (classes == name)
        result[name] = auroc(classes[keep] == name, scores[keep])
    return result


def pixel_aurocs(maps: np.ndarray, masks: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Pooled over all test pixels, and per class over that class's pixels plus the normal ones."""
    result = {"overall": auroc(masks.ravel(), maps.ravel())}
    for name in CLASSES:
        keep = (classes == "Free") | (classes == name)
        result[name] = auroc(masks[keep].ravel(), maps[keep].ravel())
    return result


def describe_device(device: str) -> str:
    import torch

    from inspector.detector import resolve_device

    resolved = resolve_device(device)
    if resolved.type != "cuda":
        return str(resolved)
    return f"{resolved} ({gpu_name(resolved)}, torch {torch.__version__})"


def run_family(
    family: str, budget: Budget, data: dict[str, np.ndarray], threads: int, device: str = "cpu"
) -> dict:
    """Train one family on the train-normal frames; score the test set with each of its methods."""
    import torch

    from inspector.detector import Detector
    from inspector.models import FAMILIES, make_config
    from inspector.training import TrainOptions, train

    torch.set_num_threads(threads)
    config = make_config(family, {"image_size": budget.image_size, "channels": 1, **budget.model[family]})
    options = TrainOptions(
        epochs=budget.epochs[family], seed=budget.seed, device=device, **budget.train[family]
    )
    started = time.time()

    def progress(epoch: int, losses: dict[str, float]) -> None:
        shown = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
        print(
            f"  {family} epoch {epoch}/{options.epochs} ({time.time() - started:.0f} s): {shown}", flush=True
        )

    checkpoint = train(data["train"], config, budget.frame_spec, options, progress)
    out: dict = {"family": family, "train_seconds": round(time.time() - started, 1), "methods": {}}
    out["epochs_run"] = checkpoint.metadata["epochs_run"]
    for method in FAMILIES[family].methods:
        started = time.time()
        detections = Detector(checkpoint, method=method, device=device, batch_size=64).score_arrays(
            data["test"]
        )
        scores = np.array([d.score for d in detections])
        entry: dict = {"score_seconds": round(time.time() - started, 1), "scores": scores.tolist()}
        entry["image_auroc"] = image_aurocs(scores, data["classes"])
        if method in PIXEL_MAPS:
            maps = np.stack([d.anomaly_map for d in detections])
            entry["pixel_auroc"] = pixel_aurocs(to_metric_size(maps), data["masks"], data["classes"])
        out["methods"][method] = entry
        print(f"  {method}: image {json.dumps(entry['image_auroc'])}", flush=True)
        if "pixel_auroc" in entry:
            print(f"  {method}: pixel {json.dumps(entry['pixel_auroc'])}", flush=True)
    return out


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def render(runs: list[dict], header: dict) -> str:
    lines = ["# Magnetic-tile benchmark (measured)", ""]
    lines += [f"- **{key}**: {value}" for key, value in header.items()]
    attn = next((r["methods"][GOAL_METHOD] for r in runs if GOAL_METHOD in r["methods"]), None)
    if attn:
        image, pixel = attn["image_auroc"]["overall"], attn["pixel_auroc"]["overall"]
        met = "met" if image >= GOAL and pixel >= GOAL else "**not met**"
        lines.append(
            f"- **goal** ({GOAL_METHOD} image and pixel AUROC ≥ {GOAL}): {met} ({image:.3f} / {pixel:.3f})"
        )
    lines += [
        "",
        "## Image-level ROC-AUC (each class: its images against the 318 test-normal images)",
        "",
        "| method | overall | " + " | ".join(CLASSES) + " | training | scoring |",
        "|---|---|" + "---|" * len(CLASSES) + "---|---|",
    ]
    for run in runs:
        for method, entry in run["methods"].items():
            cells = [_cell(entry["image_auroc"][k]) for k in ("overall", *CLASSES)]
            timing = f"{run['epochs_run']} epochs, {run['train_seconds'] / 60:.1f} min"
            lines.append(
                f"| {method} | " + " | ".join(cells) + f" | {timing} | {entry['score_seconds']:.0f} s |"
            )
    for name, image, _pixel, training in PEERS:
        lines.append(f"| {name} | {image} | " + " | ".join("—" for _ in CLASSES) + f" | {training} | — |")
    lines += [
        "",
        "## Pixel-level ROC-AUC at 128×128",
        "",
        "Overall: all test pixels pooled; a class: its images' pixels plus the test-normal images' pixels.",
        "",
        "| map | overall | " + " | ".join(CLASSES) + " |",
        "|---|---|" + "---|" * len(CLASSES),
    ]
    for run in runs:
        for method, entry in run["methods"].items():
            if "pixel_auroc" in entry:
                cells = [_cell(entry["pixel_auroc"][k]) for k in ("overall", *CLASSES)]
                lines.append(f"| {method} ({PIXEL_MAPS[method]}) | " + " | ".join(cells) + " |")
    lines += [f"| {PEERS[1][0]} | {PEERS[1][2]} | " + " | ".join("—" for _ in CLASSES) + " |", ""]
    return "\n".join(lines)


def run_benchmark(
    data_dir: str,
    budget: Budget,
    families: Sequence[str] = ("vaegan-z", "vae", "anogan"),
    threads: int = 2,
    out: Path = RESULTS,
    name: str = "magnetic_tile",
    command: str | None = None,
    device: str = "cpu",
) -> str:
    """Run the benchmark and write ``out/name.md`` and ``out/name.json``; returns the Markdown."""
    started = time.time()
    split = protocol_split(data_dir)
    data = {
        "train": load_images(split.train, budget.frame_spec),
        "test": load_images(split.test, budget.frame_spec),
        "masks": load_masks(split.test),
        "classes": np.array(split.classes),
    }
    counts = ", ".join(f"{c} {int((data['classes'] == c).sum())}" for c in ("Free", *CLASSES))
    print(f"loaded {len(split.train)} train-normal, {len(split.test)} test ({counts})", flush=True)
    header = {
        "command": f"`{command or shlex.join(['python', '-m', 'bench.magnetic_tile', *sys.argv[1:]])}`",
        "git commit": git_commit(),
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "machine": f"{platform.machine()} CPU, torch threads {threads} (shared with other jobs)",
        "device": describe_device(device),
        "split": f"{len(split.train)} train-normal; test {counts} (../shared/benchmarks/magnetic-tile.md)",
        "budget": json.dumps(dataclasses.asdict(budget)),
        "families planned": ", ".join(families),
    }
    out.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    for family in families:
        print(f"{family}: training on {len(data['train'])} frames at {budget.image_size}px", flush=True)
        runs.append(run_family(family, budget, data, threads, device))
        header["wall time"] = (
            f"{(time.time() - started) / 60:.1f} min (all families so far, loading included)"
        )
        header["CPU time"] = (
            f"{time.process_time() / 60:.1f} min (this process, all threads: the cost without load)"
        )
        markdown = render(runs, header)
        write_report(out / f"{name}.md", markdown)
        (out / f"{name}.json").write_text(json.dumps({"header": header, "runs": runs}))
    return render(runs, header)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the magnetic-tile folder (MT_* inside)")
    parser.add_argument("--quick", action="store_true", help="tiny models, one epoch: a smoke run")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--families", default="vaegan-z,vae,anogan", help="comma-separated model families")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--device", default="cpu", help="where models train and score: cpu, cuda, auto")
    args = parser.parse_args(argv)
    budget = Budget.quick() if args.quick else Budget()
    name = "magnetic_tile_quick" if args.quick else "magnetic_tile"
    families = args.families.split(",")
    print(run_benchmark(args.data, budget, families, args.threads, args.out, name, device=args.device))


if __name__ == "__main__":
    main()
