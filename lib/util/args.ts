// Argument checks of the public API, with Node's error codes (ERR_INVALID_ARG_TYPE,
// ERR_INVALID_ARG_VALUE, ERR_OUT_OF_RANGE): a value that is wrong is an error, never a silent
// default.

import { argumentError, invalidArgType, invalidArgValue, outOfRange } from '../errors';

/** Validates a byte count or offset: a non-negative integer below 2^64. */
export function byteCount(name: string, v: unknown, dflt: bigint): bigint {
  if (v === undefined) return dflt;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw outOfRange(name, 'a non-negative safe integer', v);
    return BigInt(v);
  }
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 1n << 64n) throw outOfRange(name, '>= 0 and < 2^64', v);
    return v;
  }
  throw invalidArgType(name, 'of type number or bigint', v);
}

export function bool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw invalidArgType(name, 'of type boolean', v);
  return v;
}

/** Reads an override such as IMGMOUNT_LOOP_API; an unknown value is an error, not a silent default. */
export function envChoice<T extends string>(name: string, allowed: readonly T[], dflt: T): T {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  if ((allowed as readonly string[]).includes(raw)) return raw as T;
  throw argumentError('ERR_INVALID_ARG_VALUE', `${name}=${raw} is not one of ${allowed.join(', ')}`);
}

export function choice<T extends string>(name: string, v: unknown, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v))
    throw invalidArgValue(name, v, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}`);
  return v as T;
}

/** A path argument: a non-empty string without NUL. */
export function pathArg(name: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.includes('\0')) throw invalidArgType(name, 'a non-empty path', v);
  return v;
}
