"""DaemonThreadPool: asyncio's default executor that a stuck worker cannot keep alive."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from memdoor.worker_threads import DaemonThreadPool

HANG_GUARD_SECONDS = 30

# A daemon-like program: its snapshot is a read that never returns (a pipe whose
# write end it holds itself), and it is stopped while that read is in progress.
STUCK_WORKER = textwrap.dedent(
    """
    import asyncio, concurrent.futures, os, sys
    from memdoor.worker_threads import DaemonThreadPool

    async def main(pool):
        asyncio.get_running_loop().set_default_executor(pool)
        read_end, _write_end = os.pipe()
        snapshot = asyncio.ensure_future(asyncio.to_thread(os.read, read_end, 1))
        await asyncio.sleep(0.2)
        snapshot.cancel()
        print("stopping", flush=True)

    if sys.argv[1] == "daemon":
        pool = DaemonThreadPool(2, "snapshot")
    else:
        pool = concurrent.futures.ThreadPoolExecutor(2)
    asyncio.run(main(pool))
    """
)


def start(kind: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", STUCK_WORKER, kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def test_a_worker_stuck_in_a_read_does_not_keep_the_process_alive() -> None:
    ours, stdlib = start("daemon"), start("stdlib")
    try:
        assert ours.wait(HANG_GUARD_SECONDS) == 0
        assert ours.communicate()[0] == "stopping\n"
        # The standard pool, the control: it is still joining the stuck worker
        # (asyncio.run's shutdown_default_executor, then the exit hook).
        assert stdlib.stdout is not None and stdlib.stdout.readline() == "stopping\n"
        assert stdlib.poll() is None
    finally:
        for child in (ours, stdlib):
            if child.poll() is None:
                child.kill()
            child.communicate()


def test_work_runs_on_daemon_threads_and_results_and_errors_come_back() -> None:
    pool = DaemonThreadPool(2, "test-pool")

    async def use() -> tuple[list[bool], BaseException]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(pool)
        daemonic = await asyncio.gather(
            *(asyncio.to_thread(lambda: threading.current_thread().daemon) for _ in range(5))
        )
        with pytest.raises(ZeroDivisionError) as raised:
            await asyncio.to_thread(lambda: 1 // 0)
        return list(daemonic), raised.value

    daemonic, error = asyncio.run(use())

    assert daemonic == [True] * 5
    assert isinstance(error, ZeroDivisionError)


def test_shutdown_cancels_queued_work_and_refuses_new_work() -> None:
    pool = DaemonThreadPool(1, "test-pool")
    started, release = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return release.wait(HANG_GUARD_SECONDS)

    busy = pool.submit(hold)
    assert started.wait(HANG_GUARD_SECONDS)
    queued = pool.submit(lambda: "never")

    pool.shutdown(wait=True)

    assert queued.cancelled()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: "late")
    release.set()
    assert busy.result(HANG_GUARD_SECONDS) is True
