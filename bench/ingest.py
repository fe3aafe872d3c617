"""Gateway ingest throughput and latency, beside a bare ASGI endpoint measured in the same run.

Starts an embedded Valkey (append-only file on), the real gateway app and a bare ASGI app, each
under uvicorn with the settings `c360 gateway` uses, in their own processes on 127.0.0.1. Load
comes from separate processes (bench/_loadgen.py) over keep-alive connections, with 100-event
batches to /v1/batch and single events to /v1/track. Afterwards the events on the bus are
counted and compared with the events the gateway acknowledged with 200.

    python bench/ingest.py            # full run, a few minutes
    python bench/ingest.py --quick    # under a minute
    python bench/ingest.py --json     # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
LOADGEN = BENCH_DIR / "_loadgen.py"
HOST = "127.0.0.1"
WRITE_KEY = "bench-write-key"
SOURCE = "bench"
BATCH_SIZE = 100

#: The uvicorn settings of `c360 gateway` (appliance/cli.py), used for both servers.
UVICORN_OPTIONS: dict[str, Any] = {
    "log_level": "warning",
    "access_log": False,
    "timeout_graceful_shutdown": 10,
}

#: Seconds a load generator gets to start and build its requests before its warm-up begins.
PREPARE_S = 1.5

#: Upper bounds on request rate per process, far above what 2 cores reach: they only cap loops.
MAX_RATE = {"batch": 20_000, "single": 100_000}

#: Phases in the order run in each round; baseline and gateway alternate so drift hits both.
PHASES = (
    ("baseline", "batch"),
    ("gateway", "batch"),
    ("baseline", "single"),
    ("gateway", "single"),
)

#: Targets from DESIGN.md, printed beside the figures (the bench reports; it does not judge CI).
TARGET_BATCH_EVENTS_S = 100_000
TARGET_BATCH_P99_MS = 150
TARGET_SINGLE_REQUESTS_S = 5_000


@dataclass(frozen=True)
class Plan:
    """How long and how hard to push."""

    rounds: int
    warmup_s: float
    duration_s: float
    batch_connections: int
    single_connections: int
    processes: int
    use_gzip: bool
    client_ips: str


@dataclass
class PhaseRun:
    """One load-generator run against one server in one mode, with the CPU it cost."""

    outputs: list[dict[str, Any]]
    server_cpu_s: float
    valkey_cpu_s: float
    machine_busy_s: float  # CPU seconds the whole machine spent, every process included
    duration_s: float
    outbound: list[str] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    """Run the bench, or serve one app when started as a server child."""
    args = _parse(argv)
    if args.serve:
        return _serve(args.serve, args.port, args.valkey_url, args.server_processes)
    plan = _plan(args)
    temp = tempfile.TemporaryDirectory(prefix="c360-bench-")
    with temp as tmp, _servers(Path(tmp), args.server_processes) as servers:
        runs = _run_rounds(servers, plan, verbose=not args.json)
        acked = _acked(runs["gateway", "batch"] + runs["gateway", "single"])
        bus = bus_check(servers.valkey_url, acked)
        machine = machine_facts(servers.valkey_url)
    postgres = _postgres_check(servers, runs)
    report = build_report(runs, plan, bus, postgres, machine)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if bus["ok"] and postgres["ok"] and not _errors(runs) else 1


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Servers:
    """The processes under test and their addresses."""

    valkey_url: str
    valkey_pid: int
    gateway: subprocess.Popen[bytes]
    gateway_port: int
    baseline: subprocess.Popen[bytes]
    baseline_port: int
    gateway_exit_report: dict[str, Any] = field(default_factory=dict)

    def port(self, target: str) -> int:
        """Port of `gateway` or `baseline`."""
        return self.gateway_port if target == "gateway" else self.baseline_port

    def pid(self, target: str) -> int:
        """Process id of `gateway` or `baseline`."""
        return (self.gateway if target == "gateway" else self.baseline).pid


@contextmanager
def _servers(tmp: Path, processes: int) -> Iterator[Servers]:
    """Valkey, gateway and baseline, stopped (and the gateway's exit report read) on leaving."""
    from c360.appliance.engines import EmbeddedValkey, free_port

    valkey = EmbeddedValkey(tmp)
    valkey.start()
    children: list[subprocess.Popen[bytes]] = []
    try:
        gateway_port, baseline_port = free_port(), free_port()
        gateway = _spawn_server("gateway", gateway_port, valkey.url, tmp, processes)
        children.append(gateway)
        baseline = _spawn_server("baseline", baseline_port, valkey.url, tmp, processes)
        children.append(baseline)
        _wait_ready(gateway, gateway_port, "/health", tmp / "gateway.log")
        _wait_ready(baseline, baseline_port, "/", tmp / "baseline.log")
        assert valkey.process is not None
        servers = Servers(
            valkey.url, valkey.process.pid, gateway, gateway_port, baseline, baseline_port
        )
        yield servers
        servers.gateway_exit_report = _stop_gateway(gateway)
    finally:
        for child in children:
            _stop(child)
        valkey.stop()
        shutil.rmtree(valkey.socket_dir, ignore_errors=True)


def _spawn_server(
    target: str, port: int, valkey_url: str, tmp: Path, processes: int
) -> subprocess.Popen[bytes]:
    from c360.appliance.engines import die_with_parent

    command = [sys.executable, str(Path(__file__).resolve()), "--serve", target]
    command += ["--port", str(port), "--valkey-url", valkey_url]
    command += ["--server-processes", str(processes)]
    with (tmp / f"{target}.log").open("ab") as log_file:
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log_file,
            preexec_fn=lambda: die_with_parent(signal.SIGTERM),
        )


