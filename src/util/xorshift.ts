/**
 * A small deterministic PRNG (xorshift32) for load generation and tests: numbers in [0, 1). The
 * same seed gives the same sequence; seed 0 (which would stay 0) is taken as 1.
 */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}
