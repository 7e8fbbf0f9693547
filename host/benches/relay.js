// A bare relay in Node, the baseline issue 8 measured the hub against: Telegram-shaped
// webhooks in, one Zendesk ticket each (requester inline) out, nothing stored. Started by
// benches/sync.rs with SWITCHBOARD_BENCH_RELAY_TARGET="<zendesk url> <agent email> <token>";
// prints its port, then serves until killed.
"use strict";
const http = require("node:http");

const [base, email, token] = (process.env.SWITCHBOARD_BENCH_RELAY_TARGET || "").split(" ");
if (!token) {
  console.error("SWITCHBOARD_BENCH_RELAY_TARGET is not '<url> <email> <token>'");
  process.exit(2);
}
const tickets = new URL("/api/v2/tickets", base);
const auth = "Basic " + Buffer.from(`${email}/token:${token}`).toString("base64");
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function forward(update, done) {
  const message = update.message || {};
  const chat = (message.chat && message.chat.id) || 0;
  const name = (message.from && message.from.first_name) || "Customer";
  const text = message.text || "";
  const body = JSON.stringify({
    ticket: {
      subject: Array.from(text).slice(0, 60).join(""),
      comment: { body: text },
      requester: { name, email: `telegram-${chat}@relay.example` },
    },
  });
  const request = http.request(tickets, {
    method: "POST",
    agent,
    headers: {
      authorization: auth,
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
    },
  }, (answer) => {
    answer.resume();
    answer.on("end", () => done(answer.statusCode >= 200 && answer.statusCode < 300));
  });
  request.on("error", () => done(false));
  request.end(body);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    let update;
    try {
      update = JSON.parse(Buffer.concat(chunks));
    } catch {
      res.writeHead(400).end();
      return;
    }
    forward(update, (ok) => res.writeHead(ok ? 200 : 502).end());
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
