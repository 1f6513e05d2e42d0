"""Desired state = greenbutton's lifecycle + stored deployment specs.

A model with a Production version and no stored spec gets the default spec (its Production
version takes all traffic under the model's name). A stored spec replaces that default for its
deployment name. The control plane passes the *governed* lifecycle (read from the sealed
audit log, ``governance/integrity.py``), so a stage written behind greenbutton's back deploys
nothing. Usage::

    desired_state(guard.governed_states(), deployment_store, target_uri="local://")
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from pydantic import ValidationError

from ..store.protocol import DeploymentStore, Stage, StoredDeploymentSpec, VersionState
from .reconcile import DeploymentSpec
from .specs import DeploySpec, default_spec, resolve

log = logging.getLogger(__name__)


def load_spec(stored: StoredDeploymentSpec) -> DeploySpec:
    """The validated spec of a stored document (``ValidationError`` if it no longer is)."""
    return DeploySpec.model_validate({**stored.spec, "name": stored.name})


def endpoint_specs(states: Sequence[VersionState], specs: DeploymentStore) -> list[DeploySpec]:
    """Every stored spec plus the default spec of each Production model without one."""
    chosen: dict[str, DeploySpec] = {}
    for stored in specs.list_specs():
        try:
            chosen[stored.name] = load_spec(stored)
        except ValidationError:
            log.warning("stored deployment spec %r is invalid; skipped", stored.name)
    for state in states:
        if state.stage is not Stage.PRODUCTION or state.model in chosen:
            continue
        try:
            chosen[state.model] = default_spec(state.model)
        except ValidationError:
            log.warning("model %r cannot be deployed: its name is not a valid deployment name",
                        state.model)
    return [chosen[name] for name in sorted(chosen)]


def desired_state(
    states: Sequence[VersionState], specs: DeploymentStore, *, target_uri: str | None = None,
    default_replicas: int = 1,
) -> list[DeploymentSpec]:
    """The resolved deployments this controller (deploying to ``target_uri``) should run,
    given each version's lifecycle ``states`` (``default_replicas`` where a spec says none)."""
    stages: dict[str, dict[Stage, int]] = defaultdict(dict)
    for state in states:
        if state.stage in (Stage.PRODUCTION, Stage.STAGING):
            stages[state.model][state.stage] = state.version
    desired = []
    for spec in endpoint_specs(states, specs):
        if spec.target is not None and target_uri is not None and spec.target != target_uri:
            continue  # another controller's (or a GitOps folder's) deployment
        resolved = resolve(spec, stages.get(spec.model, {}), default_replicas=default_replicas)
        if resolved is not None:
            desired.append(resolved)
    return desired
