// A socket.io subscriber whose access ends while it is connected, with the real socket.io client
// (socket.io-client 4, as AndroidAPS's Java client).
//
//   node socket_revoked.js <client_dir> <site_url> <access_token> <api_secret_sha1> <revoke_url> <session> [exhaust]
//
// With `exhaust` (a number), the token first uses up its requests (that many REST reads, the
// last of which must be refused with 429) before the revocation: the subscription's re-check
// must not be passed by a rate-limited credential.
// Subscribes to `<site_url>/storage` and `<site_url>/alarm` with the token, checks that a change
// arrives, then sends `DELETE <revoke_url>` with the session as a bearer token (revoking the token,
// or the share the token reads through) and uploads an entry with the site's API secret. Both
// sockets must be disconnected by the server, and no event may arrive after the revocation.
// Prints one JSON object {ack, alarmAck, before, after, disconnected}; exit 0 when both were
// disconnected and nothing leaked, 3 otherwise.
'use strict';
const path = require('path');

const [clientDir, siteUrl, token, secretSha1, revokeUrl, session, exhaust] = process.argv.slice(2);
if (!clientDir || !siteUrl || !token || !secretSha1 || !revokeUrl || !session) {
  process.stderr.write('usage: socket_revoked.js <client_dir> <site_url> <token> <api_secret_sha1> <revoke_url> <session>\n');
  process.exit(2);
}
const { io } = require(path.join(clientDir, 'node_modules', 'socket.io-client'));

function connect(namespace) {
  const socket = io(`${siteUrl}/${namespace}`, { forceNew: true, reconnection: false });
  return new Promise((resolve, reject) => {
    socket.on('connect', () => resolve(socket));
    socket.on('connect_error', (e) => reject(new Error(`connect_error: ${e.message}`)));
  });
}

async function uploadEntry(sgv) {
  const r = await fetch(`${siteUrl}/api/v1/entries`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'api-secret': secretSha1 },
    body: JSON.stringify([{ type: 'sgv', sgv, date: Date.now() - 1000, device: 'xDrip' }]),
  });
  if (!r.ok) throw new Error(`upload: ${r.status} ${await r.text()}`);
}

function until(test, ms, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      if (test()) return resolve();
      if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(check, 50);
    };
    check();
  });
}

(async () => {
  const out = { before: [], after: [], disconnected: {} };
  let revoked = false;
  const storage = await connect('storage');
  const alarm = await connect('alarm');
  for (const [name, socket] of [['storage', storage], ['alarm', alarm]]) {
    socket.on('disconnect', (reason) => { out.disconnected[name] = reason; });
    socket.onAny((event, message) => (revoked ? out.after : out.before).push({ socket: name, event, message }));
  }
  out.ack = await storage.timeout(5000).emitWithAck('subscribe', { accessToken: token, collections: ['entries'] });
  out.alarmAck = await alarm.timeout(5000).emitWithAck('subscribe', { accessToken: token });
  if (!out.ack.success || !out.alarmAck.success) throw new Error(`subscribe refused: ${JSON.stringify(out)}`);

  await uploadEntry(140);
  await until(() => out.before.some((e) => e.event === 'create' && e.message.doc.sgv === 140), 10_000, 'the entry before');

  if (exhaust) {
    let last = 0;
    for (let i = 0; i < Number(exhaust); i++) {
      last = (await fetch(`${siteUrl}/api/v1/entries.json?count=1&token=${encodeURIComponent(token)}`)).status;
    }
    out.exhausted = last;
    if (last !== 429) throw new Error(`the token's requests were not used up: last status ${last}`);
  }
  const r = await fetch(revokeUrl, { method: 'DELETE', headers: { authorization: `Bearer ${session}` } });
  if (r.status !== 204) throw new Error(`revoke: ${r.status} ${await r.text()}`);
  revoked = true;
  // Storage is disconnected on the next change at the latest; an urgent low is one for /alarm.
  await uploadEntry(45);
  await until(() => out.disconnected.storage && out.disconnected.alarm, 10_000, 'both disconnects');
  process.stdout.write(JSON.stringify(out) + '\n');
  const serverSide = Object.values(out.disconnected).every((reason) => reason === 'io server disconnect');
  process.exit(serverSide && out.after.length === 0 ? 0 : 3);
})().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(3);
});
