#!/usr/bin/env python3
"""Loads the fixed benchmark data set through the gateway's HTTP API (stdlib only).

A superuser (made with `session-service make-superuser`) creates DECKS decks of
CARDS cards each; USERS users register and initialise study on every deck. The
files wrk's scripts and grpc-load read are written to --out, one item a line:
  decks.txt     deck ids            cards.txt    card ids (all decks)
  access.txt    users' access tokens
  refresh.txt   users' refresh tokens (each a session of its own, for the refresh chains)
  login.txt     users' login bodies (JSON)
The load finishes by reading each benchmarked route once per deck/user, so the
measured runs start with warm caches.

With --refresh-sessions NAME it only logs every user of login.txt in once more and
writes the new sessions' refresh tokens to --out/NAME (a refresh run uses its
sessions up: resending a rotated token is a replay).
"""
import argparse
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

LEVELS = ["A1", "A2", "B1", "B2", "C1", "C2"]
DIFFICULTIES = ["easy", "medium", "hard"]
PASSWORD = "bench-Passw0rd"


def call(base, method, path, body=None, token=None, expect=(200, 201)):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, payload = err.code, err.read()
    if status not in expect:
        raise SystemExit(f"load: {method} {path} answered {status}: {payload[:500]!r}")
    return status, (json.loads(payload) if payload else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="gateway base URL, e.g. http://127.0.0.1:8000")
    ap.add_argument("--out", required=True, help="folder for the data files")
    ap.add_argument("--make-superuser",
                    help="command that makes the e-mail given as its last argument a superuser")
    ap.add_argument("--refresh-sessions", metavar="NAME",
                    help="only log the users of login.txt in again and write their refresh tokens to --out/NAME")
    ap.add_argument("--decks", type=int, default=10)
    ap.add_argument("--cards", type=int, default=50)
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--parallel", type=int, default=8)
    args = ap.parse_args()
    base = args.base.rstrip("/")
    os.makedirs(args.out, exist_ok=True)
    if args.refresh_sessions:
        with open(os.path.join(args.out, "login.txt")) as f:
            bodies = [json.loads(line) for line in f if line.strip()]
        with ThreadPoolExecutor(args.parallel) as pool:
            sessions = list(pool.map(lambda body: call(base, "POST", "/api/v1/auth/login", body)[1], bodies))
        with open(os.path.join(args.out, args.refresh_sessions), "w") as f:
            f.write("".join(s["refresh_token"] + "\n" for s in sessions))
        return
    if not args.make_superuser:
        ap.error("--make-superuser is needed to load the data set")

    admin = {"email": "bench-admin@example.com", "password": PASSWORD, "full_name": "Bench Admin"}
    call(base, "POST", "/api/v1/auth/register", admin, expect=(201, 409))
    subprocess.run(args.make_superuser.split() + [admin["email"]], check=True, stdout=subprocess.DEVNULL)
    # The superuser role is a claim of the access token, so log in again after the promotion.
    _, tokens = call(base, "POST", "/api/v1/auth/login", {"email": admin["email"], "password": PASSWORD})
    admin_token = tokens["access_token"]

    deck_ids, card_ids = [], []
    for d in range(args.decks):
        _, deck = call(base, "POST", "/api/v1/decks", {
            "name": f"Bench deck {d + 1:02d}",
            "description": "Λεξιλόγιο για το benchmark: everyday Greek words",
            "level": LEVELS[d % len(LEVELS)],
        }, token=admin_token)
        cards = [{
            "front_text": f"λέξη {d + 1}-{c + 1}",
            "back_text": f"word {d + 1}-{c + 1}",
            "example_sentence": f"Αυτή είναι η λέξη νούμερο {c + 1}.",
            "pronunciation": f"léxi {c + 1}",
            "difficulty": DIFFICULTIES[c % 3],
            "order_index": c,
        } for c in range(args.cards)]
        _, created = call(base, "POST", "/api/v1/cards/bulk", {"deck_id": deck["id"], "cards": cards},
                          token=admin_token)
        deck_ids.append(deck["id"])
        card_ids.extend(card["id"] for card in created["cards"])

    def make_user(i):
        email = f"bench-user-{i:03d}@example.com"
        body = {"email": email, "password": PASSWORD, "full_name": f"Bench User {i}"}
        status, tokens = call(base, "POST", "/api/v1/auth/register", body, expect=(201, 409))
        if status == 409:
            _, tokens = call(base, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
        for deck_id in deck_ids:
            call(base, "POST", f"/api/v1/study/initialize/{deck_id}", {}, token=tokens["access_token"])
        # A second session whose refresh token only the refresh scenario uses.
        _, second = call(base, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
        return email, tokens["access_token"], second["refresh_token"]

    with ThreadPoolExecutor(args.parallel) as pool:
        users = list(pool.map(make_user, range(args.users)))

    def write(name, lines):
        with open(os.path.join(args.out, name), "w") as f:
            f.write("".join(line + "\n" for line in lines))

    write("decks.txt", deck_ids)
    write("cards.txt", card_ids)
    write("access.txt", [u[1] for u in users])
    write("refresh.txt", [u[2] for u in users])
    write("login.txt", [json.dumps({"email": u[0], "password": PASSWORD}) for u in users])

    # Warm-up: every cache the read scenarios hit.
    for i, deck_id in enumerate(deck_ids):
        token = users[i % len(users)][1]
        call(base, "GET", f"/api/v1/decks/{deck_id}", token=token)
        call(base, "GET", f"/api/v1/cards?deck_id={deck_id}", token=token)
    for _, token, _ in users:
        call(base, "GET", "/api/v1/decks", token=token)
        call(base, "GET", "/api/v1/study/queue", token=token)
    print(f"load: {len(deck_ids)} decks, {len(card_ids)} cards, {len(users)} users with study initialised",
          file=sys.stderr)


if __name__ == "__main__":
    main()
