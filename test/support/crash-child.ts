// A daemon that gets killed, for the crash tests: builds the roots it is told to with the
// compiled library, SIGKILLs itself at the Nth checkpoint (see lib/util/checkpoint) if told
// to, else prints {"done":true} and holds its roots until it is killed.
//   argv[2] = {"killAt":N|null,"roots":[{"image":P,"target":T,"options":{...}}]}
import { init } from '../../lib/image/init';
import { root } from '../../lib/root/root';
import { setCheckpointHook } from '../../lib/util/checkpoint';

async function main(): Promise<void> {
  const cmd = JSON.parse(process.argv[2]!) as { killAt: number | null; roots: Array<{ image: string; target: string; options: Record<string, unknown> }> };
  let n = 0;
  setCheckpointHook((name) => {
    n++;
    if (cmd.killAt !== null && n === cmd.killAt) {
      process.stdout.write(JSON.stringify({ killedAt: name }) + '\n');
      process.kill(process.pid, 'SIGKILL');
    }
  });
  for (const r of cmd.roots) {
    const img = await init(r.image, Boolean(r.options.writable));
    await root(img, r.target, r.options);
  }
  process.stdout.write(JSON.stringify({ done: true, checkpoints: n }) + '\n');
  setInterval(() => undefined, 1 << 30);
}

main().catch((err: unknown) => {
  process.stdout.write(JSON.stringify({ error: (err as Error).message }) + '\n');
  process.exit(1);
});
