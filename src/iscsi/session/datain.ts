/**
 * Data-In planning and residuals: pure functions used by the session to turn a ScsiResult into
 * Data-In PDUs and a status, per the initiator's MaxRecvDataSegmentLength and MaxBurstLength.
 */

export interface Residual {
  readonly overflow: boolean;
  readonly underflow: boolean;
  readonly count: number;
}

export const NO_RESIDUAL: Residual = { overflow: false, underflow: false, count: 0 };

/** Residual of a transfer: what the command moves (`actual`) vs what the initiator expects. */
export function residualOf(actual: number, expected: number): Residual {
  if (actual > expected) return { overflow: true, underflow: false, count: actual - expected };
  if (actual < expected) return { overflow: false, underflow: true, count: expected - actual };
  return NO_RESIDUAL;
}

export interface DataInSegment {
  readonly offset: number;
  readonly length: number;
  /** Last PDU of a burst (F bit). */
  readonly final: boolean;
  /** Last PDU of the command. */
  readonly last: boolean;
}

/**
 * Split `length` bytes into Data-In PDUs: each ≤ maxSeg, bursts ≤ maxBurst (F at each burst's
 * end), the last PDU of the command flagged `last`.
 */
export function planDataIn(length: number, maxSeg: number, maxBurst: number): DataInSegment[] {
  const out: DataInSegment[] = [];
  let offset = 0;
  while (offset < length) {
    const burstEnd = Math.min(length, offset + maxBurst);
    while (offset < burstEnd) {
      const n = Math.min(maxSeg, burstEnd - offset);
      const end = offset + n;
      out.push({ offset, length: n, final: end === burstEnd, last: end === length });
      offset = end;
    }
  }
  return out;
}

/** Split a write of `length` bytes starting at `offset` into R2T bursts of ≤ maxBurst. */
export function planR2T(offset: number, end: number, maxBurst: number): { offset: number; length: number }[] {
  const out: { offset: number; length: number }[] = [];
  while (offset < end) {
    const n = Math.min(maxBurst, end - offset);
    out.push({ offset, length: n });
    offset += n;
  }
  return out;
}
