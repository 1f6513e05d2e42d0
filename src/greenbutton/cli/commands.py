"""``Commands``: the table of ``greenbutton`` subcommands each command module adds to."""

from __future__ import annotations

import argparse
from typing import TypeAlias

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
