"""The ``polysync`` command: ``backends``, ``ls``, ``inspect``, ``rm``, ``gc``, ``bench``, ``demo``.

``main(argv)`` returns the exit status: 0 on success; 1 when a demo scenario fails, a
named object does not exist, the backend cannot list or collect its objects, or the
backend fails (an unreachable server); 2 on bad
input (an unknown backend or option, a bad name, an unusable start method); 130 on
Ctrl-C; 141 when the reader of the output went away (``| head``), silently. Every error
is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polysync.errors import BackendConnectionError, BackendError, NotFoundError, PolysyncError
from polysync.kernel import Capability

if TYPE_CHECKING:
    from polysync.api import Context
    from polysync.kernel import Listed
    from polysync.primitives import Statistics

__all__ = ["BackendInfo", "backend_infos", "inspect_fields", "listed_fields", "main", "summary"]

_PROG = "polysync"
_DISTRIBUTION = "polysync-primitives"


class _CommandError(Exception):
    """Ends a command: *message* (one line) goes to stderr, *status* is the exit status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version(_DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        from polysync import __version__

        return f"{__version__} (not installed)"


# -- polysync backends -----------------------------------------------------------------------


@dataclass(frozen=True)
class BackendInfo:
    """One registered backend as ``polysync backends`` shows it."""

    name: str
    default: bool
    available: bool
    #: Why it cannot be used here (``None`` when available).
    reason: str | None
    #: Capability values, in declaration order; ``None`` when the class cannot be imported.
    capabilities: list[str] | None
    provided_by: str
    description: str
    target: str
    platforms: list[str]


def backend_infos() -> tuple[str, list[BackendInfo]]:
    """The default backend's name and every registered backend, sorted by name."""
    from polysync.registry import get_registry

    registry = get_registry()
    default = registry.default_name()
    infos = []
    for spec in registry.specs():
        capabilities = None
        try:
            available, reason = registry.availability(spec.name)
            caps = registry.declared_capabilities(spec.name)
            if caps is not None:
                capabilities = [c.value for c in Capability if c in caps]
        except Exception as exc:  # a broken plugin must not hide the others
            available, reason = (
                False,
                f"importing {spec.target} failed: {type(exc).__name__}: {exc}",
            )
        infos.append(
            BackendInfo(
                name=spec.name,
                default=spec.name == default,
                available=available,
                reason=None if available else reason,
                capabilities=capabilities,
                provided_by=spec.provided_by(),
                description=spec.description,
                target=spec.target,
                platforms=list(spec.platforms),
            )
        )
    return default, infos


def _print_backends(default: str, infos: list[BackendInfo]) -> None:
    header = ("", "NAME", "AVAILABLE", "CAPABILITIES", "PROVIDED BY", "DESCRIPTION")
    rows = [header]
    for info in infos:
        caps = "?" if info.capabilities is None else ", ".join(info.capabilities) or "-"
        rows.append(
            (
                "*" if info.default else "",
                info.name,
                "yes" if info.available else "no",
                caps,
                info.provided_by,
                info.description,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    reasons: list[str | None] = [None, *(info.reason for info in infos)]
    for row, reason in zip(rows, reasons, strict=True):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip())
        if reason:
            print(f"{'':{widths[0]}}  unavailable: {reason}")
    if any(info.default for info in infos):
        print(f"\n* default backend: {default}")
    else:
        print(f"\ndefault backend {default!r} is not registered")


def _cmd_backends(args: argparse.Namespace) -> int:
    default, infos = backend_infos()
    if args.json:
        print(json.dumps({"default": default, "backends": [asdict(i) for i in infos]}, indent=2))
    else:
        _print_backends(default, infos)
    return 0


# -- --backend and --option, shared by every command that opens a backend ----------------


def _option(text: str) -> tuple[str, object]:
    """Parse ``KEY=VALUE``; VALUE is read as JSON when it parses (``3``, ``true``), else text."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: object = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend NAME`` and ``--option KEY=VALUE`` (repeatable), read by :func:`_context`."""
    parser.add_argument(
        "--backend", metavar="NAME", help="backend to use (default: the default context)"
    )
    parser.add_argument(
        "--option",
        metavar="KEY=VALUE",
        action="append",
        type=_option,
        help="backend option, repeatable; VALUE is read as JSON if it parses, else as text",
    )


def _context(args: argparse.Namespace) -> Context:
    """The context that ``--backend`` and ``--option`` name; bad ones end with status 2."""
    from polysync.api import get_context

    try:
        return get_context(args.backend, **dict(args.option or []))
    except (PolysyncError, TypeError, ValueError) as exc:
        raise _CommandError(2, _error_line(exc)) from None


def _error_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{_PROG}: error: {text}"


def _missing(names: list[str], ctx: Context) -> str:
    shown = ", ".join(repr(n) for n in names)
    plural = "s" if len(names) > 1 else ""
    return f"{_PROG}: no object{plural} named {shown} on the {ctx.name} backend"


# -- polysync inspect ------------------------------------------------------------------------

#: The fields of ``polysync inspect --json``, in order (documented in docs/cli.md).
_INSPECT_FIELDS = (
    "name",
    "backend",
    "kind",
    "locked",
    "holder",
    "value",
    "is_set",
    "parties",
    "broken",
    "waiting",
    "lease_remaining",
    "fencing_token",
    "last_fencing_token",
    "holder_lease_remaining",
)


def inspect_fields(stats: Statistics) -> dict[str, object]:
    """What ``polysync inspect --json`` prints for *stats*: every field, ``None`` if unknown."""
    data = stats.as_dict()
    return {field: data[field] for field in _INSPECT_FIELDS}


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f} s"
    return str(value)


def _inspect_rows(fields: dict[str, object], describe: str) -> list[tuple[str, str]]:
    """The human table: a row per field the backend could tell (unknown ones left out)."""
    rows = [("name", str(fields["name"])), ("kind", str(fields["kind"])), ("backend", describe)]
    labels = {
        "locked": "locked",
        "value": "value",
        "is_set": "set",
        "parties": "parties",
        "broken": "broken",
        "waiting": "waiting",
        "lease_remaining": "lease left",
        "fencing_token": "fencing token",
        "last_fencing_token": "last fencing token",
        "holder_lease_remaining": "holder lease left",
    }
    for field in _INSPECT_FIELDS[3:]:
        value = fields[field]
        if field == "holder":
            if isinstance(value, dict):
                for part in ("pid", "host", "thread"):
                    if value.get(part) is not None:
                        rows.append((f"holder {part}", str(value[part])))
            elif fields["locked"]:
                rows.append(("holder", "unknown"))
        elif value is not None:
            rows.append((labels[field], _shown(value)))
    return rows


def _cmd_inspect(args: argparse.Namespace) -> int:
    from polysync import _validate

    try:
        name = _validate.name(args.name)
    except (TypeError, ValueError) as exc:
        raise _CommandError(2, _error_line(exc)) from None
    assert name is not None
    ctx = _context(args)
    try:
        obj = ctx.open(name)
    except NotFoundError as exc:
        found = str(exc).startswith("no object named")
        raise _CommandError(1, _missing([name], ctx) if found else _error_line(exc)) from None
    try:
        fields = inspect_fields(obj.statistics())
    finally:
        obj.close()
    if args.json:
        print(json.dumps(fields, indent=2))
    else:
        rows = _inspect_rows(fields, ctx.backend.describe())
        width = max(len(label) for label, _ in rows)
        for label, value in rows:
            print(f"{label:<{width}}  {value}")
    return 0


# -- polysync rm -------------------------------------------------------------------------------


def _cmd_rm(args: argparse.Namespace) -> int:
    from polysync import _validate

    try:
        names = [_validate.name(n) or "" for n in args.names]
    except (TypeError, ValueError) as exc:  # checked first: nothing is removed
        raise _CommandError(2, _error_line(exc)) from None
    ctx = _context(args)
    missing = []
    for name in dict.fromkeys(names):  # each name once, in the order given
        if ctx.unlink(name):
            print(f"removed {name!r}")
        else:
            missing.append(name)
    if missing:
        raise _CommandError(1, _missing(missing, ctx))
    return 0


# -- polysync ls -------------------------------------------------------------------------------


def summary(fields: dict[str, object], parameter: int) -> str:
    """The short state ``polysync ls`` shows for an object whose inspect fields are *fields*."""
    kind = fields["kind"]
    parts: list[str] = []
    holder = fields["holder"]
    if fields["locked"] is not None:
        if not fields["locked"]:
            parts.append("unlocked")
        elif isinstance(holder, dict) and holder.get("pid") is not None:
            host = f"@{holder['host']}" if holder.get("host") else ""
            parts.append(f"locked by pid {holder['pid']}{host}")
        else:
            parts.append("locked")
    if fields["value"] is not None:
        bound = f"/{parameter}" if kind == "bounded_semaphore" else ""
        parts.append(f"value {fields['value']}{bound}")
    if fields["is_set"] is not None:
        parts.append("set" if fields["is_set"] else "clear")
    if fields["broken"]:
        parts.append("broken")
    waiting = fields["waiting"]
    if isinstance(waiting, int) and (waiting or kind in ("condition", "barrier")):
        of = f"/{fields['parties']}" if kind == "barrier" and fields["parties"] else ""
        parts.append(f"{waiting}{of} waiting")
    lease = fields["holder_lease_remaining"]
    if isinstance(lease, float):
        parts.append(f"lease left {lease:.1f} s")
    return ", ".join(parts) or "-"


def listed_fields(ctx: Context, listed: Listed) -> dict[str, object]:
    """What ``polysync ls --json`` prints for one object (documented in docs/cli.md).

    ``state`` is what ``polysync inspect --json`` prints, less name, backend and kind
    (``None`` when the object could not be opened: see ``note``); ``summary`` is the
    short state of the human table.
    """
    kind = None if listed.kind is None else listed.kind.value
    entry: dict[str, object] = {
        "name": listed.name,
        "kind": kind,
        "parameter": listed.parameter,
        "summary": "?",
        "state": None,
        "note": listed.note,
    }
    if listed.kind is None or listed.note is not None:
        return entry
    try:
        obj = ctx.open(listed.name)
    except NotFoundError:
        entry["note"] = "removed while listing"
        return entry
    except PolysyncError as exc:
        entry["note"] = " ".join(str(exc).split())
        return entry
    try:
        fields = inspect_fields(obj.statistics())
    finally:
        obj.close()
    entry["summary"] = summary(fields, listed.parameter)
    entry["state"] = {k: v for k, v in fields.items() if k not in ("name", "backend", "kind")}
    return entry


def _kind_label(entry: dict[str, object]) -> str:
    kind, parameter = entry["kind"], entry["parameter"]
    if kind is None:
        return "?"
    if kind == "barrier":
        return f"barrier({parameter} parties)"
    if kind in ("semaphore", "bounded_semaphore"):
        return f"{kind}({parameter})"
    return str(kind)


def _print_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip())


