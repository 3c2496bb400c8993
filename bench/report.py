#!/usr/bin/env python3
"""Renders bench/REPORT.md (to stdout) from the results folder scripts/bench.sh fills.

Per scenario the folder holds result.json (wrk's done() in bench/wrk/common.lua,
or grpc-load's JSON, or redis-benchmark's CSV in result.json.csv), cpu_before and
cpu_after ("NAME TICKS" per process plus the machine's busy and total ticks),
client_cpu (the load tool's user and system seconds, from /usr/bin/time) and
mem_load ("NAME KB" halfway through). mem_idle and meta.json sit beside them.
Every sentence in "Missed goals and why" is computed from these figures.
"""
import csv
import json
import os
import sys

PROCESSES = ["gateway", "session-service", "deck-service", "redis-sessions", "redis-cache", "redis-ratelimit", "postgres"]
REDIS = ["redis-sessions", "redis-cache", "redis-ratelimit"]
# What the deck-read CPU goal counts: gateway + deck-service + Redis.
READ_PATH = ["gateway", "deck-service"] + REDIS

# name, what is measured, req/s of the Python back end (issue 7), goal text
SCENARIOS = [
    ("deck_get", "GET /api/v1/decks/{id} (cache hit)", 35, "≥ 5,000 req/s, p99 ≤ 10 ms, ≤ 150 µs CPU (gateway + deck-service + Redis)"),
    ("deck_list", "GET /api/v1/decks", None, "—"),
    ("cards_list", "GET /api/v1/cards?deck_id= (50 cards)", 19, "—"),
    ("study_queue", "GET /api/v1/study/queue", 19, "—"),
    ("review", "POST /api/v1/reviews", 6, "≥ 1,000 req/s"),
    ("refresh", "POST /api/v1/auth/refresh (32 chained sessions)", 31, "≥ 2,000 req/s"),
    ("login", "POST /api/v1/auth/login", 3, "bound by argon2id only"),
    ("health_live", "GET /health/live (gateway only)", None, "—"),
    ("login_storm", "GET /api/v1/decks/{id} while 64 clients log in", None, "≥ ½ of the idle deck read rate"),
    ("grpc_deck_get", "gRPC DeckService.GetDeck, direct (cache hit)", None, "—"),
    ("redis_get", "redis-benchmark GET 4 KB, 32 clients (ceiling)", None, "—"),
]


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


def load_result_file(path):
    """A wrk result written by bench/wrk/common.lua, or None."""
    folder, name = os.path.split(path)
    if name == "result.json":
        return load_result(folder)
    try:
        with open(path) as f:
            data = json.loads(f.read().strip() or "null")
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not data:
        return None
    seconds = data["duration_us"] / 1e6
    errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return {"requests": data["requests"], "rps": data["requests"] / seconds, "p50": data["p50_us"] / 1000,
            "p99": data["p99_us"] / 1000, "errors": errors, "error_detail": ""}


