"""Admin HTTP API: list deployments with statistics; pause, resume, promote, roll back."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

router = APIRouter(prefix="/admin")


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: str = Field(min_length=1, max_length=128, description="Who asks (recorded with the decision).")
    reason: str = Field(min_length=1, max_length=1000, description="Why (recorded with the decision).")


def _service(request: Request) -> Any:
    service = request.app.state.admin
    service.authenticate(request.headers.get("authorization"))
    return service


@router.get("/leader")
async def leader(request: Request) -> JSONResponse:
    """200 on the replica that leads every deployment, 503 on the others (a proxy sends
    /admin to the leader by it). No token needed: it says only who leads."""
    body = request.app.state.admin.leadership()
    return JSONResponse(body, status_code=200 if body["leader"] else 503)


@router.get("/deployments")
async def list_deployments(request: Request) -> dict[str, Any]:
    return {"deployments": _service(request).list()}


@router.get("/deployments/{model}")
async def get_deployment(model: str, request: Request) -> dict[str, Any]:
    return _service(request).describe(model)


@router.post("/deployments/{model}/{action}")
async def act(
    model: str, action: Literal["pause", "resume", "promote", "rollback"], body: ActionRequest, request: Request
) -> dict[str, Any]:
    return await _service(request).act(model, action, body.actor, body.reason)
