"""One result: the frame view (maps, score against the source's threshold now), its review, its maps."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from inspector.maps import HEAT_KINDS, MAP_KINDS, decode_png, encode_png, picture
from inspector.pipeline import thresholds
from inspector.store import review as store
from inspector.store.models import LABELS, Result
from inspector.web.pages import DB, ResultId, Writer, render, see_other
from inspector.web.routes.queue import filter_query, parse_filter

router = APIRouter()


@router.get("/results/{result_id}")
def frame_view(request: Request, result_id: ResultId, session: DB) -> HTMLResponse:
    result = store.get_result(session, result_id)
    if result is None:
        raise HTTPException(404, f"No result {result_id}.")
    filters = parse_filter(request.query_params)
    key = (result.score, result.id)
    source = result.frame.source
    context = {
        "result": result,
        "frame": result.frame,
        "maps": store.map_kinds(session, result.id),
        "threshold_now": thresholds.effective_threshold(session, result.model_version, result.method, source),
        "next_id": store.neighbour(session, filters, key, forward=True),
        "prev_id": store.neighbour(session, filters, key, forward=False),
        "q": filter_query(request.query_params),
        "labels": LABELS,
    }
    return render(request, "frame.html", context)


@router.post("/results/{result_id}/review")
def review(
    request: Request,
    result_id: ResultId,
    user: Writer,
    session: DB,
    label: Annotated[str, Form()],
    q: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> RedirectResponse:
    if label not in LABELS:
        raise HTTPException(400, f"Label must be one of {', '.join(LABELS)}.")
    result = session.get(Result, result_id)
    if result is None:
        raise HTTPException(404, f"No result {result_id}.")
    store.add_review(session, result.frame_id, label, user, note.strip()[:1000])
    session.commit()
    filters = parse_filter(dict(parse_qsl(q)))
    next_id = store.neighbour(session, filters, (result.score, result.id), forward=True)
    done = f"Frame {result.frame_id} labelled {label}."
    suffix = f"?{q}" if q else ""
    if next_id is None:
        return see_other(f"/queue{suffix}", done + " That was the last one in the queue.", request)
    return see_other(f"/results/{next_id}{suffix}", done, request)


@router.get("/maps/{result_id}/{kind}.png")
def map_picture(result_id: ResultId, kind: str, session: DB) -> Response:
    """A map drawn from the result's stored planes (a heat map is laid over the input)."""
    needed = {kind, "input"} if kind in HEAT_KINDS else {kind}
    planes = store.result_maps(session, result_id, needed) if kind in MAP_KINDS else {}
    if set(planes) != needed:
        raise HTTPException(404, "No such map.")
    image = picture(kind, {name: decode_png(png) for name, png in planes.items()})
    return Response(
        encode_png(image), media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )
