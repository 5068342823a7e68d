"""Runs RESP servers side by side under redis-benchmark, nothing pinned,
and prints each one's median throughput and CPU time per request (the
server process's, all threads, from /proc).

    python3 benches/experiments/kv_shards.py ROUNDS PIPELINE NAME:COMMAND ...

Each COMMAND is started with `--addr 127.0.0.1:PORT` added, once per
round, the servers taking turns. The load: redis-benchmark -c 50 -t
set,get -r 100000, 200,000 requests of each at -P 1 and 2,000,000 at -P
16; BENCH_THREADS=N in the environment adds redis-benchmark's
--threads N. Used for "kv on two shards" in docs/BENCHMARKS.md; compare.py pins
the server to one CPU, which two shards cannot use.
"""
import subprocess, sys, time, os, re, statistics
rounds=int(sys.argv[1]); pipe=sys.argv[2]
servers=[a.split(':',1) for a in sys.argv[3:]]
tck=os.sysconf('SC_CLK_TCK')
def cpu(pid):
    f=open(f'/proc/{pid}/stat').read().rsplit(')',1)[1].split()
    return (int(f[11])+int(f[12]))/tck
res={n:[] for n,_ in servers}
port=6400
for r in range(rounds):
    for name,cmd in servers:
        port+=1
        p=subprocess.Popen(cmd.split()+['--addr',f'127.0.0.1:{port}'],stderr=subprocess.DEVNULL,stdout=subprocess.DEVNULL)
        time.sleep(0.4)
        n=200000 if pipe=='1' else 2000000
        c0=cpu(p.pid)
        out=subprocess.run(['redis-benchmark']+(['--threads',os.environ['BENCH_THREADS']] if os.environ.get('BENCH_THREADS') else [])+['-p',str(port),'-c','50','-n',str(n),'-P',pipe,'-t','set,get','-r','100000','-q'],capture_output=True,text=True).stdout
        c1=cpu(p.pid)
        rps=[float(x) for x in re.findall(r'([\d.]+) requests per second',out)]
        ops=2*n
        res[name].append((statistics.mean(rps),(c1-c0)*1e6/ops))
        p.terminate(); p.wait()
for name,v in res.items():
    print(f"{name:12s} req/s {statistics.median([x[0] for x in v]):>10.0f}  cpu_us/op {statistics.median([x[1] for x in v]):.3f}   runs {[(round(a),round(b,2)) for a,b in v]}")
