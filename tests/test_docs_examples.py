"""Every Python example in README.md and docs/*.md runs as written, against real backends.

Each ```` ```python ```` fence is one example, run as a script in a fresh interpreter. An
HTML comment on the line right above a fence (invisible in the rendered docs) says what
the example needs, as space-separated tags:

``<!-- example: continues -->``
    run it after the previous example of the same page (it uses that one's names);
``<!-- example: redis -->``, ``redis-cluster``, ``redis-sentinel``
    a private server (or cluster, or sentinel) is started, and the example's
    ``redis://host:port/db`` URLs (and a sentinel list and service name) are replaced by
    its addresses: the docs show a production host, the test has a free port;
``<!-- example: postgres -->``
    a private PostgreSQL server is started, and the example's ``postgresql://`` URLs
    are replaced by its URL;
``<!-- example: fenced-store -->``
    ``store``, ``report`` and ``entry`` exist: the docs' fenced store, which refuses a
    fencing token older than the newest it accepted;
``<!-- example: windows -->``
    it runs in the Windows leg (under Wine), and only there.

Anything anonymous an example leaves in /dev/shm fails the test, as the README promises.
As root on Linux (CI), each example runs with a /dev/shm of its own (a tmpfs in a
private mount namespace, gone with it): its named objects vanish with it and other
programs' objects never count. Elsewhere the real /dev/shm is compared before and after,
and the named objects an example made there are unlinked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import polysync_shm_entries

ROOT = Path(__file__).resolve().parent.parent
_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(
    r"(?:^<!--\s*example:(?P<tags>[^>]*)-->\n)?^```(?P<lang>python|py)[ \t]*\n(?P<code>.*?)^```",
    re.S | re.M,
)
_TAGS = {
    "continues", "redis", "redis-cluster", "redis-sentinel", "postgres", "fenced-store", "windows",
}  # fmt: skip
_URL = re.compile(r"redis://[^\s\"']+")
_PG_URL = re.compile(r"postgresql://[^\s\"']+")
_SENTINELS = re.compile(r"sentinel\s*=\s*\[[^\]]*\]")
_SERVICE = re.compile(r"service_name=\"[^\"]*\"")
# ``print(...)  # 4000``: a literal number after a print is the output the docs promise.
_PROMISED = re.compile(r"^\s*print\(.*\)\s+#\s*(-?\d+)\s*$", re.M)

FENCED_STORE = '''
class FencedStore:
    """Remembers the newest fencing token it accepted and refuses older ones."""

    def __init__(self):
        self.newest = 0
        self.entries = []

    def write(self, entry, *, fencing_token):
        if fencing_token is None or fencing_token <= self.newest:
            raise RuntimeError(f"stale fencing token {fencing_token} <= {self.newest}")
        self.newest = fencing_token
        self.entries.append(entry)


store = FencedStore()
report = entry = "an entry"
'''


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    tags: frozenset[str]
    code: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _examples() -> list[Example]:
    found: list[Example] = []
    for page in _PAGES:
        text = page.read_text(encoding="utf-8")
        previous = ""
        for match in _FENCE.finditer(text):
            tags = frozenset((match["tags"] or "").split())
            unknown = tags - _TAGS
            line = text.count("\n", 0, match.start("code"))
            name = str(page.relative_to(ROOT))
            assert not unknown, f"{name}:{line}: unknown example tags {sorted(unknown)}"
            code = match["code"]
            if "continues" in tags:
                assert previous, f"{name}:{line} continues, but no example comes before it"
                code = previous + "\n" + code
            previous = code
            found.append(Example(name, line, tags, code))
    return found


EXAMPLES = _examples()
_HERE = [e for e in EXAMPLES if ("windows" in e.tags) == (sys.platform == "win32")]


def _prepared(example: Example, request: pytest.FixtureRequest) -> str:
    code = example.code
    if "redis" in example.tags:
        code = _URL.sub(request.getfixturevalue("redis_server_fresh").url, code)
    if "redis-cluster" in example.tags:
        code = _URL.sub(request.getfixturevalue("redis_cluster").url, code)
    if "redis-sentinel" in example.tags:
        sentinel = request.getfixturevalue("redis_sentinel")
        code = _SENTINELS.sub(f"sentinel={sentinel.sentinels!r}", code)
        code = _SERVICE.sub(f"service_name={sentinel.service_name!r}", code)
    if "postgres" in example.tags:
        code = _PG_URL.sub(request.getfixturevalue("pg_server_fresh").url, code)
    if "fenced-store" in example.tags:
        code = FENCED_STORE + "\n" + code
    return code


#: Root on Linux: each example gets a /dev/shm of its own (a tmpfs in a private mount
#: namespace), so what it leaves is told apart from other programs' objects exactly.
_ISOLATED = sys.platform == "linux" and os.geteuid() == 0 and shutil.which("unshare") is not None
# Inside the namespace: run the example, give its tracker 20 s to unlink what is anonymous,
# then list what is left after a marker line.
_IN_NAMESPACE = """
mount -t tmpfs -o mode=1777 polysync-docs /dev/shm || exit 97
"$0" "$1"; rc=$?
i=0
while [ $i -lt 400 ] && ls /dev/shm | grep -v -e polysync-n- -e polysync-h- -e polysync-u- \
    | grep -q polysync; do sleep 0.05; i=$((i+1)); done
