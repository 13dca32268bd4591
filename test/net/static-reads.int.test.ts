import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { adoptWithStaticReads, StaticReads } from '../../src/net/static-reads.js';

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A server whose accepted sockets are adopted; resolves with the adopted socket and its reads. */
function listen(): Promise<{
  port: number;
  accepted: Promise<{ socket: Socket; reads: StaticReads | null }>;
}> {
  return new Promise((resolve) => {
    let give: (v: { socket: Socket; reads: StaticReads | null }) => void = () => undefined;
    const accepted = new Promise<{ socket: Socket; reads: StaticReads | null }>((r) => (give = r));
    server = createServer({ pauseOnConnect: true }, (s) => give(adoptWithStaticReads(s)));
    server.listen(0, '127.0.0.1', () => {
      const a = server?.address();
      resolve({ port: typeof a === 'object' && a ? a.port : 0, accepted });
    });
  });
}

describe('static-buffer socket reads', () => {
  it('an adopted socket delivers every byte in order (copied out by the sink), writes work, the server closes', async () => {
    const { port, accepted } = await listen();
    const client = connect(port, '127.0.0.1');
    const payload = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >> 12)) & 0xff;
    client.on('connect', () => client.write(payload));
    const { socket, reads } = await accepted;
    expect(reads).not.toBeNull();
    const got: Buffer[] = [];
    let have = 0;
    let calls = 0;
    const all = new Promise<void>((r) => {
      reads?.attach((bytes) => {
        calls++;
        got.push(Buffer.from(bytes)); // the static buffer is reused by the next read
        have += bytes.length;
        if (have >= payload.length) r();
      });
    });
    socket.resume();
    await all;
    expect(Buffer.concat(got).equals(payload)).toBe(true);
    expect(calls).toBeGreaterThan(1);
    const reply = new Promise<string>((r) => client.on('data', (d) => r(d.toString())));
    socket.write('bye');
    expect(await reply).toBe('bye');
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    client.end();
    await closed; // the adopted socket sees the end and closes; afterEach's server.close() returns
    client.destroy();
  });

  it('bytes that arrive before attach() are kept and delivered first; a sink returning false stops reading', async () => {
    const reads = new StaticReads();
    const { port } = await new Promise<{ port: number }>((resolve) => {
      server = createServer((s) => {
        s.write('early');
        setTimeout(() => s.end('-late'), 50);
      });
      server.listen(0, '127.0.0.1', () => {
        const a = server?.address();
        resolve({ port: typeof a === 'object' && a ? a.port : 0 });
      });
    });
    const sock = connect({ port, host: '127.0.0.1', onread: reads.onread });
    await new Promise((r) => setTimeout(r, 30));
    const got: string[] = [];
    reads.attach((b) => {
      got.push(b.toString());
    });
    await new Promise<void>((r) => sock.on('end', () => r()));
    expect(got.join('')).toBe('early-late');
    expect(got[0]).toBe('early');
    sock.destroy();
  });

  it('without targets onread.buffer is the static Buffer itself (the iSCSI connection, unchanged)', () => {
    expect(new StaticReads().onread.buffer).toBeInstanceOf(Uint8Array);
    expect(typeof new StaticReads({ targets: true }).onread.buffer).toBe('function');
  });

  it('with targets each next read lands where the target says (null: the static buffer)', async () => {
    const { port, accepted } = await new Promise<{
      port: number;
      accepted: Promise<{ socket: Socket; reads: StaticReads | null }>;
    }>((resolve) => {
      let give: (v: { socket: Socket; reads: StaticReads | null }) => void = () => undefined;
      const acc = new Promise<{ socket: Socket; reads: StaticReads | null }>((r) => (give = r));
      server = createServer({ pauseOnConnect: true }, (s) =>
        give(adoptWithStaticReads(s, { targets: true })),
      );
      server.listen(0, '127.0.0.1', () => {
        const a = server?.address();
        resolve({ port: typeof a === 'object' && a ? a.port : 0, accepted: acc });
      });
    });
    const client = connect(port, '127.0.0.1');
    const payload = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 13 + (i >> 10)) & 0xff;
    client.on('connect', () => client.write(payload));
    const { socket, reads } = await accepted;
    // The first 4 KiB through the static buffer, the rest straight into `dest`.
    const dest = Buffer.alloc(payload.length);
    let have = 0;
    let inDest = 0;
    let copied = 0;
    const all = new Promise<void>((r) => {
      reads?.attach(
        (bytes) => {
          if (bytes.buffer === dest.buffer && bytes.byteOffset === dest.byteOffset + have)
            inDest += bytes.length;
          else copied += bytes.copy(dest, have);
          have += bytes.length;
          if (have >= payload.length) r();
        },
        () => (have >= 4096 && have < dest.length ? dest.subarray(have) : null),
      );
    });
    socket.resume();
    await all;
    expect(dest.equals(payload)).toBe(true);
    expect(copied).toBeGreaterThanOrEqual(4096);
    expect(inDest).toBeGreaterThan(0);
    expect(inDest + copied).toBe(payload.length);
    client.destroy();
    socket.destroy();
  });
});
