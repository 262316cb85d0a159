"""Make docs/dashboard.png: Prometheus's graph of LLM spend per hour by agent, fed by the demo.

    python scripts/screenshot.py [--seconds 60] [--prometheus URL] [--output docs/dashboard.png]

Without --prometheus it starts the stack of the end-to-end tests (tests/e2e/harness.py: the demo
workload serving /metrics, Prometheus with the package's rules, Alertmanager), lets the demo run
for --seconds, then has headless Chromium (Debian package `chromium`) screenshot the classic graph
page. With --prometheus it screenshots that server as it is. The tests do not run this script.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness lives in the test tree, which is not installed

from tests.e2e import harness  # noqa: E402

EXPR = "sum by (gen_ai_agent_name) (rate(llm_usage_cost_USD_total[1m]))*3600"
RANGE = "5m"
WINDOW = (1400, 900)
# FIELD-NOTES: the flags that make Debian's Chromium take a headless screenshot as root, offline.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # The graph is drawn by JavaScript after the page loads and queries the API: give it time
    # (virtual time, so a fast page is not slowed down) before the picture is taken.
    "--virtual-time-budget=15000",
)


def graph_url(prometheus: str) -> str:
    query = urllib.parse.urlencode({"g0.expr": EXPR, "g0.tab": "0", "g0.range_input": RANGE})
    return f"{prometheus.rstrip('/')}/classic/graph?{query}"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path} is not a PNG")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def screenshot(chromium: str, url: str, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        args = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={output}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            url,
        ]
        result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not output.exists():
        raise SystemExit(f"chromium failed ({result.returncode}):\n{result.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="demo traffic before the screenshot")
    parser.add_argument("--prometheus", help="screenshot this running Prometheus instead of starting one")
    parser.add_argument("--output", type=Path, default=ROOT / "docs/dashboard.png")
    args = parser.parse_args(argv)

    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    if chromium is None:
        raise SystemExit("chromium is not on PATH: apt-get install -y chromium")

    stack = None
    prometheus_url = args.prometheus
    if prometheus_url is None:
        binaries = {kind: harness.find_binary(kind) for kind in ("prometheus", "alertmanager")}
        missing = [kind for kind, path in binaries.items() if path is None]
        if missing:
            raise SystemExit(f"not on PATH: {missing}; apt-get install -y prometheus prometheus-alertmanager")
        print("starting the demo, Prometheus and Alertmanager ...", flush=True)
        stack = harness.start_alerting_stack(
            {kind: path for kind, path in binaries.items() if path}, harness.Deadline(60)
        )
        prometheus_url = stack.prometheus.url
    try:
        if stack is not None:
            started = time.monotonic()
            stack.wait("spend data", lambda: stack.prometheus.query(EXPR) or None, harness.Deadline(60))
            print(f"collecting {args.seconds:g} s of demo traffic at {prometheus_url} ...", flush=True)
            # Not a synchronisation: the graph is meant to show this much traffic.
            while time.monotonic() - started < args.seconds:
                stack.check()
                time.sleep(1)
        url = graph_url(prometheus_url)
        screenshot(chromium, url, args.output)
    finally:
        if stack is not None:
            stack.close()
    width, height = png_size(args.output)
    print(f"{args.output} ({width}x{height}) from {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