def _wait_ready(child: subprocess.Popen[bytes], port: int, path: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"a server exited at start-up:\n{log.read_text()[-3000:]}")
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                connection.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"a server did not answer on port {port} within 60 s; see {log}")


def _stop_gateway(gateway: subprocess.Popen[bytes]) -> dict[str, Any]:
    """SIGTERM, then the JSON line the gateway child prints as it exits."""
    gateway.send_signal(signal.SIGTERM)
    try:
        out, _ = gateway.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        gateway.kill()
        return {}
    lines = out.decode().strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _serve(target: str, port: int, valkey_url: str, processes: int) -> int:
    """In a server child: run one app under uvicorn until SIGTERM, in `processes` processes
    sharing the port (as `C360_GATEWAY_PROCESSES` does for `c360 gateway`)."""
    import uvicorn

    # uvicorn re-raises the SIGTERM it caught once it has shut down; a no-op handler lets this
    # child go on to print its exit report instead of dying from that signal
    signal.signal(signal.SIGTERM, lambda *_: None)

    if target == "baseline":
        if processes > 1:
            uvicorn.run(
                "ingest:bare_app",
                host=HOST,
                port=port,
                workers=processes,
                app_dir=str(BENCH_DIR),
                **UVICORN_OPTIONS,
            )
        else:
            uvicorn.run(bare_app, host=HOST, port=port, **UVICORN_OPTIONS)
        return 0
    from c360.api.app import create_app
    from c360.settings import load_settings, to_environment

    settings = load_settings(
        {
            "postgres_dsn": "postgresql://unused",  # required by Runtime, opened lazily
            "valkey_url": valkey_url,
            "write_keys": {WRITE_KEY: SOURCE},
            "data_dir": Path(tempfile.gettempdir()) / "c360-bench-unused",
        },
        environ={},
    )
    if processes > 1:
        os.environ.update(to_environment(settings))
        uvicorn.run(
            "c360.api.app:app_from_environment",
            factory=True,
            host=HOST,
            port=port,
            workers=processes,
            **UVICORN_OPTIONS,
        )
        # the workers' pools cannot be inspected from here; the outbound-TCP check still holds
        print(json.dumps({"postgres_pool_opened": None}), flush=True)
        return 0
    app = create_app(settings)
    uvicorn.run(app, host=HOST, port=port, **UVICORN_OPTIONS)
    # Runtime.pool is a cached_property: in __dict__ only if something asked for PostgreSQL
    print(json.dumps({"postgres_pool_opened": "pool" in app.state.runtime.__dict__}), flush=True)
    return 0


