import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import {
  ackPrefixLength,
  DataFlags,
  dataPrefixLength,
  decodeHeader,
  encodeFrame,
  encodeFrameBuffer,
  encodeHeader,
  FrameReader,
  PACKET_NAMES,
  PacketType,
  PayloadPool,
  WireError,
  writeAckPrefix,
  writeDataPrefix,
} from '../../src/wire/codec.js';
import { REPL_DESCRIPTOR } from '../../src/wire/descriptor.js';
import { xorshift32 } from '../../src/util/xorshift.js';

describe('descriptor', () => {
  it('matches repl.proto (regenerate src/wire/descriptor.ts when this fails)', () => {
    const text = readFileSync(new URL('../../src/wire/repl.proto', import.meta.url), 'utf8');
    const json = protobuf.parse(text).root.toJSON();
    expect(JSON.parse(JSON.stringify(json))).toEqual(JSON.parse(JSON.stringify(REPL_DESCRIPTOR)));
  });
});

describe('codec', () => {
  it('round-trips every packet type with header fields', () => {
    for (const t of Object.values(PacketType)) {
      const h = encodeHeader({
        type: t,
        id: 7,
        offset: 2 ** 40 + 4096,
        length: 65536,
        flags: DataFlags.FUA,
        seq: 9,
      });
      const p = decodeHeader(h);
      expect(p.type).toBe(t);
      expect(p.id).toBe(7);
      expect(p.offset).toBe(2 ** 40 + 4096);
      expect(p.length).toBe(65536);
      expect(p.flags).toBe(DataFlags.FUA);
      expect(p.seq).toBe(9);
      expect(PACKET_NAMES[t]).toBeTypeOf('string');
    }
  });

  it('round-trips params', () => {
    const params = {
      currentUuid: 'a1b2c3d4e5f60718',
      bitmapUuid: '0000000000000000',
      history: ['1111111111111111', '2222222222222222'],
      role: 1,
      disk: 5,
      sizeBytes: 1 << 30,
      dirtyBits: 12345,
      protocol: 2,
      discardMyData: true,
      crashedPrimary: false,
      resolveConflicts: true,
      flags: 0,
      hasQuorum: true,
      primarySeen: 5,
      weakNodes: 4,
    };
    const p = decodeHeader(encodeHeader({ type: PacketType.PARAMS, params }));
    expect(p.params?.currentUuid).toBe(params.currentUuid);
    expect(p.params?.history).toEqual(params.history);
    expect(p.params?.dirtyBits).toBe(12345);
    expect(p.params?.discardMyData).toBe(true);
    expect(p.params?.weakNodes).toBe(4);
  });

  it('rejects unknown packet types and garbage', () => {
    expect(() => decodeHeader(encodeHeader({ type: 99 as PacketType }))).toThrow(WireError);
    expect(() => decodeHeader(Buffer.from([0xff, 0xff, 0xff]))).toThrow(WireError);
  });
});

describe('FrameReader', () => {
  const payload = Buffer.alloc(10000, 0xab);
  const f1 = encodeFrameBuffer(
    { type: PacketType.DATA, id: 1, offset: 4096, length: payload.length },
    payload,
  );
  const f2 = encodeFrameBuffer({ type: PacketType.PING });

  it('reassembles frames from arbitrary chunking', () => {
    const all = Buffer.concat([f1, f2, f1]);
    for (const step of [1, 3, 7, 8, 9, 100, 4096, all.length]) {
      const r = new FrameReader();
      const got = [];
      for (let i = 0; i < all.length; i += step) got.push(...r.push(all.subarray(i, i + step)));
      expect(got.map((f) => f.packet.type)).toEqual([PacketType.DATA, PacketType.PING, PacketType.DATA]);
      expect(got[0]?.payload.equals(payload)).toBe(true);
      expect(got[1]?.payload.length).toBe(0);
      expect(r.buffered).toBe(0);
      expect(r.bytesIn).toBe(all.length);
    }
  });

  it('hands out the payload as a slice of the receive buffer (no copy) when the frame is in one chunk', () => {
    const r = new FrameReader();
    const [f] = r.push(f1);
    expect(f?.payload.buffer).toBe(f1.buffer);
  });

  it('rejects oversized frames, bad header lengths, and stays poisoned', () => {
    const r = new FrameReader(1024);
    expect(() => r.push(f1)).toThrow(/frame length/);
    expect(() => r.push(f2)).toThrow(WireError);
    const bad = Buffer.alloc(16);
    bad.writeUInt32BE(12, 0);
    bad.writeUInt32BE(50, 4); // header longer than the frame
    expect(() => new FrameReader().push(bad)).toThrow(expect.objectContaining({ code: 'BAD_HEADER_LENGTH' }));
    const zero = Buffer.alloc(8);
    zero.writeUInt32BE(2, 0);
    expect(() => new FrameReader().push(zero)).toThrow(expect.objectContaining({ code: 'FRAME_TOO_LARGE' }));
  });
});

