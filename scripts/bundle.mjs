// The CLI bundled twice from src/cli/bundle-entry.ts, with the same settings:
//  - dist/piecework.mjs, one file for remote hosts (launch copies it over);
//  - dist/local/, code-split for bin/piecework on this machine: a command compiles only its own
//    chunks, not the ~1.6 MB it never runs (ssh2, execa, the dashboard…): `--version` takes
//    ~0.10 s from dist/local/, ~0.15 s from the one file (node alone: ~0.07 s).
// Everything is bundled; nothing stays external except Node's built-ins. node-ssh and its
// native optional (cpu-features) are only reached through launch's lazy import, and ssh2
// works without the native part, so they are bundled too and the file runs anywhere Node runs.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Packages imported at start-up but called only to lay out --help: their module is evaluated on
 * the first call instead. string-width builds an RGI_Emoji regex and an Intl.Segmenter when it is
 * loaded (~35 ms of every start, for yargs, cliui and wrap-ansi). Only `import x from` of a
 * default-export function is wrapped; require() calls (cli-progress) get the real module.
 */
const LAZY_DEFAULT_EXPORTS = /^string-width$/;
const lazyDefaultExports = {
  name: 'lazy-default-exports',
  setup(build) {
    build.onResolve({ filter: LAZY_DEFAULT_EXPORTS }, async (args) => {
      if (args.kind !== 'import-statement' || args.pluginData?.real) return undefined;
      const real = await build.resolve(args.path, { resolveDir: args.resolveDir, kind: args.kind, importer: args.importer, pluginData: { real: true } });
      if (real.errors.length > 0) return { errors: real.errors };
      return { path: real.path, namespace: 'lazy' };
    });
    build.onLoad({ filter: /.*/, namespace: 'lazy' }, (args) => ({
      // esbuild turns this require() of the ESM file into a call of its lazy initialiser.
      contents: `let loaded;\nexport default function lazy(...args) {\n  loaded ??= require(${JSON.stringify(args.path)}).default;\n  return loaded(...args);\n}\n`,
      resolveDir: dirname(args.path),
    }));
  },
};

/**
 * The local build runs inside the installed package, next to its node_modules: there ssh2's
 * native cipher binding (built by its install script when a compiler was at hand) is found by
 * package name, not by a path relative to the bundle, which does not exist. Packet encryption
 * in C instead of a cipher object made per packet: ~5% less CPU per chunk for an SFTP worker
 * (100 one-line chunks, 2 lanes). Where it was not built, ssh2's try/catch falls back to its JS
 * code, as in the single file that launch copies to other hosts.
 */
const installedSshCrypto = {
  name: 'installed-ssh-crypto',
  setup(build) {
    build.onResolve({ filter: /^\.\/crypto\/build\/Release\/sshcrypto\.node$/ }, (args) => (args.resolveDir.endsWith('/ssh2/lib/protocol') ? { path: 'ssh2/lib/protocol/crypto/build/Release/sshcrypto.node', external: true } : undefined));
  },
};

const common = {
  entryPoints: ['src/cli/bundle-entry.ts'],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // cpu-features and sshcrypto.node are optional native speed-ups of ssh2, loaded inside
  // try/catch: leave them out and ssh2 uses its pure-JS code, so the file runs on any host.
  external: ['cpu-features', '*.node'],
  banner: {
    // Bundled CommonJS (fast-glob, proper-lockfile, ssh2) still calls require().
    js: "import { createRequire as __pwCreateRequire } from 'node:module'; const require = __pwCreateRequire(import.meta.url);",
  },
  // ...and reads __dirname / __filename, which an ES module lacks: see bundle-globals.mjs.
  inject: ['scripts/bundle-globals.mjs'],
  plugins: [lazyDefaultExports],
  logLevel: 'warning',
};
await build({ ...common, outfile: 'dist/piecework.mjs', banner: { js: `#!/usr/bin/env node\n${common.banner.js}` } });
// Chunk names carry a content hash: start empty so that old chunks do not pile up.
rmSync('dist/local', { recursive: true, force: true });
await build({ ...common, outdir: 'dist/local', splitting: true, entryNames: 'piecework', outExtension: { '.js': '.mjs' }, plugins: [...common.plugins, installedSshCrypto] });
