#!/usr/bin/python3
"""The guest's end of tests/vm: runs the host's commands, one at a time, as root.

Started in the guest by memdoor-test-agent.service from the session's share, so it must
run under the guest's own python3 with the standard library alone. It reads one JSON
request per line from a virtio-serial port and writes one JSON reply per line:

    {"id": N, "argv": [...], "input": BASE64 | null, "env": {...}, "timeout": SECONDS}
    {"id": N, "returncode": N | null, "stdout": BASE64, "stderr": BASE64}

(returncode null: the command outlived its timeout and was killed). A port read returns
end-of-file while no host is connected, so the agent waits for one instead of exiting.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time


def _reply(request: dict) -> dict:
    payload = request.get("input")
    try:
        done = subprocess.run(
            request["argv"],
            input=base64.b64decode(payload) if payload is not None else None,
            stdin=None if payload is not None else subprocess.DEVNULL,
            capture_output=True,
            env=request["env"],
            timeout=request["timeout"],
            check=False,
        )
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        returncode, stdout, stderr = None, expired.stdout or b"", expired.stderr or b""
    except OSError as error:
        returncode, stdout, stderr = 127, b"", str(error).encode()
    return {
        "id": request["id"],
        "returncode": returncode,
        "stdout": base64.b64encode(stdout).decode(),
        "stderr": base64.b64encode(stderr).decode(),
    }


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(port: str) -> None:
    while not os.path.exists(port):
        time.sleep(0.1)
    fd = os.open(port, os.O_RDWR)
    pending = b""
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            time.sleep(0.1)
            continue
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            reply = _reply(json.loads(line))
            _write_all(fd, json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":
    serve(sys.argv[1])
