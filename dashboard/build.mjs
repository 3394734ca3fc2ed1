// Build dist/index.html (and dist/favicon.svg): the page with its script and styles (uPlot included) inlined,
// so it loads nothing from a CDN and can be hosted anywhere as one file.
import { build } from 'esbuild';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';

const here = (p) => new URL(p, import.meta.url).pathname;
const result = await build({
  entryPoints: [here('./src/main.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  legalComments: 'none',
  write: false,
  outdir: here('./dist'),
});
const js = result.outputFiles.find((f) => f.path.endsWith('.js')).text;
const css = result.outputFiles.find((f) => f.path.endsWith('.css')).text;
const icon = readFileSync(here('./src/favicon.svg'), 'utf8').trim();
const page = readFileSync(here('./src/index.html'), 'utf8')
  .replace('/*FAVICON*/', () => `data:image/svg+xml,${encodeURIComponent(icon)}`)
  .replace('/*STYLES*/', () => css + readFileSync(here('./src/style.css'), 'utf8'))
  .replace('/*SCRIPT*/', () => js.replaceAll('</script', '<\\/script'));
mkdirSync(here('./dist'), { recursive: true });
writeFileSync(here('./dist/index.html'), page);
writeFileSync(here('./dist/favicon.svg'), icon); // what the dev server answers /favicon.ico with
console.log(`dist/index.html  ${page.length} B (uPlot bundled)`);
