"""Live check of deploy/grafana and deploy/prometheus against the real service.

Starts a lemo-coordinator, a CPU lemo-worker training a small LeMo (ORACLE) job, and Debian's
Prometheus scraping both every second with deploy/prometheus/lemo-alerts.yml loaded. Then, through
Prometheus's HTTP API (/api/v1/query):
  - every panel query of every dashboard JSON (and every templating query) must return data;
  - every alert expression must cover at least one series once each comparison with a number gets
    the `bool` modifier (`x > 0.95` -> `x > bool 0.95`): alerts are empty while all is well, and
    the `bool` form still proves that their metrics, labels and joins match real series;
  - every lemo_* metric name a query or alert mentions must exist as a series;
  - a deliberately misspelt metric name must fail the same checks (the check can fail at all).
Also runs `promtool check config` and `promtool check rules` on deploy/prometheus/, and the
probe commands (the coordinator's `lemoctl health` on its health-only port, the worker's
readinessProbe from deploy/k8s/base/worker.yaml) against the live processes.
"Data" is at least one sample; NaN counts (a ratio of counters idle in the window is 0/0), while
a query on a misspelt or missing metric returns no sample at all.
Grafana's variables are replaced as Grafana would for "All": $__rate_interval / $__interval by
1m, a variable by its allValue (else .*). `label_values(M, L)` is run as `group by (L) (M)`.
The queries are read from the files, never listed here, so a new panel or alert is covered as is.

Usage: live_metrics_test.py SOURCE_DIR BIN_DIR. To add a check: extend main(). The test polls
until every check passes or 45 s pass; it cleans up its processes in every case.
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import yaml

DEADLINE_SECONDS = 45
RATE_WINDOW = "1m"


def free_port():
    # Only for Prometheus, which cannot report a port it chose: LeMo's own servers bind port 0
    # and report theirs.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Started processes, stopped (SIGTERM, then SIGKILL) in reverse order on exit."""

    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, argv, **kwargs):
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        proc = subprocess.Popen(argv, stderr=log, stdout=kwargs.pop("stdout", log), **kwargs)
        self.procs.append((name, proc, log))
        return proc

    def stop_all(self):
        for name, proc, log in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()

    def print_logs(self):
        for name, _, _ in self.procs:
            path = os.path.join(self.work, f"{name}.log")
            with open(path, errors="replace") as f:
                tail = f.read()[-3000:]
            print(f"--- {name} log (tail) ---\n{tail}", file=sys.stderr)


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr):
        """(ok, result list or error message) for an instant query at now."""
        url = f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:  # 400: the expression does not parse
            return False, e.read().decode(errors="replace")
        except OSError as e:
            return False, str(e)
        if body.get("status") != "success":
            return False, body.get("error", "query failed")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return True, [data["result"]]
        return True, data["result"]


# --- what the files hold ---------------------------------------------------------------------

def dashboard_queries(dashboard_dir):
    """[(where, expr)] for every panel target and templating query of every dashboard."""
    out = []
    for path in sorted(glob.glob(os.path.join(dashboard_dir, "*.json"))):
        with open(path) as f:
            dash = json.load(f)
        name = os.path.basename(path)
        variables = {}
        for var in dash.get("templating", {}).get("list", []):
            variables[var["name"]] = var.get("allValue") or ".*"
            if var.get("type") == "query":
                q = var.get("query")
                q = q.get("query", "") if isinstance(q, dict) else q
                m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", q or "")
                expr = f"group by ({m.group(2)}) ({m.group(1)})" if m else q
                out.append((f"{name} variable ${var['name']}", expr))

        def walk(node, title):
            if isinstance(node, dict):
                title = node.get("title", title)
                for t in node.get("targets", []) or []:
                    if t.get("expr"):
                        out.append((f"{name} panel '{title}' ({t.get('refId')})",
                                    substitute(t["expr"], variables)))
                for v in node.values():
                    walk(v, title)
            elif isinstance(node, list):
                for v in node:
                    walk(v, title)

        walk(dash.get("panels", []), "")
    return out


def substitute(expr, variables):
    for builtin in ("__rate_interval", "__interval", "__range"):
        expr = expr.replace(f"${{{builtin}}}", RATE_WINDOW).replace(f"${builtin}", RATE_WINDOW)
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return expr


def alert_expressions(rules_path):
    with open(rules_path) as f:
        rules = yaml.safe_load(f)
    return [(f"alert {r['alert']}", r["expr"]) for g in rules["groups"] for r in g["rules"]
            if "alert" in r]


