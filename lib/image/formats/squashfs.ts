// A bare squashfs file, possibly behind a launch header: one root partition.

import { DataUsage, OverlayUsage, RootFs, RootFsUsage, SQUASHFS } from '../constants';
import { NotThisFormat } from '../probe';
import { checkSquashfsHeader } from '../squashfs';
import type { DetectedImage, ImageFormat, ProbeContext } from './format';

export const squashfsFormat: ImageFormat = {
  name: 'squashfs',
  async probe(ctx: ProbeContext): Promise<DetectedImage> {
    if (ctx.kind === 'directory') throw new NotThisFormat('squashfs', 'is a directory');
    const info = checkSquashfsHeader(ctx.head, { launchHeader: true, size: ctx.size });
    const size = ctx.size - info.offset;
    return {
      type: SQUASHFS,
      partitions: [
        { name: RootFs, size, offset: info.offset, id: 1, type: SQUASHFS, allowedUsage: RootFsUsage | OverlayUsage | DataUsage },
      ],
      sections: [],
      extraUsage: 0,
      warnings: [],
      writable: false,
    };
  },
};