_BARE_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"16")]


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The baseline: read the whole body, answer 200 `{"success":true}`."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]  # startup / shutdown
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _BARE_HEADERS})
    await send({"type": "http.response.body", "body": b'{"success":true}'})


# --- load ------------------------------------------------------------------------------------


Runs = dict[tuple[str, str], list[PhaseRun]]


def _run_rounds(servers: Servers, plan: Plan, verbose: bool) -> Runs:
    runs: Runs = {phase: [] for phase in PHASES}
    run_id = uuid.uuid4().hex[:8]
    for round_index in range(plan.rounds):
        for target, mode in PHASES:
            prefix = f"{run_id}-{round_index}-{target[0]}{mode[0]}"
            run = run_phase(servers, target, mode, plan, prefix)
            runs[target, mode].append(run)
            if verbose:
                print(
                    f"  round {round_index + 1}/{plan.rounds} {target:8} {mode:6} "
                    f"{_rate(run):>10,.0f} events/s",
                    file=sys.stderr,
                    flush=True,
                )
    return runs


def run_phase(servers: Servers, target: str, mode: str, plan: Plan, prefix: str) -> PhaseRun:
    """Warm up, then measure one server in one mode with every load-generator process at once."""
    connections = plan.batch_connections if mode == "batch" else plan.single_connections
    start_at = time.time() + PREPARE_S + plan.warmup_s
    cap = int(MAX_RATE[mode] * (PREPARE_S + plan.warmup_s + plan.duration_s))
    children = [
        _spawn_loadgen(
            servers.port(target),
            mode,
            plan,
            start_at,
            cap,
            f"{prefix}{index}",
            _share(connections, plan.processes, index),
            index,
        )
        for index in range(plan.processes)
    ]
    watched = _watch_window(servers, target, start_at, plan.duration_s)
    server_cpu, valkey_cpu, busy, outbound = watched
    outputs = [_collect(child) for child in children]
    return PhaseRun(outputs, server_cpu, valkey_cpu, busy, plan.duration_s, outbound)


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def _spawn_loadgen(
    port: int,
    mode: str,
    plan: Plan,
    start_at: float,
    cap: int,
    prefix: str,
    connections: int,
    index: int,
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        str(LOADGEN),
        "--port",
        str(port),
        "--mode",
        mode,
        "--connections",
        str(connections),
        "--start-at",
        repr(start_at),
        "--duration",
        str(plan.duration_s),
        "--max-requests",
        str(cap),
        "--prefix",
        prefix,
        "--write-key",
        WRITE_KEY,
        "--batch-size",
        str(BATCH_SIZE),
        "--seed",
        str(index + 1),
    ]
    if plan.use_gzip:
        command.append("--gzip")
    command += ["--client-ips", plan.client_ips]
    return subprocess.Popen(command, stdout=subprocess.PIPE)


def _collect(child: subprocess.Popen[bytes]) -> dict[str, Any]:
    try:
        out, _ = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        child.kill()
        raise SystemExit(
            "a load generator did not finish within 120 s; the bench is broken"
        ) from None
    if child.returncode != 0:
        raise SystemExit(f"a load generator failed with exit code {child.returncode}")
    return json.loads(out)


