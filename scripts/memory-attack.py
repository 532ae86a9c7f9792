#!/usr/bin/env python3
"""Memory under attack: what a few peers with 4 MiB requests cost the server, at the peak and
after they leave (issue 15, item 2). Figures go in docs/robustness.md.

Starts BIN (a release parking-server) on ephemeral ports on 127.0.0.1 with the default lots,
then, reading the server's RSS from /proc:
  1. burst:   ROUNDS rounds of PEERS connections, each sending one complete 4 MiB request
              of garbage and reading the (short) error reply; RSS peak, and RSS 3 s after
              each round's peers have closed (retained);
  2. holding: HOLDERS connections that each send all but one byte of a 4 MiB request and
              hold it; RSS while they hold, how many were refused (BUSY) by the buffer
              budget, and RSS 3 s after they close.

Usage: scripts/memory-attack.py [--bin target/release/parking-server] [--peers 48]
       [--rounds 3] [--holders 200] [--config-json TEXT] [--env NAME=VALUE ...]
Exit code 0 when it ran; 2 when the server could not be started. Loopback only.
"""

import argparse
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

MIB = 1 << 20
FRAME = 4 * MIB


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class PeakSampler(threading.Thread):
    """Samples RSS every 10 ms until stopped; keeps the largest."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.01)

    def stop(self):
        self.running = False
        self.join()
        return self.peak


DEFAULT_CONFIG = ('{"rpc_port": 0, "sensor_port": 0, "pubsub_port": 0, '
                  '"max_connections_per_address": 0}')


def start_server(binary, config_text, env_extra):
    # The config lives in a directory of its own, so that anything the server keeps next to
    # it (a data directory) goes away with it.
    workdir = tempfile.mkdtemp(prefix="memory-attack.")
    config = os.path.join(workdir, "config.json")
    with open(config, "w") as out:
        out.write(config_text)
    env = dict(os.environ, RUST_LOG="info", **env_extra)
    server = subprocess.Popen([binary, "--config", config], stderr=subprocess.PIPE,
                              text=True, env=env)
    deadline = time.time() + 30
    for line in server.stderr:
        found = re.search(r"listening: rpc 127\.0\.0\.1:(\d+)", line)
        if found:
            # Keep draining the log so the server never blocks on it.
            threading.Thread(target=server.stderr.read, daemon=True).start()
            return server, int(found.group(1)), workdir
        if time.time() > deadline:
            break
    server.kill()
    shutil.rmtree(workdir, ignore_errors=True)
    print(f"memory-attack: {binary} did not start", file=sys.stderr)
    sys.exit(2)


def recv_frame(sock):
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    (length,) = struct.unpack(">I", header)
    payload = b""
    while len(payload) < length:
        chunk = sock.recv(length - len(payload))
        if not chunk:
            return None
        payload += chunk
    return payload


def burst_peer(port, results):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(struct.pack(">I", FRAME) + b"\x01" * FRAME)
            reply = recv_frame(sock)
            results.append(len(reply) if reply is not None else -1)
    except OSError:
        results.append(-1)


def holder(port, held, refused, release):
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(struct.pack(">I", FRAME) + b" " * (FRAME - 1))
    except OSError:
        refused.append(1)
        return
    # A refused holder gets a BUSY frame and a close; a held one hears nothing.
    sock.settimeout(1.0)
    try:
        reply = recv_frame(sock)
        if reply is not None and b"BUSY" in reply:
            refused.append(1)
            sock.close()
            return
    except OSError:
        pass
    held.append(sock)
    release.wait()
    sock.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", default="target/release/parking-server")
    parser.add_argument("--peers", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--holders", type=int, default=200)
    parser.add_argument("--config-json", default=DEFAULT_CONFIG,
                        help="the server's config file (a build that predates a key needs "
                             "it left out)")
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=VALUE for the server's environment (e.g. an allocator knob)")
    args = parser.parse_args()
    env_extra = dict(item.split("=", 1) for item in args.env)
    server, port, workdir = start_server(args.bin, args.config_json, env_extra)
    try:
        time.sleep(0.5)
        before = rss_kib(server.pid)
        print(f"idle before: {before / 1024:.1f} MiB")
        for round_no in range(1, args.rounds + 1):
            sampler = PeakSampler(server.pid)
            sampler.start()
            results = []
            peers = [threading.Thread(target=burst_peer, args=(port, results))
                     for _ in range(args.peers)]
            for peer in peers:
                peer.start()
            for peer in peers:
                peer.join()
            peak = sampler.stop()
            time.sleep(3)
            answered = sum(1 for r in results if r >= 0)
            longest = max(results) if results else 0
            print(f"burst round {round_no}: {answered}/{args.peers} answered (longest reply "
                  f"{longest} B), peak {peak / 1024:.1f} MiB, "
                  f"3 s after {rss_kib(server.pid) / 1024:.1f} MiB")
        sampler = PeakSampler(server.pid)
        sampler.start()
        held, refused, release = [], [], threading.Event()
        holders = [threading.Thread(target=holder, args=(port, held, refused, release))
                   for _ in range(args.holders)]
        for thread in holders:
            thread.start()
        deadline = time.time() + 60
        while len(held) + len(refused) < args.holders and time.time() < deadline:
            time.sleep(0.1)
        holding = rss_kib(server.pid)
        release.set()
        for thread in holders:
            thread.join()
        peak = sampler.stop()
        time.sleep(3)
        print(f"holding: {len(held)} held, {len(refused)} refused BUSY, "
              f"RSS while held {holding / 1024:.1f} MiB (peak {peak / 1024:.1f}), "
              f"3 s after {rss_kib(server.pid) / 1024:.1f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
