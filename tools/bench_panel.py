"""What the control panel costs the live loop: ``reenact bench`` at real-time pace on a
clip, without and with ``--panel``, interleaved, the panel's page open in headless
Chromium on the same machine (640x360 preview at 15 fps, the default).

    .venv/bin/python tools/bench_panel.py --model M --source ../shared/data/faces/driver_liveportrait_d10.mp4 \
        --pairs 3 --json runs/bench_panel.json

Chromium starts before each run; the page is opened as soon as the panel serves, which is
while the model loads (``--open-after 5`` opens it mid-run instead, its load inside the
measurement). Prints, per arm, the median over runs of e2e p50/p95/p99, the dropped and
repeated percentages, the CPU per frame and the preview frames the page got a second, and
the with-minus-without differences.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(model: str, source: str, panel: bool, out: Path, extra: list[str], open_after: float = 0.0) -> dict:
    port = _port()
    cmd = [sys.executable, "-m", "reenact", "bench", "--model", model, "--source", source, "--json", str(out),
           "--fidelity-every", "0", "--set", f"panel.port={port}", *extra] + (["--panel"] if panel else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    log = out.with_suffix(".log")
    # Chromium starts before the run: its start-up (seconds of both cores) is not what the panel
    # costs a running loop, and a user opens the page once, not per frame.
    browser = open_browser() if panel else None
    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=out.parent)
    if panel:
        deadline = time.monotonic() + 120
        while "panel: http" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        url = re.search(r"panel: (http://\S+)", log.read_text()).group(1)
        time.sleep(open_after)  # 0: the page opens while the model loads; more: the page is opened mid-run
        browser.get(url)
    proc.wait()
    if browser is not None:
        browser.quit()
    if proc.returncode != 0:
        raise SystemExit(f"bench failed:\n{log.read_text()[-2000:]}")
    return json.loads(out.read_text())


def open_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=opts)


def figures(report: dict) -> dict:
    n = max(report["frames_captured"], 1)
    e = report["e2e_ms"]
    return {"e2e_p50": e["p50"], "e2e_p95": e["p95"], "e2e_p99": e["p99"], "fps": report["fps"],
            "dropped_pct": 100 * report["frames_dropped"] / n, "repeated_pct": 100 * report["frames_repeated"] / max(report["frames_out"], 1),
            "cpu_ms_per_frame": report.get("cpu_ms_per_frame"),
            "preview_fps": round(report.get("panel_frames_sent", {}).get("output", 0) / max(report["duration_s"], 1e-9), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--open-after", type=float, default=0.0, metavar="SECONDS",
                    help="open the page this long after the panel is served (default 0: while the model loads; "
                         "5: a page opened mid-run, its load inside the measurement)")
    ap.add_argument("--loop", type=float, help="replay the clip for this many seconds (bench --loop): a longer run, the page's one-off load diluted")
    args = ap.parse_args()
    args.model, args.source = str(Path(args.model).resolve()), str(Path(args.source).resolve())  # each run's cwd is a temp dir
    runs: dict[str, list[dict]] = {"without": [], "with": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            for arm in (("without", "with") if i % 2 == 0 else ("with", "without")):  # alternate which goes first
                rep = run_once(args.model, args.source, arm == "with", Path(tmp) / f"{arm}{i}.json",
                               ["--loop", str(args.loop)] if args.loop else [], args.open_after)
                runs[arm].append(figures(rep))
                print(arm, json.dumps(runs[arm][-1]), flush=True)
    med = {arm: {k: round(float(np.median([r[k] for r in rs])), 2) for k in rs[0]} for arm, rs in runs.items()}
    diff = {k: round(med["with"][k] - med["without"][k], 2) for k in med["with"]}
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.machine())
    result = {"runs": runs, "median": med, "with_minus_without": diff, "machine": cpu,
              "avx512": "avx512f" in open("/proc/cpuinfo").read(), "cores": os.cpu_count()}
    print(json.dumps({"median": med, "with_minus_without": diff}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
