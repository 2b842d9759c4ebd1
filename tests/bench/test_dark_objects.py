"""The dark-objects benchmark's frames: the UCI digits' task, every level inverted."""

from __future__ import annotations

import numpy as np

from bench import dark_objects_default, peers, uci_digits_default
from inspector import selection


def test_the_frames_are_the_uci_digits_inverted_and_show_darker_objects() -> None:
    dark, bright = dark_objects_default.task(3), uci_digits_default.task(3)
    np.testing.assert_allclose(dark.train, 1 - bright.train)
    np.testing.assert_array_equal(dark.test_labels, bright.test_labels)
    assert selection.objects_and_polarity(dark.train[:40]) == (1.0, -1.0)
    assert selection.objects_and_polarity(bright.train[:40]) == (1.0, 1.0)


def test_the_dark_peer_is_glimpse_knn_on_the_levels_turned_over() -> None:
    """On the inverted digits it scores as glimpse-kNN does on the upright ones."""
    dark, bright = dark_objects_default.task(3), uci_digits_default.task(3)
    np.testing.assert_allclose(
        dark_objects_default.glimpse_knn_dark(dark.train[:50], dark.test[:20]),
        peers.glimpse_knn(bright.train[:50], bright.test[:20]),
        rtol=1e-5,
    )
