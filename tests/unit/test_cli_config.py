"""``pyiscsi serve --config`` and ``pyiscsi config check``: which flags combine with a file,
exit code 2 and one line per mistake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyiscsi import cli
from pyiscsi.target.catalog import Catalog

GOOD = '''
[limits]
queue_depth = 32
nop_interval = 7
[[target]]
name = "iqn.2026-11.org.example:a"
portals = ["127.0.0.1:0"]
luns = ["ram:1MiB", { id = 3, spec = "ram:1MiB", serial = "a-3" }]
'''


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def config(tmp: Path, text: str = GOOD) -> str:
    path = tmp / "c.toml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What ``serve`` would run, instead of running it."""
    seen: list[Any] = []

    def fake_run(coro: Any, loop_kind: str) -> None:
        seen.append(coro.cr_frame.f_locals)
        coro.close()

    monkeypatch.setattr(cli, "_run", fake_run)
    return seen


def test_serve_config_with_limit_flags_winning(tmp_path: Path, served: list[Any],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["serve", "--config", config(tmp_path), "--queue-depth", "8",
                        "--stats", str(tmp_path / "s.json"), "--loop", "asyncio"], capsys)
    assert code == 0, err
    (frame,) = served
    catalog = frame["catalog"]
    assert isinstance(catalog, Catalog)
    assert catalog.limits.queue_depth == 8 and catalog.limits.nop_interval == 7.0
    assert frame["addresses"] == [("127.0.0.1", 0)]
    assert frame["stats_path"] == str(tmp_path / "s.json")
    target = catalog.targets["iqn.2026-11.org.example:a"]
    assert sorted(target.luns) == [0, 3] and target.luns[3].serial == "a-3"


@pytest.mark.parametrize("flags", [["--lun", "ram:1MiB"], ["--portal", "127.0.0.1:1"],
                                   ["--target", "iqn.x", "--allow", "iqn.y"],
                                   ["--chap", "u:secretsecret12"]])
def test_target_flags_with_config_are_an_error(tmp_path: Path, flags: list[str], served: list[Any],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["serve", "--config", config(tmp_path), *flags], capsys)
    assert code == 2 and not served
    assert err.startswith("pyiscsi: error: --") and "cannot be combined with --config" in err
    assert all(f in err for f in flags if f.startswith("--"))


def test_a_bad_file_is_exit_2_with_a_line_per_mistake(tmp_path: Path, served: list[Any],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path, GOOD.replace("ram:1MiB", "ram:1x").replace("queue_depth", "qd"))
    for argv in (["serve", "--config", path], ["config", "check", path]):
        code, out, err = run(argv, capsys)
        assert code == 2 and not served and not out
        assert err.splitlines() == [
            f"pyiscsi: error: {path}: target[0].luns[0]: bad size '1x': expected a number "
            "with an optional K/M/G/T suffix",
            f"pyiscsi: error: {path}: target[0].luns[1].spec: bad size '1x': expected a "
            "number with an optional K/M/G/T suffix",
            f"pyiscsi: error: {path}: limits.qd: unknown key"]


def test_config_check_shows_what_it_would_serve(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = config(tmp_path)
    code, out, err = run(["config", "check", path], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"{path}: ok: 1 targets, 2 LUNs, 1 portals"
    assert lines[1] == "  iqn.2026-11.org.example:a  127.0.0.1:0  no CHAP"
    assert lines[2].startswith("    LUN 0: ram:1MiB  serial ") and "(derived)" in lines[2]
    assert lines[3].startswith("    LUN 3: ram:1MiB  serial a-3 (stored) naa 6")


def test_config_check_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    code, _, err = run(["config", "check", str(tmp_path / "no.toml")], capsys)
    assert code == 2 and "no.toml: cannot read: No such file or directory" in err
