"""A memory of normal patches (after PatchCore, Roth et al. 2022), shared by the two memory families.

After training, the backbone's patch features (backbone.py) of the normal training frames
are kept in a bank; a new frame's patch scores its distance to the nearest patch there:
    d(p) = min over m in the bank of ‖f(p) − m‖
Nothing is learnt by gradient steps, so the memory cannot overfit or diverge, and a frame of
a kind never seen scores high wherever it differs. The bank keeps at most ``bank_size``
patches, ``coreset_fraction`` of the training ones (all of them from fewer than
``whole_below`` frames), chosen by greedy k-centre (each next one the patch farthest from
those kept, in a random 64-dimensional projection), so that rare normal patches are kept
where a random subset would drop them. Frames a retraining marks to remember whole (reviewed
false alarms) add to that the patches it leaves farther than it covers its own (``fill``).

Scores of the distance map: ``-max``, the peak of the map smoothed by σ = ``smooth`` feature
cells (PatchCore: σ 4 px at stride 8, half a cell), for a local defect; ``-max-inner``, the
same peak over all but the outermost ring of cells, whose features saw the backbone's
padding beyond the frame (on the magnetic tiles' held-out training frames the peaks of normal
frames sat in the corners, and validation on synthetic anomalies rose from 0.79 to 0.84 without
them), its map the whole smoothed map all the same (a defect at the edge still shows);
``-mean``, the mean distance, for a frame that differs everywhere a little (another object);
``-max-or-mean`` (ours), the larger of those two, each counted in standard deviations of the
held-out normal frames' own (as ``vaegan+`` combines its signals), for lines whose defects
come both small and sprawling: a scratch lifts the peak, uneven coating the mean;
``-ensemble`` (ours), the mean of the ``ensemble`` methods' scores, each counted in standard
deviations of the held-out normal frames' own: where the label-free validation cannot tell
methods apart, training averages them instead of tossing a coin (selection.py). A family
whose views include a small pixel view of the frame (the glimpse's) also keeps those views of
every training frame whole (``FrameMemory``), and ``-pixels`` scores the mean distance to the
NEIGHBOURS nearest of them in pixel space: the classic glimpse-kNN peer, which beats the
backbone's patches on some object sets (the UCI digits) and loses on others (noisy MNIST).
Training's label-free choice picks among a family's methods. Every method's map, what
operators see and pixel metrics read, is the distance map smoothed by σ = ``map_smooth``
cells, which training chooses on the synthetic anomalies' own pixels (selection.py): a line
whose defects sprawl wants a smoother map than one of pinholes. Training also chooses there
whether the map counts each cell's distance in standard deviations of that cell's distances
on normal training frames (``map_z``, ours, as ``vaegan-z`` measures each pixel's error): where
every frame has its edges and fixtures at the same places, they stand out in every map until
each cell is measured against its own normal (magnetic tiles' validation: 0.951 → 0.957).

Beside the memory, each family trains the paper's VAEGAN (vaegan.py) on a small view of the
frame, for one reason: operators keep seeing its discriminator's Grad-CAM map in the
dashboard, whatever scores the frame. It has no part in the score, so it is kept small
(the ``width`` and ``latent_dim`` below); its reconstruction is the frame's
``reconstruction`` map.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from inspector.models import backbone
from inspector.models.base import AnomalyModel, Scores
from inspector.models.blocks import gaussian_blur
from inspector.models.vaegan import VAEGAN, VAEGANConfig, VAEGANTrainer

CANDIDATES = 100_000  # training patches the coreset picks from (a random subset beyond)
REMEMBERED = 300_000  # patches of frames to remember whole it picks from, at most (a subset beyond)
PROJECTION = 64  # dimensions of the random projection the coreset measures distances in
QUERY_CHUNK = 2048  # patches per distance computation: bounds the (chunk × bank) matrix
NEAREST = 4  # candidates of the fast distance whose exact distance is computed
NEIGHBOURS = 5  # nearest remembered views whose mean distance -pixels scores (the glimpse-kNN peer's 5)
VIEWS_KEPT = 20_000  # training frames whose pixel views FrameMemory keeps, at most (a random subset beyond)
ENSEMBLE = "-ensemble"  # the end of the name of a family's ensemble method
PIXELS = "-pixels"  # the end of the name of a family's method on its kept pixel views
MAP_SMOOTHING = (0.5, 1.0, 1.5, 2.0, 3.0)  # σ of the anomaly map that training chooses among, in cells
CELL_FRAMES = 100  # training frames whose distances give each cell's normal ones (evenly spaced)


@dataclass
class MemoryConfig(VAEGANConfig):
    """The memory's settings; the VAEGAN's (inherited) are those of the Grad-CAM network,
    smaller than the paper's by default since it only draws the map."""

    width: int = 16
    latent_dim: int = 32
    batch_size: int = 32
    attention_frames: int = 6400  # frames the Grad-CAM VAEGAN trains on in all (then steps are skipped)
    bank_size: int = 8192  # the most patches kept of frames not remembered whole: the cost per patch
    coreset_fraction: float = 0.1  # of the training patches kept (PatchCore: 0.01-0.1) ...
    # ... where there are at least this many training frames; fewer are remembered whole (up to
    # bank_size patches): a tenth of a handful of frames drops normal detail at random (depth hand
    # poses, 6 frames: ROC-AUC 0.955-1.0 over candidate orders at a tenth, 1.0 whole)
    whole_below: int = 20
    smooth: float = 0.5  # σ of the distance map's smoothing for the -max score, in feature cells
    map_smooth: float = 0.5  # σ of the anomaly map's, in feature cells: training chooses it (MAP_SMOOTHING)
    ensemble: tuple[str, ...] = ()  # the methods -ensemble averages (training's choice); () = all others
    map_z: bool = False  # the map against each cell's normal distances: training chooses it
    UNVERSIONED: ClassVar[dict[str, Any]] = {"ensemble": (), "map_smooth": 0.5, "map_z": False}


