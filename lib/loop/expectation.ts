// What a bound loop device must show (LOOP_GET_STATUS64) for the request it was bound or
// reused for, and what differs. Pure: a fresh attach, the fused attach + mount and a shared
// reuse all check through it.

import type { NativeLoopInfo } from '../native/binding';
import { LO_FLAGS_AUTOCLEAR, LO_FLAGS_PARTSCAN, LO_FLAGS_READ_ONLY } from './constants';
import { toBig } from '../util/bigint';

export interface LoopExpectation {
  imageDevice: number | bigint;
  imageInode: number | bigint;
  offset: bigint;
  sizeLimit: bigint;
  readOnly: boolean;
  autoclear: boolean;
  partscan: boolean;
}

/** The expectation for options `o` over the backing file `imageDevice`/`imageInode` (fstat). */
export function expectationOf(
  o: { offset: bigint; sizeLimit: bigint; readOnly: boolean; autoclear: boolean; partscan: boolean },
  imageDevice: number | bigint,
  imageInode: number | bigint,
): LoopExpectation {
  return { imageDevice, imageInode, offset: o.offset, sizeLimit: o.sizeLimit, readOnly: o.readOnly, autoclear: o.autoclear, partscan: o.partscan };
}

/** What differs between LOOP_GET_STATUS64 and the expectation (empty: all good). */
export function statusMismatches(s: NativeLoopInfo, e: LoopExpectation): string[] {
  const out: string[] = [];
  if (toBig(s.device) !== toBig(e.imageDevice) || toBig(s.inode) !== toBig(e.imageInode))
    out.push(`backing file is device ${s.device} inode ${s.inode}, not the image's ${e.imageDevice}/${e.imageInode}`);
  if (toBig(s.offset) !== e.offset) out.push(`offset is ${s.offset}, not ${e.offset}`);
  if (toBig(s.sizeLimit) !== e.sizeLimit) out.push(`size limit is ${s.sizeLimit}, not ${e.sizeLimit}`);
  const ro = (s.flags & LO_FLAGS_READ_ONLY) !== 0;
  if (ro !== e.readOnly)
    out.push(ro ? 'device is read-only although read-write was asked (is the image opened read-only?)' : 'device is writable although read-only was asked');
  if (((s.flags & LO_FLAGS_AUTOCLEAR) !== 0) !== e.autoclear) out.push(`autoclear is ${!e.autoclear}, not ${e.autoclear}`);
  if (e.partscan && (s.flags & LO_FLAGS_PARTSCAN) === 0) out.push('partition scanning was not enabled');
  return out;
}
