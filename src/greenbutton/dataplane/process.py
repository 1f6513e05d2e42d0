"""A serving process: build the app for one model URI and run it under uvicorn.

The model loads in the background once the ASGI lifespan starts, so ``/health/live``
answers at once and ``/health/ready`` turns 200 only after loading and warm-up. If loading
fails, the server stops and :func:`run` raises :class:`~greenbutton.errors.ModelNotReady`.
On SIGTERM readiness turns 503 at once, in-flight requests finish, sinks are flushed, and
the process exits 0. A worker stuck in a model call exits with 4 to be replaced
(:mod:`.watchdog`). With several workers, :mod:`.workers` forks them over one socket and
:mod:`.balance` evens out their connections.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import logging
import math
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import NoReturn

import uvicorn
from starlette.applications import Starlette

from ..config import Settings
from ..errors import ModelNotReady
from ..explain.service import ExplainMetrics, ExplainService
from .app import create_app
from .balance import WorkerBalancer
from .context import serving_of
from .core import DataPlane
from .hooks import ServingHooks, ServingPlugins
from .loading import ServedModel
from .metrics import Metrics
from .prefetch import ModelFetch
from .shared_metrics import SharedMetrics, retire
from .threads import limit_native_threads, worker_count
from .watchdog import DEADLINE_SLACK_S, EXIT_STUCK, StuckCall, Watchdog
from .workers import EXIT_LOAD_FAILED, Supervisor

logger = logging.getLogger(__name__)

BACKLOG = 2048
"""Listen backlog of a socket the serving process binds itself."""
STUCK_DRAIN_SLACK_S = 5.0
"""A stuck worker's drain may take ``shutdown_timeout_s`` plus this before it exits anyway."""


def build_serving_app(
    settings: Settings,
    model_uri: str,
    *,
    plugins: ServingPlugins | None = None,
    on_load_failure: Callable[[BaseException], None] | None = None,
    preloaded: ServedModel | None = None,
    metrics_dir: Path | None = None,
    fetch: ModelFetch | None = None,
) -> Starlette:
    """The serving app for ``model_uri``; its lifespan loads (or takes ``preloaded``, or
    loads what ``fetch`` fetched), warms up, and at exit flushes the sinks. With
    ``metrics_dir`` (several workers), ``/metrics`` answers the sum over every worker
    publishing there."""
    plugins = plugins or ServingPlugins()
    dataplane = DataPlane(settings.serving, Metrics())
    hooks = _bind_hooks(plugins, dataplane.metrics)
    shared = SharedMetrics(metrics_dir, dataplane.metrics.render) if metrics_dir else None
    explain = ExplainService(settings.explain, ExplainMetrics(dataplane.metrics.registry))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        with contextlib.ExitStack() as stack:
            loader: Callable[[], ServedModel]
            if preloaded is not None:  # a forked worker: no folder of its own to leave behind
                loader = lambda: preloaded  # noqa: E731
            elif fetch is not None:
                loader = fetch.load
            else:  # without a prefetch (the CLI starts one), the model is fetched here
                workdir = stack.enter_context(tempfile.TemporaryDirectory(
                    prefix="greenbutton-model-", ignore_cleanup_errors=True))
                loader = ModelFetch(model_uri, settings.mlflow, Path(workdir)).load
            tasks = [asyncio.create_task(_load(dataplane, loader, hooks, on_load_failure))]
            if shared is not None:
                tasks.append(asyncio.create_task(_publish(shared)))
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await dataplane.aclose()
                if shared is not None:
                    shared.publish(dataplane.metrics.render())  # the last counts outlive us
                explain.close()

    return create_app(settings, dataplane, lifespan=lifespan, extra_routes=plugins.routes,
                      explainer=explain, render_metrics=shared.render if shared else None)


async def _publish(shared: SharedMetrics) -> None:
    while True:
        shared.publish()
        await asyncio.sleep(shared.interval_s)


def _bind_hooks(
    plugins: ServingPlugins, metrics: Metrics
) -> Callable[[ServedModel], ServingHooks] | None:
    factory = plugins.hooks
    if factory is None:
        return None
    return lambda model: factory(model, metrics)


