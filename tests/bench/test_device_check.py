"""The device check end to end on the CPU (a CI machine has no GPU): every family trains,
reloads and scores, and the CPU agrees with itself."""

from __future__ import annotations

from pathlib import Path

from bench import device_check as check


def test_every_family_is_trained_scored_and_compared(tmp_path: Path) -> None:
    out = tmp_path / "device_check.md"
    sizes = ["--epochs", "1", "--train-frames", "24", "--test-frames", "8"]
    argv = ["--device", "cpu", *sizes, "--out", str(out)]
    assert check.main(argv) == 0
    text = out.read_text()
    for variant in check.VARIANTS:
        assert f"| {variant} |" in text
    methods = (
        "vae",
        "anogan",
        "vaegan",
        "vaegan-attn",
        "vaegan-z",
        "vaegan-attn-z",
        "vaegan+",
        "vaegan-attn+",
    )
    for method in methods:
        assert f"| {method} |" in text
    assert text.count("| 0.0e+00 | 0.0e+00 | 0 |") == 8  # one row per method: the CPU against itself
