"""The admin socket: a Unix-domain stream socket answering JSON requests, one per line.

Protocol (UTF-8, newline-delimited JSON, any number of requests per connection)::

    -> {"verb": "status"}
    <- {"ok": true, "status": {...}}          (pyiscsi.target.status.snapshot)
    -> {"verb": "nope"}
    <- {"ok": false, "error": "unknown verb 'nope' (known: ...)"}

The other verbs (``add-target``, ``add-lun``, ``resize-lun``, ``save``, ...) change what
the server serves: :mod:`pyiscsi.config.live`. A handler answers the fields of a successful
answer, at once or as an awaitable (a verb that waits for the change to be applied).

The socket is created mode 0600 (its directory 0700 when pyiscsi creates it): only the
user running the target may talk to it. The default path is derived from the target's
first portal (:func:`default_socket_path`), so ``pyiscsi admin`` and ``pyiscsi top`` find
it without being told.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Verb = Callable[[dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]
"""A verb's handler: the request in, the fields of a successful answer out (or an awaitable
of them); an exception is the error answered."""

MAX_REQUEST = 64 << 10
"""Longest request line accepted (bytes)."""


def _socket_name(host: str, port: int) -> str:
    return f"{host.strip('[]').replace(':', '_')}-{port}.sock"


def socket_dirs() -> list[Path]:
    """Where admin sockets live, in order of preference: /run/pyiscsi (root),
    $XDG_RUNTIME_DIR/pyiscsi, /tmp/pyiscsi-UID."""
    dirs = [Path("/run/pyiscsi")]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        dirs.append(Path(runtime) / "pyiscsi")
    dirs.append(Path(f"/tmp/pyiscsi-{os.getuid()}"))
    return dirs


def _usable(directory: Path) -> bool:
    """The directory exists (or its parent lets us create it) and we may write there."""
    if directory.is_dir():
        return os.access(directory, os.W_OK | os.X_OK)
    return os.access(directory.parent, os.W_OK | os.X_OK)


def default_socket_path(host: str, port: int) -> Path:
    """The server's default socket for the portal ``host:port`` (first usable directory)."""
    for directory in socket_dirs():
        if _usable(directory):
            return directory / _socket_name(host, port)
    return socket_dirs()[-1] / _socket_name(host, port)


def find_socket(host: str, port: int) -> Path:
    """A client's guess: the first existing socket for ``host:port`` among the directories
    (the server may run as another user than the client), else the default path."""
    for directory in socket_dirs():
        path = directory / _socket_name(host, port)
        if path.exists():
            return path
    return default_socket_path(host, port)


def _prepare_dir(directory: Path) -> None:
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if directory.name.startswith("pyiscsi-") and (
            info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        raise OSError(f"{directory}: not owned by us or writable by others")


def _clear_stale(path: Path) -> None:
    """Remove a socket left behind by a dead server; refuse to steal a live one."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise OSError(f"{path}: another server is answering there")


class AdminServer:
    """Serves verbs on a Unix socket from the event loop (handlers see the engines safely)."""

    def __init__(self, path: Path, verbs: dict[str, Verb]) -> None:
        self.path = path
        self.verbs = verbs
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None

    async def start(self) -> None:
        _prepare_dir(self.path.parent)
        _clear_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.fchmod(sock.fileno(), 0o600)  # Linux creates the inode with the fd's mode
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            self._inode = self.path.stat().st_ino
            self._server = await asyncio.start_unix_server(self._client, sock=sock,
                                                           limit=MAX_REQUEST)
        except BaseException:
            sock.close()
            raise

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()

    async def answer(self, line: bytes) -> dict[str, Any]:
        """The answer to one request line."""
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        if not isinstance(request, dict) or not isinstance(request.get("verb"), str):
            return {"ok": False, "error": 'bad request: expected {"verb": "..."}'}
        verb = request["verb"]
        handler = self.verbs.get(verb)
        if handler is None:
            known = ", ".join(sorted(self.verbs))
            return {"ok": False, "error": f"unknown verb {verb!r} (known: {known})"}
        try:
            result = handler(request)
            if inspect.isawaitable(result):
                result = await result
            return {"ok": True, **result}
        except Exception as exc:  # a failing verb answers, the server stays up
            return {"ok": False, "error": f"{verb} failed: {exc}"}

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    line = exc.partial
                    if not line.strip():
                        return
                except asyncio.LimitOverrunError:
                    writer.write(b'{"ok": false, "error": "request too long"}\n')
                    await writer.drain()
                    return
                if not line.strip():
                    continue
                writer.write(json.dumps(await self.answer(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


def request(path: str | os.PathLike[str], verb: str, timeout: float = 5.0,
            **fields: Any) -> dict[str, Any]:
    """Send one request to the admin socket at ``path`` and return its answer (a client
    for scripts, ``pyiscsi admin`` and ``pyiscsi top``)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(json.dumps({"verb": verb, **fields}).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    answer = json.loads(b"".join(chunks))
    if not isinstance(answer, dict):
        raise ValueError("admin socket answered something that is not a JSON object")
    return answer
