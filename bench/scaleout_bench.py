"""Scale-out figures: leader failover time, and control-plane write throughput on SQLite and
PostgreSQL (proposals + approvals through the governance store, audit chain included).

    .venv/bin/python bench/scaleout_bench.py [--failovers 5] [--seconds 5] \
        [--write docs/performance.md]

PostgreSQL: ``GREENBUTTON_TEST_STORE_URI`` if set, else a throwaway server from Debian's binaries
(``make test-deps``), as the test suite does. Failover: two ``greenbutton up`` replicas on one
PostgreSQL store; the leader gets SIGKILL; timed until the other reports itself leader on
``/api/v1/health`` (its reconcile loop starts in the same step); repeated with a fresh replica.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from greenbutton.config import Settings  # noqa: E402
from greenbutton.store.engine import create_store_engine  # noqa: E402
from greenbutton.store.governance_records import AuditEvent, GateOutcome  # noqa: E402
from greenbutton.store.governance_sql import open_governance_store  # noqa: E402

SECTION = "## Scale-out: leader failover and control-plane writes (issue 9)"


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL server URI: the suite's fixture logic, outside pytest."""
    import os

    if os.environ.get("GREENBUTTON_TEST_STORE_URI"):
        yield os.environ["GREENBUTTON_TEST_STORE_URI"]
        return
    import postgres_server

    generator = postgres_server.postgres_uri.__wrapped__()  # type: ignore[attr-defined]
    try:
        yield next(generator)
    finally:
        generator.close()


def fresh_database(base: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_store_engine(base)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base.rsplit("/", 1)[0] + f"/{name}"


def write_throughput(uri: str, writers: int, seconds: float) -> float:
    """Proposal + approval pairs per second (each pair: 2 transactions, 2 audit entries)."""
    store = open_governance_store(uri)
    done = [0] * writers
    errors: list[BaseException] = []
    deadline = time.monotonic() + seconds

    def writer(index: int) -> None:
        try:
            write(index)
        except BaseException as error:
            errors.append(error)

    def write(index: int) -> None:
        version = index * 1_000_000
        while time.monotonic() < deadline:
            version += 1
            request = store.create_request(
                "bench", version, "Production", "pending", "dana", "bench",
                [GateOutcome("metric", True, {"accuracy": 0.97})],
                events=[AuditEvent("dana", "request.create", f"bench/{version}")])
            store.decide_request(request.id, ["pending"], "approved", by="rita",
                                 reason=None, is_override=False,
                                 events=[AuditEvent("rita", "request.approve", f"bench/{version}")])
            done[index] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    store.close()
    if errors:
        raise errors[0]
    return sum(done) / elapsed


def failovers(store_uri: str, count: int) -> list[float]:
    """Seconds from SIGKILL of the leader to another replica leading, ``count`` times."""
    import signal

    from scaleout.cluster import Cluster, kill_serving_processes

    home = Path(tempfile.mkdtemp(prefix="gb-failover-")) / "gb"
    home.mkdir(parents=True)
    settings = Settings(home=home, _env_file=None,  # type: ignore[call-arg]
                        store={"uri": store_uri},  # type: ignore[arg-type]
                        controller={"leader_poll_interval_s": 1.0})  # type: ignore[arg-type]
    cluster = Cluster(settings, {})
    times = []
    try:
        cluster.start()
        cluster.start()
        for _ in range(count):
            deadline = time.monotonic() + 20
            while len(cluster.leaders()) != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            (leader,) = cluster.leaders()
            leader.process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            leader.process.wait(timeout=10)
            while not cluster.leaders():
                if time.monotonic() - killed > 30:
                    raise RuntimeError("no takeover within 30 s")
                time.sleep(0.02)
            times.append(time.monotonic() - killed)
            cluster.start()  # back to two replicas
    finally:
        cluster.stop()
        kill_serving_processes(home)
    return times


def section(figures: dict[str, object]) -> str:
    rows = figures["throughput"]
    assert isinstance(rows, list)
    takeover = figures["failover_s"]
    assert isinstance(takeover, list)
    lines = [
        SECTION, "",
        "`.venv/bin/python bench/scaleout_bench.py --write docs/performance.md` (also run by "
        "`make bench`).", "",
        f"**Leader failover** (two `greenbutton up` replicas on one PostgreSQL store, SIGKILL of "
        f"the leader, until the other reports `leader: true` on `/api/v1/health` and starts "
        f"its reconcile loop; default `leader_poll_interval_s` = 1 s), {len(takeover)} "
        f"kills: median {statistics.median(takeover):.2f} s, max {max(takeover):.2f} s "
        f"(target: < 10 s). PostgreSQL frees the lock as soon as the dead process's socket "
        f"closes; the follower finds it free at its next try (≤ 1 s). A vanished *machine* "
        f"adds the server-side TCP keepalive (≈ 9 s).", "",
        "**Control-plane writes**: a proposal (transition request + gate result + audit entry, "
        "one transaction) then its approval (conditional update + audit entry, one "
        "transaction) through `SqlGovernanceStore`, for a fixed time, per second:", "",
        "| store | 1 writer | 4 concurrent writers |", "|---|---|---|",
    ]
    for name, one, four in rows:
        lines.append(f"| {name} | {one:.0f} pairs/s | {four:.0f} pairs/s |")
    lines += ["", "Every audit append extends the hash chain, so writes serialize on it; "
              "more writers add no throughput, they only queue. Machine: 2 vCPU, local disk, "
              "PostgreSQL 15 on loopback with `-F` (fsync off, as in the test fixture — a "
              "production server with fsync pays one WAL flush per transaction).", ""]
    return "\n".join(lines)


def write_section(path: Path, text_: str) -> None:
    """Replace this bench's section in ``path`` (or append it), leaving others untouched."""
    content = path.read_text()
    start = content.find(SECTION)
    if start >= 0:
        end = content.find("\n## ", start + len(SECTION))
        content = content[:start] + text_ + (content[end + 1:] if end >= 0 else "")
    else:
        content = content.rstrip("\n") + "\n\n" + text_
    path.write_text(content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    with postgres() as base, tempfile.TemporaryDirectory() as folder:
        rows = []
        for name, make in (("SQLite (WAL)", lambda: f"sqlite:///{folder}/{uuid.uuid4().hex}.db"),
                           ("PostgreSQL", lambda: fresh_database(base))):
            rows.append((name, write_throughput(make(), 1, args.seconds),
                         write_throughput(make(), 4, args.seconds)))
            print(rows[-1], flush=True)
        takeover = failovers(fresh_database(base), args.failovers)
        print("failover s:", [round(t, 2) for t in takeover], flush=True)
    text_ = section({"throughput": rows, "failover_s": takeover})
    print(text_)
    if args.write:
        write_section(args.write, text_)


if __name__ == "__main__":
    main()