def _watch_window(
    servers: Servers, target: str, start_at: float, duration_s: float
) -> tuple[float, float, float, list[str]]:
    """CPU seconds of the server, of Valkey and of the whole machine during the window, and the
    server's outbound TCP connections at its end (the gateway should have none)."""
    import psutil

    server, valkey = psutil.Process(servers.pid(target)), psutil.Process(servers.valkey_pid)
    time.sleep(max(0.0, start_at - time.time()))
    before = _cpu(server), _cpu(valkey), _machine_busy()
    time.sleep(max(0.0, start_at + duration_s - time.time()))
    after = _cpu(server), _cpu(valkey), _machine_busy()
    port = servers.port(target)
    outbound = [
        f"{conn.raddr.ip}:{conn.raddr.port}"
        for proc in _family(server)
        for conn in proc.net_connections(kind="inet")
        if conn.raddr and conn.laddr.port != port
    ]
    return after[0] - before[0], after[1] - before[1], after[2] - before[2], outbound


def _machine_busy() -> float:
    """CPU seconds all processors have spent on anything but idling, since boot."""
    import psutil

    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _cpu(process: Any) -> float:
    """CPU seconds of a server and its worker processes (uvicorn's, when it runs several)."""
    total = 0.0
    for proc in _family(process):
        try:
            times = proc.cpu_times()
        except Exception:  # a worker that exited between listing and reading
            continue
        total += times.user + times.system
    return total


def _family(process: Any) -> list[Any]:
    return [process, *process.children(recursive=True)]


# --- checks -----------------------------------------------------------------------------------

#: Sums the `n` field (events per entry) of one stream inside Valkey, a page at a time, so the
#: payloads never cross the socket.
_SUM_EVENTS_LUA = """
local total, entries, cursor = 0, 0, '-'
while true do
  local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 500)
  for _, entry in ipairs(page) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'n' then total = total + tonumber(fields[i + 1]) end
    end
    entries = entries + 1
  end
  if #page < 500 then break end
  cursor = '(' .. page[#page][1]
end
return {total, entries}
"""


def bus_check(valkey_url: str, acked_events: int) -> dict[str, Any]:
    """Events on c360-raw-events:* against events acknowledged with 200, and durability facts."""
    import redis

    client = redis.Redis.from_url(valkey_url)
    sum_events = client.register_script(_SUM_EVENTS_LUA)
    on_bus = entries = trimmed = 0
    for key in sorted(client.scan_iter(match="c360-raw-events:*")):
        total, count = sum_events(keys=[key])
        on_bus, entries = on_bus + int(total), entries + int(count)
        info = client.xinfo_stream(key)
        trimmed += int(info.get("entries-added", count)) - int(info["length"])
    dlq = sum(int(client.xlen(key)) for key in client.scan_iter(match="c360-dlq:*"))
    counted = int(client.get(f"c360:count:accepted:{SOURCE}") or 0)
    aof = client.config_get("appendonly")["appendonly"]
    fsync = client.config_get("appendfsync")["appendfsync"]
    client.close()
    return {
        "ok": on_bus == acked_events > 0 and trimmed == 0,
        "acked_events": acked_events,
        "events_on_bus": on_bus,
        "stream_entries": entries,
        "entries_trimmed": trimmed,
        "dlq_entries": dlq,
        "gateway_counter_accepted": counted,
        "appendonly": aof,
        "appendfsync": fsync,
    }


def _postgres_check(servers: Servers, runs: Runs) -> dict[str, Any]:
    gateway_runs = runs["gateway", "batch"] + runs["gateway", "single"]
    outbound = sorted({address for run in gateway_runs for address in run.outbound})
    opened = servers.gateway_exit_report.get("postgres_pool_opened")
    return {
        "ok": opened in (False, None) and not outbound,
        "pool_opened": opened,
        "outbound_tcp": outbound,
    }


def _acked(runs: list[PhaseRun]) -> int:
    return sum(out["acked_events"] for run in runs for out in run.outputs)


def _errors(runs: Runs) -> int:
    return sum(
        out["error_count"] + out["window_non_200"]
        for phase in runs.values()
        for run in phase
        for out in run.outputs
    )


# --- report -----------------------------------------------------------------------------------


