"""Reading and checking configuration files: every mistake named by file, key path and
what is wrong; nothing opened; secrets never in messages. The README's example loads."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pyiscsi.config.load import ConfigError, load_config
from pyiscsi.proto.chap import ChapSecret
from pyiscsi.target.catalog import LoginDefaults

README = Path(__file__).resolve().parents[2] / "README.md"
SECRET = "secretsecret12"


def write(tmp: Path, text: str, mode: int = 0o644, name: str = "p.toml") -> Path:
    path = tmp / name
    path.write_text(text)
    path.chmod(mode)
    return path


def secret_file(tmp: Path, name: str, secret: str = SECRET, mode: int = 0o600) -> Path:
    path = tmp / name
    path.write_text(secret + "\n")
    path.chmod(mode)
    return path


def issues(tmp: Path, text: str, mode: int = 0o644) -> list[str]:
    path = write(tmp, text, mode)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    lines = str(exc.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    return [line.removeprefix(f"{path}: ") for line in lines]


TWO = '''
[[target]]
name = "iqn.2026-11.org.example:db"
portals = ["127.0.0.1:3260"]
luns = ["file:db.img,size=1MiB", "ram:1MiB"]
allow = ["iqn.1993-08.org.debian:01:host1"]
chap = { user = "u", secret_file = "db.secret" }

[[target]]
name = "iqn.2026-11.org.example:web"
portals = ["127.0.0.2:3260", "[::1]:3261"]
negotiation = { max_burst_length = 65536, immediate_data = false }
[[target.lun]]
id = 4
spec = "ram:2MiB,bs=4096"
serial = "web-4"
'''


def test_a_file_with_two_targets(tmp_path: Path) -> None:
    secret_file(tmp_path, "db.secret")
    config = load_config(write(tmp_path, TWO))
    db, web = config.targets
    assert db.name == "iqn.2026-11.org.example:db" and db.portals == (("127.0.0.1", 3260),)
    assert [(lun.id, lun.spec.kind) for lun in db.luns] == [(0, "file"), (1, "ram")]
    assert db.luns[0].spec.path == str(tmp_path / "db.img")  # relative to the file
    assert db.allow == frozenset({"iqn.1993-08.org.debian:01:host1"})
    assert db.auth is not None and db.auth.chap == ChapSecret("u", SECRET.encode())
    assert web.allow is None and web.auth is None
    assert web.portals == (("127.0.0.2", 3260), ("::1", 3261))
    assert [(lun.id, lun.serial, lun.spec.block_size) for lun in web.luns] == [(4, "web-4", 4096)]
    assert web.login == LoginDefaults(max_burst_length=65536, immediate_data=False)
    assert config.portals == [("127.0.0.1", 3260), ("127.0.0.2", 3260), ("::1", 3261)]
    assert config.limits == () and config.discovery.enabled and config.discovery.auth is None
    assert not (tmp_path / "db.img").exists()  # checked, not created


def test_identical_files_load_equal(tmp_path: Path) -> None:
    secret_file(tmp_path, "db.secret")
    a, b = load_config(write(tmp_path, TWO)), load_config(write(tmp_path, TWO))
    assert a == b


def test_lun_tables_in_the_list_and_mixed_forms(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '''
[[target]]
name = "iqn.2026-11.org.example:t"
portals = ["127.0.0.1:0"]
luns = ["ram:1MiB", { spec = "ram:2MiB", serial = "second" }, { id = 9, spec = "ram:1MiB" }]
[[target.lun]]
id = 3
spec = "ram:1MiB"
'''))
    assert [(lun.id, lun.serial) for lun in config.targets[0].luns] == [
        (0, None), (1, "second"), (3, None), (9, None)]


def test_limits_and_discovery(tmp_path: Path) -> None:
    secret_file(tmp_path, "d.secret")
    secret_file(tmp_path, "m.secret", "mutualsecret34")
    config = load_config(write(tmp_path, '''
[limits]
queue_depth = 32
login_timeout = 5
nop_interval = 2.5
[discovery]
enabled = false
chap = { user = "d", secret_file = "d.secret" }
mutual_chap = { user = "m", secret_file = "m.secret" }
[[target]]
name = "iqn.2026-11.org.example:t"
portals = ["127.0.0.1:0"]
'''))
    assert dict(config.limits) == {"queue_depth": 32, "login_timeout": 5.0, "nop_interval": 2.5}
    limits = config.make_limits({"queue_depth": 8})
    assert limits.queue_depth == 8 and limits.login_timeout == 5.0 and limits.max_sessions == 64
    assert not config.discovery.enabled
    auth = config.discovery.auth
    assert auth is not None and auth.mutual == ChapSecret("m", b"mutualsecret34")


@pytest.mark.parametrize("text,expected", [
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:3260']\nluns = ['disk:/x']\n",
     ["target[0].luns[0]: bad LUN spec 'disk:/x': expected ram:SIZE, file:PATH[,size=SIZE] "
      "or rbd:POOL/IMAGE[,size=SIZE]"]),
    ("[[target]]\nname = 'db'\nportals = ['127.0.0.1']\n",
     ["target[0].name: bad target name 'db': must start with iqn., eui. or naa., without "
      "spaces, at most 223 bytes",
      "target[0].portals[0]: bad portal '127.0.0.1': expected HOST:PORT"]),
    ("[[target]]\nname = 'iqn.x'\nportals = []\n",
     ["target[0].portals: needs at least one HOST:PORT"]),
    ("[[target]]\nname = 'iqn.x'\n", ["target[0].portals: missing"]),
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:1']\nlun = [{ spec = 'ram:1M' }]\n",
     ["target[0].lun[0].id: missing"]),
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:1']\nluns = ['ram:1M']\n"
     "lun = [{ id = 0, spec = 'ram:1M' }]\n",
     ["target[0].lun[0]: LUN 0 is also target[0].luns[0]"]),
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:1']\nlun = [{ id = 16384, spec = "
     "'ram:1M' }]\n", ["target[0].lun[0].id: 16384 is out of range 0..16383"]),
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:1']\nluns = [{ spec = 'ram:1M', "
     "serial = 'a b' }]\n", ["target[0].luns[0].serial: bad serial 'a b': 1 to 64 of A-Z a-z "
                             "0-9 . _ : -"]),
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:1']\nluns = [{ spec = 'ram:1M', "
     "serial = 's' }, { spec = 'ram:1M', serial = 's' }]\n",
     ["target[0].luns[1].serial: serial s is also target[0].luns[0]"]),
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:1']\nluns = ['file:a.img', "
     "'file:nodir/b.img,size=1M']\n",
     ["target[0].luns[0]: {tmp}/a.img does not exist (give size= to create it)",
      "target[0].luns[1]: cannot create {tmp}/nodir/b.img: {tmp}/nodir is not a "
      "directory"]),
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:1']\nluns = ['file:a.img,size=1M']\n"
     "[[target]]\nname = 'iqn.y'\nportals = ['127.0.0.1:1']\nluns = ['file:./a.img,size=1M']\n",
     ["target[1].luns[0]: {tmp}/a.img is already target[0].luns[0]"]),
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:1']\n"
     "[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:2']\n",
     ["target[1].name: target iqn.x is also target[0]"]),
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:3260', '0.0.0.0:3260', "
     "'127.0.0.1:3260']\n",
     ["target[0].portals[1]: 0.0.0.0:3260 overlaps target[0].portals[0] (both cannot be "
      "listened on)", "target[0].portals[2]: 127.0.0.1:3260 is listed twice"]),
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:1']\nallow = ['host1', 3]\n",
     ["target[0].allow[1]: expected a string, got an integer",
      "target[0].allow[0]: bad initiator name 'host1': must start with iqn., eui. or naa., "
      "without spaces, at most 223 bytes"]),
    ("[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:1']\nnegotiation = { "
     "first_burst_length = 65536, max_burst_length = 8192, immediate_data = 1, x = 1 }\n",
     ["target[0].negotiation.x: unknown key", "target[0].negotiation.immediate_data: expected "
      "true/false, got an integer", "target[0].negotiation.first_burst_length: 65536 is more "
      "than max_burst_length 8192"]),
    ("[limits]\nfirst_burst_length = 65536\n[[target]]\nname = 'iqn.x'\nportals = "
     "['127.0.0.1:1']\nnegotiation = { max_burst_length = 8192 }\n",
     ["target[0].negotiation.max_burst_length: 8192 is less than first_burst_length 65536 "
      "of [limits]"]),
    ("[limits]\nqueue_depht = 1\nqueue_depth = 0\nlogin_timeout = 'x'\n[[target]]\n"
     "name = 'iqn.x'\nportals = ['127.0.0.1:1']\n",
     ["limits.queue_depht: unknown key (did you mean 'queue_depth'?)",
      "limits.queue_depth: 0 is out of range 1..1024",
      "limits.login_timeout: expected a number, got a string"]),
    ("[discovery]\nenabled = 'yes'\nmutual_chap = { user = 'm', secret_file = 'm' }\n"
     "[[target]]\nname = 'iqn.x'\nportals = ['127.0.0.1:1']\n",
     ["discovery.enabled: expected true/false, got a string",
      "discovery.mutual_chap.secret_file: cannot read {tmp}/m: No such file or directory",
      "discovery.mutual_chap: mutual CHAP needs chap too"]),
    ("targets = 1\n", ["targets: unknown key (did you mean 'target'?)", "target: missing"]),
    ("[[target]\n", None),
])
def test_mistakes_are_named_by_key_path(tmp_path: Path, text: str,
                                        expected: list[str] | None) -> None:
    got = issues(tmp_path, text)
    if expected is None:
        assert len(got) == 1 and got[0].startswith("invalid TOML: ")
        assert re.search(r"line 1", got[0])
    else:
        assert got == [e.format(tmp=tmp_path) for e in expected]


def test_chap_mistakes_never_show_the_secret(tmp_path: Path) -> None:
    secret_file(tmp_path, "open.secret", "opensecret1234", mode=0o644)
    secret_file(tmp_path, "short.secret", "shortone")
    secret_file(tmp_path, "same.secret", SECRET)
    text = f'''
[[target]]
name = "iqn.a"
portals = ["127.0.0.1:1"]
chap = {{ user = "u", secret = "{SECRET}" }}
[[target]]
name = "iqn.b"
portals = ["127.0.0.1:1"]
chap = {{ user = "u", secret_file = "open.secret" }}
[[target]]
name = "iqn.c"
portals = ["127.0.0.1:1"]
chap = {{ user = "u", secret_file = "short.secret" }}
[[target]]
name = "iqn.d"
portals = ["127.0.0.1:1"]
chap = {{ user = "u", secret = "{SECRET}", secret_file = "same.secret" }}
[[target]]
name = "iqn.e"
portals = ["127.0.0.1:1"]
chap = {{ user = "u", secret_file = "same.secret" }}
mutual_chap = {{ user = "t", secret_file = "same.secret" }}
'''
    got = issues(tmp_path, text)
    path = tmp_path / "p.toml"
    assert got == [
        f"target[0].chap.secret: an inline secret in a file readable by group/others (mode "
        f"0644): chmod 600 {path} or use secret_file",
        f"target[1].chap.secret_file: {tmp_path}/open.secret is accessible by group/others "
        f"(mode 0644): chmod 600 {tmp_path}/open.secret",
        "target[2].chap: the secret of user 'u' is shorter than 12 characters",
        "target[3].chap: give secret or secret_file, not both",
        "target[4].mutual_chap: the mutual CHAP secret must differ from the CHAP secret",
    ]
    assert not any(s in line for line in got for s in (SECRET, "opensecret", "shortone"))


def test_inline_secrets_in_a_private_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f'''
[[target]]
name = "iqn.a"
portals = ["127.0.0.1:1"]
chap = {{ user = "u", secret = "{SECRET}" }}
''', mode=0o600))
    auth = config.targets[0].auth
    assert auth is not None and auth.chap.secret == SECRET.encode()
    assert SECRET not in repr(config)


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read: No such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"bad\.toml: not UTF-8"):
        load_config(bad)


def readme_config() -> str:
    """The TOML block of README's Configuration section."""
    text = README.read_text()
    section = text[text.index("## Configuration"):]
    return section[section.index("```toml\n") + 8:section.index("\n```", section.index("```toml"))]


