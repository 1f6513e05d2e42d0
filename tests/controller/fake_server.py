"""A tiny real serving process for controller tests: uvicorn on an inherited socket.

Run as ``python fake_server.py --fd N --version V [--ready-delay-s S] [--silent-s S]
[--exit-after-s S] [--busy-until-ready] [--ignore-sigterm]``. It answers nothing for
``--silent-s`` (connections queue on its socket, as while a real server imports its model;
with ``--ignore-sigterm`` a SIGTERM meanwhile does nothing), then ``/health/ready`` with 200
once the delay has passed (``inf``: never); it exits with code 3 after ``--exit-after-s`` (a
broken version: 0 dies at once), echoes its version on ``/predict`` (with
``--busy-until-ready``, a 503 until ready, as a model still loading), exits with code 3 on
``POST /crash`` (after a line on stderr), like a model that crashed, and on ``POST /freeze``
blocks its event loop for a minute, like a model call that never returns (``/health/live``
then goes unanswered).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def create_app(version: int, ready_delay_s: float, is_busy_until_ready: bool = False
               ) -> Starlette:
    """The fake model server for one version."""
    started = time.monotonic()

    def is_ready() -> bool:
        return time.monotonic() - started >= ready_delay_s

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": is_ready()}, status_code=200 if is_ready() else 503)

    async def predict(request: Request) -> Response:
        if is_busy_until_ready and not is_ready():
            return JSONResponse({"error": "loading"}, status_code=503)
        body = await request.body()
        delay_s = float(request.query_params.get("delay_s", "0"))
        await asyncio.sleep(min(delay_s, 5.0))
        return JSONResponse({"version": version, "bytes": len(body), "pid": os.getpid()})

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "live"})

    async def freeze(request: Request) -> Response:
        print(f"fake model v{version} freezing on purpose", file=sys.stderr, flush=True)
        time.sleep(60)  # on the loop: nothing else is answered meanwhile
        return JSONResponse({})

    async def crash(request: Request) -> Response:
        print(f"fake model v{version} crashing on purpose", file=sys.stderr, flush=True)
        os._exit(3)

    return Starlette(routes=[
        Route("/health/ready", ready),
        Route("/health/live", live),
        Route("/freeze", freeze, methods=["POST"]),
        Route("/predict", predict, methods=["POST"]),
        Route("/invocations", predict, methods=["POST"]),
        Route("/crash", crash, methods=["POST"]),
    ])


def main() -> None:
    """Parse arguments and serve until SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--ready-delay-s", type=float, default=0.3)
    parser.add_argument("--silent-s", type=float, default=0.0,
                        help="hold the socket without answering first (importing a model)")
    parser.add_argument("--exit-after-s", type=float)
    parser.add_argument("--busy-until-ready", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true",
                        help="while silent, SIGTERM does nothing")
    args = parser.parse_args()
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.exit_after_s is not None:
        threading.Timer(args.exit_after_s, _exit_broken, args=(args.version,)).start()
    time.sleep(args.silent_s)
    app = create_app(args.version, args.ready_delay_s, args.busy_until_ready)
    uvicorn.run(app, fd=args.fd, log_level="warning", access_log=False, lifespan="off")


def _exit_broken(version: int) -> None:
    print(f"fake model v{version} is broken: exiting", file=sys.stderr, flush=True)
    os._exit(3)


if __name__ == "__main__":
    main()
