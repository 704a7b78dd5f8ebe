"""How SO_REUSEPORT spreads loopback connections over N listening sockets (issue 12, lever 3).

Linux picks the listener of a new connection by a hash of its 4-tuple, not by load: this
counts, over TRIALS trials, how many of N listeners get at least one of S connections and the
most any one gets. No iSCSI involved; it bounds what ``serve --workers N`` with SO_REUSEPORT
could use of N cores when S sessions log in.

    python bench/reuseport_spread.py            # TRIALS=200 PORT=3400
"""

from __future__ import annotations

import os
import socket
import statistics

CASES = ((2, 2), (2, 16), (4, 4), (14, 16), (16, 16), (16, 32), (16, 64))


def trial(workers: int, sessions: int, port: int) -> list[int]:
    """Sessions accepted per listener for one batch of connections."""
    listeners = []
    for _ in range(workers):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        s.listen(128)
        s.setblocking(False)
        listeners.append(s)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(sessions)]
    counts = []
    for s in listeners:
        n = 0
        while True:
            try:
                conn, _ = s.accept()
            except BlockingIOError:
                break
            conn.close()
            n += 1
        counts.append(n)
    for c in clients:
        c.close()
    for s in listeners:
        s.close()
    if sum(counts) != sessions:
        raise RuntimeError(f"accepted {sum(counts)} of {sessions} connections")
    return counts


def main() -> None:
    trials, port = int(os.environ.get("TRIALS", "200")), int(os.environ.get("PORT", "3400"))
    print(f"SO_REUSEPORT on 127.0.0.1, {trials} trials per case (medians; mean busy in brackets)")
    print("| workers | sessions | workers with a session | most sessions on one worker | "
          "P(all on one worker) |")
    print("|---|---|---|---|---|")
    for workers, sessions in CASES:
        busy, most = [], []
        for t in range(trials):
            counts = trial(workers, sessions, port + t % 50)
            busy.append(sum(1 for c in counts if c))
            most.append(max(counts))
        alone = sum(1 for b in busy if b == 1) / trials
        print(f"| {workers} | {sessions} | {statistics.median(busy):g} "
              f"({statistics.mean(busy):.1f}) | {statistics.median(most):g} | {alone:.2f} |")


if __name__ == "__main__":
    main()
