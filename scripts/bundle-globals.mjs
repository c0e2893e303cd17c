// Injected into the bundles by scripts/bundle.mjs: the CommonJS globals that bundled CommonJS code
// reads (ssh2's poly1305 reads __dirname and __filename as soon as node-ssh loads) and an ES
// module lacks. esbuild replaces only free references, never a module's own variable of that name.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const __filename = fileURLToPath(import.meta.url);
export const __dirname = dirname(__filename);
