#!/usr/bin/env bash
# A user's journey through the front door of a running stack (`make run`, or
# `REPLICAS=2 make run` behind haproxy on :8000): register, login, refresh and its grace
# replay, logout, and the logged-out access token refused (TOKEN_REVOKED) on every replica.
set -euo pipefail
B=http://127.0.0.1:8000/api/v1
j() { python3 -c "import sys,json;print(json.load(sys.stdin)$1)"; }
email="journey-$RANDOM$RANDOM@example.com"
reg=$(curl -sf -X POST $B/auth/register -H 'Content-Type: application/json' -d "{\"email\":\"$email\",\"password\":\"correct horse 1\",\"full_name\":\"Journey\"}")
access=$(echo "$reg" | j "['access_token']"); refresh=$(echo "$reg" | j "['refresh_token']")
echo "register: ok"
for i in 1 2 3 4; do curl -sf $B/auth/me -H "Authorization: Bearer $access" | j "['email']" >/dev/null; done; echo "me x4: ok"
curl -sf "$B/decks?page_size=5" -H "Authorization: Bearer $access" | j "['total']" | sed 's/^/decks total: /'
login=$(curl -sf -X POST $B/auth/login -H 'Content-Type: application/json' -d "{\"email\":\"$email\",\"password\":\"correct horse 1\"}")
access2=$(echo "$login" | j "['access_token']")
rot=$(curl -sf -X POST $B/auth/refresh -H 'Content-Type: application/json' -d "{\"refresh_token\":\"$refresh\"}")
replay=$(curl -sf -X POST $B/auth/refresh -H 'Content-Type: application/json' -d "{\"refresh_token\":\"$refresh\"}")
[ "$rot" = "$replay" ] && echo "refresh + grace replay on another replica: identical pair"
new_access=$(echo "$rot" | j "['access_token']"); new_refresh=$(echo "$rot" | j "['refresh_token']")
curl -sf -X POST $B/auth/logout -H "Authorization: Bearer $new_access" -H 'Content-Type: application/json' -d "{\"refresh_token\":\"$new_refresh\"}" | j "['token_revoked']" | sed 's/^/logout token_revoked: /'
sleep 0.2
for i in 1 2 3 4; do code=$(curl -s -o "${TMPDIR:-/tmp}/journey.out" -w '%{http_code}' $B/auth/me -H "Authorization: Bearer $new_access"); echo "me after logout: $code $(head -c 120 "${TMPDIR:-/tmp}/journey.out")"; done
for i in 1 2; do code=$(curl -s -o /dev/null -w '%{http_code}' "$B/decks" -H "Authorization: Bearer $new_access"); echo "decks after logout: $code"; done
for i in 1 2; do code=$(curl -s -o /dev/null -w '%{http_code}' $B/auth/me -H "Authorization: Bearer $access2"); echo "other session still works: $code"; done
