// imgmount loop attach|detach|list: loop devices for operators.

import { init } from '../image/init';
import { attachLoop, detachLoop } from '../loop/attach';
import { listLoopDevices, type LoopStatus } from '../loop/status';
import { choosePartition } from './select';
import { parse, table, UsageError, write, type CliIO, type Command } from './usage';

function byteCount(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new UsageError(`${name} takes a byte count, not "${v}"`);
  return Number(v);
}

async function attach(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, {
    partition: { type: 'string' },
    id: { type: 'string' },
    offset: { type: 'string' },
    size: { type: 'string' },
    writable: { type: 'boolean' },
    shared: { type: 'boolean' },
    json: { type: 'boolean' },
  });
  if (positionals.length !== 1) throw new UsageError('loop attach takes exactly one IMAGE');
  const raw = values.offset !== undefined || values.size !== undefined;
  if (raw && (values.partition !== undefined || values.id !== undefined)) {
    throw new UsageError('give --offset/--size for a raw byte range, or --partition/--id, not both');
  }
  const writable = values.writable ?? false;
  await using image = raw ? undefined : await init(positionals[0]!, writable);
  const part = image ? choosePartition(image, values) : undefined;
  // Not autoclear: the device must outlive this command; `imgmount loop detach` releases it.
  const device = await attachLoop(image ?? positionals[0]!, {
    offset: part?.offset ?? byteCount('--offset', values.offset) ?? 0,
    sizeLimit: part?.size ?? byteCount('--size', values.size) ?? 0,
    readOnly: !writable,
    autoclear: false,
    shared: values.shared ?? false,
  });
  await device.close({ detach: false });
  await write(io.stdout, values.json ? JSON.stringify(device) + '\n' : `${device.path}\n`);
  return 0;
}

async function detach(args: string[]): Promise<number> {
  const { positionals } = parse(args, {});
  if (positionals.length === 0) throw new UsageError('loop detach takes one or more DEVICEs');
  for (const d of positionals) await detachLoop(d);
  return 0;
}

function sizeText(v: number | bigint): string {
  return String(v);
}

async function list(args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parse(args, { all: { type: 'boolean' }, json: { type: 'boolean' } });
  if (positionals.length) throw new UsageError('loop list takes no arguments');
  const devices: LoopStatus[] = await listLoopDevices({ all: values.all ?? false });
  if (values.json) {
    await write(io.stdout, JSON.stringify(devices, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');
    return 0;
  }
  const rows = [['DEVICE', 'OFFSET', 'SIZELIMIT', 'RO', 'AUTOCLEAR', 'BACKING FILE']];
  for (const d of devices) {
    rows.push([
      d.path,
      sizeText(d.offset),
      sizeText(d.sizeLimit),
      d.readOnly ? '1' : '0',
      d.autoclear ? '1' : '0',
      d.bound ? `${d.backingFile}${d.backingFileDeleted ? ' (deleted)' : ''}` : '(unbound)',
    ]);
  }
  await write(io.stdout, table(rows) + '\n');
  return 0;
}

export const loopCommand: Command = {
  name: 'loop',
  usage:
    'imgmount loop attach [--partition NAME | --id N | --offset B --size B] [--writable] [--shared] [--json] IMAGE\n' +
    '       imgmount loop detach DEVICE...\n' +
    '       imgmount loop list [--all] [--json]',
  summary: 'attach an image partition to a loop device (printing it), detach devices, list them',
  async run(args: string[], io: CliIO): Promise<number> {
    const [sub, ...rest] = args;
    switch (sub) {
      case 'attach':
        return attach(rest, io);
      case 'detach':
        return detach(rest);
      case 'list':
        return list(rest, io);
      default:
        throw new UsageError(sub === undefined ? 'loop needs a subcommand' : `unknown loop subcommand "${sub}"`);
    }
  },
};
