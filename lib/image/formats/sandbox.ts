// A directory is a sandbox image: one root partition spanning nothing (it is bind-mounted).

import { DataUsage, OverlayUsage, RootFs, RootFsUsage, SANDBOX } from '../constants';
import { NotThisFormat } from '../probe';
import type { DetectedImage, ImageFormat, ProbeContext } from './format';

export const sandboxFormat: ImageFormat = {
  name: 'sandbox',
  refuse: (ctx) => (ctx.kind !== 'directory' ? 'not a directory' : undefined),
  async probe(ctx: ProbeContext): Promise<DetectedImage> {
    const refused = sandboxFormat.refuse!(ctx);
    if (refused !== undefined) throw new NotThisFormat('sandbox', refused);
    return {
      type: SANDBOX,
      partitions: [
        { name: RootFs, size: 0, offset: 0, id: 1, type: SANDBOX, allowedUsage: RootFsUsage | OverlayUsage | DataUsage },
      ],
      sections: [],
      extraUsage: 0,
      warnings: [],
      writable: true,
    };
  },
};
