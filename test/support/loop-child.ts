// A second process for the kernel tests: runs one command with the compiled library, prints
// JSON lines, and holds what it made until its stdin closes (or until it is killed).
//   {"op":"attach","image":P,"count":N,"options":{...}}   N concurrent attaches, then hold
//   {"op":"mount","image":P,"target":T,"options":{...}}   mountPartition, then hold
//   {"op":"capabilities","image":P,"target":T}            capabilities() and an ID-mapped mount attempt
//   {"op":"fuse-root","image":P,"target":T}               root() by the FUSE driver, then hold
import { attachLoop, loopCounters, type LoopDevice } from '../../lib/loop';
import { capabilities, mountPartition } from '../../lib/mount';
import { createUserNamespace } from '../../lib/ns';
import { nativeSpawnAvailable } from '../../lib/ns/native-child';
import { init } from '../../lib';

async function holdUntilStdinCloses(): Promise<void> {
  process.stdin.resume();
  await new Promise<void>((r) => process.stdin.once('end', () => r()));
}

async function main(): Promise<void> {
  const cmd = JSON.parse(process.argv[2]!) as { op: string; image: string; count?: number; target?: string; options?: Record<string, unknown> };
  if (cmd.op === 'attach') {
    const n = cmd.count ?? 1;
    const results = await Promise.allSettled(Array.from({ length: n }, () => attachLoop(cmd.image, cmd.options ?? {})));
    const devices = results.filter((r): r is PromiseFulfilledResult<LoopDevice> => r.status === 'fulfilled').map((r) => r.value);
    const errors = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => String((r.reason as Error).message));
    console.log(JSON.stringify({ ready: true, devices: devices.map((d) => ({ number: d.number, path: d.path, method: d.method })), errors }));
    await holdUntilStdinCloses();
    await Promise.all(devices.map((d) => d.close()));
    console.log(JSON.stringify({ released: true }));
    return;
  }
  if (cmd.op === 'mount') {
    const m = await mountPartition(cmd.image, cmd.target!, cmd.options as never);
    console.log(JSON.stringify({ ready: true, loopDevice: m.loopDevice, loopNumber: m.loopNumber, method: m.method, counters: loopCounters() }));
    await holdUntilStdinCloses();
    await m.unmount();
    console.log(JSON.stringify({ released: true }));
    return;
  }
  if (cmd.op === 'fuse-root') {
    const image = await init(cmd.image);
    const r = await image.root(cmd.target!, { driver: 'fuse' });
    console.log(JSON.stringify({ ready: true, helpers: r.mounts.flatMap((m) => m.helpers.map((h) => h.pid)), nativeSpawn: await nativeSpawnAvailable() }));
    await holdUntilStdinCloses();
    await r.close();
    await image.close();
    console.log(JSON.stringify({ released: true }));
    return;
  }
  if (cmd.op === 'capabilities') {
    const caps = await capabilities();
    let idmap: string | null = null;
    const userns = await createUserNamespace({ uidMap: [{ inside: 0, outside: 100000, count: 1000 }], gidMap: [{ inside: 0, outside: 100000, count: 1000 }] });
    try {
      await mountPartition(cmd.image, cmd.target!, { fstype: 'squashfs', idmap: userns });
    } catch (err) {
      idmap = (err as { code?: string }).code ?? String(err);
    } finally {
      await userns.close();
    }
    console.log(JSON.stringify({ ready: true, caps, idmap }));
    return;
  }
  throw new Error(`unknown op ${cmd.op}`);
}

main().catch((err: Error) => {
  console.log(JSON.stringify({ error: err.message, code: (err as { code?: string }).code }));
  process.exitCode = 1;
});
