"""Access.bootstrap_admin when several control-plane replicas start at the same moment."""

from __future__ import annotations

import threading
from pathlib import Path

from greenbutton.governance.access import Access
from greenbutton.store.governance_sql import SqlGovernanceStore, open_governance_store


def test_bootstrap_admin_concurrently_creates_one_admin_and_raises_nowhere(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'gb.db'}"
    stores = [open_governance_store(uri) for _ in range(4)]
    start = threading.Barrier(len(stores))
    issued: list[object] = []
    errors: list[BaseException] = []

    def boot(store: SqlGovernanceStore) -> None:
        start.wait(timeout=10)
        try:
            issued.append(Access(store).bootstrap_admin())
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=boot, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for store in stores:
        store.close()
    assert errors == []
    assert sum(token is not None for token in issued) == 1
