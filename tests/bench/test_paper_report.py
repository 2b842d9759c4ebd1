"""The report: seeds averaged then digits, partial averages said so, the ablation paired run by run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import paper_report as report
from bench.paper_table import GRADCAM_ON_OURS


def fake_run(digit: int, seed: int, method: str, auc: dict[str, float], epochs: int = 3) -> dict:
    return {
        "digit": digit,
        "seed": seed,
        "method": method,
        "auc": auc,
        "epochs_run": epochs,
        "best_epoch": 2,
        "rule": {"patience": 1, "max_epochs": 5, "normals": 100},
        "curves": {
            "validation_auroc": {m: [0.5, 0.7, 0.6][:epochs] for m in auc if m != GRADCAM_ON_OURS},
            "losses": {"pixel": [3.0, 2.0, 1.0][:epochs], "val": [0.3, 0.2, 0.25][:epochs]},
        },
        "cpu_seconds": 10.0,
        "wall_seconds": 20.0,
        "commit": "abc1234",
        "host": "h",
        "machine": "2 CPU cores",
        "command": "python -m bench.paper_table",
        "finished_at": "2026-11-30T13:00:00Z",
    }


def test_table_averages_seeds_then_digits_and_flags_a_partial_average() -> None:
    runs = [fake_run(d, 0, "vaegan", {"vaegan": 0.5 + d / 100, "vaegan-attn": 0.6}) for d in range(3)]
    runs.append(fake_run(0, 1, "vaegan", {"vaegan": 0.7, "vaegan-attn": 0.6}))
    text = "\n".join(report.mnist_tables(runs))
    row = next(line for line in text.splitlines() if "`vaegan` |" in line and "paper" in line)
    cells = [c.strip() for c in row.split("|")]
    assert cells[3] == "0.600±0.100" and cells[5] == "0.510"  # digit 0: seeds 0.5 and 0.7
    means = [0.6, 0.51, 0.52]
    assert cells[7] == f"{np.mean(means):.3f}±{np.std(means):.3f}" and cells[8] == "3" and cells[9] == "1–2"
    verdicts = "\n".join(report.done_when(runs))
    assert "partial: 3 of 10 digits" in verdicts and "`anogan` (paper .54±.1): no run done yet" in verdicts


def test_ablation_pairs_the_two_scores_of_each_run() -> None:
    runs = [
        fake_run(0, 0, "vaegan+", {"vaegan+": 0.8, "vaegan-attn+": 0.9, GRADCAM_ON_OURS: 0.7}),
        fake_run(1, 0, "vaegan+", {"vaegan+": 0.5, "vaegan-attn+": 0.9, GRADCAM_ON_OURS: 0.7}),
    ]
    lines = report.ablation_lines(runs, "digit")
    ours = next(line for line in lines if line.startswith("| ours"))
    assert "| 2 | 0.650±0.150 | 0.700±0.000 | 0.050±0.150 | 1 of 2 | seed 0: +0.050 |" in ours
    assert any(line.startswith("| the paper's VAEGAN | 0 |") for line in lines)


def test_depth_figures_need_every_fold_of_a_seed() -> None:
    runs = [{"direction": "palm", "seed": 0, "auc": {"vaegan": v}} for v in (0.5, 0.6, 0.7, 0.8)]
    runs += [{"direction": "palm", "seed": 1, "auc": {"vaegan": 0.9}}]  # one fold of four
    assert report.depth_figures(runs) == {("palm", "vaegan"): {0: 0.65}}


def test_curves_figure_is_drawn(tmp_path: Path) -> None:
    runs = [fake_run(d, 0, "vaegan", {"vaegan": 0.5, "vaegan-attn": 0.6}) for d in range(2)]
    assert report.plot_curves(runs, "vaegan", tmp_path / "c.png", lambda r: str(r["digit"]), "t")
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert not report.plot_curves(runs, "vae", tmp_path / "none.png", str, "t")
