import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { DataFlags, encodeFrameBuffer, type PacketInit, PacketType } from '../../src/wire/codec.js';
import { WireConnection } from '../../src/wire/connection.js';

/**
 * A write end that, like a socket short of buffer space, keeps each chunk it was given and
 * reads it only later (a setImmediate after the write), then completes the write: a sender
 * that reused a chunk's memory before its write callback would corrupt what arrives.
 */
function lazySink(): { stream: Duplex; received: () => Buffer } {
  const got: Buffer[] = [];
  const stream = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      setImmediate(() => {
        got.push(Buffer.from(chunk));
        cb();
      });
    },
  });
  return { stream, received: () => Buffer.concat(got) };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('WireConnection sending', () => {
  it('sends the exact frames of send / sendData / sendAck in order, calls onFlushed in order once written', async () => {
    const sink = lazySink();
    const conn = new WireConnection(sink.stream);
    const expected: Buffer[] = [];
    const flushed: number[] = [];
    let seq = 0;
    let id = 0;
    // Several rounds of one tick each, each sent while the previous rounds are still being
    // "written".
    for (let round = 0; round < 6; round++) {
      for (let i = 0; i < 90; i++) {
        id++;
        seq++;
        const kind = (round * 90 + i) % 9;
        if (kind === 0) {
          const p: PacketInit = { type: PacketType.PING };
          conn.send(p);
          expected.push(encodeFrameBuffer(p));
        } else if (kind === 1) {
          conn.sendAck(PacketType.WRITE_ACK, id);
          expected.push(encodeFrameBuffer({ type: PacketType.WRITE_ACK, id }));
        } else if (kind === 2) {
          // Not scalar-only: encoded by protobufjs.
          const p: PacketInit = { type: PacketType.NEG_ACK, id, reason: `no ${id}` };
          conn.send(p);
          expected.push(encodeFrameBuffer(p));
        } else {
          const size = kind === 3 ? 64 * 1024 : kind === 4 ? 8192 : 4096;
          const payload = Buffer.alloc(size, id & 0xff);
          const offset = id * 4096;
          const flags = DataFlags.WANT_WRITE_ACK | (kind === 5 ? DataFlags.FUA : 0);
          const me = id;
          conn.sendData(id, seq, offset, size, flags, payload, (err) => {
            expect(err ?? null).toBeNull();
            flushed.push(me);
          });
          expected.push(
            encodeFrameBuffer({ type: PacketType.DATA, id, seq, offset, length: size, flags }, payload),
          );
        }
      }
      await tick();
    }
    const all = Buffer.concat(expected);
    while (sink.received().length < all.length) await tick();
    expect(sink.received().equals(all)).toBe(true);
    expect(conn.bytesOut).toBe(all.length);
    const dataIds = flushed.slice().sort((a, b) => a - b);
    expect(flushed).toEqual(dataIds);
    expect(flushed.length).toBe(6 * 60);
    conn.destroy();
  });

  it('onFlushed gets an error when the connection is closed, before or after the frame was queued', async () => {
    const [a] = [
      new Duplex({
        read() {},
        write(_c, _e, cb) {
          setImmediate(cb);
        },
      }),
    ];
    const conn = new WireConnection(a);
    const errs: (Error | null | undefined)[] = [];
    conn.sendData(1, 1, 0, 4096, 0, Buffer.alloc(4096), (e) => errs.push(e));
    conn.destroy();
    conn.sendData(2, 2, 0, 4096, 0, Buffer.alloc(4096), (e) => errs.push(e));
    expect(conn.sendAck(PacketType.WRITE_ACK, 3)).toBe(false);
    for (let i = 0; i < 5 && errs.length < 2; i++) await tick();
    expect(errs.length).toBe(2);
    expect(errs.every((e) => e instanceof Error)).toBe(true);
  });
});
