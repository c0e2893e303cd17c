/**
 * Finding the N-th newline fast: `--lines` must count every line, and a JavaScript loop over
 * Buffer.indexOf costs ~1 s of CPU per GiB of short lines (a native call per line) — more than
 * reading and writing the data. A 256-byte WebAssembly function compares 16 bytes at a time
 * (SIMD) and counts them with popcnt: ~0.3 s per GiB, in a single call per chunk or block.
 *
 * It can only look at its own memory, so the input's read buffer lives there
 * (`allocateScanBuffer`); a block from anywhere else (stdin's stream) is scanned with indexOf.
 * The memory has a fixed size and never grows: growing would detach the buffers made over it.
 *
 * The module, compiled from this text with wabt's wat2wasm (--enable-simd):
 *
 * (module
 *   (memory (export "memory") 24 24)
 *   (global $counted (export "counted") (mut i32) (i32.const 0))
 *   ;; The position just after the need-th newline in [p, end), or -1 with `counted` = the newlines found.
 *   (func (export "nthNewline") (param $p i32) (param $end i32) (param $need i32) (result i32)
 *     (local $count i32) (local $mask i32) (local $c i32) (local $nl v128)
 *     (local.set $nl (i8x16.splat (i32.const 10)))
 *     (block $vdone
 *       (loop $v
 *         (br_if $vdone (i32.gt_u (i32.add (local.get $p) (i32.const 16)) (local.get $end)))
 *         (local.set $mask (i8x16.bitmask (i8x16.eq (v128.load (local.get $p)) (local.get $nl))))
 *         (local.set $c (i32.popcnt (local.get $mask)))
 *         (if (i32.ge_u (i32.add (local.get $count) (local.get $c)) (local.get $need))
 *           (then
 *             (block $b
 *               (loop $l
 *                 (br_if $b (i32.eq (local.get $count) (i32.sub (local.get $need) (i32.const 1))))
 *                 (local.set $mask (i32.and (local.get $mask) (i32.sub (local.get $mask) (i32.const 1))))
 *                 (local.set $count (i32.add (local.get $count) (i32.const 1)))
 *                 (br $l)))
 *             (return (i32.add (i32.add (local.get $p) (i32.ctz (local.get $mask))) (i32.const 1)))))
 *         (local.set $count (i32.add (local.get $count) (local.get $c)))
 *         (local.set $p (i32.add (local.get $p) (i32.const 16)))
 *         (br $v)))
 *     (block $tdone
 *       (loop $t
 *         (br_if $tdone (i32.ge_u (local.get $p) (local.get $end)))
 *         (if (i32.eq (i32.load8_u (local.get $p)) (i32.const 10))
 *           (then
 *             (local.set $count (i32.add (local.get $count) (i32.const 1)))
 *             (if (i32.eq (local.get $count) (local.get $need))
 *               (then (return (i32.add (local.get $p) (i32.const 1)))))))
 *         (local.set $p (i32.add (local.get $p) (i32.const 1)))
 *         (br $t)))
 *     (global.set $counted (local.get $count))
 *     (i32.const -1)))
 */

const WASM = Buffer.from(
  'AGFzbQEAAAABCAFgA39/fwF/AwIBAAUEAQEYGAYGAX8BQQALByEDBm1lbW9yeQIAB2NvdW50ZWQDAApudGhOZXdsaW5lAAAKtgEBswECA38Be0EK/Q8hBgJAA0AgAEEQaiABSw0BIAD9AAQAIAb9I/1kIQQgBGkhBSADIAVqIAJPBEACQANAIAMgAkEBa0YNASAEIARBAWtxIQQgA0EBaiEDDAALCyAAIARoakEBag8LIAMgBWohAyAAQRBqIQAMAAsLAkADQCAAIAFPDQEgAC0AAEEKRgRAIANBAWohAyADIAJGBEAgAEEBag8LCyAAQQFqIQAMAAsLIAMkAEF/Cw==',
  'base64',
);
const NEWLINE = 10;

interface ScanExports {
  memory: { buffer: ArrayBuffer };
  counted: { value: number };
  nthNewline(start: number, end: number, need: number): number;
}

/** The little of WebAssembly used here (the project's TypeScript libs do not declare it). */
const { WebAssembly: wasmApi } = globalThis as unknown as {
  WebAssembly: { Instance: new (module: unknown) => { exports: unknown }; Module: new (bytes: Uint8Array) => unknown };
};

let scanner: ScanExports | undefined;
let allocated = 0;

function loadScanner(): ScanExports {
  scanner ??= new wasmApi.Instance(new wasmApi.Module(WASM)).exports as ScanExports;
  return scanner;
}

/** A buffer the fast scan can read; a plain one when the scanner's memory is used up. */
export function allocateScanBuffer(size: number): Buffer {
  const { memory } = loadScanner();
  // Fixed size (24 pages of 64 KiB: the 1 MiB read buffer and room to spare).
  if (allocated + size > memory.buffer.byteLength) return Buffer.allocUnsafeSlow(size);
  const buffer = Buffer.from(memory.buffer, allocated, size);
  allocated += size;
  return buffer;
}

/** Whether `nthNewline` scans this buffer with the fast scan. */
export function isScanBuffer(buffer: Buffer): boolean {
  return scanner !== undefined && buffer.buffer === scanner.memory.buffer;
}

/**
 * The index just after the `need`-th newline of `block` from `from` on, or, when the block
 * has fewer, `-1 - count` (count = the newlines it has from `from` on).
 */
export function nthNewline(block: Buffer, from: number, need: number): number {
  const wasm = scanner;
  if (wasm && block.buffer === wasm.memory.buffer) {
    const end = wasm.nthNewline(block.byteOffset + from, block.byteOffset + block.length, need);
    return end >= 0 ? end - block.byteOffset : -1 - wasm.counted.value;
  }
  let position = from;
  for (let count = 0; count < need; count++) {
    const nl = block.indexOf(NEWLINE, position);
    if (nl === -1) return -1 - count;
    position = nl + 1;
  }
  return position;
}
