"""A process that has imported torch and the engine once, then forks one
child per request to run `lpc ARGV` (lpc_engine.cli.app.main), optionally
signalling it after a delay. Used by test_fault_injection.py: a fresh
`python -m lpc_engine.cli` costs ~5 s of imports on 2 cores (torch, the
optimizer's torch._dynamo, scikit-learn), which would make 40 runs take
minutes; a forked child starts at the run itself and is a real process,
killed by a real signal, writing real files.

Protocol, one JSON object a line: in {"argv": [...], "log": PATH,
"signal": N or null, "after": SECONDS, "wait_for": [PATH, TEXT] or absent
(signal once PATH holds TEXT)}; out {"code": EXIT CODE (negative: killed by
that signal), "seconds": WALL TIME}.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

torch.set_num_threads(1)  # no OpenMP workers: forking stays safe
TIMEOUT = 300.0  # seconds a child may run

import lpc_engine.cli.app as cli  # noqa: E402
import lpc_engine.training.measure  # noqa: E402,F401  (scikit-learn, scipy)
from lpc_engine.data.datasets import load_data  # noqa: E402

torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)  # imports torch._dynamo
load_data("digits", None, False, "cpu")


def child(argv: list[str], log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        code = cli.main(argv)
    except BaseException:  # a bug: its traceback goes to the log
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _time_to_signal(request: dict, began: float) -> bool:
    if "wait_for" in request:
        path, text = request["wait_for"]
        return os.path.exists(path) and text in Path(path).read_text()
    return time.monotonic() >= began + request["after"]


def serve(request: dict) -> dict:
    sys.stdout.flush()
    began = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child(request["argv"], request["log"])
    signalled, status = not request.get("signal"), None
    while status is None:
        done, status = os.waitpid(pid, os.WNOHANG)
        status = status if done else None
        if status is None and not signalled and _time_to_signal(request, began):
            os.kill(pid, request["signal"])
            signalled = True
        if status is None and time.monotonic() > began + TIMEOUT:  # a hung child fails the test
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return {"code": "timeout", "seconds": TIMEOUT}
        time.sleep(0.002)
    return {"code": os.waitstatus_to_exitcode(status), "seconds": time.monotonic() - began}


if __name__ == "__main__":
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(serve(json.loads(line))), flush=True)
