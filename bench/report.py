#!/usr/bin/env python3
"""Renders bench/REPORT.md (to stdout) from the results folder scripts/bench.sh fills.

    report.py RESULTS                      the report
    report.py --profile-targets RESULTS    "SCENARIO PROCESS..." lines: what to profile
    report.py --profile-targets --all RESULTS   the same for every scenario with a goal

Per scenario the folder holds result.json (wrk's done() in bench/wrk/common.lua,
or grpc-load's JSON, or redis-benchmark's CSV in result.json.csv), cpu_before and
cpu_after ("NAME TICKS" per process plus the machine's busy and total ticks),
client_cpu (the load tool's user and system seconds, from /usr/bin/time) and
mem_load ("NAME KB" halfway through); a profiled scenario also has profile/ with
`perf report` output per process. mem_idle and meta.json sit beside them.

Every figure is read against /health/live of the same run (health_live, run first,
and health_live_end, run last): a scenario's rate as a share of its rate, its CPU
per request as a multiple of its CPU per request. The goals are those ratios, and
every sentence in "Missed goals and why" is computed from the figures.
"""
import csv
import json
import os
import re
import sys
from collections import namedtuple

PROCESSES = ["gateway", "session-service", "deck-service", "redis-sessions", "redis-cache", "redis-ratelimit", "postgres"]
REDIS = ["redis-sessions", "redis-cache", "redis-ratelimit"]
# What the deck-read CPU goal counts: gateway + deck-service + Redis.
READ_PATH = ["gateway", "deck-service"] + REDIS
REFERENCE = ["health_live", "health_live_end"]
# The machine counts as busy with other work above this share (idle snapshot before the scenarios).
BUSY_WARNING_PCT = 10
# The reference counts as moved when its last run differs from its first by more than this.
DRIFT_WARNING_PCT = 10

# Goals of issue 12, as ratios to /health/live of the same run (release build, 32 connections).
DECK_RATE_PCT, DECK_P99_MS, DECK_CPU_TIMES = 25, 10, 5
RATE_GOALS_PCT = {"cards_list": 12, "refresh": 10, "review": 5}
STORM_KEEP_PCT = 50

# name, what is measured, req/s of the Python back end (issue 7), goal text; in the order of the run.
SCENARIOS = [
    ("health_live", "GET /health/live (gateway only), first", None, "the reference"),
    ("deck_get", "GET /api/v1/decks/{id} (cache hit)", 35,
     f"≥ {DECK_RATE_PCT} % of live, p99 ≤ {DECK_P99_MS} ms, read-path CPU ≤ {DECK_CPU_TIMES}× live's"),
    ("deck_list", "GET /api/v1/decks", None, "—"),
    ("cards_list", "GET /api/v1/cards?deck_id= (50 cards)", 19, f"≥ {RATE_GOALS_PCT['cards_list']} % of live"),
    ("study_queue", "GET /api/v1/study/queue", 19, "—"),
    ("review", "POST /api/v1/reviews", 6, f"≥ {RATE_GOALS_PCT['review']} % of live"),
    ("refresh", "POST /api/v1/auth/refresh (32 chained sessions)", 31, f"≥ {RATE_GOALS_PCT['refresh']} % of live"),
    ("login", "POST /api/v1/auth/login", 3, "bound by argon2id only"),
    ("login_storm", "GET /api/v1/decks/{id} while 64 clients log in", None, f"≥ {STORM_KEEP_PCT} % of the deck read's rate"),
    ("grpc_deck_get", "gRPC DeckService.GetDeck, direct (cache hit)", None, "—"),
    ("redis_get", "redis-benchmark GET 4 KB, 32 clients (ceiling)", None, "—"),
    ("health_live_end", "GET /health/live (gateway only), last", None, "the reference"),
]
LABEL = {name: label for name, label, *_ in SCENARIOS}

# One goal's verdict. scenario/scope say what to profile when it is missed: the busiest
# processes of `scope` in that scenario.
Goal = namedtuple("Goal", "text figure state why scenario scope")


def read_pairs(path):
    pairs = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    pairs[parts[0]] = int(parts[1])
    except FileNotFoundError:
        pass
    return pairs


