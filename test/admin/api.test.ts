import { describe, expect, it } from 'vitest';
import { matchRoute, ROUTES } from '../../src/admin/api.js';
import { hostOf } from '../../src/admin/control.js';
import { parseProcNetTcp } from '../../src/admin/portinfo.js';
import { table } from '../../src/cli/commands.js';

describe('control API routes', () => {
  const cases: [string, string, string | undefined, Record<string, string>][] = [
    ['GET', '/v1/status', '/v1/status', {}],
    ['GET', '/v1/targets', '/v1/targets', {}],
    ['POST', '/v1/targets', '/v1/targets', {}],
    ['GET', '/v1/targets/1', '/v1/targets/:target', { target: '1' }],
    ['DELETE', '/v1/targets/iqn.2026-11.x%3Ay', '/v1/targets/:target', { target: 'iqn.2026-11.x:y' }],
    ['PATCH', '/v1/targets/2/luns/3', '/v1/targets/:target/luns/:lun', { target: '2', lun: '3' }],
    [
      'DELETE',
      '/v1/targets/2/accounts/alice',
      '/v1/targets/:target/accounts/:user',
      { target: '2', user: 'alice' },
    ],
    ['DELETE', '/v1/portals/127.0.0.1%3A3260', '/v1/portals/:listen', { listen: '127.0.0.1:3260' }],
    ['POST', '/v1/stop', '/v1/stop', {}],
    ['GET', '/v1/nothing', undefined, {}],
  ];
  it.each(cases)('%s %s', (method, path, route, params) => {
    const m = matchRoute(method, path);
    expect(m.route?.path).toBe(route);
    if (route) expect(m.params).toEqual(params);
  });

  it('lists the methods a path has when the method is wrong', () => {
    expect(matchRoute('PUT', '/v1/targets').allowed.sort()).toEqual(['GET', 'POST']);
  });

  it('every route is unique', () => {
    const keys = ROUTES.map((r) => `${r.method} ${r.path}`);
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe('small helpers', () => {
  it('tables', () => {
    expect(
      table(
        ['A', 'LONG'],
        [
          [1, 'x'],
          ['wide', 'y'],
        ],
      ),
    ).toBe('A     LONG\n1     x\nwide  y\n');
    expect(table(['ONLY'], [])).toBe('ONLY\n');
  });
  it('initiator address without port', () => {
    expect(hostOf('10.0.0.5:51000')).toBe('10.0.0.5');
    expect(hostOf('[fe80::1]:3260')).toBe('fe80::1');
    expect(hostOf('weird')).toBe('weird');
  });
  it('/proc/net/tcp: LISTEN sockets on a port', () => {
    const text = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CBC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0CBC 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 777777 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0CBD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 654321 1 0000000000000000 100 0 0 10 0
`;
    expect(parseProcNetTcp(text, 3260)).toEqual(['123456']);
    expect(parseProcNetTcp(text, 3261)).toEqual(['654321']);
    expect(parseProcNetTcp(text, 3262)).toEqual([]);
  });
});
