// jsforce against the Salesforce simulator: the OAuth2 web-server flow with PKCE (the
// simulator's authorize endpoint approves at once), a refresh on 401, Case and CaseComment
// create/update/query, and array operations through /composite/sobjects.
// Usage: node salesforce.mjs BASE CLIENT_ID CLIENT_SECRET.
import jsforce from 'jsforce';

const [base, clientId, clientSecret] = process.argv.slice(2);
const fail = (message) => { console.error(`jsforce: ${message}`); process.exit(1); };
const check = (condition, message) => { if (!condition) fail(message); };

async function main() {
  const oauth2 = new jsforce.OAuth2({ loginUrl: base, clientId, clientSecret, redirectUri: 'http://127.0.0.1/callback', useVerifier: true });
  const authorize = await fetch(oauth2.getAuthorizationUrl({ scope: 'api refresh_token' }), { redirect: 'manual' });
  const code = new URL(authorize.headers.get('location') ?? fail(`authorize answered ${authorize.status}`)).searchParams.get('code');
  check(code, `no code in ${authorize.headers.get('location')}`);
  const conn = new jsforce.Connection({ oauth2, version: '60.0' });
  const userInfo = await conn.authorize(code);
  check(conn.instanceUrl === base && conn.refreshToken, `authorize: ${JSON.stringify(userInfo)}`);
  const identity = await conn.identity();
  check(identity.user_id && identity.organization_id, `identity: ${JSON.stringify(identity)}`);
  check(identity.id.startsWith(base), `identity URL is not the simulator's: ${identity.id}`);
  // A dead access token: jsforce refreshes on the REST API's 401 and retries.
  conn.accessToken = 'expired';
  const created = await conn.sobject('Case').create({ Subject: 'Order never arrived', Origin: 'Web' });
  check(created.success, `create Case: ${JSON.stringify(created)}`);
  await conn.sobject('Case').update({ Id: created.id, Status: 'Working' });
  const comment = await conn.sobject('CaseComment').create({ ParentId: created.id, CommentBody: 'Looking into it', IsPublished: true });
  check(comment.success, `create CaseComment: ${JSON.stringify(comment)}`);
  const many = await conn.sobject('Case').create([{ Subject: 'one' }, { Subject: 'two' }]);
  check(Array.isArray(many) && many.length === 2 && many.every((r) => r.success), `array create: ${JSON.stringify(many)}`);
  const renamed = await conn.sobject('Case').update(many.map((r, i) => ({ Id: r.id, Subject: `renamed ${i}` })));
  check(renamed.every((r) => r.success), `array update: ${JSON.stringify(renamed)}`);
  const upserted = await conn.sobject('Case').upsert([{ Switchboard_External_Id__c: 'conv-42', Subject: 'by external id' }], 'Switchboard_External_Id__c');
  check(upserted.every((r) => r.success), `array upsert: ${JSON.stringify(upserted)}`);
  const { records } = await conn.query(`SELECT Id, Subject, Status FROM Case WHERE Id = '${created.id}'`);
  check(records.length === 1 && records[0].Status === 'Working', `query Case: ${JSON.stringify(records)}`);
  const comments = await conn.query(`SELECT Id, CommentBody FROM CaseComment WHERE ParentId = '${created.id}'`);
  check(comments.totalSize === 1, `query CaseComment: ${JSON.stringify(comments)}`);
  const deleted = await conn.sobject('Case').destroy(many.map((r) => r.id));
  check(deleted.every((r) => r.success), `array delete: ${JSON.stringify(deleted)}`);
  console.log('jsforce: ok');
}

main().catch((error) => fail(error && (error.stack || error.message || String(error))));
