#!/usr/bin/env python3
"""Executes a program with the kernel's memory-deny-write-execute policy set (PR_SET_MDWE, Linux 6.3+).

    mdwe-exec.py PROGRAM [ARG...]

The policy (PR_MDWE_REFUSE_EXEC_GAIN) refuses memory that is writable and executable, or that becomes
executable after being mapped without execute permission: what systemd's MemoryDenyWriteExecute=yes
enforces with seccomp. It is inherited across fork and execve, so the program and everything it loads
(the Swift runtime, the plugins) run under it. On an older kernel the program runs without it and a
notice says so on stderr.
"""
import ctypes
import os
import sys

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1

if len(sys.argv) < 2:
    print(__doc__, file=sys.stderr)
    sys.exit(2)
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
    errno = ctypes.get_errno()
    print(f"mdwe-exec: PR_SET_MDWE not available ({os.strerror(errno)}): running without it", file=sys.stderr)
os.execv(sys.argv[1], sys.argv[1:])
