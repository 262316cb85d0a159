"""Real Prometheus, Alertmanager and a webhook receiver for the end-to-end tests.

Each server is a plain process (there is no systemd to rely on) listening on a free loopback port,
with its configuration and storage in a temporary directory. A server is ready when its `/-/ready`
endpoint answers 200. Every wait polls with a deadline and fails with the server logs; no fixed
sleep is used to synchronise with anything.

Also used by scripts/screenshot.py, so nothing here needs pytest except `require_binaries`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "collector-config"
ALERT_RULES = CONFIG / "prometheus/alerts.yml"
RECORDING_RULES = CONFIG / "prometheus/recording.yml"
ALERTMANAGER_CONFIG = CONFIG / "alertmanager/alertmanager.yml"
DASHBOARD = CONFIG / "grafana/dashboards/llm-usage.json"

# Binary names to look for (Debian names first) and the apt package that provides them.
BINARIES: dict[str, tuple[tuple[str, ...], str]] = {
    "prometheus": (("prometheus",), "prometheus"),
    "alertmanager": (("prometheus-alertmanager", "alertmanager"), "prometheus-alertmanager"),
}

# The test copy of the overall spend alert: threshold in USD/hour. With a 30m rate() window and only
# seconds of samples, rate() reads as (increase so far) / 30 min, so a demo spending thousands of
# dollars an hour shows a few USD/hour at first. 0.5 is crossed within the first scrapes.
TEST_SPEND_THRESHOLD_USD_PER_HOUR = 0.5

T = TypeVar("T")


# --- binaries and ports -----------------------------------------------------------------------
def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def find_binary(kind: str) -> str | None:
    names, _package = BINARIES[kind]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_binaries(*kinds: str) -> dict[str, str]:
    """Paths of the servers; a skip when one is missing, a failure when CI is set (CI installs them)."""
    import pytest

    found: dict[str, str] = {}
    missing: list[str] = []
    for kind in kinds:
        path = find_binary(kind)
        if path is None:
            names, package = BINARIES[kind]
            missing.append(f"{' or '.join(names)} (apt package {package!r})")
        else:
            found[kind] = path
    if missing:
        what = ", ".join(missing)
        if in_ci():
            pytest.fail(f"not on PATH but CI is set, and CI must install it: {what}")
        pytest.skip(f"not on PATH: {what}; install it to run the end-to-end tests (they fail when CI is set)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for Python children: no OTEL_* settings and no real API key, the repo importable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_") and k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # the tests read what the demo prints while it runs
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env.update(extra)
    return env


# --- waiting ----------------------------------------------------------------------------------
class Deadline:
    """A time budget shared by several waits, so a test's total time stays bounded."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())


