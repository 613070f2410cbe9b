#!/usr/bin/env python3
"""Size and init time of the release binaries (`make build` first), on the local stack.

Init is what a cold start costs beyond Lambda's own: from starting `bootstrap` to its first
`GET /runtime/invocation/next`, so it covers loading the binary, reading the configuration and
building the clients (the database secret is fetched from the local AWS endpoint). A stand-in
Runtime API on loopback takes the request; the process is stopped there. Runs each function
RUNS times and reports the median.

    coldstart.py [function ...]      (default: every target/lambda/*/bootstrap)
"""
import http.server
import os
import pathlib
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("RUNS", "7"))


class RuntimeApi(http.server.BaseHTTPRequestHandler):
    """Answers nothing: it only notes when the function first asks for an event."""

    polled = None

    def do_GET(self):  # noqa: N802 (http.server's naming)
        if self.path.endswith("/runtime/invocation/next") and RuntimeApi.polled is None:
            RuntimeApi.polled = time.perf_counter()
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


def function_env(name, port):
    env = {"PATH": os.environ["PATH"]}
    env_file = ROOT / ".stack" / f"{name}.env"
    for line in env_file.read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "coldstart",
        "RUST_LOG": "warn",
    })
    return env


def init_ms(binary, env):
    RuntimeApi.polled = None
    started = time.perf_counter()
    process = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while RuntimeApi.polled is None:
            if process.poll() is not None:
                raise RuntimeError(f"{binary} exited: {process.stderr.read().decode()[-400:]}")
            if time.perf_counter() - started > 30:
                raise RuntimeError(f"{binary} did not poll within 30 s")
            time.sleep(0.0005)
        return (RuntimeApi.polled - started) * 1000
    finally:
        process.kill()
        process.wait()


def main():
    names = sys.argv[1:] or sorted(p.parent.name for p in (ROOT / "target/lambda").glob("*/bootstrap"))
    if not names:
        sys.exit("no release binaries: run `make build` first")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    print(f"{'function':<20} {'size (MiB)':>10} {'init p50 (ms)':>14}   ({RUNS} runs)")
    for name in names:
        binary = ROOT / "target/lambda" / name / "bootstrap"
        env = function_env(name, port)
        times = [init_ms(binary, env) for _ in range(RUNS)]
        size = binary.stat().st_size / (1024 * 1024)
        print(f"{name:<20} {size:>10.1f} {statistics.median(times):>14.1f}")
    server.shutdown()


if __name__ == "__main__":
    main()