# A comparison with a number literal, not already in `bool` form.
COMPARISON = re.compile(r"(==|!=|>=|<=|>|<)(\s*)(?!bool\b)(?=-?[0-9.])")


def covering_form(expr):
    """The alert with each `x OP number` made `x OP bool number`: a 0/1 sample per series."""
    return COMPARISON.sub(lambda m: f"{m.group(1)} bool{m.group(2) or ' '}", expr)


def metric_names(expr):
    # Label values are quoted and never start a bare word, so this finds only metric names.
    no_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return sorted(set(re.findall(r"\blemo_[a-zA-Z0-9_:]*", no_strings)))


def check(prom, where, expr):
    """None when the expression returns data and names only existing metrics, else why not."""
    for name in metric_names(expr):
        ok, result = prom.query(f'count({{__name__="{name}"}})')
        if not ok or not result:
            return f"{where}: metric {name} has no series ({expr})"
    ok, result = prom.query(expr)
    if not ok:
        return f"{where}: query error {result} ({expr})"
    if not result:
        return f"{where}: no data ({expr})"
    return None


# --- the service under test ------------------------------------------------------------------

JOB_SPEC = """
displayName: live-metrics
model: {{path: {model}, dtype: FP32}}
data: {{path: {data}, format: JSONL, tokenizer: byte}}
lora: {{r: 4, alpha: 8, targetModules: [q_proj, v_proj]}}
# ORACLE so every layer reports a kept-token fraction (layer 0 dense, the rest about half).
lemo: {{mode: ORACLE, keepRatio: {{perLayer: [1.0], defaultRatio: 0.5}}}}
optimizer: {{lr: 1.0e-3}}
seqLen: 256
steps: 100000           # runs until the test stops it: per-job series exist while a job is active
batchSize: 1
resources: {{worldSize: 1, deviceKind: CPU}}
checkpoint: {{everyNSteps: 10, keepLast: 2}}
"""


def start_service(procs, source, bins, work):
    subprocess.run([os.path.join(bins, "lemo-train"), "init-model", "--preset", "tiny", "--out",
                    os.path.join(work, "model")], check=True, stdout=subprocess.DEVNULL)
    coord = procs.start("coordinator", [
        os.path.join(bins, "lemo-coordinator"), "--listen", "127.0.0.1:0",
        "--metrics-listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0",
        "--data-dir", os.path.join(work, "data"), "--worker-timeout", "5s"],
        stdout=subprocess.PIPE, text=True)
    line = coord.stdout.readline()
    m = re.search(r"listening on port (\d+), metrics port (\d+)", line)
    assert m, f"unexpected first coordinator line: {line!r}"
    grpc_port, coord_metrics = int(m.group(1)), int(m.group(2))
    # Port 0 and the port file the worker writes once listening: a port picked here and passed
    # on could be taken by another process in between.
    ports = os.path.join(work, "worker.ports.json")
    worker = procs.start("worker", [
        os.path.join(bins, "lemo-worker"), "--coordinator", f"127.0.0.1:{grpc_port}",
        "--device", "cpu", "--metrics-listen", "127.0.0.1:0", "--port-file", ports,
        "--work-dir", os.path.join(work, "worker"), "--worker-id", "live-w0"])
    deadline = time.time() + 60
    while not os.path.exists(ports):
        assert worker.poll() is None, f"lemo-worker exited ({worker.returncode}) before {ports}"
        assert time.time() < deadline, f"lemo-worker wrote no {ports} within 60 s"
        time.sleep(0.05)
    with open(ports) as f:
        worker_metrics = json.load(f)["metrics"]
    return grpc_port, coord_metrics, worker_metrics


