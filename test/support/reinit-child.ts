// The next stage of a handoff (Apptainer's starter stages): gets an image's JSON in argv and
// its fd as fd 3, restores it with reInit, reads the root partition's bytes through it and,
// given a target, mounts its root there (kernel driver), reads a file and releases it.
// Prints one JSON line.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { newPartitionReader, reInit } from '../../lib/image';
import { root } from '../../lib/root';

async function main(): Promise<void> {
  const { json, target } = JSON.parse(process.argv[2]!) as { json: string; target?: string };
  const img = await reInit(json);
  try {
    const hash = createHash('sha256');
    for await (const chunk of newPartitionReader(img, img.getRootFsPartition().name)) hash.update(chunk as Buffer);
    const out: Record<string, unknown> = {
      path: img.path,
      type: img.type,
      fd: img.fd,
      partitions: img.partitions.map((p) => ({ name: p.name, offset: p.offset, size: p.size })),
      sha256: hash.digest('hex'),
    };
    if (target) {
      const r = await root(img, target, { driver: 'kernel' });
      const dev = path.basename(r.mounts[0]!.loopDevice!);
      out.backingFile = fs.readFileSync(`/sys/block/${dev}/loop/backing_file`, 'utf8').trim();
      out.hello = fs.readFileSync(path.join(target, 'etc/hello.txt'), 'utf8');
      await r.close();
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  } finally {
    await img.close();
  }
}

main().catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  process.stdout.write(JSON.stringify({ error: { code: e.code, message: e.message } }) + '\n');
  process.exitCode = 1;
});
