// The store contract on a local folder (the POSIX store).
import { after } from 'node:test';
import path from 'node:path';
import { PosixJobStore } from '../../src/core/store/posix-store.js';
import { runCleanups } from '../helpers/cleanup.js';
import { makeTempDir } from '../helpers/tmp.js';
import { storeContract } from './contract.js';

let root: string | undefined;
after(() => runCleanups());

storeContract(() => {
  root ??= makeTempDir('store-local');
  return {
    open: (address) => Promise.resolve(new PosixJobStore(address)),
    newJob: (name) => ({ address: path.join(root!, name), backing: path.join(root!, name) }),
    closeEndsOperations: false,
    stagesCopies: false,
  };
});
