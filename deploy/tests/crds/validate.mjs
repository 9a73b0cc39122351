// Validates custom resources against their CRD schemas, as the API server would on apply:
// ArgoCD, cert-manager, Prometheus operator and SealedSecrets kinds through the generated
// validators of @kubernetes-models/*, the Zalando `postgresql` and Velero `Schedule` kinds
// through the JSON schemas committed in deploy/schemas (Ajv, strict about unknown fields).
//
//   node validate.mjs FILE...     each FILE a YAML stream of rendered objects
//
// Prints one line per object (`ok  Kind/namespace/name` or `FAIL Kind/…: why`) and exits 1 when
// any object fails or has a kind nothing here can validate (every custom kind must be known).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import Ajv from "ajv/dist/2020.js";
import { Application, ApplicationSet, AppProject } from "@kubernetes-models/argo-cd/argoproj.io/v1alpha1";
import { Certificate, ClusterIssuer, Issuer } from "@kubernetes-models/cert-manager/cert-manager.io/v1";
import { PodMonitor, PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
import { SealedSecret } from "@kubernetes-models/sealed-secrets/bitnami.com/v1alpha1";

const SCHEMAS = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "schemas");

/** apiVersion + kind → a function that throws when the object is invalid. */
const byModel = (Model) => (object) => new Model(object).validate();
const ajv = new Ajv({ allErrors: true, strict: false });
ajv.addFormat("uuid", /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
const bySchema = (file) => {
  const check = ajv.compile(JSON.parse(readFileSync(join(SCHEMAS, file), "utf8")));
  return (object) => {
    if (!check(object)) {
      throw new Error(check.errors.map((e) => `${e.instancePath || "/"} ${e.message}${e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : ""}`).join("; "));
    }
  };
};

const VALIDATORS = {
  "argoproj.io/v1alpha1 Application": byModel(Application),
  "argoproj.io/v1alpha1 ApplicationSet": byModel(ApplicationSet),
  "argoproj.io/v1alpha1 AppProject": byModel(AppProject),
  "cert-manager.io/v1 Certificate": byModel(Certificate),
  "cert-manager.io/v1 ClusterIssuer": byModel(ClusterIssuer),
  "cert-manager.io/v1 Issuer": byModel(Issuer),
  "monitoring.coreos.com/v1 PrometheusRule": byModel(PrometheusRule),
  "monitoring.coreos.com/v1 ServiceMonitor": byModel(ServiceMonitor),
  "monitoring.coreos.com/v1 PodMonitor": byModel(PodMonitor),
  "bitnami.com/v1alpha1 SealedSecret": byModel(SealedSecret),
  "acid.zalan.do/v1 postgresql": bySchema("acid.zalan.do_v1_postgresql.json"),
  "velero.io/v1 Schedule": bySchema("velero.io_v1_schedule.json"),
};

let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length) {
      console.log(`FAIL ${file}: ${doc.errors[0].message}`);
      failed++;
      continue;
    }
    const object = doc.toJS();
    if (!object) continue;
    const key = `${object.apiVersion} ${object.kind}`;
    const id = `${object.kind}/${object.metadata?.namespace ?? "-"}/${object.metadata?.name}`;
    const validate = VALIDATORS[key];
    if (!validate) {
      console.log(`FAIL ${id}: no schema for ${key}`);
      failed++;
      continue;
    }
    try {
      validate(object);
      console.log(`ok   ${id}`);
    } catch (e) {
      console.log(`FAIL ${id}: ${String(e.message ?? e).split("\n")[0].slice(0, 500)}`);
      failed++;
    }
  }
}
process.exit(failed ? 1 : 0);
