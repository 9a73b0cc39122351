import { defineConfig } from "vitest/config";
import type { Plugin } from "vite";
import { createHash } from "node:crypto";

/**
 * The service worker (src/sw.ts) is built as its own entry at a fixed URL (`/app/sw.js`, so
 * that its scope is the whole app) and learns the list of files to precache here: the
 * placeholder `self.__PRECACHE__` becomes the bundle's file names, and a hash of them names
 * the cache, so every build that changes a file installs a new worker.
 */
function precacheManifest(): Plugin {
  return {
    name: "glucosync-precache",
    apply: "build",
    generateBundle(_options, bundle) {
      const files = Object.keys(bundle)
        .filter((f) => f !== "sw.js" && !f.endsWith(".map"))
        .sort();
      const shell = ["./", ...files, "manifest.webmanifest", "icons/icon.svg", "icons/icon-192.png", "icons/icon-512.png", "icons/maskable-512.png"];
      const version = createHash("sha256").update(JSON.stringify(files)).digest("hex").slice(0, 12);
      const sw = bundle["sw.js"];
      if (!sw || sw.type !== "chunk") throw new Error("sw.js missing from the bundle");
      if (!sw.code.includes("self.__PRECACHE__")) throw new Error("sw.js lost its precache placeholder");
      sw.code = sw.code.replace("self.__PRECACHE__", JSON.stringify({ version, files: shell }));
    },
  };
}

export default defineConfig({
  base: "/app/",
  plugins: [precacheManifest()],
  build: {
    target: "es2022",
    sourcemap: false,
    rolldownOptions: {
      input: { main: "index.html", sw: "src/sw.ts" },
      output: {
        entryFileNames: (chunk) => (chunk.name === "sw" ? "sw.js" : "assets/[name]-[hash].js"),
      },
    },
  },
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:8080", ws: true },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