describe('PayloadPool', () => {
  it('reuses what it lent once it is given back, ignores foreign and repeated gives, keeps at most maxBytes', () => {
    const pool = new PayloadPool(3 * 8192);
    const a = pool.take(8192);
    const b = pool.take(8192);
    expect(a).not.toBe(b);
    expect(a.length).toBe(8192);
    pool.give(Buffer.alloc(8192)); // not lent by this pool
    expect(pool.freeBytes).toBe(0);
    pool.give(a);
    pool.give(a); // twice: counted once
    expect(pool.freeBytes).toBe(8192);
    expect(pool.take(4096)).not.toBe(a); // other sizes get their own buffers
    expect(pool.take(8192)).toBe(a);
    expect(pool.freeBytes).toBe(0);
    const c = pool.take(16384);
    pool.give(b);
    pool.give(c);
    expect(pool.freeBytes).toBe(8192 + 16384);
    const d = pool.take(16384 * 2);
    pool.give(d); // would exceed maxBytes: dropped
    expect(pool.freeBytes).toBe(8192 + 16384);
    expect(pool.take(16384)).toBe(c);
  });

  it('makes room for a size in use by dropping buffers of the size least recently taken', () => {
    const pool = new PayloadPool(4 * 4096);
    const small = [pool.take(4096), pool.take(4096), pool.take(4096), pool.take(4096)];
    for (const b of small) pool.give(b);
    expect(pool.freeBytes).toBe(4 * 4096); // full of 4 KiB buffers (a burst of small writes)
    const big = pool.take(8192);
    pool.give(big); // two 4 KiB buffers make room
    expect(pool.freeBytes).toBe(4 * 4096);
    expect(pool.take(8192)).toBe(big);
    expect(pool.take(4096)).toBe(small[1]);
    expect(pool.take(4096)).toBe(small[0]);
    expect(pool.freeBytes).toBe(0);
    // A full pool of the returning size itself: the returning buffer is dropped instead.
    const same = [pool.take(8192), pool.take(8192), pool.take(8192)];
    for (const b of same) pool.give(b);
    expect(pool.freeBytes).toBe(2 * 8192);
    expect(pool.take(8192)).toBe(same[1]);
  });

  it('FrameReader: a payload assembled from several chunks comes from the pool and is reused after recycle()', () => {
    const data = Buffer.alloc(65536, 0x5a);
    const frame = encodeFrameBuffer(
      { type: PacketType.RS_DATA, id: 1, offset: 0, length: data.length },
      data,
    );
    const r = new FrameReader();
    const feed = (): Buffer => {
      const got = [];
      for (let i = 0; i < frame.length; i += 20000) got.push(...r.push(frame.subarray(i, i + 20000)));
      expect(got).toHaveLength(1);
      const pl = (got[0] as { payload: Buffer }).payload;
      expect(pl.equals(data)).toBe(true);
      return pl;
    };
    const first = feed();
    expect(feed()).not.toBe(first); // not given back yet: a second buffer
    r.recycle(first);
    const third = feed();
    expect(third).toBe(first);
    // a payload that sat in one chunk is a slice of it: recycling it does nothing
    const [whole] = r.push(frame);
    r.recycle((whole as { payload: Buffer }).payload);
    expect(r.pool.freeBytes).toBe(0);
  });
});

