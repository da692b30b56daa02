// Builds the playground that the switchboard binary embeds: bundles
// src/playground.jsx with GraphiQL, React, graphql and graphql-ws (the
// versions package-lock.json pins) into ../playground/graphiql.js and
// graphiql.css, writes the licences of
// every package they bundle to THIRD_PARTY_LICENSES.txt, and copies
// src/index.html. Run by `go generate ./web` after `npm ci`; the same lock
// gives the same bytes, and CI checks that the committed files are what
// this makes.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'playground');

// Start from an empty folder, so nothing stale is left to be embedded.
rmSync(out, { recursive: true, force: true });
mkdirSync(out);

const result = await build({
  absWorkingDir: here, // paths in the metafile (and so the output) do not depend on the caller's folder
  entryPoints: [join(here, 'src', 'playground.jsx')],
  outfile: join(out, 'graphiql.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022', 'chrome111', 'firefox114', 'safari16.4'],
  minify: true,
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"production"' },
  // (GraphiQL's style sheet carries its fonts inline, as data: URLs.)
  legalComments: 'none', // the whole licences are in THIRD_PARTY_LICENSES.txt
  metafile: true,
  charset: 'utf8',
  logLevel: 'warning',
});
copyFileSync(join(here, 'src', 'index.html'), join(out, 'index.html'));

// The packages whose code went into the bundle, each with its licence file.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const match = /^(.*node_modules\/((?:@[^/]+\/)?[^/]+))\//.exec(input);
  if (match) {
    packages.set(match[2], join(here, match[1]));
  }
}
const notices = ['The playground\'s graphiql.js and graphiql.css bundle these packages, under these licences.\n'];
for (const [name, dir] of [...packages].sort(([a], [b]) => (a < b ? -1 : 1))) {
  const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const file = readdirSync(dir).sort().find((f) => /^(licen[cs]e|copying)/i.test(f));
  if (!file && !meta.license) {
    throw new Error(`${name}: no licence found`);
  }
  const text = file && existsSync(join(dir, file)) ? readFileSync(join(dir, file), 'utf8').trim() : `(licence ${meta.license}; the package ships no licence file)`;
  notices.push(`${'='.repeat(72)}\n${name}@${meta.version} (${meta.license ?? 'see below'})\n${'='.repeat(72)}\n\n${text}\n`);
}
writeFileSync(join(out, 'THIRD_PARTY_LICENSES.txt'), notices.join('\n'));

for (const name of readdirSync(out, { recursive: true }).sort()) {
  console.log(`web/playground/${name}`);
}
