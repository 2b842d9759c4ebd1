"""The drift benchmark's shifts and alarm bookkeeping (the full run is minutes; see bench/)."""

from __future__ import annotations

import numpy as np

from bench import drift as bench
from inspector.config import DriftSettings
from inspector.pipeline.drift import judge, judge_scores


def test_shifts_do_what_they_say() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(50, 200, (256, 512)).astype(np.float32)  # 4 raw pixels per model pixel
    moved = bench.moved(raw)
    assert np.array_equal(moved[20:, 20:], raw[:-20, :-20])  # the scene 5 model pixels along
    assert np.allclose(bench.brightness(raw), raw + 40)
    blurred = bench.blur(raw)
    assert blurred.std() < raw.std() / 3 and abs(blurred.mean() - raw.mean()) < 1
    noisy = bench.noise(raw, rng) - raw
    assert abs(noisy.std() - 0.05 * 255) < 0.5
    ordinary = bench.ordinary(raw, rng)
    assert ordinary.shape == raw.shape and abs(ordinary.mean() / raw.mean() - 1) < 0.03


def test_alarms_after_every_frame_are_the_products_tests() -> None:
    rng = np.random.default_rng(1)
    settings = DriftSettings()
    reference, levels_reference = rng.normal(0, 1, 63), rng.uniform(0.3, 0.6, 634)
    alarm = bench.Alarm(reference, levels_reference, 2.3, settings)
    scores = np.concatenate([rng.normal(0, 1, 250), rng.normal(3, 1, 250)])
    on = alarm.scores(scores)
    assert not on[:250].any() and on[-1]
    i, w = bench.first(on, 250) + 249, settings.window
    assert judge_scores(scores[i + 1 - w : i + 1], reference, 2.3, settings).drifting
    assert not judge_scores(scores[i - w : i], reference, 2.3, settings).drifting
    # Levels 0.157 brighter (+40 grey) with unmoved scores: the alarm is the levels'.
    steady = rng.normal(0, 1, 500)
    levels = np.concatenate([rng.uniform(0.3, 0.6, 250), rng.uniform(0.3, 0.6, 250) + 40 / 255])
    either, on_scores, on_levels = alarm.both(steady, levels)
    assert not on_scores.any() and not either[:250].any() and on_levels[-1]
    j = bench.first(on_levels, 250) + 249
    assert np.array_equal(either, on_levels)
    assert judge(levels[j + 1 - w : j + 1], levels_reference, settings).drifting


def test_the_flag_rate_peer() -> None:
    assert bench._binomial_needed(100, 0.01, 1e-6) == 9  # P(X >= 9 | n=100, p=1%) < 1e-6 <= P(X >= 8)
    flags = np.zeros(300)
    flags[200:] = 10.0
    peer = bench.flag_rate_alarms(flags, 1.0, 100, 0.01, 1e-6)
    assert not peer[:208].any() and peer[208] and bench.first(peer, 200) == 9
