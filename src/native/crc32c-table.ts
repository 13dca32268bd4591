/**
 * Pure-TS CRC32C (Castagnoli, reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF),
 * slice-by-8. This is both the fallback when the native addon is missing and the test oracle
 * for the hardware path.
 */

const POLY = 0x82f63b78;

/** T[k][b]: CRC of byte b followed by k zero bytes; stored as 8 consecutive 256-entry tables. */
const T: Uint32Array = (() => {
  const t = new Uint32Array(8 * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c >>> 0;
  }
  for (let b = 0; b < 256; b++) {
    let c = t[b]!;
    for (let k = 1; k < 8; k++) {
      c = (c >>> 8) ^ t[c & 0xff]!;
      t[k * 256 + b] = c >>> 0;
    }
  }
  return t;
})();

/**
 * CRC32C of `data`. `seed` is a previous result, so that
 * `crc32cTable(b, crc32cTable(a)) === crc32cTable(concat(a, b))`. Returns an unsigned 32-bit number.
 */
export function crc32cTable(data: Uint8Array, seed = 0): number {
  let crc = ~seed | 0;
  const len = data.length;
  let i = 0;
  const end8 = len - (len & 7);
  while (i < end8) {
    const lo = crc ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24));
    crc =
      T[7 * 256 + (lo & 0xff)]! ^
      T[6 * 256 + ((lo >>> 8) & 0xff)]! ^
      T[5 * 256 + ((lo >>> 16) & 0xff)]! ^
      T[4 * 256 + (lo >>> 24)]! ^
      T[3 * 256 + data[i + 4]!]! ^
      T[2 * 256 + data[i + 5]!]! ^
      T[256 + data[i + 6]!]! ^
      T[data[i + 7]!]!;
    i += 8;
  }
  while (i < len) {
    crc = (crc >>> 8) ^ T[(crc ^ data[i]!) & 0xff]!;
    i++;
  }
  return ~crc >>> 0;
}
