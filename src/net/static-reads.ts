/**
 * Socket reads into one static buffer shared by every socket of the process (Node's `onread`),
 * instead of a new 64 KiB Buffer per read: at 0.5–2 GB/s (iSCSI writes, replication, resync)
 * those buffers drove V8 to a full GC many times a second. Safe to share: libuv reads one socket
 * at a time on the one JS thread and the callback consumes the bytes before the next read.
 * The bytes are valid only during the call; whoever receives them copies what it keeps.
 *
 * With `{ targets: true }` the owner may also say where the next read goes (`attach(sink,
 * target)`): a receiver in the middle of a large payload returns the rest of that payload's
 * buffer, so the kernel copies the bytes straight to where they belong instead of into the static
 * buffer and then once more out of it. `target()` runs after each read (Node's `onread.buffer`
 * given as a function); null means the static buffer. Without `targets` (the iSCSI connection)
 * `onread.buffer` is the static Buffer itself, as before.
 */
import { Socket, type SocketConstructorOpts } from 'node:net';

const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

type Sink = (bytes: Buffer) => boolean | void;
/** Where the next socket read should land (a whole Uint8Array, filled from its start), or null. */
export type ReadTarget = () => Uint8Array | null;

export interface StaticReadsOptions {
  /** The owner may pick the buffer of each next read (attach's `target`). */
  readonly targets?: boolean;
}

export class StaticReads {
  #sink: Sink | null = null;
  #target: ReadTarget | null = null;
  #early: Buffer[] = [];
  /** Pass as the `onread` option of `net.connect` / `new net.Socket`. */
  readonly onread: {
    buffer: Uint8Array | (() => Uint8Array);
    callback: (n: number, buf: Uint8Array) => boolean;
  } = {
    buffer: READ_BUFFER,
    callback: (n: number, buf: Uint8Array): boolean => {
      const bytes = (buf as Buffer).subarray(0, n);
      if (this.#sink === null) {
        this.#early.push(Buffer.from(bytes)); // before attach(): kept (copied) until then
        return true;
      }
      return this.#sink(bytes) !== false; // false: stop reading
    },
  };

  constructor(opts: StaticReadsOptions = {}) {
    if (opts.targets === true) this.onread.buffer = () => this.#target?.() ?? READ_BUFFER;
  }

  /**
   * Where the bytes go from now on (any kept early bytes first). `target` (only with `targets`)
   * picks the buffer of each next read; the sink then receives a view of that buffer.
   */
  attach(sink: Sink, target?: ReadTarget): void {
    this.#sink = sink;
    if (target !== undefined) this.#target = target;
    for (const b of this.#early.splice(0)) sink(b);
  }
}

/**
 * Takes over an accepted socket (server created with `pauseOnConnect`, nothing read yet) with
 * static-buffer reads: a new Socket over the same handle (`_handle`, which Node's cluster module
 * also moves between objects); the old object lets go of the handle and is destroyed, so the
 * server's connection count stays right. Without a handle the socket is returned unchanged and
 * resumed ('data' events).
 */
export function adoptWithStaticReads(
  accepted: Socket,
  opts: StaticReadsOptions = {},
): { socket: Socket; reads: StaticReads | null } {
  const handle = (accepted as unknown as { _handle?: unknown })._handle;
  if (handle === null || handle === undefined) {
    accepted.resume();
    return { socket: accepted, reads: null };
  }
  const reads = new StaticReads(opts);
  let socket: Socket;
  try {
    socket = new Socket({
      handle,
      readable: true,
      writable: true,
      onread: reads.onread,
    } as SocketConstructorOpts);
  } catch {
    accepted.resume();
    return { socket: accepted, reads: null };
  }
  (accepted as unknown as { _handle: unknown })._handle = null;
  accepted.destroy();
  return { socket, reads };
}
