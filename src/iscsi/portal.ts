/** One listening address (a network portal) of a portal group. */
import { createServer, type Server, type Socket } from 'node:net';
import { adoptWithStaticReads, type StaticReads } from '../net/static-reads.js';

export interface PortalConfig {
  readonly host: string;
  readonly port: number;
  readonly portalGroupTag: number;
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
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
      // Reads into one static buffer (no Buffer per socket read); see src/net/static-reads.ts.
      const { socket, reads } = adoptWithStaticReads(accepted);
      onConnection(socket, this, reads ?? undefined);
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
