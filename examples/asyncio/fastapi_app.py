"""A FastAPI service whose route runs each job under a polysync.aio Lock shared by every worker.

Every worker process opens the lock of a job by name, so one run of a job is under way
at a time across all of them (across hosts too, on redis). Run it from this folder:

    uvicorn fastapi_app:app --workers 2 --port 8000
    curl -X POST http://127.0.0.1:8000/jobs/nightly

Set ``POLYSYNC_REDIS_URL=redis://host:6379/0`` to share the locks across hosts. The job
keeps its count in a plain file (``JOBS_STATE_DIR``, a temporary folder by default): a
read, a pause and a write, which only exclusion keeps exact.

``python fastapi_app.py --selftest`` starts uvicorn with two workers on a free port,
sends 40 concurrent requests for one job and checks that the runs were one at a time
(the counts are 1..40, each once) and that the fencing tokens grew with the runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi import Path as PathParam

import polysync
import polysync.aio

STATE_DIR = Path(os.environ.get("JOBS_STATE_DIR", tempfile.gettempdir()))
REDIS_URL = os.environ.get("POLYSYNC_REDIS_URL")


def open_context() -> polysync.aio.AsyncContext:
    if REDIS_URL:
        return polysync.aio.get_context("redis", url=REDIS_URL)
    return polysync.aio.get_context("posix" if sys.platform != "win32" else "windows")


locks: dict[str, polysync.aio.Lock] = {}


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.actx = open_context()
    yield
    for lock in locks.values():
        lock.close()


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/jobs/{job}")
async def run_job(job: str = PathParam(pattern=r"^[a-z0-9-]{1,40}$")) -> dict[str, object]:
    lock = locks.get(job)
    if lock is None:
        lock = locks[job] = app.state.actx.Lock(name=f"examples-jobs-{job}")
    if not await lock.acquire(timeout=10):
        raise HTTPException(status_code=503, detail=f"job {job} is busy; try again")
    try:
        token = lock.fencing_token  # a store that refuses smaller tokens fences a late holder
        counter = STATE_DIR / f"{job}.count"
        runs = int(counter.read_text()) if counter.exists() else 0
        await asyncio.sleep(0.002)  # the job itself
        counter.write_text(str(runs + 1))
    finally:
        await lock.release()
    return {"job": job, "run": runs + 1, "fencing_token": token, "worker": os.getpid()}


# -- the self-test: uvicorn with two workers, 40 concurrent requests ---------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _selftest(port: int, requests: int) -> list[dict[str, object]]:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for _ in range(300):  # until the workers serve
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/health")).status_code == 200:
                    break
            await asyncio.sleep(0.1)
        replies = await asyncio.gather(*(client.post("/jobs/selftest") for _ in range(requests)))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    return [r.json() for r in replies]


def selftest(requests: int = 40) -> None:
    port = _free_port()
    with tempfile.TemporaryDirectory() as state:
        env = dict(os.environ, JOBS_STATE_DIR=state)
        command = ["uvicorn", "fastapi_app:app", "--workers", "2", "--port", str(port)]
        server = subprocess.Popen(
            [sys.executable, "-m", *command, "--log-level", "warning"],
            cwd=Path(__file__).resolve().parent,
            env=env,
        )
        try:
            runs = asyncio.run(_selftest(port, requests))
        finally:
            server.terminate()
            server.wait(30)
            # A named lock outlives its processes, as it should; this one was only a test's.
            open_context().sync.unlink("examples-jobs-selftest")
    by_run = sorted(runs, key=lambda reply: int(str(reply["run"])))
    assert [reply["run"] for reply in by_run] == list(range(1, requests + 1)), runs
    tokens = [reply["fencing_token"] for reply in by_run]
    assert all(isinstance(t, int) for t in tokens), tokens
    assert all(a < b for a, b in itertools.pairwise(tokens)), tokens  # strictly increasing
    workers = len({reply["worker"] for reply in runs})
    print(f"selftest ok: {requests} runs, one at a time, served by {workers} worker(s)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        selftest()
    else:
        print(__doc__)
