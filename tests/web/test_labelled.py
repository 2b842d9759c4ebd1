"""The calibration page's labelled scores stay equal to a fresh read while labels come and go."""

from __future__ import annotations

import time
from unittest import mock

import numpy as np
from sqlalchemy import delete

from inspector.pipeline.thresholds import Labelled
from inspector.store import review as store
from inspector.store.db import session_scope
from inspector.store.models import Review
from inspector.web.labelled import LabelledScores
from tests.web.conftest import METHOD, Seeded


def same(a: Labelled, b: Labelled) -> bool:
    return np.array_equal(a.scores, b.scores) and np.array_equal(a.anomalous, b.anomalous)


def test_updates_by_what_changed_and_rereads_after_a_deletion(seeded: Seeded) -> None:
    kept, url = LabelledScores(), seeded.settings.db_url
    for source in (None, "cam-a"):

        def fresh() -> Labelled:
            with session_scope(url) as session:
                rows = store.labelled_frames(session, "v1", METHOD, source)  # noqa: B023
                return Labelled([(score, "anomaly" if anomaly else "normal") for _, score, anomaly in rows])

        with session_scope(url) as session:
            assert same(kept.get(session, "v1", METHOD, source), fresh())
        with session_scope(url) as session:  # a new label, and a frame labelled again the other way
            session.add(Review(frame_id=seeded.frame_ids[20], label="normal", reviewer="Ada"))
            session.add(Review(frame_id=seeded.frame_ids[14], label="normal", reviewer="Ada"))
        with (
            session_scope(url) as session,
            mock.patch.object(store, "labelled_frames", wraps=store.labelled_frames) as read,
        ):
            assert same(kept.get(session, "v1", METHOD, source), fresh())
            assert read.call_args_list[0].args[4] is not None  # only what changed was read
        with session_scope(url) as session:
            session.execute(delete(Review).where(Review.frame_id == seeded.frame_ids[0]))
        with (
            session_scope(url) as session,
            mock.patch.object(store, "labelled_frames", wraps=store.labelled_frames) as read,
        ):
            assert same(kept.get(session, "v1", METHOD, source), fresh())
            assert len(read.call_args_list[0].args) == 4  # a deletion: everything read again


def test_the_dashboard_reads_the_first_pages_scores_while_starting(seeded: Seeded) -> None:
    """The full read of labelled scores is done at start-up, so the operator's first calibration
    page only checks the labels' stamp."""
    from fastapi.testclient import TestClient

    from inspector.web import create_app
    from inspector.web.routes import calibration

    with mock.patch.object(calibration, "LABELLED", LabelledScores()) as kept:
        with TestClient(create_app(seeded.settings)) as client:  # runs the app's start-up
            for _ in range(100):
                if kept._kept:
                    break
                time.sleep(0.05)
            with mock.patch.object(store, "labelled_frames", wraps=store.labelled_frames) as read:
                assert client.get("/calibration").status_code == 200
                assert read.call_count == 0
        (key,) = kept._kept
        assert key[1:] == ("v1", METHOD, None)
