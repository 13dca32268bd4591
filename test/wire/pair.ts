import { Duplex } from 'node:stream';

/** Two connected in-memory Duplex streams (no sockets, no ports). */
export function duplexPair(): [Duplex, Duplex] {
  let a!: Duplex;
  let b!: Duplex;
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
  a = mk(() => b);
  b = mk(() => a);
  return [a, b];
}
