"""A polysync client on a "host" of the partition tests, driven over its stdin and stdout.

Run as ``python tests/_netns_child.py URL PREFIX LEASE`` (inside ``ip netns exec``). It
reads one JSON request per line and answers each with one JSON line carrying the
request's ``id``; ``on_lost`` callbacks print ``{"event": "lost", ...}`` lines. Every
time is ``time.monotonic()``, which all namespaces share (one kernel), so the test can
set them side by side. Operations on one object run in order in a thread of that
object's own (an RLock is owned by a thread); ``state`` is answered at once.

Requests: ``open`` (obj, kind, args, name), ``acquire`` (obj, timeout), ``release``
(obj), ``state`` (obj), ``write`` (obj, token: a write to the fenced store, see
:data:`FENCED_WRITE`), ``close`` (obj) and ``exit``.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from typing import Any

import polysync

#: The protected resource of the docs' fencing example: a store that remembers the
#: largest token it saw and refuses writes that carry a smaller one.
#: KEYS: the largest token so far, the log; ARGV: the writer's token, the entry.
FENCED_WRITE = """
local top = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < top then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
return 1
"""

_out = threading.Lock()


def say(**message: Any) -> None:
    with _out:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


class Child:
    def __init__(self, url: str, prefix: str, lease: float) -> None:
        self.prefix = prefix
        self.ctx = polysync.get_context("redis", url=url, prefix=prefix, lease=lease)
        self.objects: dict[str, Any] = {}
        self.lost_at: dict[str, float] = {}
        self.workers: dict[str, queue.Queue[dict[str, Any] | None]] = {}

    def submit(self, request: dict[str, Any]) -> None:
        op = request["op"]
        if op == "state":
            self.reply(request, self.state(request["obj"]))
            return
        obj = request.get("obj", "")
        work = self.workers.get(obj)
        if work is None:
            work = self.workers[obj] = queue.Queue()
            threading.Thread(target=self.serve, args=(work,), daemon=True).start()
        work.put(request)

    def serve(self, work: queue.Queue[dict[str, Any] | None]) -> None:
        while True:
            request = work.get()
            if request is None:
                return
            started = time.monotonic()
            try:
                result = getattr(self, "do_" + request["op"])(request)
            except Exception as exc:
                ended = time.monotonic()
                self.reply(
                    request,
                    {"error": type(exc).__name__, "message": str(exc), "t0": started, "t1": ended},
                )
            else:
                self.reply(request, {**result, "t0": started, "t1": time.monotonic()})

    @staticmethod
    def reply(request: dict[str, Any], body: dict[str, Any]) -> None:
        say(id=request["id"], **body)

    def state(self, key: str) -> dict[str, Any]:
        obj = self.objects.get(key)
        if obj is None:
            return {"error": "KeyError", "message": key}
        return {"lost": obj.lost, "token": obj.fencing_token, "lost_at": self.lost_at.get(key)}

    # -- operations ----------------------------------------------------------------------

    def do_open(self, request: dict[str, Any]) -> dict[str, Any]:
        key = request["obj"]

        def on_lost() -> None:
            self.lost_at[key] = time.monotonic()
            obj = self.objects.get(key)
            say(
                event="lost",
                obj=key,
                t=self.lost_at[key],
                lost=None if obj is None else obj.lost,
                token=None if obj is None else obj.fencing_token,
            )

        make = getattr(self.ctx, request["kind"])
        self.objects[key] = make(*request.get("args", ()), name=request["name"], on_lost=on_lost)
        return {}

    def do_acquire(self, request: dict[str, Any]) -> dict[str, Any]:
        obj = self.objects[request["obj"]]
        got = obj.acquire(timeout=request["timeout"])
        acquired = time.monotonic()
        return {"result": got, "token": obj.fencing_token if got else None, "at": acquired}

    def do_release(self, request: dict[str, Any]) -> dict[str, Any]:
        obj = self.objects[request["obj"]]
        released = time.monotonic()  # no longer held from here, whatever the reply
        obj.release()
        return {"at": released}

    def do_write(self, request: dict[str, Any]) -> dict[str, Any]:
        client = self.ctx.backend.client
        base = f"{self.prefix}:store"
        entry = json.dumps({"token": request["token"], "t": time.monotonic()})
        done = client.eval(FENCED_WRITE, 2, f"{base}:top", f"{base}:log", request["token"], entry)
        return {"accepted": bool(int(done))}

    def do_close(self, request: dict[str, Any]) -> dict[str, Any]:
        self.objects.pop(request["obj"]).close()
        return {}

    def do_exit(self, request: dict[str, Any]) -> dict[str, Any]:
        for obj in self.objects.values():
            obj.close()
        self.objects.clear()
        return {}


def main() -> None:
    url, prefix, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    child = Child(url, prefix, lease)
    say(event="ready", t=time.monotonic())
    for line in sys.stdin:
        if line.strip():
            child.submit(json.loads(line))
    # stdin closed: the test is done (or gone); leave without waiting for anything
    sys.stdout.flush()


if __name__ == "__main__":
    main()