def load_result(folder):
    """requests, rps, p50 ms, p99 ms, errors (None when the run left nothing)."""
    path = os.path.join(folder, "result.json")
    if os.path.exists(path + ".csv"):
        with open(path + ".csv") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return None
        row = rows[0]
        rps = float(row["rps"])
        try:
            with open(os.path.join(folder, "requests")) as f:
                requests = int(f.read())
        except (FileNotFoundError, ValueError):
            requests = None
        return {"requests": requests, "rps": rps, "p50": float(row.get("p50_latency_ms", "nan")),
                "p99": float(row.get("p99_latency_ms", "nan")), "errors": 0, "error_detail": ""}
    try:
        with open(path) as f:
            data = json.loads(f.read().strip() or "null")
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not data:
        return None
    if "duration_us" in data:  # wrk
        seconds = data["duration_us"] / 1e6
        detail = {k: data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts") if data[k]}
        return {"requests": data["requests"], "rps": data["requests"] / seconds, "p50": data["p50_us"] / 1000,
                "p99": data["p99_us"] / 1000, "errors": sum(detail.values()),
                "error_detail": ", ".join(f"{k.replace('_errors', '')} {v}" for k, v in detail.items()),
                "rotations": data.get("rotations"), "unchanged": data.get("unchanged")}
    return {"requests": data["requests"], "rps": data["rps"], "p50": data["p50_us"] / 1000,
            "p99": data["p99_us"] / 1000, "errors": data["errors"], "error_detail": ""}


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


def main():
    root = sys.argv[1]
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
    mem_idle = read_pairs(os.path.join(root, "mem_idle"))

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
    if meta["profile"] != "release":
        w("- **Debug build: these figures only show that the plumbing works; they say nothing about performance.**")
    w("")

    w("## Throughput and latency")
    w("")
    w("| scenario | req/s | p50 ms | p99 ms | errors | Python back end req/s | × Python | goal |")
    w("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, label, legacy, goal in SCENARIOS:
        if name not in results:
            continue
        r = results[name]
        if r is None:
            w(f"| {label} | no result | | | | {fmt_int(legacy)} | | {goal} |")
            continue
        errors = fmt_int(r["errors"]) + (f" ({r['error_detail']})" if r["error_detail"] else "")
        times = f"{r['rps'] / legacy:,.0f}×" if legacy else "—"
        w(f"| {label} | {fmt_int(r['rps'])} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | {errors} | {fmt_int(legacy)} | {times} | {goal} |")
    w("")
    w("The Python back end's p99 latencies were 150–370 ms. *errors* counts non-2xx answers, socket errors and timeouts "
      "(wrk), failed calls (gRPC).")
    w("")

    w("## CPU microseconds per request")
    w("")
    w("CPU time (user + system) each process spent during the scenario, divided by the requests served. "
      "*read path* = gateway + deck-service + the three Redis servers (the deck-read goal: ≤ 150 µs); *stack* = all seven; "
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

    w("## Goals")
    w("")
    missed = []
    rows = []

    def check(goal, figure, ok, why=None):
        rows.append((goal, figure, "met" if ok else "**missed**"))
        if not ok and why:
            missed.append(f"- **{goal}** ({figure}). {why}")

    def machine_story(name, target_rps):
        per = cpu[name]
        r = results[name]
        biggest = max(PROCESSES, key=lambda p: per[p] or 0)
        budget = cores * 1e6 / target_rps
        ceiling = cores * 1e6 / (per["stack"] + (per["client"] or 0)) if per["stack"] else None
        text = (f"The machine was {per['busy_pct']:.0f} % busy; per request the stack used {fmt_us(per['stack'])} µs of CPU "
                f"and the load tool {fmt_us(per['client'])} µs, and other processes took {fmt_us(per['other'])} µs. ")
        if ceiling:
            text += (f"With only the stack and the load tool on {cores} cores that is at most ≈ {fmt_int(ceiling)} req/s; "
                     f"{fmt_int(target_rps)} req/s needs ≤ {fmt_us(budget)} µs per request for everything on the box. ")
        text += f"The largest share is {biggest} ({fmt_us(per[biggest])} µs). "
        if per["busy_pct"] is not None and per["busy_pct"] < 85:
            text += ("The cores were not saturated, so requests waited rather than computed: "
                     f"with {meta['connections']} connections and a mean latency of "
                     f"{meta['connections'] / r['rps'] * 1000:.1f} ms, look at locks, fsync and pool sizes. ")
        return text

    def deck_cpu_story():
        """Where the read path's CPU goes, by difference with the simpler scenarios."""
        per = cpu["deck_get"]
        parts = []
        live = cpu.get("health_live")
        if live and live["gateway"] is not None:
            parts.append(f"The gateway answers /health/live (HTTP only: no token, no rate limit, no gRPC) for "
                         f"{fmt_us(live['gateway'])} µs, so {fmt_us(per['gateway'] - live['gateway'])} µs of its "
                         f"{fmt_us(per['gateway'])} µs go to the token check, the rate limiter's Redis call, the gRPC call "
                         "and the JSON conversion.")
        direct = cpu.get("grpc_deck_get")
        if direct and direct["deck-service"] is not None:
            parts.append(f"deck-service needs {fmt_us(direct['deck-service'])} µs per GetDeck when called directly "
                         f"(its own token check plus a Redis GET) and {fmt_us(per['deck-service'])} µs behind the gateway.")
        parts.append("Both processes check the access token, and one Ed25519 signature verification costs tens of µs: "
                     "verifying each token once per process and reusing the result (a small map keyed by the token, "
                     "bounded by its expiry) takes that off every request after the first. The rate-limit call is a "
                     "second Redis round trip per request; a profile (`perf record -g -p <pid>`) of the largest "
                     "process shows the rest.")
        return " ".join(parts)

    deck = results.get("deck_get")
    if deck:
        check("cached deck read ≥ 5,000 req/s", f"{fmt_int(deck['rps'])} req/s", deck["rps"] >= 5000,
              machine_story("deck_get", 5000))
        check("cached deck read p99 ≤ 10 ms", f"{fmt_ms(deck['p99'])} ms", deck["p99"] <= 10,
              f"With {meta['connections']} connections each waiting for its answer, the mean latency is "
              f"connections / rate = {meta['connections'] / deck['rps'] * 1000:.1f} ms; the p99 adds scheduling delay on "
              f"cores that the load tool and other processes share ({cpu['deck_get']['busy_pct']:.0f} % busy). "
              "A higher request rate (less CPU per request) or fewer concurrent clients shortens it.")
        per = cpu["deck_get"]
        biggest = max(READ_PATH, key=lambda p: per[p] or 0)
        check("≤ 150 µs CPU per cached deck read (gateway + deck-service + Redis)", f"{fmt_us(per['read_path'])} µs",
              per["read_path"] <= 150,
              f"gateway {fmt_us(per['gateway'])} µs, deck-service {fmt_us(per['deck-service'])} µs, Redis "
              f"{fmt_us(sum(per[p] for p in REDIS))} µs (rate-limit {fmt_us(per['redis-ratelimit'])}, cache "
              f"{fmt_us(per['redis-cache'])}). The largest is {biggest}. " + deck_cpu_story())
    ref = results.get("refresh")
    if ref:
        check("refresh rotation ≥ 2,000 req/s", f"{fmt_int(ref['rps'])} req/s", ref["rps"] >= 2000,
              machine_story("refresh", 2000) + "Each rotation signs two Ed25519 JWTs and runs one Lua script in the sessions Redis.")
        if ref.get("rotations") is not None:
            answered = ref["rotations"] + ref["unchanged"]
            check("every refresh rotated its chain (new token in each 200 answer)",
                  f"{fmt_int(ref['rotations'])} of {fmt_int(answered)}", ref["unchanged"] == 0,
                  "A 200 answer that repeats the token sent means the grace window answered a replay: the chain "
                  "resent an old token after a failed call.")
        if ref["errors"]:
            missed.append(f"- **refresh chains broke**: {fmt_int(ref['errors'])} errors ({ref['error_detail']}); "
                          "a chain that gets a non-200 answer resends its token, which is a replay.")
    rev = results.get("review")
    if rev:
        check("review submission ≥ 1,000 req/s", f"{fmt_int(rev['rps'])} req/s", rev["rps"] >= 1000,
              machine_story("review", 1000) + "Each review is one PostgreSQL transaction (SRS row, review log, deck progress) "
              "with a synchronous commit, then a cache invalidation.")
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
              "When the machine is not saturated, logins wait for a hashing permit (PASSWORD_HASH_CONCURRENCY).")
    storm = results.get("login_storm")
    if storm and deck:
        ratio = storm["rps"] / deck["rps"]
        storm_login = load_result_file(os.path.join(root, "login_storm", "login.json"))
        storm_cpu = cpu["login_storm"]
        storm_share = (storm_cpu["session-service"] or 0) * storm["rps"] / (cores * 1e6) * 100
        check("cached deck reads keep ≥ ½ of their idle rate while 64 clients log in",
              f"{fmt_int(storm['rps'])} vs {fmt_int(deck['rps'])} req/s idle = {ratio * 100:.0f} %", ratio >= 0.5,
              f"During the storm session-service took {storm_share:.0f} % of the machine's CPU (hashing), the "
              f"machine was {cpu['login_storm']['busy_pct']:.0f} % busy. Password hashing competes for the same "
              f"{cores} cores: session-service's hash pool (PASSWORD_HASH_CONCURRENCY, default = the CPU count) can take "
              "every core, leaving the gateway and deck-service only what the scheduler gives back. A hash pool of "
              "cores − 1, or a lower scheduling priority for the hashing threads, closes it.")
        if storm_login:
            rows.append(("(login rate during the storm)", f"{fmt_int(storm_login['rps'])} logins/s, "
                         f"p99 {fmt_ms(storm_login['p99'])} ms, errors {fmt_int(storm_login['errors'])}", "info"))
    w("| goal | figure | |")
    w("|---|---|---|")
    for goal, figure, state in rows:
        w(f"| {goal} | {figure} | {state} |")
    w("")
    w("## Missed goals and why")
    w("")
    if missed:
        out.extend(missed)
    else:
        w("None: every goal above was met in this run.")
    w("")
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
    grpc, redis = results.get("grpc_deck_get"), results.get("redis_get")
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