class WaitTimeout(AssertionError):
    pass


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    deadline: Deadline,
    *,
    interval: float = 0.2,
    check: Callable[[], None] | None = None,
    diagnostics: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until it returns something other than None, or fail when the deadline passes.

    Connection errors count as "not yet". `check` runs before each probe and raises when a process
    the wait depends on has died, so a crash fails at once instead of at the deadline.
    """
    last: object = None
    while True:
        if check is not None:
            check()
        try:
            value = probe()
        except (OSError, PrometheusError) as exc:
            value, last = None, exc
        else:
            if value is not None:
                return value
        if deadline.remaining() <= 0:
            detail = f"; last error: {last!r}" if last is not None else ""
            extra = f"\n{diagnostics()}" if diagnostics is not None else ""
            raise WaitTimeout(f"timed out ({deadline.seconds:g} s budget) waiting for {what}{detail}{extra}")
        time.sleep(min(interval, deadline.remaining()))


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


# --- processes --------------------------------------------------------------------------------
class ManagedProcess:
    """A child process whose output goes to a log file in the work directory."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        workdir: Path,
        *,
        env: Mapping[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
    ) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(args),
            cwd=ROOT,
            env=dict(env) if env is not None else None,
            stdin=stdin,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def check(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise AssertionError(f"{self.name} exited with status {code}:\n{self.log_tail()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return "\n".join(f"  {self.name}| {line}" for line in tail) or f"  {self.name}| (no output)"

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()  # workers that wait on stdin exit cleanly on EOF
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=timeout)
        elif self.proc.stdin is not None:
            self.proc.stdin.close()
        self._log.close()


# --- webhook receiver -------------------------------------------------------------------------
class WebhookReceiver:
    """An in-process HTTP server that keeps every JSON body POSTed to it (Alertmanager's webhook)."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        received = self._received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    received(json.loads(body))
                    self.send_response(200)
                except ValueError:
                    self.send_response(400)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean; the payloads are kept instead

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/alerts"

    def _received(self, payload: Any) -> None:
        with self._lock:
            self.payloads.append(payload)

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification received so far."""
        with self._lock:
            payloads = list(self.payloads)
        return [alert for p in payloads for alert in p.get("alerts", [])]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# --- Prometheus and Alertmanager --------------------------------------------------------------
class PrometheusError(Exception):
    """Prometheus answered with status "error" (a query that does not parse, for instance)."""


class Prometheus:
    """A Prometheus server with a generated configuration: 1 s scrapes and rule evaluations."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        targets: Mapping[str, Sequence[str]],
        rule_files: Iterable[Path] = (),
        alertmanager: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home = workdir / "prometheus"
        home.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
                for job, addresses in targets.items()
            ],
        }
        if alertmanager is not None:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
        config_path = home / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process = ManagedProcess(
            "prometheus",
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # A firing alert is re-sent this often; the default 1m would make a lost first
                # notification cost a minute.
                "--rules.alert.resend-delay=1s",
                "--log.level=warn",
            ],
            workdir,
        )

    def ready(self) -> bool | None:
        status, _ = http_get(f"{self.url}/-/ready", timeout=2)
        return True if status == 200 else None

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url, timeout=10)
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise PrometheusError(f"{url}: HTTP {status}, not JSON: {body[:200]!r}") from exc
        if doc.get("status") != "success":
            raise PrometheusError(f"{doc.get('errorType')}: {doc.get('error')} (HTTP {status})")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of `expr` now (a scalar result comes back as one unlabelled sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in {"scalar", "string"}:
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str) -> list[tuple[dict[str, str], float]]:
        return [(s["metric"], float(s["value"][1])) for s in self.query(expr)]

    # The *_if_any variants return None for "nothing yet", which is what `wait_for` polls on.
    def query_if_any(self, expr: str) -> list[dict[str, Any]] | None:
        return self.query(expr) or None

    def values_if_any(self, expr: str) -> list[tuple[dict[str, str], float]] | None:
        return self.values(expr) or None

    def label_values_if_any(self, label: str, selector: str) -> set[str] | None:
        return set(self.api(f"label/{label}/values", **{"match[]": selector})) or None

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]


class Alertmanager:
    """An Alertmanager delivering every alert to `webhook_url`, with the repository's routing tree."""

    def __init__(self, binary: str, workdir: Path, webhook_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home = workdir / "alertmanager"
        home.mkdir(parents=True, exist_ok=True)
        config_path = home / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(alertmanager_test_config(webhook_url), sort_keys=False))
        self.process = ManagedProcess(
            "alertmanager",
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # No high-availability peer: the default cluster port 9094 may be taken, and a lone
                # instance would otherwise wait for peers before sending.
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            workdir,
        )

    def ready(self) -> bool | None:
        status, _ = http_get(f"{self.url}/-/ready", timeout=2)
        return True if status == 200 else None


def alertmanager_test_config(webhook_url: str) -> dict[str, Any]:
    """The repository's alertmanager.yml with test timings and every webhook pointed at `webhook_url`.

    The routing tree (grouping, severity route) stays as shipped; only its waits shrink from 30s/5m
    to 0s/1s, which a test lasting seconds needs.
    """
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    routes = [config["route"]]
    while routes:
        route = routes.pop()
        route["group_wait"] = "0s"
        route["group_interval"] = "1s"
        routes.extend(route.get("routes", []))
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
    return config


def lowered_alert_rules(threshold_usd_per_hour: float = TEST_SPEND_THRESHOLD_USD_PER_HOUR) -> dict[str, Any]:
    """alerts.yml with the overall LLMSpendRateOverBudget made reachable by seconds of demo traffic.

    The shipped rule pages at 20 USD/hour sustained for 15 minutes. This copy changes exactly two
    things of that one rule: the number its expression compares with (whatever it is, as long as
    the expression still ends in `> NUMBER`) becomes `threshold_usd_per_hour`, and `for` becomes
    0s. Every other rule, including the per-agent budget, is kept as shipped.
    """
    doc: dict[str, Any] = yaml.safe_load(ALERT_RULES.read_text())
    overall = [
        rule
        for group in doc["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "LLMSpendRateOverBudget" and rule.get("labels", {}).get("scope") == "overall"
    ]
    assert len(overall) == 1, f"expected one overall LLMSpendRateOverBudget rule, found {len(overall)}"
    (rule,) = overall
    expr, count = re.subn(r">\s*[0-9.eE+]+\s*$", f"> {threshold_usd_per_hour!r}", rule["expr"].rstrip())
    assert count == 1, f"the overall spend rule no longer ends in '> NUMBER': {rule['expr']!r}"
    rule["expr"] = expr
    rule["for"] = "0s"
    return doc


# --- the demo and the stack of point 1 --------------------------------------------------------
def start_demo(workdir: Path, port: int) -> ManagedProcess:
    """The demo workload, repeated until stopped, serving Prometheus /metrics on `port`."""
    args = [sys.executable, "-m", "examples.demo", "--loops", "0", "--serve", "-1", "--port", str(port)]
    return ManagedProcess("demo", args, workdir, env=clean_env())


@dataclass
class AlertingStack:
    """The demo, scraped by Prometheus with the package's rules, alerting through Alertmanager."""

    workdir: Path
    demo_port: int
    demo: ManagedProcess
    prometheus: Prometheus
    alertmanager: Alertmanager
    webhook: WebhookReceiver
    _owned_dir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def processes(self) -> list[ManagedProcess]:
        return [self.demo, self.prometheus.process, self.alertmanager.process]

    def check(self) -> None:
        for process in self.processes:
            process.check()

    def diagnostics(self) -> str:
        return "\n".join(p.log_tail() for p in self.processes)

    def wait(
        self,
        what: str,
        probe: Callable[[], T | None],
        deadline: Deadline,
        last_seen: Callable[[], object] | None = None,
    ) -> T:
        """`wait_for` that fails at once when a process dies; `last_seen` adds the last observation."""

        def diagnostics() -> str:
            seen = f"last seen: {last_seen()!r}\n" if last_seen is not None else ""
            return seen + self.diagnostics()

        return wait_for(what, probe, deadline, check=self.check, diagnostics=diagnostics)

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        self.webhook.close()
        if self._owned_dir is not None:
            self._owned_dir.cleanup()


def start_alerting_stack(
    binaries: Mapping[str, str], deadline: Deadline, workdir: Path | None = None
) -> AlertingStack:
    """Start everything, then wait until both servers are ready and Prometheus scrapes the demo."""
    owned = None
    if workdir is None:
        owned = tempfile.TemporaryDirectory(prefix="llm-usage-e2e-")
        workdir = Path(owned.name)
    rules_path = workdir / "alerts.test.yml"
    rules_path.write_text(yaml.safe_dump(lowered_alert_rules(), sort_keys=False))

    webhook = WebhookReceiver()
    demo_port = free_port()
    started: list[ManagedProcess] = []
    try:
        demo = start_demo(workdir, demo_port)
        started.append(demo)
        alertmanager = Alertmanager(binaries["alertmanager"], workdir, webhook.url)
        started.append(alertmanager.process)
        prometheus = Prometheus(
            binaries["prometheus"],
            workdir,
            targets={"demo": [f"127.0.0.1:{demo_port}"]},
            rule_files=[rules_path, RECORDING_RULES],
            alertmanager=f"127.0.0.1:{alertmanager.port}",
        )
        started.append(prometheus.process)
    except BaseException:
        for process in started:
            process.stop()
        webhook.close()
        if owned is not None:
            owned.cleanup()
        raise
    stack = AlertingStack(workdir, demo_port, demo, prometheus, alertmanager, webhook, owned)
    try:
        stack.wait("Alertmanager /-/ready", alertmanager.ready, deadline)
        stack.wait("Prometheus /-/ready", prometheus.ready, deadline)
        stack.wait("Prometheus to scrape the demo (up == 1)", lambda: _up(prometheus, "demo"), deadline)
    except BaseException:
        stack.close()
        raise
    return stack


def _up(prometheus: Prometheus, job: str) -> bool | None:
    return True if [v for _, v in prometheus.values(f'up{{job="{job}"}}') if v == 1] else None


_shared: AlertingStack | None = None


def _stop_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.close()
        _shared = None


def _used_later(request: Any) -> bool:
    """Whether a test after the requesting module's last test uses the same fixture."""
    items = request.session.items
    module = request.node.path
    positions = [i for i, item in enumerate(items) if item.path == module]
    later = items[max(positions) + 1 :] if positions else []
    return any(request.fixturename in item.fixturenames and item.path != module for item in later)


@contextmanager
def shared_alerting_stack(
    request: Any, binaries: Mapping[str, str], deadline: Deadline
) -> Iterator[AlertingStack]:
    """One stack for the e2e modules of a pytest run, for a module-scoped fixture to yield from.

    `request` is the fixture's pytest request. The stack is stopped after the last module whose
    tests use the fixture, so the demo does not keep a core busy while unrelated tests run; the
    session cleanup stops it too if that module is interrupted.
    """
    global _shared
    if _shared is None:
        _shared = start_alerting_stack(binaries, deadline)
        request.config.add_cleanup(_stop_shared)
    else:
        _shared.check()
    try:
        yield _shared
    finally:
        if not _used_later(request):
            _stop_shared()
