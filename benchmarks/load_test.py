"""Load test of the reading service, against 127.0.0.1 only, with the offline runtime as reference.

    python benchmarks/load_test.py --model /tmp/svc/ocr_captcha.onnx --images /tmp/svc/fresh
    python benchmarks/load_test.py --model M --images DIR --quick --out /tmp/load   # a smoke run of the harness

One run measures, on the same machine and model:
- the offline reference: `reader.read` of the images' bytes in batches of 64, and one image per call;
- cold start: `python -m captcha_reader.service` started to its first answer of POST /read (median of 3);
- whether the service reads every image as `predict_example.py --json` does;
- 1, 8, 32 and 128 concurrent clients, one image per request: requests/s, p50/p95/p99 latency, errors;
- 32 clients with 5% bad uploads mixed in: every bad one must get a 4xx whose error names the problem;
- a long run (--requests, 100,000 by default) at 32 clients: the server's RSS after warm-up and its peak.
The load generator is a minimal HTTP/1.1 keep-alive client on asyncio (cheap, so the server gets the CPU);
every loop is bounded in requests and in time. Writes service.json (and service.md, full runs only) to --out.
"""

import argparse
import asyncio
import gc
import json
import os
import platform
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnxruntime  # noqa: E402

from captcha_reader.labels import list_images  # noqa: E402
from captcha_reader.readers import open_reader  # noqa: E402

HOST = "127.0.0.1"  # the only address this benchmark ever sends to
BOUNDARY = "loadtestboundary7f3a"
CONCURRENCY = (1, 8, 32, 128)
PHASE_SECONDS = 300  # no phase runs longer than this, whatever --requests says


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body of image files, and its content type."""
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode(), f"multipart/form-data; boundary={BOUNDARY}"


def http_request(body: bytes, content_type: str, path: str = "/read") -> bytes:
    """A complete POST request, ready to write on a keep-alive connection."""
    head = (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def read_request(name: str, data: bytes) -> bytes:
    """POST /read of one image file."""
    return http_request(*multipart([(name, data)]))


class Connection:
    """One keep-alive HTTP/1.1 connection to the service; reconnects when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader = self.writer = None

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Write one request and read its whole answer: (status, body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        self.writer.write(raw)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            raise
        if headers.get("connection") == "close":
            self.close()
        return int(lines[0].split(" ", 2)[1]), body

    def close(self) -> None:
        """Drop the connection; the next request opens a new one."""
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_clients(port: int, clients: int, total: int, make_request, check) -> dict:
    """`clients` connections sending `total` requests in all (or for PHASE_SECONDS at most)."""
    latencies, outcomes = [], []
    counter = iter(range(total))
    deadline = time.monotonic() + PHASE_SECONDS

    async def client() -> None:
        connection = Connection(port)
        for index in counter:
            if time.monotonic() > deadline:
                break
            kind, raw = make_request(index)
            started = time.perf_counter()
            try:
                status, body = await connection.send(raw)
                outcome = check(kind, status, body)
            except (asyncio.IncompleteReadError, ConnectionError) as error:
                outcome = f"{kind}: connection {type(error).__name__}"
            latencies.append(time.perf_counter() - started)
            outcomes.append(outcome)
        connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    failures = [outcome for outcome in outcomes if outcome]
    latencies.sort()
    return {"clients": clients, "requests": len(latencies), "seconds": round(elapsed, 2),
            "requests_per_s": round(len(latencies) / elapsed, 1),
            **{f"p{q}_ms": round(1000 * latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))], 2)
               for q in (50, 95, 99)},
            "errors": len(failures), "error_examples": sorted(set(failures))[:5]}


