// A partition or section of an image: a byte range with a type and allowed usage.
// Field names follow Apptainer's pkg/image (camelCase here, its JSON tags on the wire).

import type { Usage } from './constants';

export interface Section {
  /** Name ("!__rootfs__!" for the root filesystem, the SIF descriptor name otherwise). */
  name: string;
  /** Length in bytes. */
  size: number;
  /** Absolute offset in the image file. */
  offset: number;
  /** SIF descriptor id (1 for bare images). */
  id: number;
  /** Image type id for partitions (SQUASHFS, EXT3, ...); the SIF data type for sections. */
  type: number;
  /** What this range may be used for (RootFsUsage | OverlayUsage | DataUsage). */
  allowedUsage: Usage;
}

/** The wire form, with Apptainer's JSON tags. */
export interface SectionJSON {
  name: string;
  size: number;
  offset: number;
  id: number;
  type: number;
  allowed_usage: number;
}

export function sectionToJSON(s: Section): SectionJSON {
  return { name: s.name, size: s.size, offset: s.offset, id: s.id, type: s.type, allowed_usage: s.allowedUsage };
}

export function sectionFromJSON(j: SectionJSON): Section {
  return { name: j.name, size: j.size, offset: j.offset, id: j.id, type: j.type, allowedUsage: j.allowed_usage };
}
