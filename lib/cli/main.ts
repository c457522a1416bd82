// The imgmount command line: `imgmount <command> [options]`. Errors go to stderr as
// "imgmount: <message>" with a nonzero status (2 for usage mistakes).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { cleanupCommand } from './cleanup';
import { inspectCommand } from './inspect';
import { loopCommand } from './loop';
import { mountCommand, rootCommand, umountCommand } from './mount';
import { readCommand } from './read';
import { UsageError, write, type CliIO, type Command } from './usage';

export const commands: Command[] = [inspectCommand, readCommand, mountCommand, umountCommand, rootCommand, cleanupCommand, loopCommand];

/** The installed package's version (package.json next to dist/). */
export function version(): string {
  const file = path.join(__dirname, '..', '..', '..', 'package.json');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}

function help(): string {
  return (
    'usage: imgmount <command> [options]\n       imgmount --version\n\n' +
    commands.map((c) => `${c.usage.split('\n').map((l) => '  ' + l.trim()).join('\n')}\n      ${c.summary}\n`).join('') +
    '\nSet NODE_DEBUG=imgmount for debug output.\n'
  );
}

export async function main(argv: string[], io: CliIO = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    await write(name === undefined ? io.stderr : io.stdout, help());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    await write(io.stdout, `${version()}\n`);
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    await write(io.stderr, `imgmount: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  if (rest.includes('-h') || rest.includes('--help')) {
    await write(io.stdout, `usage: ${command.usage}\n  ${command.summary}\n`);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      await write(io.stderr, `imgmount: ${err.message}\nusage: ${command.usage}\n`);
      return 2;
    }
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') return 1;
    await write(io.stderr, `imgmount: ${(err as Error).message ?? String(err)}\n`);
    return 1;
  }
}
