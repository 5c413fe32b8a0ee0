"""Operator actions on deployments, behind a bearer token (constant-time comparison).
No token configured = the admin API is disabled."""

from __future__ import annotations

import asyncio
from typing import Any

from serving import _metrics as m
from serving._auth import bearer_matches
from serving._errors import AdminAuthError, ModelNotFoundError
from serving.admin.admin_config import AdminConfig
from serving.canary.controller import CanaryController, OperatorAction


class AdminService:
    def __init__(self, config: AdminConfig, controllers: dict[str, CanaryController]) -> None:
        self.config = config
        self.controllers = controllers

    def authenticate(self, authorization: str | None) -> None:
        token = self.config.token
        if token is None:
            raise AdminAuthError("the admin API is disabled (no admin token configured)", disabled=True)
        if not bearer_matches(authorization, (token,)):
            raise AdminAuthError("missing or invalid bearer token")

    def controller(self, model: str) -> CanaryController:
        try:
            return self.controllers[model]
        except KeyError:
            raise ModelNotFoundError(f"no deployment named {model!r}; known: {sorted(self.controllers)}") from None

    def describe(self, model: str) -> dict[str, Any]:
        ctl = self.controller(model)
        state = ctl.state()
        analysis = ctl.last_analysis
        return {
            "model": model,
            "leader": ctl.is_leader(),
            "state": state.model_dump(mode="json") if state else None,
            "analysis": None
            if analysis is None
            else {
                "metrics": [r.model_dump(mode="json") for r in analysis.metrics],
                "srm_p_value": analysis.srm_p_value,
                "n_baseline": analysis.n_baseline,
                "n_candidate": analysis.n_candidate,
                "horizon_n": analysis.horizon_n,
            },
            "recent_decisions": [d.model_dump(mode="json") for d in list(ctl.decisions)[-20:]],
        }

    def leadership(self) -> dict[str, Any]:
        """Whether this replica leads each deployment (only the leader acts on them)."""
        leads = {name: ctl.is_leader() for name, ctl in sorted(self.controllers.items())}
        return {"leader": bool(leads) and all(leads.values()), "models": leads}

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in sorted(self.controllers)]

    async def act(self, model: str, action: OperatorAction, actor: str, reason: str) -> dict[str, Any]:
        ctl = self.controller(model)
        try:
            decision = await asyncio.to_thread(ctl.operator_action, action, actor, reason)
        except Exception:
            m.ADMIN_ACTIONS.labels(action, "refused").inc()
            raise
        m.ADMIN_ACTIONS.labels(action, "done").inc()
        return decision.model_dump(mode="json")
