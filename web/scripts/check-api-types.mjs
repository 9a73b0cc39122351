// Fails when src/api/schema.d.ts is not what openapi-typescript makes of the server's OpenAPI
// document (docs/openapi.json, itself snapshot-tested against the server): the app's API
// types can never drift from the server. Fix with `npm run gen:api`.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const dir = mkdtempSync(join(tmpdir(), "gs-api-"));
try {
  const fresh = join(dir, "schema.d.ts");
  execFileSync("npx", ["openapi-typescript", "../docs/openapi.json", "-o", fresh], { stdio: ["ignore", "ignore", "inherit"] });
  const committed = readFileSync("src/api/schema.d.ts", "utf8");
  if (readFileSync(fresh, "utf8") !== committed) {
    console.error("web/src/api/schema.d.ts is stale: the OpenAPI document changed. Run `npm run gen:api` in web/ and commit the result.");
    process.exit(1);
  }
  console.log("API types match docs/openapi.json");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
