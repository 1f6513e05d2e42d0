"""The deployment, approvals and comparison pages over ASGI, and their JSON feeds.

A governed control plane serves echo v1 80 % / v2 20 % (``deployed`` in conftest.py); every
write goes through the API with a role's cookie, as the page's ``fetch`` does.
"""

from __future__ import annotations

from typing import Any

import httpx

from .conftest import Deployed

SPEC = "/api/v1/deployments/echo/spec"


async def _propose(deployed: Deployed, version: int, stage: str) -> dict[str, Any]:
    response = await deployed.web.post(f"/api/v1/models/echo/versions/{version}/requests",
                                       headers=deployed.as_("data-scientist"),
                                       json={"stage": stage, "reason": "try it"})
    assert response.status_code == 201, response.text
    return dict(response.json()["request"])


async def test_deployment_page_shows_routes_resolved_to_versions(deployed: Deployed) -> None:
    page = await deployed.web.get("/deployments/echo", headers=deployed.as_("viewer"))
    assert page.status_code == 200
    assert 'data-rule="route-production"' in page.text
    assert 'data-rule="route-challenger"' in page.text
    rows = page.text.split('data-rule="route-challenger"')[1].split("</tr>")[0]
    assert "v2" in rows and "20 %" in rows
    assert "ready: v1 80 %, v2 20 %" in page.text
    assert 'href="http://127.0.0.1:8600/endpoints/echo/docs"' in page.text


async def test_deployment_page_disables_editor_for_viewer(deployed: Deployed) -> None:
    page = await deployed.web.get("/deployments/echo", headers=deployed.as_("viewer"))
    assert 'id="spec-not-allowed"' in page.text
    assert "<fieldset disabled>" in page.text


async def test_viewer_spec_change_is_refused_and_spec_kept(deployed: Deployed) -> None:
    response = await deployed.web.put(SPEC, headers=deployed.as_("viewer"), json={
        "spec": {"model": "echo", "routes": [{"to": "production", "weight": 100}]},
        "expected_revision": 1})
    assert response.status_code == 403
    stored = deployed.specs.get_spec("echo")
    assert stored is not None and stored.revision == 1


async def test_maintainer_spec_change_is_applied_and_audited(deployed: Deployed) -> None:
    page = await deployed.web.get("/deployments/echo", headers=deployed.as_("maintainer"))
    assert 'id="spec-not-allowed"' not in page.text
    response = await deployed.web.put(SPEC, headers=deployed.as_("maintainer"), json={
        "spec": {"model": "echo", "routes": [{"to": "production", "weight": 60},
                                             {"to": "challenger", "weight": 40}]},
        "expected_revision": 1})
    assert response.status_code == 200, response.text
    live = (await deployed.web.get("/deployments/echo/live", headers=deployed.as_("viewer"))).json()
    assert live["rollout"]["step"] == "switching"  # wanted 60/40, still routed 80/20
    await deployed.reconcile()
    live = (await deployed.web.get("/deployments/echo/live", headers=deployed.as_("viewer"))).json()
    assert live["rollout"] == {"step": "done", "text": "ready: v1 60 %, v2 40 %"}
    entries = deployed.access.store.audit_entries(after_seq=0, limit=1000)
    assert any(e.action == "deployment.spec.put" and e.actor == "maintainer" for e in entries)


async def test_stale_spec_change_is_409(deployed: Deployed) -> None:
    response = await deployed.web.put(SPEC, headers=deployed.as_("maintainer"), json={
        "spec": {"model": "echo"}, "expected_revision": 0})
    assert response.status_code == 409


async def test_model_live_reports_stages_and_rollout(deployed: Deployed) -> None:
    response = await deployed.web.get("/models/echo/live", headers=deployed.as_("viewer"))
    assert response.status_code == 200
    body = response.json()
    assert {"version": 1, "stage": "Production"} in body["versions"]
    (deployment,) = body["deployments"]
    assert deployment["rollout"]["step"] == "done"