describe('FrameReader.pushCopy (bytes valid only during the call)', () => {
  const payload = Buffer.alloc(10000, 0xab);
  const block = Buffer.alloc(65536, 0x3c);
  const frames = [
    encodeFrameBuffer({ type: PacketType.DATA, id: 1, offset: 4096, length: payload.length }, payload),
    encodeFrameBuffer({ type: PacketType.PING }),
    encodeFrameBuffer({ type: PacketType.RS_DATA, id: 2, offset: 0, length: block.length }, block),
    encodeFrameBuffer({ type: PacketType.WRITE_ACK, id: 3 }),
  ];
  const all = Buffer.concat(frames);
  /** Feeds `all` through one scratch buffer that is overwritten after every call, like Node's onread. */
  const feed = (r: FrameReader, step: number) => {
    const scratch = Buffer.alloc(step);
    const got = [];
    for (let i = 0; i < all.length; i += step) {
      const n = all.copy(scratch, 0, i, Math.min(all.length, i + step));
      got.push(...r.pushCopy(scratch.subarray(0, n)));
      scratch.fill(0xee);
    }
    return got;
  };

  it('reassembles frames from arbitrary chunking and keeps no reference to the input', () => {
    for (const step of [1, 3, 7, 8, 9, 100, 4096, 65536, all.length]) {
      const r = new FrameReader();
      const got = feed(r, step);
      expect(got.map((f) => f.packet.type)).toEqual([
        PacketType.DATA,
        PacketType.PING,
        PacketType.RS_DATA,
        PacketType.WRITE_ACK,
      ]);
      expect(got[0]?.payload.equals(payload)).toBe(true);
      expect(got[1]?.payload.length).toBe(0);
      expect(got[2]?.payload.equals(block)).toBe(true);
      expect(got[2]?.packet.id).toBe(2);
      expect(got[3]?.packet.id).toBe(3);
      expect(r.buffered).toBe(0);
      expect(r.bytesIn).toBe(all.length);
    }
  });

  it('decodes headers in place or copied out alike: every chunking gives what push() gives', () => {
    const rand = xorshift32(0xc0ffee);
    const parts: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const k = i % 5;
      const pl = Buffer.alloc(k === 0 ? 4096 : k === 1 ? 700 : 0, i & 0xff);
      parts.push(
        k === 2
          ? encodeFrameBuffer({ type: PacketType.NEG_ACK, id: i, reason: `r${i}` }) // not scalar-only
          : k === 3
            ? encodeFrameBuffer({ type: PacketType.WRITE_ACK, id: i * 1000003 })
            : encodeFrameBuffer(
                { type: PacketType.DATA, id: i, seq: i, offset: i * 4096, length: pl.length, flags: 3 },
                pl,
              ),
      );
    }
    const stream = Buffer.concat(parts);
    const ref = new FrameReader().push(Buffer.from(stream));
    const norm = (fs: { packet: object; payload: Buffer }[]) =>
      fs.map((f) => ({ ...f.packet, payload: f.payload.toString('hex') }));
    for (let round = 0; round < 20; round++) {
      const r = new FrameReader();
      const got = [];
      const scratch = Buffer.alloc(stream.length);
      for (let at = 0; at < stream.length;) {
        const n = Math.min(stream.length - at, 1 + Math.floor(rand() * (round < 10 ? 64 : 20000)));
        stream.copy(scratch, 0, at, at + n);
        got.push(...r.pushCopy(scratch.subarray(0, n)));
        scratch.fill(0xee, 0, n);
        at += n;
      }
      expect(norm(got)).toEqual(norm(ref));
      expect(r.bytesIn).toBe(stream.length);
    }
    // An unknown type in a header that arrives whole is refused like one that arrives in pieces.
    const bad = encodeFrameBuffer({ type: PacketType.WRITE_ACK, id: 1 });
    bad[9] = 99; // the type's varint
    expect(() => new FrameReader().pushCopy(bad)).toThrow(
      expect.objectContaining({ code: 'UNKNOWN_PACKET' }),
    );
    const r2 = new FrameReader();
    r2.pushCopy(bad.subarray(0, 9));
    expect(() => r2.pushCopy(bad.subarray(9))).toThrow(expect.objectContaining({ code: 'UNKNOWN_PACKET' }));
  });

  it('puts block payloads in pooled memory that recycle() makes reusable', () => {
    const r = new FrameReader();
    const first = feed(r, 5000)[2]?.payload as Buffer;
    r.recycle(first);
    expect(r.pool.freeBytes).toBe(block.length);
    const again = feed(r, 7000)[2]?.payload as Buffer;
    expect(again).toBe(first);
    expect(again.equals(block)).toBe(true);
  });

  it('rejects bad lengths like push() and stays poisoned; the two modes do not mix', () => {
    const r = new FrameReader(1024);
    expect(() => r.pushCopy(frames[0] as Buffer)).toThrow(/frame length/);
    expect(() => r.pushCopy(frames[1] as Buffer)).toThrow(WireError);
    const bad = Buffer.alloc(16);
    bad.writeUInt32BE(12, 0);
    bad.writeUInt32BE(50, 4);
    expect(() => new FrameReader().pushCopy(bad)).toThrow(
      expect.objectContaining({ code: 'BAD_HEADER_LENGTH' }),
    );
    const m = new FrameReader();
    m.pushCopy((frames[0] as Buffer).subarray(0, 20));
    expect(() => m.push(frames[1] as Buffer)).toThrow(/mixed/);
  });
});

