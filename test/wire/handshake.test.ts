import { describe, expect, it } from 'vitest';
import { encodeFrameBuffer, PacketType } from '../../src/wire/codec.js';
import { type HandshakeOptions, handshake, WireConnection } from '../../src/wire/connection.js';
import { duplexPair } from './pair.js';

function pair(): [WireConnection, WireConnection] {
  const [a, b] = duplexPair();
  return [new WireConnection(a), new WireConnection(b)];
}

const base = { cluster: 'lab', resource: 'r0', secret: 's3cret', timeoutMs: 2000 };
const A: HandshakeOptions = { ...base, nodeId: 0, peerId: 1 };
const B: HandshakeOptions = { ...base, nodeId: 1, peerId: 0 };

describe('handshake', () => {
  it('authenticates both ways with the same secret, then streams frames', async () => {
    const [a, b] = pair();
    const [ra, rb] = await Promise.all([handshake(a, A), handshake(b, B)]);
    expect(ra.peerId).toBe(1);
    expect(rb.peerId).toBe(0);
    const got = new Promise((r) => b.on('frame', (f) => r(f.packet.type)));
    b.start();
    a.send({ type: PacketType.PING });
    expect(await got).toBe(PacketType.PING);
  });

  it('refuses a wrong secret with a clear reason on both sides', async () => {
    const [a, b] = pair();
    const res = await Promise.allSettled([handshake(a, A), handshake(b, { ...B, secret: 'other' })]);
    for (const r of res) {
      expect(r.status).toBe('rejected');
      const e = (r as PromiseRejectedResult).reason as Error & { code: string };
      expect(e.code === 'AUTH_FAILED' || e.code === 'REFUSED').toBe(true);
      expect(e.message).toMatch(/shared secret/);
    }
  });

  it('refuses a cluster, resource, node id or version mismatch', async () => {
    for (const bad of [{ cluster: 'x' }, { resource: 'r1' }, { nodeId: 2 }, { version: 99 }]) {
      const [a, b] = pair();
      const res = await Promise.allSettled([handshake(a, A), handshake(b, { ...B, ...bad })]);
      expect(res.every((r) => r.status === 'rejected')).toBe(true);
      const msg = ((res[0] as PromiseRejectedResult).reason as Error).message;
      expect(msg).toMatch(/mismatch|unexpected node id|expected node id/);
    }
  });

  it('drops a connection that sends garbage framing', async () => {
    const [sa, sb] = duplexPair();
    const a = new WireConnection(sa, 1024);
    const p = handshake(a, A);
    const big = encodeFrameBuffer({ type: PacketType.HELLO }, Buffer.alloc(4096));
    sb.write(big);
    await expect(p).rejects.toMatchObject({ code: 'FRAME_TOO_LARGE' });
    expect(a.closed).toBe(true);
  });

  it('times out a silent peer', async () => {
    const [sa] = duplexPair();
    await expect(handshake(new WireConnection(sa), { ...A, timeoutMs: 50 })).rejects.toMatchObject({
      code: 'TIMEOUT',
    });
  });
});