def good_check(expected: dict[str, str]):
    """A checker for good images: 200 and the text predict_example.py reads."""
    def check(kind: str, status: int, body: bytes) -> str:
        if status != 200:
            return f"{kind}: HTTP {status} {body[:120]!r}"
        text = json.loads(body)["results"][0].get("text")
        return "" if text == expected[kind] else f"{kind}: read {text!r}, predict_example.py reads {expected[kind]!r}"
    return check


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header declares a huge grayscale image."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def bad_uploads(good: bytes) -> list[tuple[str, bytes, int, str]]:
    """Bad requests of many kinds: (kind, raw request, expected status, words the error must contain)."""
    too_many = [(f"{i}.png", good) for i in range(65)]
    return [
        ("not an image", read_request("notes.txt", b"just some text"), 422, "not PNG, JPEG, GIF, BMP or WEBP"),
        ("truncated png", read_request("cut.png", good[:len(good) // 3]), 422, "not a readable image"),
        ("empty file", read_request("empty.png", b""), 422, "empty file"),
        ("pixel bomb", read_request("bomb.png", bomb_png()), 422, "too large"),
        ("wrong content type", http_request(b"hello", "text/plain"), 415, "multipart/form-data"),
        ("invalid json", http_request(b"{oops", "application/json"), 400, "not valid JSON"),
        ("bad base64", http_request(b'{"images": ["***"]}', "application/json"), 422, "not valid base64"),
        ("65 images", http_request(*multipart(too_many)), 400, "Too many files"),
        ("5 MB body", read_request("huge.png", bytes(5 * 2**20)), 413, "too large"),
        ("no boundary", http_request(b"--x\r\nbroken", "multipart/form-data"), 400, "boundary"),
    ]


def rss_mb(pid: int) -> float:
    """The resident set size of a process, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_service(model: str, port: int, log: Path) -> subprocess.Popen:
    """`python -m captcha_reader.service` on 127.0.0.1:port."""
    with open(log, "a") as handle:
        return subprocess.Popen([sys.executable, "-m", "captcha_reader.service", "--model", model,
                                 "--host", HOST, "--port", str(port)], cwd=ROOT, stdout=handle, stderr=handle)


def stop_service(server: subprocess.Popen) -> None:
    """SIGTERM, and wait for the graceful shutdown."""
    server.send_signal(signal.SIGTERM)
    server.wait(60)


async def first_answer(port: int, raw: bytes, server: subprocess.Popen, limit_s: float = 60.0) -> None:
    """Retry POST /read until the service answers 200."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and server.poll() is None:
        connection = Connection(port)
        try:
            if (await connection.send(raw))[0] == 200:
                return
        except OSError:
            await asyncio.sleep(0.005)
        finally:
            connection.close()
    raise RuntimeError(f"the service gave no answer within {limit_s} s (exit status {server.poll()})")


def cold_start_s(model: str, raw: bytes, log: Path) -> float:
    """Median of 3: seconds from starting the service's process to its first answer of POST /read."""
    times = []
    for _ in range(3):
        port = free_port()
        started = time.perf_counter()
        server = start_service(model, port, log)
        try:
            asyncio.run(first_answer(port, raw, server))
            times.append(time.perf_counter() - started)
        finally:
            stop_service(server)
    return statistics.median(times)


def offline_reference(model: str, datas: list[bytes], rounds: int) -> dict:
    """Images/s of reader.read on encoded images: batches of 64, and one image per call."""
    reader = open_reader(model)
    reader.read(datas[:64], batch_size=64)
    batched, single = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for i in range(0, len(datas), 64):
            reader.read(datas[i:i + 64], batch_size=64)
        batched.append(len(datas) / (time.perf_counter() - started))
        started = time.perf_counter()
        for data in datas[:256]:
            reader.read([data])
        single.append(min(256, len(datas)) / (time.perf_counter() - started))
    return {"batch64_images_per_s": round(statistics.median(batched), 1),
            "batch1_images_per_s": round(statistics.median(single), 1),
            "batch64_over_batch1": round(statistics.median(batched) / statistics.median(single), 2)}


def predict_example_texts(model: str, folder: str) -> dict[str, str]:
    """File name -> text, as `predict_example.py FOLDER --json` reads them."""
    result = subprocess.run([sys.executable, str(ROOT / "predict_example.py"), folder, "--model", model, "--json"],
                            capture_output=True, text=True, check=True, timeout=600)
    return {Path(row["path"]).name: row["text"] for row in map(json.loads, result.stdout.splitlines())}


async def long_run(port: int, pid: int, clients: int, total: int, make_request, check) -> dict:
    """`total` requests at `clients`, with the server's RSS sampled every half second."""
    samples: list[tuple[float, float]] = []  # (fraction of requests done, RSS MB) - fraction from the sample time

    async def sample(stop: asyncio.Event) -> None:
        while not stop.is_set():
            samples.append((time.perf_counter(), rss_mb(pid)))
            await asyncio.sleep(0.5)

    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(stop))
    started = time.perf_counter()
    summary = await run_clients(port, clients, total, make_request, check)
    stop.set()
    await sampler
    samples.append((time.perf_counter(), rss_mb(pid)))  # at least one sample after warm-up, however short the run
    elapsed = time.perf_counter() - started
    warm = [mb for at, mb in samples if at - started >= 0.1 * elapsed]  # after the first 10% of the run
    summary.update({"rss_start_mb": round(samples[0][1], 1), "rss_after_warmup_mb": round(warm[0], 1),
                    "rss_peak_mb": round(max(mb for _, mb in samples), 1),
                    "rss_growth_after_warmup_mb": round(max(warm) - warm[0], 1),
                    "rss_end_mb": round(samples[-1][1], 1)})
    return summary


async def service_runs(args: argparse.Namespace, port: int, pid: int, images: list[Path], expected: dict) -> dict:
    """Texts check, concurrency sweep, bad uploads and the long run against a running service."""
    requests = [(path.name, read_request(path.name, path.read_bytes())) for path in images]
    check = good_check(expected)
    results: dict = {}
    one_each = await run_clients(port, 8, len(requests), lambda i: requests[i], check)
    results["same_texts"] = {"images": one_each["requests"], "differ_or_fail": one_each["errors"],
                             "examples": one_each["error_examples"]}
    results["concurrency"] = []
    for clients in CONCURRENCY:
        total = args.sweep_requests if clients > 1 else max(1, args.sweep_requests // 4)
        results["concurrency"].append(await run_clients(port, clients, total, lambda i: requests[i % len(requests)],
                                                        check))
    bad = bad_uploads(images[0].read_bytes())

    def mixed(i: int) -> tuple[str, bytes]:
        if i % 20 == 7:  # 5% of the requests
            kind, raw, _, _ = bad[(i // 20) % len(bad)]
            return f"bad:{kind}", raw
        return requests[i % len(requests)]

    expectations = {f"bad:{kind}": (status, words) for kind, _, status, words in bad}

    def mixed_check(kind: str, status: int, body: bytes) -> str:
        if kind not in expectations:
            return check(kind, status, body)
        want_status, words = expectations[kind]
        error = json.loads(body).get("error", "") if body else ""
        return "" if status == want_status and words in error else f"{kind}: HTTP {status} {error[:120]!r}"

    results["bad_uploads"] = await run_clients(port, 32, args.sweep_requests, mixed, mixed_check)
    results["bad_uploads"]["bad_requests"] = sum(1 for i in range(results["bad_uploads"]["requests"]) if i % 20 == 7)
    results["long_run"] = await long_run(port, pid, 32, args.requests, lambda i: requests[i % len(requests)], check)
    health = Connection(port)
    results["health_after"] = json.loads((await health.send(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
                                                            .encode()))[1])
    health.close()
    return results


def targets(results: dict) -> dict:
    """The issue's targets, met or not."""
    at32 = next(row for row in results["concurrency"] if row["clients"] == 32)
    offline = results["offline"]["batch64_images_per_s"]
    return {
        "throughput_32_over_offline": round(at32["requests_per_s"] / offline, 3),
        "throughput_32_at_least_half_offline": at32["requests_per_s"] >= 0.5 * offline,
        "p99_32_at_most_100ms": at32["p99_ms"] <= 100,
        "no_errors_on_good_requests": all(row["errors"] == 0 for row in results["concurrency"])
        and results["long_run"]["errors"] == 0,
        "every_bad_upload_4xx_naming_it": results["bad_uploads"]["errors"] == 0,
        "rss_growth_under_50mb": results["long_run"]["rss_growth_after_warmup_mb"] < 50,
        "cold_start_at_most_2s": results["cold_start_s"] <= 2.0,
        "same_texts_as_predict_example": results["same_texts"]["differ_or_fail"] == 0,
    }


def markdown(results: dict) -> str:
    """The results as Markdown: the concurrency table, then the other measures."""
    offline = results["offline"]
    lines = [f"Model `{results['model']}`, {results['images']} images; {results['machine']}; "
             f"command: `{results['command']}`.", "",
             "| clients | requests | requests/s | / offline batch 64 | p50 ms | p95 ms | p99 ms | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for row in results["concurrency"]:
        lines.append(f"| {row['clients']} | {row['requests']:,} | {row['requests_per_s']:.0f} | "
                     f"{row['requests_per_s'] / offline['batch64_images_per_s']:.2f} | {row['p50_ms']} | "
                     f"{row['p95_ms']} | {row['p99_ms']} | {row['errors']} |")
    bad, long = results["bad_uploads"], results["long_run"]
    lines += ["",
              f"- Offline, same runtime and model (`reader.read` of the encoded images): batches of 64 "
              f"{offline['batch64_images_per_s']:.0f} images/s; one image per call {offline['batch1_images_per_s']:.0f}"
              f" images/s ({offline['batch64_over_batch1']:.1f}x cheaper per image in batches).",
              f"- Cold start, `python -m captcha_reader.service` to its first answer (median of 3): "
              f"{results['cold_start_s']:.2f} s.",
              f"- Same texts as `predict_example.py --json`: {results['same_texts']['images'] - results['same_texts']['differ_or_fail']}"
              f" of {results['same_texts']['images']}.",
              f"- 32 clients, 5% bad uploads (10 kinds): {bad['requests']:,} requests, {bad['bad_requests']} bad, "
              f"{bad['requests_per_s']:.0f} requests/s, p99 {bad['p99_ms']} ms, wrong answers {bad['errors']}.",
              f"- Long run, 32 clients: {long['requests']:,} requests in {long['seconds']:.0f} s "
              f"({long['requests_per_s']:.0f}/s, p99 {long['p99_ms']} ms, errors {long['errors']}); server RSS "
              f"{long['rss_start_mb']:.0f} MB at the start, {long['rss_after_warmup_mb']:.0f} MB after warm-up, "
              f"peak {long['rss_peak_mb']:.0f} MB, growth after warm-up {long['rss_growth_after_warmup_mb']:.1f} MB.",
              f"- Server batches: {results['health_after']['batches']:,} for {results['health_after']['images_read']:,}"
              f" images (mean {results['health_after']['images_read'] / max(1, results['health_after']['batches']):.1f},"
              f" largest {results['health_after']['largest_batch']}).",
              "", "Targets: " + ", ".join(f"{name} {'yes' if met else 'NO'}" for name, met in results["targets"].items()
                                          if isinstance(met, bool)) + "."]
    return "\n".join(lines)


def main() -> int:
    """Run every measure and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the .onnx model to serve")
    parser.add_argument("--images", required=True, help="folder of labelled captchas (e.g. 1,000 fresh ones)")
    parser.add_argument("--requests", type=int, default=100_000, help="requests of the long run (default: %(default)s)")
    parser.add_argument("--sweep-requests", type=int, default=5000,
                        help="requests per concurrency level and for the bad-upload run (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a few requests: checks the harness, not the service")
    parser.add_argument("--out", help="folder for service.json (default: benchmarks/results; --quick: a temp folder)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.sweep_requests = 300, 100
    out = Path(args.out or (tempfile.mkdtemp(prefix="load_test_") if args.quick else ROOT / "benchmarks" / "results"))
    if args.quick and out.resolve() == (ROOT / "benchmarks" / "results").resolve():
        parser.error("--quick never writes into benchmarks/results: give another --out")
    out.mkdir(parents=True, exist_ok=True)
    images = [Path(args.images) / p.name for p in list_images(args.images)]
    datas = [path.read_bytes() for path in images]
    log = Path(tempfile.mkdtemp(prefix="load_test_log_")) / "service.log"  # the servers' output, kept out of --out
    results = {"model": args.model, "images": len(images), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
               "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
                          f"{platform.python_version()}, onnxruntime {onnxruntime.__version__}",
               "date": time.strftime("%Y-%m-%d")}
    results["offline"] = offline_reference(args.model, datas, rounds=1 if args.quick else 3)
    results["cold_start_s"] = round(cold_start_s(args.model, read_request(images[0].name, datas[0]), log), 3)
    expected = predict_example_texts(args.model, args.images)
    gc.collect()
    gc.freeze()  # the generator's own collections would otherwise show up as the server's latency
    port = free_port()
    server = start_service(args.model, port, log)
    try:
        asyncio.run(first_answer(port, read_request(images[0].name, datas[0]), server))
        results.update(asyncio.run(service_runs(args, port, server.pid, images, expected)))
    finally:
        stop_service(server)
    results["targets"] = targets(results)
    table = markdown(results)
    print(table)
    (out / "service.json").write_text(json.dumps(results, indent=2) + "\n")
    if not args.quick:
        (out / "service.md").write_text("# Reading service under load\n\nWritten by `benchmarks/load_test.py`; "
                                        "do not edit by hand.\n\n" + table + "\n")
    print(f"wrote {out / 'service.json'}; the servers' log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
