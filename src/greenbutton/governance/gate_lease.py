"""The lease a control plane holds on a proposal while that proposal's gates run.

Usage::

    with GateLease(store.renew_lease, request.id, lease_s=10.0):
        verdicts = gates.run(model, version)

A thread renews the lease every third of ``lease_s``; once a control plane dies, its leases
run out and any control plane's sweep (``Approvals.fail_interrupted``) fails those requests
on the record, so a promotion interrupted by a crash is never lost nor left open for ever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)


class GateLease:
    """Renews ``request_id``'s lease until the ``with`` block ends."""

    def __init__(self, renew: Callable[[int, float], bool], request_id: int, *,
                 lease_s: float) -> None:
        self._renew, self._request_id, self._lease_s = renew, request_id, lease_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._keep, daemon=True,
                                        name=f"gate-lease-{request_id}")

    def __enter__(self) -> GateLease:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()

    def _keep(self) -> None:
        while not self._done.wait(self._lease_s / 3):
            try:
                if not self._renew(self._request_id, self._lease_s):
                    return  # no longer gating: failed by a sweep, nothing left to hold
            except Exception:  # a store hiccup: the next renewal may succeed in time
                log.warning("could not renew the lease of request #%d", self._request_id,
                            exc_info=True)
