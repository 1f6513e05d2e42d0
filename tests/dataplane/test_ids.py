import time
import uuid

from greenbutton.dataplane.core import request_id_from
from greenbutton.ids import new_request_id


def test_a_request_id_is_a_uuid7_in_32_hex_digits() -> None:
    value = new_request_id()
    parsed = uuid.UUID(hex=value)
    assert len(value) == 32 and value == value.lower()
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_request_ids_carry_the_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    value = new_request_id()
    after = time.time_ns() // 1_000_000
    assert before <= int(value[:12], 16) <= after


def test_ids_of_later_milliseconds_sort_after_earlier_ones() -> None:
    first = new_request_id()
    deadline = time.monotonic() + 1
    while int(new_request_id()[:12], 16) == int(first[:12], 16) and time.monotonic() < deadline:
        pass
    assert new_request_id() > first


def test_ids_are_unique_and_random_within_a_millisecond() -> None:
    values = [new_request_id() for _ in range(20_000)]
    assert len(set(values)) == len(values)
    assert len({v[16:] for v in values}) == len(values)  # the random tail differs


def test_the_callers_id_is_kept_and_a_bad_one_replaced() -> None:
    assert request_id_from("order-42") == "order-42"
    replaced = request_id_from("bad id with spaces")
    assert uuid.UUID(hex=replaced).version == 7
