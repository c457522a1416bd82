// SIF images: partitions and sections from the descriptor table, as Apptainer maps them.
//
// Differences from Apptainer, on purpose: the magic must sit at offset 32 (not anywhere in
// the first 2 KiB); every object must lie inside the file (the SIF reader checks this, so
// a truncated image fails here and not in the kernel); several primary partitions, skipped
// overlay/data partitions and reader diagnostics are reported in `warnings` instead of
// being dropped silently.

import { ImgmountError } from '../../errors';
import {
  DataPartition,
  FsEncryptedSquashfs,
  FsExt3,
  FsGocryptfsSquashfs,
  FsRaw,
  FsSquash,
  MAGIC,
  PartData,
  PartOverlay,
  PartPrimSys,
  fsTypeName,
} from '../../sif/constants';
import type { DescriptorSummary } from '../../sif/codec';
import { loadSifSummary } from '../../sif/read';
import { archRunnable, hostArch } from '../arch';
import {
  DataUsage,
  ENCRYPTSQUASHFS,
  PARTITION_PROBE_SIZE,
  EXT3,
  GOCRYPTFSSQUASHFS,
  OverlayUsage,
  RAW,
  RootFs,
  RootFsUsage,
  SIF,
  SQUASHFS,
  type ImageType,
} from '../constants';
import { checkExt3Header } from '../ext3';
import { NotThisFormat } from '../probe';
import type { Section } from '../section';
import { checkSquashfsHeader } from '../squashfs';
import type { DetectedImage, ImageFormat, ProbeContext } from './format';

const MAGIC_OFFSET = 32;

/** Checks the filesystem a SIF partition claims to hold and returns its image type. */
async function partitionType(ctx: ProbeContext, d: DescriptorSummary): Promise<ImageType> {
  const fsType = d.partition!.fsType;
  switch (fsType) {
    case FsSquash:
    case FsExt3: {
      const head = await ctx.source.read(d.offset, Math.min(PARTITION_PROBE_SIZE, d.size));
      const fsName = fsType === FsSquash ? 'squashfs' : 'ext3';
      try {
        if (fsType === FsSquash) checkSquashfsHeader(head, { launchHeader: false, size: d.size });
        else checkExt3Header(head, { launchHeader: false, size: d.size });
      } catch (err) {
        throw new ImgmountError(
          'ERR_PARTITION_INVALID',
          `partition ${describe(d)} does not hold a valid ${fsName} filesystem: ${(err as Error).message}`,
          { cause: err, details: { id: d.id, name: d.name } },
        );
      }
      return fsType === FsSquash ? SQUASHFS : EXT3;
    }
    case FsEncryptedSquashfs:
      return ENCRYPTSQUASHFS;
    case FsRaw:
      return RAW;
    case FsGocryptfsSquashfs:
      return GOCRYPTFSSQUASHFS;
    default:
      throw new ImgmountError(
        'ERR_PARTITION_INVALID',
        `partition ${describe(d)} has filesystem type ${fsTypeName(fsType)} (${fsType}), which cannot be mounted`,
        { details: { id: d.id, name: d.name, fsType } },
      );
  }
}

function describe(d: DescriptorSummary): string {
  return d.name ? `${d.id} ("${d.name}")` : `${d.id}`;
}

export const sifFormat: ImageFormat = {
  name: 'sif',
  async probe(ctx: ProbeContext): Promise<DetectedImage> {
    if (ctx.kind === 'directory') throw new NotThisFormat('sif', 'is a directory');
    if (ctx.head.length < MAGIC_OFFSET + MAGIC.length) {
      throw new NotThisFormat('sif', `too short for a SIF header (${ctx.head.length} bytes)`);
    }
    if (!ctx.head.subarray(MAGIC_OFFSET, MAGIC_OFFSET + MAGIC.length).equals(MAGIC)) {
      throw new NotThisFormat('sif', `no SIF_MAGIC at offset ${MAGIC_OFFSET}`);
    }
    // At most MAX_DESCRIPTORS slots are read, and at most that many partitions get a
    // PARTITION_PROBE_SIZE header read below: MAX_DETECTION_READ bounds it all.
    // Summaries: detection reads a handful of fields of each descriptor, and every init() loads the table.
    const sif = await loadSifSummary(ctx.source);
    // Every superblock partitionType() may check, read in one hop (most lie in the head window).
    await ctx.source.prefetch?.(
      sif.descriptors
        .filter((d) => d.dataType === DataPartition && (d.partition!.fsType === FsSquash || d.partition!.fsType === FsExt3))
        .map((d) => [d.offset, Math.min(PARTITION_PROBE_SIZE, d.size)] as const),
    );
    const warnings = [...sif.warnings];
    const partitions: Section[] = [];
    const sections: Section[] = [];
    let extraUsage = 0;

    const primaries = sif.descriptors.filter((d) => d.dataType === DataPartition && d.partition?.partType === PartPrimSys);
    let primaryGroup = 0;
    if (primaries.length > 1) {
      // Replace the reader's generic diagnostic with what it means for this image.
      const generic = warnings.findIndex((w) => /primary system partitions/.test(w));
      if (generic >= 0) warnings.splice(generic, 1);
      warnings.push(
        `image has ${primaries.length} primary partitions (ids ${primaries.map((d) => d.id).join(', ')}); ` +
          'none is used as the root filesystem',
      );
    } else if (primaries.length === 1) {
      const d = primaries[0]!;
      const type = await partitionType(ctx, d);
      const arch = d.partition!.arch;
      if (!(await archRunnable(arch))) {
        throw new ImgmountError(
          'ERR_ARCH_MISMATCH',
          `the image's architecture (${arch}) could not run on the host's (${hostArch()})`,
          { details: { imageArch: arch, hostArch: hostArch() } },
        );
      }
      partitions.push({ name: RootFs, size: d.size, offset: d.offset, id: d.id, type, allowedUsage: RootFsUsage });
      primaryGroup = d.groupId;
    }

    for (const d of sif.descriptors) {
      if (d.dataType === DataPartition) {
        const partType = d.partition!.partType;
        if (partType !== PartData && partType !== PartOverlay) continue; // System/PrimSys: not partitions here
        const usage = partType === PartOverlay ? OverlayUsage : DataUsage;
        if (usage === OverlayUsage && primaryGroup > 0 && d.groupId !== primaryGroup) {
          warnings.push(
            `overlay partition ${describe(d)} is in group ${d.groupId}, not the root filesystem's group ${primaryGroup}; skipped`,
          );
          continue;
        }
        let type: ImageType;
        try {
          type = await partitionType(ctx, d);
        } catch (err) {
          warnings.push(`${usage === OverlayUsage ? 'overlay' : 'data'} ${(err as Error).message}; skipped`);
          continue;
        }
        partitions.push({ name: d.name, size: d.size, offset: d.offset, id: d.id, type, allowedUsage: usage });
        extraUsage |= usage;
      } else if (d.dataType !== 0) {
        sections.push({ name: d.name, size: d.size, offset: d.offset, id: d.id, type: d.dataType, allowedUsage: DataUsage });
      }
    }
    return { type: SIF, partitions, sections, extraUsage, warnings, writable: true };
  },
};