async def _load(
    dataplane: DataPlane,
    loader: Callable[[], ServedModel],
    hooks: Callable[[ServedModel], ServingHooks] | None,
    on_failure: Callable[[BaseException], None] | None,
) -> None:
    await dataplane.load(loader, hooks)
    if dataplane.load_error is None:
        model = dataplane.model
        logger.info("%s%s loaded and warmed up: ready", model.name,
                    f" version {model.version}" if model.version else "")
    if not gc.isenabled():  # paused for startup by the CLI: what startup made is never collected
        gc.freeze()
        gc.enable()
    if dataplane.load_error is not None and on_failure is not None:
        on_failure(dataplane.load_error)


class GracefulServer(uvicorn.Server):
    """uvicorn's server, but a SIGTERM/SIGINT drain is a success (exit 0, not re-raised).

    ``on_exit`` runs first, so readiness turns 503 before anything else happens. With a
    ``balancer`` (several workers), connections handed on by siblings are served too.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None],
                 balancer: WorkerBalancer | None = None,
                 watchdog: Watchdog | None = None) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._balancer = balancer
        self.watchdog = watchdog
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup, then take connections from sibling workers and start the
        watchdog (on this, the request loop's thread)."""
        await super().startup(sockets)
        self.loop = asyncio.get_running_loop()
        if self._balancer is not None and self.started:
            self._balancer.start(self)
        if self.watchdog is not None and self.started:
            self.watchdog.start(threading.get_ident())

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's serve. If model calls are still running once it has drained (a stuck
        one, or one whose request timed out), exit at once: closing the loop would wait for
        their threads (the default executor's) however long they take."""
        await super().serve(sockets)
        if self.watchdog is None:
            return
        if self.watchdog.stuck is not None:
            _exit_now(EXIT_STUCK, is_forked=self._balancer is not None)
        if left := len(self.watchdog.running()):
            logger.warning("%d model calls still running after their requests timed out "
                           "are abandoned", left)
            _exit_now(0, is_forked=self._balancer is not None)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install the drain handler; unlike uvicorn's, do not re-raise the signal after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: object) -> None:
        """Start draining: readiness off at once, then uvicorn's graceful shutdown."""
        self._on_exit()
        if self._balancer is not None:
            self._balancer.drain()
        super().handle_exit(sig, frame)  # type: ignore[arg-type]


def listening_socket(settings: Settings, host: str | None, port: int | None,
                     fd: int | None) -> socket.socket:
    """The inherited socket ``fd`` (family detected), or a new one bound to host:port."""
    if fd is not None:
        return socket.socket(fileno=fd)
    address = (host or settings.serving.host, port or settings.serving.port)
    return socket.create_server(address, backlog=BACKLOG)


def _url_of(sock: socket.socket) -> str:
    address = sock.getsockname()
    if sock.family == socket.AF_INET6:
        return f"http://[{address[0]}]:{address[1]}"
    if sock.family == socket.AF_INET:
        return f"http://{address[0]}:{address[1]}"
    return str(address)  # a Unix socket's path


def serve_worker(settings: Settings, model_uri: str, sock: socket.socket,
                 plugins: ServingPlugins | None = None,
                 preloaded: ServedModel | None = None,
                 metrics_dir: Path | None = None,
                 fetch: ModelFetch | None = None,
                 balancer: WorkerBalancer | None = None) -> int:
    """Serve on ``sock`` until SIGTERM/SIGINT; 0 after a drain, 3 if the model failed to load.
    The process exits from within (4 if stuck, 0 after a drain) when model calls still run.

    ``balancer`` (one of several workers) evens connections out with the sibling workers."""
    limit_native_threads(settings.serving)
    server: GracefulServer | None = None

    def stop(error: BaseException) -> None:
        if server is not None:
            server.should_exit = True

    app = build_serving_app(settings, model_uri, plugins=plugins, on_load_failure=stop,
                            preloaded=preloaded, metrics_dir=metrics_dir, fetch=fetch)
    context = serving_of(app)
    dataplane = context.dataplane
    explain = context.explain
    assert explain is not None

    def running_calls() -> list[tuple[float, int]]:  # predictions and explanations
        return [*dataplane.running_calls(), *explain.calls.snapshot()]

    def drain() -> None:
        dataplane.is_draining = True

    def on_stuck(call: StuckCall) -> None:  # on the watchdog's thread
        logger.error("%s; this worker stops (exit %d) so that a fresh one replaces it. "
                     "Where the call is:\n%s", call.describe(), EXIT_STUCK,
                     call.stack or "(it returned just now)")
        is_forked = balancer is not None
        if call.blocks_loop or server is None or server.loop is None:
            # nothing on the loop can run: its callers get their answer from the supervisor
            _exit_now(EXIT_STUCK, is_forked=is_forked)
        drain_s = settings.serving.shutdown_timeout_s + STUCK_DRAIN_SLACK_S
        if balancer is not None:  # no heartbeat while draining: a deadline past the drain
            balancer.promise(drain_s + DEADLINE_SLACK_S)
        with contextlib.suppress(RuntimeError):  # (a loop closed meanwhile: already leaving)
            server.loop.call_soon_threadsafe(server.handle_exit, signal.SIGTERM, None)  # a drain
        time.sleep(drain_s)
        logger.error("the drain of the stuck worker did not finish; exiting now")
        _exit_now(EXIT_STUCK, is_forked=is_forked)

    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=balancer.protocol_class() if balancer is not None else "httptools",
        lifespan="on",
        log_config=None,  # its lines go through the process's logging, as greenbutton's do
        access_log=False,
        server_header=False,
        backlog=BACKLOG,
        timeout_graceful_shutdown=math.ceil(settings.serving.shutdown_timeout_s),
    )
    stuck_after_s = settings.serving.stuck_after_s
    watchdog = Watchdog(running_calls,
                        request_timeout_s=settings.serving.request_timeout_s,
                        stuck_call_s=stuck_after_s, on_stuck=on_stuck,
                        on_check=None if balancer is None else partial(
                            balancer.promise, stuck_after_s + DEADLINE_SLACK_S),
                        registry=dataplane.metrics.registry)
    server = GracefulServer(config, drain, balancer, watchdog)
    server.run(sockets=[sock])  # (a stuck worker exits from within, once drained)
    watchdog.stop()
    return EXIT_LOAD_FAILED if dataplane.load_error is not None else 0


