"""A tiny run of the throughput benchmark end to end (embedded): it measures and reports.

No timing is asserted: the numbers depend on the machine and its load.
"""

from __future__ import annotations

from pathlib import Path

from bench import throughput as bench


def test_a_tiny_run_measures_the_detector_and_the_embedded_pipeline(tmp_path: Path) -> None:
    budget = bench.Budget(
        burst=12, steady_seconds=1.0, sweep_seconds=0.1, confirm_seconds=0.1, batch_sizes=(4,), timeout=120.0
    )
    bench.make_checkpoint(tmp_path / "model.pt")
    frames = bench.make_frames(8 + 10 + 12)
    assert len(set(frames)) == len(frames)  # every frame is new content
    layouts = [bench.Layout(1, 1), bench.Layout(2, 1)]
    ceiling = bench.measure_detector(tmp_path / "model.pt", "cpu", budget.batch_sizes, budget, layouts)
    assert [p.layout for p in ceiling.sweep] == layouts and ceiling.best.batch_size == 4 and ceiling.fps > 0

    url = f"sqlite:///{tmp_path / 'data' / 'inspector.db'}"
    env = {
        "INSPECTOR_MODEL_PATH": str(tmp_path / "model.pt"),
        "INSPECTOR_DEVICE": "cpu",
        "INSPECTOR_EXECUTOR": "inline",
        "INSPECTOR_DATA_DIR": str(tmp_path / "data"),
        "INSPECTOR_DATABASE_URL": url,
        "INSPECTOR_WATCH__BATCH_SIZE": "4",
        "INSPECTOR_WATCH__SETTLE_SECONDS": "0.1",
        "OMP_NUM_THREADS": "1",
    }
    steady, burst = bench.measure_pipeline("embedded", env, url, tmp_path, frames, 10.0, budget, batch_size=4)
    assert (steady.phase, burst.phase, burst.frames) == ("steady", "burst", 12)
    for phase in (steady, burst):
        assert phase.fps > 0 and phase.latency[0] <= phase.latency[1] <= phase.latency[2]
        assert phase.waiting[0] > 0 and phase.cpu_ms > 0

    for phase in (steady, burst):
        phase.ceiling_around = ceiling.fps
    text = bench.report(
        ceiling,
        [ceiling.fps],
        [steady, burst],
        bench.machine(),
        "python bench/throughput.py",
        "cpu",
        budget,
        4,
        2,
    )
    assert "| embedded | burst | 12 | burst |" in text and "Ceiling:" in text
    assert "measured again after each pipeline mode" in text and f"({ceiling.fps:.1f}) |" in text
