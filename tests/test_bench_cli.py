"""``polysync bench``: the checkout's benchmark suite, its peers chosen, its picture drawn."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from polysync import cli


def _bench(
    *args: str, timeout: float = 240, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polysync", "bench", *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd,
    )  # fmt: skip


def test_a_backend_without_a_suite_is_one_line_and_status_2() -> None:
    done = _bench("--backend", "thread")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "polysync: error: no benchmark suite for the 'thread' backend; there are suites "
        "for posix and redis"
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--against", "nosuch"), "unknown peer(s) nosuch; choose from multiprocessing,raw"),
        (("--plot", "picture.txt"), "the file must end in .png or .svg"),
        (("--plot", "/no/such/folder/p.png"), "does not exist"),
        (("--only", "Z"), "unknown section(s) Z"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(args: tuple[str, ...], says: str) -> None:
    done = _bench("--backend", "posix", *args, timeout=60)
    assert done.returncode == 2
    assert says in done.stderr
    assert "B1." not in done.stdout  # nothing was measured


def test_an_installation_without_the_suite_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "benchmarks_folder", lambda: None)
    assert cli.main(["bench", "--backend", "posix"]) == 2
    err = capsys.readouterr().err
    assert "source checkout" in err
    assert "pip install -e '.[bench]'" in err


@pytest.mark.timeout(300)
def test_a_quick_posix_run_against_one_peer_draws_its_picture(tmp_path: Path) -> None:
    picture, figures = tmp_path / "bench.png", tmp_path / "bench.json"
    done = _bench(  # files named relative to the caller's folder, as a user would
        "--backend", "posix", "--quick", "--only", "B1,C", "--samples", "40", "--iters", "2000",
        "--against", "multiprocessing", "--plot", "bench.png", "--json", "bench.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert picture.stat().st_size > 10_000  # two panels, not an empty canvas
    results = json.loads(figures.read_text())["results"]
    assert set(results["B1"]["samples"]) == {"multiprocessing", "polysync"}  # no raw peer
    assert len(results["B1"]["samples"]["polysync"]) >= 40
    assert results["C"]["counter_exact"]["polysync"] == {"N=2": True, "N=4": True, "N=8": True}
    assert "polysync / multiprocessing" in done.stdout
    assert "raw posix_ipc" not in done.stdout
    # progress: a line per job on stderr
    assert "  [B1] polysync posix / Lock #1 ... ok" in done.stderr
    assert "  [C] multiprocessing / N=8 #2 ... ok" in done.stderr