def _cmd_ls(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        objects = ctx.list_objects()
    except BackendError as exc:
        if isinstance(exc, BackendConnectionError):
            raise
        raise _CommandError(1, _error_line(exc)) from None
    entries = [listed_fields(ctx, listed) for listed in objects]
    if args.json:
        print(json.dumps({"backend": ctx.name, "objects": entries}, indent=2))
        return 0
    if not entries:
        print(f"no named objects on {ctx.backend.describe()}")
        return 0
    rows = [
        (
            str(e["name"]),
            _kind_label(e),
            str(e["summary"]) + (f"  ({e['note']})" if e["note"] else ""),
        )
        for e in entries
    ]
    _print_table(("NAME", "KIND", "STATE"), rows)
    plural = "s" if len(entries) != 1 else ""
    print(f"\n{len(entries)} named object{plural} on {ctx.backend.describe()}")
    return 0


# -- polysync gc -------------------------------------------------------------------------------


def _cmd_gc(args: argparse.Namespace) -> int:
    ctx = _context(args)
    try:
        orphans = ctx.collect_orphans(dry_run=args.dry_run)
    except BackendError as exc:
        if isinstance(exc, BackendConnectionError):
            raise
        raise _CommandError(1, _error_line(exc)) from None
    if args.json:
        found = [{"what": o.what, "reason": o.reason} for o in orphans]
        print(
            json.dumps({"backend": ctx.name, "dry_run": args.dry_run, "orphans": found}, indent=2)
        )
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for orphan in orphans:
        print(f"{verb} {orphan.what}  ({orphan.reason})")
    plural = "s" if len(orphans) != 1 else ""
    if orphans:
        print(f"{verb} {len(orphans)} orphan{plural} on the {ctx.name} backend")
    else:
        print(f"nothing to remove on the {ctx.name} backend")
    return 0


# -- polysync demo ---------------------------------------------------------------------------


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"must be in (0, 3600) seconds, not {text}")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 2 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 2 and 64, not {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 10,000,000, not {value}")
    return value


def _error(message: str) -> int:
    print(f"{_PROG}: error: {message}", file=sys.stderr)
    return 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from polysync import demo

    ctx = _context(args)
    try:
        kind = demo.worker_kind(ctx, args.worker_kind)
    except ValueError as exc:
        return _error(str(exc))
    if kind == "process" and args.start_method not in multiprocessing.get_all_start_methods():
        available = ", ".join(multiprocessing.get_all_start_methods())
        return _error(f"start method {args.start_method!r} is not available here ({available})")
    config = demo.DemoConfig(
        workers=args.workers,
        timeout=args.timeout,
        start_method=args.start_method,
        kind=kind,
        only=tuple(args.only or ()),
        sabotage=frozenset(args.self_test_fail or ()),
    )
    how = (
        f"processes ({args.start_method} start method)"
        if kind == "process"
        else "threads (the backend does not cross processes)"
    )
    print(f"polysync demo on {ctx.backend.describe()}: {args.workers} workers as {how}")
    width = max(len(name) for name in demo.SCENARIOS)

    def report(result: demo.ScenarioResult) -> None:
        verdict = "PASS" if result.passed else "FAIL"
        figure = result.outcome.figure
        print(f"{verdict}  {result.name:<{width}}  {figure:<58} {result.elapsed_ms:>8.1f} ms")
        for problem in result.outcome.problems:
            print(f"{'':6}- {problem}")
        sys.stdout.flush()

    started = time.perf_counter()
    try:
        results = demo.run_demo(ctx, config, report)
    except ValueError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
    elapsed = (time.perf_counter() - started) * 1000
    passed = sum(1 for r in results if r.passed)
    verdict = "PASS" if passed == len(results) else "FAIL"
    print(f"total: {verdict} {passed}/{len(results)} scenarios passed in {elapsed:.1f} ms")
    return 0 if passed == len(results) else 1


#: The benchmark suites of a source checkout, per backend (``benchmarks/<backend>_run.py``).
BENCH_SUITES = ("posix", "redis")


def benchmarks_folder() -> Path | None:
    """The source checkout's ``benchmarks/`` beside the package, if this polysync has one."""
    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    return folder if (folder / "posix_run.py").is_file() else None


def _cmd_bench(args: argparse.Namespace) -> int:
    from polysync.api import get_context

    backend = args.backend or get_context().name
    if backend not in BENCH_SUITES:
        return _error(
            f"no benchmark suite for the {backend!r} backend; there are suites for "
            f"{' and '.join(BENCH_SUITES)}"
        )
    folder = benchmarks_folder()
    if folder is None:
        return _error(
            "polysync bench runs the benchmark suite of a source checkout (benchmarks/ beside "
            "the polysync package), which this installation does not have: clone the "
            "repository and pip install -e '.[bench]' there"
        )
    command = [sys.executable, str(folder / f"{backend}_run.py"), "-v"]
    for flag in ("quick",):
        if getattr(args, flag):
            command.append(f"--{flag}")
    for option in ("only", "against", "plot", "json", "samples", "iters"):
        value = getattr(args, option)
        if value is not None:
            # The suite runs in benchmarks/: a file is named relative to where the user is.
            shown = str(Path(value).absolute()) if option in ("plot", "json") else str(value)
            command += [f"--{option}", shown]
    # The suite prints its tables and, with -v, a progress line per job on stderr; its exit
    # status (1: a hung job, a wrong counter, a leftover object) is this command's.
    return subprocess.run(command, cwd=folder, check=False).returncode


# -- the parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``polysync`` command."""
    from polysync.demo import SCENARIOS

    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Process-synchronization primitives on many backends.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"{_PROG} {_version()}",
        help=f"print the version of {_DISTRIBUTION} and exit",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    backends = commands.add_parser(
        "backends",
        help="list the registered backends",
        description="List every registered backend: whether it runs here, its capabilities, "
        "the distribution providing it. '*' marks the default.",
    )
    backends.add_argument("--json", action="store_true", help="print JSON")
    backends.set_defaults(handler=_cmd_backends)

    ls = commands.add_parser(
        "ls",
        help="list the named objects: name, kind, short state",
        description="List every named object of the backend, with its kind and a short "
        "state (read as inspect reads it, disturbing nothing). Exit status 1 if the "
        "backend cannot list its objects.",
    )
    _add_backend_arguments(ls)
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(handler=_cmd_ls)

    inspect = commands.add_parser(
        "inspect",
        help="show a named object's state: kind, holder, value, waiters, lease, token",
        description="Open the existing named object NAME, whatever its kind, without "
        "creating or disturbing it, and show its statistics(). Exit status 1 if there is "
        "no such object.",
    )
    inspect.add_argument("name", metavar="NAME", help="the object's name")
    _add_backend_arguments(inspect)
    inspect.add_argument("--json", action="store_true", help="print JSON")
    inspect.set_defaults(handler=_cmd_inspect)

    rm = commands.add_parser(
        "rm",
        help="remove (unlink) named objects",
        description="Unlink each named object, whatever its kind. Exit status 1, naming "
        "them, if some did not exist (the others are removed all the same).",
    )
    rm.add_argument("names", metavar="NAME", nargs="+", help="an object's name")
    _add_backend_arguments(rm)
    rm.set_defaults(handler=_cmd_rm)

    gc = commands.add_parser(
        "gc",
        help="remove what dead processes left: anonymous objects, waiters, queue entries",
        description="Remove what processes that died left behind (anonymous objects nobody "
        "can reach, waiter objects of dead processes, dead waiters' queue entries), never "
        "what a live process uses, and never a named object. Exit status 1 if the "
        "backend cannot tell.",
    )
    _add_backend_arguments(gc)
    gc.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    gc.add_argument("--json", action="store_true", help="print JSON")
    gc.set_defaults(handler=_cmd_gc)

    bench = commands.add_parser(
        "bench",
        help="run the benchmark suite against the peers, with progress and tables",
        description="Run a backend's benchmark suite (posix: against multiprocessing and raw "
        "posix_ipc; redis: against redis-py's Lock, python-redis-lock, pottery and sherlock, "
        "on a private redis-server it starts) side by side in one run, print the tables and "
        "the ratios, and optionally draw a picture. Needs a source checkout and the bench "
        "extra. Exit status 1 if a job hung or failed or a counter was wrong.",
    )
    bench.add_argument(
        "--backend", metavar="NAME", help=f"the suite to run: {', '.join(BENCH_SUITES)}"
    )
    bench.add_argument("--against", metavar="PEER,...", help="only these peers (default: all)")
    bench.add_argument("--plot", metavar="FILE", help="draw latencies and throughput (.png, .svg)")
    bench.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    bench.add_argument("--quick", action="store_true", help="small sizes (seconds, not minutes)")
    bench.add_argument("--only", metavar="A,B1,B2,C", help="only these sections")
    bench.add_argument("--samples", metavar="N", type=_count, help="hand-off samples (B1)")
    bench.add_argument("--iters", metavar="K", type=_count, help="iterations per process (C)")
    bench.set_defaults(handler=_cmd_bench)

    names = list(SCENARIOS)
    demo = commands.add_parser(
        "demo",
        help="run the synchronization scenarios on real workers",
        description="Run the lock, rlock, semaphore, event, condition and barrier scenarios "
        "on real processes (threads for a backend that does not cross processes), checking "
        "each one's invariant. Exit status 0 if all pass, 1 if any fails.",
    )
    _add_backend_arguments(demo)
    demo.add_argument(
        "--workers", metavar="N", type=_workers, default=4, help="workers per scenario (4)"
    )
    demo.add_argument(
        "--start-method",
        choices=("fork", "spawn", "forkserver"),
        default="spawn",
        help="multiprocessing start method for process workers (spawn)",
    )
    demo.add_argument(
        "--worker-kind",
        choices=("auto", "process", "thread"),
        default="auto",
        help="run workers as processes or threads (auto: processes if the backend "
        "crosses processes)",
    )
    demo.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_timeout,
        default=30.0,
        help="limit on any single blocking call (30)",
    )
    demo.add_argument(
        "--only",
        metavar="SCENARIO",
        action="append",
        choices=names,
        help=f"run only this scenario, repeatable ({', '.join(names)})",
    )
    demo.add_argument(
        "--self-test-fail",
        metavar="SCENARIO",
        action="append",
        choices=names,
        help=argparse.SUPPRESS,  # break a scenario on purpose: its check must say FAIL
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``polysync`` command with *argv* (default: ``sys.argv[1:]``); return its status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 2
    handler: Any = args.handler
    try:
        status: int = handler(args)
        sys.stdout.flush()  # here, where a reader that went away is caught
    except BrokenPipeError:
        # The reader stopped reading (``polysync ls | head``): end quietly, as shell tools
        # do, with a devnull under stdout so that the flush at exit cannot fail again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except _CommandError as exc:
        print(exc.message, file=sys.stderr)
        return exc.status
    except PolysyncError as exc:  # the backend failed (a server went away): one line
        print(_error_line(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return 130
    return status
