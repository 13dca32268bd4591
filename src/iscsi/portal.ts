/** One listening address (a network portal) of a portal group. */
import {
  createServer,
  Socket as NetSocket,
  type Server,
  type Socket,
  type SocketConstructorOpts,
} from 'node:net';

export interface PortalConfig {
  readonly host: string;
  readonly port: number;
  readonly portalGroupTag: number;
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Socket reads into one static buffer shared by every connection (Node's `onread`): parsing
 * consumes each read before the next one can happen (same thread), so no Buffer is allocated
 * per read — at 1 GB/s that is ~16k fewer 64 KiB buffers a second for the GC.
 */
export interface StaticReads {
  /** Receives each read's bytes (valid only during the call); false stops reading. */
  onBytes: (bytes: Buffer) => boolean;
}

const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

/**
 * Re-creates an accepted (paused) socket over the same handle with static-buffer reads. Needs
 * the socket's handle (`_handle`, what Node's own cluster module moves between processes); when
 * that is not available the socket is returned as it is and reads come as 'data' events.
 */
function withStaticReads(accepted: Socket): { socket: Socket; reads?: StaticReads } {
  const handle = (accepted as unknown as { _handle?: unknown })._handle;
  if (handle === null || handle === undefined) return { socket: accepted };
  const reads: StaticReads = { onBytes: () => true };
  let socket: Socket;
  try {
    socket = new NetSocket({
      handle,
      readable: true,
      writable: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array) => reads.onBytes((buf as Buffer).subarray(0, n)),
      },
    } as SocketConstructorOpts);
  } catch {
    return { socket: accepted };
  }
  // The old object lets go of the handle (it must not close it) and closes, so the server's
  // connection count stays right.
  (accepted as unknown as { _handle: unknown })._handle = null;
  accepted.destroy();
  return { socket, reads };
}

export class Portal {
  readonly config: PortalConfig;
  readonly #server: Server;
  #listening = false;

  constructor(
    config: PortalConfig,
    onConnection: (socket: Socket, portal: Portal, reads?: StaticReads) => void,
  ) {
    this.config = config;
    this.#server = createServer({ noDelay: true, pauseOnConnect: true }, (accepted) => {
      const { socket, reads } = withStaticReads(accepted);
      onConnection(socket, this, reads);
    });
    this.#server.on('error', () => undefined);
  }

  get address(): string {
    return formatHostPort(this.config.host, this.port);
  }

  /** The bound port (useful with port 0). */
  get port(): number {
    const a = this.#server.address();
    return a && typeof a === 'object' ? a.port : this.config.port;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => {
        this.#server.off('listening', onListening);
        const where = formatHostPort(this.config.host, this.config.port);
        if (e.code === 'EADDRINUSE') {
          reject(new Error(`iSCSI portal ${where}: address already in use (is another target running?)`));
        } else if (e.code === 'EACCES') {
          reject(new Error(`iSCSI portal ${where}: permission denied`));
        } else if (e.code === 'EADDRNOTAVAIL') {
          reject(new Error(`iSCSI portal ${where}: address not available on this host`));
        } else {
          reject(new Error(`iSCSI portal ${where}: ${e.message}`));
        }
      };
      const onListening = () => {
        this.#server.off('error', onError);
        this.#listening = true;
        resolve();
      };
      this.#server.once('error', onError);
      this.#server.once('listening', onListening);
      this.#server.listen({ host: this.config.host, port: this.config.port, exclusive: true });
    });
  }

  close(): Promise<void> {
    if (!this.#listening) return Promise.resolve();
    this.#listening = false;
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