describe('FrameReader.readTarget (socket reads straight into the payload)', () => {
  const big = Buffer.alloc(256 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 9)) & 0xff;
  const small = Buffer.alloc(4096, 0x5a);
  const all = Buffer.concat([
    encodeFrameBuffer({ type: PacketType.DATA, id: 1, offset: 0, length: big.length }, big),
    encodeFrameBuffer({ type: PacketType.DATA, id: 2, offset: 0, length: small.length }, small),
    encodeFrameBuffer({ type: PacketType.WRITE_ACK, id: 3 }),
    encodeFrameBuffer({ type: PacketType.DATA, id: 4, offset: 0, length: big.length }, big),
  ]);

  /**
   * What the socket does with StaticReads targets: each read of up to `step` bytes lands in the
   * reader's target when it offers one (`min`), else in a scratch buffer that is clobbered after.
   */
  const feed = (r: FrameReader, step: number, min: number) => {
    const scratch = Buffer.alloc(step);
    const got = [];
    let targeted = 0;
    for (let at = 0; at < all.length;) {
      const t = r.readTarget(min);
      const into = t ?? scratch;
      const n = all.copy(into, 0, at, Math.min(all.length, at + Math.min(step, into.length)));
      if (t !== null) targeted += n;
      at += n;
      got.push(...r.pushCopy(into.subarray(0, n)));
      scratch.fill(0xee);
    }
    return { got, targeted };
  };

  it('offers the rest of a payload once min bytes of it are missing; frames come out intact', () => {
    for (const step of [1000, 4096, 65536, 300_000]) {
      const r = new FrameReader();
      const { got, targeted } = feed(r, step, 32 * 1024);
      expect(got.map((f) => f.packet.id)).toEqual([1, 2, 3, 4]);
      expect(got[0]?.payload.equals(big)).toBe(true);
      expect(got[1]?.payload.equals(small)).toBe(true);
      expect(got[3]?.payload.equals(big)).toBe(true);
      expect(r.bytesIn).toBe(all.length);
      expect(r.bytesInPlace).toBe(targeted);
      if (step < big.length) expect(targeted).toBeGreaterThan(big.length); // most of both big payloads
      // Never past a payload: the next frame's prefix always goes through the static buffer.
      expect(targeted).toBeLessThanOrEqual(2 * big.length);
    }
  });

  it('offers nothing for small payloads, inside a prefix or header, or between frames', () => {
    const r = new FrameReader();
    expect(r.readTarget(1)).toBeNull();
    const f = encodeFrameBuffer({ type: PacketType.DATA, id: 9, offset: 0, length: small.length }, small);
    r.pushCopy(f.subarray(0, 4));
    expect(r.readTarget(1)).toBeNull(); // in the prefix
    r.pushCopy(f.subarray(4, 10));
    expect(r.readTarget(1)).toBeNull(); // in the header
    const hdrEnd = f.length - small.length;
    r.pushCopy(f.subarray(10, hdrEnd + 100));
    expect(r.readTarget(32 * 1024)).toBeNull(); // 3,996 bytes missing < min
    const t = r.readTarget(1) as Buffer;
    expect(t.length).toBe(small.length - 100);
    f.copy(t, 0, hdrEnd + 100);
    const out = r.pushCopy(t);
    expect(out[0]?.payload.equals(small)).toBe(true);
    expect(r.bytesInPlace).toBe(small.length - 100);
    expect(r.readTarget(1)).toBeNull();
  });
});

