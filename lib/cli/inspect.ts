// imgmount inspect [--json] [--writable] [--as UID[:GID] [--allow-block-device]] IMAGE

import { typeName, usageNames } from '../image/constants';
import type { Section } from '../image/section';
import { init } from '../image/init';
import type { Image } from '../image/image';
import { readPartitionInfo, type PartitionFsInfo } from '../image/partition-info';
import { dataTypeName } from '../sif/constants';
import { asInitOptions, asOptions } from './as';
import { parse, table, UsageError, write, type CliIO, type Command } from './usage';

/** What a partition's superblock says, or why it could not be read. */
async function fsInfo(image: Image, p: Section): Promise<PartitionFsInfo | { error: string }> {
  try {
    return await readPartitionInfo(image, p);
  } catch (err) {
    return { error: (err as Error).message };
  }
}

async function fsDetail(image: Image, p: Section): Promise<string> {
  const info = await fsInfo(image, p);
  if ('error' in info) return `unreadable: ${info.error}`;
  if (info.squashfs) return `squashfs ${info.squashfs.major}.${info.squashfs.minor}, ${info.squashfs.compression}`;
  if (info.ext3) return `ext3, ${info.ext3.blocksCount} blocks of ${info.ext3.blockSize}${info.ext3.label ? `, label "${info.ext3.label}"` : ''}`;
  return '';
}

/**
 * `inspect --json`: the Image JSON exactly as Apptainer writes it, then what the human output
 * adds: `warnings`, and `filesystems` (per squashfs or ext3 partition, by id, its superblock's
 * facts or why it could not be read). Extra top-level keys, which Apptainer's parser ignores.
 */
export async function inspectJSON(image: Image): Promise<string> {
  const filesystems: Array<{ id: number } & (PartitionFsInfo | { error: string })> = [];
  for (const p of image.partitions) {
    const info = await fsInfo(image, p);
    if ('error' in info || info.squashfs || info.ext3) filesystems.push({ id: p.id, ...info });
  }
  const text = image.toJSONString();
  return `${text.slice(0, -1)},"warnings":${JSON.stringify(image.warnings)},"filesystems":${JSON.stringify(filesystems)}}`;
}

export async function describeImage(image: Image): Promise<string> {
  const lines = [
    image.path,
    `  type:     ${typeName(image.type).toUpperCase()} (0x${image.type.toString(16)})`,
    `  writable: ${image.writable ? 'yes' : 'no'}`,
    `  usage:    ${usageNames(image.usage)}`,
  ];
  if (image.partitions.length) {
    const rows = [['ID', 'NAME', 'TYPE', 'OFFSET', 'SIZE', 'USAGE', 'FILESYSTEM']];
    for (const p of image.partitions) {
      rows.push([String(p.id), p.name, typeName(p.type), String(p.offset), String(p.size), usageNames(p.allowedUsage), await fsDetail(image, p)]);
    }
    lines.push('  partitions:', indent(table(rows), 4));
  } else {
    lines.push('  partitions: none');
  }
  if (image.sections.length) {
    const rows = [['ID', 'NAME', 'TYPE', 'OFFSET', 'SIZE']];
    for (const s of image.sections) rows.push([String(s.id), s.name || '-', dataTypeName(s.type), String(s.offset), String(s.size)]);
    lines.push('  sections:', indent(table(rows), 4));
  }
  if (image.warnings.length) lines.push('  warnings:', ...image.warnings.map((w) => `    ${w}`));
  return lines.join('\n') + '\n';
}

function indent(text: string, n: number): string {
  return text
    .split('\n')
    .map((l) => ' '.repeat(n) + l)
    .join('\n');
}

export const inspectCommand: Command = {
  name: 'inspect',
  usage: 'imgmount inspect [--json] [--writable] [--as UID[:GID] [--allow-block-device]] IMAGE',
  summary: 'recognise an image and list its partitions, sections, filesystems and warnings (--json: the Image JSON with "warnings" and "filesystems")',
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parse(args, {
      json: { type: 'boolean' },
      writable: { type: 'boolean' },
      ...asOptions,
    });
    if (positionals.length !== 1) throw new UsageError('inspect takes exactly one IMAGE');
    const who = await asInitOptions(values);
    await using image = await init(positionals[0]!, values.writable ?? false, who);
    await write(io.stdout, values.json ? (await inspectJSON(image)) + '\n' : await describeImage(image));
    return 0;
  },
};
