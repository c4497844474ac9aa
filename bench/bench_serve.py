"""Benchmark: `gankit serve` under load over 127.0.0.1, batching on vs off vs the naive server.

Light tier plus the ``serve`` extra and an async HTTP client (aiohttp where installed,
else httpx). Each server is a real subprocess on a free 127.0.0.1 port:

* ``batch``: ``gankit serve`` as shipped (micro-batching, --max-batch 64, --max-wait-ms 0);
* ``nobatch``: ``gankit serve --max-batch 1`` (one onnxruntime run per request, in turn);
* ``naive``: the same app with one onnxruntime call per request in a thread pool (anyio's,
  where a plain synchronous Starlette or FastAPI handler that calls the model runs),
  started by this script.

For concurrency 1, 8 and 64, and n=1 and n=16 images per request, each server in turn
(all three run throughout, so those compared in one cell meet the same load from the
rest of the machine), the client keeps that many requests in flight
(``GET /v1/generate?digit=..&n=..&seed=..&format=npy``, digits and seeds varying) for at
most ``--requests`` requests and ``--seconds`` seconds, after a short warm-up, and prints
requests/s, images/s, p50 and p99 latency, errors, and the server's CPU time per request
(user + system), which unlike requests/s does not depend on how much of the CPU other
programs take.
Every loop is bounded in count and time, and all traffic stays on 127.0.0.1.

``--soak-seconds S`` then runs the batching server for S seconds (at most 3600) at
``--soak-concurrency``, sampling its resident memory every few seconds: the result
states the memory at the start and end, its slope and the error count.

The client runs on the same machine as the server and takes CPU from it; results name
the CPU (lscpu "Model name") and the load average before and after. Usage::

    .venv/bin/python bench/bench_serve.py [--seconds 8] [--requests 4000] [--soak-seconds 90]

Writes bench/results/serve.json and bench/results/serve.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

RESULTS = REPO / "bench" / "results"
READY = re.compile(r"gankit serve: ready on (http://127\.0\.0\.1:\d+)")
MODES = {
    "batch": "micro-batching (--max-batch 64, --max-wait-ms 0)",
    "nobatch": "batching off (--max-batch 1)",
    "naive": "one onnxruntime call per request in a thread pool (anyio's 40 threads): the naive server",
}
MAX_SOAK_S = 3600


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return common.cpu_model()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- servers ---------------------------------------------------------------------------------

class Server:
    def __init__(self, mode: str, model: str, threads: int | None, extra: list[str] = ()):
        self.mode = mode
        if mode == "naive":
            cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-naive", model]
        else:
            cmd = common.cli("serve", model, "--port", "0", *(["--max-batch", "1"] if mode == "nobatch" else []))
        if threads:
            cmd += ["--threads", str(threads)]
        if mode != "naive":
            cmd += list(extra)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        found: list[str] = []
        ready = threading.Event()

        def pump(stream, keep):
            for line in stream:
                match = READY.search(line)
                if keep and match and not found:
                    found.append(match.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=pump, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=pump, args=(self.proc.stderr, False), daemon=True).start()
        if not ready.wait(120) or not found:
            self.proc.kill()
            raise SystemExit(f"the {mode} server did not start")
        self.url = found[0]

    def cpu_s(self) -> float:
        """CPU seconds (user + system, all threads) the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


def serve_naive(model: str, threads: int | None) -> None:
    """The naive server: this project's app, each request its own onnxruntime call in a thread pool."""
    from gankit.serve.config import ServeConfig
    from gankit.serve.models import load_models
    from gankit.serve.server import serve

    serve(load_models([model], threads=threads), ServeConfig(port=0, dispatch="per-request", threads=threads))


# -- the client --------------------------------------------------------------------------------

