// Meta's Business SDK for Node (facebook-nodejs-business-sdk) against the Meta Graph
// simulator: the calls a Messenger integration makes. Usage: node meta.mjs BASE PAGE_ID TOKEN.
// Exits non-zero with a message on any failure.
import bizSdk from 'facebook-nodejs-business-sdk';

const [base, pageId, token] = process.argv.slice(2);
const fail = (message) => { console.error(`facebook-nodejs-business-sdk: ${message}`); process.exit(1); };
const check = (condition, message) => { if (!condition) fail(message); };
const { FacebookAdsApi, Page } = bizSdk;

// The SDK has no base-URL setting: its objects build URLs from FacebookAdsApi.GRAPH.
Object.defineProperty(FacebookAdsApi, 'GRAPH', { get: () => base });

async function control(path, body) {
  const answer = await fetch(`${base}/_control${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!answer.ok) fail(`control ${path} answered ${answer.status}: ${await answer.text()}`);
  return answer.json();
}

async function main() {
  // Three customers write to the Page.
  const customers = [];
  for (const name of ['Ken', 'Aiko', 'Mina']) {
    customers.push(await control('/messages', { name, text: `Hello from ${name}` }));
  }

  FacebookAdsApi.init(token);
  const page = new Page(pageId);

  // Conversations, one per page of results: the Cursor follows paging.next.
  const cursor = await page.getConversations(['id', 'updated_time', 'participants'], {
    platform: 'messenger', limit: 2,
  });
  const seen = cursor.map((c) => c.id);
  check(cursor.hasNext(), `2 of 3 conversations and no next page: ${JSON.stringify(cursor.paging)}`);
  const more = await cursor.next();
  for (const c of more) seen.push(c.id);
  for (const customer of customers) {
    check(seen.includes(customer.conversation_id), `conversation ${customer.conversation_id} not listed: ${seen}`);
  }

  // A reply inside the 24-hour window, through the Send API.
  const sent = await page.createMessage([], {
    recipient: { id: customers[0].psid },
    messaging_type: 'RESPONSE',
    message: { text: 'Thanks Ken, looking into it.' },
  });
  check(sent._data && sent._data.message_id, `createMessage gave no message_id: ${JSON.stringify(sent._data)}`);

  // An unknown token is Graph's error 190, which the SDK surfaces as a FacebookRequestError.
  FacebookAdsApi.init('not-a-token');
  try {
    await new Page(pageId).getConversations(['id'], { platform: 'messenger' });
    fail('a wrong token was accepted');
  } catch (error) {
    check(error && error.name === 'FacebookRequestError', `not a FacebookRequestError: ${error}`);
    check(error.response && error.response.code === 190, `expected code 190: ${JSON.stringify(error.response)}`);
    check(typeof error.response.fbtrace_id === 'string', `no fbtrace_id: ${JSON.stringify(error.response)}`);
  }
  console.log(`facebook-nodejs-business-sdk: ${seen.length} conversations over 2 pages, 1 message sent, error 190 read`);
}

main().catch((error) => fail(error && error.stack ? error.stack : String(error)));