def build_report(
    runs: Runs,
    plan: Plan,
    bus: dict[str, Any],
    postgres: dict[str, Any],
    machine: dict[str, Any],
) -> dict[str, Any]:
    """The JSON object: one block per phase, ratios, checks, machine and plan."""
    report: dict[str, Any] = {f"{t}_{m}": summarise(runs[t, m], m, plan) for t, m in PHASES}
    gateway_batch = report["gateway_batch"]
    report["ratio_batch"] = _ratio(gateway_batch, report["baseline_batch"])
    report["ratio_single"] = _ratio(report["gateway_single"], report["baseline_single"])
    report["events_per_second"] = gateway_batch["events_per_second"]
    report["p99_ms"] = gateway_batch["p99_ms"]
    report["bus_check"] = bus
    report["postgres_check"] = postgres
    report["machine"] = machine
    report["plan"] = {
        "rounds": plan.rounds,
        "warmup_s": plan.warmup_s,
        "duration_s": plan.duration_s,
        "batch_size": BATCH_SIZE,
        "gzip": plan.use_gzip,
        "client_ips": plan.client_ips,
        "loadgen_processes": plan.processes,
        "uvicorn": UVICORN_OPTIONS,
    }
    return report


def summarise(runs: list[PhaseRun], mode: str, plan: Plan) -> dict[str, Any]:
    """Rates over all rounds' windows, latency percentiles over all their requests."""
    outputs = [out for run in runs for out in run.outputs]
    seconds = sum(run.duration_s for run in runs)
    latencies = sorted(us for out in outputs for us in out["latencies_us"])
    requests = sum(out["window_requests"] for out in outputs)
    return {
        "events_per_second": round(sum(out["window_events"] for out in outputs) / seconds, 1),
        "requests_per_second": round(requests / seconds, 1),
        "p50_ms": _percentile_ms(latencies, 50),
        "p90_ms": _percentile_ms(latencies, 90),
        "p99_ms": _percentile_ms(latencies, 99),
        "max_ms": round(latencies[-1] / 1000, 2) if latencies else None,
        "connections": plan.batch_connections if mode == "batch" else plan.single_connections,
        "requests": requests,
        "non_200": sum(out["window_non_200"] for out in outputs),
        "errors": sum(out["error_count"] for out in outputs),
        "error_samples": [e for out in outputs for e in out["errors"]][:3],
        "status_counts": _merge_counts(out["status_counts"] for out in outputs),
        "loadgen_late_s": round(max((out["late_s"] for out in outputs), default=0.0), 2),
        "events_per_second_by_round": [round(_rate(run)) for run in runs],
        "server_cpu_percent": round(100 * sum(r.server_cpu_s for r in runs) / seconds, 1),
        "valkey_cpu_percent": round(100 * sum(r.valkey_cpu_s for r in runs) / seconds, 1),
        "loadgen_cpu_percent": round(100 * sum(out["cpu_s"] for out in outputs) / seconds, 1),
        # a shared machine: what processes outside this bench took during the windows
        "other_cpu_percent": round(
            100
            * (
                sum(r.machine_busy_s - r.server_cpu_s - r.valkey_cpu_s for r in runs)
                - sum(out["cpu_s"] for out in outputs)
            )
            / seconds,
            1,
        ),
        "body_bytes": outputs[0]["body_bytes"] if outputs else None,
        "reused_message_ids": any(out["reused_message_ids"] for out in outputs),
    }


