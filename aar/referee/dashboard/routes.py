"""The dashboard's pages: server-rendered, autoescaped HTML for the humans who run a campaign.

Agents hold tokens too and are adversaries, so every page authenticates (cookie or bearer header),
transcripts are shown only to admins and to their own researcher, and the review queue (the only
place that changes state, besides log in/out) is admin-only and CSRF-protected (see security.py).
Runs reach a page only as the viewer's view of them (queries.py): a researcher's login sees the
released public numbers of the home and visible tasks, never a private part or a held-out task.
Errors are HTML pages, not the API's JSON (see render.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from aar.referee import flags as review_flags
from aar.referee.auth import NAME_RE
from aar.referee.db import Run
from aar.referee.errors import ApiError

from . import queries, researchers
from .render import Pages, html_route_class, script_json
from .security import COOKIE, Guard, Viewer, check_same_origin, safe_next

FORUM_PAGE = 30  # posts per forum page
TAIL_EVENTS = 60  # transcript events on the researcher page
TRANSCRIPT_PAGE = 200  # transcript events per page of the full transcript
MAX_TEXT = 5000  # review reasons and flag resolutions (as the API's schemas)
Id = Annotated[int, PathParam(ge=1, le=2**62)]


def build_dashboard(ref, guard: Guard | None = None) -> APIRouter:  # noqa: ANN001 (aar.referee.app.Referee)
    """The dashboard's router (mount at /, next to StaticFiles(STATIC) at /static)."""
    pages = Pages()
    guard = guard or Guard(ref.auth)
    r = APIRouter(include_in_schema=False, route_class=html_route_class(pages))

    def viewer(request: Request) -> Viewer:
        v = guard.viewer(request)
        request.state.viewer = v
        return v

    def admin(request: Request, v: Viewer = Depends(viewer)) -> Viewer:
        if not v.is_admin:
            raise ApiError(
                403,
                f"The review queue is for admins only; you are logged in as agent {v.name!r}. "
                "Log in with an admin token to review runs.",
            )
        return v

    # -- log in / out ------------------------------------------------------------------------------

    @r.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next_: str = Query("/", alias="next", max_length=2000)):
        return pages.render(request, "login.html", title="Log in", next=safe_next(next_), message=None)

    @r.post("/login", response_class=HTMLResponse)
    def login(
        request: Request,
        token: str = Form("", max_length=500),
        next_: str = Form("/", alias="next", max_length=2000),
    ):
        check_same_origin(request)
        try:
            guard.identify_token(token.strip())
        except ApiError:
            return pages.render(
                request,
                "login.html",
                http_status=401,
                title="Log in",
                next=safe_next(next_),
                message="Unknown token.",
            )
        response = RedirectResponse(safe_next(next_), status_code=303)
        response.set_cookie(
            COOKIE,
            token.strip(),
            httponly=True,
            samesite="strict",
            path="/",
            secure=request.url.scheme == "https",
        )
        return response

    @r.get("/logout", response_class=HTMLResponse)
    def logout_page(request: Request, v: Viewer = Depends(viewer)):
        return pages.render(request, "logout.html", title="Log out")

    @r.post("/logout")
    def logout(request: Request, csrf: str = Form(""), v: Viewer = Depends(viewer)):
        guard.check_post(request, v, csrf)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages anyone with a token may read --------------------------------------------------------

    def cols(v: Viewer) -> queries.Columns:
        """The viewer's score columns: held-out tasks and private parts for admins only."""
        return queries.columns(ref.data, v.is_admin)

    @r.get("/", response_class=HTMLResponse)
    def overview(request: Request, v: Viewer = Depends(viewer)):
        c = cols(v)
        rows = queries.researchers(ref.db, c)
        for row in rows:
            row["summary"] = researchers.summarize(ref.config.researchers_dir, row["name"])
        chart = queries.progress(ref.db, [row["name"] for row in rows], v.is_admin)
        return pages.render(
            request,
            "overview.html",
            title=ref.config.campaign or "Overview",
            active="overview",
            campaign=ref.config.campaign,
            cols=c,
            researchers=rows,
            chart_json=script_json(chart),
            has_points=any(d["points"] for d in chart["datasets"]),
            # while anyone is still working the page reloads itself (a meta refresh: no script needed)
            live=any(row["summary"].status == "running" for row in rows),
        )

    @r.get("/leaderboard", response_class=HTMLResponse)
    def leaderboard(request: Request, v: Viewer = Depends(viewer)):
        c = cols(v)
        return pages.render(
            request,
            "leaderboard.html",
            title="Leaderboard",
            active="leaderboard",
            rows=queries.leaderboard(ref.db, c),
            cols=c,
        )

    @r.get("/forum", response_class=HTMLResponse)
    def forum(
        request: Request,
        q: str = Query("", max_length=500),
        offset: int = Query(0, ge=0, le=10**9),
        v: Viewer = Depends(viewer),
    ):
        found = ref.forum.search(q.strip() or None, None, None, None, FORUM_PAGE, offset)
        total = found["total"]
        return pages.render(
            request,
            "forum.html",
            title="Forum",
            active="forum",
            q=q.strip(),
            posts=found["items"],
            total=total,
            prev_offset=max(0, offset - FORUM_PAGE) if offset > 0 else None,
            next_offset=offset + FORUM_PAGE if offset + FORUM_PAGE < total else None,
        )

    @r.get("/forum/posts/{post_id}", response_class=HTMLResponse)
    def post_page(request: Request, post_id: Id, v: Viewer = Depends(viewer)):
        post = ref.forum.get(post_id)
        comments = ref.forum.comments(post_id, 500, 0)
        return pages.render(
            request,
            "post.html",
            title=post["title"],
            active="forum",
            post=post,
            comments=comments,
            shown=ref.data.shown(),  # cites carry released numbers only; of the home and visible tasks
        )

    def researcher_name(name: str) -> tuple[str, int]:
        """A URL's researcher name, checked against the pattern and the Agent table (else 404)."""
        if not NAME_RE.match(name):
            raise ApiError(404, "no such researcher")
        return name, queries.agent_id(ref.db, name)

    def may_read_transcript(v: Viewer, name: str) -> bool:
        return v.is_admin or v.name == name

    @r.get("/researchers/{name}", response_class=HTMLResponse)
    def researcher(request: Request, name: str, v: Viewer = Depends(viewer)):
        name, agent = researcher_name(name)
        summary = researchers.summarize(ref.config.researchers_dir, name)
        may_read = may_read_transcript(v, name)
        events: list[dict] = []
        if may_read and summary.has_transcript:
            events = researchers.events(
                researchers.records(researchers.transcript_path(ref.config.researchers_dir, name))
            )
        posts = ref.forum.search(None, None, None, name, 50, 0)
        return pages.render(
            request,
            "researcher.html",
            title=name,
            name=name,
            summary=summary,
            runs=queries.agent_runs(ref.db, agent, cols(v)),
            cols=cols(v),
            posts=posts["items"],
            posts_total=posts["total"],
            may_read=may_read,
            researchers_dir_set=ref.config.researchers_dir is not None,
            events=events[-TAIL_EVENTS:],
            total_events=len(events),
        )

    @r.get("/researchers/{name}/transcript", response_class=HTMLResponse)
    def transcript(
        request: Request, name: str, page: int = Query(0, ge=0, le=10**6), v: Viewer = Depends(viewer)
    ):
        name, _agent = researcher_name(name)
        if not may_read_transcript(v, name):
            raise ApiError(403, f"{name}'s transcript is visible to admins and to {name} only")
        path = researchers.transcript_path(ref.config.researchers_dir, name)
        events = researchers.events(researchers.records(path))
        last_page = max(0, (len(events) - 1) // TRANSCRIPT_PAGE)
        page = min(page, last_page)
        first = page * TRANSCRIPT_PAGE
        return pages.render(
            request,
            "transcript.html",
            title=f"{name}: transcript",
            name=name,
            events=events[first : first + TRANSCRIPT_PAGE],
            first=first,
            page=page,
            last_page=last_page,
            total_events=len(events),
        )

    # -- the review queue (admins) -----------------------------------------------------------------

    @r.get("/review", response_class=HTMLResponse)
    def review_page(
        request: Request,
        reviewed: int | None = Query(None, ge=1, le=2**62),
        verdict: Literal["verified", "rejected"] | None = None,
        closed: int | None = Query(None, ge=1, le=2**62),
        v: Viewer = Depends(admin),
    ):
        notice = None
        if reviewed is not None and verdict is not None:
            notice = f"Run {reviewed} marked {verdict}."
        elif closed is not None:
            notice = f"Flag {closed} closed."
        c = cols(v)
        queue, flags = queries.review_queue(ref.db, c)
        return pages.render(
            request,
            "review.html",
            title="Review",
            active="review",
            queue=queue,
            flags=flags,
            notice=notice,
            cols=c,
        )

    @r.post("/review/runs/{run_id}")
    def review_run(
        request: Request,
        run_id: Id,
        csrf: str = Form(""),
        verdict: str = Form(""),
        reason: str = Form("", max_length=MAX_TEXT),
        v: Viewer = Depends(admin),
    ):
        guard.check_post(request, v, csrf)
        if verdict not in ("verified", "rejected"):
            raise ApiError(422, "verdict must be 'verified' or 'rejected'")
        reason = reason.strip()
        if verdict == "rejected" and not reason:
            raise ApiError(422, "a reason is required to reject a run: go back and fill it in")
        with ref.db.read() as session:
            status = session.scalar(select(Run.status).where(Run.id == run_id))
        if status is None:
            raise ApiError(404, f"no run {run_id}")
        if status != "done":
            raise ApiError(409, f"run {run_id} is {status}: only finished runs can be reviewed")
        ref.runs.review(v.me.id, run_id, verdict, reason or "verified on the dashboard", request.url.path)
        return RedirectResponse(f"/review?reviewed={run_id}&verdict={verdict}", status_code=303)

    @r.post("/review/flags/{flag_id}/close")
    def close_flag(
        request: Request,
        flag_id: Id,
        csrf: str = Form(""),
        resolution: str = Form("", max_length=MAX_TEXT),
        v: Viewer = Depends(admin),
    ):
        guard.check_post(request, v, csrf)
        if not resolution.strip():
            raise ApiError(422, "a resolution is required to close a flag")
        review_flags.close_flag(ref.db, v.me, flag_id, resolution.strip(), request.url.path)
        return RedirectResponse(f"/review?closed={flag_id}", status_code=303)

    return r
