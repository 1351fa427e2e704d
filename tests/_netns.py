"""Hosts of their own for the partition tests: network namespaces on a private bridge.

:class:`Hosts` makes one Linux network namespace per "host", each joined by a veth pair
to a bridge in the root namespace that carries a private /24 (``10.213.N.0/24``, an
``N`` no route of this machine uses). The bridge has ``.1``, where the test's own
``redis-server`` listens; host *i* has ``.(10 + i)``. Nothing leaves the machine and
nothing machine-wide is changed: no firewall rule, no sysctl, no route outside the
new interfaces.

Two ways to cut a host off (:meth:`Hosts.cut`), both undone by :meth:`Hosts.heal`:

* ``"silent"``: the root end of the host's veth goes down, as a switch port or a cable
  would: the host keeps its address and routes, and every packet either way is dropped
  without an error (a connect hangs, a reply never comes);
* ``"link"``: the host's own interface goes down: its route to the server goes with
  it, so new connections fail at once (``ENETUNREACH``) and packets of open ones are
  never sent.

Clean-up is thorough, as the tests may fail anywhere: :meth:`Hosts.close` kills the
processes started in the namespaces, deletes the namespaces, the veths and the bridge,
and runs from the fixture's finalizer and from ``atexit``; namespaces left by a test
run that was SIGKILLed (their names carry its pid) are removed by the next one.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .redis_servers.processes import _die_with_parent, pid_alive

#: The second octet pair of every subnet tried: 10.213.N.0/24.
NET_PREFIX = "10.213"
NAME_PREFIX = "polysync-"
_LOCK_FILE = "/tmp/polysync-netns.lock"


class NetnsUnavailableError(RuntimeError):
    """Network namespaces cannot be made here (not root, no iproute2, no veth)."""


def ip_binary() -> str | None:
    return shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")


def _run(*args: str, check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    ip = ip_binary()
    if ip is None:
        raise NetnsUnavailableError("`ip` (iproute2) is not installed")
    done = subprocess.run([ip, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise NetnsUnavailableError(
            f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}"
        )
    return done


def unavailable_reason() -> str | None:
    """Why :class:`Hosts` cannot work here, or ``None`` if it can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if ip_binary() is None:
        return "`ip` (iproute2) is not installed: apt-get install -y iproute2"
    if os.geteuid() != 0:
        return "network namespaces need root (`ip netns add` as a normal user fails)"
    return None


def _used_subnets() -> set[str]:
    out = _run("-4", "-o", "addr", "show").stdout + _run("-4", "route", "show").stdout
    return set(re.findall(r"\b" + re.escape(NET_PREFIX) + r"\.(\d+)\.", out))


def remove_stale() -> None:
    """Delete namespaces, veths and bridges a killed test run left behind."""
    names = _run("netns", "list", check=False).stdout.split()
    for name in names:
        m = re.fullmatch(re.escape(NAME_PREFIX) + r"(\d+)-\w+-\w+", name)
        if m and not pid_alive(int(m.group(1))):
            _run("netns", "del", name, check=False)
    links = _run("-o", "link", "show", check=False).stdout
    for m in re.finditer(r"^\d+: (ps[bv](\d+)x\w+)[@:]", links, re.M):
        if not pid_alive(int(m.group(2))):
            _run("link", "del", m.group(1), check=False)


