"""A tiny run of the throughput benchmark end to end (embedded): it measures and reports.

No timing is asserted: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import cpu, profiling
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
        assert phase.waiting[0] > 0 and set(phase.cpu) == {"watcher", "scorers"} and phase.cpu_ms > 0

    for phase in (steady, burst):
        phase.ceiling_around = ceiling.fps
        phase.detector_ms = ceiling.best.cpu_ms
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
    assert "| mode | phase | watcher | scorers | all | detector alone | **own** |" in text
    assert f"**{burst.cpu_ms - ceiling.best.cpu_ms:.3f}** |" in text


# Spends a given CPU time, says so, then sleeps until killed.
BUSY = (
    "import time\nstart = time.process_time()\nwhile time.process_time() - start < {}: pass\n"
    "print('spent', flush=True)\ntime.sleep(60)\n"
)


def _busy(seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUSY.format(seconds)], stdout=subprocess.PIPE, text=True)


def test_the_meter_counts_each_group_and_a_process_born_during_the_stretch_from_zero() -> None:
    before = _busy(0.6)
    later: list[subprocess.Popen] = []
    meter = cpu.Meter({"before": lambda: [before.pid], "later": lambda: [p.pid for p in later]})
    meter.start()
    later.append(_busy(0.3))
    try:
        for child in (before, *later):
            assert child.stdout is not None and child.stdout.readline() == "spent\n"
        spent = meter.stop()
    finally:
        for child in (before, *later):
            child.kill()
            child.wait()
    assert 0.3 <= spent["later"] <= 0.6  # its interpreter start-up too, not less than its loop
    assert 0.1 <= spent["before"] <= 0.7  # only what it spent after start()


def test_a_profile_shares_out_each_roles_measured_cpu_by_category() -> None:
    raw = "\n".join(
        [
            'process 1:"watch";thread (1): MainThread;run (inspector/pipeline/watcher.py:9);'
            "hash_file (inspector/pipeline/ledger.py:5);read (<frozen>:1) 3",
            'process 1:"watch";thread (1): MainThread;run (inspector/pipeline/watcher.py:9) 1',
            'process 1:"watch";process 2:"scorer";thread (2): MainThread;'
            "_score (inspector/pipeline/process.py:1);frame_from_bytes (inspector/frames.py:3);"
            "decode (inspector/frames.py:4) 2",
            'process 1:"watch";process 2:"scorer";thread (2): MainThread;'
            "Detector.score_arrays (inspector/detector.py:1);forward (torch/nn.py:1) 6",
        ]
    )
    profile = profiling.summarise(
        raw, lambda pid: "watcher" if pid == 1 else "scorers", {"watcher": 0.4, "scorers": 4.0}
    )
    assert profile.by_category["watcher"] == {"read + hash (watcher)": 3, profiling.OTHER: 1}
    assert profile.by_category["scorers"] == {"decode + preprocess": 2, "model (Detector.score_arrays)": 6}
    assert abs(profile.ms_per_frame("watcher", 3) - 0.3) < 1e-9 and profile.ms_per_frame("scorers", 2) == 1.0
    text = "\n".join(profiling.table(profile))
    assert "| read + hash (watcher) | 0.000 | 0.300 |" in text and "`decode` 1.000" in text
