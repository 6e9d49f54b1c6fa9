#!/usr/bin/env python3
"""Keeps the DNS proxy's listening sockets open across agent restarts (a crash, kill -9, an upgrade).

    egressguard-dns-holder.py --listen 198.18.0.53 --listen fd00:eb::53 --port 53 -- egressguard run --config FILE

Binds UDP and TCP on each address, then runs the agent with the sockets passed in systemd's socket-activation
convention (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES=dns-udp4:dns-tcp4:...) and starts it again whenever it exits
other than by the holder's own SIGTERM/SIGINT. Queries arriving while no agent runs wait in the socket buffers
(enlarged here so a few seconds at a high rate fit) and are answered by the next agent. The holder never reads a
query itself: there is one proxy, the agent's, and nothing is answered without its policy. Under systemd, a .socket
unit with the same names (FileDescriptorName=dns-udp4, ...) does the same job.
"""
import argparse
import fcntl
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time

RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024
SO_RCVBUFFORCE = 33  # Linux; beyond net.core.rmem_max (root); Python has no name for it
RESTART_DELAY_SECONDS = 0.1
# An agent that keeps failing at start (a broken config) is retried less and less often, up to this.
MAX_RESTART_DELAY_SECONDS = 5.0
SHORT_LIFE_SECONDS = 5.0


def bind_sockets(addresses, port):
    held = []
    for address in addresses:
        v6 = ipaddress.ip_address(address).version == 6
        family = socket.AF_INET6 if v6 else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        for sock in (udp, tcp):
            if v6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            udp.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
        except PermissionError:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        udp.bind((address, port))
        tcp.bind((address, port))
        tcp.listen(1024)
        suffix = "6" if v6 else "4"
        held += [(udp, "dns-udp" + suffix), (tcp, "dns-tcp" + suffix)]
    return held


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", action="append", required=True, help="an address of dns.listen (repeat)")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the agent's command line")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the agent's command after --")
    held = bind_sockets(args.listen, args.port)
    # The agent finds descriptor i+3 named names[i]: move the sockets there (through high numbers, so no socket is
    # overwritten by another's move), in the holder itself, so the child needs no descriptor juggling.
    high = [fcntl.fcntl(sock.detach(), fcntl.F_DUPFD_CLOEXEC, 100) for sock, _ in held]
    targets = list(range(3, 3 + len(held)))
    for source, target in zip(high, targets):
        os.dup2(source, target, inheritable=False)
        os.close(source)
    names = ":".join(name for _, name in held)
    stopping = False
    agent = None

    def forward(signum, _frame):
        nonlocal stopping
        stopping = True
        if agent is not None and agent.poll() is None:
            agent.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    def in_child():
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.environ["LISTEN_FDS"] = str(len(held))
        os.environ["LISTEN_FDNAMES"] = names

    delay = RESTART_DELAY_SECONDS
    while True:
        # pass_fds hands the sockets over; close_fds keeps everything else of the holder out of the agent.
        started = time.monotonic()
        agent = subprocess.Popen(command, preexec_fn=in_child, close_fds=True, pass_fds=targets, env=None)
        print(f"egressguard-dns-holder: agent started, pid {agent.pid}", file=sys.stderr, flush=True)
        code = agent.wait()
        if stopping:
            sys.exit(0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else 1)
        short_lived = time.monotonic() - started < SHORT_LIFE_SECONDS
        delay = min(delay * 2, MAX_RESTART_DELAY_SECONDS) if short_lived else RESTART_DELAY_SECONDS
        print(f"egressguard-dns-holder: agent exited ({code}); starting it again in {delay:.1f} s", file=sys.stderr, flush=True)
        time.sleep(delay)


if __name__ == "__main__":
    main()
