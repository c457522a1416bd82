// imgmount read [--as UID[:GID] [--allow-block-device]] IMAGE (--partition NAME | --section NAME | --index N)

import { pipeline } from 'node:stream/promises';
import { init } from '../image/init';
import { newPartitionReader, newSectionReader } from '../image/reader';
import { asInitOptions, asOptions } from './as';
import { parse, UsageError, type CliIO, type Command } from './usage';

export const readCommand: Command = {
  name: 'read',
  usage: 'imgmount read [--as UID[:GID] [--allow-block-device]] IMAGE (--partition NAME | --section NAME | --index N)',
  summary: 'write the bytes of one partition (by name or index) or section to stdout',
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parse(args, {
      partition: { type: 'string' },
      section: { type: 'string' },
      index: { type: 'string' },
      ...asOptions,
    });
    if (positionals.length !== 1) throw new UsageError('read takes exactly one IMAGE');
    const chosen = [values.partition, values.section, values.index].filter((v) => v !== undefined);
    if (chosen.length !== 1) throw new UsageError('give exactly one of --partition NAME, --section NAME or --index N');
    let index = -1;
    if (values.index !== undefined) {
      if (!/^\d+$/.test(values.index)) throw new UsageError(`--index takes a partition index (0, 1, ...), not "${values.index}"`);
      index = Number(values.index);
    }
    const who = await asInitOptions(values);
    await using image = await init(positionals[0]!, false, who);
    const reader =
      values.section !== undefined
        ? newSectionReader(image, values.section)
        : newPartitionReader(image, values.partition ?? '', index);
    await pipeline(reader, io.stdout, { end: false });
    return 0;
  },
};
