// Builds the web console into dist/ui/: the TypeScript bundled and minified by esbuild (type-checked
// before, by `tsc -p ui`), beside the page and its stylesheet. Nothing is fetched at run time.
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, '..', 'dist', 'ui');

await mkdir(out, { recursive: true });
await build({
  entryPoints: [path.join(here, 'src', 'main.tsx')],
  outfile: path.join(out, 'console.js'),
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2022'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'eof',
  logLevel: 'warning',
});
await Promise.all(['index.html', 'console.css', 'favicon.svg'].map((f) => copyFile(path.join(here, f), path.join(out, f))));
