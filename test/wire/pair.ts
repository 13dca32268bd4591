import { Duplex } from 'node:stream';

/** Two connected in-memory Duplex streams (no sockets, no ports). */
export function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const mk = (other: () => Duplex): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        other().push(Buffer.from(chunk));
        cb();
      },
      final(cb) {
        other().push(null);
        cb();
      },
    });
  const a = mk(() => ends[1]!);
  const b = mk(() => ends[0]!);
  ends.push(a, b);
  return [a, b];
}
