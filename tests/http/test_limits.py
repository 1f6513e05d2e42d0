"""Body limits and media types, shared by /predict and /invocations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from greenbutton.dataplane.core import DataPlane

ENDPOINTS = ["/predict", "/invocations"]
TEN_MB = 10 * 1024 * 1024
CHUNK = b"[" * 64 * 1024


class CountingBody:
    """A streamed request body that records how many chunks the server pulled."""

    def __init__(self, total_bytes: int) -> None:
        self.chunks_left = total_bytes // len(CHUNK)
        self.chunks_read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.chunks_left:
            self.chunks_left -= 1
            self.chunks_read += 1
            yield CHUNK


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_post_declared_large_body_rejected_unread(
    client: httpx.AsyncClient, path: str
) -> None:
    body = CountingBody(TEN_MB)
    response = await client.post(
        path,
        content=body,
        headers={"content-type": "application/json", "content-length": str(TEN_MB)},
    )
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "payload_too_large"
    assert body.chunks_read == 0


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_post_chunked_large_body_stops_at_limit(
    client: httpx.AsyncClient, dataplane: DataPlane, path: str
) -> None:
    body = CountingBody(TEN_MB)
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    limit_chunks = dataplane.settings.max_body_bytes // len(CHUNK)
    assert body.chunks_read <= limit_chunks + 1
    assert body.chunks_left > 0


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "content_type",
    ["application/octet-stream", "application/x-pickle", "application/python-pickle", ""],
)
async def test_post_non_json_media_type_rejected_with_415(
    client: httpx.AsyncClient, path: str, content_type: str
) -> None:
    response = await client.post(
        path, content=b"\x80\x04\x95", headers={"content-type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["error"]["field"] == "content-type"


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_post_empty_body_rejected(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(path, content=b"", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_post_unparseable_json_rejected_saying_where(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.post(
        path, content=b'{"inputs": [1, 2', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "malformed_request"
    assert error["field"] == "body"
    assert "line 1" in error["message"]


async def test_post_non_utf8_charset_rejected_with_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/predict", content=b"{}", headers={"content-type": "application/json; charset=latin-1"}
    )
    assert response.status_code == 415