class Client:
    """One connection pool; `get` returns (status, body length)."""

    def __init__(self, kind: str, concurrency: int):
        self.kind = kind
        self.concurrency = concurrency

    async def __aenter__(self):
        if self.kind == "aiohttp":
            import aiohttp

            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.concurrency),
                                                 timeout=aiohttp.ClientTimeout(total=60))
        else:
            import httpx

            limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
            self.session = httpx.AsyncClient(limits=limits, timeout=60)
        return self

    async def __aexit__(self, *exc):
        if self.kind == "aiohttp":
            await self.session.close()
        else:
            await self.session.aclose()

    async def get(self, url: str) -> tuple[int, int]:
        if self.kind == "aiohttp":
            async with self.session.get(url) as response:
                return response.status, len(await response.read())
        response = await self.session.get(url)
        return response.status_code, len(response.content)


async def drive(server: Server, kind: str, concurrency: int, n: int, max_requests: int, max_seconds: float,
                warmup_s: float = 0.5) -> dict:
    """Keep `concurrency` requests in flight until `max_requests` or `max_seconds`; latencies in ms.

    Besides wall-clock rates, the CPU time the server and this client spent per request:
    unlike requests/s, that does not depend on how much of the CPU other programs take.
    """
    url = server.url
    latencies: list[float] = []
    errors = 0
    async with Client(kind, concurrency) as client:
        for phase, limit_s, limit_n in (("warmup", warmup_s, max(concurrency * 2, 20)),
                                        ("measure", max_seconds, max_requests)):
            issued = 0
            stop_at = time.perf_counter() + limit_s
            record = phase == "measure"

            async def worker(w: int):
                nonlocal issued, errors
                while issued < limit_n and time.perf_counter() < stop_at:
                    i = issued
                    issued += 1
                    query = f"/v1/generate?digit={(w + i) % 10}&n={n}&seed={i}&format=npy"
                    started = time.perf_counter()
                    try:
                        status, size = await client.get(url + query)
                    except Exception:
                        status, size = 0, 0
                    if record:
                        latencies.append((time.perf_counter() - started) * 1000)
                        if status != 200 or size == 0:
                            errors += 1

            started, server_cpu, client_cpu = time.perf_counter(), server.cpu_s(), time.process_time()
            await asyncio.gather(*(worker(w) for w in range(concurrency)))
            elapsed = time.perf_counter() - started
            server_cpu, client_cpu = server.cpu_s() - server_cpu, time.process_time() - client_cpu
    latencies.sort()
    done = len(latencies)

    def pct(q: float) -> float:
        return round(latencies[min(done - 1, int(q * done))], 2) if done else float("nan")

    return {"concurrency": concurrency, "n": n, "requests": done, "seconds": round(elapsed, 2),
            "requests_per_s": round(done / elapsed, 1), "images_per_s": round(done * n / elapsed, 1),
            "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(latencies), 2) if done else None,
            "server_cpu_ms_per_request": round(1000 * server_cpu / done, 3) if done else None,
            "client_cpu_ms_per_request": round(1000 * client_cpu / done, 3) if done else None,
            "errors": errors}


