#!/usr/bin/env python3
"""Server instructions per commit of the group-commit script, measured deterministically.

Throughput readings on a shared 2-core VM swing by 1.7x between phases and with any other
load, so a change to the Lua script of `cadence-redis/src/batch.rs` is better judged by the
instructions redis-server spends on the same batches: this replays batches captured from the
bench against a redis-server running under callgrind and prints Ir per commit (5 commits per
run of 6 operations), for the script in the source tree or for any other script file that
speaks the same protocol.

1. Capture real batches (MONITOR slows the bench, the batches keep their usual shape):

       redis-server --port 16399 --save '' --appendonly no --daemonize yes
       redis-cli -p 16399 monitor > /tmp/mon.txt &
       CADENCE_REDIS_URL=redis://127.0.0.1:16399 target/release/examples/split 2 value
       kill %1

2. Start a redis-server under callgrind:

       valgrind --tool=callgrind --callgrind-out-file=/tmp/cg/cg.%p.out \\
           redis-server --port 16400 --save '' --appendonly no &

3. Measure (each script: the database flushed, one warm-up replay, one measured replay):

       python3 benches/redis/tools/server_ir.py /tmp/mon.txt 16400 /tmp/cg source other.lua

Repeated measurements of one script vary by up to about 2%: measure the scripts to compare
alternately, several times (e.g. `source old.lua source old.lua`).
"""

import glob
import os
import re
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH_RS = os.path.join(HERE, "..", "..", "..", "cadence-redis", "src", "batch.rs")


def source_script():
    """The BATCH script of batch.rs."""
    src = open(BATCH_RS).read()
    start = src.index('r"\n', src.index("static BATCH")) + 3
    return src[start : src.index('",\n    )\n});', start)].encode()


def unquote(tok):
    """An argument as redis-cli's MONITOR prints it, unescaped."""
    out, i = bytearray(), 0
    esc = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}
    while i < len(tok):
        c = tok[i]
        if c == "\\":
            n = tok[i + 1]
            if n == "x":
                out.append(int(tok[i + 2 : i + 4], 16))
                i += 4
                continue
            out += esc[n]
            i += 2
            continue
        out += c.encode()
        i += 1
    return bytes(out)


def batches(capture):
    """The EVALSHA commands of a MONITOR capture, as argument lists."""
    for line in open(capture, errors="replace"):
        if '"EVALSHA"' in line:
            rest = line[line.index("] ") + 2 :]
            yield [unquote(m) for m in re.findall(r'"((?:[^"\\]|\\.)*)"', rest)]


def resp(args):
    return b"".join([b"*%d\r\n" % len(args)] + [b"$%d\r\n%s\r\n" % (len(a), a) for a in args])


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(1 << 20)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        kind = line[:1]
        if kind in b"+-:":
            return line
        n = int(line[1:])
        if kind == b"$":
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(1 << 20)
            data, self.buf = self.buf[:n], self.buf[n + 2 :]
            return data
        return None if n < 0 else [self.reply() for _ in range(n)]

    def cmd(self, *args):
        self.sock.sendall(resp([a if isinstance(a, bytes) else str(a).encode() for a in args]))
        return self.reply()


def replay(conn, script, cmds):
    conn.cmd("FLUSHALL")
    sha = conn.cmd("SCRIPT", "LOAD", script)
    for i in range(0, len(cmds), 16):
        chunk = cmds[i : i + 16]
        conn.sock.sendall(b"".join(resp([c[0], sha] + c[2:]) for c in chunk))
        for _ in chunk:
            r = conn.reply()
            if isinstance(r, bytes) and r.startswith(b"-"):
                sys.exit(f"error reply: {r!r}")


def measure(conn, script, cmds, dumps):
    replay(conn, script, cmds)  # warm-up
    subprocess.run(["callgrind_control", "-z"], capture_output=True, check=False)
    replay(conn, script, cmds)
    for old in glob.glob(os.path.join(dumps, "*.out.*")):
        os.remove(old)
    subprocess.run(["callgrind_control", "-d"], capture_output=True, check=False)
    dump = max(glob.glob(os.path.join(dumps, "*.out.*")), key=os.path.getmtime)
    return int(re.search(r"^summary: (\d+)", open(dump).read(), re.M).group(1))


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    capture, port, dumps, scripts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    cmds = list(batches(capture))
    ops = sum(len(c[3 + int(c[2])]) for c in cmds)  # ARGV[1]: one code per operation
    commits = ops * 5 / 6
    conn = Conn(port)
    for name in scripts:
        script = source_script() if name == "source" else open(name, "rb").read()
        ir = measure(conn, script, cmds, dumps)
        print(f"{name}: {ir / commits:.0f} Ir per commit ({len(cmds)} batches, {ops} operations)")


if __name__ == "__main__":
    main()