def start_prometheus(procs, source, work, coord_metrics, worker_metrics):
    rules = os.path.join(source, "deploy/prometheus/lemo-alerts.yml")
    config = os.path.join(work, "prometheus.yml")
    # The job names are the ones deploy/prometheus/prometheus.yml and the ServiceMonitors give.
    with open(config, "w") as f:
        yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules],
            "scrape_configs": [
                {"job_name": "lemo-coordinator",
                 "static_configs": [{"targets": [f"127.0.0.1:{coord_metrics}"]}]},
                {"job_name": "lemo-worker",
                 "static_configs": [{"targets": [f"127.0.0.1:{worker_metrics}"]}]},
            ]}, f)
    subprocess.run(["promtool", "check", "config", config], check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    procs.start("prometheus", [
        shutil.which("prometheus"), f"--config.file={config}",
        f"--storage.tsdb.path={os.path.join(work, 'tsdb')}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
    return Prometheus(port)


def check_probes(source, work, lemoctl, worker_metrics):
    """The probe commands of the images and manifests, run against the live processes."""
    with open(os.path.join(work, "coordinator.log")) as f:
        m = re.search(r"health-only port (\d+)", f.read())
    assert m, "the coordinator did not report its --health-listen port"
    # The Dockerfile's HEALTHCHECK (the k8s probes ask the same port natively).
    health = subprocess.run([lemoctl, "health", "--server", f"127.0.0.1:{m.group(1)}"],
                            capture_output=True, text=True)
    assert health.returncode == 0 and "SERVING" in health.stdout, health
    # The worker's readinessProbe from deploy/k8s/base/worker.yaml, on the live worker's port.
    with open(os.path.join(source, "deploy/k8s/base/worker.yaml")) as f:
        worker_set = next(d for d in yaml.safe_load_all(f) if d["kind"] == "StatefulSet")
    container = worker_set["spec"]["template"]["spec"]["containers"][0]
    command = [a.replace("9400", str(worker_metrics))
               for a in container["readinessProbe"]["exec"]["command"]]
    assert subprocess.run(command).returncode == 0, f"worker readiness failed: {command}"
    broken = [a.replace("lemo_worker_connected 1", "lemo_worker_connected 2") for a in command]
    assert subprocess.run(broken).returncode != 0, "the readiness command cannot fail"


def wait_for(what, fn, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if fn():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def main():
    source, bins = sys.argv[1], sys.argv[2]
    for tool in ("prometheus", "promtool"):
        assert shutil.which(tool), f"{tool} not found: scripts/bootstrap installs Debian's prometheus"
    for args in (["check", "config", "deploy/prometheus/prometheus.yml"],
                 ["check", "rules", "deploy/prometheus/lemo-alerts.yml"]):
        subprocess.run(["promtool", *args], cwd=source, check=True, stdout=subprocess.DEVNULL)

    panels = dashboard_queries(os.path.join(source, "deploy/grafana/dashboards"))
    alerts = alert_expressions(os.path.join(source, "deploy/prometheus/lemo-alerts.yml"))
    assert len(panels) >= 10 and len(alerts) >= 5, (len(panels), len(alerts))
    checks = panels + [(where, covering_form(expr)) for where, expr in alerts]

    work = tempfile.mkdtemp(prefix="lemo-live-metrics-")
    procs = Processes(work)
    passed = False
    try:
        grpc_port, coord_metrics, worker_metrics = start_service(procs, source, bins, work)
        prom = start_prometheus(procs, source, work, coord_metrics, worker_metrics)
        # Both targets up before the job starts, so its placement and first steps are scraped.
        def both_up():
            ok, result = prom.query("up == 1")
            return ok and len(result) == 2
        wait_for("Prometheus to scrape both targets", both_up, 20)

        spec = os.path.join(work, "job.yaml")
        with open(spec, "w") as f:
            f.write(JOB_SPEC.format(model=os.path.join(work, "model"),
                                    data=os.path.join(source, "bench/data/corpus.jsonl")))
        env = dict(os.environ, LEMO_SERVER=f"127.0.0.1:{grpc_port}")
        lemoctl = os.path.join(bins, "lemoctl")
        subprocess.run([lemoctl, "submit", "-q", spec], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        # One failing RPC (NOT_FOUND), so the "RPC errors" panels have a series to show.
        missing = subprocess.run([lemoctl, "get", "job-does-not-exist"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert missing.returncode != 0, "lemoctl get of a missing job succeeded"

        deadline = time.time() + DEADLINE_SECONDS
        while True:
            failures = [f for f in (check(prom, w, e) for w, e in checks) if f]
            if not failures:
                break
            if time.time() > deadline:
                raise AssertionError(f"{len(failures)} of {len(checks)} checks fail:\n  " +
                                     "\n  ".join(failures))
            time.sleep(1)
        print(f"ok: {len(panels)} dashboard queries and {len(alerts)} alert expressions "
              "return data from the live service")

        # The check must be able to fail: misspell the metric of every query in turn.
        for where, expr in checks:
            names = metric_names(expr)
            if not names:
                continue
            misspelt = re.sub(rf"\b{names[0]}\b", names[0].replace("lemo_", "lemo_misspelt_", 1),
                              expr)
            assert check(prom, where, misspelt) is not None, f"{where}: misspelt query passed"
        print("ok: every query fails once its metric name is misspelt")
        check_probes(source, work, lemoctl, worker_metrics)
        print("ok: the coordinator's health port and the worker's readiness command pass")
        passed = True
    finally:
        procs.stop_all()
        if passed:
            shutil.rmtree(work, ignore_errors=True)
        else:
            procs.print_logs()
            print(f"work dir kept: {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