echo "{marker}"; ls /dev/shm
exit $rc
"""
_MARKER = "--- /dev/shm after the example ---"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("example", _HERE, ids=lambda e: e.id)
def test_example_runs(example: Example, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(_prepared(example, request), encoding="utf-8")
    command = [sys.executable, str(script)]
    if _ISOLATED:
        shell = _IN_NAMESPACE.replace("{marker}", _MARKER)
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, *command]
    before = polysync_shm_entries()
    try:
        done = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=75, check=False,
            env=_fresh_environment(),
        )  # fmt: skip
    finally:
        made = polysync_shm_entries() - before
        named = {n for n in made if "polysync-n-" in n or "polysync-h-" in n}
        if not _ISOLATED:
            _unlink_shm(named)
    output, _, shm_after = done.stdout.partition(_MARKER + "\n")
    assert done.returncode == 0, f"{example.id} failed:\n{done.stdout}\n{done.stderr}"
    for promised in _PROMISED.findall(example.code):
        assert promised in output.split(), f"{example.id} promises {promised}: {output}"
    if _ISOLATED:
        left = {n for n in shm_after.split() if "polysync" in n} - _named_entries(shm_after)
    else:  # without root, a concurrent program's anonymous objects would count here too
        deadline = time.monotonic() + 20
        while (left := polysync_shm_entries() - before - named) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not left, f"{example.id} left anonymous objects in /dev/shm: {sorted(left)}"


def _fresh_environment() -> dict[str, str]:
    """This process's environment without its posix cleanup tracker: an example is a
    program of its own, with a tracker of its own (inside its namespace, as root)."""
    if sys.platform == "win32":  # no posix backend, no tracker (and no posix_ipc) there
        return dict(os.environ)
    from polysync.backends.posix.tracker import ENV

    return {k: v for k, v in os.environ.items() if k != ENV}


def _named_entries(listing: str) -> set[str]:
    """Named objects (and their name records): they persist by design until unlinked."""
    marks = ("polysync-n-", "polysync-h-", "polysync-u-")
    return {n for n in listing.split() if any(m in n for m in marks)}


def _unlink_shm(entries: set[str]) -> None:
    for entry in entries:
        Path("/dev/shm", entry).unlink(missing_ok=True)


def test_every_page_with_python_has_its_examples_found() -> None:
    """The fence pattern finds every python fence: none is silently left unrun."""
    for page in _PAGES:
        text = page.read_text(encoding="utf-8")
        fences = len(re.findall(r"^```(?:python|py)[ \t]*$", text, re.M))
        found = sum(1 for e in EXAMPLES if e.page == str(page.relative_to(ROOT)))
        assert found == fences, f"{page.name}: {fences} python fences, {found} examples"


def test_windows_examples_exist_for_the_windows_leg() -> None:
    """The Windows leg runs the examples tagged windows: there must be some to run."""
    assert any("windows" in e.tags for e in EXAMPLES)