class Hosts:
    """``count`` network namespaces on one private bridge; see the module docstring."""

    def __init__(self, count: int) -> None:
        self.count = count
        pid = os.getpid()
        self.tag = secrets.token_hex(2)[:3]
        # Interface names have at most 15 characters (a pid has at most 7 digits); the
        # pid says whose they are, for remove_stale().
        self.bridge = f"psb{pid}x{self.tag}"
        self.namespaces = [f"{NAME_PREFIX}{pid}-{self.tag}-{chr(97 + i)}" for i in range(count)]
        self.veths = [f"psv{pid}x{chr(97 + i)}{self.tag}" for i in range(count)]
        self.subnet: str | None = None
        self.procs: list[subprocess.Popen[str]] = []
        self._cut: dict[int, str] = {}
        self._closed = False

    # -- addresses ---------------------------------------------------------------------

    @property
    def server_address(self) -> str:
        """The bridge's address: where a server in the root namespace is reachable."""
        assert self.subnet is not None
        return f"{self.subnet}.1"

    @property
    def bridge_mac(self) -> str:
        assert self.subnet is not None
        return f"02:00:0a:d5:{int(self.subnet.rsplit('.', 1)[1]):02x}:01"

    def mac(self, host: int) -> str:
        assert self.subnet is not None
        return f"02:00:0a:d5:{int(self.subnet.rsplit('.', 1)[1]):02x}:{10 + host:02x}"

    def address(self, host: int) -> str:
        assert self.subnet is not None
        return f"{self.subnet}.{10 + host}"

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> Hosts:
        reason = unavailable_reason()
        if reason:
            raise NetnsUnavailableError(reason)
        atexit.register(self.close)
        try:
            with open(_LOCK_FILE, "a") as lock:  # two runs at once pick different subnets
                fcntl.flock(lock, fcntl.LOCK_EX)
                remove_stale()
                used = _used_subnets()
                free = [n for n in range(100, 250) if str(n) not in used]
                if not free:
                    raise NetnsUnavailableError(f"no free {NET_PREFIX}.N.0/24 subnet")
                self.subnet = f"{NET_PREFIX}.{free[secrets.randbelow(len(free))]}"
                _run("link", "add", self.bridge, "type", "bridge")
                # A fixed address (a bridge takes its ports' otherwise), which the hosts
                # know without asking: see the neighbour entries below.
                _run("link", "set", self.bridge, "address", self.bridge_mac)
                _run("addr", "add", f"{self.server_address}/24", "dev", self.bridge)
                _run("link", "set", self.bridge, "up")
            for i, (ns, veth) in enumerate(zip(self.namespaces, self.veths, strict=True)):
                _run("netns", "add", ns)
                _run("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _run("-n", ns, "link", "set", "eth0", "address", self.mac(i))
                _run("link", "set", veth, "master", self.bridge)
                _run("link", "set", veth, "up")
                _run("-n", ns, "link", "set", "lo", "up")
                _run("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
                _run("-n", ns, "link", "set", "eth0", "up")
                self._pin_neighbours(i)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill what runs in the namespaces, then delete them, the veths and the bridge."""
        if self._closed:
            return
        self._closed = True
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        for ns in self.namespaces:
            # Anything else still in there (nothing should be) was started by us too.
            for pid in _run("netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid), 9)
            _run("netns", "del", ns, check=False)
        for veth in self.veths:
            _run("link", "del", veth, check=False)
        _run("link", "del", self.bridge, check=False)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    def leftovers(self) -> list[str]:
        """Whatever of this object still exists (for the tests' clean-up check)."""
        names = set(_run("netns", "list", check=False).stdout.split())
        links = _run("-o", "link", "show", check=False).stdout
        left = [ns for ns in self.namespaces if ns in names]
        left += [d for d in (*self.veths, self.bridge) if re.search(rf"\b{d}[@:]", links)]
        return left

    def __enter__(self) -> Hosts:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- processes and faults ----------------------------------------------------------

    def popen(
        self, host: int, args: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start *args* in host *host*'s namespace, with pipes for stdin and stdout."""
        ip = ip_binary()
        assert ip is not None
        proc = subprocess.Popen(
            [ip, "netns", "exec", self.namespaces[host], *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            cwd=str(Path(__file__).resolve().parent.parent),
            preexec_fn=_die_with_parent,  # `ip netns exec` execs: the child dies with us
        )
        self.procs.append(proc)
        return proc

    def cut(self, host: int, how: str = "silent") -> None:
        """Cut host *host* off from the bridge (see the module docstring for *how*)."""
        if how == "silent":
            _run("link", "set", self.veths[host], "down")
        elif how == "link":
            _run("-n", self.namespaces[host], "link", "set", "eth0", "down")
        else:
            raise ValueError(f"how must be 'silent' or 'link', not {how!r}")
        self._cut[host] = how

    def heal(self, host: int, timeout: float = 5.0) -> None:
        """Undo :meth:`cut`; returns once both ends of the link carry traffic again."""
        how = self._cut.pop(host, None)
        if how == "silent":
            _run("link", "set", self.veths[host], "up")
        elif how == "link":
            _run("-n", self.namespaces[host], "link", "set", "eth0", "up")
        else:
            return
        # `ip link set up` returns before the kernel's link watch has re-activated the
        # devices' queues and the bridge port: a packet sent meanwhile is dropped (a
        # connect's SYN then waits a second for its retransmission).
        deadline = time.monotonic() + timeout
        while not self._link_up(host):
            if time.monotonic() > deadline:
                raise NetnsUnavailableError(f"host {host}'s link did not come back up")
            time.sleep(0.01)
        self._pin_neighbours(host)

    def heal_all(self) -> None:
        """:meth:`heal` every host that is cut off."""
        for host in list(self._cut):
            self.heal(host)

    def _pin_neighbours(self, host: int) -> None:
        """Both ends know each other's hardware address for good (no ARP), so that a
        "silent" cut is a black hole, as a firewall between two hosts would make it: else
        the host gives up resolving the server after 3 s (its connects then fail with
        EHOSTUNREACH), and after a heal the first packets can wait a second for ARP.
        An interface that goes down forgets even these: a "link" heal pins them again."""
        _run(
            "-n", self.namespaces[host], "neigh", "replace", self.server_address,
            "lladdr", self.bridge_mac, "nud", "permanent", "dev", "eth0",
        )  # fmt: skip
        _run(
            "neigh", "replace", self.address(host),
            "lladdr", self.mac(host), "nud", "permanent", "dev", self.bridge,
        )  # fmt: skip

    def _link_up(self, host: int) -> bool:
        outer = _run("-d", "-o", "link", "show", "dev", self.veths[host], check=False).stdout
        inner = _run("-n", self.namespaces[host], "-o", "link", "show", "dev", "eth0").stdout
        return (
            "state UP" in outer
            and "state forwarding" in outer
            and "state UP" in inner
            and "NO-CARRIER" not in outer + inner
        )


def _required() -> bool:
    return (
        os.environ.get("CI", "").lower() == "true"
        or os.environ.get("POLYSYNC_REQUIRE_NETNS", "") == "1"
    )


def started_hosts(count: int) -> Iterator[Hosts]:
    """*count* hosts on a private bridge for a fixture to yield, all of it gone afterwards.

    Where namespaces cannot be made, the test is skipped, or fails when they are
    required (``CI=true`` or ``POLYSYNC_REQUIRE_NETNS=1``).
    """
    import pytest

    reason = unavailable_reason()
    hosts = Hosts(count)
    if reason is None:
        try:
            hosts.start()
        except NetnsUnavailableError as exc:
            reason = str(exc)
    if reason is not None:
        message = f"network namespaces are not usable here: {reason}"
        if _required():
            pytest.fail(message + " (required: CI=true or POLYSYNC_REQUIRE_NETNS=1)")
        pytest.skip(message)
    try:
        yield hosts
    finally:
        hosts.close()
    assert not hosts.leftovers(), f"left behind: {hosts.leftovers()}"
