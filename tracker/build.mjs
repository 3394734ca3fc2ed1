// Build dist/ from src/ with esbuild: the core script, one script per combination
// of extras, and the ES modules for bundlers. Prints every file's sizes and fails
// when the core script is over its gzip budget.
//   TRACKFLOW_ENDPOINT  where events go unless the page says otherwise (default http://localhost:8000)
//
// The extras, in the order they appear in a file name (tracker.links.tagged.js):
//   config      remote config from GET /v1/config/{key} (switch off, sampling, environment)
//   hash        hash routing: #/path counts as its own page
//   links       outbound-link and file-download clicks
//   tagged      events from data-track-* attributes
//   engagement  engaged time and scroll depth per page
import { build } from 'esbuild';
import { readFileSync, mkdirSync, rmSync } from 'node:fs';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';

const GZIP_BUDGET = 2400; // the core, gzip -9
const VARIANT_BUDGET = 3100; // any script with extras
const EXTRAS = ['config', 'hash', 'links', 'tagged', 'engagement'];
const endpoint = process.env.TRACKFLOW_ENDPOINT || 'http://localhost:8000';
const version = JSON.parse(readFileSync(new URL('./package.json', import.meta.url))).version;
const path = (name) => new URL(name, import.meta.url).pathname;

function defines(extras) {
  const flags = Object.fromEntries(EXTRAS.map((name) => [name.toUpperCase(), String(extras.includes(name))]));
  return { ENDPOINT: JSON.stringify(endpoint), VERSION: JSON.stringify(version), ...flags };
}

async function bundle(entry, outfile, extras, format) {
  await build({
    entryPoints: [path(entry)],
    outfile: path(outfile),
    bundle: true,
    minify: true,
    format,
    target: ['es2020'], // Chrome/Edge 80+, Firefox 74+, Safari 13.1+
    legalComments: 'none',
    define: defines(extras),
  });
}

function sizes(file) {
  const code = readFileSync(path(file));
  return {
    raw: code.length,
    gzip: gzipSync(code, { level: 9 }).length,
    brotli: brotliCompressSync(code, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length,
  };
}

// Every subset of EXTRAS, in their order: [], ['config'], ['links'], ['config', 'links'], ...
const subsets = Array.from({ length: 2 ** EXTRAS.length }, (_, mask) => EXTRAS.filter((_, i) => mask & (1 << i)));
subsets.sort((a, b) => a.length - b.length);

rmSync(path('./dist/'), { recursive: true, force: true });
mkdirSync(path('./dist/'), { recursive: true });
const files = [];
for (const extras of subsets) {
  const name = ['tracker', ...extras, 'js'].join('.');
  await bundle('./src/script.js', `./dist/${name}`, extras, 'iife');
  files.push([name, extras.length ? VARIANT_BUDGET : GZIP_BUDGET]);
}
await bundle('./src/index.js', './dist/trackflow.mjs', [], 'esm');
await bundle('./src/index.js', './dist/trackflow.full.mjs', EXTRAS, 'esm');
files.push(['trackflow.mjs', 0], ['trackflow.full.mjs', 0]);

console.log(`endpoint ${endpoint}  version ${version}`);
console.log(`${'file'.padEnd(46)}  raw B   gzip B  brotli B  budget (gzip)`);
let over = [];
for (const [name, budget] of files) {
  const size = sizes(`./dist/${name}`);
  const row = `${name.padEnd(46)} ${String(size.raw).padStart(6)}  ${String(size.gzip).padStart(7)}  ${String(size.brotli).padStart(8)}  ${budget || '-'}`;
  console.log(row);
  if (budget && size.gzip > budget) over.push(`${name} is ${size.gzip} B gzipped, over the ${budget} B budget`);
}
if (over.length) {
  console.error(over.join('\n'));
  process.exit(1);
}