async def soak(server: Server, kind: str, concurrency: int, seconds: float, sample_every: float = 5.0) -> dict:
    """Mixed requests for `seconds`, sampling the server's memory; every loop bounded by the clock."""
    samples = [(0.0, server.rss_mb())]
    counts = {"requests": 0, "errors": 0}
    started = time.perf_counter()
    stop_at = started + seconds
    async with Client(kind, concurrency) as client:
        async def worker(w: int):
            i = 0
            while time.perf_counter() < stop_at:
                n = (1, 4, 16)[(w + i) % 3]
                fmt = ("npy", "png", "json")[i % 3]
                try:
                    status, size = await client.get(f"{server.url}/v1/generate?digit={(w + i) % 10}&n={n}&seed={i}"
                                                    f"&format={fmt}")
                except Exception:
                    status, size = 0, 0
                counts["requests"] += 1
                counts["errors"] += status != 200 or size == 0
                i += 1

        async def sampler():
            while time.perf_counter() < stop_at:
                await asyncio.sleep(min(sample_every, max(0.0, stop_at - time.perf_counter())))
                samples.append((round(time.perf_counter() - started, 1), server.rss_mb()))

        await asyncio.gather(sampler(), *(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - started
    # Memory after the first fifth (warm caches, arena grown) against the end: the slope that matters.
    settled = [s for s in samples if s[0] >= seconds / 5] or samples
    xs, ys = [s[0] for s in settled], [s[1] for s in settled]
    slope = 0.0
    if len(xs) > 1 and max(xs) > min(xs):
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return {"seconds": round(elapsed, 1), "concurrency": concurrency, "requests": counts["requests"],
            "errors": counts["errors"], "requests_per_s": round(counts["requests"] / elapsed, 1),
            "rss_mb_start": round(samples[0][1], 1), "rss_mb_settled": round(ys[0], 1),
            "rss_mb_end": round(samples[-1][1], 1), "rss_mb_max": round(max(s[1] for s in samples), 1),
            "rss_mb_per_minute_after_warmup": round(slope * 60, 2), "samples": samples}


# -- report ------------------------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    lines = ["| model | server | concurrency | n | requests/s | images/s | p50 ms | p99 ms | server CPU ms/request "
             "| errors |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['mode']} | {r['concurrency']} | {r['n']} | {r['requests_per_s']:.1f} | "
                     f"{r['images_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['server_cpu_ms_per_request']:.2f} | {r['errors']} |")
    return "\n".join(lines)


def ratios(rows: list[dict]) -> list[dict]:
    out = []
    by = {(r["model"], r["mode"], r["concurrency"], r["n"]): r for r in rows}
    for (model, mode, c, n), r in by.items():
        if mode != "batch":
            continue
        for other in ("naive", "nobatch"):
            base = by.get((model, other, c, n))
            if base and base["requests_per_s"]:
                out.append({"model": model, "concurrency": c, "n": n, "vs": other,
                            "ratio": round(r["requests_per_s"] / base["requests_per_s"], 2),
                            "cpu_ratio": round(base["server_cpu_ms_per_request"] / r["server_cpu_ms_per_request"], 2),
                            "p99_ms": r["p99_ms"], "p99_ms_other": base["p99_ms"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", default=None,
                        help="model to serve, repeatable: one table each (default: the shipped conditional model)")
    parser.add_argument("--modes", default="batch,nobatch,naive")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--n", default="1,16")
    parser.add_argument("--requests", type=int, default=4000, help="most requests per measurement")
    parser.add_argument("--seconds", type=float, default=8.0, help="most seconds per measurement")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: the server's)")
    parser.add_argument("--serve-args", default="", help="more options for gankit serve (batch and nobatch)")
    parser.add_argument("--client", choices=("auto", "aiohttp", "httpx"), default="auto")
    parser.add_argument("--soak-seconds", type=float, default=0.0,
                        help=f"soak the batching server (at most {MAX_SOAK_S})")
    parser.add_argument("--soak-concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS / "serve", help="writes OUT.json and OUT.md")
    parser.add_argument("--serve-naive", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_naive:
        return serve_naive(args.serve_naive, args.threads)

    from gankit.runtime import shipped_model_path

    models = [str(Path(m).resolve()) for m in args.model] if args.model else [str(shipped_model_path())]
    kind = args.client
    if kind == "auto":
        try:
            import aiohttp  # noqa: F401

            kind = "aiohttp"
        except ImportError:
            kind = "httpx"
    if not 0 <= args.soak_seconds <= MAX_SOAK_S:
        raise SystemExit(f"--soak-seconds must be from 0 to {MAX_SOAK_S}")
    levels = [int(c) for c in args.concurrency.split(",")]
    sizes = [int(n) for n in args.n.split(",")]
    names = [Path(m).stem for m in models]
    info = {**common.machine_info(), "cpu": lscpu_model(), "load_average_before": load_average(),
            "client": kind, "models": names}
    print(f"# {info['cpu']}, {info['cpus']} CPUs, load average {info['load_average_before']}; client {kind}; "
          f"models {', '.join(names)}", flush=True)

    rows = []
    modes = args.modes.split(",")
    for model, name in zip(models, names):
        # All servers of a model run at once (idle ones cost nothing), and each cell drives them
        # back to back, so that the servers compared in a cell meet the same load from the rest
        # of the machine.
        servers = {}
        try:
            for mode in modes:
                servers[mode] = Server(mode, model, args.threads, args.serve_args.split())
            for n in sizes:
                for c in levels:
                    for mode in modes:
                        row = {"model": name, "mode": mode,
                               **asyncio.run(drive(servers[mode], kind, c, n, args.requests, args.seconds))}
                        rows.append(row)
                        print(f"{name} {mode:8s} c={c:<3d} n={n:<3d} {row['requests_per_s']:8.1f} req/s "
                              f"{row['images_per_s']:8.0f} img/s  p50 {row['p50_ms']:7.1f} ms  "
                              f"p99 {row['p99_ms']:7.1f} ms  server CPU {row['server_cpu_ms_per_request']:6.2f} ms/req"
                              f"  errors {row['errors']}", flush=True)
        finally:
            for server in servers.values():
                server.stop()

    soak_result = None
    if args.soak_seconds > 0:
        server = Server("batch", models[0], args.threads, args.serve_args.split())
        try:
            soak_result = asyncio.run(soak(server, kind, args.soak_concurrency, args.soak_seconds))
        finally:
            soak_result["exit_code"] = server.stop()
        print(f"soak {soak_result['seconds']} s at concurrency {soak_result['concurrency']}: "
              f"{soak_result['requests']} requests, {soak_result['errors']} errors, RSS {soak_result['rss_mb_start']}"
              f" -> {soak_result['rss_mb_end']} MB (max {soak_result['rss_mb_max']}, "
              f"{soak_result['rss_mb_per_minute_after_warmup']} MB/min after warm-up), exit {soak_result['exit_code']}")

    info["load_average_after"] = load_average()
    cmp = ratios(rows)
    print("\n" + table(rows))
    for r in cmp:
        print(f"{r['model']}, concurrency {r['concurrency']}, n={r['n']}: batch / {r['vs']} = {r['ratio']}x "
              f"requests/s; server CPU per request {r['vs']} / batch = {r['cpu_ratio']}x; "
              f"p99 {r['p99_ms']} vs {r['p99_ms_other']} ms")
    result = {"machine": info, "modes": MODES, "requests_cap": args.requests, "seconds_cap": args.seconds,
              "rows": rows, "ratios": cmp, "soak": soak_result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# gankit serve under load ({', '.join(names)})", "",
          f"Machine: {info['cpu']}, {info['cpus']} CPUs; load average {info['load_average_before']} before, "
          f"{info['load_average_after']} after. Python {info['python']}, onnxruntime {info['onnxruntime']}. "
          f"Client: {kind}, on the same machine (it takes CPU from the server). Each cell drives the servers "
          f"one after the other, all running; each at most "
          f"{args.requests} requests and {args.seconds:g} s after a warm-up.", "",
          *[f"* `{k}`: {v}" for k, v in MODES.items()], "", table(rows), "",
          "Ratios (requests/s of batch over the other; server CPU per request of the other over batch; "
          "p99 of batch vs the other):", "",
          *[f"* {r['model']}, concurrency {r['concurrency']}, n={r['n']}, vs {r['vs']}: {r['ratio']}x requests/s, "
            f"{r['cpu_ratio']}x CPU, p99 {r['p99_ms']} vs {r['p99_ms_other']} ms" for r in cmp]]
    if soak_result:
        md += ["", f"Soak ({names[0]}, batching server): {soak_result['seconds']} s at concurrency "
               f"{soak_result['concurrency']} "
               "(n 1/4/16, png/npy/json "
               f"mixed): {soak_result['requests']} requests, {soak_result['errors']} errors; server RSS "
               f"{soak_result['rss_mb_start']} MB at start, {soak_result['rss_mb_settled']} MB after warm-up, "
               f"{soak_result['rss_mb_end']} MB at the end (max {soak_result['rss_mb_max']}; slope after warm-up "
               f"{soak_result['rss_mb_per_minute_after_warmup']} MB/min); exit code {soak_result['exit_code']}."]
    md += ["", "Command: `.venv/bin/python bench/bench_serve.py " + " ".join(sys.argv[1:]) + "`", ""]
    args.out.with_suffix(".md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
