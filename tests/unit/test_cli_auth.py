"""``pyiscsi serve`` access settings: --chap/--mutual-chap/--allow, $PYISCSI_CHAP,
--auth-file (mode 0600), one-line errors that never echo a secret, the exposure warning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyiscsi.proto.chap import ChapSecret
from pyiscsi.target.authconfig import exposure_warning, is_loopback, load_access

SECRET = "secretsecret12"


def auth_file(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / "auth"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_flags() -> None:
    access = load_access(chap=f"user:{SECRET}", mutual="tgt:targetsecret:34",
                         allow=("iqn.2026-11.org.example:a",), env={})
    assert access.auth is not None
    assert access.auth.chap == ChapSecret("user", SECRET.encode())
    assert access.auth.mutual == ChapSecret("tgt", b"targetsecret:34")   # first ':' splits
    assert access.allowed == frozenset({"iqn.2026-11.org.example:a"})


def test_nothing_configured_means_open() -> None:
    access = load_access(env={})
    assert access.auth is None and access.allowed is None


def test_environment_and_flag_precedence() -> None:
    env = {"PYISCSI_CHAP": f"envuser:{SECRET}", "PYISCSI_MUTUAL_CHAP": "tgt:targetsecret34"}
    access = load_access(env=env)
    assert access.auth is not None and access.auth.chap.name == "envuser"
    assert access.auth.mutual is not None
    assert load_access(chap=f"flag:{SECRET}", env=env).auth.chap.name == "flag"  # type: ignore[union-attr]


def test_auth_file(tmp_path: Path) -> None:
    path = auth_file(tmp_path, f"# who gets in\nchap=user:{SECRET}\n\nmutual-chap=tgt:other"
                               "secret99\nallow=iqn.2026-11.org.example:a\n"
                               "allow = iqn.2026-11.org.example:b\n")
    access = load_access(auth_file=path, env={})
    assert access.auth is not None and access.auth.mutual is not None
    assert access.allowed == frozenset({"iqn.2026-11.org.example:a",
                                      "iqn.2026-11.org.example:b"})
    # a flag overrides the file
    assert load_access(auth_file=path, chap=f"flag:{SECRET}",
                       env={}).auth.chap.name == "flag"  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o620])
def test_auth_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = auth_file(tmp_path, f"chap=user:{SECRET}\n", mode)
    with pytest.raises(ValueError, match="chmod 600") as exc:
        load_access(auth_file=path, env={})
    assert SECRET not in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("kwargs", [
    {"chap": "nocolon-" + SECRET},
    {"chap": ":" + SECRET},
    {"chap": "user:tiny1"},
    {"chap": f"user:{SECRET}", "mutual": f"tgt:{SECRET}"},     # same secret both ways
    {"mutual": f"tgt:{SECRET}"},                               # mutual without chap
    {"allow": ("notaniqn",)},
])
def test_bad_values_never_echo_the_secret(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError) as exc:
        load_access(env={}, **kwargs)  # type: ignore[arg-type]
    assert SECRET not in str(exc.value) and "tiny1" not in str(exc.value)


def test_bad_file_line_is_not_echoed(tmp_path: Path) -> None:
    path = auth_file(tmp_path, f"user:{SECRET}\n")
    with pytest.raises(ValueError, match="line 1") as exc:
        load_access(auth_file=path, env={})
    assert SECRET not in str(exc.value)
    with pytest.raises(ValueError, match="cannot read"):
        load_access(auth_file=str(tmp_path / "missing"), env={})


def test_loopback_and_warning() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.1", "example.org"]))
    open_access = load_access(env={})
    assert exposure_warning(["127.0.0.1"], open_access) is None
    warning = exposure_warning(["127.0.0.1", "0.0.0.0"], open_access)
    assert warning is not None and "WARNING" in warning and "0.0.0.0" in warning
    assert exposure_warning(["0.0.0.0"], load_access(chap=f"u:{SECRET}", env={})) is None


# ---------------------------------------------------------------- the real command


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYISCSI_")}
    return subprocess.run([sys.executable, "-m", "pyiscsi.cli", "serve", "--lun", "ram:1MiB",
                           "--portal", "127.0.0.1:0", *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**clean, **(env or {})})


@pytest.mark.parametrize("args,env", [
    (("--chap", f"user{SECRET}"), None),
    (("--chap", "user:tooshort"), None),
    (("--chap", f"user:{SECRET}", "--mutual-chap", f"tgt:{SECRET}"), None),
    ((), {"PYISCSI_CHAP": f"{SECRET}"}),
    ((), {"PYISCSI_CHAP": "user:tooshort"}),
])
def test_cli_bad_values_one_line_exit_2(tmp_path: Path, args: tuple[str, ...],
                                        env: dict[str, str] | None) -> None:
    out = serve(tmp_path, *args, env=env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("pyiscsi: error: ") and out.stderr.count("\n") == 1
    assert SECRET not in out.stderr + out.stdout and "tooshort" not in out.stderr


def test_cli_auth_file_mode_checked(tmp_path: Path) -> None:
    path = auth_file(tmp_path, f"chap=user:{SECRET}\n", 0o644)
    out = serve(tmp_path, "--auth-file", path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "chmod 600" in out.stderr and SECRET not in out.stderr


def test_cli_warns_loudly_on_a_public_portal_without_chap(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYISCSI_")}
    proc = subprocess.Popen([sys.executable, "-m", "pyiscsi.cli", "serve", "--lun", "ram:1MiB",
                             "--portal", "0.0.0.0:0"], cwd=tmp_path, env=clean, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith("serving ")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert "WARNING" in err and "WITHOUT CHAP" in err and "0.0.0.0" in err


def test_unknown_flag_is_one_line_exit_2() -> None:
    done = subprocess.run([sys.executable, "-m", "pyiscsi.cli", "serve", "--no-such-flag"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["pyiscsi: error: No such option '--no-such-flag'."]
