import { readFileSync } from 'node:fs';

export const fixture = (name: string): string =>
  readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8');

/**
 * The shape of tgtadm output: indentation and field names (text up to ": " or "="), values
 * replaced, so lunar's values (its LU ids, sizes, defaults) can differ while the layout that
 * scripts and resource agents parse must not.
 */
export function shape(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => {
      const indent = /^\s*/.exec(l)?.[0] ?? '';
      const body = l.slice(indent.length);
      const m = /^(Target|I_T nexus:|LUN:|Session:|Connection:) \d+/.exec(body);
      if (m) return `${indent}${m[1]} <n>`;
      if (body.startsWith('Initiator: '))
        return `${indent}Initiator: <v> alias: <v>`.replace(
          / alias: <v>$/,
          body.includes(' alias: ') ? ' alias: <v>' : '',
        );
      const kv = /^([^:=]+)(: |:$|=)/.exec(body);
      if (kv) return `${indent}${kv[1]}${kv[2]}`;
      return `${indent}<value>`;
    });
}

/** Captured from tgtadm 1.0.85: arguments, exit code, first stderr line. */
export function tgtdErrorCases(): { args: string[]; rc: number; message: string }[] {
  return fixture('tgtd-errors.tsv')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [args = '', rc = '', message = ''] = l.split('\t');
      return { args: args.split(' '), rc: Number(rc), message };
    });
}
