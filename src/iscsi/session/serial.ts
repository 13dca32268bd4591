/** 32-bit serial number arithmetic (RFC 1982) for CmdSN/StatSN/DataSN. */
export function snLt(a: number, b: number): boolean {
  return a !== b && ((a - b) | 0) < 0;
}
export function snGt(a: number, b: number): boolean {
  return a !== b && ((a - b) | 0) > 0;
}
export function snAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}
/** a ∈ [lo, hi] in serial order. */
export function snInWindow(a: number, lo: number, hi: number): boolean {
  return !snLt(a, lo) && !snGt(a, hi);
}
