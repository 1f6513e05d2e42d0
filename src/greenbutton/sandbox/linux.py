"""The few Linux system calls the sandbox needs, through ctypes (Python 3.11 has no
``os.unshare`` and no ``mount``): namespaces, mounts and process controls."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import cache

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def unshare(flags: int) -> None:
    """Move this process into new namespaces (``OSError`` when the kernel refuses)."""
    _check(_libc().unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    """mount(2); ``OSError`` on failure."""
    def encode(value: str | None) -> bytes | None:
        return None if value is None else value.encode()

    _check(_libc().mount(encode(source), encode(target), encode(fstype),
                         ctypes.c_ulong(flags), encode(data)), f"mount {target}")


def mount_flags_of(path: str) -> int:
    """The flags of the mount ``path`` is on that a remount must keep (in a user namespace
    the kernel refuses a remount that would clear them)."""
    flags = os.statvfs(path).f_flag
    kept = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)  # same bits in statvfs and mount
    for statvfs_bit, mount_bit in ((os.ST_NOATIME, MS_NOATIME),
                                   (os.ST_NODIRATIME, MS_NODIRATIME),
                                   (os.ST_RELATIME, MS_RELATIME)):
        if flags & statvfs_bit:
            kept |= mount_bit
    return kept


def prctl(option: int, value: int) -> None:
    """prctl(2) with one argument; ``OSError`` on failure."""
    _check(_libc().prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0),
                         ctypes.c_ulong(0), ctypes.c_ulong(0)), "prctl")
