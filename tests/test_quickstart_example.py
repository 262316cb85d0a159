"""examples/quickstart.py against the emulator command, as a newcomer runs them: a priced line for
the call on stderr and the usage summary table at exit."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_quickstart_example_prints_a_priced_call_and_the_summary() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    emulator = subprocess.Popen(
        [sys.executable, "-m", "emulators", "--provider", "openai", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    watchdog = threading.Timer(TIMEOUT_S, emulator.kill)
    watchdog.start()
    try:
        assert emulator.stdout is not None
        for line in emulator.stdout:  # the URL is printed once the port is listening
            if f"http://127.0.0.1:{port}" in line:
                break
        else:
            raise AssertionError("the emulator exited before printing its URL")
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py")],
            env={**env, "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": "test"},
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    finally:
        watchdog.cancel()
        os.killpg(emulator.pid, signal.SIGTERM)
        emulator.wait(timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "the script prints the model's reply"
    calls = [x for x in done.stderr.splitlines() if x.startswith("otel-llm-usage: openai chat gpt-4o-mini")]
    assert len(calls) == 1, done.stderr
    priced = r"\| in \d+ \(cached 0\) · out \d+ \(reasoning 0\) \| \$0\.\d+ \| (\d+ ms|\d+\.\d\d s) \|"
    assert re.search(priced, calls[0]), calls[0]
    assert calls[0].endswith("| run hello, agent greeter, session quickstart"), calls[0]
    table = done.stderr.split("usage of this process", 1)[1]
    for row in ("total", "greeter", "gpt-4o-mini", "quickstart"):
        assert re.search(rf"^\s+{row}\s+1\s", table, re.M), table
