// A bare ext3 file, possibly behind a launch header: one root partition.

import { DataUsage, EXT3, OverlayUsage, RootFs, RootFsUsage } from '../constants';
import { checkExt3Header } from '../ext3';
import { NotThisFormat } from '../probe';
import type { DetectedImage, ImageFormat, ProbeContext } from './format';

export const ext3Format: ImageFormat = {
  name: 'ext3',
  async probe(ctx: ProbeContext): Promise<DetectedImage> {
    if (ctx.kind === 'directory') throw new NotThisFormat('ext3', 'is a directory');
    const info = checkExt3Header(ctx.head, { launchHeader: true, size: ctx.size });
    const size = ctx.size - info.offset;
    return {
      type: EXT3,
      partitions: [
        { name: RootFs, size, offset: info.offset, id: 1, type: EXT3, allowedUsage: RootFsUsage | OverlayUsage | DataUsage },
      ],
      sections: [],
      extraUsage: 0,
      warnings: [],
      writable: true,
    };
  },
};