def load_wrk(path):
    """A wrk result written by bench/wrk/common.lua, or None."""
    try:
        with open(path) as f:
            data = json.loads(f.read().strip() or "null")
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not data:
        return None
    if "duration_us" not in data:  # grpc-load
        return {"requests": data["requests"], "rps": data["rps"], "p50": data["p50_us"] / 1000,
                "p99": data["p99_us"] / 1000, "errors": data["errors"], "error_detail": ""}
    seconds = data["duration_us"] / 1e6
    detail = {k: data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts") if data[k]}
    return {"requests": data["requests"], "rps": data["requests"] / seconds, "p50": data["p50_us"] / 1000,
            "p99": data["p99_us"] / 1000, "errors": sum(detail.values()),
            "error_detail": ", ".join(f"{k.replace('_errors', '')} {v}" for k, v in detail.items()),
            "rotations": data.get("rotations"), "unchanged": data.get("unchanged")}


def load_result(folder):
    """requests, rps, p50 ms, p99 ms, errors (None when the run left nothing)."""
    path = os.path.join(folder, "result.json")
    if os.path.exists(path + ".csv"):  # redis-benchmark
        with open(path + ".csv") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return None
        row = rows[0]
        try:
            with open(os.path.join(folder, "requests")) as f:
                requests = int(f.read())
        except (FileNotFoundError, ValueError):
            requests = None
        return {"requests": requests, "rps": float(row["rps"]), "p50": float(row.get("p50_latency_ms", "nan")),
                "p99": float(row.get("p99_latency_ms", "nan")), "errors": 0, "error_detail": ""}
    return load_wrk(path)


def client_seconds(folder):
    try:
        with open(os.path.join(folder, "client_cpu")) as f:
            last = [line for line in f.read().splitlines() if line.strip()][-1].split()
        return float(last[0]) + float(last[1])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def fmt_int(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_ms(x):
    if x is None or x != x:
        return "—"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def fmt_us(x):
    if x is None:
        return "—"
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def fmt_pct(x):
    if x is None:
        return "—"
    return f"{x:.1f} %" if x < 10 else f"{x:.0f} %"


def fmt_times(x):
    if x is None:
        return "—"
    return f"{x:.2f}×" if x < 10 else f"{x:.1f}×" if x < 100 else f"{x:,.0f}×"


def load_all(root):
    with open(os.path.join(root, "meta.json")) as f:
        meta = json.load(f)
    tick_us = 1e6 / meta["clk_tck"]
    cores = meta["cpus"]
    results, cpu, mem = {}, {}, {}
    for name, *_ in SCENARIOS:
        folder = os.path.join(root, name)
        if not os.path.isdir(folder):
            continue
        result = load_result(folder)
        if result is None:
            results[name] = None
            continue
        before, after = read_pairs(os.path.join(folder, "cpu_before")), read_pairs(os.path.join(folder, "cpu_after"))
        wall_ticks = after.get("machine_total", 0) - before.get("machine_total", 0)
        wall_s = wall_ticks * tick_us / 1e6 / cores if wall_ticks else None
        requests = result["requests"]
        if requests is None and wall_s:  # redis-benchmark reports a rate, not a count
            requests = result["rps"] * wall_s
        per = {}
        for proc in PROCESSES:
            delta = after.get(proc, 0) - before.get(proc, 0)
            per[proc] = delta * tick_us / requests if requests else None
        client = client_seconds(folder)
        per["client"] = client * 1e6 / requests if client is not None and requests else None
        busy = after.get("machine_busy", 0) - before.get("machine_busy", 0)
        per["machine"] = busy * tick_us / requests if requests else None
        per["busy_pct"] = 100.0 * busy / wall_ticks if wall_ticks else None
        known = sum(v for k, v in per.items() if k in PROCESSES + ["client"] and v is not None)
        per["other"] = max(0.0, per["machine"] - known) if per["machine"] is not None else None
        per["stack"] = sum(per[p] for p in PROCESSES if per[p] is not None)
        per["read_path"] = sum(per[p] for p in READ_PATH if per[p] is not None)
        results[name], cpu[name] = result, per
        mem[name] = read_pairs(os.path.join(folder, "mem_load"))
    return meta, results, cpu, mem, read_pairs(os.path.join(root, "mem_idle"))


def reference(results, cpu):
    """/health/live of this run: the mean of its first and last runs (either alone if one failed).

    rps: its rate; cpu: the stack's CPU µs per request (in practice the gateway's);
    total: stack + load tool, the CPU the box spends per request; drift_pct: last vs first.
    """
    runs = [n for n in REFERENCE if results.get(n) and cpu.get(n) and cpu[n]["stack"]]
    if not runs:
        return None

    def mean(values):
        return sum(values) / len(values)

    ref = {"runs": runs, "rps": mean([results[n]["rps"] for n in runs]),
           "cpu": mean([cpu[n]["stack"] for n in runs]),
           "total": mean([cpu[n]["stack"] + (cpu[n]["client"] or 0) for n in runs]),
           "drift_pct": None}
    if len(runs) == 2:
        first, last = (results[n]["rps"] for n in runs)
        ref["drift_pct"] = 100.0 * (last - first) / first
    return ref


def ratios(name, results, cpu, ref):
    """rate as % of live, stack and read-path CPU per request as multiples of live's."""
    r, per = results.get(name), cpu.get(name)
    if not (r and per and ref):
        return None
    return {"rate_pct": 100.0 * r["rps"] / ref["rps"], "stack_x": per["stack"] / ref["cpu"],
            "read_x": per["read_path"] / ref["cpu"],
            "total_x": (per["stack"] + (per["client"] or 0)) / ref["total"]}


def busiest(per, scope):
    """The processes of scope by CPU per request in one scenario, the busiest first."""
    return sorted((p for p in scope if per[p]), key=lambda p: per[p], reverse=True)


def evaluate(meta, results, cpu, ref, root):
    """The goals of issue 12 (and the two checks carried from issue 7), each with its why when missed."""
    goals = []
    cores, connections = meta["cpus"], meta["connections"]

    def check(text, figure, ok, why, scenario, scope=PROCESSES):
        goals.append(Goal(text, figure, "met" if ok else "missed", why if not ok else None, scenario, scope))

    def shares(name, scope):
        per = cpu[name]
        return ", ".join(f"{p} {fmt_us(per[p])} µs ({fmt_times(per[p] / ref['cpu'])})" for p in busiest(per, scope)[:3])

    def rate_story(name, goal_pct):
        """Why a rate fell short, from the CPU figures: on saturated cores shared by the stack and
        the load tool, rate / live's rate ≈ live's CPU per request / this scenario's (both counting
        the stack and the load tool), so a rate of goal_pct % needs ≤ 100 / goal_pct × live's CPU."""
        per, q = cpu[name], ratios(name, results, cpu, ref)
        allowed = 100.0 / goal_pct
        text = (f"Per request the stack and the load tool used {fmt_times(q['total_x'])} the CPU of a /health/live "
                f"request ({fmt_us(per['stack'] + (per['client'] or 0))} vs {fmt_us(ref['total'])} µs); "
                f"{goal_pct} % of live's rate on the same cores allows at most {fmt_times(allowed)}. ")
        if q["total_x"] > allowed:
            text += f"The CPU explains the gap. Busiest: {shares(name, PROCESSES)}. "
        if per["busy_pct"] is not None and per["busy_pct"] < 85:
            text += (f"The cores were only {per['busy_pct']:.0f} % busy, so requests also waited rather than computed: "
                     f"with {connections} connections the mean latency was {connections / results[name]['rps'] * 1000:.1f} ms; "
                     "look at locks, fsync and pool sizes. ")
        elif per["other"] and per["machine"] and per["other"] > 0.1 * per["machine"]:
            text += (f"Other processes took {per['other'] / per['machine'] * 100:.0f} % of the machine's busy time "
                     "during the run, which lowers the rate beyond what the ratio to live cancels. ")
        return text

    deck = results.get("deck_get")
    if deck:
        per, q = cpu["deck_get"], ratios("deck_get", results, cpu, ref)
        if q:
            check(f"cached deck read ≥ {DECK_RATE_PCT} % of /health/live", f"{fmt_pct(q['rate_pct'])} "
                  f"({fmt_int(deck['rps'])} vs {fmt_int(ref['rps'])} req/s)", q["rate_pct"] >= DECK_RATE_PCT,
                  rate_story("deck_get", DECK_RATE_PCT), "deck_get", READ_PATH)
        check(f"cached deck read p99 ≤ {DECK_P99_MS} ms", f"{fmt_ms(deck['p99'])} ms", deck["p99"] <= DECK_P99_MS,
              f"With {connections} connections each waiting for its answer, the mean latency is connections / rate = "
              f"{connections / deck['rps'] * 1000:.1f} ms; the p99 adds scheduling delay on cores that the load tool and "
              f"other processes share ({per['busy_pct']:.0f} % busy). A higher rate (less CPU per request) shortens it.",
              "deck_get", READ_PATH)
        if q:
            live_gateway = sum(cpu[n]["gateway"] for n in ref["runs"]) / len(ref["runs"])
            parts = [f"gateway {fmt_us(per['gateway'])} µs, deck-service {fmt_us(per['deck-service'])} µs, Redis "
                     f"{fmt_us(sum(per[p] for p in REDIS))} µs (rate-limit {fmt_us(per['redis-ratelimit'])}, cache "
                     f"{fmt_us(per['redis-cache'])}), against {fmt_us(ref['cpu'])} µs for /health/live.",
                     f"The gateway alone spends {fmt_us(per['gateway'] - live_gateway)} µs more than on /health/live "
                     "(HTTP only: no token, no rate limit, no gRPC): that is the token check, the rate limiter's Redis "
                     "call, the gRPC call and the JSON conversion."]
            direct = cpu.get("grpc_deck_get")
            if direct and direct["deck-service"] is not None:
                parts.append(f"deck-service needs {fmt_us(direct['deck-service'])} µs per GetDeck called directly over "
                             f"gRPC and {fmt_us(per['deck-service'])} µs behind the gateway.")
            check(f"read-path CPU per cached deck read ≤ {DECK_CPU_TIMES}× /health/live's (gateway + deck-service + Redis)",
                  f"{fmt_times(q['read_x'])} ({fmt_us(per['read_path'])} vs {fmt_us(ref['cpu'])} µs)",
                  q["read_x"] <= DECK_CPU_TIMES, " ".join(parts), "deck_get", READ_PATH)
    for name, goal_pct in RATE_GOALS_PCT.items():
        r = results.get(name)
        if not (r and ref):
            continue
        q = ratios(name, results, cpu, ref)
        why = rate_story(name, goal_pct)
        if name == "refresh":
            why += "Each rotation signs two Ed25519 JWTs and runs one Lua script in the sessions Redis."
        if name == "review":
            why += ("Each review is one PostgreSQL transaction (SRS row, review log, deck progress) with a synchronous "
                    "commit, then a cache invalidation.")
        check(f"{LABEL[name].split(' (')[0]} ≥ {goal_pct} % of /health/live",
              f"{fmt_pct(q['rate_pct'])} ({fmt_int(r['rps'])} vs {fmt_int(ref['rps'])} req/s)",
              q["rate_pct"] >= goal_pct, why, name)
    ref_run = results.get("refresh")
    if ref_run and ref_run.get("rotations") is not None:
        answered = ref_run["rotations"] + ref_run["unchanged"]
        check("every refresh rotated its chain (new token in each 200 answer)",
              f"{fmt_int(ref_run['rotations'])} of {fmt_int(answered)}", ref_run["unchanged"] == 0,
              "A 200 answer that repeats the token sent means the grace window answered a replay: the chain "
              "resent an old token after a failed call.", None)
    if ref_run and ref_run["errors"]:
        check("no refresh chain broke", f"{fmt_int(ref_run['errors'])} errors ({ref_run['error_detail']})", False,
              "A chain that gets a non-200 answer resends its token, which is a replay.", None)
    login = results.get("login")
    if login and cpu["login"]["session-service"]:
        per = cpu["login"]
        per_login = per["session-service"]
        share = per_login / per["stack"] * 100
        bound = cores * 1e6 / per_login
        check("login bound by argon2id only (CPU saturated, session-service ≥ 80 % of the stack's CPU)",
              f"{fmt_int(login['rps'])} logins/s; session-service {per_login / 1000:.1f} ms CPU per login = "
              f"{share:.0f} % of the stack's; machine {per['busy_pct']:.0f} % busy",
              share >= 80 and per["busy_pct"] >= 90,
              f"session-service spent {per_login / 1000:.1f} ms of CPU per login (argon2id), so {cores} cores allow "
              f"≈ {fmt_int(bound)} logins/s if hashing had them to itself; the run reached "
              f"{login['rps'] / bound * 100:.0f} % of that. The rest of the stack took {fmt_us(per['stack'] - per_login)} µs "
              f"per login, the load tool {fmt_us(per['client'])} µs and other processes {fmt_us(per['other'])} µs. "
              "When the machine is not saturated, logins wait for a hashing permit (PASSWORD_HASH_CONCURRENCY).",
              "login")
    storm = results.get("login_storm")
    if storm and deck:
        kept = storm["rps"] / deck["rps"] * 100
        storm_cpu = cpu["login_storm"]
        storm_share = (storm_cpu["session-service"] or 0) * storm["rps"] / (cores * 1e6) * 100
        check(f"cached deck reads keep ≥ {STORM_KEEP_PCT} % of their rate while 64 clients log in",
              f"{fmt_int(storm['rps'])} vs {fmt_int(deck['rps'])} req/s = {kept:.0f} %", kept >= STORM_KEEP_PCT,
              f"During the storm session-service took {storm_share:.0f} % of the machine's CPU (hashing), the "
              f"machine was {storm_cpu['busy_pct']:.0f} % busy. Password hashing competes for the same {cores} cores; "
              "the hashing threads' share (PASSWORD_HASH_CONCURRENCY, their priority) decides what the gateway and "
              "deck-service keep.", "login_storm", READ_PATH)
        storm_login = load_wrk(os.path.join(root, "login_storm", "login.json"))
        if storm_login:
            goals.append(Goal("(login rate during the storm)", f"{fmt_int(storm_login['rps'])} logins/s, "
                              f"p99 {fmt_ms(storm_login['p99'])} ms, errors {fmt_int(storm_login['errors'])}",
                              "info", None, None, None))
    return goals


def profile_targets(goals, cpu, every):
    """SCENARIO PROCESS... for each scenario with a missed goal (every: with any goal): its two
    busiest processes within the goal's scope, the second only when it uses ≥ ¼ of the first's CPU."""
    chosen = {}
    for g in goals:
        if g.scenario and (every or g.state == "missed") and g.scenario not in chosen:
            chosen[g.scenario] = g.scope
    lines = []
    for scenario, scope in chosen.items():
        per = cpu[scenario]
        procs = busiest(per, scope)[:2]
        if len(procs) == 2 and per[procs[1]] < per[procs[0]] / 4:
            procs = procs[:1]
        if procs:
            lines.append(" ".join([scenario] + procs))
    return lines


# A line of `perf report --stdio --children --sort dso,sym -g none`: children %, self %, object, [k] or [.], symbol.
PERF_LINE = re.compile(r"^\s+([\d.]+)%\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$")
# A line of `perf report --no-children --sort dso`: self %, object.
PERF_OBJECT_LINE = re.compile(r"^\s+([\d.]+)%\s+(\S+)\s*$")
# A function of this workspace's crates (also as the type of a trait impl: `<gateway::X as T>::f`).
OWN_CODE = re.compile(r"(?:^|[<&(\s])(?:gateway|deck_service|session_service|common)::")
# Frames that only say "a thread ran" or "a future was polled": runtime entry points, combinators and
# unwinding stubs. They head the children ranking of every process, so for processes without frames
# of our own (PostgreSQL, Redis) the "by children" table leaves them out.
PLUMBING = re.compile(r"^(_start|main|__libc_start|start_thread|clone3?|__clone|__rust_try|__rust_begin_short_backtrace|"
                      r"<?(std|core|alloc)::|<?tokio::runtime::|<?futures_util::|"
                      r"entry_SYSCALL|do_syscall_64|\[unknown\]|0x[0-9a-f]+$)")


def short_symbol(sym, width=96):
    sym = re.sub(r"::h[0-9a-f]{16}$", "", sym)
    return sym if len(sym) <= width else sym[: width - 1] + "…"


def read_profile(folder, proc):
    """rows = [(children, self, object, symbol)], objects = [(self, object)], samples text, error."""
    try:
        with open(os.path.join(folder, f"{proc}.txt")) as f:
            text = f.read()
    except FileNotFoundError:
        return [], [], None, "no perf report"
    samples = re.search(r"^# Samples: (\S+)\s+of event '([^']+)'", text, re.M)
    rows = [(float(m[1]), float(m[2]), m[3], m[5]) for m in map(PERF_LINE.match, text.splitlines()) if m]
    objects = []
    try:
        with open(os.path.join(folder, f"{proc}.objects.txt")) as f:
            objects = [(float(m[1]), m[2]) for m in map(PERF_OBJECT_LINE.match, f) if m]
    except FileNotFoundError:
        pass
    error = None
    if not rows:
        try:
            with open(os.path.join(folder, f"{proc}.report-errors.txt")) as f:
                lines = [line.strip() for line in f if line.strip()]
        except FileNotFoundError:
            lines = []
        error = (lines or ["perf recorded no samples"])[-1]
    return rows, objects, samples and f"{samples[1]} samples of {samples[2]}", error


def profile_section(root, meta, targets, w):
    if not targets and not meta.get("perf_note"):
        return
    w("## Profiles")
    w("")
    if meta.get("perf_note"):
        w(f"No profiles: {meta['perf_note']}.")
        w("")
        return
    w(f"For each profiled scenario the load ran again (same tool and connections, {meta['perf_seconds'] + 2} s) while "
      f"`perf record -F {meta['perf_freq']} --call-graph dwarf -p <pids>` sampled each named process for "
      f"{meta['perf_seconds']} s; the processes are the scenario's busiest by CPU per request above. *self* = samples "
      "in the function itself, *children* = samples in it or anything it called, both as % of the process's samples. "
      "The first table ranks functions by self (where the cycles are spent), the second ranks this workspace's own "
      "functions by children (which of our code paths the samples fall under; for PostgreSQL and Redis, their "
      "functions without the entry frames). Call chains are cut after "
      f"{meta.get('perf_stack', 8192) // 1024} KB of stack, so children shares of frames near a thread's root "
      "are too low. Full reports: `bench/out/run/results/<scenario>/profile/`.")
    w("")
    for line in targets:
        scenario, *procs = line.split()
        folder = os.path.join(root, scenario, "profile")
        for proc in procs:
            rows, objects, samples, error = read_profile(folder, proc)
            w(f"### {scenario}: {proc}" + (f" ({samples})" if samples else ""))
            w("")
            if error:
                w(f"No profile: {error}")
                w("")
                continue
            if objects:
                w("Samples by object: " + ", ".join(f"{obj} {pct:.0f} %" for pct, obj in objects[:5] if pct >= 1) + ".")
                w("")
            w("| self | children | object | function (by self) |")
            w("|---:|---:|---|---|")
            for children, own, obj, sym in sorted(rows, key=lambda r: r[1], reverse=True)[:12]:
                w(f"| {own:.1f} % | {children:.1f} % | {obj} | `{short_symbol(sym)}` |")
            w("")
            calls = [r for r in rows if OWN_CODE.search(r[3])] or [r for r in rows if not PLUMBING.match(r[3])]
            if calls:
                w("| children | self | object | function (by children) |")
                w("|---:|---:|---|---|")
                for children, own, obj, sym in sorted(calls, key=lambda r: r[0], reverse=True)[:10]:
                    w(f"| {children:.1f} % | {own:.1f} % | {obj} | `{short_symbol(sym)}` |")
                w("")


SERVICES = ["gateway", "session-service", "deck-service"]


def log_warnings(root):
    """(scenario, service, level, message, count) for the WARN and ERROR lines each measured run
    added to the services' logs (measure() notes each log's length before and after)."""
    logs = {}
    for service in SERVICES:
        try:
            with open(os.path.join(root, "..", "logs", f"{service}.log"), errors="replace") as f:
                logs[service] = f.read().splitlines()
        except FileNotFoundError:
            logs[service] = []
    found = []
    for name, *_ in SCENARIOS:
        before = read_pairs(os.path.join(root, name, "log_before"))
        after = read_pairs(os.path.join(root, name, "log_after"))
        for service in SERVICES:
            if service not in before or service not in after:
                continue
            counts = {}
            for line in logs[service][before[service]:after[service]]:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                level = entry.get("level", "")
                if level in ("WARN", "ERROR"):
                    key = (level, str(entry.get("message", "")))
                    counts[key] = counts.get(key, 0) + 1
            for (level, message), count in sorted(counts.items(), key=lambda kv: -kv[1]):
                found.append((name, service, level, message, count))
    return found


def main():
    args = sys.argv[1:]
    targets_only = "--profile-targets" in args
    every = "--all" in args
    root = [a for a in args if not a.startswith("--")][0]
    meta, results, cpu, mem, mem_idle = load_all(root)
    ref = reference(results, cpu)
    goals = evaluate(meta, results, cpu, ref, root)
    if targets_only:
        for line in profile_targets(goals, cpu, every):
            print(line)
        return
    try:
        with open(os.path.join(root, "profiled")) as f:
            profiled = [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        profiled = []
    cores = meta["cpus"]

    out = []
    w = out.append
    w("# Benchmark report")
    w("")
    w(f"Generated by `make bench` (scripts/bench.sh) on {meta['date']} at commit `{meta['commit']}`; "
      "docs/benchmarks.md explains how to run it and how to read it.")
    w("")
    w(f"- Machine: {cores} × {meta['cpu_model']}, Linux {meta['kernel']}. The load tools run on the same machine.")
    w(f"- Machine load: load average (1, 5, 15 min) **{meta['load_before']}** before the build, "
      f"**{meta['load_start']}** when the scenarios started, {meta['load_after']} at the end; with the stack idle just "
      f"before the scenarios the cores were **{meta['idle_busy_pct']} % busy** with other work. The column *other* below "
      "shows how much CPU other processes took during each scenario.")
    reused = ("; the run reused existing binaries (`BENCH_NO_BUILD`), built from the working tree of that time, "
              "so the commit above is the run's, not necessarily the build's") if meta.get("no_build") else ""
    w(f"- Build: `{meta['profile']}` (gateway binary built {meta.get('built_at', '?')}{reused}); services log at `RUST_LOG={meta['rust_log']}` (JSON). "
      f"Each scenario: {meta['duration_s']} s, {meta['connections']} connections; data set: 10 decks × 50 cards, "
      f"{meta['users']} users with study initialised on every deck; {meta['wrk']}, Redis {meta['redis']}.")
    w("- Rate limits raised to 1,000,000/min so the limiter never rejects; its Redis call still runs on every limited request.")
    if ref:
        drift = "" if ref["drift_pct"] is None else (
            f" (first {fmt_int(results['health_live']['rps'])}, last {fmt_int(results['health_live_end']['rps'])} req/s: "
            f"{ref['drift_pct']:+.0f} %)")
        w(f"- Reference: `GET /health/live` at **{fmt_int(ref['rps'])} req/s** and **{fmt_us(ref['cpu'])} µs** of stack CPU "
          f"per request, the mean of its runs first and last{drift}.")
    if meta["profile"] != "release":
        w("- **Debug build: these figures only show that the plumbing works; they say nothing about performance, "
          "and the goals below do not apply to them.**")
    if meta["idle_busy_pct"] >= BUSY_WARNING_PCT:
        w(f"- **Warning: the machine was not idle** ({meta['idle_busy_pct']} % busy with other work before the scenarios). "
          "The ratios cancel a steady load only in part (the scenarios and the reference compete with it differently); "
          "read them with care and rerun on a quiet machine before drawing conclusions.")
    if ref and ref["drift_pct"] is not None and abs(ref["drift_pct"]) > DRIFT_WARNING_PCT:
        w(f"- **Warning: /health/live moved {ref['drift_pct']:+.0f} % between the first and the last run**: the "
          "machine's conditions changed during the run, so ratios of scenarios near either end lean that way.")
    if not ref:
        w("- **No /health/live result: the ratios and the goals cannot be computed.**")
    w("")

    w("## Against /health/live")
    w("")
    w("Every scenario as a ratio to `GET /health/live` measured in the same run (the gateway alone answering a "
      "constant; see docs/benchmarks.md): *rate* = its req/s as % of live's; *stack CPU* and *read-path CPU* = its CPU "
      "per request (all seven processes; gateway + deck-service + Redis) as a multiple of live's stack CPU per request. "
      "These compare across machines; the absolute figures further down do not.")
    w("")
    w("| scenario | rate | stack CPU | read-path CPU | p99 ms | goal |")
    w("|---|---:|---:|---:|---:|---|")
    for name, label, _, goal in SCENARIOS:
        if name not in results:
            continue
        q = ratios(name, results, cpu, ref)
        if results[name] is None:
            w(f"| {label} | no result | | | | {goal} |")
            continue
        cells = [fmt_pct(q["rate_pct"]), fmt_times(q["stack_x"]), fmt_times(q["read_x"])] if q else ["—"] * 3
        w(f"| {label} | " + " | ".join(cells) + f" | {fmt_ms(results[name]['p99'])} | {goal} |")
    w("")

    w("## Goals")
    w("")
    w("| goal | figure | |")
    w("|---|---|---|")
    for g in goals:
        state = {"met": "met", "missed": "**missed**"}.get(g.state, g.state)
        w(f"| {g.text} | {g.figure} | {state} |")
    if not ref:
        w("| (rate and CPU goals) | no /health/live result | not checked |")
    w("")
    w("## Missed goals and why")
    w("")
    missed = [g for g in goals if g.state == "missed"]
    profiled_scenarios = {line.split()[0]: line.split()[1:] for line in profiled}
    for g in missed:
        seen = profiled_scenarios.get(g.scenario)
        see = f" Profile of {', '.join(seen)} in that scenario: *Profiles* below." if seen else ""
        w(f"- **{g.text}** ({g.figure}). {g.why}{see}")
    if not missed:
        w("None: every goal above was met in this run.")
    w("")

    w("## Throughput and latency (absolute)")
    w("")
    w("| scenario | req/s | p50 ms | p99 ms | errors | Python back end req/s | × Python |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for name, label, legacy, _ in SCENARIOS:
        if name not in results:
            continue
        r = results[name]
        if r is None:
            w(f"| {label} | no result | | | | {fmt_int(legacy)} | |")
            continue
        errors = fmt_int(r["errors"]) + (f" ({r['error_detail']})" if r["error_detail"] else "")
        times = f"{r['rps'] / legacy:,.0f}×" if legacy else "—"
        w(f"| {label} | {fmt_int(r['rps'])} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | {errors} | {fmt_int(legacy)} | {times} |")
    w("")
    w("The Python back end's p99 latencies were 150–370 ms. *errors* counts non-2xx answers, socket errors and timeouts "
      "(wrk), failed calls (gRPC).")
    w("")

    w("## CPU microseconds per request (absolute)")
    w("")
    w("CPU time (user + system) each process spent during the scenario, divided by the requests served. "
      "*read path* = gateway + deck-service + the three Redis servers; *stack* = all seven; "
      "*client* = the load tool (wrk, grpc-load or redis-benchmark); *other* = the rest of the machine's busy time "
      "(other users' processes); *busy* = share of the machine's cores busy during the scenario.")
    w("")
    w("| scenario | gateway | session-service | deck-service | redis sessions | redis cache | redis rate-limit | postgres | read path | stack | client | other | busy |")
    w("|---|" + "---:|" * 12)
    for name, label, *_ in SCENARIOS:
        per = cpu.get(name)
        if not per:
            continue
        cells = [fmt_us(per[p]) for p in PROCESSES]
        busy = "—" if per["busy_pct"] is None else f"{per['busy_pct']:.0f} %"
        w(f"| {label} | " + " | ".join(cells) + f" | {fmt_us(per['read_path'])} | {fmt_us(per['stack'])} | "
          f"{fmt_us(per['client'])} | {fmt_us(per['other'])} | {busy} |")
    w("")

    w("## Resident memory (MiB)")
    w("")
    w("VmRSS per process when idle (after the data load) and halfway through each scenario; PostgreSQL is the PSS sum "
      "of the postmaster and its backends (RSS would count the shared buffers once per backend).")
    w("")
    shown = [n for n, *_ in SCENARIOS if mem.get(n)]
    w("| process | idle | " + " | ".join(shown) + " |")
    w("|---|---:|" + "---:|" * len(shown))
    for proc in PROCESSES:
        cells = [f"{mem[n].get(proc, 0) / 1024:.1f}" for n in shown]
        w(f"| {proc} | {mem_idle.get(proc, 0) / 1024:.1f} | " + " | ".join(cells) + " |")
    w("")

    warnings = log_warnings(root)
    w("## Service warnings during the measured runs")
    w("")
    if warnings:
        w("WARN and ERROR lines the services logged while each scenario ran (a rate limiter failing open, a store "
          "timing out: the figures of that scenario include those requests).")
        w("")
        w("| scenario | process | level | message | lines |")
        w("|---|---|---|---|---:|")
        for name, service, level, message, count in warnings:
            w(f"| {name} | {service} | {level} | {message[:120]} | {fmt_int(count)} |")
    else:
        w("None: no service logged a warning or an error during the measured runs.")
    w("")

    profile_section(root, meta, profiled, w)

    try:
        with open(os.path.join(root, "top_idle.txt")) as f:
            top = f.read().strip()
    except FileNotFoundError:
        top = ""
    if top:
        w("## Machine before the scenarios")
        w("")
        w("The busiest processes over one second with the stack idle (`top`), i.e. what else was running:")
        w("")
        w("```")
        w(top)
        w("```")
        w("")
    deck, grpc, redis = results.get("deck_get"), results.get("grpc_deck_get"), results.get("redis_get")
    if deck and grpc and redis:
        w("## Ceiling references")
        w("")
        w(f"- The same cached read over gRPC straight at deck-service: {fmt_int(grpc['rps'])} req/s "
          f"({grpc['rps'] / deck['rps']:.1f}× the gateway figure); deck-service alone used {fmt_us(cpu['grpc_deck_get']['deck-service'])} µs per call.")
        w(f"- Redis GET of a 4 KB value at 32 clients: {fmt_int(redis['rps'])} req/s, p99 {fmt_ms(redis['p99'])} ms — "
          "what one loopback round trip per request allows on this machine; the gateway path makes several per request.")
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
