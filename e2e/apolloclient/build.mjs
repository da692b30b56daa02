// Bundles page.mjs, Apollo Client included, into one script for the
// browser: node build.mjs OUTFILE. The test serves it from its own server;
// nothing is loaded from elsewhere.
import { build } from "esbuild";

await build({
  entryPoints: [new URL("./page.mjs", import.meta.url).pathname],
  outfile: process.argv[2],
  bundle: true,
  format: "iife",
  target: "chrome120",
  define: { "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
});
