/** Status views of a resource: JSON (drbdsetup status --json-like) and /proc/drbd-style text. */
import { legacyConnName } from './states.js';
import type { Peer, SyncRun } from './peer.js';
import type { Resource } from './resource.js';

export interface SyncProgress {
  readonly direction: 'source' | 'target';
  readonly full: boolean;
  readonly paused: boolean;
  readonly percent: number;
  readonly totalKiB: number;
  readonly remainingKiB: number;
  readonly speedKiBps: number;
  readonly etaSec: number | null;
  readonly elapsedSec: number;
  /** Resync data payload bytes (sent by a source, received by a target). */
  readonly dataBytes: number;
  /** Checksum-resync digest bytes (both directions). */
  readonly digestBytes: number;
  readonly equalBlocks: number;
}

export interface PeerStatus {
  readonly nodeId: number;
  readonly name: string;
  readonly address: string;
  readonly connection: string;
  readonly role: string;
  readonly peerDisk: string;
  readonly replication: string;
  readonly outOfSyncKiB: number;
  readonly sentKiB: number;
  readonly receivedKiB: number;
  readonly wireBytesSent: number;
  readonly wireBytesReceived: number;
  readonly pending: number;
  readonly unacked: number;
  readonly sync: SyncProgress | null;
  readonly lastSync: SyncProgress | null;
  readonly verify: { percent: number; oosBlocks: number; oosKiB: number } | null;
  readonly lastVerify: { oosBlocks: number; oosKiB: number; done: boolean } | null;
  readonly lastDecision: string;
  readonly lastError: string;
}

export interface ResourceStatus {
  readonly name: string;
  readonly nodeId: number;
  readonly up: boolean;
  readonly role: string;
  readonly disk: string;
  readonly suspended: readonly string[];
  readonly quorum: boolean;
  readonly protocol: string;
  readonly sizeBytes: number;
  readonly uuids: { current: string; bitmap: Record<string, string>; history: readonly string[] } | null;
  readonly stats: {
    readKiB: number;
    writtenKiB: number;
    alWrites: number;
    bmWrites: number;
    lowerPending: number;
    upperPending: number;
    conflicts: number;
  };
  readonly peers: readonly PeerStatus[];
}

function progress(r: Resource, p: Peer, s: SyncRun, now: number): SyncProgress {
  const bm = r.md?.bitmaps[p.id];
  const finished = s.finishedAt !== null;
  const remainingKiB = bm === undefined || (finished && !s.stopped) ? 0 : (bm.count * bm.blockBytes) / 1024;
  const totalKiB = bm === undefined ? 0 : (s.totalBits * bm.blockBytes) / 1024;
  const elapsedSec = Math.max(0.001, ((s.finishedAt ?? now) - s.startedAt) / 1000);
  const doneKiB = Math.max(0, totalKiB - remainingKiB);
  const speed = doneKiB / elapsedSec;
  return {
    direction: s.dir,
    full: s.full,
    paused: s.pausedByUser || s.pausedByPeer,
    percent: totalKiB === 0 ? 100 : Math.min(100, Math.round((doneKiB / totalKiB) * 1000) / 10),
    totalKiB,
    remainingKiB,
    speedKiBps: Math.round(speed),
    etaSec: speed > 0 ? Math.round(remainingKiB / speed) : null,
    elapsedSec: Math.round(elapsedSec * 1000) / 1000,
    dataBytes: s.dataBytes,
    digestBytes: s.digestBytes,
    equalBlocks: s.equalBlocks,
  };
}

export function resourceStatus(r: Resource, now = Date.now()): ResourceStatus {
  const md = r.md;
  const peers: PeerStatus[] = [...r.peers.values()].map((p) => {
    const bm = md?.bitmaps[p.id];
    const v = p.verify;
    const lv = p.lastVerify;
    return {
      nodeId: p.id,
      name: p.cfg.name,
      address: p.cfg.address,
      connection: p.cs,
      role: p.role,
      peerDisk: p.disk,
      replication: p.rs,
      outOfSyncKiB: bm === undefined ? 0 : (bm.count * bm.blockBytes) / 1024,
      sentKiB: Math.round(p.sentBytes / 1024),
      receivedKiB: Math.round(p.recvBytes / 1024),
      wireBytesSent: p.wireOut,
      wireBytesReceived: p.wireIn,
      pending: p.pending.size,
      unacked: p.ua,
      sync: p.sync === null ? null : progress(r, p, p.sync, now),
      lastSync: p.lastSync === null ? null : progress(r, p, p.lastSync, now),
      verify:
        v === null
          ? null
          : {
              percent: Math.round((v.doneBytes / Math.max(1, v.totalBytes)) * 1000) / 10,
              oosBlocks: v.oosBlocks,
              oosKiB: v.oosBlocks * 4,
            },
      lastVerify:
        lv === null ? null : { oosBlocks: lv.oosBlocks, oosKiB: lv.oosBlocks * 4, done: !lv.stopped },
      lastDecision: p.lastDecision,
      lastError: p.lastError,
    };
  });
  return {
    name: r.name,
    nodeId: r.me.id,
    up: r.isUp,
    role: r.role,
    disk: r.isUp ? r.disk : 'Diskless',
    suspended: [...r.suspendedBy],
    quorum: r.hasQuorum(),
    protocol: r.cfg.net.protocol,
    sizeBytes: r.sizeBytes,
    uuids:
      md === null
        ? null
        : { current: md.sb.current, bitmap: { ...md.sb.bitmapUuids }, history: [...md.sb.history] },
    stats: {
      readKiB: Math.round(r.readBytes / 1024),
      writtenKiB: Math.round(r.writtenBytes / 1024),
      alWrites: r.al?.transactions ?? 0,
      bmWrites: md?.bmWrites ?? 0,
      lowerPending: r.localPending,
      upperPending: r.appPending,
      conflicts: r.lock.conflicts,
    },
    peers,
  };
}

