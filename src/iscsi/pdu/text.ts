/**
 * Text key=value segments (RFC 7143 §6.1): UTF-8 `key=value` pairs, each NUL-terminated.
 * Keys ≤ 63 bytes, values ≤ 255 bytes (8192 for the few keys allowed to be longer), duplicate
 * keys rejected. Returns a typed result, never throws.
 */

export const MAX_KEY_LENGTH = 63;
export const MAX_VALUE_LENGTH = 255;
/** Keys whose values may be long (RFC 7143 §6.1: up to 8192 bytes). */
const LONG_VALUE_KEYS: ReadonlySet<string> = new Set(['CHAP_C', 'CHAP_R', 'TargetAddress', 'SendTargets']);
export const MAX_LONG_VALUE_LENGTH = 8192;

export type TextPairs = [string, string][];

export type TextParseResult =
  | { readonly ok: true; readonly pairs: TextPairs }
  | {
      readonly ok: false;
      readonly code:
        'no-separator' | 'key-too-long' | 'value-too-long' | 'duplicate-key' | 'bad-key' | 'bad-utf8';
      readonly key?: string;
      readonly message: string;
    };

const KEY_RE = /^[A-Za-z0-9.\-+@_]+$/;

/** Parse a text segment. `allowDuplicates` is for responses that list targets (SendTargets). */
export function parseText(data: Buffer, opts: { allowDuplicates?: boolean } = {}): TextParseResult {
  const pairs: TextPairs = [];
  const seen = new Set<string>();
  let start = 0;
  const decoder = new TextDecoder('utf-8', { fatal: true });
  while (start < data.length) {
    let end = data.indexOf(0, start);
    if (end < 0) end = data.length; // tolerate a missing final NUL
    if (end === start) {
      start++;
      continue;
    }
    let s: string;
    try {
      s = decoder.decode(data.subarray(start, end));
    } catch {
      return { ok: false, code: 'bad-utf8', message: 'text segment is not UTF-8' };
    }
    const eq = s.indexOf('=');
    if (eq < 0) return { ok: false, code: 'no-separator', message: `no '=' in "${s.slice(0, 64)}"` };
    const key = s.slice(0, eq);
    const value = s.slice(eq + 1);
    if (key.length === 0 || !KEY_RE.test(key)) {
      return { ok: false, code: 'bad-key', key, message: `bad key "${key.slice(0, 64)}"` };
    }
    if (Buffer.byteLength(key) > MAX_KEY_LENGTH) {
      return { ok: false, code: 'key-too-long', key, message: `key too long: ${key.slice(0, 64)}` };
    }
    const maxV = LONG_VALUE_KEYS.has(key) ? MAX_LONG_VALUE_LENGTH : MAX_VALUE_LENGTH;
    if (Buffer.byteLength(value) > maxV) {
      return { ok: false, code: 'value-too-long', key, message: `value of ${key} too long` };
    }
    if (!opts.allowDuplicates && seen.has(key)) {
      return { ok: false, code: 'duplicate-key', key, message: `duplicate key ${key}` };
    }
    seen.add(key);
    pairs.push([key, value]);
    start = end + 1;
  }
  return { ok: true, pairs };
}

export function encodeText(pairs: readonly (readonly [string, string])[]): Buffer {
  if (pairs.length === 0) return Buffer.alloc(0);
  return Buffer.from(pairs.map(([k, v]) => `${k}=${v}\0`).join(''), 'utf8');
}
