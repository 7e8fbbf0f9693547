// freshdesk-api against the Freshdesk simulator: contacts, tickets with and without attachments,
// reply, note, list. Usage: node freshdesk.mjs BASE API_KEY.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Freshdesk from 'freshdesk-api';

const [base, apiKey] = process.argv.slice(2);
const fail = (message) => { console.error(`freshdesk-api: ${message}`); process.exit(1); };
const check = (condition, message) => { if (!condition) fail(message); };

async function main() {
  const fd = new Freshdesk(base, apiKey);
  const call = (name, ...args) => promisify(fd[name].bind(fd))(...args);
  const stamp = Date.now();
  const contact = await call('createContact', { name: 'Ana Client', email: `ana.${stamp}@example.com` });
  check(contact && contact.id, `createContact: ${JSON.stringify(contact)}`);
  const plain = await call('createTicket', {
    subject: 'No attachment', description: 'Plain JSON', requester_id: contact.id, status: 2, priority: 1,
  });
  check(plain && plain.id, `createTicket: ${JSON.stringify(plain)}`);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'fd-')), 'receipt.txt');
  fs.writeFileSync(file, 'receipt contents');
  const withFile = await call('createTicket', {
    subject: 'With attachment', description: 'Multipart', email: `ana.${stamp}@example.com`,
    status: 2, priority: 1, attachments: [fs.createReadStream(file)],
  });
  check(withFile && withFile.id, `createTicket with attachment: ${JSON.stringify(withFile)}`);
  check(withFile.attachments?.[0]?.name === 'receipt.txt', `attachment missing: ${JSON.stringify(withFile)}`);
  const reply = await call('createReply', withFile.id, { body: 'Thanks, see attached', attachments: [fs.createReadStream(file)] });
  check(reply.attachments?.length === 1, `createReply: ${JSON.stringify(reply)}`);
  const note = await call('createNote', plain.id, { body: 'Internal note', private: true });
  check(note.private === true, `createNote: ${JSON.stringify(note)}`);
  const listed = await call('listAllTickets', {});
  for (const t of [plain, withFile]) check(listed.some((x) => x.id === t.id), `listAllTickets misses ${t.id}`);
  const conversations = await call('listAllConversations', withFile.id);
  check(conversations.length === 1, `listAllConversations: ${JSON.stringify(conversations)}`);
  console.log('freshdesk-api: ok');
}

main().catch((error) => fail(error && (error.stack || error.message || JSON.stringify(error))));
