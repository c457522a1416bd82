// ERR_TARGET_IN_USE: the first write of a mount record (its intent) is exclusive, so a second
// root()/mountImage()/FUSE mount onto a target that already has a record is refused before it
// mounts anything (lib/drivers/mount-record.ts, saveMountRecord({ exclusive })). Stacking would
// overwrite the first record: closing either mount would then remove the record the other
// still needs, and a kill -9 would leave mounts no record describes. This file is the pure
// part: who holds the target, said in the error. No I/O.

import { ImgmountError } from '../errors';
import type { MountRecord } from './mount-record';

/** What the existing record says about its holder, as found by the writer that was refused. */
export type TargetHolder =
  /** A valid record whose owner runs (same pid and start time). */
  | { kind: 'live'; pid: number; self: boolean }
  /** A valid record whose owner is gone: left by a process that died. */
  | { kind: 'dead'; pid: number }
  /** A valid record without an owner: a persistent mount (the CLI's, or `persist: true`). */
  | { kind: 'persistent' }
  /** A record that cannot be trusted (ERR_MOUNT_RECORD_INVALID): nothing in it is acted on. */
  | { kind: 'invalid'; error: Error }
  /** The record went away each time it was about to be read (another process kept replacing it). */
  | { kind: 'vanished' };

/** The holder a valid record names, given whether its owner still runs. */
export function holderOf(record: MountRecord, ownerAlive: boolean, selfPid: number): TargetHolder {
  if (record.owner === undefined) return { kind: 'persistent' };
  return ownerAlive ? { kind: 'live', pid: record.owner.pid, self: record.owner.pid === selfPid } : { kind: 'dead', pid: record.owner.pid };
}

/** The refusal of a mount at `target`, whose record `file` is held as `holder` says. */
export function targetInUseError(target: string, file: string, holder: TargetHolder): ImgmountError {
  let who: string;
  switch (holder.kind) {
    case 'live':
      who =
        `a root mounted by pid ${holder.pid} (${holder.self ? 'this process, ' : ''}still running) holds it. ` +
        `Close that one first (or release it with \`imgmount umount ${target}\`), or mount elsewhere`;
      break;
    case 'dead':
      who =
        `its mount record is left from a process that died (pid ${holder.pid}), with whatever it had mounted there. ` +
        '`imgmount cleanup` (or cleanup()) sweeps it; then mount again';
      break;
    case 'persistent':
      who =
        'a persistent mount (one without an owner: `imgmount mount`/`imgmount root`, or persist: true) holds it. ' +
        `\`imgmount umount ${target}\` releases it (or \`imgmount cleanup --all\`)`;
      break;
    case 'invalid':
      who = `its mount record ${file} is invalid and nothing in it is acted on (${holder.error.message}). Remove it by hand once you know what it was`;
      break;
    case 'vanished':
      who = `its mount record ${file} is being written and removed by others meanwhile`;
      break;
  }
  return new ImgmountError('ERR_TARGET_IN_USE', `cannot mount at ${target}: the target is in use: ${who}`, {
    path: target,
    ...(holder.kind === 'invalid' ? { cause: holder.error } : {}),
    details: {
      record: file,
      holder: holder.kind,
      ...(holder.kind === 'live' || holder.kind === 'dead' ? { pid: holder.pid } : {}),
    },
  });
}
