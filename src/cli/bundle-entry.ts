// Entry of the single-file bundle (dist/piecework.mjs) that launch copies to remote hosts.
import { runCli } from './main.js';

await runCli(process.argv.slice(2));