def normal_statistics(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and spread of normal frames' scores (N, K), per column: what counts a score in standard
    deviations of the normal ones. The spread is at least 1% of the mean: a held-out frame or two
    (a set of ten) may show no spread at all. Not more: the tiles' normal mean distances vary by 4%
    of their mean, and a floor of 10% weighed peak and mean like their ratios to the mean (tiles
    0.939 instead of 0.955)."""
    mean, spread = scores.mean(dim=0), scores.std(dim=0, correction=0)
    return mean, torch.maximum(spread, 0.01 * mean.abs()).clamp_min(1e-6)


def greedy_coreset(
    points: torch.Tensor,
    size: int,
    generator: torch.Generator,
    remembered: torch.Tensor | None = None,
    extra: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``size`` of the points (P, D): the first the farthest from their mean, each next
    the farthest from those chosen before (the same points in any order give the same ones), and
    of up to ``extra`` of the ``remembered`` points (R, D), chosen the same way from there
    while any is farther from the chosen than the farthest of the points is: the remembered
    points are covered as finely as the others, and never displace them."""
    projection = torch.randn(points.shape[1], PROJECTION, generator=generator) / math.sqrt(PROJECTION)
    projection = projection.to(points.device)
    z = points @ projection
    if len(points) <= size:
        chosen, radius = list(range(len(points))), 0.0
    else:
        squares = z.square().sum(dim=1)
        first = int((z - z.mean(dim=0)).square().sum(dim=1).argmax())
        nearest = squares - 2 * (z @ z[first]) + squares[first]
        chosen = [first, *_farthest(z, squares, nearest, size - 1)]
        radius = float(nearest.max())
    added: list[int] = []
    if remembered is not None and len(remembered) and extra > 0:
        r = remembered @ projection
        squares, kept = r.square().sum(dim=1), z[chosen]
        nearest = torch.cat(
            [
                (part.square().sum(dim=1, keepdim=True) - 2 * part @ kept.T + kept.square().sum(dim=1)).amin(
                    1
                )
                for part in r.split(QUERY_CHUNK)
            ]
        )
        added = _farthest(r, squares, nearest, extra, above=radius)
    return torch.tensor(chosen, dtype=torch.long), torch.tensor(added, dtype=torch.long)


def _farthest(
    z: torch.Tensor, squares: torch.Tensor, nearest: torch.Tensor, count: int, above: float = -math.inf
) -> list[int]:
    """Up to ``count`` more of the projected points z (their squared norms ``squares``), each the
    farthest from those chosen so far (``nearest``: each one's squared distance to them, updated
    in place), while that distance is above ``above``."""
    chosen = []
    for _ in range(count):
        k = int(nearest.argmax())
        if float(nearest[k]) <= above:
            break
        chosen.append(k)
        torch.minimum(nearest, squares - 2 * (z @ z[k]) + squares[k], out=nearest)
    return chosen


def _draw(frame: torch.Tensor, patches: int, count: int) -> torch.Tensor:
    """``count`` of a frame's ``patches`` indices at random, seeded by its pixels (on any device);
    all of them, in order, if there are no more."""
    if count >= patches:
        return torch.arange(patches)
    digest = hashlib.sha256(frame.detach().cpu().contiguous().numpy().tobytes()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.randperm(patches, generator=generator)[:count]


def _inner_peak(maps: torch.Tensor) -> torch.Tensor:
    """The peak of maps (N, 1, h, w) over all but the outermost ring of cells, whose features saw
    the backbone's padding (over all of a grid too small to have an inside)."""
    inner = maps[..., 1:-1, 1:-1] if min(maps.shape[-2:]) > 2 else maps
    return inner.flatten(1).amax(dim=1)


class PatchMemory(nn.Module):
    """The bank of normal patch features (M, D), a buffer saved with the weights."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("bank", torch.zeros(0, dim))

    @torch.no_grad()
    def fit(
        self,
        patches: torch.Tensor,
        size: int,
        seed: int = 0,
        remembered: torch.Tensor | None = None,
        extra: int = 0,
    ) -> None:
        """Keep ``size`` of the normal patches (P, D), chosen by greedy k-centre, and up to
        ``extra`` of the ``remembered`` ones (R, D): those the others do not cover (greedy_coreset)."""
        if not len(patches):
            raise ValueError("no normal patches to remember")
        generator = torch.Generator().manual_seed(seed)
        chosen, added = greedy_coreset(patches, size, generator, remembered, extra)
        kept = [patches[chosen]] + ([remembered[added]] if len(added) else [])
        self.bank = torch.cat(kept).contiguous()

    @torch.no_grad()
    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Features (N, D, h, w) -> each patch's distance to its nearest normal one (N, h, w)."""
        if not len(self.bank):
            raise RuntimeError("the memory of normal patches is empty: fit it on normal frames first")
        n, d, h, w = features.shape
        queries = features.permute(0, 2, 3, 1).reshape(-1, d)
        return torch.cat([self._nearest(chunk) for chunk in queries.split(QUERY_CHUNK)]).view(n, h, w)

    def _nearest(self, queries: torch.Tensor) -> torch.Tensor:
        """Distances (Q,) to the nearest bank patch. The fast ‖q‖² − 2q·m + ‖m‖² loses digits to
        cancellation, differently for each batch size, so it only picks the NEAREST nearest
        candidates; their distances are computed exactly: a patch scores the same in any batch
        and on any device."""
        candidates = torch.cdist(queries, self.bank).topk(min(NEAREST, len(self.bank)), largest=False)
        return (queries[:, None] - self.bank[candidates.indices]).norm(dim=2).amin(dim=1)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # The bank's size depends on the training set: take the saved one before loading.
        if prefix + "bank" in state_dict:
            self.bank = torch.empty_like(state_dict[prefix + "bank"], device=self.bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class FrameMemory(nn.Module):
    """Whole views of normal frames (M, D), flattened pixels, a buffer saved with the weights."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("views", torch.zeros(0, dim))

    @torch.no_grad()
    def fit(self, views: torch.Tensor, remembered: torch.Tensor) -> None:
        """Keep the views (N, D): every ``remembered`` one (flags (N,)), and of the others
        VIEWS_KEPT at most, a random subset fixed by their number."""
        others = torch.nonzero(~remembered).flatten()
        if len(others) > VIEWS_KEPT:
            pick = torch.randperm(len(others), generator=torch.Generator().manual_seed(len(others)))
            others = others[pick[:VIEWS_KEPT]].sort().values
        kept = torch.cat([others, torch.nonzero(remembered).flatten()])
        self.views = views[kept.to(views.device)].contiguous()

    @torch.no_grad()
    def distances(self, views: torch.Tensor) -> torch.Tensor:
        """Views (N, D) -> the mean distance to the NEIGHBOURS nearest kept ones (N,); the fast
        distance picks candidates, their distances are exact (as ``PatchMemory._nearest``)."""
        if not len(self.views):
            raise RuntimeError("no normal views remembered: this model was trained before -pixels existed")
        k = min(NEIGHBOURS, len(self.views))
        candidates = torch.cdist(views, self.views).topk(min(k + NEAREST, len(self.views)), largest=False)
        exact = (views[:, None] - self.views[candidates.indices]).norm(dim=2)
        return exact.topk(k, dim=1, largest=False).values.mean(dim=1)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # Its size depends on the training set; checkpoints from before -pixels have none (empty).
        saved = state_dict.setdefault(prefix + "views", self.views[:0])
        self.views = torch.empty_like(saved, device=self.views.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class DistanceMaps(NamedTuple):
    """A batch's distances to the memory, as its methods read them."""

    cells: torch.Tensor  # each patch's distance (N, 1, h, w), on the feature grid
    smooth: torch.Tensor  # the same smoothed by σ = ``smooth`` cells
    frame: torch.Tensor  # the smoothed one at the frame's resolution (N, H, W): the -max score's
    z: torch.Tensor | None  # cells in standard deviations of each cell's normal distances, if known
    views: torch.Tensor | None  # the pixel view's mean distance to its nearest kept ones (N,), if any


class Views(NamedTuple):
    """What a memory family makes of a batch of frames (N, C, H, W)."""

    features: torch.Tensor  # the backbone's input
    network: torch.Tensor  # the Grad-CAM VAEGAN's input (N, C, s, s)
    to_frame: Callable[[torch.Tensor], torch.Tensor]  # maps (N, K, h, w) on either -> (N, K, H, W)
    pixels: torch.Tensor | None = None  # a small view (N, C, s, s) whose pixels FrameMemory compares


class MemoryModel(AnomalyModel):
    """What both memory families share; each says what the backbone and the VAEGAN see."""

    config: MemoryConfig
    network: VAEGAN  # the Grad-CAM VAEGAN, set by the family
    remembers_frames = True
    # What -ensemble averages where the config names nothing (models saved before training chose
    # its members): every other method of the family, or those the family lists here.
    default_ensemble: tuple[str, ...] = ()
    pixel_view_size: int = 0  # side of the ``Views.pixels`` a family makes (0: none, no FrameMemory)

    def __init__(self, config: MemoryConfig):
        super().__init__(config)
        self.backbone = backbone.Backbone()
        self.memory = PatchMemory(backbone.DIM)
        size = self.pixel_view_size
        self.frame_memory = FrameMemory(config.channels * size * size) if size else None
        others = tuple(m for m in self.scoring_methods if not m.endswith(ENSEMBLE))
        self.ensemble = tuple(config.ensemble) or self.default_ensemble or others
        if unknown := set(self.ensemble) - set(others):
            raise ValueError(f"an ensemble of {sorted(unknown)}: {type(self).__name__} averages {others}")
        # Mean and spread on held-out normal frames (fit_normal_statistics) of the (peak, mean)
        # distance and of the ensemble's methods' scores.
        self.register_buffer("signal_mean", torch.zeros(2))
        self.register_buffer("signal_std", torch.ones(2))
        self.register_buffer("ensemble_mean", torch.zeros(len(self.ensemble)))
        self.register_buffer("ensemble_std", torch.ones(len(self.ensemble)))
        # Each cell's mean and spread of distance on normal training frames (h, w), for ``map_z``:
        # empty until ``fill`` measures them (too few frames, or a model from before map_z).
        self.register_buffer("cell_mean", torch.zeros(0))
        self.register_buffer("cell_std", torch.zeros(0))

    def views(self, x: torch.Tensor) -> Views:
        raise NotImplementedError

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the Grad-CAM VAEGAN trains on."""
        return self.views(x).network

    @torch.no_grad()
    def fit_normal_statistics(
        self,
        held_out: torch.Tensor,
        seen: torch.Tensor,
        remember: torch.Tensor | None = None,
        batch: int = 32,
    ) -> None:
        """Fill the memory with the training frames (``fill``), then measure the held-out ones'
        signals, and then (-max-or-mean among them) the ensemble's methods' scores."""
        self.fill(seen, remember, batch)
        device = next(self.backbone.parameters()).device
        batches = (held_out[i : i + batch].to(device) for i in range(0, len(held_out), batch))
        pixels = self._check_methods(self.ensemble)  # whether its members read the pixel views
        maps = [self._maps(self.views(x), pixels) for x in batches]
        mean, spread = normal_statistics(torch.cat([self._signals(m) for m in maps]))
        self.signal_mean.copy_(mean)
        self.signal_std.copy_(spread)
        scores = [self._scores(m) for m in maps]
        members = torch.stack([torch.cat([s[_kind(m)] for s in scores]) for m in self.ensemble], dim=1)
        mean, spread = normal_statistics(members)
        self.ensemble_mean.copy_(mean)
        self.ensemble_std.copy_(spread)

    def remember_all(self, frames: torch.Tensor, remember: torch.Tensor | None = None) -> None:
        self.fill(frames, remember)

    @torch.no_grad()
    def fill(self, seen: torch.Tensor, remember: torch.Tensor | None = None, batch: int = 32) -> None:
        """Remember the training frames' patches: the coreset of CANDIDATES of them (as many from
        each frame, drawn at random seeded by its pixels), then of the frames marked ``remember``
        (a retraining's reviewed false alarms: the normal appearance the live memory lacked),
        whose patches are all candidates (REMEMBERED at most), those the others' coreset does not
        cover as finely as it covers theirs, ``coreset_fraction`` of them at most
        (``greedy_coreset``). A retraining that holds out the same frames draws the same patches
        of its live model's frames and keeps the same coreset of them: the two memories differ
        by the frames added, and the reviewed ones never displace what the live memory held."""
        device = next(self.backbone.parameters()).device
        c = self.config
        whole = torch.zeros(len(seen), dtype=torch.bool) if remember is None else remember.cpu()
        # The frames counted for the coreset's share: those not remembered (all, if every one is).
        # A retraining keeps its live model's share of them.
        counted = torch.nonzero(~whole).flatten() if (~whole).any() else torch.arange(len(seen))
        sampled = len(counted) >= c.whole_below  # else the memory keeps every patch
        share = c.coreset_fraction if sampled else 1.0
        # CELL_FRAMES of them, evenly spaced, whose features measure each cell's normal distance.
        spaced = torch.linspace(0, len(counted) - 1, min(CELL_FRAMES, len(counted))).round().long()
        measured = set(counted[spaced].tolist()) if sampled else set()
        cell_features = []
        per_frame = {
            False: math.ceil(CANDIDATES / max(1, int((~whole).sum()))),
            True: math.ceil(REMEMBERED / max(1, int(whole.sum()))),
        }
        kept: dict[bool, list[torch.Tensor]] = {False: [], True: []}
        total = {False: 0, True: 0}
        pixels = []
        for start in range(0, len(seen), batch):
            frames = seen[start : start + batch]
            views = self.views(frames.to(device))
            if views.pixels is not None:
                pixels.append(views.pixels.flatten(1))
            features = self.backbone(views.features)
            patches = features.permute(0, 2, 3, 1).reshape(len(features), -1, features.shape[1])
            for frame, own, keep in zip(frames, patches, whole[start : start + batch].tolist(), strict=True):
                kept[keep].append(own[_draw(frame, len(own), per_frame[keep]).to(device)])
                total[keep] += len(own)
            cell_features += [
                features[i - start].clone() for i in range(start, start + len(frames)) if i in measured
            ]
        if not kept[False]:  # every frame to remember: one coreset of them
            kept, total = {False: kept[True], True: []}, {False: total[True], True: 0}
        size = max(1, min(c.bank_size, math.ceil(share * total[False])))
        remembered = torch.cat(kept[True]) if kept[True] else None
        self.memory.fit(
            torch.cat(kept[False]), size, remembered=remembered, extra=math.ceil(share * total[True])
        )
        if self.frame_memory is not None:
            self.frame_memory.fit(torch.cat(pixels), whole)
        self._fit_cells(cell_features)

    @torch.no_grad()
    def _fit_cells(self, features: list[torch.Tensor]) -> None:
        """Each cell's normal distance, mean and spread (``normal_statistics``), from the features
        (D, h, w) ``fill`` kept of CELL_FRAMES training frames. Theirs are normal frames' distances
        only where the memory sampled their patches (a coreset of a tenth); where it kept every
        patch (fewer than ``whole_below`` frames) they would all be ~0: none are kept then, and a
        ``map_z`` model refuses to train."""
        self.cell_mean, self.cell_std = self.cell_mean.new_zeros(0), self.cell_std.new_zeros(0)
        if features:
            cells = self.memory.distances(torch.stack(features))
            mean, spread = normal_statistics(cells.flatten(1))
            self.cell_mean, self.cell_std = (t.view(cells.shape[-2:]) for t in (mean, spread))
        elif self.config.map_z:
            raise ValueError(
                f"a map measured against each cell's normal distances (map_z) needs at least "
                f"{self.config.whole_below} training frames not remembered whole"
            )

    def _cells(self, views: Views) -> torch.Tensor:
        """Each patch's distance to the memory (N, 1, h, w), on the feature grid."""
        return self.memory.distances(self.backbone(views.features))[:, None]

    def _maps(self, views: Views, pixels: bool) -> DistanceMaps:
        """Each patch's distance to the memory, as it is, smoothed, and at the frame's resolution;
        with ``pixels``, the pixel view's distance to the kept ones too."""
        cells = self._cells(views)
        smooth = gaussian_blur(cells, self.config.smooth)
        nearest = None
        if pixels and self.frame_memory is not None and views.pixels is not None:
            nearest = self.frame_memory.distances(views.pixels.flatten(1))
        z = (cells - self.cell_mean) / self.cell_std if self.cell_mean.shape == cells.shape[-2:] else None
        return DistanceMaps(cells, smooth, views.to_frame(smooth)[:, 0], z=z, views=nearest)

    @staticmethod
    def _signals(maps: DistanceMaps) -> torch.Tensor:
        """(peak away from the outer ring, mean) of the distances -> (N, 2), at the feature grid's
        resolution (the frame's would only interpolate between the same cells)."""
        return torch.stack([_inner_peak(maps.smooth), maps.cells.flatten(1).mean(dim=1)], dim=1)

    def _scores(self, maps: DistanceMaps) -> dict[str, torch.Tensor]:
        """Every method's scores (N,) but the ensemble's, by the kind of method (the name's end)."""
        signals = self._signals(maps)
        scores = {
            "mean": signals[:, 1],
            "max-inner": signals[:, 0],  # the peak away from the outer ring; the map keeps it
            "max-or-mean": ((signals - self.signal_mean) / self.signal_std).amax(dim=1),
            "max": maps.frame.flatten(1).amax(dim=1),
        }
        if maps.views is not None:
            scores["pixels"] = maps.views
        return scores

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # Checkpoints from before -max-or-mean lack its statistics; their methods do not read them.
        # Those from before -ensemble lack its: NaN, which its scoring refuses.
        for name, default in (
            ("cell_mean", self.cell_mean[:0]),  # from before map_z: none, and sized as saved
            ("cell_std", self.cell_std[:0]),
            ("signal_mean", self.signal_mean),
            ("signal_std", self.signal_std),
            ("ensemble_mean", self.ensemble_mean),
            ("ensemble_std", torch.full_like(self.ensemble_std, math.nan)),
        ):
            state_dict.setdefault(prefix + name, default)
        self.cell_mean = torch.empty_like(state_dict[prefix + "cell_mean"], device=self.cell_mean.device)
        self.cell_std = torch.empty_like(state_dict[prefix + "cell_std"], device=self.cell_std.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def score(self, x: torch.Tensor, method: str) -> Scores:
        return self.score_methods(x, (method,))[method]

    def score_methods(self, x: torch.Tensor, methods: Sequence[str]) -> dict[str, Scores]:
        pixels = self._check_methods(methods)
        with torch.no_grad():
            views = self.views(x)
            maps = self._maps(views, pixels)
            scores = self._method_scores(maps, methods)
            reconstruction = views.to_frame(self.network.reconstruct(views.network))
        attention = views.to_frame(self.network.grad_cam(views.network)[:, None])[:, 0]
        c = self.config
        anomaly_map = maps.frame  # the -max score's map, unless training chose another
        if c.map_z or c.map_smooth != c.smooth:
            anomaly_map = self._anomaly_maps(views, maps, [(c.map_smooth, c.map_z)])[0]
        return {
            method: Scores(
                score=score,
                reconstruction=reconstruction,
                error=anomaly_map,
                attention=attention,
                anomaly_map=anomaly_map,
            )
            for method, score in scores.items()
        }

    @torch.no_grad()
    def validation_outputs(
        self, x: torch.Tensor, methods: Sequence[str], choices: Sequence[tuple[float, bool]]
    ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """What training's label-free choice compares of frames (N, C, H, W), from one look at the
        memory and without the Grad-CAM network: each method's scores (N,), and the anomaly maps
        (N, H, W) each choice of the map (σ in cells, ``map_z``) would give."""
        pixels = self._check_methods(methods)
        views = self.views(x)
        maps = self._maps(views, pixels)
        return self._method_scores(maps, methods), self._anomaly_maps(views, maps, choices)

    @staticmethod
    def _anomaly_maps(
        views: Views, maps: DistanceMaps, choices: Sequence[tuple[float, bool]]
    ) -> list[torch.Tensor]:
        """The anomaly maps (N, H, W) of each choice (σ, map_z) of smoothing and measure."""
        if any(z for _sigma, z in choices) and maps.z is None:
            raise ValueError("this model has no cell statistics for a map against them (map_z): retrain it")
        return [
            views.to_frame(gaussian_blur(maps.z if z else maps.cells, sigma))[:, 0] for sigma, z in choices
        ]

    def _check_methods(self, methods: Sequence[str]) -> bool:
        """Refuse, before any work, a method this family lacks or this model cannot score; whether
        the methods read the pixel views' distances (``-pixels``, or an ensemble with it)."""
        for method in methods:
            self.check_method(method)
        averaged = any(m.endswith(ENSEMBLE) for m in methods)
        if averaged and self.ensemble_std.isnan().any():
            raise ValueError("this model was trained before -ensemble existed: retrain it to use it")
        wanted = [*methods, *(self.ensemble if averaged else ())]
        remembered = self.frame_memory is not None and len(self.frame_memory.views) > 0
        pixels = any(m.endswith(PIXELS) for m in wanted)
        if pixels and not remembered:
            raise ValueError("this model was trained before -pixels existed: retrain it to use it")
        return pixels

    def _method_scores(self, maps: DistanceMaps, methods: Sequence[str]) -> dict[str, torch.Tensor]:
        scores = self._scores(maps)
        if any(m.endswith(ENSEMBLE) for m in methods):
            members = torch.stack([scores[_kind(m)] for m in self.ensemble], dim=1)
            scores["ensemble"] = ((members - self.ensemble_mean) / self.ensemble_std).mean(dim=1)
        return {method: scores[_kind(method)] for method in methods}


def _kind(method: str) -> str:
    """What a memory method computes, whichever family's it is: ``patch-max-inner`` -> ``max-inner``."""
    return method.split("-", 1)[1]


class MemoryTrainer:
    """The memory needs no steps (fit_normal_statistics fills it): training trains the Grad-CAM
    VAEGAN, on ``attention_frames`` frames in all whatever the epochs (it draws a map, it does not
    score: on a 2-core CPU a step at 64 px took about a second under load, and 20 epochs of
    2700 frames would have been minutes of training for the map alone)."""

    def __init__(self, model: MemoryModel):
        self.model = model
        self.network = VAEGANTrainer(model.network)
        self.shown = 0

    def step(self, x: torch.Tensor) -> dict[str, float]:
        if self.shown >= self.model.config.attention_frames:
            return {}
        self.shown += len(x)
        return self.network.step(self.model.network_input(x))

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor) -> float:
        return self.network.validation_loss(self.model.network_input(x))
