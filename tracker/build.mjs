// Build dist/tracker.js from src/ with esbuild, print its sizes, fail over the budget.
//   TRACKFLOW_ENDPOINT  where events go unless the page says otherwise (default http://localhost:8000)
import { build } from 'esbuild';
import { readFileSync, mkdirSync } from 'node:fs';
import { gzipSync, brotliCompressSync, constants } from 'node:zlib';

const GZIP_BUDGET = 2500;
const endpoint = process.env.TRACKFLOW_ENDPOINT || 'http://localhost:8000';
const version = JSON.parse(readFileSync(new URL('./package.json', import.meta.url))).version;
const outfile = new URL('./dist/tracker.js', import.meta.url).pathname;

mkdirSync(new URL('./dist/', import.meta.url), { recursive: true });
await build({
  entryPoints: [new URL('./src/tracker.js', import.meta.url).pathname],
  outfile,
  bundle: true,
  minify: true,
  format: 'esm', // the source is its own IIFE: no second wrapper
  target: ['es2020'], // Chrome/Edge 80+, Firefox 74+, Safari 13.1+
  legalComments: 'none',
  define: { ENDPOINT: JSON.stringify(endpoint), VERSION: JSON.stringify(version) },
});

const code = readFileSync(outfile);
const gzip = gzipSync(code, { level: 9 }).length;
const brotli = brotliCompressSync(code, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
console.log(`dist/tracker.js  raw ${code.length} B  gzip ${gzip} B  brotli ${brotli} B  (budget ${GZIP_BUDGET} B gzip)  endpoint ${endpoint}`);
if (gzip > GZIP_BUDGET) {
  console.error(`tracker.js is ${gzip} B gzipped, over the ${GZIP_BUDGET} B budget`);
  process.exit(1);
}
