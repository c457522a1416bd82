// A consumer's first run of the installed package. test/kernel/package/install.test.ts copies the compiled
// file into a project that installed the packed tarball (`npm install --ignore-scripts`) and runs
// it as root, in a private mount namespace, with a PATH that has no compiler: every kind of native
// call must work from what the tarball shipped. It requires the package by its name only (nothing
// of the checkout), and prints one JSON line with what it saw.
//
// argv: SIF (with /etc/hello.txt in its squashfs root), EXT3 image, TARGET directory.
import * as fs from 'node:fs';

const imgmount = require('imgmount') as typeof import('../../lib');

/** The imgmount.node files this process has mapped. */
function mappedAddons(): string[] {
  const lines = fs.readFileSync('/proc/self/maps', 'utf8').split('\n');
  return [...new Set(lines.map((l) => l.split(/\s+/).slice(5).join(' ')).filter((p) => p.endsWith('/imgmount.node')))];
}

function mountsAt(target: string): number {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4] === target).length;
}

async function main(): Promise<Record<string, unknown>> {
  const [sif, ext3, target] = process.argv.slice(2) as [string, string, string];
  const out: Record<string, unknown> = {};

  // Detection, and opening as another user (native openAs in a child task).
  const image = await imgmount.init(sif, false, { as: { uid: 0, gid: 0, groups: [] } });
  out.type = imgmount.typeName(image.type);
  out.partitions = image.partitions.map((p) => p.name);

  // Loop device + kernel mount in one native hop, read through it, then unmounted.
  const mounted = await image.root(target, { driver: 'kernel' });
  out.hello = fs.readFileSync(`${target}/etc/hello.txt`, 'utf8');
  out.mountedWhileOpen = mountsAt(target);
  await mounted.close();
  await image.close();
  out.mountedAfterClose = mountsAt(target);

  // OFD locks: a writable ext3 image is locked; a second writer is refused.
  const writer = await imgmount.init(ext3, true);
  out.secondWriter = await imgmount.init(ext3, true).then(
    async (i) => (await i.close(), 'opened'),
    (e: { code?: string }) => e.code,
  );
  await writer.close();

  // The namespace helper (imgmount-nsenter, shipped next to the addon): a new user namespace.
  const userns = await imgmount.createUserNamespace({ uidMap: [{ inside: 0, outside: 100000, count: 1 }], gidMap: [{ inside: 0, outside: 100000, count: 1 }] });
  out.userns = fs.readlinkSync(`/proc/self/fd/${userns.fd}`).replace(/\[\d+\]/, '[N]');
  await userns.close();

  out.addons = mappedAddons();
  return out;
}

main().then(
  (out) => process.stdout.write(JSON.stringify(out) + '\n'),
  (err: Error & { code?: string }) => {
    process.stdout.write(JSON.stringify({ error: err.code ?? err.name, message: err.message }) + '\n');
    process.exitCode = 1;
  },
);
