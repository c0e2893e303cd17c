/** Kept equal to package.json's version by test/unit/version.test.ts (a bundle cannot read it). */
export const PACKAGE_VERSION = '0.1.0';
