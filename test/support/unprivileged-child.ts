// The library run by an unprivileged user (test/kernel/drivers/unprivileged-fuse.test.ts starts it as
// nobody through setpriv). Prints JSON lines:
//   {"op":"choose","image":P}                 the driver choice for the root partition (or the error)
//   {"op":"root","image":P,"target":T,"file":F} root(), F read through it, then hold until stdin
//                                                closes; release, and say what is left
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chooseDriver } from '../../lib/drivers';
import { init } from '../../lib/image';
import { root } from '../../lib/root';

function out(o: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

function errorOf(err: unknown): Record<string, unknown> {
  const e = err as { code?: string; message?: string };
  return { code: e.code, message: e.message };
}

async function stdinClosed(): Promise<void> {
  process.stdin.resume();
  await new Promise<void>((r) => process.stdin.once('end', () => r()));
}

async function main(): Promise<void> {
  const cmd = JSON.parse(process.argv[2]!) as { op: string; image: string; target?: string; file?: string };
  const ids = { uid: process.getuid!(), euid: process.geteuid!(), gid: process.getgid!(), groups: process.getgroups!() };
  await using image = await init(cmd.image);
  if (cmd.op === 'choose') {
    try {
      out({ ids, choice: await chooseDriver(image, image.getRootFsPartition()) });
    } catch (err) {
      out({ ids, error: errorOf(err) });
    }
    return;
  }
  const r = await root(image, cmd.target!);
  const content = fs.readFileSync(path.join(cmd.target!, cmd.file!), 'utf8');
  out({
    ids,
    root: r.root,
    mounts: r.mounts.map((m) => ({ driver: m.driver, fstype: m.fstype, readOnly: m.readOnly, helpers: m.helpers })),
    content,
  });
  await stdinClosed();
  await r.close();
  // What this user can still see of it: the mount point holds nothing any more.
  out({ released: true, entries: fs.readdirSync(cmd.target!) });
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    out({ fatal: errorOf(err), stack: (err as Error).stack });
    process.exit(1);
  },
);
