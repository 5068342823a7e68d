"""Probe latency in a chat room of N reading members while one floods
(the figures in examples/chat/main.rs, at WORK_PER_CALL).

Usage: python3 benches/chat_flood.py target/release/examples/chat 1000 65536
(run it pinned: taskset -c 1; the server pins itself to CPU 0)
N members connect from a child process that reads everything they get
(so nobody is slow and no limit is involved). Probe A sends "ping i"
every 5 ms; probe B records when each arrives. Prints the probe latency
percentiles before and during the flood, and when B saw the flood's end."""
import multiprocessing, os, resource, selectors, socket, subprocess, sys, time

binary, n, flood_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port = 7400 + os.getpid() % 500

def members(ready, stop):
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port)); s.setblocking(False)
        sel.register(s, selectors.EVENT_READ); socks.append(s)
    ready.set()
    total = 0
    while not stop.is_set():
        for key, _ in sel.select(0.1):
            try:
                while True:
                    chunk = key.fileobj.recv(1 << 18)
                    if not chunk:
                        sel.unregister(key.fileobj); break
                    total += len(chunk)
            except BlockingIOError:
                pass
    print(f"  members read {total/1e6:.0f} MB", flush=True)

server = subprocess.Popen(["taskset", "-c", "0", binary, "--addr", f"127.0.0.1:{port}", "--idle-timeout", "0"],
                          stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
time.sleep(0.5)
a = socket.create_connection(("127.0.0.1", port))
b = socket.create_connection(("127.0.0.1", port)); b.setblocking(False)
f = socket.create_connection(("127.0.0.1", port))
ready, stop = multiprocessing.Event(), multiprocessing.Event()
child = multiprocessing.Process(target=members, args=(ready, stop)); child.start()
ready.wait()
buf = b""
def lines(deadline, until=None):
    global buf
    while time.time() < deadline:
        try:
            buf += b.recv(1 << 20)
        except BlockingIOError:
            time.sleep(0.0005)
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line
            if until and until in line:
                return
# Wait until the whole room is in: ask /who until it says so.
want = f"* online ({n + 3})".encode()
deadline = time.time() + 300
while time.time() < deadline:
    b.sendall(b"/who\n")
    if any(line.startswith(want) for line in lines(time.time() + 0.5)):
        break
a.sendall(b"/nick probeA\n"); f.sendall(b"/nick flooder\n")
for _ in lines(time.time() + 10, b"is now flooder"):
    pass
for _ in lines(time.time() + 0.5):
    pass

def probe(count, flood):
    sent, lat, i, nxt, start, end_at = {}, [], 0, time.time(), time.time(), None
    if flood:
        f.sendall(b"a\n" * (flood_bytes // 2) + b"END\n")
    while True:
        now = time.time()
        if i < count and now >= nxt:
            sent[i] = now; a.sendall(f"ping {i}\n".encode()); i += 1; nxt = now + 0.005
        for line in lines(time.time() + 0.001):
            if line.startswith(b"probeA: ping "):
                lat.append(time.time() - sent[int(line.split()[-1])])
            elif line == b"flooder: END":
                end_at = time.time() - start
        if len(lat) == count and (not flood or end_at is not None):
            return lat, end_at
        if time.time() - start > 120:
            return lat, end_at
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float('nan')
base, _ = probe(200, False)
lat, took = probe(400, True)
print(f"members {n}  flood {flood_bytes} B ({flood_bytes//2} lines)")
print(f"  before the flood: probe p50 {pct(base,.5):.2f} ms  p99 {pct(base,.99):.2f} ms  max {max(base)*1000:.2f} ms")
print(f"  during the flood: probe p50 {pct(lat,.5):.2f} ms  p99 {pct(lat,.99):.2f} ms  max {max(lat)*1000:.2f} ms ({len(lat)} probes)")
print(f"  the flood's last line reached B after {took:.2f} s" if took else "  the flood's end never reached B")
stop.set(); child.join(); server.kill()
