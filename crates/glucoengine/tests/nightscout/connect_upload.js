// Upload to a GlucoSync Nightscout site with nightscout-connect 0.0.12's own modules.
//
//   node connect_upload.js <connect_dir> nightscout  <output_url> <output_secret> <source_url>
//   node connect_upload.js <connect_dir> dexcomshare <output_url> <output_secret> [count]
//   node connect_upload.js <connect_dir> linkup      <output_url> <output_secret> [count]
//
// <connect_dir> is what `scripts/nightscout-clients connect-dir` prints. The output side is always
// the package's real lib/outputs/nightscout.js: gap check `GET <output>/api/v1/entries.json?count=1`
// then `POST <output>/api/v1/entries.json`, both with `API-SECRET: sha1(<output_secret>)`.
//   nightscout:  the package's lib/sources/nightscout.js reads <source_url> exactly as the CLI's
//                `forever --source nightscout` does (anonymous `GET /api/v1/verifyauth`, needs
//                message.canRead; then `GET /api/v1/entries.json?find[dateString][$gt]=..&count=..`
//                without credentials) and passes the documents through unchanged.
//   dexcomshare: <count> Dexcom Share records (5 min apart, newest = GS_CONNECT_END_MS or now)
//                go through the package's Dexcom Share transform (no Dexcom server involved).
//   linkup:      the same through the LibreLinkUp transform; like the real source it drops every
//                reading not newer than the output site's newest entry (and so all of them when the
//                output site is empty: a 0.0.12 bug).
// The one thing done differently from the CLI: the batch gets the empty `treatments` list whose
// absence makes the 0.0.12 CLI crash right before it posts.
//
// Prints one JSON object: {"mode","gap","sent":[...],"answer":...,"requests":[{method,url,status}]}.
// Exit 0 when every request to the output site got 2xx and the POST answer is an array as long as
// what was sent; 3 when a request got a non-2xx status; 1 otherwise. CONNECT_DEBUG=1 shows the
// package's own logging on stderr.
'use strict';
const path = require('path');
const { createRequire } = require('module');

const [connectDir, mode, outputUrl, outputSecret, extra] = process.argv.slice(2);
if (!connectDir || !['nightscout', 'dexcomshare', 'linkup'].includes(mode) || !outputUrl || outputSecret === undefined
    || (mode === 'nightscout' && !extra)) {
  process.stderr.write('usage: connect_upload.js <connect_dir> nightscout|dexcomshare|linkup <output_url> <output_secret> [source_url|count]\n');
  process.exit(2);
}

const quiet = (...args) => { if (process.env.CONNECT_DEBUG === '1') process.stderr.write(args.map(String).join(' ') + '\n'); };
console.log = quiet;
console.error = quiet;

const pkgRequire = createRequire(path.join(path.resolve(connectDir), 'package.json'));
const realAxios = pkgRequire('axios');
const requests = [];
// Same axios the package uses; only records what each request got.
const axios = {
  create(config) {
    const inst = realAxios.create(config);
    const note = (cfg, status, data) => requests.push({
      method: (cfg.method || 'get').toUpperCase(),
      url: realAxios.getUri(cfg).replace('?&', '?'),
      status,
      ...(cfg.method === 'post' ? { answer: data } : {}),
    });
    inst.interceptors.response.use(
      (r) => { note(r.config, r.status, r.data); return r; },
      (e) => { if (e.config) note(e.config, e.response ? e.response.status : null, e.response && e.response.data); return Promise.reject(e); },
    );
    return inst;
  },
};

const lib = (p) => pkgRequire(path.join(path.resolve(connectDir), 'lib', p));

function shareRecords(count, endMs) {
  const trends = ['Flat', 'FortyFiveUp', 'SingleUp', 'Flat', 'FortyFiveDown'];
  return Array.from({ length: count }, (_, i) => {
    const t = endMs - i * 300000;
    return { WT: `/Date(${t})/`, ST: `/Date(${t})/`, DT: `/Date(${t}+0100)/`, Value: 110 + i * 3, Trend: trends[i % trends.length] };
  });
}

function libreGraph(count, endMs) {
  // LibreLinkUp's FactoryTimestamp is a UTC wall clock as "M/D/YYYY h:mm:ss AM"; the transform parses
  // it as local time and shifts by the local offset, which yields the UTC instant again.
  return Array.from({ length: count }, (_, i) => {
    const d = new Date(endMs - (count - 1 - i) * 300000);
    const h = d.getUTCHours();
    const wall = `${d.getUTCMonth() + 1}/${d.getUTCDate()}/${d.getUTCFullYear()} ${(h % 12) || 12}:${String(d.getUTCMinutes()).padStart(2, '0')}:${String(d.getUTCSeconds()).padStart(2, '0')} ${h < 12 ? 'AM' : 'PM'}`;
    return { FactoryTimestamp: wall, Timestamp: wall, ValueInMgPerDl: 105 + i * 2, TrendArrow: 3 };
  });
}

async function main() {
  const output = lib('outputs/nightscout')({ name: 'nightscout', url: outputUrl, apiSecret: outputSecret }, axios);
  const gap = await output.gap_for();
  const gapAtStart = gap && gap.entries ? gap.entries.toISOString() : null; // output mutates it after posting
  const endMs = Number(process.env.GS_CONNECT_END_MS) || Math.floor(Date.now() / 300000) * 300000;
  const count = Number(extra) || 3;
  let batch;
  if (mode === 'nightscout') {
    const source = lib('sources/nightscout')({ url: extra, apiSecret: '' }, axios);
    const auth = await source.authFromCredentials();
    if (!auth || !auth.readable) throw new Error('source site is not anonymously readable (verifyauth message.canRead); nightscout-connect 0.0.12 cannot read it otherwise');
    const session = await source.sessionFromAuth(auth);
    batch = source.transformGlucose(await source.dataFromSesssion(session, gap));
  } else if (mode === 'dexcomshare') {
    const source = lib('sources/dexcomshare')({ shareRegion: 'us' }, axios);
    batch = source.transformGlucose(shareRecords(count, endMs));
  } else {
    const source = lib('sources/librelinkup')({ linkUpRegion: 'EU' }, axios);
    batch = source.transformGlucose({ status: 0, data: { graphData: libreGraph(count, endMs) } }, gap);
  }
  const sent = JSON.parse(JSON.stringify(batch.entries || []));
  await output({ entries: batch.entries || [], treatments: batch.treatments || [] });
  const post = requests.find((r) => r.method === 'POST');
  const answer = post ? post.answer : null;
  const bad = requests.filter((r) => !(r.status >= 200 && r.status < 300));
  const result = { mode, gap: gapAtStart, sent, answer, requests: requests.map(({ answer: _, ...r }) => r) };
  process.stdout.write(JSON.stringify(result) + '\n');
  if (bad.length) return 3;
  if (sent.length && !(Array.isArray(answer) && answer.length === sent.length)) return 1;
  return 0;
}

main().then((code) => process.exit(code), (err) => {
  process.stdout.write(JSON.stringify({ mode, error: String(err && err.stack || err), requests: requests.map(({ answer: _, ...r }) => r) }) + '\n');
  process.exit(requests.some((r) => !(r.status >= 200 && r.status < 300)) ? 3 : 1);
});