async def test_model_live_after_promotion_is_waiting_for_controller(deployed: Deployed) -> None:
    done = await deployed.web.post("/api/v1/models/echo/versions/2/transitions",
                                   headers=deployed.as_("admin"),
                                   json={"stage": "Production", "actor": "admin"})
    assert done.status_code == 201, done.text
    body = (await deployed.web.get("/models/echo/live", headers=deployed.as_("viewer"))).json()
    rollout = body["deployments"][0]["rollout"]
    assert rollout["step"] == "waiting" and "roll out v2 100 %" in rollout["text"]
    await deployed.reconcile()
    body = (await deployed.web.get("/models/echo/live", headers=deployed.as_("viewer"))).json()
    assert body["deployments"][0]["rollout"]["text"] == "ready: v2 100 %"


async def test_live_json_of_unknown_deployment_is_404(deployed: Deployed) -> None:
    response = await deployed.web.get("/deployments/nope/live", headers=deployed.as_("admin"))
    assert response.status_code == 404


async def test_logs_json_needs_a_token(deployed: Deployed) -> None:
    assert (await deployed.web.get("/deployments/echo/logs")).status_code == 401
    response = await deployed.web.get("/deployments/echo/logs", headers=deployed.as_("viewer"))
    assert response.status_code == 200
    assert response.json()["is_available"] is True


async def test_approvals_page_lists_pending_and_blocked_with_gates(deployed: Deployed) -> None:
    pending = await _propose(deployed, 2, "Production")
    blocked = await _propose(deployed, 1, "Staging")
    assert (pending["status"], blocked["status"]) == ("pending", "blocked")
    page = await deployed.web.get("/approvals?status=all", headers=deployed.as_("maintainer"))
    assert page.status_code == 200
    assert f'data-decision="approve" data-request-id="{pending["id"]}">' in page.text
    assert "accuracy 0.4 &lt; 0.8" in page.text  # the failed gate's reason, escaped
    assert f'data-decision="override" data-request-id="{blocked["id"]}" disabled' in page.text


async def test_approvals_page_viewer_buttons_disabled_and_api_refuses(deployed: Deployed) -> None:
    pending = await _propose(deployed, 2, "Production")
    page = await deployed.web.get("/approvals", headers=deployed.as_("viewer"))
    assert f'data-decision="approve" data-request-id="{pending["id"]}" disabled' in page.text
    refused = await deployed.web.post(f"/api/v1/requests/{pending['id']}/approve",
                                      headers=deployed.as_("viewer"), json={"reason": None})
    assert refused.status_code == 403


async def test_approve_from_approvals_page_moves_the_version(deployed: Deployed) -> None:
    pending = await _propose(deployed, 2, "Production")
    approved = await deployed.web.post(f"/api/v1/requests/{pending['id']}/approve",
                                       headers=deployed.as_("maintainer"), json={"reason": "ok"})
    assert approved.status_code == 200, approved.text
    page = await deployed.web.get("/approvals", headers=deployed.as_("maintainer"))
    assert f'data-request="{pending["id"]}"' not in page.text  # no longer pending
    shown = await deployed.web.get("/approvals?status=approved", headers=deployed.as_("viewer"))
    assert f'data-request="{pending["id"]}"' in shown.text


async def test_compare_page_marks_differing_params(deployed: Deployed) -> None:
    page = await deployed.web.get("/models/echo/compare?v=1&v=2", headers=deployed.as_("viewer"))
    assert page.status_code == 200
    row = page.text.split('data-key="param:alpha"')[1].split("</tr>")[0]
    assert 'class="differs"' in row and "0.1" in row and "0.5" in row


async def test_compare_page_shows_gate_verdicts(deployed: Deployed) -> None:
    await _propose(deployed, 2, "Production")
    page = await deployed.web.get("/models/echo/compare?v=1&v=2", headers=deployed.as_("viewer"))
    row = page.text.split('data-key="gate:metric"')[1].split("</tr>")[0]
    assert "not run" in row and "passed" in row


async def test_compare_page_unknown_version_is_404_page(deployed: Deployed) -> None:
    page = await deployed.web.get("/models/echo/compare?v=1&v=9", headers=deployed.as_("viewer"))
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")


async def test_favicon_is_served(web: httpx.AsyncClient) -> None:
    response = await web.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/x-icon"
    assert (await web.get("/assets/favicon.svg")).status_code == 200
