// 64-bit values (offsets, sizes, device and inode numbers) as the addon passes them.

/** A number when it fits in 2^53 exactly, else a bigint (the addon's convention). */
export function toNumberOrBig(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

export function toBig(v: number | bigint): bigint {
  return typeof v === 'bigint' ? v : BigInt(v);
}
