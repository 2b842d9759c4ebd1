"""A frame's score is a property of the frame: the same on every call and in any batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector.models import FAMILIES
from tests.conftest import blob_frames, build_model, tiny_config


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_frame_scores_the_same_alone_and_in_any_batch(family: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_config(family)).eval()
    seen = torch.from_numpy(blob_frames(6, seed=2))
    model.fit_normal_statistics(seen, seen)  # what scoring needs besides the weights (a memory's bank)
    # Frames the model has not seen: a remembered one scores 0 in its batch and a backbone's
    # rounding (~5e-5) alone, which no relative tolerance covers.
    x = torch.from_numpy(blob_frames(6, seed=3))
    for method in FAMILIES[family].methods:
        batch = model.score(x, method).score.detach().numpy()
        again = model.score(x.flip(0), method).score.detach().numpy()[::-1]
        alone = np.array([model.score(x[i : i + 1], method).score.item() for i in range(len(x))])
        np.testing.assert_allclose(again, batch, rtol=1e-4, atol=1e-5, err_msg=method)
        np.testing.assert_allclose(alone, batch, rtol=1e-4, atol=1e-5, err_msg=method)