describe('hot-path header codec (scalar-only packets, byte-identical to protobufjs)', () => {
  const root = protobuf.Root.fromJSON(REPL_DESCRIPTOR as unknown as protobuf.INamespace);
  const Proto = root.lookupType('lunar.repl.Packet');
  const rand = xorshift32(0x1234567);
  const u32 = (): number => {
    const r = rand();
    return r < 0.3 ? 0 : r < 0.6 ? Math.floor(rand() * 200) : Math.floor(rand() * 2 ** 32);
  };
  const types = Object.values(PacketType);
  const scalarInit = () => {
    const p: Record<string, number> = { type: types[Math.floor(rand() * types.length)] as number };
    for (const k of ['id', 'length', 'flags', 'seq', 'value']) if (rand() < 0.6) p[k] = u32();
    if (rand() < 0.6)
      p['offset'] = rand() < 0.5 ? Math.floor(rand() * 2 ** 53) : Math.floor(rand() * 1e9) * 4096;
    return p;
  };

  it('encodes exactly the bytes protobufjs does, and decodes them to the same fields', () => {
    for (let i = 0; i < 1500; i++) {
      const p = scalarInit();
      const fast = Buffer.from(encodeHeader(p as never));
      const ref = Buffer.from(Proto.encode(p).finish());
      expect(fast.toString('hex')).toBe(ref.toString('hex'));
      const d = decodeHeader(fast);
      const r = Proto.decode(ref) as unknown as Record<string, number>;
      for (const k of ['type', 'id', 'offset', 'length', 'flags', 'seq', 'value'] as const) {
        expect(d[k]).toBe(r[k]);
        expect(d[k]).toBe(p[k] ?? 0);
      }
      expect(d.hello).toBeNull();
      expect(d.params).toBeNull();
      expect(d.auth).toBeNull();
      expect(d.reason).toBe('');
      expect(d.digest.length).toBe(0);
      // The frame prefix carries the same header.
      const [prefix, body] = encodeFrame(p as never, Buffer.alloc(3));
      expect(prefix.readUInt32BE(4)).toBe(ref.length);
      expect(prefix.readUInt32BE(0)).toBe(4 + ref.length + 3);
      expect(prefix.subarray(8).equals(ref)).toBe(true);
      expect(body?.length).toBe(3);
    }
  });

  it('packets with other fields, long varints and unknown fields go through protobufjs', () => {
    const withDigest = encodeHeader({ type: PacketType.RS_DIGEST, id: 3, digest: new Uint8Array([1, 2, 3]) });
    expect(
      Buffer.from(withDigest).equals(
        Buffer.from(Proto.encode({ type: 22, id: 3, digest: [1, 2, 3] }).finish()),
      ),
    ).toBe(true);
    expect([...decodeHeader(withDigest).digest]).toEqual([1, 2, 3]);
    const reason = decodeHeader(encodeHeader({ type: PacketType.NEG_ACK, id: 9, reason: 'disk gone' }));
    expect(reason.reason).toBe('disk gone');
    expect(reason.id).toBe(9);
    // id as a 10-byte varint (a negative int32 written by another encoder): protobufjs keeps the low 32 bits.
    const long = Buffer.from([0x08, 0x0c, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    expect(decodeHeader(long).id).toBe((Proto.decode(long) as unknown as { id: number }).id);
    // An unknown field (number 20, varint) is skipped like protobufjs does.
    const unknown = Buffer.from([0x08, 0x0c, 0xa0, 0x01, 0x05, 0x10, 0x07]);
    expect(decodeHeader(unknown)).toMatchObject({ type: 12, id: 7 });
  });

  it('garbage: the fast path and protobufjs agree on every truncation of valid headers', () => {
    for (let i = 0; i < 200; i++) {
      const h = Buffer.from(encodeHeader(scalarInit() as never));
      for (let cut = 0; cut < h.length; cut++) {
        const part = h.subarray(0, cut);
        let ref: unknown;
        try {
          ref = Proto.decode(part);
        } catch {
          ref = 'throws';
        }
        let got: unknown;
        try {
          got = decodeHeader(part);
        } catch (e) {
          got = (e as WireError).code === 'BAD_HEADER' ? 'throws' : 'unknown type';
        }
        if (ref === 'throws') expect(got).toBe('throws');
        else if (got !== 'unknown type') {
          for (const k of ['type', 'id', 'offset', 'length', 'flags', 'seq', 'value'] as const)
            expect((got as Record<string, number>)[k]).toBe((ref as Record<string, number>)[k]);
        }
      }
    }
  });

  it('DATA and ack prefixes written from their fields equal encodeFrame', () => {
    const out = Buffer.alloc(256);
    for (let i = 0; i < 1500; i++) {
      const plen = Math.floor(rand() * 70000);
      const at = Math.floor(rand() * 100);
      const d = { id: u32(), seq: u32(), length: u32(), flags: u32(), offset: Math.floor(rand() * 2 ** 40) };
      const [dref] = encodeFrame({ type: PacketType.DATA, ...d }, Buffer.alloc(plen));
      expect(dataPrefixLength(d.id, d.seq, d.length, d.flags)).toBe(dref.length);
      const end = writeDataPrefix(out, at, d.id, d.seq, d.offset, d.length, d.flags, plen);
      expect(end).toBe(at + dref.length);
      expect(out.subarray(at, end).toString('hex')).toBe(dref.toString('hex'));

      const type = types[Math.floor(rand() * types.length)] as PacketType;
      const [aref] = encodeFrame({ type, id: d.id });
      expect(ackPrefixLength(type, d.id)).toBe(aref.length);
      expect(writeAckPrefix(out, at, type, d.id)).toBe(at + aref.length);
      expect(out.subarray(at, at + aref.length).toString('hex')).toBe(aref.toString('hex'));
    }
  });
});
