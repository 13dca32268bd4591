/**
 * Who holds a TCP port? Reads /proc/net/tcp{,6} for a LISTEN socket on the port, then looks for
 * that socket inode among /proc/PID/fd links. Works without root for the user's own processes;
 * for others' it falls back to `ss -ltnp` (which says as much as the kernel lets it).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface PortHolder {
  readonly pid?: number;
  readonly command?: string;
}

const LISTEN = '0A';

/** Socket inodes listening on `port` (from /proc/net/tcp and tcp6). */
export function listeningInodes(
  port: number,
  tables: readonly string[] = ['/proc/net/tcp', '/proc/net/tcp6'],
): string[] {
  const out: string[] = [];
  for (const t of tables) {
    let text: string;
    try {
      text = readFileSync(t, 'utf8');
    } catch {
      continue;
    }
    out.push(...parseProcNetTcp(text, port));
  }
  return out;
}

/** Parses one /proc/net/tcp table: inodes of LISTEN sockets on `port`. */
export function parseProcNetTcp(text: string, port: number): string[] {
  const out: string[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const local = f[1];
    const state = f[3];
    const inode = f[9];
    if (!local || !inode || state !== LISTEN) continue;
    const hex = local.slice(local.lastIndexOf(':') + 1);
    if (Number.parseInt(hex, 16) === port) out.push(inode);
  }
  return out;
}

function commandOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The process listening on `port`, if it can be found. */
export function findPortHolder(port: number): PortHolder | undefined {
  const inodes = new Set(listeningInodes(port));
  if (inodes.size) {
    let pids: string[] = [];
    try {
      pids = readdirSync('/proc').filter((d) => /^[0-9]+$/.test(d));
    } catch {
      pids = [];
    }
    for (const p of pids) {
      let fds: string[];
      try {
        fds = readdirSync(`/proc/${p}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        let link: string;
        try {
          link = readlinkSync(`/proc/${p}/fd/${fd}`);
        } catch {
          continue;
        }
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m?.[1] && inodes.has(m[1])) {
          const pid = Number(p);
          const command = commandOf(pid);
          return { pid, ...(command !== undefined ? { command } : {}) };
        }
      }
    }
  }
  try {
    const out = execFileSync('ss', ['-ltnpH', `sport = :${port}`], {
      encoding: 'utf8',
      timeout: 2000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const m = /users:\(\("([^"]+)",pid=(\d+)/.exec(out);
    if (m?.[1] && m[2]) return { pid: Number(m[2]), command: m[1] };
    if (out.trim()) return {};
  } catch {
    // no ss
  }
  return inodes.size ? {} : undefined;
}

/** "127.0.0.1:3260 is in use by tgtd (pid 1234)". */
export function portInUseMessage(address: string, port: number, holder = findPortHolder(port)): string {
  if (holder?.pid !== undefined) {
    const who = holder.command ?? 'a process';
    const hint =
      holder.command === 'tgtd'
        ? ' — stop tgtd (systemctl stop tgt) or pick another --listen'
        : ' — stop it or pick another --listen';
    return `${address} is in use by ${who} (pid ${holder.pid})${hint}`;
  }
  return `${address} is in use by another program (not ours to see: try \`sudo ss -ltnp 'sport = :${port}'\`); stop it or pick another --listen`;
}
