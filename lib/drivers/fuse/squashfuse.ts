// squashfuse_ll / squashfuse command lines (Apptainer's, minus its traps):
//   squashfuse[_ll] -f -o ro[,allow_other][,uid=U,gid=G][,offset=N][,nosuid,nodev] SOURCE MOUNTPOINT
// `offset=` only when > 0 (a bare image), `nosuid,nodev` when the helper mounts by itself (with
// a passed /dev/fuse fd our own mount(2) flags decide). squashfuse has no size limit: what it
// reads is bounded by the superblock's bytes_used, which the driver checks against the
// partition size before starting it (bounds.ts), so a squashfs partition cannot make it read
// the partitions after it as its own data.

export interface SquashfuseArgs {
  offset: number;
  allowOther: boolean;
  /** The helper mounts by itself (no /dev/fuse fd passed): ask libfuse for nosuid,nodev. */
  selfMount: boolean;
  /** Owner to show for every file (`-o uid=,gid=`; only where the program supports it). */
  owner?: { uid: number; gid: number };
}

export function squashfuseArgs(o: SquashfuseArgs, source: string, mountpoint: string): string[] {
  const opts = ['ro'];
  if (o.allowOther) opts.push('allow_other');
  if (o.owner) opts.push(`uid=${o.owner.uid}`, `gid=${o.owner.gid}`);
  if (o.offset > 0) opts.push(`offset=${o.offset}`);
  if (o.selfMount) opts.push('nosuid', 'nodev');
  return ['-f', '-o', opts.join(','), source, mountpoint];
}
