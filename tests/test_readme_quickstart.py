"""The README's quickstart, run as a newcomer would: its commands and its script, taken from
README.md, against the emulator it starts. The only change is the port (a free one instead of
8089, which another process may hold). The first command runs in the background; as a reader
would, the test waits for the URL it prints before typing the next ones.
"""

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


def quickstart() -> tuple[list[str], str]:
    """The shell commands and the Python script of the README's quickstart section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Quickstart", 1)[1].split("\n## ", 1)[0]
    shell = re.search(r"```sh\n(.*?)```", section, re.S)
    script = re.search(r"```python\n(.*?)```", section, re.S)
    assert shell and script, "the quickstart has a shell block and a Python block"
    commands = [line for line in shell.group(1).splitlines() if line.strip()]
    return commands, script.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_example_is_the_readme_script() -> None:
    """examples/quickstart.py is the script the README shows, line for line."""
    _, script = quickstart()
    assert (ROOT / "examples" / "quickstart.py").read_text() == script


def test_readme_quickstart_prints_a_priced_call(tmp_path: Path) -> None:
    commands, script = quickstart()
    assert len(script.strip().splitlines()) <= 10, "the quickstart script stays short"
    (tmp_path / "quickstart.py").write_text(script)
    port = str(free_port())
    commands = [c.replace("8089", port) for c in commands]
    start, rest = commands[0], commands[1:]
    assert start.startswith("python -m emulators") and start.endswith("&")
    assert rest[-1] == "python quickstart.py"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    # `python` is this interpreter; the repository is importable as it is from the clone's root.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"

    emulator = subprocess.Popen(
        ["bash", "-c", f"exec {start.removesuffix('&').strip()}"],
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
        banner = []
        for line in emulator.stdout:
            banner.append(line)
            if f"127.0.0.1:{port}" in line:
                break
        assert any(f"127.0.0.1:{port}" in line for line in banner), "".join(banner)
        done = subprocess.run(
            ["bash", "-e", "-c", "\n".join(rest)],
            cwd=tmp_path,
            env=env,
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
    err = done.stderr
    # One line for the call: its model and a cost in USD; then the summary table at exit.
    priced = re.compile(r"\$\s?\d|\d\s?USD|cost", re.I)
    call_lines = [line for line in err.splitlines() if "gpt-4o-mini" in line and priced.search(line)]
    assert call_lines, f"no priced line for the call on stderr:\n{err}"
    assert "greeter" in err and "quickstart" in err, f"run and session are not shown:\n{err}"
    # At exit, the usage summary table: the call in the total and in its agent, model and session rows.
    assert err.count("usage of this process") == 1, err
    table = err.split("usage of this process", 1)[1]
    for row in ("total", "greeter", "gpt-4o-mini", "quickstart"):
        assert re.search(rf"^\s+{row}\s+1\s", table, re.M), f"no {row} row of one call:\n{table}"
