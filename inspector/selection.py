"""What ``inspector train`` chooses when told nothing: the frame shape, the family, its method.

All from the normal frames alone, no label and no test frame:

1. **Frame shape.** The training files' median size, scaled down (never up) to at most
   PIXELS pixels with its aspect kept: 500×1250 frames become 161×404, not a square where a
   thin defect is squashed away; 84×84 frames stay as they are.
2. **Kind of data (the gate).** Where at least 80% of the normal frames show an object on a
   plain background, at sizes and places that vary, only the glimpse families compete: a
   whole-frame comparison sees mostly where the object is. A frame shows one where its
   object has a bounding box under half the frame, or where the object and a flat
   background together make up nearly all of it (a person before a depth camera whose far
   range is cut away: a large box, yet nothing else in the frame). The background's level
   is read on the frame's border, not as the whole frame's median, which an object filling
   half the frame shifts; the object is where the frame rises above that level as
   ``models.glimpse`` finds it, with its edge (FLAT_BLUR pixels around it, what the blur
   before the flatness test spreads it by), or falls below it where too few frames show a
   brighter object and enough a darker one (``objects_and_polarity``). Otherwise (surfaces,
   scenes) every candidate competes. The rule exists because the synthetic anomalies below are
   local defects, which favour the whole-frame memory even where the real anomalies are other
   objects or poses (noisy MNIST, digit 1: 0.979 against 0.997; depth hand poses: 0.23 against
   1.0). Objects that stand at one place (their centre moves by under FIXED_PLACE of the frame)
   are a part before a fixed camera, not a varying subject: there every family competes, as on
   surfaces, whose real anomalies are local defects as the synthetic ones are. Where the objects
   show larger than the glimpse the backbone sees by default (112 px), the glimpse family also
   competes at their own size (``candidates``): a glimpse never shrinks the part.
3. **Candidates, validated.** Each candidate's memory is filled from the training split
   (the split training uses), and each of its methods scores the held-out normals and the
   synthetic anomalies made from them (``synthetic.py``); the ROC-AUC of that is the
   validation estimate. In a small set (``training.SMALL_SET``) each frame is held out in
   turn, the others remembered; in a medium one (where the split would hold out fewer than
   SPREAD_FRAMES) each is held out once, in FOLDS rounds; the estimate pools every round's
   scores. The best candidate and method win (the first listed on a tie). Where the estimate
   pools rounds its noise still exceeds the gaps, so the first listed within one standard
   error of the best wins, in two steps: the candidate, then its method (``small_set_pick``).
   A method that weighs its signals by their spread on the held-out normals competes only
   where training's split holds out SPREAD_FRAMES of them.
4. **Near ties, averaged.** Where one round holds out that many, the best family's methods whose
   estimate lies within one standard error of the best one's (``paired_auroc_error``) are
   averaged (the family's ``-ensemble`` method, ``memory.py``) instead of the best alone:
   the validation cannot tell them apart, and the real anomalies favour one or the other at
   random (magnetic tiles: ``patch-max-inner`` 0.842, ``patch-max-or-mean`` 0.841 on
   validation, a swap of the two with a change of the coreset's first pick).
5. **The map.** Each candidate's anomaly map is smoothed by the σ of ``MAP_SMOOTHING``, and
   measured against each cell's normal distances or not (``map_z``, where the memory could
   measure them: ``memory.py``), as the maps rank the synthetic anomalies' own pixels (where they
   changed the frame: ``synthetic.masks``) highest against every other pixel of the validation
   frames (pooled pixel ROC-AUC on PIXEL_SAMPLE places of each frame). It changes no score.

The checkpoint keeps the choice, the estimate and every candidate's figure; ``train``
prints the estimate and warns below WARN_BELOW.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from inspector.config import FrameSpec
from inspector.detector import Checkpoint, resolve_device
from inspector.models import ModelConfig, backbone, family_named, family_of_config, glimpse, make_config
from inspector.models.blocks import gaussian_blur
from inspector.models.glimpse import GlimpseFields, box_fraction
from inspector.models.glimpse_memory import GlimpseMemoryConfig
from inspector.models.memory import ENSEMBLE, MAP_SMOOTHING, MemoryModel, normal_statistics
from inspector.synthetic import anomalies, boxes, masks
from inspector.training import SMALL_SET, ProgressFn, TrainingError, TrainOptions, split_validation, train

PIXELS = 256 * 256  # the most pixels of a frame the whole-frame memory sees (PatchCore's 256 px)
MIN_SIDE = 16  # one stride-16 cell of the backbone
OBJECT_BOX = 0.5  # an object's box covering less than this fraction of its frame ...
# ... or an object of at least OBJECT_AREA of the frame that, with its edge and the flat
# background (within FLAT of the border's level after a σ FLAT_BLUR blur: the noisy-MNIST
# canvas's noise of σ 0.2 is flat so), makes up at least OBJECT_OR_FLAT of it (measured in 90%
# of the training frames: noisy MNIST digits 0, 1, 8 ≥ 0.97, UCI digits 0, 3, 9 ≥ 0.90, the depth
# hands ≥ 0.99; in half of the magnetic tiles at most 0.37) ...
OBJECT_AREA, FLAT, FLAT_BLUR, OBJECT_OR_FLAT = 0.01, 0.05, 2, 0.85
BORDER = 2  # pixels of the frame's edge whose median is the background's level
OBJECT_SHARE = 0.8  # ... in at least this share of the frames: objects on a plain background
# Objects whose box centre moves by less than this share of the frame (standard deviation over the
# frames, rows and columns alike) stand at a fixed place: measured, magnetic tiles placed on a canvas
# 0.027 / 0.032 (rows / columns), the depth frames of the hand's other poses 0.003 / 0.03; objects
# at varying places: noisy MNIST and UCI digits 0.10-0.12 each way, the open-palm frames 0.02 / 0.14.
FIXED_PLACE = 0.05
WARN_BELOW = 0.6  # a validation estimate below this is printed with a warning
# Methods that divide by the spread of the held-out normal frames' scores (memory.py) compete
# only with at least this many held out: on six depth frames (one held out) patch-max-or-mean
# won the choice and ranked the anomalies below the normal frames (ROC-AUC 0.18).
SPREAD_METHOD, SPREAD_FRAMES = "-max-or-mean", 10
# Resamples for the standard error of a small set's estimates. Its noise exceeds the gaps between
# methods there (depth hand poses, 6 frames: gaps of 0.02-0.04, errors of 0.05), so the first
# listed within one error of the best wins; the lists put a mean over all patches, the steadier
# statistic, before a peak.
BOOTSTRAPS = 200
FOLDS = 5  # rounds of a medium set's validation (see ``validation_rounds``)
PIXEL_SAMPLE = 2048  # places of each validation frame whose pixels rate the anomaly map's smoothing
CANDIDATES: dict[str, tuple[str, ...]] = {  # kind of data -> the families that compete (memories)
    "objects": ("glimpse-memory",),  # at varying places
    "part": ("glimpse-memory", "patch-memory"),  # one object at a fixed place
    "any": ("glimpse-memory", "patch-memory"),  # surfaces, scenes
}
# Objects whose glimpse at the frames' resolution is at least LARGER times the backbone's default
# glimpse are also tried at that side (``candidates``), up to LARGEST pixels (the frame's budget).
LARGER, LARGEST = 1.25, 256

Note = Callable[[str], None]


def frame_shape(shapes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """(rows, columns) for frames whose files are of these (rows, columns): their median,
    scaled down to at most PIXELS pixels with its aspect kept (sides of at least MIN_SIDE)."""
    if not shapes:
        raise TrainingError("no frames to choose a frame shape from")
    height, width = np.median(np.asarray(shapes, dtype=float), axis=0)
    scale = min(1.0, math.sqrt(PIXELS / (height * width)))
    return max(MIN_SIDE, math.floor(height * scale)), max(MIN_SIDE, math.floor(width * scale))


def shows_object(x: torch.Tensor, polarity: float = 1.0) -> torch.Tensor:
    """Whether each frame (N, C, H, W) shows an object on a plain background (N,): see OBJECT_BOX;
    ``polarity`` -1: an object darker than the background."""
    fields = GlimpseFields()
    grey = x.mean(dim=1, keepdim=True)
    smooth = gaussian_blur(grey, FLAT_BLUR)[:, 0]
    level = border(smooth).median(dim=1).values[:, None, None]
    mask = polarity * (gaussian_blur(grey, fields.glimpse_blur)[:, 0] - level) > fields.glimpse_threshold
    with_edge = F.max_pool2d(mask[:, None].float(), 2 * FLAT_BLUR + 1, stride=1, padding=FLAT_BLUR)[:, 0] > 0
    flat = (smooth - level).abs() < FLAT
    area = mask.float().flatten(1).mean(dim=1)
    covered = (with_edge | flat).float().flatten(1).mean(dim=1)
    small_box = box_fraction(mask) < OBJECT_BOX
    return small_box | ((area >= OBJECT_AREA) & (covered >= OBJECT_OR_FLAT))


def candidates(
    kind: str, found: np.ndarray | None, polarity: float = 1.0
) -> list[tuple[str, dict[str, Any]]]:
    """The families that compete on frames of a kind (CANDIDATES), each with the settings it is
    tried at (none: its defaults). Where the objects show larger in the frames than the glimpse the
    backbone sees by default (``glimpse_side``), the glimpse family is also tried at their own size:
    by default a part placed before a wider camera is scaled down to 112 px, and its fine defects
    with it (magnetic tiles placed on a dark canvas, ``bench/tiles_on_canvas.py``). Objects darker
    than their background (``polarity`` -1) are looked for as such. ``found``: the frames' object
    boxes (``boxes``), measured where the kind is one of objects."""
    dark = {"glimpse_polarity": polarity} if polarity != 1 else {}
    listed = [(name, dark if name == "glimpse-memory" else {}) for name in CANDIDATES[kind]]
    if kind in ("objects", "part"):
        assert found is not None, "objects' kinds are told by their boxes"
        side = glimpse_side(found)
        if side >= LARGER * GlimpseMemoryConfig.backbone_size:
            listed.append(("glimpse-memory", {"backbone_size": side, **dark}))
    return listed


def glimpse_side(found: np.ndarray) -> int:
    """The side of a glimpse that shows objects with these boxes (N, 4; ``boxes``) at the frames'
    own resolution: the median of their longer side over the glimpse's fill, in whole backbone
    cells, at most LARGEST."""
    spans = torch.from_numpy(found).float()
    side = float(glimpse.glimpse_span(spans, GlimpseFields.glimpse_fill).median())
    return min(LARGEST, backbone.STRIDE * math.ceil(side / backbone.STRIDE))


def centre_spread(found: np.ndarray, shape: tuple[int, int]) -> tuple[float, float]:
    """How far objects with these boxes (N, 4; ``boxes``) in frames of ``shape`` (rows, columns)
    move: the standard deviation of their boxes' centre, in rows and in columns, each as a share of
    the frame's side. A frame where no object was found (its box the whole frame) says nothing of
    the place, and is left out while two or more others remain."""
    every = torch.from_numpy(found).float()
    rows, columns = shape
    placed = every[(every != every.new_tensor([0, rows - 1, 0, columns - 1])).any(dim=1)]
    top, bottom, left, right = (placed if len(placed) >= 2 else every).unbind(dim=1)
    return float(((top + bottom) / 2).std() / rows), float(((left + right) / 2).std() / columns)


def data_kind(
    share: float, found: np.ndarray | None, shape: tuple[int, int], polarity: float = 1.0
) -> tuple[str, str]:
    """The kind of data frames of ``shape`` (rows, columns) hold, a key of CANDIDATES, and why in
    words; ``share``: theirs that show an object on a plain background (``object_share``), of
    ``polarity``; ``found``: their object boxes (``boxes``), measured where that share reaches
    OBJECT_SHARE."""
    shown = f"{share:.0%} of the frames show an object " + ("darker than " if polarity < 0 else "on ")
    shown += "a plain background"
    if share < OBJECT_SHARE:
        return "any", f"{shown}: surfaces or scenes, every family"
    assert found is not None, "objects are told apart by their boxes"
    rows, columns = centre_spread(found, shape)
    shown += f", its centre moving by {rows:.3f} / {columns:.3f} of the frame (s.d., rows / columns)"
    if max(rows, columns) < FIXED_PLACE:
        return "part", f"{shown}: one part at a fixed place, every family"
    return "objects", f"{shown}: objects at varying places, the glimpse family only"


def border(maps: torch.Tensor) -> torch.Tensor:
    """The BORDER outermost pixels of maps (N, H, W): (N, P), each pixel once."""
    ring = torch.ones(maps.shape[-2:], dtype=torch.bool, device=maps.device)
    ring[BORDER:-BORDER, BORDER:-BORDER] = False
    return maps[:, ring]


def object_share(frames: np.ndarray, polarity: float = 1.0) -> float:
    """The share of frames (N, C, H, W) that show an object on a plain background (darker than it,
    with ``polarity`` -1)."""
    batches = (torch.from_numpy(frames[i : i + 256]) for i in range(0, len(frames), 256))
    return float(torch.cat([shows_object(x, polarity) for x in batches]).float().mean())


def objects_and_polarity(frames: np.ndarray) -> tuple[float, float]:
    """The share of frames (N, C, H, W) that show an object on a plain background, and the objects'
    polarity: 1 (brighter than the background), or -1 where too few show a brighter one and enough a
    darker one (silhouettes before a light, dark parts on a light table)."""
    share = object_share(frames)
    if share < OBJECT_SHARE and (dark := object_share(frames, -1.0)) >= OBJECT_SHARE:
        return dark, -1.0
    return share, 1.0


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC (Mann-Whitney, ties counted half): the chance an anomaly outscores a normal frame."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]  # 1-based, ties averaged
    positive = labels == 1
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if not n1 or not n0:
        raise ValueError("ROC-AUC needs normal and anomalous frames")
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@dataclass
class Choice:
    """What the selection chose, and why (it goes into the checkpoint's metadata)."""

    config: ModelConfig
    method: str
    estimate: float  # validation ROC-AUC of the chosen method, on synthetic anomalies
    kind: str  # a key of CANDIDATES
    object_share: float
    candidate: str = ""  # the chosen family, with its settings where it has some (``candidates``)
    candidates: list[dict] = field(default_factory=list)  # candidate (as "family"), method, validation AUROC
    map_smoothing: dict[str, float] = field(default_factory=dict)  # the chosen family's maps -> pixel AUROC

    def metadata(self) -> dict:
        return {
            "method": self.method,
            "selection": {
                "estimate": round(self.estimate, 4),
                "candidate": self.candidate,
                "kind": self.kind,
                "object_share": round(self.object_share, 3),
                "candidates": self.candidates,
                "map_smoothing": self.map_smoothing,
                "validation": "held-out normal frames against synthetic anomalies made from them",
            },
        }


def validation_rounds(n: int, options: TrainOptions) -> list[tuple[np.ndarray, np.ndarray]]:
    """(remembered, held-out) frame indices of each validation round: the split training uses,
    where it holds out at least SPREAD_FRAMES; below SMALL_SET frames, each frame held out in
    turn (leave-one-out); between the two, each held out once in FOLDS rounds. So every frame
    is judged where the split would judge a handful: two subsets of 30 magnetic tiles, 3 held
    out, estimated 0.74 and 0.90, in five folds 0.78 and 0.77."""
    every = np.arange(n)
    if n < SMALL_SET:
        return [(np.delete(every, i), every[i : i + 1]) for i in range(n)]
    split = split_validation(n, options.val_fraction, options.seed)
    if len(split[1]) >= SPREAD_FRAMES:
        return [split]
    order = np.random.default_rng(options.seed).permutation(n)
    return [(np.setdiff1d(every, held), np.sort(held)) for held in np.array_split(order, FOLDS)]


def choose(frames: np.ndarray, spec: FrameSpec, options: TrainOptions, note: Note | None = None) -> Choice:
    """Validate every candidate on the normal frames (N, C, H, W) and return the best."""
    note = note or (lambda _line: None)
    if len(frames) < 2:
        raise TrainingError("choosing a detector needs at least 2 normal frames (one to hold out)")
    share, polarity = objects_and_polarity(frames)
    found = boxes(frames, polarity) if share >= OBJECT_SHARE else None  # the gate's and the glimpse's
    kind, why = data_kind(share, found, frames.shape[-2:], polarity)
    note(why)
    rounds = validation_rounds(len(frames), options)
    if len(rounds) > 1:
        turns = "in turn" if len(rounds) == len(frames) else f"once, in {len(rounds)} rounds,"
        note(f"{len(frames)} frames: each held out {turns} against synthetic anomalies made from it")
    validations, labels, defects = [], [], []
    places = np.random.default_rng(options.seed).permutation(frames[0, 0].size)[:PIXEL_SAMPLE]
    for number, (seen, held) in enumerate(rounds):
        synthetic, _kinds = anomalies(frames[held], frames[seen], options.seed + number, polarity)
        validations.append(np.concatenate([frames[held], synthetic]))
        labels.append(np.repeat([0, 1], [len(held), len(synthetic)]))
        pixels = masks(frames[held], synthetic).reshape(len(synthetic), -1)[:, places]
        defects.append(np.concatenate([np.zeros((len(held), len(places)), bool), pixels]))
    pixel_figures: dict[str, dict[str, float]] = {}  # candidate -> σ -> pixel AUROC
    device = resolve_device(options.device)
    # (AUROC, candidate: the family and its settings where it has some, method, config)
    results: list[tuple[float, str, str, ModelConfig]] = []
    per_round: list[list[np.ndarray]] = []  # each result's scores, round by round
    # One round is training's own split, holding out at least SPREAD_FRAMES (validation_rounds): the
    # frames whose spread the final model's -max-or-mean divides by.
    enough = len(rounds) == 1
    for name, settings in candidates(kind, found, polarity):
        family = family_named(name)
        label = name + "".join(f" ({key} {value})" for key, value in settings.items())
        config = make_config(name, {"channels": spec.channels, "image_size": spec.image_size, **settings})
        model: MemoryModel = family.model(config).to(device).eval()
        model.check_frames(frames.shape[1:])
        methods = [
            m
            for m in family.methods
            if not m.endswith(ENSEMBLE) and (enough or not m.endswith(SPREAD_METHOD))
        ]
        scores: dict[str, list[np.ndarray]] = {method: [] for method in methods}
        sampled = []  # each round's maps of each choice, at the sampled places
        choices = map_choices(True)
        for (seen, held), validation in zip(rounds, validations, strict=True):
            model.fit_normal_statistics(torch.from_numpy(frames[held]), torch.from_numpy(frames[seen]))
            choices = [c for c in choices if c in map_choices(len(model.cell_mean) > 0)]
            round_scores, round_maps = validation_outputs(model, methods, validation, places, device, choices)
            for method in methods:
                scores[method].append(round_scores[method])
            sampled.append(round_maps)
        maps = np.concatenate([m[: len(choices)] for m in sampled], axis=1)  # those every round measured
        figures = map_figures(np.concatenate(defects), maps, choices)
        sigma, z = max(figures, key=figures.get)
        pixel_figures[label] = {map_name(*choice): round(figure, 4) for choice, figure in figures.items()}
        config = dataclasses.replace(config, map_smooth=sigma, map_z=z)
        listed = ", ".join(f"{map_name(*c)} {f:.3f}" for c, f in figures.items())
        note(f"  {label}: anomaly map {map_name(sigma, z)}, σ in cells (synthetic defects' pixels: {listed})")
        for method in methods:
            estimate = auroc(np.concatenate(labels), np.concatenate(scores[method]))
            results.append((estimate, label, method, config))
            per_round.append(scores[method])
            note(f"  {label} / {method}: validation ROC-AUC {results[-1][0]:.3f}")
    estimates = np.array([r[0] for r in results])
    if len(rounds) > 1:  # small or medium: the first listed of those the estimate cannot tell from the best
        best = results[small_set_pick(results, labels, per_round, options.seed)]
        if best[0] < estimates.max():
            note(f"  {best[1]} / {best[2]}: within one standard error of the best, and listed first")
    else:
        best = results[int(np.argmax(estimates))]  # the first of equals: the order of CANDIDATES
        one_round = [each[0] for each in per_round]  # a large set's validation is one round
        best = near_ties_averaged(results, one_round, labels[0], options.seed, note) or best
    return Choice(
        config=best[3],
        method=best[2],
        estimate=best[0],
        kind=kind,
        object_share=share,
        candidate=best[1],
        candidates=[{"family": r[1], "method": r[2], "validation_auroc": round(r[0], 4)} for r in results],
        map_smoothing=pixel_figures.get(best[1], {}),
    )


def map_choices(measured: bool) -> list[tuple[float, bool]]:
    """The anomaly maps training chooses among, (σ in cells, ``map_z``): each σ of MAP_SMOOTHING, as
    it is and, where the memory ``measured`` each cell's normal distances, against them."""
    return [(sigma, z) for z in (False, True)[: 1 + measured] for sigma in MAP_SMOOTHING]


def map_name(sigma: float, z: bool) -> str:
    """How training's output and the checkpoint name a choice of the map."""
    return f"σ {sigma}" + (" against each cell's normal" if z else "")


def validation_outputs(
    model: MemoryModel,
    methods: Sequence[str],
    frames: np.ndarray,
    places: np.ndarray,
    device: torch.device,
    choices: Sequence[tuple[float, bool]],
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A memory's scores of frames (N, C, H, W) by each method (N,), and its anomaly maps of each
    of the ``choices`` (``map_choices``) at the flat pixel indices ``places``: (len(choices), N, P)."""
    scores: dict[str, list[np.ndarray]] = {method: [] for method in methods}
    maps = []
    for start in range(0, len(frames), 32):
        x = torch.from_numpy(frames[start : start + 32]).to(device)
        batch_scores, batch_maps = model.validation_outputs(x, methods, choices)
        for method, score in batch_scores.items():
            scores[method].append(score.cpu().numpy())
        maps.append(torch.stack([m.flatten(1)[:, places] for m in batch_maps]).cpu().numpy())
    return {m: np.concatenate(s) for m, s in scores.items()}, np.concatenate(maps, axis=1)


def map_figures(
    defects: np.ndarray, maps: np.ndarray, choices: Sequence[tuple[float, bool]]
) -> dict[tuple[float, bool], float]:
    """How well each choice's maps (len(choices), N, P) rank the defects' pixels (N, P) against the
    others: pooled pixel ROC-AUC (the best, first of equals, is the one training keeps)."""
    return {choice: auroc(defects.ravel(), m.ravel()) for choice, m in zip(choices, maps, strict=True)}


def near_ties_averaged(
    results: list[tuple[float, str, str, ModelConfig]],
    scores: list[np.ndarray],
    labels: np.ndarray,
    seed: int,
    note: Note,
) -> tuple[float, str, str, ModelConfig] | None:
    """The best candidate's ensemble of its methods within one standard error of the best one (each
    result's validation ``scores`` of one round, ``labels``), best first, where there are two or
    more; else None. Appended to ``results``, its estimate that of
    the average of the methods' scores, each counted in standard deviations of the normal
    frames' (what the model's ``-ensemble`` computes from the same held-out frames)."""
    best = int(np.argmax([r[0] for r in results]))
    family = family_of_config(results[best][3])
    averaged = next(m for m in family.methods if m.endswith(ENSEMBLE))
    same = [i for i, r in enumerate(results) if r[1] == results[best][1]]
    tied = [
        i
        for i in sorted(same, key=lambda i: -results[i][0])
        if i == best
        or results[best][0] - results[i][0] <= paired_auroc_error(labels, scores[best], scores[i], seed)
    ]
    if len(tied) < 2:
        return None
    members = np.stack([scores[i] for i in tied], axis=1)
    mean, spread = (t.numpy() for t in normal_statistics(torch.from_numpy(members[labels == 0])))
    averaged_scores = ((members - mean) / spread).mean(axis=1)
    names = tuple(results[i][2] for i in tied)
    config = dataclasses.replace(results[best][3], ensemble=names)
    result = (auroc(labels, averaged_scores), results[best][1], averaged, config)
    results.append(result)
    note(
        f"  {results[best][1]} / {averaged} of {', '.join(names)} (within one standard error of the best, "
        f"averaged): validation ROC-AUC {result[0]:.3f}"
    )
    return result


def small_set_pick(
    results: list[tuple[float, str, str, ModelConfig]],
    labels: list[np.ndarray],
    per_round: list[list[np.ndarray]],
    seed: int,
) -> int:
    """Which result a set validated in rounds keeps (an index into ``results``, each with its
    scores round by round): the first candidate listed whose best method lies within one
    standard error of the best candidate's, then that candidate's first method within one
    standard error of its best. In two steps, so that a candidate listed later displaces the ones
    before it only where it is clearly better: compared method by method, one more candidate
    moved which of the first candidate's methods lay within one error (depth hand poses, 6
    frames: the glimpse at 256 px beside the one at 112 px moved a fold's pick from its
    ``glimpse-mean``, ROC-AUC 1.0, to its ``glimpse-max``, 0.64)."""
    estimates = np.array([r[0] for r in results])
    listed = list(dict.fromkeys(r[1] for r in results))  # the candidates, in their order
    members = [[i for i, r in enumerate(results) if r[1] == name] for name in listed]
    tops = [max(own, key=lambda i: estimates[i]) for own in members]  # the first of equals
    close = within_one_error(labels, [per_round[i] for i in tops], estimates[tops], seed)
    own = members[int(np.argmax(close))]
    close = within_one_error(labels, [per_round[i] for i in own], estimates[own], seed)
    return own[int(np.argmax(close))]


def within_one_error(
    labels: list[np.ndarray], per_round: list[list[np.ndarray]], estimates: np.ndarray, seed: int
) -> np.ndarray:
    """Which candidates' validation ROC-AUC lies within one standard error of the best one's (the
    one-standard-error rule of model selection). The error is the spread of their gap over
    BOOTSTRAPS resamples of the validation rounds (each held-out frame with the anomalies made
    from it), paired: what the candidates share cancels."""
    rng = np.random.default_rng(seed)
    resampled = np.empty((BOOTSTRAPS, len(per_round)))
    for b in range(BOOTSTRAPS):
        pick = rng.integers(0, len(labels), len(labels))
        truth = np.concatenate([labels[i] for i in pick])
        for c, rounds in enumerate(per_round):
            resampled[b, c] = auroc(truth, np.concatenate([rounds[i] for i in pick]))
    best = int(np.argmax(estimates))
    return estimates[best] - estimates <= (resampled[:, [best]] - resampled).std(axis=0)


def paired_auroc_error(labels: np.ndarray, scores: np.ndarray, other: np.ndarray, seed: int = 0) -> float:
    """One standard error of ROC-AUC(scores) − ROC-AUC(other), two scores of the same frames
    (labels 0/1): its spread over BOOTSTRAPS resamples of the normal and the anomalous frames
    apart (each resample keeps both), paired, so what the two scores share cancels."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    positive, negative = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
    gaps = np.empty(BOOTSTRAPS)
    for i in range(BOOTSTRAPS):
        pick = np.r_[rng.choice(positive, len(positive)), rng.choice(negative, len(negative))]
        gaps[i] = auroc(labels[pick], scores[pick]) - auroc(labels[pick], other[pick])
    return float(gaps.std())


def train_default(
    frames: np.ndarray,
    spec: FrameSpec,
    options: TrainOptions,
    progress: ProgressFn | None = None,
    records: Sequence[dict[str, Any]] | None = None,
    note: Note | None = None,
) -> Checkpoint:
    """Choose a detector for the normal frames (``choose``), train it, and keep the choice in
    the checkpoint: its scoring method is the chosen one."""
    choice = choose(frames, spec, options, note)
    checkpoint = train(frames, choice.config, spec, options, progress, records=records)
    checkpoint.metadata.update(choice.metadata())
    return checkpoint
