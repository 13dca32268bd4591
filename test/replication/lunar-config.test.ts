/** The `resources:` section of the lunar config, node choice, and the `lunar repl` progress line. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type ConfigError, parseConfig } from '../../src/admin/config.js';
import { chooseNodeId, resourceConfigOf } from '../../src/admin/replication.js';
import { progressLine } from '../../src/cli/repl.js';
import type { ResourceStatus } from '../../src/replication/status.js';
import { tempDir } from './helpers.js';

const t = tempDir('lunar-repl-cfg-');
afterAll(() => t.cleanup());

const RES = `name: r0
secret: s
size: 64M
nodes:
  - { id: 0, address: 127.0.0.1:7901, disk: a.img }
  - { id: 1, address: 192.0.2.77:7902, disk: b.img }
`;

function lunarYaml(resources: string, lun = '{ lun: 0, backstore: replicated, resource: r0 }'): string {
  return `resources:
${resources}
targets:
  - name: iqn.2026-11.io.lunar:r0
    luns:
      - ${lun}
`;
}

function problems(text: string): string[] {
  try {
    parseConfig(text, join(t.dir, 'lunar.yaml'));
    return [];
  } catch (e) {
    return [...(e as ConfigError).problems];
  }
}

describe('resources: in the lunar config', () => {
  writeFileSync(join(t.dir, 'r0.yaml'), RES);

  it('references a resource file; the LUN takes its block size', () => {
    const { config } = parseConfig(lunarYaml('  - file: r0.yaml\n    node: 1'), join(t.dir, 'lunar.yaml'));
    expect(config.resources?.[0]).toMatchObject({
      name: 'r0',
      file: join(t.dir, 'r0.yaml'),
      node: 1,
      blockSize: 4096,
    });
    expect(config.targets[0]?.luns[0]).toMatchObject({
      backstore: 'replicated',
      resource: 'r0',
      blockSize: 4096,
    });
  });

  it('accepts an inline resource (disk paths relative to the data directory at run time)', () => {
    const inline = `  - { name: r0, secret: s, size: 64M, nodes: [ { id: 0, address: "127.0.0.1:7901", disk: a.img } ] }`;
    const { config } = parseConfig(lunarYaml(inline), join(t.dir, 'lunar.yaml'));
    const ref = config.resources?.[0];
    expect(ref?.inline).toBeDefined();
    expect(resourceConfigOf(ref as NonNullable<typeof ref>, '/var/lib/lunar').nodes[0]?.disk).toBe(
      '/var/lib/lunar/a.img',
    );
  });

  it('names the field of each mistake', () => {
    expect(
      problems(lunarYaml('  - file: r0.yaml', '{ lun: 0, backstore: replicated, resource: r9 }')),
    ).toEqual([expect.stringMatching(/lunar.yaml:\d+: targets\[0\].luns\[0\].resource: no resource "r9"/)]);
    expect(
      problems(lunarYaml('  - file: r0.yaml', '{ lun: 0, backstore: replicated, resource: r0, size: 1G }')),
    ).toEqual([expect.stringMatching(/luns\[0\].size: a replicated LUN has the size of its resource/)]);
    expect(problems(lunarYaml('  - file: r0.yaml', '{ lun: 0, backstore: replicated }'))[0]).toMatch(
      /needs a resource/,
    );
    expect(problems(lunarYaml('  - file: missing.yaml'))[0]).toMatch(/resources\[0\]: .*ENOENT|no such file/);
    expect(problems(lunarYaml('  - file: r0.yaml\n    node: 3'))[0]).toMatch(
      /resources\[0\].node: resource r0 has no node 3/,
    );
    expect(problems(lunarYaml('  - { name: r0, size: 64M, nodes: [] }'))[0]).toMatch(
      /resources\[0\]: resource.nodes: must list 1 to 3/,
    );
  });

  it('chooses the node: ref, then --node, then the one local address', () => {
    const { config } = parseConfig(lunarYaml('  - file: r0.yaml'), join(t.dir, 'lunar.yaml'));
    const ref = config.resources?.[0] as NonNullable<typeof config.resources>[number];
    const cfg = resourceConfigOf(ref, t.dir);
    expect(chooseNodeId(cfg, ref)).toBe(0); // 127.0.0.1 is local, 192.0.2.77 is not
    expect(chooseNodeId(cfg, ref, 1)).toBe(1);
    expect(chooseNodeId(cfg, { ...ref, node: 1 }, 0)).toBe(1);
    expect(() => chooseNodeId(cfg, ref, 2)).toThrow(/no node with id 2/);
  });
});

describe('lunar repl progress line', () => {
  it('shows resync percent, remaining, speed and ETA; verify out-of-sync', () => {
    const peer = {
      nodeId: 1,
      name: 'beta',
      sync: {
        direction: 'source',
        full: true,
        paused: false,
        percent: 50,
        totalKiB: 65536,
        remainingKiB: 32768,
        speedKiBps: 10240,
        etaSec: 3,
        elapsedSec: 3,
        dataBytes: 0,
        digestBytes: 0,
        equalBlocks: 0,
      },
      verify: null,
    };
    const st = { name: 'r0', peers: [peer] } as unknown as ResourceStatus;
    expect(progressLine(st, 10)).toBe(
      'r0 sync → beta █████░░░░░  50.0% 32/64 MiB left, 10.0 MiB/s, eta 0:00:03',
    );
    const v = {
      name: 'r0',
      peers: [{ ...peer, sync: null, verify: { percent: 10, oosBlocks: 2, oosKiB: 8 } }],
    };
    expect(progressLine(v as unknown as ResourceStatus, 10)).toBe(
      'r0 verify beta █░░░░░░░░░  10.0% out-of-sync 8 KiB',
    );
    expect(progressLine({ name: 'r0', peers: [] } as unknown as ResourceStatus)).toBeNull();
  });
});