def _merge_counts(counts: Iterator[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for status, number in count.items():
            merged[status] = merged.get(status, 0) + number
    return merged


def _rate(run: PhaseRun) -> float:
    return sum(out["window_events"] for out in run.outputs) / run.duration_s


def _percentile_ms(sorted_us: list[int], percent: float) -> float | None:
    """Nearest-rank percentile in milliseconds."""
    if not sorted_us:
        return None
    rank = max(1, -(-len(sorted_us) * percent // 100))
    return round(sorted_us[int(rank) - 1] / 1000, 2)


def _ratio(gateway: dict[str, Any], baseline: dict[str, Any]) -> float | None:
    if not baseline["events_per_second"]:
        return None
    return round(gateway["events_per_second"] / baseline["events_per_second"], 3)


def machine_facts(valkey_url: str) -> dict[str, Any]:
    """Cores, Python, CPU model and the server stack's versions."""
    import importlib.metadata as metadata
    import importlib.util

    import redis

    client = redis.Redis.from_url(valkey_url)
    server = client.info("server")
    valkey_version = server.get("valkey_version") or server.get("redis_version")
    client.close()
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "uvicorn": metadata.version("uvicorn"),
        # uvicorn's "auto" picks uvloop and httptools only when they are installed
        "event_loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http_parser": "httptools" if importlib.util.find_spec("httptools") else "h11",
        "litestar": metadata.version("litestar"),
        "redis_py": metadata.version("redis"),
        "hiredis": importlib.util.find_spec("hiredis") is not None,
        "valkey": valkey_version,
        "c360_commit": _git("rev-parse", "--short", "HEAD"),
        # the gateway runs from the working tree (editable install), edits included
        "c360_tree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=BENCH_DIR, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode().strip() if done.returncode == 0 else None


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def render(report: dict[str, Any]) -> str:
    """The report as a table for a terminal."""
    machine, plan = report["machine"], report["plan"]
    lines = [
        "",
        f"c360 gateway ingest: {machine['cores']} cores ({machine['cpu_model']}), Python "
        f"{machine['python']}, uvicorn {machine['uvicorn']} ({machine['event_loop']}, "
        f"{machine['http_parser']}), Valkey {machine['valkey']}; c360 {machine['c360_commit']}"
        f"{' with uncommitted changes' if machine['c360_tree_dirty'] else ''}",
        f"{plan['rounds']} round(s) x {plan['duration_s']:g} s per phase after "
        f"{plan['warmup_s']:g} s warm-up; {plan['loadgen_processes']} load-generator "
        f"process(es); gzip {'on' if plan['gzip'] else 'off'}; {plan['client_ips']} client IPs",
        "",
        f"{'':27}{'events/s':>11}{'requests/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'conns':>7}{'server':>8}{'valkey':>8}{'loadgen':>9}{'other':>7}",
    ]
    for mode, label in (("batch", "100-event batches"), ("single", "one event per request")):
        for target in ("gateway", "baseline"):
            lines.append(_row(f"{label[:17]:17} {target:9}", report[f"{target}_{mode}"]))
        lines.append(f"{'':18}{'ratio':9}{report[f'ratio_{mode}']:>10.3f}x  (gateway / bare ASGI)")
    lines += [
        "",
        "CPU columns: percent of one core during the measured windows; 'other' is every",
        "process outside the bench (a busy 'other' makes the absolute figures low).",
        "",
    ]
    lines += _check_lines(report)
    lines += _target_lines(report)
    return "\n".join(lines)


def _row(label: str, phase: dict[str, Any]) -> str:
    return (
        f"{label:27}{phase['events_per_second']:>11,.0f}{phase['requests_per_second']:>12,.0f}"
        f"{_ms(phase['p50_ms']):>9}{_ms(phase['p99_ms']):>9}{phase['connections']:>7}"
        f"{phase['server_cpu_percent']:>7.0f}%{phase['valkey_cpu_percent']:>7.0f}%"
        f"{phase['loadgen_cpu_percent']:>8.0f}%{phase['other_cpu_percent']:>6.0f}%"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _check_lines(report: dict[str, Any]) -> list[str]:
    bus, pg = report["bus_check"], report["postgres_check"]
    verdict = "OK" if bus["ok"] else "MISMATCH"
    lines = [
        f"bus check: {bus['acked_events']:,} events acknowledged with 200; "
        f"{bus['events_on_bus']:,} on c360-raw-events:* in {bus['stream_entries']:,} entries "
        f"({bus['entries_trimmed']} trimmed) -> {verdict}",
        f"           dead-letter entries {bus['dlq_entries']}, gateway counter "
        f"{bus['gateway_counter_accepted']:,}, appendonly={bus['appendonly']} "
        f"appendfsync={bus['appendfsync']}",
        f"postgres:  pool opened={pg['pool_opened']}, outbound TCP from the gateway "
        f"{pg['outbound_tcp'] or 'none'} -> {'not touched' if pg['ok'] else 'TOUCHED'}",
    ]
    for key in ("gateway_batch", "gateway_single", "baseline_batch", "baseline_single"):
        phase = report[key]
        if phase["errors"] or phase["non_200"]:
            lines.append(
                f"{key}: {phase['non_200']} non-200 in the window, statuses "
                f"{phase['status_counts']}, {phase['errors']} errors "
                f"{phase['error_samples']}"
            )
        if phase["loadgen_late_s"] > 0:
            lines.append(
                f"{key}: a load generator started {phase['loadgen_late_s']} s into "
                "its window (no warm-up); raise PREPARE_S"
            )
    return lines


def _target_lines(report: dict[str, Any]) -> list[str]:
    batch, single = report["gateway_batch"], report["gateway_single"]
    batch_met = batch["events_per_second"] >= TARGET_BATCH_EVENTS_S and (
        batch["p99_ms"] is not None and batch["p99_ms"] < TARGET_BATCH_P99_MS
    )
    single_met = single["requests_per_second"] >= TARGET_SINGLE_REQUESTS_S
    return [
        "",
        f"target, batched: >= {TARGET_BATCH_EVENTS_S:,} events/s with p99 < "
        f"{TARGET_BATCH_P99_MS} ms -> {'met' if batch_met else 'not met'}",
        f"target, single:  >= {TARGET_SINGLE_REQUESTS_S:,} requests/s -> "
        f"{'met' if single_met else 'not met'}",
    ]


# --- command line -----------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n  python bench/ingest.py --quick --json\n"
        "  python bench/ingest.py --batch-connections 32 --processes 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="one short round (under a minute)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--gzip", action="store_true", help="send gzip-compressed bodies")
    parser.add_argument(
        "--client-ips",
        choices=("public", "private"),
        default="public",
        help="addresses in context.ip (default public, as real traffic)",
    )
    parser.add_argument("--rounds", type=int, help="rounds of the four phases (default 3; quick 1)")
    parser.add_argument("--duration", type=float, help="measured seconds per phase (10; quick 5)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per phase (2; quick 1)")
    parser.add_argument(
        "--batch-connections",
        type=int,
        default=16,
        help="concurrent connections sending batches (default 16)",
    )
    parser.add_argument(
        "--single-connections",
        type=int,
        default=32,
        help="concurrent connections sending single events (default 32)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="load-generator processes sharing the connections (default 1)",
    )
    parser.add_argument(
        "--server-processes",
        type=int,
        default=_default_processes(),
        help="processes per server, gateway and baseline alike, as "
        "C360_GATEWAY_PROCESSES sets for `c360 gateway` (default: as many as it runs here)",
    )
    parser.add_argument("--serve", choices=("gateway", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--valkey-url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _default_processes() -> int:
    """As many server processes as `c360 gateway` runs by default on this machine."""
    from c360.settings import load_settings

    return load_settings({}, environ={}).gateway_processes


def _plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    plan = Plan(
        rounds=args.rounds or (1 if quick else 3),
        warmup_s=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        duration_s=args.duration or (5.0 if quick else 10.0),
        batch_connections=args.batch_connections,
        single_connections=args.single_connections,
        processes=args.processes,
        use_gzip=args.gzip,
        client_ips=args.client_ips,
    )
    if not (1 <= plan.rounds <= 20 and 0 < plan.duration_s <= 120 and plan.processes >= 1):
        raise SystemExit("rounds must be 1-20, duration 0-120 s, processes at least 1")
    if min(plan.batch_connections, plan.single_connections) < plan.processes:
        raise SystemExit("give each load-generator process at least one connection")
    return plan


if __name__ == "__main__":
    sys.exit(main())