function hms(sec: number | null): string {
  if (sec === null) return '--:--:--';
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = Math.floor(sec % 60);
  return `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

/** A 20-character progress bar like /proc/drbd's. */
export function progressBar(percent: number): string {
  const n = Math.max(0, Math.min(20, Math.floor(percent / 5)));
  return `[${'='.repeat(Math.max(0, n - 1))}${n > 0 ? '>' : ''}${'.'.repeat(20 - n)}]`;
}

/** /proc/drbd-style text: one block per peer (minor 0 = the resource's only volume). */
export function procText(r: Resource, now = Date.now()): string {
  const st = resourceStatus(r, now);
  const lines: string[] = [`version: lunar-repl 1 (api:1/proto:1-1)`];
  const peers = st.peers.length === 0 ? [null] : st.peers;
  for (const p of peers) {
    const cs = p === null ? 'StandAlone' : legacyConnName(p.connection as never, p.replication as never);
    const ro = `${st.role}/${p?.role ?? 'Unknown'}`;
    const ds = `${st.disk}/${p?.peerDisk ?? 'DUnknown'}`;
    const susp = st.suspended.length > 0 ? 's' : 'r';
    const paused = p?.sync?.paused === true ? 'u' : '-';
    const who = st.peers.length > 1 && p !== null ? ` peer:${p.name}` : '';
    lines.push(`0: cs:${cs} ro:${ro} ds:${ds} ${st.protocol} ${susp}--${paused}--${who}`);
    lines.push(
      `    ns:${p?.sentKiB ?? 0} nr:${p?.receivedKiB ?? 0} dw:${st.stats.writtenKiB} dr:${st.stats.readKiB} ` +
        `al:${st.stats.alWrites} bm:${st.stats.bmWrites} lo:${st.stats.lowerPending} pe:${p?.pending ?? 0} ` +
        `ua:${p?.unacked ?? 0} ap:${st.stats.upperPending} ep:1 wo:f oos:${p?.outOfSyncKiB ?? 0}`,
    );
    const s = p?.sync ?? null;
    if (s !== null) {
      const done = (s.totalKiB - s.remainingKiB) / 1024;
      lines.push(
        `\t${progressBar(s.percent)} sync'ed: ${s.percent.toFixed(1)}% (${Math.round(s.remainingKiB / 1024)}/${Math.round(s.totalKiB / 1024)})M`,
      );
      lines.push(`\tfinish: ${hms(s.etaSec)} speed: ${s.speedKiBps} (${Math.round(done * 1024)}) K/sec`);
    }
    if (p?.verify != null) {
      lines.push(
        `\t${progressBar(p.verify.percent)} verified: ${p.verify.percent.toFixed(1)}% oos:${p.verify.oosKiB}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** `drbdsetup status`-like text. */
export function statusText(st: ResourceStatus): string {
  const out: string[] = [];
  const susp = st.suspended.length > 0 ? ` suspended:${st.suspended.join(',')}` : '';
  out.push(`${st.name} node-id:${st.nodeId} role:${st.role}${susp}${st.up ? '' : ' (down)'}`);
  out.push(`  disk:${st.disk}${st.quorum ? '' : ' quorum:no'}`);
  for (const p of st.peers) {
    out.push(`  ${p.name} node-id:${p.nodeId} connection:${p.connection} role:${p.role}`);
    let l = `    replication:${p.replication} peer-disk:${p.peerDisk} out-of-sync:${p.outOfSyncKiB}K`;
    if (p.sync !== null) {
      l += ` done:${p.sync.percent.toFixed(1)} speed:${p.sync.speedKiBps}K/s eta:${p.sync.etaSec ?? '?'}s`;
      if (p.sync.paused) l += ' resync-suspended:user';
    }
    if (p.verify !== null) l += ` verify:${p.verify.percent.toFixed(1)}% oos:${p.verify.oosKiB}K`;
    out.push(l);
    if (p.sync !== null) out.push(`    ${progressBar(p.sync.percent)} ${p.sync.percent.toFixed(1)}%`);
    if (p.verify !== null)
      out.push(`    ${progressBar(p.verify.percent)} verify ${p.verify.percent.toFixed(1)}%`);
    if (p.lastError !== '' && p.connection !== 'Connected') out.push(`    last-error: ${p.lastError}`);
  }
  return `${out.join('\n')}\n`;
}