def _exit_now(code: int, *, is_forked: bool) -> NoReturn:
    """Leave with ``code`` without waiting for threads: a model call's thread still running
    would block a normal exit (the interpreter joins the executors' threads).

    A process of its own (one worker) first runs its exit handlers, as a normal exit would:
    they remove the model's temporary folder (``prefetching``'s) and flush the logs. A forked
    worker runs none: it inherited its supervisor's, which would remove the folder its
    siblings serve from.
    """
    if not is_forked:
        atexit._run_exitfuncs()  # what a normal exit runs, minus joining the threads
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(code)


def run(
    settings: Settings,
    model_uri: str,
    *,
    host: str | None = None,
    port: int | None = None,
    fd: int | None = None,
    plugins: ServingPlugins | None = None,
    fetch: ModelFetch | None = None,
) -> None:
    """Serve ``model_uri`` until SIGTERM/SIGINT, on ``host:port`` or an inherited socket ``fd``.

    ``settings.serving.workers`` processes share the socket (0: one per core the container's
    CPU limit allows, see :mod:`.cpu_quota`); returns after
    a graceful drain, raises ModelNotReady if the model cannot be loaded. One worker loads
    in the background (``/health/live`` answers at once); several workers are forked after
    the supervisor has loaded the model, so each starts with it (copy-on-write) and a
    replacement is ready in a moment. ``fetch`` (see :mod:`.prefetch`) has its files on the way.
    """
    sock = listening_socket(settings, host, port, fd)
    workers = worker_count(settings.serving)
    logger.info("serving %s on %s with %d worker%s", model_uri, _url_of(sock), workers,
                "s" if workers > 1 else "")
    if workers == 1:
        code = serve_worker(settings, model_uri, sock, plugins, fetch=fetch)
    else:
        with tempfile.TemporaryDirectory(prefix="greenbutton-model-",
                                         ignore_cleanup_errors=True) as workdir:
            source = fetch or ModelFetch(model_uri, settings.mlflow, Path(workdir))
            model = source.load()
            gc.freeze()  # what exists now is never collected: no GC pauses over it, pages shared
            gc.enable()  # paused for startup by the CLI
            metrics_dir = Path(workdir) / "metrics"
            metrics_dir.mkdir(mode=0o700)

            def serve(balancer: WorkerBalancer) -> int:
                return serve_worker(settings, model_uri, sock, plugins, model, metrics_dir,
                                    balancer=balancer)

            code = Supervisor(serve, sock, workers, settings.serving.shutdown_timeout_s,
                              on_exit=partial(retire, metrics_dir)).run()
    if code != 0:
        raise ModelNotReady(f"{model_uri}: the model could not be loaded; see the log")
