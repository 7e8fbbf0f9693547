#!/usr/bin/env bash
# The main job: builds the host, the simulators and both connector plugins, then runs each
# connector against its simulator through `switchboard plugin exec`: a Telegram customer's
# message is polled, becomes a Zendesk requester and ticket, an agent answers (public reply and
# internal note), the changes are polled back, and the public reply is sent to Telegram.
# Exits non-zero unless every effect is seen in the simulators.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p switchboard -p switchboard-simulators
sb=target/debug/switchboard
tg_wasm=$("$sb" plugin build plugins/telegram | tail -n 1)
zd_wasm=$("$sb" plugin build plugins/zendesk | tail -n 1)

work=$(mktemp -d)
export SWITCHBOARD_DATA_DIR="$work/data"
target/debug/switchboard-simulators --telegram-addr 127.0.0.1:0 --zendesk-addr 127.0.0.1:0 \
    --zendesk-relaxed >"$work/sims.out" 2>"$work/sims.err" &
sims=$!
trap 'kill $sims 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    [ "$(grep -c listening "$work/sims.out" || true)" -ge 2 ] && break
    sleep 0.1
done
tg=$(sed -n 's/^telegram simulator listening on //p' "$work/sims.out")
zd=$(sed -n 's/^zendesk simulator listening on //p' "$work/sims.out")
[ -n "$tg" ] && [ -n "$zd" ] || { cat "$work/sims.err"; echo "demo FAILED: simulators did not start"; exit 1; }

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
step() { printf '\n== %s\n' "$*"; }
tg_exec() { "$sb" plugin exec "$tg_wasm" "$@" -s bot_token=123456789:AAHsimulatedTelegramBotToken-0123456 -s "api_base=$tg"; }
zd_exec() {
    "$sb" plugin exec "$zd_wasm" "$@" -s subdomain=switchboard -s email=agent@switchboard.example \
        -s api_token=zendesk-sim-token -s "base_url=$zd"
}

step "A customer writes to the bot on Telegram"
curl -sf "$tg/_control/messages" -H 'content-type: application/json' \
    -d '{"chat_id":5001,"from":{"id":5001,"first_name":"Aiko","username":"aiko"},"text":"My order #1042 never arrived\nCan you check?"}'
echo

step "telegram: poll the updates stream"
tg_exec poll --stream updates | tee "$work/poll.json"
event=$(json 'json.dumps(d["events"][0])' <"$work/poll.json")
chat=$(echo "$event" | json 'd["thread_id"]')
message=$(echo "$event" | json 'd["message_id"]')
text=$(echo "$event" | json 'd["text"]')

step "zendesk: find or create the requester from the Telegram identity"
echo "$event" | json 'json.dumps({"identity": d["author"], "external_id": "telegram:" + d["author"]["external_id"]})' >"$work/requester.json"
zd_exec find-or-create-requester --input "@$work/requester.json" | tee "$work/requester.out"
requester=$(json 'd["id"]' <"$work/requester.out")

step "zendesk: create the ticket (idempotency key = the Telegram message id)"
python3 - "$requester" "$message" "$text" >"$work/ticket.json" <<'PY'
import json, sys
requester, message, text = sys.argv[1:4]
print(json.dumps({"idempotency_key": "demo-" + message, "external_id": "demo-conversation", "requester_id": requester,
    "subject": text.splitlines()[0], "body": text, "visibility": "Public", "attachments": [],
    "tags": ["switchboard", "telegram"], "priority": None, "status": None, "channel": "telegram"}))
PY
zd_exec create-ticket --input "@$work/ticket.json" | tee "$work/ticket.out"
ticket=$(json 'd["id"]' <"$work/ticket.out")

step "An agent answers in Zendesk: a public reply and an internal note"
curl -sf "$zd/_control/tickets/$ticket/agent_reply" -H 'content-type: application/json' \
    -d '{"body":"Sorry about that, Aiko! A replacement ships today.","public":true}'
echo
curl -sf "$zd/_control/tickets/$ticket/agent_reply" -H 'content-type: application/json' \
    -d '{"body":"Internal: courier lost the parcel, claim filed.","public":false}'
echo

step "zendesk: poll the ticket-events stream"
zd_exec poll-changes --stream ticket-events | tee "$work/changes.json"
reply=$(json '[c["kind"]["Comment"]["body"] for c in d["changes"] if "Comment" in c["kind"] and c["kind"]["Comment"]["visibility"] == "Public" and c["author"] and c["author"]["is_agent"] and not c["is_echo"]][-1]' <"$work/changes.json")
notes=$(json 'len([c for c in d["changes"] if "Comment" in c["kind"] and c["kind"]["Comment"]["visibility"] == "Private"])' <"$work/changes.json")

step "telegram: send the public reply back to the customer (never the note)"
python3 - "$chat" "$message" "$reply" >"$work/send.json" <<'PY'
import json, sys
chat, message, reply = sys.argv[1:4]
print(json.dumps({"idempotency_key": "demo-reply-1", "thread_id": chat, "reply_to": message, "kind": "DirectMessage",
    "recipient": None, "text": reply, "attachments": [], "last_inbound_at": None, "reply_handle": None}))
PY
tg_exec send --input "@$work/send.json"

step "Check what the simulators saw"
sent=$(curl -sf "$tg/_control/sent?chat_id=$chat")
tickets=$(curl -sf "$zd/_control/tickets")
python3 - "$sent" "$tickets" "$ticket" "$notes" <<'PY'
import json, sys
sent, tickets, ticket, notes = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sent = sent.get("messages", sent) if isinstance(sent, dict) else sent
tickets = tickets.get("tickets", tickets) if isinstance(tickets, dict) else tickets
texts = [m.get("text", "") for m in sent]
problems = []
if len(tickets) != 1: problems.append(f"expected 1 ticket, found {len(tickets)}")
if not any("replacement ships today" in t for t in texts): problems.append("the public reply did not reach Telegram")
if any("Internal:" in t for t in texts): problems.append("the internal note leaked to Telegram")
if len(texts) != 1: problems.append(f"expected 1 Telegram message, found {len(texts)}")
if notes < 1: problems.append("the internal note was not polled back")
if problems:
    print("demo FAILED: " + "; ".join(problems)); sys.exit(1)
print(f"demo ok: 1 message polled from Telegram, ticket {ticket} created in Zendesk, "
      f"1 public reply delivered to Telegram, {notes} internal note(s) kept private")
PY
