// Renders the server's own OpenAPI document: no third-party code, no network beyond this server.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function resolve(doc, schema) {
  let s = schema || {};
  for (let i = 0; s.$ref && i < 20; i++) {
    s = s.$ref.replace(/^#\//, "").split("/").reduce((o, k) => (o || {})[k], doc) || {};
  }
  return s;
}

function typeName(doc, schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.oneOf) return schema.oneOf.map((s) => typeName(doc, s)).join(" | ");
  if (schema.type === "array") return typeName(doc, schema.items) + "[]";
  if (Array.isArray(schema.type)) return schema.type.filter((t) => t !== "null").join(" | ") + (schema.type.includes("null") ? "?" : "");
  if (schema.enum) return schema.enum.map((e) => JSON.stringify(e)).join(" | ");
  return schema.type || "object";
}

function schemaTable(doc, schema) {
  const s = resolve(doc, schema);
  if (s.oneOf) {
    return el("div", {}, el("p", {}, "One of:"), ...s.oneOf.map((o) => el("div", {}, el("code", {}, typeName(doc, o)), schemaTable(doc, o))));
  }
  if (s.type === "array") return el("div", {}, el("p", {}, "Array of ", el("code", {}, typeName(doc, s.items))), schemaTable(doc, s.items));
  const props = s.properties || {};
  if (!Object.keys(props).length) return el("p", {}, el("code", {}, typeName(doc, schema)));
  const required = new Set(s.required || []);
  const table = el("table", {}, el("tr", {}, el("th", {}, "Field"), el("th", {}, "Type"), el("th", {}, "Description")));
  for (const [name, p] of Object.entries(props)) {
    const r = resolve(doc, p);
    table.append(el("tr", {}, el("td", {}, el("code", {}, name + (required.has(name) ? "" : "?"))),
      el("td", {}, el("code", {}, typeName(doc, p))), el("td", {}, p.description || r.description || "")));
  }
  return table;
}

async function main() {
  const doc = await (await fetch("/api/v1/openapi.json")).json();
  document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version}`;
  document.getElementById("description").textContent = doc.info.description || "";
  const toc = document.getElementById("toc");
  const main = document.getElementById("operations");
  main.textContent = "";
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push({ path, method, op });
    }
  }
  for (const [tag, ops] of byTag) {
    toc.append(el("h2", {}, tag));
    main.append(el("h2", {}, tag));
    for (const { path, method, op } of ops) {
      const id = `${method}-${path}`.replace(/[^a-z0-9]+/gi, "-");
      toc.append(el("a", { href: "#" + id }, `${method.toUpperCase()} ${path}`));
      const body = el("div", { class: "body" });
      if (op.summary || op.description) body.append(el("p", {}, [op.summary, op.description].filter(Boolean).join(" ")));
      if (op.parameters && op.parameters.length) {
        const t = el("table", {}, el("tr", {}, el("th", {}, "Parameter"), el("th", {}, "In"), el("th", {}, "Type"), el("th", {}, "Description")));
        for (const p of op.parameters) t.append(el("tr", {}, el("td", {}, el("code", {}, p.name + (p.required ? "" : "?"))), el("td", {}, p.in), el("td", {}, el("code", {}, typeName(doc, p.schema))), el("td", {}, p.description || "")));
        body.append(el("h4", {}, "Parameters"), t);
      }
      const reqSchema = op.requestBody && op.requestBody.content && (op.requestBody.content["application/json"] || {}).schema;
      if (reqSchema) body.append(el("h4", {}, "Request body"), schemaTable(doc, reqSchema));
      body.append(el("h4", {}, "Responses"));
      for (const [status, resp] of Object.entries(op.responses || {})) {
        const content = resp.content || {};
        const media = Object.keys(content)[0];
        body.append(el("p", {}, el("strong", {}, status), " ", resp.description || "", media ? " — " : "", media ? el("code", {}, `${media} ${typeName(doc, content[media].schema)}`) : ""));
      }
      main.append(el("section", { class: "op", id }, el("h3", {}, el("span", { class: "method " + method }, method.toUpperCase()), path), body));
    }
  }
}

main().catch((e) => { document.getElementById("operations").textContent = "Could not load the API description: " + e; });
