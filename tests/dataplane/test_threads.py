"""Native math pools are capped to the cores each serving worker may use."""

from __future__ import annotations

import json
import subprocess
import sys

from greenbutton.config import ServingSettings
from greenbutton.dataplane.threads import available_cores, native_threads


def test_cores_are_shared_among_workers() -> None:
    cores = available_cores()
    assert native_threads(ServingSettings(workers=1)) == cores
    assert native_threads(ServingSettings(workers=cores * 4)) == 1
    assert native_threads(ServingSettings(workers=1, native_threads=3)) == 3


def test_limit_applies_to_the_loaded_pools() -> None:
    code = (
        "import json, numpy, threadpoolctl\n"
        "from greenbutton.config import ServingSettings\n"
        "from greenbutton.dataplane.threads import limit_native_threads\n"
        "limit_native_threads(ServingSettings(workers=1, native_threads=1))\n"
        "print(json.dumps([p['num_threads'] for p in threadpoolctl.threadpool_info()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    threads = json.loads(out)
    assert threads and set(threads) == {1}
