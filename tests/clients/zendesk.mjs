// node-zendesk against the Zendesk simulator: the calls a real integration makes.
// Usage: node zendesk.mjs BASE EMAIL TOKEN. Exits non-zero with a message on any failure.
import zendesk from 'node-zendesk';

const [base, username, token] = process.argv.slice(2);
const fail = (message) => { console.error(`node-zendesk: ${message}`); process.exit(1); };
const check = (condition, message) => { if (!condition) fail(message); };

async function main() {
  const client = zendesk.createClient({ username, token, endpointUri: `${base}/api/v2` });
  const stamp = Date.now();
  const { result: user } = await client.users.createOrUpdate({
    user: { name: 'Ana Client', email: `ana.${stamp}@example.com`, external_id: `tg-${stamp}` },
  });
  check(user && user.id, `createOrUpdate gave no user: ${JSON.stringify(user)}`);
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const { result: ticket } = await client.tickets.create({
      ticket: { subject: `Order ${i}`, comment: { body: `Message ${i}` }, requester_id: user.id, external_id: `conv-${stamp}-${i}` },
    });
    check(ticket && ticket.id, `tickets.create gave no ticket: ${JSON.stringify(ticket)}`);
    ids.push(ticket.id);
  }
  const { result: updated } = await client.tickets.update(ids[0], {
    ticket: { comment: { body: 'An agent reply', public: true }, status: 'pending' },
  });
  check(updated.status === 'pending', `update did not set pending: ${JSON.stringify(updated)}`);
  const comments = await client.tickets.getComments(ids[0]);
  check(Array.isArray(comments) && comments.length === 2, `getComments: ${JSON.stringify(comments)}`);
  // list follows links.next / next_page while there are more pages
  const listed = await client.tickets.list();
  for (const id of ids) check(listed.some((t) => t.id === id), `tickets.list misses ${id}`);
  // Cursor pagination one ticket a page: getAll follows links.next while meta.has_more.
  const paged = await client.tickets.getAll(['tickets', { 'page[size]': 1 }]);
  check(paged.length === listed.length && ids.every((id) => paged.some((t) => t.id === id)),
    `cursor-paged list: ${paged.length} tickets, ${listed.length} unpaged`);
  const exported = await client.tickets.incremental(0);
  for (const id of ids) check(exported.some((t) => t.id === id), `tickets.incremental misses ${id}: ${JSON.stringify(exported).slice(0, 500)}`);
  const found = await client.users.search({ external_id: `tg-${stamp}` });
  check(found.length === 1 && found[0].id === user.id, `users.search: ${JSON.stringify(found)}`);
  let notFound;
  try { await client.tickets.show(99999999); } catch (error) { notFound = error; }
  check(notFound, 'showing an unknown ticket did not fail');
  console.log(`node-zendesk: ok (${ids.length} tickets, ${exported.length} exported)`);
}

main().catch((error) => fail(error && (error.stack || error.message || String(error))));
