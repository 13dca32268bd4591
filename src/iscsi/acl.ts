/** Initiator ACLs: names and addresses (IPs or CIDRs, IPv4 and IPv6). */
import { BlockList, isIP } from 'node:net';

export interface AclConfig {
  readonly initiators: 'ALL' | readonly string[];
  readonly addresses: 'ALL' | readonly string[];
}

/** Strip IPv4-mapped IPv6 (`::ffff:a.b.c.d`) and zone ids. */
export function normalizeAddress(addr: string): string {
  let a = addr;
  const pct = a.indexOf('%');
  if (pct >= 0) a = a.slice(0, pct);
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return m ? m[1]! : a;
}

export class Acl {
  readonly #names: Set<string> | undefined;
  readonly #blocks: BlockList | undefined;

  constructor(cfg: AclConfig) {
    this.#names = cfg.initiators === 'ALL' ? undefined : new Set(cfg.initiators.map((n) => n.toLowerCase()));
    if (cfg.addresses === 'ALL') {
      this.#blocks = undefined;
    } else {
      const bl = new BlockList();
      for (const entry of cfg.addresses) {
        const [ip, bits] = entry.split('/');
        const addr = normalizeAddress(ip ?? '');
        const fam = isIP(addr);
        if (fam === 0) throw new Error(`ACL: "${entry}" is not an IP address or CIDR`);
        const type = fam === 6 ? 'ipv6' : 'ipv4';
        if (bits === undefined) bl.addAddress(addr, type);
        else {
          const prefix = Number(bits);
          if (!Number.isInteger(prefix) || prefix < 0 || prefix > (fam === 6 ? 128 : 32)) {
            throw new Error(`ACL: bad prefix length in "${entry}"`);
          }
          bl.addSubnet(addr, prefix, type);
        }
      }
      this.#blocks = bl;
    }
  }

  allows(initiatorName: string, address: string): boolean {
    if (this.#names && !this.#names.has(initiatorName.toLowerCase())) return false;
    if (this.#blocks) {
      const a = normalizeAddress(address);
      const fam = isIP(a);
      if (fam === 0) return false;
      return this.#blocks.check(a, fam === 6 ? 'ipv6' : 'ipv4');
    }
    return true;
  }
}
