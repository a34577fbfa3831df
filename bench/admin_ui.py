"""
Benchmark: the Admin UI in headless Chromium (docs/performance.md, "Admin UI").

Starts a real ``twistd edgegw`` on 127.0.0.1 with a fresh data directory,
creates ``--endpoints`` endpoints through the API (not compiled: the list
page is what is measured), and drives Debian's Chromium with Playwright:

* bytes transferred by the first load of ``/admin/`` (empty cache): the
  sign-in page alone, then signing in and the dashboard; every request's
  headers and body as the network saw them (Playwright's ``request.sizes()``);
* time to interactive of the endpoints page with that many endpoints: from
  navigation start to the table drawn with every row and its filters wired
  (the page's ``edgegw:endpoints-ready`` performance mark), for a fresh page
  load with the key in the session, median of ``--rounds``; with the time to
  DOMContentLoaded and of the ``GET /api/endpoints`` call (all 200 records,
  code included) inside it.

    .venv/bin/python bench/admin_ui.py [--endpoints 200] [--rounds 5]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get("EDGEGW_CHROMIUM", "/usr/bin/chromium")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(api, key, method, path, body=None):
    request = urllib.request.Request(
        api + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


def start_gateway(data_dir):
    data_port, admin_port = free_port(), free_port()
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    log = open(os.path.join(data_dir, "twistd.log"), "wb")
    process = subprocess.Popen(
        [twistd, "-n", "--pidfile=", "edgegw", "--data-dir", os.path.join(data_dir, "var"),
         "--listen", f"tcp:{data_port}:interface=127.0.0.1",
         "--admin-listen", f"tcp:{admin_port}:interface=127.0.0.1"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    admin = f"http://127.0.0.1:{admin_port}"
    key_file = os.path.join(data_dir, "var", "admin.key")
    for _ in range(300):
        try:
            with urllib.request.urlopen(admin + "/api/health", timeout=1):
                pass
            if os.path.exists(key_file):
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        process.kill()
        raise SystemExit("the gateway did not start; see " + log.name)
    with open(key_file) as f:
        return process, admin, f.read().strip()


def transferred(requests):
    total = 0
    for request in requests:
        sizes = request.sizes()
        total += sizes["requestHeadersSize"] + sizes["requestBodySize"]
        total += sizes["responseHeadersSize"] + max(0, sizes["responseBodySize"])
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    data_dir = tempfile.mkdtemp(prefix="edgegw-ui-bench-")
    process, admin, key = start_gateway(data_dir)
    try:
        started = time.perf_counter()
        for i in range(args.endpoints):
            call(admin + "/api", key, "POST", "/endpoints",
                 {"name": f"endpoint-{i:03d}", "path": f"/items{i}/{{id}}", "method": "GET",
                  "description": f"benchmark endpoint {i}", "code": "// not compiled\n"})
        created = time.perf_counter() - started
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

            # 1. first load: the sign-in page, then sign in and land on the dashboard.
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            seen = []
            page.on("requestfinished", lambda request: seen.append(request))
            page.goto(admin + "/admin/", wait_until="networkidle")
            page.wait_for_selector("#api-key")
            sign_in_requests = list(seen)
            sign_in = transferred(sign_in_requests)
            page.fill("#api-key", key)
            page.click("form button[type=submit]")
            page.wait_for_selector("[data-testid=card-endpoints]")
            page.wait_for_load_state("networkidle")
            dashboard_requests = list(seen)
            dashboard = transferred(dashboard_requests)
            static = [r for r in dashboard_requests if "/admin/" in r.url]
            static_bytes = transferred(static)
            context.close()

            # 2. time to interactive of the endpoints page, fresh loads.
            times, dom_loaded, list_fetch = [], [], []
            for _ in range(args.rounds):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                context.add_init_script(f"sessionStorage.setItem('edgegw.apiKey', {json.dumps(key)})")
                page = context.new_page()
                page.goto(admin + "/admin/#/endpoints")
                page.wait_for_function(
                    "n => document.querySelectorAll('[data-testid=endpoints-table] tbody tr').length === n",
                    arg=args.endpoints, timeout=60_000,
                )
                ready, loaded, listing = page.evaluate(
                    """() => [
                        performance.getEntriesByName('edgegw:endpoints-ready')[0].startTime,
                        performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
                        performance.getEntriesByType('resource')
                            .filter(r => r.name.includes('/api/endpoints?'))
                            .map(r => r.responseEnd - r.startTime)[0],
                    ]"""
                )
                times.append(ready)
                dom_loaded.append(loaded)
                list_fetch.append(listing)
                context.close()
            browser.close()
        result = {
            "endpoints": args.endpoints,
            "create_seconds": round(created, 2),
            "first_load_sign_in_bytes": sign_in,
            "first_load_sign_in_requests": len(sign_in_requests),
            "first_load_through_dashboard_bytes": dashboard,
            "first_load_through_dashboard_requests": len(dashboard_requests),
            "static_files_bytes": static_bytes,
            "static_files": len(static),
            "endpoints_page_interactive_ms": [round(t, 1) for t in times],
            "endpoints_page_interactive_ms_median": round(statistics.median(times), 1),
            "dom_content_loaded_ms_median": round(statistics.median(dom_loaded), 1),
            "endpoints_list_fetch_ms_median": round(statistics.median(list_fetch), 1),
        }
        print(json.dumps(result, indent=2))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
