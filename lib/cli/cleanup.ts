// imgmount cleanup: sweeps what processes that are gone left behind (see lib/root/cleanup.ts).

import { cleanup, type CleanupReport } from '../root/cleanup';
import { parse, UsageError, write, type CliIO, type Command } from './usage';

function human(r: CleanupReport): string {
  const lines: string[] = [];
  const verb = r.dryRun ? 'would' : 'did';
  for (const s of r.swept) {
    lines.push(`${s.target}${s.owner ? ` (owner pid ${s.owner.pid}, gone)` : ' (no owner)'}:`);
    for (const a of s.actions) lines.push(`  ${r.dryRun ? 'would ' : ''}${a}`);
    for (const e of s.errors) lines.push(`  ! ${e}`);
  }
  for (const o of r.orphans) lines.push(`${o.program} (pid ${o.pid}), an unrecorded helper of a process that is gone: ${o.outcome}`);
  for (const t of r.temps) lines.push(`removed ${t}`);
  for (const k of r.kept) lines.push(`kept ${k.target}: ${k.why}`);
  for (const i of r.invalid) lines.push(`refused ${i.file}: ${i.reason}`);
  if (r.swept.length === 0 && r.orphans.length === 0) lines.push(`nothing to clean up (${verb} not sweep anything)`);
  return lines.join('\n') + '\n';
}

export const cleanupCommand: Command = {
  name: 'cleanup',
  usage: 'imgmount cleanup [--dry-run] [--json] [--all]',
  summary:
    'release what processes that are gone left mounted: their records\' mounts, helpers, loop devices and session directories\n' +
    '      (--all: also persistent mounts of `imgmount mount`; a live process\'s mounts are never touched)',
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parse(args, { 'dry-run': { type: 'boolean' }, json: { type: 'boolean' }, all: { type: 'boolean' } });
    if (positionals.length > 0) throw new UsageError('cleanup takes no arguments');
    const report = await cleanup({ dryRun: Boolean(values['dry-run']), all: Boolean(values.all) });
    await write(io.stdout, values.json ? JSON.stringify(report) + '\n' : human(report));
    const failed = report.swept.some((s) => s.errors.some((e) => !e.startsWith('left mounted:'))) || report.invalid.length > 0;
    return failed ? 1 : 0;
  },
};
