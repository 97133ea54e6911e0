"""REST routes of the audit trail: GET /v1/audits and GET /v1/runtimes/{name}/egress/events.

Both list newest first by default. With order=asc and after=CURSOR they return the
events stored after CURSOR, oldest first, which is how `runta egress events --watch`
follows new events. Bad parameters raise InvalidRequestError, which api.py's error
middleware turns into 400 invalid_request naming the parameter.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web

from .api import MANAGER_KEY
from .audit import CATEGORY_EGRESS, AuditService
from .audit.queries import (
    AUDIT_PARAMETERS,
    EVENT_PARAMETERS,
    audit_json,
    event_json,
    parse_page_request,
)

AUDIT_SERVICE_KEY = web.AppKey("audit_service", AuditService)


async def list_audits(request: web.Request) -> web.Response:
    audits = request.app[AUDIT_SERVICE_KEY]
    page_request = parse_page_request(request.query.items(), AUDIT_PARAMETERS)
    page = await audits.page(page_request)
    return web.json_response({"items": [audit_json(row) for row in page.rows], "next": page.next})


async def list_runtime_events(request: web.Request) -> web.Response:
    audits = request.app[AUDIT_SERVICE_KEY]
    name = request.match_info["name"]
    request.app[MANAGER_KEY].get(name)  # raises NotFoundError: 404
    parsed = parse_page_request(request.query.items(), EVENT_PARAMETERS)
    page_request = dataclasses.replace(parsed, runtime=name, category=CATEGORY_EGRESS)
    page = await audits.page(page_request)
    return web.json_response({"items": [event_json(row) for row in page.rows], "next": page.next})


def add_audit_routes(app: web.Application, audit_service: AuditService) -> None:
    app[AUDIT_SERVICE_KEY] = audit_service
    app.router.add_get("/v1/audits", list_audits)
    app.router.add_get("/v1/runtimes/{name}/egress/events", list_runtime_events)