def test_the_readme_example_loads(tmp_path: Path) -> None:
    """README's example, its /etc/pyiscsi and /var/lib/pyiscsi moved under tmp_path."""
    etc, var = tmp_path / "etc", tmp_path / "var"
    etc.mkdir()
    var.mkdir()
    for name in ("discovery", "db", "db-target"):
        secret_file(etc, f"{name}.secret", f"{name}-secret-0123456789")
    text = readme_config().replace("/etc/pyiscsi/", f"{etc}/").replace(
        "/var/lib/pyiscsi/", f"{var}/")
    config = load_config(write(etc, text))
    assert [t.name for t in config.targets] == ["iqn.2026-11.org.example:db",
                                                "iqn.2026-11.org.example:web"]
    db, web = config.targets
    assert db.auth is not None and db.auth.mutual is not None
    assert [lun.id for lun in web.luns] == [0, 5] and web.luns[0].serial == "web-0000"
    assert config.discovery.auth is not None
    assert dict(config.limits) == {"queue_depth": 128, "max_sessions": 64}
    assert os.listdir(var) == []


def test_gateway_table(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '''
[gateway]
tpgt = 12
relative_port_id = 34
[[target]]
name = "iqn.2026-11.org.example:t"
portals = ["127.0.0.1:0"]
luns = ["file:t.img,size=1MiB,shared=yes"]
'''))
    assert config.gateway == (("tpgt", 12), ("relative_port_id", 34))
    assert config.targets[0].luns[0].spec.shared is True


def test_gateway_table_mistakes(tmp_path: Path) -> None:
    found = issues(tmp_path, '''
[gateway]
tpgt = 0
relative_port_id = 70000
tpg = 3
[[target]]
name = "iqn.2026-11.org.example:t"
portals = ["127.0.0.1:0"]
''')
    assert any(line.startswith("gateway.tpgt: 0 is out of range 1..65535") for line in found)
    assert any(line.startswith("gateway.relative_port_id: 70000 is out of range")
               for line in found)
    assert any("gateway" in line and "tpg" in line for line in found), found
