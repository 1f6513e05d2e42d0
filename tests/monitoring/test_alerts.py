"""Alert rules, webhook delivery with cooldown, SSRF refusal, and the retraining trigger."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from greenbutton.monitoring.alerts import (
    Alerter,
    AlertsSpec,
    Figures,
    RetrainSpec,
    RuleKind,
    RuleSpec,
    WebhookSpec,
    firing,
)
from greenbutton.monitoring.payload_store import PayloadStore
from greenbutton.monitoring.webhooks import AddressNotAllowed, check_address, post_json

RULES = [RuleSpec(name="drift", kind=RuleKind.DRIFT),
         RuleSpec(name="reward", kind=RuleKind.REWARD_BELOW, threshold=0.0),
         RuleSpec(name="slow", kind=RuleKind.P99_LATENCY_ABOVE_S, threshold=1.0)]


class Receiver:
    """A loopback HTTP server that records JSON bodies posted to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        self.got = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        self.bodies.append(json.loads(await asyncio.wait_for(reader.readexactly(length), 5)))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        self.got.set()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    target = Receiver()
    server = await asyncio.start_server(target.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield target, f"http://127.0.0.1:{port}/hook"


def test_firing_checks_each_kind_against_its_threshold() -> None:
    figures = Figures("wine", "2", is_drift=True, mean_reward=-0.3, p99_latency_s=0.2)
    assert [rule.name for rule, _ in firing(RULES, figures)] == ["drift", "reward"]


def test_data_quality_and_performance_rules_fire_on_their_tests() -> None:
    rules = [RuleSpec(name="quality", kind=RuleKind.DATA_QUALITY),
             RuleSpec(name="worse", kind=RuleKind.PERFORMANCE_DROP),
             RuleSpec(name="guess", kind=RuleKind.ESTIMATED_ACCURACY_BELOW, threshold=0.9)]
    calm = Figures("digits", "3", estimated_accuracy=0.95)
    assert firing(rules, calm) == []
    alarmed = Figures("digits", "3", is_quality_issue=True, is_performance_drop=True,
                      estimated_accuracy=0.8)
    assert [rule.name for rule, _ in firing(rules, alarmed)] == ["quality", "worse", "guess"]


def test_rule_without_threshold_refused() -> None:
    with pytest.raises(ValueError):
        RuleSpec(name="x", kind=RuleKind.ACCURACY_BELOW)


async def test_alert_posted_once_within_cooldown(receiver: tuple[Receiver, str]) -> None:
    target, url = receiver
    spec = AlertsSpec(rules=RULES, webhook=WebhookSpec(url=url, format="slack"), cooldown_s=60)
    alerter = Alerter(spec, is_private_allowed=True)
    figures = Figures("wine", "2", is_drift=True)
    assert await alerter.check(figures) == ["drift"]
    assert await alerter.check(figures) == []
    assert "drift" in str(target.bodies[0]["text"])


def test_loopback_and_private_addresses_refused_unless_allowed() -> None:
    for address in ("127.0.0.1", "10.0.0.5", "169.254.169.254", "::1", "0.0.0.0"):
        with pytest.raises(AddressNotAllowed):
            check_address(address, is_private_allowed=False)
    check_address("127.0.0.1", is_private_allowed=True)
    with pytest.raises(AddressNotAllowed):
        check_address("169.254.169.254", is_private_allowed=True)  # cloud metadata: never


async def test_webhook_to_loopback_refused_by_default(receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    with pytest.raises(AddressNotAllowed):
        await post_json(url, {"a": 1}, is_private_allowed=False)


async def test_retraining_command_runs_as_argv(tmp_path: Path) -> None:
    marker = tmp_path / "retrained"
    script = "import os, sys; open(sys.argv[1], 'w').write(os.environ['GREENBUTTON_ALERT'])"
    spec = AlertsSpec(rules=RULES, cooldown_s=0,
                      retrain=RetrainSpec(command=[sys.executable, "-c", script, str(marker)]))
    alerter = Alerter(spec, is_private_allowed=False)
    await alerter.check(Figures("wine", "2", mean_reward=-1.0))
    await asyncio.wait_for(asyncio.gather(*alerter.children), 30)
    assert json.loads(marker.read_text())["alert"] == "reward"


async def test_retraining_webhook_posts_event(receiver: tuple[Receiver, str]) -> None:
    target, url = receiver
    spec = AlertsSpec(rules=RULES, retrain=RetrainSpec(url=url))
    await Alerter(spec, is_private_allowed=True).check(Figures("wine", "2", is_drift=True))
    await asyncio.wait_for(target.got.wait(), 5)
    assert target.bodies[0]["event"] == "retrain"


def test_alert_claimed_once_per_cooldown_by_processes_sharing_a_store(
    any_store: PayloadStore, any_store_uri: str
) -> None:
    other = PayloadStore(any_store_uri)  # a second worker or replica: its own engine
    model = f"wine-{uuid.uuid4().hex[:8]}"  # (the shared PostgreSQL keeps other tests' rows)
    start = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)
    try:
        assert any_store.coordination.claim_alert(model, "2", "drift", 60, now=start) is True
        later = start + datetime.timedelta(seconds=59)
        assert other.coordination.claim_alert(model, "2", "drift", 60, now=later) is False
        assert any_store.coordination.claim_alert(model, "2", "drift", 60, now=later) is False
        # other rules, versions and a version-less model have cooldowns of their own
        assert other.coordination.claim_alert(model, "2", "reward", 60, now=later) is True
        assert other.coordination.claim_alert(model, "3", "drift", 60, now=later) is True
        assert other.coordination.claim_alert(model, None, "drift", 60, now=later) is True
        assert other.coordination.claim_alert(model, None, "drift", 60, now=later) is False
        due = start + datetime.timedelta(seconds=60)
        assert other.coordination.claim_alert(model, "2", "drift", 60, now=due) is True
        assert any_store.coordination.claim_alert(model, "2", "drift", 60, now=due) is False
    finally:
        other.close()


def test_concurrent_claims_give_the_alert_to_one_process(
    any_store: PayloadStore, any_store_uri: str
) -> None:
    model = f"wine-{uuid.uuid4().hex[:8]}"
    stores = [PayloadStore(any_store_uri) for _ in range(6)]
    start = threading.Barrier(len(stores))
    now = datetime.datetime.now(datetime.UTC)

    def claim(store: PayloadStore) -> bool:
        start.wait(timeout=30)
        return store.coordination.claim_alert(model, "1", "drift", 3600, now=now)

    try:
        for round_ in range(2):  # first the row is inserted, then (once due) renewed
            with ThreadPoolExecutor(len(stores)) as pool:
                claimed = list(pool.map(claim, stores))
            assert claimed.count(True) == 1, (round_, claimed)
            now += datetime.timedelta(hours=1)
    finally:
        for store in stores:
            store.close()


async def test_workers_sharing_a_store_send_an_alert_once(
    receiver: tuple[Receiver, str], payload_store: PayloadStore
) -> None:
    target, url = receiver
    spec = AlertsSpec(rules=RULES, webhook=WebhookSpec(url=url), cooldown_s=60)
    workers = [Alerter(spec, is_private_allowed=True, claim=payload_store.coordination.claim_alert)
               for _ in range(2)]
    figures = Figures("wine", "2", is_drift=True)
    sent = [await alerter.check(figures) for alerter in workers]
    assert sent == [["drift"], []]
    assert len(target.bodies) == 1


async def test_alert_sent_when_its_claim_cannot_be_made(
    receiver: tuple[Receiver, str]
) -> None:
    target, url = receiver

    def store_down(*_: object) -> bool:
        raise OSError("database is unreachable")

    spec = AlertsSpec(rules=RULES, webhook=WebhookSpec(url=url), cooldown_s=60)
    alerter = Alerter(spec, is_private_allowed=True, claim=store_down)
    assert await alerter.check(Figures("wine", "2", is_drift=True)) == ["drift"]
    assert len(target.bodies) == 1
