"""A plain asyncio HTTP server whose handler holds a polysync.aio Lock (the FastAPI pattern).

Every worker process (or host, with redis) that runs this shares the lock by name, so
the "critical section" runs one request at a time across all of them. Run it:

    python examples/asyncio/jobs_server.py            # serves on 127.0.0.1:8765
    python examples/asyncio/jobs_server.py --selftest # starts, sends 50 requests, checks

With FastAPI the handler is the same: ``async with lock:`` inside an ``async def`` route.
Set POLYSYNC_BACKEND=redis and pass url=... to get_context() to share across hosts.
"""

from __future__ import annotations

import asyncio
import sys

import polysync.aio

actx = polysync.aio.get_context("posix" if sys.platform != "win32" else "windows")
lock = actx.Lock(name="examples-jobs-server")
state = {"inside": 0, "served": 0, "overlaps": 0}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    async with lock:  # one request at a time, across every process using the name
        state["inside"] += 1
        if state["inside"] > 1:
            state["overlaps"] += 1
        await asyncio.sleep(0.001)  # the protected work
        state["inside"] -= 1
        state["served"] += 1
    body = f"served {state['served']}\n".encode()
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    writer.close()


async def request(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def main(selftest: bool) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0 if selftest else 8765)
    port = server.sockets[0].getsockname()[1]
    async with server:
        if not selftest:
            print(f"serving on http://127.0.0.1:{port}/")
            await server.serve_forever()
        replies = await asyncio.gather(*(request(port) for _ in range(50)))
    assert all(reply.startswith(b"HTTP/1.1 200 OK") for reply in replies)
    assert state == {"inside": 0, "served": 50, "overlaps": 0}, state
    print("selftest ok: 50 requests, one at a time")


if __name__ == "__main__":
    try:
        asyncio.run(main("--selftest" in sys.argv))
    finally:
        lock.close()
