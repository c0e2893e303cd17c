// One bundled file of the CLI for remote hosts (launch copies it over): dist/piecework.mjs.
// Everything is bundled; nothing stays external except Node's built-ins. node-ssh and its
// native optional (cpu-features) are only reached through launch's lazy import, and ssh2
// works without the native part, so they are bundled too and the file runs anywhere Node runs.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
await build({
  entryPoints: ['src/cli/bundle-entry.ts'],
  outfile: 'dist/piecework.mjs',
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // cpu-features and sshcrypto.node are optional native speed-ups of ssh2, loaded inside
  // try/catch: leave them out and ssh2 uses its pure-JS code, so the file runs on any host.
  external: ['cpu-features', '*.node'],
  banner: {
    // Bundled CommonJS (fast-glob, proper-lockfile, ssh2) still calls require().
    js: "#!/usr/bin/env node\nimport { createRequire as __pwCreateRequire } from 'node:module'; const require = __pwCreateRequire(import.meta.url);",
  },
  define: { 'process.env.PIECEWORK_BUNDLED_VERSION': JSON.stringify(version) },
  logLevel: 'warning',
});
