// AndroidAPS's websocket side against a GlucoSync Nightscout site, with the real socket.io
// client (socket.io-client 4, the protocol v5 AndroidAPS's Java client speaks).
//
//   node socket_subscribe.js <client_dir> <site_url> <access_token> <api_secret_sha1> [alarm]
//
// <client_dir> is what `scripts/nightscout-clients connect-dir`'s prefix holds (socket.io-client
// is installed beside nightscout-connect). Connects to `<site_url>/storage` with the default
// transports (polling, then the upgrade, as AndroidAPS), subscribes with the token as AAPS does,
// then changes data over REST (an entry, a treatment, its deletion) and waits for the matching
// `create` and `delete` events. A wrong token must get `success: false`. With `alarm`, it also
// subscribes to `<site_url>/alarm`, uploads an urgent low and waits for `urgent_alarm`.
// Prints one JSON object {ack, refused, events}; exit 0 when everything arrived, 3 otherwise.
'use strict';
const path = require('path');

const [clientDir, siteUrl, token, secretSha1, alarm] = process.argv.slice(2);
if (!clientDir || !siteUrl || !token || !secretSha1) {
  process.stderr.write('usage: socket_subscribe.js <client_dir> <site_url> <token> <api_secret_sha1>\n');
  process.exit(2);
}
const { io } = require(path.join(clientDir, 'node_modules', 'socket.io-client'));
const COLLECTIONS = ['devicestatus', 'entries', 'profile', 'treatments', 'foods', 'settings'];

function connect(namespace = 'storage') {
  const socket = io(`${siteUrl}/${namespace}`, { forceNew: true, reconnection: false });
  return new Promise((resolve, reject) => {
    socket.on('connect', () => resolve(socket));
    socket.on('connect_error', (e) => reject(new Error(`connect_error: ${e.message}`)));
  });
}

async function rest(method, urlPath, body) {
  const r = await fetch(`${siteUrl}${urlPath}`, {
    method,
    headers: { 'content-type': 'application/json', 'api-secret': secretSha1 },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} ${urlPath}: ${r.status} ${await r.text()}`);
  return r.json();
}

function waitFor(events, test, ms) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = () => {
      const found = events.find(test);
      if (found) return resolve(found);
      if (Date.now() - started > ms) return reject(new Error(`timed out; events: ${JSON.stringify(events)}`));
      setTimeout(check, 50);
    };
    check();
  });
}

(async () => {
  const out = { events: [] };
  const wrong = await connect();
  out.refused = await wrong.timeout(5000).emitWithAck('subscribe', { accessToken: 'gsa_not_a_token', collections: COLLECTIONS });
  wrong.close();

  const socket = await connect();
  for (const name of ['create', 'update', 'delete']) {
    socket.on(name, (message) => out.events.push({ event: name, ...message }));
  }
  out.ack = await socket.timeout(5000).emitWithAck('subscribe', { accessToken: token, collections: COLLECTIONS });
  if (!out.ack.success) throw new Error(`subscribe refused: ${JSON.stringify(out.ack)}`);

  const date = Date.now() - 60_000;
  await rest('POST', '/api/v1/entries', [{ type: 'sgv', sgv: 131, date, device: 'xDrip' }]);
  await waitFor(out.events, (e) => e.event === 'create' && e.colName === 'entries' && e.doc.sgv === 131 && typeof e.doc.srvModified === 'number', 10_000);
  const [carbs] = await rest('POST', '/api/v1/treatments', [{ eventType: 'Carb Correction', carbs: 15, created_at: new Date(date).toISOString(), syncIdentifier: 'socket-1' }]);
  await waitFor(out.events, (e) => e.event === 'create' && e.colName === 'treatments' && e.doc.identifier === carbs._id, 10_000);
  await rest('DELETE', `/api/v1/treatments/${carbs._id}`);
  await waitFor(out.events, (e) => e.event === 'delete' && e.colName === 'treatments' && e.identifier === carbs._id, 10_000);
  socket.close();

  if (alarm === 'alarm') {
    const alarms = await connect('alarm');
    out.alarms = [];
    for (const name of ['alarm', 'urgent_alarm', 'clear_alarm', 'announcement']) {
      alarms.on(name, (message) => out.alarms.push({ event: name, ...message }));
    }
    out.alarmAck = await alarms.timeout(5000).emitWithAck('subscribe', { accessToken: token });
    if (!out.alarmAck.success) throw new Error(`alarm subscribe refused: ${JSON.stringify(out.alarmAck)}`);
    await rest('POST', '/api/v1/entries', [{ type: 'sgv', sgv: 48, date: Date.now() - 1000, device: 'xDrip', direction: 'DoubleDown' }]);
    await waitFor(out.alarms, (e) => e.event === 'urgent_alarm' && e.level === 2 && e.eventName === 'low', 20_000);
    alarms.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(out.refused && out.refused.success === false ? 0 : 3);
})().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(3);
});
